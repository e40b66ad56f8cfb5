package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"
)

// runSSESubscriber is the Server-Sent Events driver: a plain net/http
// client reading /v1/sse, which on every churn (and whenever the server
// ends the stream) reconnects to the next node with the id of the last
// complete event it handled as Last-Event-ID, as an EventSource does.
func runSSESubscriber(ctx context.Context, id int, nodes []*benchNode, topic string, t *tally, churn func() time.Duration) error {
	// No client timeout: a stream lasts until churn ends it.
	hc := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	lastID := ""
	for round := 0; ctx.Err() == nil; round++ {
		node := nodes[(id+round)%len(nodes)]
		connCtx, cancel := context.WithTimeout(ctx, churn())
		err := readSSEStream(connCtx, hc, node, topic, &lastID, t)
		churned := connCtx.Err() != nil
		cancel()
		if ctx.Err() != nil {
			return nil
		}
		if err != nil && !churned {
			var fatal *sseRefused
			if errors.As(err, &fatal) {
				return err
			}
			// A stream the server ended (slow consumer, shutdown) or a
			// refused connection: resume elsewhere after a moment.
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(50 * time.Millisecond):
			}
		}
		t.reconnects.Add(1)
	}
	return nil
}

// sseRefused is a stream request answered with a client error: resuming
// cannot fix it.
type sseRefused struct {
	status int
	body   string
}

func (e *sseRefused) Error() string { return fmt.Sprintf("stream refused: %d %s", e.status, e.body) }

// sseMaxLine bounds one line of the stream.
const sseMaxLine = 64 << 10

// readSSEStream reads one stream until ctx ends or the stream does. Only
// complete events (ended by a blank line) are handled, and lastID becomes
// the id of the last one handled that had an id.
func readSSEStream(ctx context.Context, hc *http.Client, node *benchNode, topic string, lastID *string, t *tally) error {
	u := "http://" + node.HTTP + "/v1/sse?snapshot=false&subject=" + url.QueryEscape("/"+topic+"/+")
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	if *lastID != "" {
		req.Header.Set("Last-Event-ID", *lastID)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		if resp.StatusCode >= 400 && resp.StatusCode < 500 {
			return &sseRefused{resp.StatusCode, string(body)}
		}
		return fmt.Errorf("stream: %d %s", resp.StatusCode, body)
	}
	r := bufio.NewReaderSize(resp.Body, sseMaxLine)
	var ev sseEvent
	for {
		line, err := r.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			return fmt.Errorf("stream: a line longer than %d bytes", sseMaxLine)
		}
		if err != nil {
			return err // an incomplete last line is dropped with its event
		}
		line = bytes.TrimSuffix(bytes.TrimSuffix(line, []byte("\n")), []byte("\r"))
		if len(line) == 0 {
			if err := ev.handle(lastID, t); err != nil {
				return err
			}
			ev = sseEvent{}
			continue
		}
		if line[0] == ':' {
			continue // a heartbeat comment
		}
		field, value, _ := bytes.Cut(line, []byte(":"))
		value = bytes.TrimPrefix(value, []byte(" "))
		switch string(field) {
		case "id":
			ev.id, ev.hasID = string(value), true
		case "event":
			ev.name = string(value)
		case "data":
			if ev.hasData {
				ev.data = append(ev.data, '\n')
			}
			ev.data, ev.hasData = append(ev.data, value...), true
		}
	}
}

// sseEvent is one event being read.
type sseEvent struct {
	id      string
	hasID   bool
	name    string
	data    []byte
	hasData bool
}

// handle acts on a complete event.
func (ev *sseEvent) handle(lastID *string, t *tally) error {
	switch ev.name {
	case "ready":
		t.subscribed()
	case "message":
		var m struct {
			Subject string `json:"subject"`
			Payload string `json:"payload"`
		}
		if err := json.Unmarshal(ev.data, &m); err != nil {
			return fmt.Errorf("message data %q: %w", ev.data, err)
		}
		t.record(m.Subject, m.Payload)
	case "reset":
		t.resets.Add(1)
	case "snapshot":
		// Asked for none (snapshot=false); one would be a message the
		// subscriber may already have, so it is not counted as delivered.
	case "error":
		// The server ends the stream (slow consumer, shutting down); it
		// carries no id, and the reader sees the end next.
	}
	if ev.hasID {
		*lastID = ev.id
	}
	return nil
}

// httpPublisher publishes with POST /v1/publish, which kedge answers after
// Kafka's ack.
type httpPublisher struct {
	hc  *http.Client
	url string
}

func dialHTTPPublisher(_ context.Context, node *benchNode, _ int) (publisher, error) {
	tr := &http.Transport{MaxIdleConnsPerHost: 1}
	return &httpPublisher{hc: &http.Client{Transport: tr, Timeout: 30 * time.Second}, url: "http://" + node.HTTP + "/v1/publish"}, nil
}

func (p *httpPublisher) publish(ctx context.Context, subject string, payload []byte) error {
	body, err := json.Marshal(map[string]string{"subject": subject, "payload": string(payload)})
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := p.hc.Do(req)
	if err != nil {
		return err
	}
	defer func() { _ = resp.Body.Close() }()
	answer, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("publish: %d %s", resp.StatusCode, answer)
	}
	return nil
}

func (p *httpPublisher) close() { p.hc.CloseIdleConnections() }
