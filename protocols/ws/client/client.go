// Package client is a Go client for kedge's WebSocket protocol
// (docs/protocol-ws.md): subscribe with a handler, publish and wait for
// Kafka's acknowledgement. It does not reconnect by itself yet; a closed
// connection ends every pending call with the close reason.
package client

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/gorilla/websocket"
)

// Message is one message received on a subscription.
type Message struct {
	Subject    string            `json:"subject"`
	Payload    string            `json:"payload"`
	PayloadB64 string            `json:"payload_b64"`
	Position   string            `json:"position"`
	Snapshot   bool              `json:"snapshot"`
	Time       time.Time         `json:"time"`
	Headers    map[string]string `json:"headers"`
	// HeadersB64 holds headers whose values are not UTF-8, base64 encoded.
	HeadersB64 map[string]string `json:"headers_b64"`
}

// Data returns the payload bytes, whichever way they were sent.
func (m *Message) Data() []byte {
	if m.PayloadB64 != "" {
		b, _ := base64.StdEncoding.DecodeString(m.PayloadB64)
		return b
	}
	return []byte(m.Payload)
}

// Error is an error frame from the server; Code is from the protocol's list.
type Error struct {
	Code    string `json:"code"`
	Subject string `json:"subject"`
	Message string `json:"message"`
}

func (e *Error) Error() string {
	if e.Subject != "" {
		return fmt.Sprintf("%s: %s (subject %s)", e.Code, e.Message, e.Subject)
	}
	return e.Code + ": " + e.Message
}

// ErrClosed is returned by calls on a closed client.
var ErrClosed = errors.New("kedge client: connection closed")

// Options tune Dial.
type Options struct {
	// Header is sent with the handshake.
	Header http.Header
	// Dialer defaults to websocket.DefaultDialer.
	Dialer *websocket.Dialer
}

// Client is one WebSocket connection to kedge. It is safe for concurrent use.
type Client struct {
	ws      *websocket.Conn
	writeMu sync.Mutex

	mu      sync.Mutex
	nextID  int64
	pending map[string]chan frame
	handler func(Message)
	err     error
	done    chan struct{}
}

// frame is any server frame.
type frame struct {
	Op         string            `json:"op"`
	ID         json.RawMessage   `json:"id"`
	Position   string            `json:"position"`
	Reason     string            `json:"reason"`
	Code       string            `json:"code"`
	Message    string            `json:"message"`
	Subject    string            `json:"subject"`
	Payload    string            `json:"payload"`
	PayloadB64 string            `json:"payload_b64"`
	Snapshot   bool              `json:"snapshot"`
	Time       time.Time         `json:"time"`
	Headers    map[string]string `json:"headers"`
	HeadersB64 map[string]string `json:"headers_b64"`
}

func (f *frame) message() Message {
	return Message{Subject: f.Subject, Payload: f.Payload, PayloadB64: f.PayloadB64, Position: f.Position,
		Snapshot: f.Snapshot, Time: f.Time, Headers: f.Headers, HeadersB64: f.HeadersB64}
}

// Dial connects to a kedge WebSocket URL such as ws://127.0.0.1:8080/v1/ws.
// handler receives every message of every subscription, one at a time, in
// the order they arrive; it may be nil for a publish-only client. handler
// runs on the connection's read loop: it must not call the Client (whose
// replies that loop would have to read) and should return quickly.
func Dial(ctx context.Context, url string, handler func(Message), opts Options) (*Client, error) {
	d := opts.Dialer
	if d == nil {
		d = websocket.DefaultDialer
	}
	ws, resp, err := d.DialContext(ctx, url, opts.Header)
	if err != nil {
		if resp != nil {
			return nil, fmt.Errorf("kedge client: dial %s: %w (HTTP %s)", url, err, resp.Status)
		}
		return nil, fmt.Errorf("kedge client: dial %s: %w", url, err)
	}
	c := &Client{ws: ws, pending: make(map[string]chan frame), handler: handler, done: make(chan struct{})}
	go c.readLoop()
	return c, nil
}

func (c *Client) readLoop() {
	defer close(c.done)
	for {
		_, data, err := c.ws.ReadMessage()
		if err != nil {
			c.fail(err)
			return
		}
		var f frame
		if err := json.Unmarshal(data, &f); err != nil {
			continue
		}
		c.route(f)
	}
}

func (c *Client) route(f frame) {
	switch f.Op {
	case "message":
		if c.handler != nil {
			c.handler(f.message())
		}
	case "ack", "error", "pong":
		c.mu.Lock()
		ch := c.pending[string(f.ID)]
		delete(c.pending, string(f.ID))
		c.mu.Unlock()
		if ch != nil {
			ch <- f
		}
	}
}

func (c *Client) fail(err error) {
	var ce *websocket.CloseError
	if errors.As(err, &ce) {
		err = fmt.Errorf("%w: code %d: %s", ErrClosed, ce.Code, ce.Text)
	} else {
		err = fmt.Errorf("%w: %v", ErrClosed, err)
	}
	c.mu.Lock()
	c.err = err
	pending := c.pending
	c.pending = nil
	c.mu.Unlock()
	for _, ch := range pending {
		close(ch)
	}
}

// Err returns why the connection ended, or nil while it is open.
func (c *Client) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// Done is closed when the connection has ended.
func (c *Client) Done() <-chan struct{} { return c.done }

// call sends a request and waits for its ack or error.
func (c *Client) call(ctx context.Context, req map[string]any) (frame, error) {
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		return frame{}, c.err
	}
	c.nextID++
	id := strconv.FormatInt(c.nextID, 10)
	ch := make(chan frame, 1)
	c.pending[id] = ch
	c.mu.Unlock()
	req["id"] = json.Number(id)
	if err := c.send(req); err != nil {
		c.mu.Lock()
		delete(c.pending, id)
		c.mu.Unlock()
		return frame{}, err
	}
	select {
	case f, ok := <-ch:
		if !ok {
			return frame{}, c.Err()
		}
		if f.Op == "error" {
			return f, &Error{Code: f.Code, Subject: f.Subject, Message: f.Message}
		}
		return f, nil
	case <-ctx.Done():
		c.mu.Lock()
		delete(c.pending, id)
		c.mu.Unlock()
		return frame{}, ctx.Err()
	}
}

func (c *Client) send(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	_ = c.ws.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if err := c.ws.WriteMessage(websocket.TextMessage, b); err != nil {
		return fmt.Errorf("%w: %v", ErrClosed, err)
	}
	return nil
}

// SubscribeOptions tune a subscription.
type SubscribeOptions struct {
	// Standard asks for standard delivery (may drop under backpressure)
	// instead of guaranteed.
	Standard bool
	// NoSnapshot skips the latest cached message on subscribe.
	NoSnapshot bool
}

// Subscribe subscribes to subjects or patterns and waits for the ack.
func (c *Client) Subscribe(ctx context.Context, subjects []string, opts SubscribeOptions) error {
	req := map[string]any{"op": "subscribe", "subjects": subjects}
	if opts.Standard {
		req["mode"] = "standard"
	}
	if opts.NoSnapshot {
		req["snapshot"] = false
	}
	_, err := c.call(ctx, req)
	return err
}

// Unsubscribe ends subscriptions.
func (c *Client) Unsubscribe(ctx context.Context, subjects []string) error {
	_, err := c.call(ctx, map[string]any{"op": "unsubscribe", "subjects": subjects})
	return err
}

// Publish sends a message and returns its position once Kafka acknowledged it.
func (c *Client) Publish(ctx context.Context, subject string, payload []byte, headers map[string]string) (string, error) {
	req := map[string]any{"op": "publish", "subject": subject}
	if utf8.Valid(payload) {
		req["payload"] = string(payload)
	} else {
		req["payload_b64"] = base64.StdEncoding.EncodeToString(payload)
	}
	if len(headers) > 0 {
		req["headers"] = headers
	}
	f, err := c.call(ctx, req)
	return f.Position, err
}

// Close closes the connection.
func (c *Client) Close() error {
	c.writeMu.Lock()
	_ = c.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
	c.writeMu.Unlock()
	err := c.ws.Close()
	<-c.done
	return err
}
