package sse

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/kedgehq/kedge/core"
)

// TestMain fails the package if any goroutine outlives the tests: streams'
// handlers and writers, heartbeat timers, fake publisher answers and the
// r3labs clients the tests use.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// waitFor bounds every wait for something the server should do promptly.
const waitFor = 5 * time.Second

// eventually polls cond until it holds, failing the test at the deadline.
func eventually(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(time.Millisecond)
	}
}

// fakePublisher answers every publish from its own goroutine with the next
// offset of partition 0 (epoch 1), or with errFor's error; a successful
// publish is first dispatched into loop, as if it came back from Kafka.
type fakePublisher struct {
	mu     sync.Mutex
	next   int64
	pubs   []core.Publication
	errFor func(core.Publication) error
	loop   *core.Hub
	wg     sync.WaitGroup
}

func (f *fakePublisher) Publish(_ context.Context, p core.Publication, done func(core.Position, error)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.pubs = append(f.pubs, p)
	var err error
	if f.errFor != nil {
		err = f.errFor(p)
	}
	pos := core.Position{Epoch: 1, Partition: 0, Offset: f.next}
	if err == nil {
		f.next++
	}
	loop := f.loop
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		if err == nil && loop != nil {
			loop.Dispatch(&core.Message{Subject: p.Subject.Name, Topic: p.Subject.Topic, Key: p.Subject.Key,
				HasKey: p.Subject.HasKey, Payload: p.Payload, Headers: p.Headers, Pos: pos, Time: time.Now()})
		}
		done(pos, err)
	}()
}

func (f *fakePublisher) published() []core.Publication {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]core.Publication(nil), f.pubs...)
}

// env is a Server over a real Hub behind an httptest server.
type env struct {
	t    *testing.T
	hub  *core.Hub
	pub  *fakePublisher
	srv  *Server
	http *httptest.Server
	// next offset per partition of topic "demo" (epoch 1), for dispatch
	mu   sync.Mutex
	next map[int32]int64
}

// newEnv starts a server whose Hub knows topic "demo" with the given
// partitions (epoch 1), each starting at offset 0.
func newEnv(t *testing.T, cfg Config, partitions int) *env {
	t.Helper()
	hub := core.NewHub(core.CacheConfig{})
	for p := range partitions {
		hub.Begin("demo", 1, int32(p), 0)
	}
	pub := &fakePublisher{loop: hub}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	e := &env{t: t, hub: hub, pub: pub, next: map[int32]int64{}}
	e.srv = NewServer(&core.Node{Hub: hub, Publisher: pub}, cfg)
	mux := http.NewServeMux()
	mux.Handle("/v1/sse", e.srv)
	mux.HandleFunc("/v1/publish", e.srv.Publish)
	mux.HandleFunc("/v1/snapshot", e.srv.Snapshot)
	e.http = httptest.NewServer(mux)
	t.Cleanup(e.close)
	return e
}

func (e *env) close() {
	e.srv.Shutdown()
	eventually(e.t, waitFor, "streams to end", func() bool { return e.srv.Stats().Connections == 0 })
	e.http.CloseClientConnections()
	e.http.Close()
	e.pub.wg.Wait()
	e.hub.Wait()
}

// dispatch sends a message of key on partition p of "demo", as the kafka
// package would, and returns it.
func (e *env) dispatch(key string, p int32, payload string) *core.Message {
	e.mu.Lock()
	off := e.next[p]
	e.next[p]++
	e.mu.Unlock()
	subj := "/demo/" + key
	m := &core.Message{Subject: subj, Topic: "demo", Key: key, HasKey: true, Payload: []byte(payload),
		Pos: core.Position{Epoch: 1, Partition: p, Offset: off}, Time: time.Now()}
	e.hub.Dispatch(m)
	return m
}

func (e *env) url(query string) string { return e.http.URL + "/v1/sse?" + query }

// event is one parsed SSE event.
type event struct {
	id, typ, data string
	hasID         bool
	retry         string
}

// sseReader reads a stream's events from a raw response.
type sseReader struct {
	t      testing.TB
	resp   *http.Response
	events chan event
	err    error
	done   chan struct{}
	// comments counts heartbeat comment lines.
	mu       sync.Mutex
	comments int
}

// openStream GETs url with optional Last-Event-ID and starts reading.
func (e *env) openStream(query, lastID string) *sseReader {
	e.t.Helper()
	req, _ := http.NewRequest("GET", e.url(query), nil)
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		e.t.Fatalf("GET %s: %d %s", query, resp.StatusCode, b)
	}
	r := &sseReader{t: e.t, resp: resp, events: make(chan event, 100000), done: make(chan struct{})}
	go r.read()
	e.t.Cleanup(func() { _ = resp.Body.Close(); <-r.done })
	return r
}

func (r *sseReader) read() {
	defer close(r.done)
	sc := bufio.NewScanner(r.resp.Body)
	sc.Buffer(make([]byte, 4096), 1<<20)
	var ev event
	started := false
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			if started {
				r.events <- ev
			}
			ev, started = event{}, false
		case strings.HasPrefix(line, ":"):
			r.mu.Lock()
			r.comments++
			r.mu.Unlock()
		default:
			field, value, _ := strings.Cut(line, ":")
			value = strings.TrimPrefix(value, " ")
			started = true
			switch field {
			case "id":
				ev.id, ev.hasID = value, true
			case "event":
				ev.typ = value
			case "data":
				ev.data = value
			case "retry":
				ev.retry = value
			}
		}
	}
	r.err = sc.Err()
}

// next returns the next event, failing after waitFor.
func (r *sseReader) next() event {
	r.t.Helper()
	select {
	case ev := <-r.events:
		return ev
	case <-r.done:
		select {
		case ev := <-r.events:
			return ev
		default:
		}
		r.t.Fatalf("stream ended: %v", r.err)
	case <-time.After(waitFor):
		r.t.Fatalf("no event within %v", waitFor)
	}
	return event{}
}

func (r *sseReader) expect(typ string) event {
	r.t.Helper()
	ev := r.next()
	if ev.typ != typ {
		r.t.Fatalf("want a %q event, got %+v", typ, ev)
	}
	return ev
}

// quiet asserts no event arrives within d.
func (r *sseReader) quiet(d time.Duration) {
	r.t.Helper()
	select {
	case ev := <-r.events:
		r.t.Fatalf("unexpected event %+v", ev)
	case <-time.After(d):
	}
}

// ended waits for the server to end the stream.
func (r *sseReader) ended() {
	r.t.Helper()
	select {
	case <-r.done:
	case <-time.After(waitFor):
		r.t.Fatalf("stream not ended within %v", waitFor)
	}
}

// rawConn sends a request on a plain TCP connection and never reads: a
// client as slow as can be.
func rawConn(t *testing.T, addr, path string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(c, "GET "+path+" HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}
