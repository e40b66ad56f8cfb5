package client_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"go.uber.org/goleak"

	"github.com/kedgehq/kedge/core"
	"github.com/kedgehq/kedge/protocols/ws"
	"github.com/kedgehq/kedge/protocols/ws/client"
)

// TestMain serves the examples' kedge (kedgeURL) and checks that no
// goroutine (client loops, server connections, fake publisher answers)
// outlives the tests. Nothing is ignored.
func TestMain(m *testing.M) {
	stop := serveExamples()
	code := m.Run()
	stop()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// serveExamples points kedgeURL at an in-process kedge endpoint.
func serveExamples() (stop func()) {
	exp, _ := core.NewExposure(nil, "")
	hub := core.NewHub(core.CacheConfig{})
	hub.Begin("demo", 1, 0, 0)
	pub := &loopPublisher{hub: hub}
	srv := ws.NewServer(&core.Node{Hub: hub, Publisher: pub, Exposure: exp}, ws.Config{Logger: slog.New(slog.DiscardHandler)})
	ts := httptest.NewServer(srv)
	kedgeURL = "ws" + strings.TrimPrefix(ts.URL, "http") + "/v1/ws"
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		ts.Close()
		pub.wg.Wait()
	}
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

// server is a kedge WebSocket endpoint over a real Hub that can be
// restarted: restart closes every connection (code 4000) and serves new ones
// from a fresh ws.Server over the same Hub, as a restarted kedge would with
// its cache recovered from Kafka.
type server struct {
	node *core.Node
	cur  atomic.Pointer[ws.Server]
	pub  *loopPublisher
	hub  *core.Hub
	url  string
	down atomic.Bool // refuse handshakes (503) while set
}

func (s *server) srv() *ws.Server { return s.cur.Load() }

func (s *server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if s.down.Load() {
		http.Error(w, "restarting", http.StatusServiceUnavailable)
		return
	}
	s.srv().ServeHTTP(w, r)
}

// stop closes every connection and refuses new ones until start.
func (s *server) stop(t *testing.T) {
	s.down.Store(true)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	old := s.srv()
	old.Shutdown(ctx)
	eventually(t, "old connections to end", func() bool { return old.Stats().Connections == 0 })
}

func (s *server) start() {
	s.cur.Store(ws.NewServer(s.node, ws.Config{Logger: slog.New(slog.DiscardHandler)}))
	s.down.Store(false)
}

func newServer(t *testing.T, topics []string, pub *loopPublisher) *server {
	t.Helper()
	exp, err := core.NewExposure(topics, "")
	if err != nil {
		t.Fatal(err)
	}
	hub := core.NewHub(core.CacheConfig{})
	hub.Begin("demo", 1, 0, 0)
	if pub == nil {
		pub = &loopPublisher{}
	}
	pub.hub = hub
	s := &server{node: &core.Node{Hub: hub, Publisher: pub, Exposure: exp}, pub: pub, hub: hub}
	s.start()
	mux := http.NewServeMux()
	mux.Handle("/v1/ws", s)
	ts := httptest.NewServer(mux)
	t.Cleanup(func() {
		pub.release()
		eventually(t, "server connections to end", func() bool { return s.srv().Stats().Connections == 0 })
		ts.Close()
		pub.wg.Wait()
		hub.Wait()
	})
	s.url = "ws" + strings.TrimPrefix(ts.URL, "http") + "/v1/ws"
	return s
}

// dispatch puts a message into the Hub as if it came from Kafka.
func (s *server) dispatch(subject, payload string) {
	s.pub.mu.Lock()
	off := s.pub.next
	s.pub.next++
	s.pub.mu.Unlock()
	subj, _ := core.ParseSubject(subject)
	s.hub.Dispatch(&core.Message{Subject: subject, Topic: subj.Topic, Key: subj.Key, HasKey: subj.HasKey,
		Payload: []byte(payload), Pos: core.Position{Epoch: 1, Offset: off}, Time: time.Now()})
}

// inbox collects the messages a handler receives.
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

func (in inbox) quiet(t *testing.T) {
	t.Helper()
	select {
	case m := <-in:
		t.Fatalf("unexpected message %+v", m)
	case <-time.After(100 * time.Millisecond):
	}
}

func connect(t *testing.T, s *server, opts client.Options) *client.Client {
	t.Helper()
	if opts.MinBackoff == 0 {
		opts.MinBackoff, opts.MaxBackoff = 5*time.Millisecond, 50*time.Millisecond
	}
	c, err := client.Connect(ctx(t), s.url, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), waitFor)
	t.Cleanup(cancel)
	return c
}

func subscribe(t *testing.T, c *client.Client, subject string, in inbox, opts client.SubscribeOptions) *client.Subscription {
	t.Helper()
	sub, err := c.Subscribe(ctx(t), subject, in.handler, opts)
	if err != nil {
		t.Fatal(err)
	}
	return sub
}

func TestSubscribePublishUnsubscribe(t *testing.T) {
	s := newServer(t, nil, nil)
	in, deep := make(inbox, 16), make(inbox, 16)
	c := connect(t, s, client.Options{})
	sub := subscribe(t, c, "/demo/k", in, client.SubscribeOptions{})
	subscribe(t, c, "/demo/+/deep", deep, client.SubscribeOptions{})
	pos, err := c.Publish(ctx(t), "/demo/k", []byte("hello ✓"), map[string]string{"h": "v"})
	if err != nil || pos != "1-0-0" {
		t.Fatalf("Publish: %q, %v", pos, err)
	}
	m := in.next(t)
	if m.Subject != "/demo/k" || string(m.Payload) != "hello ✓" || m.Position != pos ||
		m.Snapshot || m.Headers["h"] != "v" || time.Since(m.Time).Abs() > time.Minute {
		t.Fatalf("got %+v", m)
	}
	if sub.Cursor() != "1-0-0" {
		t.Fatalf("cursor %q after the message at 1-0-0", sub.Cursor())
	}
	// Binary payloads travel base64 encoded and come back as the same bytes.
	bin := []byte{0xff, 0x00, 0xfe}
	if _, err := c.Publish(ctx(t), "/demo/x/deep", bin, nil); err != nil {
		t.Fatal(err)
	}
	if m := deep.next(t); m.Subject != "/demo/x/deep" || string(m.Payload) != string(bin) {
		t.Fatalf("binary message %+v", m)
	}
	if err := sub.Unsubscribe(ctx(t)); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Publish(ctx(t), "/demo/k", []byte("not for us"), nil); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Publish(ctx(t), "/demo/y/deep", []byte("still subscribed"), nil); err != nil {
		t.Fatal(err)
	}
	if m := deep.next(t); string(m.Payload) != "still subscribed" {
		t.Fatalf("got %+v", m)
	}
	in.quiet(t)
}

// Overlapping subscriptions each get a message once, though kedge sends it
// once per subscription.
func TestOverlappingSubscriptions(t *testing.T) {
	s := newServer(t, nil, nil)
	a, b := make(inbox, 4), make(inbox, 4)
	c := connect(t, s, client.Options{})
	subscribe(t, c, "/demo/k", a, client.SubscribeOptions{})
	subscribe(t, c, "/demo/+", b, client.SubscribeOptions{})
	s.dispatch("/demo/k", "one")
	if m := a.next(t); string(m.Payload) != "one" {
		t.Fatal(m)
	}
	if m := b.next(t); string(m.Payload) != "one" {
		t.Fatal(m)
	}
	a.quiet(t)
	b.quiet(t)
}

func TestSnapshotOption(t *testing.T) {
	s := newServer(t, nil, nil)
	s.dispatch("/demo/s", "cached")
	in := make(inbox, 4)
	c := connect(t, s, client.Options{})
	subscribe(t, c, "/demo/s", in, client.SubscribeOptions{})
	if m := in.next(t); !m.Snapshot || string(m.Payload) != "cached" {
		t.Fatalf("want the snapshot, got %+v", m)
	}
	in2 := make(inbox, 4)
	subscribe(t, connect(t, s, client.Options{}), "/demo/s", in2, client.SubscribeOptions{NoSnapshot: true, Standard: true})
	s.dispatch("/demo/s", "live")
	if m := in2.next(t); m.Snapshot || string(m.Payload) != "live" {
		t.Fatalf("NoSnapshot: first message %+v, want the live one", m)
	}
	if m := in.next(t); m.Snapshot || string(m.Payload) != "live" {
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
	c := connect(t, s, client.Options{})
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
			_, err := c.Subscribe(ctx(t), "/secret/#", func(client.Message) {}, client.SubscribeOptions{})
			return err
		}},
		{"invalid subscribe (checked locally)", "invalid_subject", "nope", func() error {
			_, err := c.Subscribe(ctx(t), "nope", func(client.Message) {}, client.SubscribeOptions{})
			return err
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
	}
	if _, err := c.Publish(ctx(t), "/demo/k", []byte("ok"), nil); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Subscribe(ctx(t), "/demo/k", func(client.Message) {}, client.SubscribeOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Subscribe(ctx(t), "/demo/k", func(client.Message) {}, client.SubscribeOptions{}); !errors.Is(err, client.ErrAlreadySubscribed) {
		t.Fatalf("second Subscribe: %v", err)
	}
}

func TestCallsAfterCloseReturnErrClosed(t *testing.T) {
	s := newServer(t, nil, nil)
	c := connect(t, s, client.Options{})
	if c.Err() != nil {
		t.Fatalf("Err() = %v on an open client", c.Err())
	}
	if err := c.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	select {
	case <-c.Done():
	default:
		t.Fatal("Done not closed after Close")
	}
	if !errors.Is(c.Err(), client.ErrClosed) {
		t.Fatalf("Err() = %v", c.Err())
	}
	if _, err := c.Subscribe(ctx(t), "/demo/k", func(client.Message) {}, client.SubscribeOptions{}); !errors.Is(err, client.ErrClosed) {
		t.Fatalf("Subscribe: %v", err)
	}
	if _, err := c.Publish(ctx(t), "/demo/k", []byte("x"), nil); !errors.Is(err, client.ErrClosed) {
		t.Fatalf("Publish: %v", err)
	}
	if err := c.Close(); err != nil { // twice is harmless
		t.Fatalf("second Close: %v", err)
	}
}

// The heart of the SDK: across server restarts the application's handler
// sees every message exactly once, in order, with no code beyond the API.
func TestReconnectResumesWithoutLossOrDuplicate(t *testing.T) {
	s := newServer(t, nil, nil)
	in := make(inbox, 1000)
	var connects atomic.Int64
	c := connect(t, s, client.Options{OnConnect: func() { connects.Add(1) }})
	subscribe(t, c, "/demo/+", in, client.SubscribeOptions{NoSnapshot: true})
	next := 0
	for round := range 3 {
		for range 10 {
			s.dispatch(fmt.Sprintf("/demo/k%d", next%3), strconv.Itoa(next))
			next++
		}
		s.stop(t) // clients are closed with 4000 and reconnect
		for range 10 {
			s.dispatch(fmt.Sprintf("/demo/k%d", next%3), strconv.Itoa(next)) // missed while away
			next++
		}
		s.start()
		eventually(t, "reconnection", func() bool { return connects.Load() == int64(round+2) })
	}
	for want := range next {
		if m := in.next(t); string(m.Payload) != strconv.Itoa(want) {
			t.Fatalf("message %d: got %q", want, m.Payload)
		}
	}
	in.quiet(t)
}

// Publishes made while disconnected wait and are acknowledged after
// reconnecting; past the bound they fail at once; one in flight when the
// connection drops fails with ErrConnectionLost.
func TestOfflinePublishQueue(t *testing.T) {
	s := newServer(t, nil, nil)
	var disconnected atomic.Bool
	c := connect(t, s, client.Options{MaxQueue: 2, OnDisconnect: func(error) { disconnected.Store(true) }})
	s.stop(t)
	eventually(t, "the client to notice", disconnected.Load)
	results := make(chan error, 2)
	for i := range 2 {
		go func() {
			_, err := c.Publish(ctx(t), "/demo/q", []byte(strconv.Itoa(i)), nil)
			results <- err
		}()
	}
	eventually(t, "two queued publishes", func() bool { return c.Queued() == 2 })
	if _, err := c.Publish(ctx(t), "/demo/q", []byte("third"), nil); !errors.Is(err, client.ErrQueueFull) {
		t.Fatalf("third publish while the queue is full: %v", err)
	}
	s.start()
	for range 2 {
		if err := <-results; err != nil {
			t.Fatalf("queued publish: %v", err)
		}
	}

	s.pub.mu.Lock()
	s.pub.hold = true
	s.pub.mu.Unlock()
	lost := make(chan error, 1)
	go func() {
		_, err := c.Publish(context.Background(), "/demo/q", []byte("in flight"), nil)
		lost <- err
	}()
	eventually(t, "the publish to reach Kafka", func() bool { return s.pub.heldCount() == 1 })
	s.stop(t)
	if err := <-lost; !errors.Is(err, client.ErrConnectionLost) {
		t.Fatalf("in-flight publish: %v, want ErrConnectionLost", err)
	}
	s.start()
}

// A cursor kedge cannot serve (here: another epoch) gives OnReset, then the
// subscription goes on with the snapshot and live messages.
func TestOnReset(t *testing.T) {
	s := newServer(t, nil, nil)
	s.dispatch("/demo/r", "latest")
	store := client.NewMemoryStore()
	store.Set("/demo/r", "9-0-0") // from a topic long gone
	resets := make(chan string, 1)
	in := make(inbox, 4)
	c := connect(t, s, client.Options{Store: store})
	subscribe(t, c, "/demo/r", in, client.SubscribeOptions{OnReset: func(r string) { resets <- r }})
	select {
	case r := <-resets:
		if !strings.Contains(r, "re-created") {
			t.Fatalf("reason %q", r)
		}
	case <-time.After(waitFor):
		t.Fatal("no reset")
	}
	if m := in.next(t); !m.Snapshot || string(m.Payload) != "latest" {
		t.Fatalf("after reset: %+v", m)
	}
	if got, _ := store.Get("/demo/r"); !strings.HasPrefix(got, "1-") {
		t.Fatalf("stored cursor after reset %q, want one of epoch 1", got)
	}
}

// A handler may call the Client (its replies are read on another goroutine).
func TestHandlerMayCallClient(t *testing.T) {
	s := newServer(t, nil, nil)
	c := connect(t, s, client.Options{})
	echoed := make(inbox, 1)
	subscribe(t, c, "/demo/echo", echoed, client.SubscribeOptions{})
	_, err := c.Subscribe(ctx(t), "/demo/in", func(m client.Message) {
		if _, err := c.Publish(context.Background(), "/demo/echo", m.Payload, nil); err != nil {
			t.Error(err)
		}
	}, client.SubscribeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	s.dispatch("/demo/in", "ping")
	if m := echoed.next(t); string(m.Payload) != "ping" {
		t.Fatal(m)
	}
}

// A close code that says "do not reconnect" stops the Client.
func TestFatalCloseStops(t *testing.T) {
	up := websocket.Upgrader{}
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		_ = conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(4502, "unauthorized"), time.Now().Add(time.Second))
		_ = conn.Close()
	}))
	defer ts.Close()
	c, err := client.Connect(ctx(t), "ws"+strings.TrimPrefix(ts.URL, "http"), client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Close() }()
	select {
	case <-c.Done():
	case <-time.After(waitFor):
		t.Fatal("client kept reconnecting after code 4502")
	}
	var ce *client.CloseError
	if !errors.As(c.Err(), &ce) || ce.Code != 4502 || ce.Reconnect() {
		t.Fatalf("Err() = %v", c.Err())
	}
}

func TestContextCancelsACall(t *testing.T) {
	pub := &loopPublisher{hold: true}
	s := newServer(t, nil, pub)
	c := connect(t, s, client.Options{})
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
	c := connect(t, s, client.Options{})
	const n = 50
	var wg sync.WaitGroup
	positions := make([]string, n)
	errs := make([]error, n)
	for i := 0; i < n; i++ {
		wg.Go(func() {
			positions[i], errs[i] = c.Publish(ctx(t), fmt.Sprintf("/demo/k%d", i%5), []byte(fmt.Sprint(i)), nil)
		})
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

func TestConnectErrors(t *testing.T) {
	s := newServer(t, nil, nil)
	if _, err := client.Connect(ctx(t), strings.TrimSuffix(s.url, "/v1/ws")+"/nope", client.Options{}); err == nil ||
		!strings.Contains(err.Error(), "404") {
		t.Fatalf("connect to a non-WebSocket path: %v, want an error naming HTTP 404 at once", err)
	}
	short, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if _, err := client.Connect(short, "ws://127.0.0.1:1/v1/ws", client.Options{MinBackoff: time.Millisecond}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("connect to a closed port: %v, want the context's deadline after retries", err)
	}
}

// Regression: a 30000-byte HTML payload (6-byte JSON escapes) within the
// server's 64 KiB MaxPayload must not exceed its read limit.
func TestPublishHTMLPayloadWithinMaxPayload(t *testing.T) {
	s := newServer(t, nil, nil)
	c := connect(t, s, client.Options{})
	payload := []byte(strings.Repeat("<>&", 10000))
	if _, err := c.Publish(ctx(t), "/demo/page", payload, nil); err != nil {
		t.Fatalf("publishing %d bytes of HTML (server MaxPayload 65536): %v", len(payload), err)
	}
}

// Which close codes bring the client back: the same rule as the TypeScript
// client's (closeCode in protocols/ws/js/src/index.ts).
func TestCloseErrorReconnect(t *testing.T) {
	for code, want := range map[int]bool{
		1000: true, 1001: true, 1006: true, 1011: true, 4000: true, 4001: true, 4499: true,
		1009: false, 4500: false, 4501: false, 4502: false, 4999: false,
	} {
		if got := (&client.CloseError{Code: code}).Reconnect(); got != want {
			t.Errorf("close %d: Reconnect() = %v, want %v", code, got, want)
		}
	}
}
