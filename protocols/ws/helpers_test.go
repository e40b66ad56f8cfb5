package ws

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/kedgehq/kedge/auth"
	"github.com/kedgehq/kedge/core"
)

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

// ---- fake publisher ------------------------------------------------------

type heldPub struct {
	p    core.Publication
	done func(core.Position, error)
}

// fakePublisher implements core.Publisher. It answers every publish
// asynchronously, from its own goroutine, with the next offset of partition
// 0 (epoch 1) or with errFor's error. With hold set it keeps the publishes
// until release. With loop set, a successful publish is dispatched into that
// Hub before it is acknowledged, as if it had come back from Kafka.
type fakePublisher struct {
	mu     sync.Mutex
	hold   bool
	held   []heldPub
	pubs   []core.Publication
	next   int64
	errFor func(core.Publication) error
	loop   *core.Hub
	wg     sync.WaitGroup // answers in flight
}

func (f *fakePublisher) Publish(_ context.Context, p core.Publication, done func(core.Position, error)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.pubs = append(f.pubs, p)
	if f.hold {
		f.held = append(f.held, heldPub{p, done})
		return
	}
	answer := f.answerLocked(p, done)
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		answer()
	}()
}

// answerLocked picks the answer to a publish and returns the function that
// gives it.
func (f *fakePublisher) answerLocked(p core.Publication, done func(core.Position, error)) func() {
	var err error
	if f.errFor != nil {
		err = f.errFor(p)
	}
	var pos core.Position
	if err == nil {
		pos = core.Position{Epoch: 1, Partition: 0, Offset: f.next}
		f.next++
	}
	loop := f.loop
	return func() {
		if err == nil && loop != nil {
			loop.Dispatch(&core.Message{Subject: p.Subject.Name, Topic: p.Subject.Topic, Key: p.Subject.Key,
				HasKey: p.Subject.HasKey, Payload: p.Payload, Headers: p.Headers, Pos: pos,
				Time: time.Now()})
		}
		done(pos, err)
	}
}

func (f *fakePublisher) setErrFor(fn func(core.Publication) error) {
	f.mu.Lock()
	f.errFor = fn
	f.mu.Unlock()
}

func (f *fakePublisher) published() []core.Publication {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]core.Publication(nil), f.pubs...)
}

func (f *fakePublisher) setHold(hold bool) {
	f.mu.Lock()
	f.hold = hold
	f.mu.Unlock()
}

// release answers every held publish, in order, from one goroutine, and
// stops holding.
func (f *fakePublisher) release() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.hold = false
	var answers []func()
	for _, h := range f.held {
		answers = append(answers, f.answerLocked(h.p, h.done))
	}
	f.held = nil
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		for _, a := range answers {
			a()
		}
	}()
}

func (f *fakePublisher) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.pubs)
}

func (f *fakePublisher) heldCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.held)
}

// ---- server harness ------------------------------------------------------

type harness struct {
	t    testing.TB
	hub  *core.Hub
	pub  *fakePublisher
	node *core.Node
	srv  *Server
	ts   *httptest.Server
	url  string
}

type harnessOpts struct {
	source     core.Source
	exposure   *core.Exposure
	cache      core.CacheConfig
	maxPayload int // core.Node.MaxPayload
	auth       *auth.Auth
}

// newHarness serves a Server over a real Hub and a fake publisher on an
// httptest server. Its cleanup waits for every connection to end, so a
// connection the server fails to close fails the test.
func newHarness(t testing.TB, cfg Config, opts ...func(*harnessOpts)) *harness {
	t.Helper()
	o := harnessOpts{cache: core.CacheConfig{Size: 16}}
	for _, opt := range opts {
		opt(&o)
	}
	if o.exposure == nil {
		e, err := core.NewExposure(nil, "")
		if err != nil {
			t.Fatal(err)
		}
		o.exposure = e
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	h := &harness{t: t, hub: core.NewHub(o.cache), pub: &fakePublisher{}}
	h.node = &core.Node{Hub: h.hub, Publisher: h.pub, Exposure: o.exposure, MaxPayload: o.maxPayload,
		Source: o.source, Auth: o.auth}
	h.srv = NewServer(h.node, cfg)
	mux := http.NewServeMux()
	mux.Handle("/v1/ws", h.srv)
	h.ts = httptest.NewServer(mux)
	h.url = "ws" + strings.TrimPrefix(h.ts.URL, "http") + "/v1/ws"
	t.Cleanup(func() {
		h.pub.release()
		deadline := time.Now().Add(waitFor)
		for h.srv.Stats().Connections != 0 && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
		if n := h.srv.Stats().Connections; n != 0 {
			t.Errorf("cleanup: %d server connections still open", n)
		}
		h.ts.Close()
		h.pub.wg.Wait()
	})
	return h
}

func exposing(topics ...string) func(*harnessOpts) {
	return func(o *harnessOpts) {
		e, err := core.NewExposure(topics, "")
		if err != nil {
			panic(err)
		}
		o.exposure = e
	}
}

func cacheSize(n int) func(*harnessOpts) {
	return func(o *harnessOpts) { o.cache.Size = n }
}

func nodeMaxPayload(n int) func(*harnessOpts) {
	return func(o *harnessOpts) { o.maxPayload = n }
}

// msg builds a message of subject as the kafka package would dispatch it.
func msg(t testing.TB, subject string, off int64, payload string) *core.Message {
	t.Helper()
	s, err := core.ParseSubject(subject)
	if err != nil {
		t.Fatal(err)
	}
	return &core.Message{Subject: s.Name, Topic: s.Topic, Key: s.Key, HasKey: s.HasKey,
		Payload: []byte(payload), Pos: core.Position{Epoch: 1, Partition: 0, Offset: off},
		Time: time.Now()} // an older time would be expired by the cache at once
}

// serverConns returns the server's live connections.
func (h *harness) serverConns() []*conn {
	h.srv.mu.Lock()
	defer h.srv.mu.Unlock()
	var cs []*conn
	for c := range h.srv.conns {
		cs = append(cs, c)
	}
	return cs
}

// ---- gorilla test client -------------------------------------------------

// srvFrame is any server frame, decoded strictly.
type srvFrame struct {
	Op         string            `json:"op"`
	ID         json.RawMessage   `json:"id"`
	Code       string            `json:"code"`
	Subject    string            `json:"subject"`
	Message    string            `json:"message"`
	Position   string            `json:"position"`
	Payload    *string           `json:"payload"`
	PayloadB64 *string           `json:"payload_b64"`
	Snapshot   *bool             `json:"snapshot"`
	Time       string            `json:"time"`
	Headers    map[string]string `json:"headers"`
	HeadersB64 map[string]string `json:"headers_b64"`
	Cursors    map[string]string `json:"cursors"`
	Cursor     string            `json:"cursor"`
	Reason     string            `json:"reason"`

	raw  map[string]any
	data []byte
}

func (f srvFrame) String() string { return string(f.data) }

func (f srvFrame) payload() string {
	if f.Payload == nil {
		return ""
	}
	return *f.Payload
}

func decodeFrame(data []byte) (srvFrame, error) {
	var f srvFrame
	if !json.Valid(data) {
		return f, fmt.Errorf("server frame is not valid JSON: %q", data)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return f, fmt.Errorf("server frame %q: %w", data, err)
	}
	if err := json.Unmarshal(data, &f.raw); err != nil {
		return f, err
	}
	f.data = data
	return f, nil
}

type testConn struct {
	t  testing.TB
	h  *harness
	ws *websocket.Conn
	id int
}

func (h *harness) dial() *testConn {
	h.t.Helper()
	return h.dialWith(websocket.DefaultDialer)
}

func (h *harness) dialWith(d *websocket.Dialer) *testConn {
	h.t.Helper()
	ws, resp, err := d.Dial(h.url, nil)
	if err != nil {
		h.t.Fatalf("dial: %v", err)
	}
	_ = resp.Body.Close()
	c := &testConn{t: h.t, h: h, ws: ws}
	h.t.Cleanup(func() { _ = ws.Close() })
	return c
}

func (c *testConn) sendRaw(s string) {
	c.t.Helper()
	if err := c.ws.WriteMessage(websocket.TextMessage, []byte(s)); err != nil {
		c.t.Fatalf("send %.100q (%d bytes): %v", s, len(s), err)
	}
}

// send marshals v; a map gets a fresh numeric id unless it has one.
func (c *testConn) send(v map[string]any) int {
	c.t.Helper()
	if _, ok := v["id"]; !ok {
		c.id++
		v["id"] = c.id
	}
	b, err := json.Marshal(v)
	if err != nil {
		c.t.Fatal(err)
	}
	c.sendRaw(string(b))
	id, _ := v["id"].(int)
	return id
}

// next reads one frame, failing the test unless it is a valid JSON text frame.
func (c *testConn) next() srvFrame {
	c.t.Helper()
	_ = c.ws.SetReadDeadline(time.Now().Add(waitFor))
	typ, data, err := c.ws.ReadMessage()
	if err != nil {
		c.t.Fatalf("read: %v", err)
	}
	if typ != websocket.TextMessage {
		c.t.Fatalf("got frame type %d, want text", typ)
	}
	f, err := decodeFrame(data)
	if err != nil {
		c.t.Fatal(err)
	}
	return f
}

// expect reads the next frame and checks its op and (when id > 0) its id.
func (c *testConn) expect(op string, id int) srvFrame {
	c.t.Helper()
	f := c.next()
	if f.Op != op {
		c.t.Fatalf("got %s, want op %q", f, op)
	}
	if id > 0 && string(f.ID) != fmt.Sprint(id) {
		c.t.Fatalf("got %s, want id %d", f, id)
	}
	return f
}

// ping checks that the connection still serves requests: the very next
// frame must be the pong with the ping's id.
func (c *testConn) ping() {
	c.t.Helper()
	id := c.send(map[string]any{"op": "ping"})
	c.expect("pong", id)
}

// subscribe subscribes and waits until the subscriptions are in the Hub.
func (c *testConn) subscribe(subjects ...string) {
	c.t.Helper()
	id := c.send(map[string]any{"op": "subscribe", "subjects": subjects})
	c.expect("ack", id)
	c.waitSubscribed(subjects...)
}

// waitSubscribed waits until this connection's server side holds a
// subscription for each filter. The server acknowledges a subscribe before
// it registers the subscription in the Hub (see
// TestSubscriptionActiveWhenAcked), so a test that dispatches right after
// the ack must wait for this, or it loses messages.
func (c *testConn) waitSubscribed(filters ...string) {
	c.t.Helper()
	local := c.ws.LocalAddr().String()
	eventually(c.t, waitFor, fmt.Sprintf("subscriptions %q to be registered", filters), func() bool {
		for _, sc := range c.h.serverConns() {
			if sc.ws.RemoteAddr().String() != local {
				continue
			}
			sc.mu.Lock()
			defer sc.mu.Unlock()
			for _, f := range filters {
				if sc.subs[f] == nil {
					return false
				}
			}
			return true
		}
		return false
	})
}

// closeCode reads until the connection ends and returns the close code; it
// fails the test if the connection ends without a close frame.
func (c *testConn) closeCode() int {
	c.t.Helper()
	_ = c.ws.SetReadDeadline(time.Now().Add(waitFor))
	for {
		_, _, err := c.ws.ReadMessage()
		if err == nil {
			continue
		}
		var ce *websocket.CloseError
		if errors.As(err, &ce) {
			return ce.Code
		}
		c.t.Fatalf("connection ended without a close frame: %v", err)
	}
}

// ---- raw client ----------------------------------------------------------

// rawDial performs the WebSocket handshake by hand and returns the TCP
// connection: a client that never answers anything unless the test does.
func (h *harness) rawDial() (net.Conn, *bufio.Reader) {
	h.t.Helper()
	nc, err := net.Dial("tcp", h.ts.Listener.Addr().String())
	if err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(func() { _ = nc.Close() })
	key := make([]byte, 16)
	_, _ = rand.Read(key)
	if _, err := fmt.Fprintf(nc, "GET /v1/ws HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n",
		h.ts.Listener.Addr(), base64.StdEncoding.EncodeToString(key)); err != nil {
		h.t.Fatal(err)
	}
	br := bufio.NewReader(nc)
	_ = nc.SetReadDeadline(time.Now().Add(waitFor))
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		h.t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		h.t.Fatalf("handshake: %s", resp.Status)
	}
	return nc, br
}

// readRawFrame reads one unmasked server frame.
func readRawFrame(r io.Reader) (op byte, payload []byte, err error) {
	var hdr [2]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return 0, nil, err
	}
	if hdr[0]&0x80 == 0 {
		return 0, nil, fmt.Errorf("frame without FIN: %x", hdr)
	}
	if hdr[1]&0x80 != 0 {
		return 0, nil, fmt.Errorf("server frame is masked")
	}
	n := uint64(hdr[1] & 0x7F)
	switch n {
	case 126:
		var b [2]byte
		if _, err := io.ReadFull(r, b[:]); err != nil {
			return 0, nil, err
		}
		n = uint64(binary.BigEndian.Uint16(b[:]))
	case 127:
		var b [8]byte
		if _, err := io.ReadFull(r, b[:]); err != nil {
			return 0, nil, err
		}
		n = binary.BigEndian.Uint64(b[:])
	}
	payload = make([]byte, n)
	if _, err := io.ReadFull(r, payload); err != nil {
		return 0, nil, err
	}
	return hdr[0] & 0x0F, payload, nil
}

// writeMaskedFrame writes one client frame (clients must mask).
func writeMaskedFrame(w io.Writer, op byte, payload []byte) error {
	b := []byte{0x80 | op}
	switch n := len(payload); {
	case n < 126:
		b = append(b, 0x80|byte(n))
	case n <= 0xFFFF:
		b = binary.BigEndian.AppendUint16(append(b, 0x80|126), uint16(n))
	default:
		b = binary.BigEndian.AppendUint64(append(b, 0x80|127), uint64(n))
	}
	mask := [4]byte{1, 2, 3, 4}
	b = append(b, mask[:]...)
	for i, c := range payload {
		b = append(b, c^mask[i%4])
	}
	_, err := w.Write(b)
	return err
}

// parseFrame splits one complete server frame as built by frame().
func parseFrame(t testing.TB, f []byte) (op byte, payload []byte) {
	t.Helper()
	op, payload, err := readRawFrame(bytes.NewReader(f))
	if err != nil {
		t.Fatalf("frame %q: %v", f, err)
	}
	if hdr := len(f) - len(payload); hdr != len(appendFrameHeader(nil, op, len(payload))) {
		t.Fatalf("frame of %d payload bytes has %d header bytes, or trailing bytes", len(payload), hdr)
	}
	return op, payload
}
