package ws

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/kedgehq/kedge/core"
)

// expectMessage reads the next frame and checks it is the given message.
func (c *testConn) expectMessage(subject, payload string, off int64, snapshot bool) srvFrame {
	c.t.Helper()
	f := c.expect("message", 0)
	want := fmt.Sprintf("1-0-%d", off)
	if f.Subject != subject || f.payload() != payload || f.Position != want || f.Snapshot == nil || *f.Snapshot != snapshot {
		c.t.Fatalf("got %s, want message %s %q at %s snapshot=%v", f, subject, payload, want, snapshot)
	}
	return f
}

func TestSubscribeAckSnapshotThenLiveInOrder(t *testing.T) {
	h := newHarness(t, Config{})
	h.hub.Dispatch(msg(t, "/demo/k1", 0, "old"))
	h.hub.Dispatch(msg(t, "/demo/k1", 1, "latest"))
	h.hub.Dispatch(msg(t, "/demo/k2", 2, "other subject"))

	c := h.dial()
	c.subscribe("/demo/k1") // the ack is the first frame, before the snapshot
	f := c.expectMessage("/demo/k1", "latest", 1, true)
	if tm, err := time.Parse("2006-01-02T15:04:05.000Z", f.Time); err != nil || time.Since(tm).Abs() > time.Minute {
		t.Fatalf("time %q: want the message time in UTC with milliseconds (%v)", f.Time, err)
	}
	for i := int64(3); i < 10; i++ {
		h.hub.Dispatch(msg(t, "/demo/k1", i, fmt.Sprint("live ", i)))
		h.hub.Dispatch(msg(t, "/demo/k2", 100+i, "not subscribed"))
	}
	for i := int64(3); i < 10; i++ {
		c.expectMessage("/demo/k1", fmt.Sprint("live ", i), i, false)
	}
	c.ping() // and nothing else was sent

	// snapshot:false skips the cached message: the pong follows the ack.
	c2 := h.dial()
	id := c2.send(map[string]any{"op": "subscribe", "subjects": []string{"/demo/k1"}, "snapshot": false})
	c2.expect("ack", id)
	c2.waitSubscribed("/demo/k1")
	c2.ping()
	h.hub.Dispatch(msg(t, "/demo/k1", 10, "both"))
	c.expectMessage("/demo/k1", "both", 10, false)
	c2.expectMessage("/demo/k1", "both", 10, false)
}

func TestPatternSubscribe(t *testing.T) {
	h := newHarness(t, Config{})
	h.hub.Dispatch(msg(t, "/demo/a", 0, "a0"))
	h.hub.Dispatch(msg(t, "/other/a", 1, "other topic"))

	c := h.dial()
	c.subscribe("/demo/+")
	c.expectMessage("/demo/a", "a0", 0, true)

	all := h.dial()
	id := all.send(map[string]any{"op": "subscribe", "subjects": []string{"/demo/#"}, "snapshot": false})
	all.expect("ack", id)
	all.waitSubscribed("/demo/#")

	h.hub.Dispatch(msg(t, "/demo/b", 2, "b"))
	h.hub.Dispatch(msg(t, "/demo/a/deep", 3, "deep"))
	h.hub.Dispatch(msg(t, "/other/x", 4, "other"))
	h.hub.Dispatch(msg(t, "/demo", 5, "null key"))
	h.hub.Dispatch(msg(t, "/demo/a", 6, "a1"))

	c.expectMessage("/demo/b", "b", 2, false)
	c.expectMessage("/demo/a", "a1", 6, false)
	c.ping()
	all.expectMessage("/demo/b", "b", 2, false)
	all.expectMessage("/demo/a/deep", "deep", 3, false)
	all.expectMessage("/demo", "null key", 5, false)
	all.expectMessage("/demo/a", "a1", 6, false)
	all.ping()
}

func TestUnsubscribeStopsDelivery(t *testing.T) {
	h := newHarness(t, Config{})
	c := h.dial()
	c.subscribe("/demo/a", "/demo/+")
	h.hub.Dispatch(msg(t, "/demo/a", 0, "twice"))
	c.expectMessage("/demo/a", "twice", 0, false)
	c.expectMessage("/demo/a", "twice", 0, false)

	id := c.send(map[string]any{"op": "unsubscribe", "subjects": []string{"/demo/+"}})
	c.expect("ack", id)
	h.hub.Dispatch(msg(t, "/demo/a", 1, "once"))
	c.expectMessage("/demo/a", "once", 1, false)

	id = c.send(map[string]any{"op": "unsubscribe", "subjects": []string{"/demo/a", "/never/subscribed"}})
	c.expect("ack", id)
	h.hub.Dispatch(msg(t, "/demo/a", 2, "none"))
	c.ping() // the pong comes next: nothing was delivered
	if n := h.srv.Stats().Subscriptions; n != 0 {
		t.Fatalf("Stats().Subscriptions = %d after unsubscribing everything", n)
	}
	if n := h.hub.Stats().Subscriptions; n != 0 {
		t.Fatalf("hub holds %d subscriptions after unsubscribing everything", n)
	}
}

func TestPublishAckOnlyAfterKafka(t *testing.T) {
	h := newHarness(t, Config{})
	h.pub.setHold(true)
	c := h.dial()
	id := c.send(map[string]any{"op": "publish", "subject": "/demo/k1", "payload": "hello", "headers": map[string]string{"h": "v"}})
	eventually(t, waitFor, "the publish to reach the publisher", func() bool { return h.pub.heldCount() == 1 })
	// Kafka has not answered: the next frame is the pong, not an ack.
	c.ping()
	h.pub.release()
	f := c.expect("ack", id)
	if f.Position != "1-0-0" {
		t.Fatalf("ack %s: want position 1-0-0", f)
	}
	pubs := h.pub.published()
	if len(pubs) != 1 {
		t.Fatalf("%d publications", len(pubs))
	}
	p := pubs[0]
	if p.Subject.Name != "/demo/k1" || p.Subject.Topic != "demo" || p.Subject.Key != "k1" || !p.Subject.HasKey ||
		string(p.Payload) != "hello" || len(p.Headers) != 1 || p.Headers[0].Key != "h" || string(p.Headers[0].Value) != "v" {
		t.Fatalf("publication %+v", p)
	}

	// A binary payload travels as payload_b64 and reaches Kafka as bytes.
	bin := []byte{0xff, 0x00, 0x80}
	id = c.send(map[string]any{"op": "publish", "subject": "/demo", "payload_b64": base64.StdEncoding.EncodeToString(bin)})
	if f := c.expect("ack", id); f.Position != "1-0-1" {
		t.Fatalf("ack %s", f)
	}
	p = h.pub.published()[1]
	if string(p.Payload) != string(bin) || p.Subject.HasKey {
		t.Fatalf("publication %+v", p)
	}
}

// A publish that comes back from Kafka reaches subscribers like any message.
func TestPublishRoundTrip(t *testing.T) {
	h := newHarness(t, Config{})
	h.pub.mu.Lock()
	h.pub.loop = h.hub
	h.pub.mu.Unlock()
	sub := h.dial()
	sub.subscribe("/demo/k1")
	c := h.dial()
	id := c.send(map[string]any{"op": "publish", "subject": "/demo/k1", "payload": "round \"trip\" ✓", "headers": map[string]string{"h": "v"}})
	c.expect("ack", id)
	f := sub.expectMessage("/demo/k1", "round \"trip\" ✓", 0, false)
	if f.Headers["h"] != "v" || len(f.Headers) != 1 {
		t.Fatalf("headers %v", f.Headers)
	}
}

func TestPublishErrorCodes(t *testing.T) {
	h := newHarness(t, Config{}, nodeMaxPayload(10))
	errs := map[string]error{
		"down":     fmt.Errorf("broker down: %w", core.ErrUnavailable),
		"timeout":  core.ErrTimeout,
		"busy":     core.ErrBusy,
		"rejected": fmt.Errorf("record too large: %w", core.ErrRejected),
		"shutdown": core.ErrShuttingDown,
		"other":    errors.New("boom"),
	}
	h.pub.setErrFor(func(p core.Publication) error { return errs[string(p.Payload)] })
	c := h.dial()
	for _, tc := range []struct{ payload, code string }{
		{"down", "kafka_unavailable"},
		{"timeout", "kafka_timeout"},
		{"busy", "kafka_busy"},
		{"rejected", "kafka_rejected"},
		{"shutdown", "shutting_down"},
		{"other", "internal"},
		{"more than ten bytes", "payload_too_large"}, // core.Node.MaxPayload
	} {
		id := c.send(map[string]any{"op": "publish", "subject": "/demo/k1", "payload": tc.payload})
		f := c.expect("error", id)
		if f.Code != tc.code || f.Subject != "/demo/k1" || f.Message == "" {
			t.Errorf("%s: got %s, want code %s with subject and message", tc.payload, f, tc.code)
		}
		c.ping()
	}
	id := c.send(map[string]any{"op": "publish", "subject": "/demo/k1", "payload": "fine"})
	c.expect("ack", id)
	st := h.srv.Stats()
	// Published counts every publish handed to the node, including the one
	// core.Node refused for its size.
	if st.Published != 8 || st.PublishErrors != 7 {
		t.Fatalf("Published %d, PublishErrors %d; want 8 and 7", st.Published, st.PublishErrors)
	}
}

// Every bad request gets an error frame with its code, and the connection
// keeps serving requests afterwards.
func TestErrorFramesKeepConnection(t *testing.T) {
	h := newHarness(t, Config{MaxPayload: 1024}, exposing("demo"))
	c := h.dial()
	big := strings.Repeat("x", 2000)
	cases := []struct {
		name, frame, code, subject string
		id                         bool
	}{
		{"malformed JSON", `{"op":`, "invalid_json", "", false},
		{"not an object", `[1,2,3]`, "invalid_json", "", false},
		{"a string", `"ping"`, "invalid_json", "", false},
		{"wrong field type", `{"op":"subscribe","id":7,"subjects":"/demo/a"}`, "invalid_json", "", false},
		{"invalid UTF-8", "{\"op\":\"ping\",\"id\":7,\"x\":\"\xff\"}", "invalid_json", "", false},
		{"two objects", `{"op":"ping","id":7} {"op":"ping"}`, "invalid_json", "", false},
		{"unknown op", `{"op":"explode","id":7}`, "unknown_op", "", true},
		{"no op", `{"id":7}`, "missing_field", "", true},
		{"subscribe without subjects", `{"op":"subscribe","id":7}`, "missing_field", "", true},
		{"subscribe with empty subjects", `{"op":"subscribe","id":7,"subjects":[]}`, "missing_field", "", true},
		{"unsubscribe without subjects", `{"op":"unsubscribe","id":7}`, "missing_field", "", true},
		{"publish without subject", `{"op":"publish","id":7,"payload":"x"}`, "missing_field", "", true},
		{"publish without payload", `{"op":"publish","id":7,"subject":"/demo/k"}`, "missing_field", "", true},
		{"no leading slash", `{"op":"subscribe","id":7,"subjects":["/demo/a","demo/k1"]}`, "invalid_subject", "demo/k1", true},
		{"empty segment", `{"op":"subscribe","id":7,"subjects":["/demo//k1"]}`, "invalid_subject", "/demo//k1", true},
		{"bad topic", `{"op":"publish","id":7,"subject":"/de mo/k1","payload":"x"}`, "invalid_subject", "/de mo/k1", true},
		{"trailing slash", `{"op":"publish","id":7,"subject":"/demo/k/","payload":"x"}`, "invalid_subject", "/demo/k/", true},
		{"mixed wildcard", `{"op":"subscribe","id":7,"subjects":["/demo/a+"]}`, "invalid_pattern", "/demo/a+", true},
		{"hash not last", `{"op":"subscribe","id":7,"subjects":["/demo/#/a"]}`, "invalid_pattern", "/demo/#/a", true},
		{"wildcard topic", `{"op":"subscribe","id":7,"subjects":["/+/a"]}`, "invalid_pattern", "/+/a", true},
		{"wildcard publish", `{"op":"publish","id":7,"subject":"/demo/+","payload":"x"}`, "invalid_pattern", "/demo/+", true},
		{"unexposed subscribe", `{"op":"subscribe","id":7,"subjects":["/secret/k1"]}`, "not_exposed", "/secret/k1", true},
		{"unexposed pattern", `{"op":"subscribe","id":7,"subjects":["/secret/#"]}`, "not_exposed", "/secret/#", true},
		{"unexposed publish", `{"op":"publish","id":7,"subject":"/secret/k1","payload":"x"}`, "not_exposed", "/secret/k1", true},
		{"internal topic", `{"op":"publish","id":7,"subject":"/__consumer_offsets","payload":"x"}`, "not_exposed", "/__consumer_offsets", true},
		{"payload too large", `{"op":"publish","id":7,"subject":"/demo/k","payload":"` + big + `"}`, "payload_too_large", "/demo/k", true},
		{"payload_b64 too large", `{"op":"publish","id":7,"subject":"/demo/k","payload_b64":"` + base64.StdEncoding.EncodeToString([]byte(big)) + `"}`, "payload_too_large", "/demo/k", true},
		{"both payloads", `{"op":"publish","id":7,"subject":"/demo/k","payload":"x","payload_b64":"eA=="}`, "invalid_field", "", true},
		{"bad base64", `{"op":"publish","id":7,"subject":"/demo/k","payload_b64":"%%%"}`, "invalid_field", "", true},
		{"bad mode", `{"op":"subscribe","id":7,"subjects":["/demo/k"],"mode":"fast"}`, "invalid_field", "", true},
		{"bad id", `{"op":"ping","id":true}`, "invalid_field", "", false},
	}
	for _, tc := range cases {
		c.sendRaw(tc.frame)
		f := c.expect("error", 0)
		if f.Code != tc.code || f.Subject != tc.subject || f.Message == "" {
			t.Errorf("%s: got %s; want code %q, subject %q and a message", tc.name, f, tc.code, tc.subject)
		}
		_, hasSubject := f.raw["subject"]
		if hasSubject != (tc.subject != "") {
			t.Errorf("%s: subject field present=%v in %s", tc.name, hasSubject, f)
		}
		// A frame that is not valid JSON has no id to echo; for a well-formed
		// object of the wrong shape echoing it would be fine too.
		mayEcho := strings.HasPrefix(tc.name, "wrong field type") || tc.name == "two objects"
		if gotID := string(f.ID); !mayEcho && ((gotID == "7") != tc.id || (!tc.id && gotID != "")) {
			t.Errorf("%s: id %q in %s, want id echoed=%v", tc.name, gotID, f, tc.id)
		}
		c.ping()
	}
	// Nothing was subscribed by the failed requests (taken whole or not at all).
	if n := h.srv.Stats().Subscriptions; n != 0 {
		t.Fatalf("%d subscriptions after only failed subscribes", n)
	}
	if n := h.pub.count(); n != 0 {
		t.Fatalf("%d publishes reached Kafka after only failed publishes", n)
	}
	if st := h.srv.Stats(); st.Errors != int64(len(cases)) || st.Connections != 1 {
		t.Fatalf("Stats %+v: want %d errors and the connection open", st, len(cases))
	}
}

func TestBinaryFrameIsAnError(t *testing.T) {
	h := newHarness(t, Config{})
	c := h.dial()
	if err := c.ws.WriteMessage(websocket.BinaryMessage, []byte(`{"op":"ping","id":1}`)); err != nil {
		t.Fatal(err)
	}
	if f := c.expect("error", 0); f.Code != "binary_frame" || len(f.ID) != 0 {
		t.Fatalf("got %s", f)
	}
	c.ping()
}

func TestIDEchoedVerbatim(t *testing.T) {
	h := newHarness(t, Config{})
	c := h.dial()
	for _, id := range []string{`0`, `1`, `-7`, `1.5e3`, `12345678901234567890`, `""`, `"abc"`, `"a\"b"`, `"\u00fc ✓"`, `"` + strings.Repeat("x", 62) + `"`} {
		c.sendRaw(`{"op":"ping","id":` + id + `}`)
		if f := c.expect("pong", 0); string(f.ID) != id {
			t.Errorf("ping id %s: pong %s", id, f)
		}
		c.sendRaw(`{"op":"subscribe","id":` + id + `,"subjects":["/demo/a"]}`)
		if f := c.expect("ack", 0); string(f.ID) != id {
			t.Errorf("subscribe id %s: ack %s", id, f)
		}
		c.sendRaw(`{"op":"nope","id":` + id + `}`)
		if f := c.expect("error", 0); string(f.ID) != id || f.Code != "unknown_op" {
			t.Errorf("id %s: error %s", id, f)
		}
	}
	// An id that is not a number or a short string is refused and not echoed.
	for _, id := range []string{`true`, `{"a":1}`, `[1]`, `"` + strings.Repeat("x", 63) + `"`} {
		c.sendRaw(`{"op":"ping","id":` + id + `}`)
		if f := c.expect("error", 0); len(f.ID) != 0 || f.Code != "invalid_field" {
			t.Errorf("id %s: got %s", id, f)
		}
	}
	// No id, or null: the reply has none.
	for _, req := range []string{`{"op":"ping"}`, `{"op":"ping","id":null}`} {
		c.sendRaw(req)
		if f := c.expect("pong", 0); f.ID != nil {
			t.Errorf("%s: got %s", req, f)
		}
	}
}

func TestTooManySubscriptions(t *testing.T) {
	h := newHarness(t, Config{MaxSubscriptions: 2})
	c := h.dial()
	c.subscribe("/demo/a", "/demo/+")
	id := c.send(map[string]any{"op": "subscribe", "subjects": []string{"/demo/c"}})
	if f := c.expect("error", id); f.Code != "too_many_subscriptions" {
		t.Fatalf("got %s", f)
	}
	// A request is taken whole or not at all.
	id = c.send(map[string]any{"op": "subscribe", "subjects": []string{"/demo/a", "/demo/d"}})
	if f := c.expect("error", id); f.Code != "too_many_subscriptions" {
		t.Fatalf("got %s", f)
	}
	c.subscribe("/demo/a") // already held: not a new one
	id = c.send(map[string]any{"op": "unsubscribe", "subjects": []string{"/demo/+"}})
	c.expect("ack", id)
	c.subscribe("/demo/c")
	c.ping()
	if n := h.srv.Stats().Subscriptions; n != 2 {
		t.Fatalf("Stats().Subscriptions = %d, want 2", n)
	}
	h.hub.Dispatch(msg(t, "/demo/d", 0, "not subscribed"))
	h.hub.Dispatch(msg(t, "/demo/c", 1, "c"))
	c.expectMessage("/demo/c", "c", 1, false)
}

// Regression, fixed: once subscribe counts every listed filter not yet held as a new
// subscription, so the same subject listed twice in one request counts
// twice against MaxSubscriptions although it creates one subscription.
func TestTooManySubscriptionsCountsDuplicatesOnce(t *testing.T) {
	h := newHarness(t, Config{MaxSubscriptions: 2})
	c := h.dial()
	id := c.send(map[string]any{"op": "subscribe", "subjects": []string{"/demo/a", "/demo/a", "/demo/a"}})
	if f := c.next(); f.Op != "ack" || string(f.ID) != fmt.Sprint(id) {
		t.Fatalf("subscribing to one subject (listed three times) with MaxSubscriptions=2: got %s, want ack", f)
	}
}

func TestFrameOverReadLimitCloses(t *testing.T) {
	h := newHarness(t, Config{MaxPayload: 1024})
	limit := h.srv.cfg.frameLimit()
	c := h.dial()
	c.sendRaw(`{"op":"publish","subject":"/demo/k","payload":"` + strings.Repeat("x", int(limit)) + `"}`)
	if code := c.closeCode(); code != websocket.CloseMessageTooBig && code != core.DisconnectMessageTooBig.Code {
		t.Fatalf("close code %d, want 1009 or %d", code, core.DisconnectMessageTooBig.Code)
	}
	eventually(t, waitFor, "the connection to end", func() bool { return h.srv.Stats().Connections == 0 })
	if h.pub.count() != 0 {
		t.Fatal("an oversized frame was published")
	}
}

// Regression, fixed: once the read limit (MaxPayload*4/3 + 64 KiB) assumes base64, but a text
// payload travels as a JSON string, where each control character is 6 bytes
// (\u0001) and Go's encoding/json — which the kedge Go client uses — also
// writes '<', '>' and '&' as \u003c etc. A payload within MaxPayload is
// then refused by closing the connection (1009/4501), not accepted.
func TestEscapedPayloadWithinMaxPayloadIsAccepted(t *testing.T) {
	h := newHarness(t, Config{}) // MaxPayload 64 KiB
	c := h.dial()
	payload := strings.Repeat("<\x01>", 20000) // 60000 bytes
	req, _ := json.Marshal(map[string]any{"op": "publish", "id": 1, "subject": "/demo/k", "payload": payload})
	fail := func(err error) {
		t.Helper()
		t.Fatalf("a %d-byte payload (MaxPayload %d), sent as a %d-byte JSON request by encoding/json: connection ended: %v",
			len(payload), h.srv.cfg.MaxPayload, len(req), err)
	}
	if err := c.ws.WriteMessage(websocket.TextMessage, req); err != nil {
		fail(err)
	}
	_ = c.ws.SetReadDeadline(time.Now().Add(waitFor))
	_, data, err := c.ws.ReadMessage()
	if err != nil {
		fail(err)
	}
	if f, _ := decodeFrame(data); f.Op != "ack" || string(f.ID) != "1" {
		t.Fatalf("got %s, want ack", data)
	}
}

func TestSlowGuaranteedConsumerIsClosed(t *testing.T) {
	h := newHarness(t, Config{WriteQueueSize: 64 << 10}, cacheSize(1))
	c := h.dial()
	c.subscribe("/demo/slow") // then stop reading
	payload := strings.Repeat("x", 16<<10)
	var sent int64
	deadline := time.Now().Add(waitFor)
	for h.srv.Stats().SlowClosed == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("no slow-consumer close after %d messages", sent)
		}
		h.hub.Dispatch(msg(t, "/demo/slow", sent, payload))
		sent++
	}
	if h.srv.Stats().Dropped != 0 {
		t.Fatal("a guaranteed subscription dropped messages")
	}
	// Now read: an unbroken prefix of the messages, then close 4001.
	var got int64
	_ = c.ws.SetReadDeadline(time.Now().Add(waitFor))
	for {
		_, data, err := c.ws.ReadMessage()
		if err != nil {
			var ce *websocket.CloseError
			if !errors.As(err, &ce) || ce.Code != core.DisconnectSlow.Code {
				t.Fatalf("after %d messages: %v, want close %d", got, err, core.DisconnectSlow.Code)
			}
			break
		}
		f, err := decodeFrame(data)
		if err != nil {
			t.Fatal(err)
		}
		if f.Op != "message" || f.Position != fmt.Sprintf("1-0-%d", got) {
			t.Fatalf("message %d: got op %q at position %q (of %d sent)", got, f.Op, f.Position, sent)
		}
		got++
	}
	if got >= sent {
		t.Fatalf("read %d of %d messages before the close: the one that overflowed was delivered", got, sent)
	}
	eventually(t, waitFor, "the connection to end", func() bool { return h.srv.Stats().Connections == 0 })
	if n := h.hub.Stats().Subscriptions; n != 0 {
		t.Fatalf("hub still holds %d subscriptions of the closed connection", n)
	}
}

func TestSlowStandardConsumerDropsAndStays(t *testing.T) {
	h := newHarness(t, Config{WriteQueueSize: 64 << 10}, cacheSize(1))
	c := h.dial()
	id := c.send(map[string]any{"op": "subscribe", "subjects": []string{"/demo/std"}, "mode": "standard"})
	c.expect("ack", id)
	c.waitSubscribed("/demo/std")
	payload := strings.Repeat("x", 16<<10)
	var sent int64
	deadline := time.Now().Add(waitFor)
	for h.srv.Stats().Dropped < 10 {
		if time.Now().After(deadline) {
			t.Fatalf("no drops after %d messages", sent)
		}
		h.hub.Dispatch(msg(t, "/demo/std", sent, payload))
		sent++
	}
	// Drain: messages in increasing order with gaps, then the pong.
	pingID := c.send(map[string]any{"op": "ping"})
	var got int64
	last := int64(-1)
	for {
		f := c.next()
		if f.Op == "pong" {
			if string(f.ID) != fmt.Sprint(pingID) {
				t.Fatalf("pong %s", f)
			}
			break
		}
		var off int64
		if _, err := fmt.Sscanf(f.Position, "1-0-%d", &off); err != nil || f.Op != "message" || off <= last {
			t.Fatalf("after offset %d got %.80s", last, f)
		}
		last = off
		got++
	}
	st := h.srv.Stats()
	if st.SlowClosed != 0 || st.Connections != 1 {
		t.Fatalf("standard consumer was disconnected: %+v", st)
	}
	if got+st.Dropped != sent || st.Delivered != got {
		t.Fatalf("sent %d, received %d, Stats %+v: want received+Dropped = sent and Delivered = received", sent, got, st)
	}
	// Still subscribed and served.
	h.hub.Dispatch(msg(t, "/demo/std", sent, "after"))
	c.expectMessage("/demo/std", "after", sent, false)
}

func TestKeepaliveClientThatAnswersStays(t *testing.T) {
	h := newHarness(t, Config{PingInterval: 50 * time.Millisecond, PongTimeout: 50 * time.Millisecond})
	c := h.dial()
	var pings atomic.Int32
	c.ws.SetPingHandler(func(d string) error {
		pings.Add(1)
		return c.ws.WriteControl(websocket.PongMessage, []byte(d), time.Now().Add(time.Second))
	})
	frames := make(chan srvFrame, 16)
	ended := make(chan error, 1)
	go func() { // gorilla answers pings only while reading
		for {
			_, data, err := c.ws.ReadMessage()
			if err != nil {
				ended <- err
				return
			}
			f, _ := decodeFrame(data)
			frames <- f
		}
	}()
	select {
	case err := <-ended:
		t.Fatalf("connection ended while answering pings: %v", err)
	case <-time.After(1200 * time.Millisecond):
	}
	if n := pings.Load(); n < 5 {
		t.Fatalf("server sent %d pings in 1.2s at a 50ms interval", n)
	}
	if err := c.ws.WriteMessage(websocket.TextMessage, []byte(`{"op":"ping","id":99}`)); err != nil {
		t.Fatal(err)
	}
	select {
	case f := <-frames:
		if f.Op != "pong" || string(f.ID) != "99" {
			t.Fatalf("got %s", f)
		}
	case err := <-ended:
		t.Fatalf("connection ended: %v", err)
	case <-time.After(waitFor):
		t.Fatal("no pong")
	}
	if err := c.ws.Close(); err != nil {
		t.Fatal(err)
	}
	<-ended
}

// deadClient dials by hand, never sends anything after the handshake, and
// reads until the server ends the connection; it returns the pings seen and
// the close code (0 without a close frame).
func deadClient(t *testing.T, h *harness) (pings, code int, elapsed time.Duration) {
	nc, br := h.rawDial()
	start := time.Now()
	_ = nc.SetReadDeadline(time.Now().Add(waitFor))
	for {
		op, p, err := readRawFrame(br)
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) && !strings.Contains(err.Error(), "reset") {
				t.Fatalf("the server did not end a silent connection: %v", err)
			}
			return pings, code, time.Since(start)
		}
		switch op {
		case opPing:
			pings++
		case opClose:
			if len(p) >= 2 {
				code = int(p[0])<<8 | int(p[1])
			}
		}
	}
}

func TestKeepaliveDeadClientIsClosed(t *testing.T) {
	h := newHarness(t, Config{PingInterval: 50 * time.Millisecond, PongTimeout: 50 * time.Millisecond})
	pings, _, elapsed := deadClient(t, h)
	if pings == 0 {
		t.Fatal("no ping before the close")
	}
	if elapsed > 2*time.Second {
		t.Fatalf("silent client closed after %v; interval+timeout is 100ms", elapsed)
	}
	eventually(t, waitFor, "the connection to be forgotten", func() bool { return h.srv.Stats().Connections == 0 })
}

// Regression, fixed: once a client that stops answering is closed by the read deadline, which
// readFailed reports as a read error: close code 1002 "read error" instead
// of core.DisconnectNoPong (4003 "keepalive timeout"), which the WebSocket
// adapter never sends.
func TestKeepaliveTimeoutClosesWithNoPongCode(t *testing.T) {
	h := newHarness(t, Config{PingInterval: 50 * time.Millisecond, PongTimeout: 50 * time.Millisecond})
	if _, code, _ := deadClient(t, h); code != core.DisconnectNoPong.Code {
		t.Fatalf("close code %d, want %d (%s)", code, core.DisconnectNoPong.Code, core.DisconnectNoPong.Reason)
	}
}

// The server answers WebSocket pings with pongs carrying the same data, and
// echoes a client's close code.
func TestControlFrames(t *testing.T) {
	h := newHarness(t, Config{})
	c := h.dial()
	pongs := make(chan string, 1)
	c.ws.SetPongHandler(func(d string) error { pongs <- d; return nil })
	if err := c.ws.WriteControl(websocket.PingMessage, []byte("hi"), time.Now().Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	c.ping() // the pong control frame was queued before this pong
	select {
	case d := <-pongs:
		if d != "hi" {
			t.Fatalf("pong data %q", d)
		}
	default:
		t.Fatal("no pong for a WebSocket ping")
	}

	for _, code := range []int{websocket.CloseNormalClosure, websocket.CloseGoingAway, 4100} {
		c := h.dial()
		if err := c.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, "bye"), time.Now().Add(time.Second)); err != nil {
			t.Fatal(err)
		}
		if got := c.closeCode(); got != code {
			t.Fatalf("client closed with %d; server answered %d", code, got)
		}
	}
	// A close without a status is answered with 1000.
	c2 := h.dial()
	if err := c2.ws.WriteControl(websocket.CloseMessage, nil, time.Now().Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	if got := c2.closeCode(); got != websocket.CloseNormalClosure {
		t.Fatalf("close without status answered with %d", got)
	}
	eventually(t, waitFor, "closed connections to end", func() bool { return h.srv.Stats().Connections == 1 })
}

func TestShutdownAnswersInflightThenCloses(t *testing.T) {
	h := newHarness(t, Config{})
	h.pub.setHold(true)
	c := h.dial()
	c.subscribe("/demo/k")
	id := c.send(map[string]any{"op": "publish", "subject": "/demo/k", "payload": "in flight"})
	eventually(t, waitFor, "the publish to reach the publisher", func() bool { return h.pub.heldCount() == 1 })

	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	done := make(chan struct{})
	go func() {
		defer close(done)
		h.srv.Shutdown(ctx)
	}()
	eventually(t, waitFor, "Shutdown to start draining", func() bool {
		h.srv.mu.Lock()
		defer h.srv.mu.Unlock()
		return h.srv.draining
	})
	// Kafka has not answered: the connection is still open and served.
	c.ping()
	select {
	case <-done:
		t.Fatal("Shutdown returned while a publish was in flight")
	default:
	}
	h.pub.release()
	if f := c.expect("ack", id); f.Position != "1-0-0" {
		t.Fatalf("ack %s", f)
	}
	if code := c.closeCode(); code != core.DisconnectShutdown.Code {
		t.Fatalf("close code %d, want %d", code, core.DisconnectShutdown.Code)
	}
	select {
	case <-done:
	case <-time.After(waitFor):
		t.Fatal("Shutdown did not return")
	}
	eventually(t, waitFor, "connections to end", func() bool { return h.srv.Stats().Connections == 0 })

	// New connections are refused with the same code.
	c2 := h.dial()
	if code := c2.closeCode(); code != core.DisconnectShutdown.Code {
		t.Fatalf("connection after Shutdown: close code %d", code)
	}
}

// Shutdown bounded by its context does not wait for Kafka forever.
func TestShutdownBoundedByContext(t *testing.T) {
	h := newHarness(t, Config{})
	h.pub.setHold(true)
	c := h.dial()
	c.send(map[string]any{"op": "publish", "subject": "/demo/k", "payload": "never answered"})
	eventually(t, waitFor, "the publish to reach the publisher", func() bool { return h.pub.heldCount() == 1 })
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	h.srv.Shutdown(ctx)
	if d := time.Since(start); d > waitFor/2 {
		t.Fatalf("Shutdown took %v with a 50ms context", d)
	}
	if code := c.closeCode(); code != core.DisconnectShutdown.Code {
		t.Fatalf("close code %d", code)
	}
}

func TestMaxInflightLosesNothing(t *testing.T) {
	h := newHarness(t, Config{MaxInflight: 2})
	h.pub.setHold(true)
	c := h.dial()
	var ids []int
	for i := 0; i < 5; i++ {
		ids = append(ids, c.send(map[string]any{"op": "publish", "subject": "/demo/k", "payload": fmt.Sprint(i)}))
	}
	eventually(t, waitFor, "two publishes in flight", func() bool { return h.pub.heldCount() == 2 })
	if n := h.srv.Stats().Published; n != 2 {
		t.Fatalf("%d publishes handed to Kafka with MaxInflight 2", n)
	}
	h.pub.release()
	acked := map[string]bool{}
	for len(acked) < 5 {
		f := c.expect("ack", 0)
		acked[string(f.ID)] = true
	}
	for _, id := range ids {
		if !acked[fmt.Sprint(id)] {
			t.Fatalf("publish %d not acknowledged", id)
		}
	}
	if n := h.pub.count(); n != 5 {
		t.Fatalf("%d publications reached Kafka", n)
	}
	c.ping()
}

func TestStatsCounters(t *testing.T) {
	h := newHarness(t, Config{})
	h.pub.setErrFor(func(p core.Publication) error {
		if string(p.Payload) == "fail" {
			return core.ErrUnavailable
		}
		return nil
	})
	if st := h.srv.Stats(); st != (Stats{}) {
		t.Fatalf("fresh server: %+v", st)
	}
	c := h.dial()
	c.subscribe("/demo/a", "/demo/+")
	h.hub.Dispatch(msg(t, "/demo/a", 0, "x")) // two deliveries: exact and pattern
	c.expect("message", 0)
	c.expect("message", 0)
	id := c.send(map[string]any{"op": "publish", "subject": "/demo/a", "payload": "ok"})
	c.expect("ack", id)
	id = c.send(map[string]any{"op": "publish", "subject": "/demo/a", "payload": "fail"})
	c.expect("error", id)
	c.sendRaw("{")
	c.expect("error", 0)
	c.ping()
	want := Stats{Connections: 1, Accepted: 1, Subscriptions: 2, Received: 5, Delivered: 2,
		Published: 2, PublishErrors: 1, Errors: 2}
	if st := h.srv.Stats(); st != want {
		t.Fatalf("Stats\n got %+v\nwant %+v", st, want)
	}
	c2 := h.dial()
	c2.ping()
	id = c.send(map[string]any{"op": "unsubscribe", "subjects": []string{"/demo/+"}})
	c.expect("ack", id)
	if st := h.srv.Stats(); st.Connections != 2 || st.Accepted != 2 || st.Subscriptions != 1 || st.Received != 7 {
		t.Fatalf("Stats %+v", st)
	}
	if err := c.ws.Close(); err != nil {
		t.Fatal(err)
	}
	eventually(t, waitFor, "the closed connection to be counted out", func() bool {
		st := h.srv.Stats()
		return st.Connections == 1 && st.Subscriptions == 0
	})
	if n := h.hub.Stats().Subscriptions; n != 0 {
		t.Fatalf("hub holds %d subscriptions of a closed connection", n)
	}
	if st := h.srv.Stats(); st.Accepted != 2 {
		t.Fatalf("Accepted %d", st.Accepted)
	}
}

// Regression, fixed: once replies (acks, errors, pongs) are queued without bound
// (push(..., false)), and an error frame can echo a whole request (unknown
// op %q), so a client that sends requests but never reads makes the server
// queue grow without limit, far past WriteQueueSize. Design §5: "Nothing
// unbounded anywhere".
func TestRepliesToAClientThatDoesNotReadAreBounded(t *testing.T) {
	const limit = 64 << 10
	h := newHarness(t, Config{WriteQueueSize: limit})
	c := h.dial()
	req := `{"op":"` + strings.Repeat("x", 140<<10) + `"}` // unknown_op, echoed in the error
	const n = 150                                          // 21 MB of error frames
	for i := 0; i < n; i++ {
		_ = c.ws.SetWriteDeadline(time.Now().Add(waitFor))
		if err := c.ws.WriteMessage(websocket.TextMessage, []byte(req)); err != nil {
			break // the server stopped reading or closed: bounded either way
		}
	}
	// Give the server the time to take in what it will (or to close).
	deadline := time.Now().Add(2 * time.Second)
	for h.srv.Stats().Received < n && h.srv.Stats().Connections > 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	for _, sc := range h.serverConns() {
		if q := sc.out.queued(); q > 2*limit+len(req)+1024 {
			t.Fatalf("server queues %d bytes for a client that does not read; WriteQueueSize is %d", q, limit)
		}
	}
}

// blockingSource is a core.Source whose Watch waits until released, which
// holds the server between its subscribe ack and the Hub registration.
type blockingSource struct {
	entered chan string
	release chan struct{}
}

func (s *blockingSource) Refresh(context.Context) error { return nil }

func (s *blockingSource) Watch(topic string) {
	s.entered <- topic
	<-s.release
}

// The subscribe ack is sent only once the subscriptions are registered:
// while registration is held (a Source whose Watch blocks) no ack arrives,
// and any message dispatched after the client has its ack is delivered.
func TestSubscriptionActiveWhenAcked(t *testing.T) {
	src := &blockingSource{entered: make(chan string, 1), release: make(chan struct{})}
	h := newHarness(t, Config{}, func(o *harnessOpts) { o.source = src })
	c := h.dial()
	id := c.send(map[string]any{"op": "subscribe", "subjects": []string{"/demo/k"}, "snapshot": false})
	select {
	case <-src.entered:
	case <-time.After(waitFor):
		t.Fatal("Source.Watch not called")
	}
	// Registration is held: the server has queued nothing for this client.
	for _, sc := range h.serverConns() {
		if q := sc.out.queued(); q != 0 {
			t.Fatalf("%d bytes queued (the ack?) before the subscription is registered", q)
		}
	}
	close(src.release)
	if f := c.next(); f.Op != "ack" || string(f.ID) != fmt.Sprint(id) {
		t.Fatalf("got %s", f)
	}
	// The client has its ack; a message is dispatched now and must arrive.
	h.hub.Dispatch(msg(t, "/demo/k", 0, "after the ack"))
	if f := c.next(); f.Op != "message" {
		t.Fatalf("a message dispatched after the subscribe ack was not delivered; got %s", f)
	}
}

// A subscription made before its topic existed has no cursor in its ack;
// before its first message it gets a cursor frame: the offsets before the
// first the node dispatched, so a resume covers every partition.
func TestCursorFrameForTopicCreatedLater(t *testing.T) {
	h := newHarness(t, Config{})
	c := h.dial()
	id := c.send(map[string]any{"op": "subscribe", "subjects": []string{"/later/+"}, "snapshot": false})
	if f := c.expect("ack", id); f.Cursors["/later/+"] != "new" {
		t.Fatalf("ack for a topic the node does not know: cursors %v, want \"new\"", f.Cursors)
	}
	h.hub.Begin("later", 5, 0, 40)
	h.hub.Begin("later", 5, 1, 7)
	h.hub.Dispatch(&core.Message{Subject: "/later/a", Topic: "later", Key: "a", HasKey: true,
		Payload: []byte("x"), Pos: core.Position{Epoch: 5, Partition: 1, Offset: 7}})
	f := c.next()
	if f.Op != "cursor" || f.Subject != "/later/+" || f.Cursor != "5-0-39,5-1-6" {
		t.Fatalf("want the cursor frame 5-0-39,5-1-6 first, got %s", f)
	}
	if m := c.expect("message", 0); m.Position != "5-1-7" {
		t.Fatalf("got %s", m)
	}
	h.hub.Dispatch(&core.Message{Subject: "/later/b", Topic: "later", Key: "b", HasKey: true,
		Payload: []byte("y"), Pos: core.Position{Epoch: 5, Partition: 0, Offset: 40}})
	if m := c.expect("message", 0); m.Position != "5-0-40" { // no second cursor frame
		t.Fatalf("got %s", m)
	}
}
