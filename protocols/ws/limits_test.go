package ws

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/kedgehq/kedge/auth"
	"github.com/kedgehq/kedge/core"
)

// dialRefused dials and expects the upgrade to be refused with status and
// a JSON body carrying code.
func (h *harness) dialRefused(header http.Header, status int, code string) map[string]string {
	h.t.Helper()
	ws, resp, err := websocket.DefaultDialer.Dial(h.url, header)
	if err == nil {
		_ = ws.Close()
		h.t.Fatalf("upgraded; want %d %s", status, code)
	}
	if resp == nil {
		h.t.Fatalf("no HTTP answer: %v", err)
		return nil
	}
	defer func() { _ = resp.Body.Close() }()
	b, _ := io.ReadAll(resp.Body)
	var body map[string]string
	if resp.StatusCode != status || json.Unmarshal(b, &body) != nil || body["code"] != code || body["message"] == "" {
		h.t.Fatalf("answer %d %s, want %d with code %s", resp.StatusCode, b, status, code)
	}
	return body
}

func TestOriginNotAllowed(t *testing.T) {
	h := newHarness(t, Config{Origins: auth.NewOrigins([]string{"https://app.example"})})
	limits := core.NewLimits(core.LimitsConfig{})
	h.node.Limits = limits
	body := h.dialRefused(http.Header{"Origin": {"https://evil.example"}}, http.StatusForbidden, "origin_not_allowed")
	if !strings.Contains(body["message"], `"https://evil.example"`) {
		t.Fatalf("message %q does not name the origin", body["message"])
	}
	if limits.Hits(core.LimitOrigin, auth.ProtocolWS) != 1 || h.srv.Stats().Accepted != 0 {
		t.Fatal("the refusal is not counted, or a connection was accepted")
	}
	for _, origin := range []string{"https://app.example", "", "http://" + h.ts.Listener.Addr().String()} {
		ws, _, err := websocket.DefaultDialer.Dial(h.url, http.Header{"Origin": {origin}})
		if err != nil {
			t.Fatalf("origin %q refused: %v", origin, err)
		}
		_ = ws.Close()
	}
}

func TestConnectionLimits(t *testing.T) {
	h := newHarness(t, Config{})
	limits := core.NewLimits(core.LimitsConfig{MaxConnections: 3, MaxConnectionsPerIP: 2})
	h.node.Limits = limits
	a, b := h.dial(), h.dial()
	body := h.dialRefused(nil, http.StatusTooManyRequests, "too_many_connections")
	if !strings.Contains(body["message"], "limits.max.connections.per.ip") {
		t.Fatalf("message %q does not name the limit", body["message"])
	}
	if limits.Hits(core.LimitConnectionsPerIP, auth.ProtocolWS) != 1 {
		t.Fatal("the refusal is not counted")
	}
	// The connections in place go on.
	a.ping()
	b.ping()
	// Another protocol's connection from elsewhere fills the node.
	release, err := limits.Admit(auth.ProtocolMQTT, "192.0.2.1:1883")
	if err != nil {
		t.Fatal(err)
	}
	_ = a.ws.Close()
	eventually(t, waitFor, "the closed connection to be released", func() bool { return limits.Open() == 2 })
	h.dial().ping() // a's slot is free again
	h.dialRefused(nil, http.StatusServiceUnavailable, "server_full")
	release()
	if limits.Hits(core.LimitConnections, auth.ProtocolWS) != 1 {
		t.Fatal("server_full is not counted")
	}
}

func TestPublishRateLimit(t *testing.T) {
	h := newHarness(t, Config{})
	limits := core.NewLimits(core.LimitsConfig{PublishRate: 1, PublishBurst: 3})
	h.node.Limits = limits
	c := h.dial()
	for range 3 {
		id := c.send(map[string]any{"op": "publish", "subject": "/demo/k", "payload": "x"})
		c.expect("ack", id)
	}
	id := c.send(map[string]any{"op": "publish", "subject": "/demo/k", "payload": "x"})
	f := c.expect("error", id)
	if f.Code != "rate_limited" || f.Subject != "/demo/k" || !strings.Contains(f.Message, "limits.publish.rate") {
		t.Fatalf("fourth publish: %s", f)
	}
	if n := h.pub.count(); n != 3 {
		t.Fatalf("%d publishes reached Kafka, want 3", n)
	}
	if limits.Hits(core.LimitPublishRate, auth.ProtocolWS) != 1 {
		t.Fatal("the refusal is not counted")
	}
	c.ping() // the connection goes on
	// Each connection has its own bucket.
	d := h.dial()
	id = d.send(map[string]any{"op": "publish", "subject": "/demo/k", "payload": "y"})
	d.expect("ack", id)
}

func TestAuthTimeoutCounted(t *testing.T) {
	a := staticAuth(t, time.Now().Add(time.Hour))
	h := newHarness(t, Config{AuthTimeout: 50 * time.Millisecond}, withAuth(a))
	limits := core.NewLimits(core.LimitsConfig{})
	h.node.Limits = limits
	c := h.dial()
	if code := c.closeCode(); code != core.DisconnectUnauthorized.Code {
		t.Fatalf("close %d, want 4502", code)
	}
	if limits.Hits(core.LimitHandshake, auth.ProtocolWS) != 1 {
		t.Fatal("the auth timeout is not counted")
	}
	eventually(t, waitFor, "the connection's slot to be released", func() bool { return limits.Open() == 0 })
}

func TestSubscriptionAndPayloadLimitsCounted(t *testing.T) {
	h := newHarness(t, Config{MaxSubscriptions: 1, MaxPayload: 256})
	limits := core.NewLimits(core.LimitsConfig{})
	h.node.Limits = limits
	c := h.dial()
	c.subscribe("/demo/a")
	id := c.send(map[string]any{"op": "subscribe", "subjects": []string{"/demo/b"}})
	if f := c.expect("error", id); f.Code != codeTooManySubs {
		t.Fatalf("second subscription: %s", f)
	}
	id = c.send(map[string]any{"op": "publish", "subject": "/demo/a", "payload": strings.Repeat("x", 257)})
	if f := c.expect("error", id); f.Code != codePayloadTooLarge {
		t.Fatalf("large payload: %s", f)
	}
	if limits.Hits(core.LimitSubscriptions, auth.ProtocolWS) != 1 || limits.Hits(core.LimitPayload, auth.ProtocolWS) != 1 {
		t.Fatal("refusals not counted")
	}
}
