package auth

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// backend is a fake webhook backend: it records the bodies it receives and
// answers with the function the test gives.
type backend struct {
	srv    *httptest.Server
	calls  atomic.Int64
	mu     sync.Mutex
	bodies []map[string]any
	auth   []string // the Authorization header of each call
	answer func(req map[string]any) (status int, body string)
}

func newBackend(t *testing.T, answer func(req map[string]any) (int, string)) *backend {
	b := &backend{answer: answer}
	b.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.calls.Add(1)
		var req map[string]any
		data, _ := io.ReadAll(r.Body)
		if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/json" ||
			json.Unmarshal(data, &req) != nil {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		b.mu.Lock()
		b.bodies = append(b.bodies, req)
		b.auth = append(b.auth, r.Header.Get("Authorization"))
		answer := b.answer
		b.mu.Unlock()
		status, body := answer(req)
		w.WriteHeader(status)
		_, _ = io.WriteString(w, body)
	}))
	t.Cleanup(b.srv.Close)
	return b
}

func (b *backend) last() (map[string]any, string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.bodies[len(b.bodies)-1], b.auth[len(b.auth)-1]
}

func (b *backend) setAnswer(f func(map[string]any) (int, string)) {
	b.mu.Lock()
	b.answer = f
	b.mu.Unlock()
}

func newTestWebhook(t *testing.T, clk *clock, cfg WebhookConfig, opts ...Option) *Webhook {
	t.Helper()
	w, err := NewWebhook(cfg, append([]Option{WithClock(clk.Now)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

func TestWebhookAuthenticate(t *testing.T) {
	clk := newClock()
	exp := clk.Now().Add(10 * time.Second).Format(time.RFC3339)
	b := newBackend(t, func(req map[string]any) (int, string) {
		switch req["token"] {
		case "good":
			return 200, `{"allow":true,"name":"alice","expires":"` + exp + `","subscribe":["/a/#"],"publish":["/a/x"],"claims":{"tier":"gold"}}`
		case "deny":
			return 200, `{"allow":false,"reason":"account suspended"}`
		case "401":
			return 401, `{"reason":"who are you?"}`
		case "403":
			return 403, `not json`
		}
		return 200, `{"allow":false}`
	})
	w := newTestWebhook(t, clk, WebhookConfig{URL: b.srv.URL, Secret: "s3cret"})
	creds := &Credentials{Protocol: ProtocolSSE, Remote: "203.0.113.7:5555", Token: "good",
		Header: http.Header{"Cookie": {"session=1"}, "X-Other": {"no"}}}
	id, err := w.Authenticate(t.Context(), creds)
	if err != nil {
		t.Fatal(err)
	}
	if id.Name != "alice" || id.Expires.Format(time.RFC3339) != exp || id.Subscribe[0] != "/a/#" ||
		id.Publish[0] != "/a/x" || id.Claims["tier"] != "gold" {
		t.Fatalf("identity %+v", id)
	}
	body, authz := b.last()
	want := map[string]any{"type": "authenticate", "protocol": "sse", "remote": "203.0.113.7:5555", "token": "good",
		"headers": map[string]any{"Cookie": []any{"session=1"}}}
	if got, _ := json.Marshal(body); !jsonEqual(got, want) {
		t.Fatalf("request body %s", got)
	}
	if authz != "Bearer s3cret" {
		t.Fatalf("Authorization to the backend: %q", authz)
	}

	for tok, want := range map[string]string{
		"deny": "account suspended", "401": "who are you?", "403": "refused by the webhook", "other": "refused by the webhook",
	} {
		_, err := w.Authenticate(t.Context(), &Credentials{Token: tok})
		if !errors.Is(err, ErrUnauthenticated) || errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), want) {
			t.Errorf("token %q: %v, want %q", tok, err, want)
		}
	}

	// Cached: the same credentials from the same host, another port.
	n := b.calls.Load()
	creds2 := *creds
	creds2.Remote = "203.0.113.7:6666"
	if _, err := w.Authenticate(t.Context(), &creds2); err != nil || b.calls.Load() != n {
		t.Fatalf("not cached: %v, %d calls", err, b.calls.Load()-n)
	}
	// Denials are cached too.
	if _, err := w.Authenticate(t.Context(), &Credentials{Token: "deny"}); err == nil || b.calls.Load() != n {
		t.Fatal("denial not cached")
	}
	// Another cookie is another question.
	creds2.Header = http.Header{"Cookie": {"session=2"}}
	if _, err := w.Authenticate(t.Context(), &creds2); err != nil || b.calls.Load() != n+1 {
		t.Fatalf("other cookie answered from the cache")
	}
	// The identity's own expiry (10s) bounds the cache (30s).
	clk.Add(10 * time.Second)
	if _, err := w.Authenticate(t.Context(), creds); !errors.Is(err, ErrExpired) || b.calls.Load() != n+2 {
		t.Fatalf("after the identity's expiry: %v (%d new calls)", err, b.calls.Load()-n)
	}
}

// jsonEqual compares got with want's JSON, both in canonical form.
func jsonEqual(got []byte, want any) bool {
	w, _ := json.Marshal(want)
	var a, b any
	if json.Unmarshal(got, &a) != nil || json.Unmarshal(w, &b) != nil {
		return false
	}
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return bytes.Equal(x, y)
}

func TestWebhookAuthorize(t *testing.T) {
	clk := newClock()
	b := newBackend(t, func(req map[string]any) (int, string) {
		if req["action"] == "publish" {
			return 200, `{"allow":false,"reason":"read-only account"}`
		}
		return 200, `{"allow":true}`
	})
	w := newTestWebhook(t, clk, WebhookConfig{URL: b.srv.URL, CacheTTL: time.Minute})
	id := &Identity{Name: "alice", Protocol: ProtocolMQTT, Remote: "198.51.100.1:1883", Claims: map[string]any{"tier": "gold"}}
	if err := w.Authorize(t.Context(), id, Subscribe, "/vehicles/+/speed"); err != nil {
		t.Fatal(err)
	}
	body, _ := b.last()
	identity := map[string]any{"name": "alice", "claims": map[string]any{"tier": "gold"}}
	want := map[string]any{"type": "authorize", "protocol": "mqtt", "remote": "198.51.100.1:1883",
		"identity": identity, "action": "subscribe", "subject": "/vehicles/+/speed"}
	if got, _ := json.Marshal(body); !jsonEqual(got, want) {
		t.Fatalf("request body %s", got)
	}
	err := w.Authorize(t.Context(), id, Publish, "/vehicles/1/speed")
	if !errors.Is(err, ErrForbidden) ||
		err.Error() != `forbidden: "alice" may not publish on "/vehicles/1/speed": read-only account` {
		t.Fatalf("publish: %v", err)
	}
	// Cached per identity, action and subject, for CacheTTL.
	n := b.calls.Load()
	errSub := w.Authorize(t.Context(), id, Subscribe, "/vehicles/+/speed")
	errPub := w.Authorize(t.Context(), id, Publish, "/vehicles/1/speed")
	if b.calls.Load() != n || errSub != nil || !errors.Is(errPub, ErrForbidden) {
		t.Fatalf("not cached, or not the same answers: %v, %v", errSub, errPub)
	}
	errBob := w.Authorize(t.Context(), &Identity{Name: "bob", Protocol: ProtocolMQTT}, Subscribe, "/vehicles/+/speed")
	errAll := w.Authorize(t.Context(), id, Subscribe, "/vehicles/#")
	if b.calls.Load() != n+2 || errBob != nil || errAll != nil {
		t.Fatalf("another identity or subject answered from the cache: %d calls", b.calls.Load()-n)
	}
	clk.Add(time.Minute)
	if err := w.Authorize(t.Context(), id, Subscribe, "/vehicles/+/speed"); err != nil || b.calls.Load() != n+3 {
		t.Fatal("cache entry outlived its TTL")
	}
	// Identity checks come first, without a call.
	if err := w.Authorize(t.Context(), nil, Subscribe, "/a"); !errors.Is(err, ErrUnauthenticated) {
		t.Fatalf("nil identity: %v", err)
	}
	old := &Identity{Name: "old", Expires: clk.Now()}
	if err := w.Authorize(t.Context(), old, Subscribe, "/a"); !errors.Is(err, ErrExpired) || b.calls.Load() != n+3 {
		t.Fatalf("expired identity: %v", err)
	}
}

func TestWebhookFailuresDeny(t *testing.T) {
	clk := newClock()
	release := make(chan struct{})
	b := newBackend(t, nil)
	var logs bytes.Buffer
	var logMu sync.Mutex
	logger := slog.New(slog.NewTextHandler(lockedWriter{&logs, &logMu}, nil))
	w := newTestWebhook(t, clk, WebhookConfig{URL: b.srv.URL, Timeout: 50 * time.Millisecond}, WithLogger(logger))
	id := &Identity{Name: "alice"}
	for _, tc := range []struct {
		name   string
		answer func(map[string]any) (int, string)
		reason string
	}{
		{"5xx", func(map[string]any) (int, string) { return 502, "" }, "webhook: auth backend unavailable: answered 502 Bad Gateway"},
		{"404", func(map[string]any) (int, string) { return 404, "" }, "answered 404 Not Found"},
		{"bad JSON", func(map[string]any) (int, string) { return 200, `{"allow":tru` }, "answer is not the expected JSON"},
		{"not an object", func(map[string]any) (int, string) { return 200, `[true]` }, "answer is not the expected JSON"},
		{"timeout", func(map[string]any) (int, string) { <-release; return 200, `{"allow":true}` }, "no answer within 50ms"},
	} {
		b.setAnswer(tc.answer)
		err := w.Authorize(t.Context(), id, Publish, "/"+strings.ReplaceAll(tc.name, " ", "-"))
		if !errors.Is(err, ErrForbidden) || !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), tc.reason) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.reason)
		}
		if strings.Contains(err.Error(), b.srv.URL) {
			t.Errorf("%s: the error shows the backend's address: %v", tc.name, err)
		}
		_, err = w.Authenticate(t.Context(), &Credentials{Token: tc.name})
		if !errors.Is(err, ErrUnauthenticated) || !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), tc.reason) {
			t.Errorf("%s: authenticate: %v, want %q", tc.name, err, tc.reason)
		}
	}
	close(release)
	// Failures are not cached: the backend is asked again once it works.
	b.setAnswer(func(map[string]any) (int, string) { return 200, `{"allow":true}` })
	if err := w.Authorize(t.Context(), id, Publish, "/5xx"); err != nil {
		t.Fatalf("after recovery: %v", err)
	}
	logMu.Lock()
	defer logMu.Unlock()
	if !strings.Contains(logs.String(), b.srv.URL) || !strings.Contains(logs.String(), "502") {
		t.Errorf("the log does not say which backend failed how:\n%s", logs.String())
	}
}

type lockedWriter struct {
	w  io.Writer
	mu *sync.Mutex
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func TestWebhookBadIdentityAnswers(t *testing.T) {
	clk := newClock()
	b := newBackend(t, func(req map[string]any) (int, string) {
		switch req["token"] {
		case "noname":
			return 200, `{"allow":true}`
		case "badperm":
			return 200, `{"allow":true,"name":"a","subscribe":["/a/#/b"]}`
		case "expired":
			return 200, `{"allow":true,"name":"a","expires":"2020-01-01T00:00:00Z"}`
		}
		return 200, `{"allow":true,"name":"a","publish":["nope"]}`
	})
	w := newTestWebhook(t, clk, WebhookConfig{URL: b.srv.URL})
	for tok, want := range map[string]string{
		"noname": `answer allows but has no "name"`, "badperm": "invalid subscribe permission",
		"badpub": "invalid publish permission", "expired": "expired at 2020-01-01T00:00:00Z",
	} {
		if _, err := w.Authenticate(t.Context(), &Credentials{Token: tok}); !errors.Is(err, ErrUnauthenticated) ||
			!strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", tok, err, want)
		}
	}
}

// TestWebhookSharesCalls: concurrent identical questions make one call.
func TestWebhookSharesCalls(t *testing.T) {
	clk := newClock()
	release := make(chan struct{})
	b := newBackend(t, func(map[string]any) (int, string) { <-release; return 200, `{"allow":true}` })
	w := newTestWebhook(t, clk, WebhookConfig{URL: b.srv.URL, CacheSize: -1}) // no cache: sharing alone
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for range 20 {
		wg.Go(func() { errs <- w.Authorize(context.Background(), &Identity{Name: "a"}, Subscribe, "/x") })
	}
	waitFor(t, "one call in flight", func() bool { return b.calls.Load() == 1 })
	waitFor(t, "all callers waiting on the one call", func() bool {
		w.mu.Lock()
		defer w.mu.Unlock()
		for _, c := range w.inflight {
			return len(w.inflight) == 1 && c.askers == 20
		}
		return false
	})
	close(release)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := b.calls.Load(); n != 1 {
		t.Fatalf("%d calls for one question", n)
	}
	// Without a cache, the next question is asked again.
	if err := w.Authorize(t.Context(), &Identity{Name: "a"}, Subscribe, "/x"); err != nil || b.calls.Load() != 2 {
		t.Fatalf("CacheSize -1 still caches: %v, %d calls", err, b.calls.Load())
	}
}

// TestWebhookCallerCancels: a caller that gives up is denied at once; the call
// goes on (bounded by the timeout) for the others.
func TestWebhookCallerCancels(t *testing.T) {
	clk := newClock()
	release := make(chan struct{})
	b := newBackend(t, func(map[string]any) (int, string) { <-release; return 200, `{"allow":true}` })
	w := newTestWebhook(t, clk, WebhookConfig{URL: b.srv.URL})
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error)
	go func() { done <- w.Authorize(ctx, &Identity{Name: "a"}, Subscribe, "/x") }()
	waitFor(t, "the call", func() bool { return b.calls.Load() == 1 })
	cancel()
	if err := <-done; !errors.Is(err, ErrForbidden) || !errors.Is(err, ErrUnavailable) || !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled caller: %v", err)
	}
	close(release)
	// The shared call finished and its answer was cached.
	waitFor(t, "the answer cached", func() bool { return w.authz.len() == 1 })
	if err := w.Authorize(t.Context(), &Identity{Name: "a"}, Subscribe, "/x"); err != nil || b.calls.Load() != 1 {
		t.Fatalf("after the call: %v, %d calls", err, b.calls.Load())
	}
}

func TestWebhookConfig(t *testing.T) {
	for _, u := range []string{"", "ftp://x", "http://", "not a url", "/relative"} {
		if _, err := NewWebhook(WebhookConfig{URL: u}); err == nil || !strings.Contains(err.Error(), "auth.webhook.url") {
			t.Errorf("URL %q: %v", u, err)
		}
	}
	w, err := NewWebhook(WebhookConfig{URL: "https://auth.example/kedge"})
	if err != nil {
		t.Fatal(err)
	}
	if w.timeout != 2*time.Second || w.ttl != 30*time.Second || w.authz.lru.Len() != 0 ||
		strings.Join(w.forward, ",") != "Authorization,Cookie" {
		t.Fatalf("defaults: %+v", w)
	}
}

func TestTTLCache(t *testing.T) {
	clk := newClock()
	c := newTTLCache[int](2, clk.Now)
	c.add("a", 1, clk.Now().Add(time.Second))
	c.add("b", 2, clk.Now().Add(time.Minute))
	c.add("past", 3, clk.Now()) // already expired: not stored
	if v, ok := c.get("a"); !ok || v != 1 {
		t.Fatal("a missing")
	}
	if _, ok := c.get("past"); ok || c.len() != 2 {
		t.Fatal("an expired entry was stored")
	}
	c.add("c", 3, clk.Now().Add(time.Minute)) // evicts b, the least recently used
	if _, ok := c.get("b"); ok || c.len() != 2 {
		t.Fatal("size bound not kept")
	}
	clk.Add(time.Second)
	if _, ok := c.get("a"); ok {
		t.Fatal("a outlived its expiry")
	}
	if c.len() != 1 {
		t.Fatal("an expired entry was not dropped on lookup")
	}
	off := newTTLCache[int](0, clk.Now)
	off.add("a", 1, clk.Now().Add(time.Hour))
	if _, ok := off.get("a"); ok || off.len() != 0 {
		t.Fatal("a disabled cache caches")
	}
}
