package ws

import (
	"net/http"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/kedgehq/kedge/auth"
)

// staticAuth accepts "alice" (demo subjects only) and "short" (expires soon).
func staticAuth(t *testing.T, shortExpiry time.Time) *auth.Auth {
	t.Helper()
	a, err := auth.New(auth.Config{Mode: []string{"static"}, Static: auth.StaticConfig{Tokens: []auth.StaticToken{
		{Name: "alice", Token: "alice-token", Subscribe: []string{"/demo/#"}, Publish: []string{"/demo/+"}},
		{Name: "bob", Token: "bob-token", Subscribe: []string{"/demo/k1"}},
		{Name: "alice", Token: "alice-narrow", Subscribe: []string{"/demo/k1"}, Publish: []string{"/demo/k1"}},
		{Name: "short", Token: "short-token", Subscribe: []string{"/#"}, Expires: shortExpiry},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func withAuth(a *auth.Auth) func(*harnessOpts) { return func(o *harnessOpts) { o.auth = a } }

func TestAuthHeaderTokenAndPermissions(t *testing.T) {
	h := newHarness(t, Config{TokenParam: "token"}, withAuth(staticAuth(t, time.Now().Add(time.Hour))))
	hdr := http.Header{"Authorization": {"Bearer alice-token"}}
	ws, _, err := websocket.DefaultDialer.Dial(h.url, hdr)
	if err != nil {
		t.Fatal(err)
	}
	c := &testConn{t: t, h: h, ws: ws}
	t.Cleanup(func() { _ = ws.Close() })
	c.subscribe("/demo/+")
	id := c.send(map[string]any{"op": "subscribe", "subjects": []string{"/other/x"}})
	if f := c.expect("error", id); f.Code != "forbidden" || f.Subject != "/other/x" {
		t.Fatalf("subscribe outside the permissions: %s", f)
	}
	id = c.send(map[string]any{"op": "publish", "subject": "/demo/a/b", "payload": "x"})
	if f := c.expect("error", id); f.Code != "forbidden" {
		t.Fatalf("publish outside the permissions: %s", f)
	}
	h.pub.mu.Lock()
	n := len(h.pub.pubs)
	h.pub.mu.Unlock()
	if n != 0 {
		t.Fatalf("a denied publish reached Kafka (%d)", n)
	}
	if h.srv.Stats().Forbidden != 2 {
		t.Fatalf("Forbidden = %d", h.srv.Stats().Forbidden)
	}
	// Query-parameter token (browsers).
	ws2, _, err := websocket.DefaultDialer.Dial(h.url+"?token=bob-token", nil)
	if err != nil {
		t.Fatal(err)
	}
	_ = ws2.Close()
}

func TestAuthRefusedTokenIs401(t *testing.T) {
	h := newHarness(t, Config{TokenParam: "token"}, withAuth(staticAuth(t, time.Now().Add(time.Hour))))
	_, resp, err := websocket.DefaultDialer.Dial(h.url, http.Header{"Authorization": {"Bearer wrong"}})
	if err == nil || resp == nil || resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("wrong token: %v %v, want HTTP 401", err, resp)
	}
	if h.srv.Stats().Denied != 1 {
		t.Fatalf("Denied = %d", h.srv.Stats().Denied)
	}
}

// Without a token in the request, the first frame authenticates; nothing
// else is served before it, and a wrong token closes the connection.
func TestAuthFirstFrame(t *testing.T) {
	h := newHarness(t, Config{}, withAuth(staticAuth(t, time.Now().Add(time.Hour))))
	c := h.dial()
	id := c.send(map[string]any{"op": "subscribe", "subjects": []string{"/demo/k1"}})
	if f := c.expect("error", id); f.Code != "unauthorized" {
		t.Fatalf("before auth: %s", f)
	}
	id = c.send(map[string]any{"op": "auth", "token": "alice-token"})
	c.expect("ack", id)
	c.subscribe("/demo/k1")

	bad := h.dial()
	id = bad.send(map[string]any{"op": "auth", "token": "nope"})
	if f := bad.expect("error", id); f.Code != "unauthorized" {
		t.Fatalf("wrong token: %s", f)
	}
	if code := bad.closeCode(); code != 4502 {
		t.Fatalf("close code %d, want 4502", code)
	}
}

// A connection that never authenticates is closed after AuthTimeout.
func TestAuthTimeout(t *testing.T) {
	h := newHarness(t, Config{AuthTimeout: 100 * time.Millisecond}, withAuth(staticAuth(t, time.Now().Add(time.Hour))))
	if code := h.dial().closeCode(); code != 4502 {
		t.Fatalf("close code %d, want 4502", code)
	}
}

// An expired token disconnects its connection within a second of expiry;
// a refresh before it keeps the connection, with the new permissions.
func TestAuthExpiryAndRefresh(t *testing.T) {
	exp := time.Now().Add(700 * time.Millisecond)
	h := newHarness(t, Config{}, withAuth(staticAuth(t, exp)))
	c := h.dial()
	id := c.send(map[string]any{"op": "auth", "token": "short-token"})
	c.expect("ack", id)
	if code := c.closeCode(); code != 4502 {
		t.Fatalf("close code %d, want 4502", code)
	}
	if late := time.Since(exp); late > time.Second {
		t.Fatalf("closed %v after expiry", late)
	}

	r := h.dial()
	id = r.send(map[string]any{"op": "auth", "token": "alice-token"})
	r.expect("ack", id)
	r.subscribe("/demo/k1", "/demo/k2")
	id = r.send(map[string]any{"op": "auth", "token": "alice-narrow"}) // same principal, fewer rights
	r.expect("ack", id)
	if f := r.expect("error", 0); f.Code != "forbidden" || f.Subject != "/demo/k2" {
		t.Fatalf("after the refresh: %s", f)
	}
	id = r.send(map[string]any{"op": "auth", "token": "bob-token"}) // another principal
	if f := r.expect("error", id); f.Code != "unauthorized" {
		t.Fatalf("refresh as someone else: %s", f)
	}
	r.ping()
}
