package client_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/kedgehq/kedge/core"
	"github.com/kedgehq/kedge/protocols/ws"
	"github.com/kedgehq/kedge/protocols/ws/client"
)

// TestMain checks that no goroutine (client read loops, server connections,
// fake publisher answers) outlives the tests. Nothing is ignored: every test
// closes its clients and its server.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const waitFor = 5 * time.Second

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// loopPublisher is a core.Publisher that, like Kafka, gives each publish the
// next offset, dispatches it back into the Hub and then acknowledges it,
// asynchronously. errFor can fail a publish; hold keeps publishes until
// release.
type loopPublisher struct {
	hub    *core.Hub
	mu     sync.Mutex
	next   int64
	hold   bool
	held   []func()
	errFor func(core.Publication) error
	wg     sync.WaitGroup
}

func (p *loopPublisher) Publish(_ context.Context, pub core.Publication, done func(core.Position, error)) {
	p.mu.Lock()
	defer p.mu.Unlock()
	var err error
	if p.errFor != nil {
		err = p.errFor(pub)
	}
	pos := core.Position{Epoch: 1, Offset: p.next}
	if err == nil {
		p.next++
	}
	answer := func() {
		if err != nil {
			done(core.Position{}, err)
			return
		}
		p.hub.Dispatch(&core.Message{Subject: pub.Subject.Name, Topic: pub.Subject.Topic, Key: pub.Subject.Key,
			HasKey: pub.Subject.HasKey, Payload: pub.Payload, Headers: pub.Headers, Pos: pos, Time: time.Now()})
		done(pos, nil)
	}
	if p.hold {
		p.held = append(p.held, answer)
		return
	}
	p.wg.Add(1)
	go func() { defer p.wg.Done(); answer() }()
}

func (p *loopPublisher) heldCount() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.held)
}

func (p *loopPublisher) release() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.hold = false
	for _, a := range p.held {
		p.wg.Add(1)
		go func() { defer p.wg.Done(); a() }()
	}
	p.held = nil
}

type server struct {
	srv *ws.Server
	pub *loopPublisher
	hub *core.Hub
	url string
}

func newServer(t *testing.T, topics []string, pub *loopPublisher) *server {
	t.Helper()
	exp, err := core.NewExposure(topics, "")
	if err != nil {
		t.Fatal(err)
	}
	hub := core.NewHub(core.CacheConfig{})
	if pub == nil {
		pub = &loopPublisher{}
	}
	pub.hub = hub
	node := &core.Node{Hub: hub, Publisher: pub, Exposure: exp}
	srv := ws.NewServer(node, ws.Config{Logger: slog.New(slog.DiscardHandler)})
	mux := http.NewServeMux()
	mux.Handle("/v1/ws", srv)
	ts := httptest.NewServer(mux)
	t.Cleanup(func() {
		pub.release()
		eventually(t, "server connections to end", func() bool { return srv.Stats().Connections == 0 })
		ts.Close()
		pub.wg.Wait()
	})
	return &server{srv: srv, pub: pub, hub: hub, url: "ws" + strings.TrimPrefix(ts.URL, "http") + "/v1/ws"}
}

// inbox collects the messages a client's handler receives.
type inbox chan client.Message

func (in inbox) handler(m client.Message) { in <- m }

func (in inbox) next(t *testing.T) client.Message {
	t.Helper()
	select {
	case m := <-in:
		return m
	case <-time.After(waitFor):
		t.Fatal("no message")
		return client.Message{}
	}
}

func dial(t *testing.T, s *server, in inbox) *client.Client {
	t.Helper()
	var h func(client.Message)
	if in != nil {
		h = in.handler
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	c, err := client.Dial(ctx, s.url, h, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), waitFor)
	t.Cleanup(cancel)
	return c
}

func TestSubscribePublishUnsubscribe(t *testing.T) {
	s := newServer(t, nil, nil)
	in := make(inbox, 16)
	c := dial(t, s, in)
	if err := c.Subscribe(ctx(t), []string{"/demo/k", "/demo/+/deep"}, client.SubscribeOptions{}); err != nil {
		t.Fatal(err)
	}
	pos, err := c.Publish(ctx(t), "/demo/k", []byte("hello ✓"), map[string]string{"h": "v"})
	if err != nil || pos != "1-0-0" {
		t.Fatalf("Publish: %q, %v", pos, err)
	}
	m := in.next(t)
	if m.Subject != "/demo/k" || m.Payload != "hello ✓" || string(m.Data()) != "hello ✓" || m.Position != pos ||
		m.Snapshot || m.Headers["h"] != "v" || time.Since(m.Time).Abs() > time.Minute {
		t.Fatalf("got %+v", m)
	}

	// Binary payloads travel base64 encoded and come back as the same bytes.
	bin := []byte{0xff, 0x00, 0xfe}
	if _, err := c.Publish(ctx(t), "/demo/x/deep", bin, nil); err != nil {
		t.Fatal(err)
	}
	m = in.next(t)
	if m.Subject != "/demo/x/deep" || string(m.Data()) != string(bin) || m.Payload != "" || m.PayloadB64 == "" {
		t.Fatalf("binary message %+v", m)
	}

	if err := c.Unsubscribe(ctx(t), []string{"/demo/k"}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Publish(ctx(t), "/demo/k", []byte("not for us"), nil); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Publish(ctx(t), "/demo/y/deep", []byte("still subscribed"), nil); err != nil {
		t.Fatal(err)
	}
	// Messages arrive in Kafka's order: had the unsubscribed one been
	// delivered, it would come first.
	if m := in.next(t); m.Payload != "still subscribed" {
		t.Fatalf("after unsubscribe got %+v", m)
	}
}

func TestSnapshotOption(t *testing.T) {
	s := newServer(t, nil, nil)
	pub := dial(t, s, nil) // publish-only
	if _, err := pub.Publish(ctx(t), "/demo/s", []byte("cached"), nil); err != nil {
		t.Fatal(err)
	}
	in := make(inbox, 4)
	c := dial(t, s, in)
	if err := c.Subscribe(ctx(t), []string{"/demo/s"}, client.SubscribeOptions{}); err != nil {
		t.Fatal(err)
	}
	if m := in.next(t); !m.Snapshot || m.Payload != "cached" {
		t.Fatalf("want the snapshot, got %+v", m)
	}
	in2 := make(inbox, 4)
	c2 := dial(t, s, in2)
	if err := c2.Subscribe(ctx(t), []string{"/demo/s"}, client.SubscribeOptions{NoSnapshot: true, Standard: true}); err != nil {
		t.Fatal(err)
	}
	// The server acknowledges a subscribe before the subscription is in its
	// Hub (a bug, see ws.TestSubscriptionActiveWhenAcked): wait for it
	// before another connection publishes.
	eventually(t, "both subscriptions to be registered", func() bool { return s.srv.Stats().Subscriptions == 2 })
	if _, err := pub.Publish(ctx(t), "/demo/s", []byte("live"), nil); err != nil {
		t.Fatal(err)
	}
	if m := in2.next(t); m.Snapshot || m.Payload != "live" {
		t.Fatalf("NoSnapshot: first message %+v, want the live one", m)
	}
	if m := in.next(t); m.Snapshot || m.Payload != "live" {
		t.Fatalf("got %+v", m)
	}
}

func TestErrorsCarryCodes(t *testing.T) {
	pub := &loopPublisher{errFor: func(p core.Publication) error {
		if string(p.Payload) == "fail" {
			return fmt.Errorf("no broker: %w", core.ErrUnavailable)
		}
		return nil
	}}
	s := newServer(t, []string{"demo"}, pub)
	c := dial(t, s, nil)
	cases := []struct {
		name, code, subject string
		call                func() error
	}{
		{"unexposed publish", "not_exposed", "/secret/k", func() error {
			_, err := c.Publish(ctx(t), "/secret/k", []byte("x"), nil)
			return err
		}},
		{"invalid publish subject", "invalid_subject", "demo", func() error {
			_, err := c.Publish(ctx(t), "demo", []byte("x"), nil)
			return err
		}},
		{"wildcard publish", "invalid_pattern", "/demo/+", func() error {
			_, err := c.Publish(ctx(t), "/demo/+", []byte("x"), nil)
			return err
		}},
		{"kafka down", "kafka_unavailable", "/demo/k", func() error {
			_, err := c.Publish(ctx(t), "/demo/k", []byte("fail"), nil)
			return err
		}},
		{"unexposed subscribe", "not_exposed", "/secret/#", func() error {
			return c.Subscribe(ctx(t), []string{"/secret/#"}, client.SubscribeOptions{})
		}},
		{"no subjects", "missing_field", "", func() error {
			return c.Subscribe(ctx(t), nil, client.SubscribeOptions{})
		}},
		{"unsubscribe nothing", "missing_field", "", func() error {
			return c.Unsubscribe(ctx(t), []string{})
		}},
	}
	for _, tc := range cases {
		err := tc.call()
		var ce *client.Error
		if !errors.As(err, &ce) {
			t.Errorf("%s: got %v (%T), want *client.Error", tc.name, err, err)
			continue
		}
		if ce.Code != tc.code || ce.Subject != tc.subject || ce.Message == "" || !strings.Contains(err.Error(), tc.code) {
			t.Errorf("%s: got %+v (%q), want code %q subject %q", tc.name, ce, err, tc.code, tc.subject)
		}
		if errors.Is(err, client.ErrClosed) {
			t.Errorf("%s: a request error must not look like a closed connection", tc.name)
		}
	}
	// The connection is still fine.
	if _, err := c.Publish(ctx(t), "/demo/k", []byte("ok"), nil); err != nil {
		t.Fatal(err)
	}
}

func TestCallsAfterCloseReturnErrClosed(t *testing.T) {
	s := newServer(t, nil, nil)
	c := dial(t, s, nil)
	if c.Err() != nil {
		t.Fatalf("Err() = %v on an open client", c.Err())
	}
	c.Close()
	select {
	case <-c.Done():
	default:
		t.Fatal("Done not closed after Close")
	}
	if !errors.Is(c.Err(), client.ErrClosed) {
		t.Fatalf("Err() = %v", c.Err())
	}
	if err := c.Subscribe(ctx(t), []string{"/demo/k"}, client.SubscribeOptions{}); !errors.Is(err, client.ErrClosed) {
		t.Fatalf("Subscribe: %v", err)
	}
	if _, err := c.Publish(ctx(t), "/demo/k", []byte("x"), nil); !errors.Is(err, client.ErrClosed) {
		t.Fatalf("Publish: %v", err)
	}
	if err := c.Unsubscribe(ctx(t), []string{"/demo/k"}); !errors.Is(err, client.ErrClosed) {
		t.Fatalf("Unsubscribe: %v", err)
	}
	c.Close() // twice is harmless
}

// A server close ends the calls waiting for an answer with ErrClosed and
// the close code.
func TestServerCloseEndsPendingCalls(t *testing.T) {
	pub := &loopPublisher{hold: true}
	s := newServer(t, nil, pub)
	c := dial(t, s, nil)
	errc := make(chan error, 1)
	go func() {
		_, err := c.Publish(context.Background(), "/demo/k", []byte("never answered"), nil)
		errc <- err
	}()
	eventually(t, "the publish to reach Kafka", func() bool { return pub.heldCount() == 1 })
	sctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	s.srv.Shutdown(sctx) // gives up waiting for Kafka, closes with 4000
	select {
	case err := <-errc:
		if !errors.Is(err, client.ErrClosed) || !strings.Contains(err.Error(), "4000") {
			t.Fatalf("pending Publish: %v; want ErrClosed with code 4000", err)
		}
	case <-time.After(waitFor):
		t.Fatal("pending Publish did not end")
	}
	<-c.Done()
	if err := c.Err(); !errors.Is(err, client.ErrClosed) || !strings.Contains(err.Error(), "4000") {
		t.Fatalf("Err() = %v", err)
	}
}

func TestContextCancelsACall(t *testing.T) {
	pub := &loopPublisher{hold: true}
	s := newServer(t, nil, pub)
	c := dial(t, s, nil)
	cctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := c.Publish(cctx, "/demo/k", []byte("x"), nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v", err)
	}
	pub.release() // the late ack is dropped
	if _, err := c.Publish(ctx(t), "/demo/k", []byte("y"), nil); err != nil {
		t.Fatalf("client unusable after a canceled call: %v", err)
	}
}

func TestConcurrentPublishes(t *testing.T) {
	s := newServer(t, nil, nil)
	c := dial(t, s, nil)
	const n = 50
	var wg sync.WaitGroup
	positions := make([]string, n)
	errs := make([]error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			positions[i], errs[i] = c.Publish(ctx(t), fmt.Sprintf("/demo/k%d", i%5), []byte(fmt.Sprint(i)), nil)
		}()
	}
	wg.Wait()
	seen := map[string]bool{}
	for i := range positions {
		if errs[i] != nil || positions[i] == "" || seen[positions[i]] {
			t.Fatalf("publish %d: %q, %v", i, positions[i], errs[i])
		}
		seen[positions[i]] = true
	}
}

func TestDialErrors(t *testing.T) {
	s := newServer(t, nil, nil)
	cctx := ctx(t)
	if _, err := client.Dial(cctx, strings.TrimSuffix(s.url, "/v1/ws")+"/nope", nil, client.Options{}); err == nil ||
		!strings.Contains(err.Error(), "404") {
		t.Fatalf("dial a non-WebSocket path: %v, want an error naming HTTP 404", err)
	}
	if _, err := client.Dial(cctx, "ws://127.0.0.1:1/v1/ws", nil, client.Options{}); err == nil {
		t.Fatal("dial a closed port succeeded")
	}
}

// Regression, fixed (server, protocols/ws/server.go frameLimit): Publish sends text with
// encoding/json, which writes '<', '>' and '&' as 6-byte \u003c escapes and
// control characters as \u00XX. A 30000-byte HTML payload, well within the
// server's 64 KiB MaxPayload, becomes a 180 KB frame, over the server's read
// limit (MaxPayload*4/3 + 64 KiB ≈ 150 KiB): the server closes the
// connection (1009) instead of accepting the publish.
func TestPublishHTMLPayloadWithinMaxPayload(t *testing.T) {
	s := newServer(t, nil, nil)
	c := dial(t, s, nil)
	payload := []byte(strings.Repeat("<>&", 10000)) // 30000 bytes
	if _, err := c.Publish(ctx(t), "/demo/page", payload, nil); err != nil {
		t.Fatalf("publishing %d bytes of HTML (server MaxPayload 65536): %v", len(payload), err)
	}
}
