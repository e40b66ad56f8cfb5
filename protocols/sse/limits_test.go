package sse

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/kedgehq/kedge/auth"
	"github.com/kedgehq/kedge/core"
)

func withLimits(e *env, cfg core.LimitsConfig) *core.Limits {
	l := core.NewLimits(cfg)
	e.srv.node.Limits = l
	return l
}

// get GETs url and returns the status, the decoded JSON body and the headers.
func get(t *testing.T, url string) (int, map[string]any, http.Header) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, decode(t, string(b)), resp.Header
}

// Streams count against the connection limits for as long as they last; a
// stream past a limit is refused before it starts, with 429 or 503.
func TestStreamConnectionLimits(t *testing.T) {
	e := newEnv(t, Config{}, 1)
	limits := withLimits(e, core.LimitsConfig{MaxConnections: 3, MaxConnectionsPerIP: 2})
	a := e.openStream("subject=/demo/a", "")
	a.expect("ready")
	b := e.openStream("subject=/demo/b", "")
	b.expect("ready")
	status, body, h := get(t, e.url("subject=/demo/c"))
	if status != http.StatusTooManyRequests || body["code"] != "too_many_connections" || h.Get("Retry-After") != "1" ||
		!strings.Contains(fmt.Sprint(body["message"]), "limits.max.connections.per.ip") {
		t.Fatalf("third stream from one address: %d %v %v", status, body, h)
	}
	if limits.Hits(core.LimitConnectionsPerIP, auth.ProtocolSSE) != 1 {
		t.Fatal("the refusal is not counted")
	}
	// The streams in place still deliver.
	e.dispatch("a", 0, "still here")
	if ev := a.expect("message"); !strings.Contains(ev.data, "still here") {
		t.Fatalf("stream a got %s", ev.data)
	}
	release, err := limits.Admit(auth.ProtocolWS, "192.0.2.7:1")
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	if status, body, _ := get(t, e.url("subject=/demo/c")); status != http.StatusServiceUnavailable || body["code"] != "server_full" {
		t.Fatalf("stream on a full node: %d %v", status, body)
	}
	_ = a.resp.Body.Close()
	eventually(t, waitFor, "the ended stream's slot", func() bool { return limits.Open() == 2 })
}

// HTTP publishes are rate limited per client address (429 rate_limited with
// Retry-After), count as connections while they wait for Kafka, and are
// never produced when refused.
func TestPublishRateLimitedPerAddress(t *testing.T) {
	e := newEnv(t, Config{}, 1)
	limits := withLimits(e, core.LimitsConfig{PublishRate: 1, PublishBurst: 2})
	for i := range 2 {
		if status, body := post(t, e, `{"subject":"/demo/k","payload":"x"}`); status != 200 {
			t.Fatalf("publish %d: %d %v", i, status, body)
		}
	}
	resp, err := http.Post(e.http.URL+"/v1/publish", "application/json", strings.NewReader(`{"subject":"/demo/k","payload":"x"}`))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	body := decode(t, string(b))
	if resp.StatusCode != http.StatusTooManyRequests || body["code"] != "rate_limited" || body["subject"] != "/demo/k" ||
		resp.Header.Get("Retry-After") != "1" {
		t.Fatalf("third publish: %d %v %v", resp.StatusCode, body, resp.Header)
	}
	if n := len(e.pub.published()); n != 2 {
		t.Fatalf("%d publishes produced, want 2", n)
	}
	if limits.Hits(core.LimitPublishRate, auth.ProtocolHTTP) != 1 || limits.Open() != 0 {
		t.Fatalf("hits %d open %d", limits.Hits(core.LimitPublishRate, auth.ProtocolHTTP), limits.Open())
	}
}

// A publish whose body trickles in slower than BodyTimeout gets 408.
func TestPublishSlowBody(t *testing.T) {
	e := newEnv(t, Config{BodyTimeout: 100 * time.Millisecond}, 1)
	limits := withLimits(e, core.LimitsConfig{})
	nc, err := net.Dial("tcp", e.http.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = nc.Close() }()
	_, _ = fmt.Fprintf(nc, "POST /v1/publish HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"subject\":")
	_ = nc.SetReadDeadline(time.Now().Add(waitFor))
	b, _ := io.ReadAll(nc)
	if !strings.HasPrefix(string(b), "HTTP/1.1 408") || !strings.Contains(string(b), `"code":"request_timeout"`) {
		t.Fatalf("answer to a slow body: %q", b)
	}
	if limits.Hits(core.LimitHandshake, auth.ProtocolHTTP) != 1 || len(e.pub.published()) != 0 {
		t.Fatal("the timeout is not counted, or something was published")
	}
}

func TestOriginRefusalsCounted(t *testing.T) {
	e := newEnv(t, Config{Origins: auth.NewOrigins([]string{"https://app.example"})}, 1)
	limits := withLimits(e, core.LimitsConfig{})
	for _, path := range []string{"/v1/sse?subject=/demo/k", "/v1/snapshot?subject=/demo/k"} {
		req, _ := http.NewRequest("GET", e.http.URL+path, nil)
		req.Header.Set("Origin", "https://evil.example")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden {
			t.Fatalf("%s: %d", path, resp.StatusCode)
		}
	}
	if limits.Hits(core.LimitOrigin, auth.ProtocolSSE) != 1 || limits.Hits(core.LimitOrigin, auth.ProtocolHTTP) != 1 {
		t.Fatal("origin refusals not counted by protocol")
	}
}

func TestSubscriptionLimitCounted(t *testing.T) {
	e := newEnv(t, Config{MaxSubscriptions: 1}, 1)
	limits := withLimits(e, core.LimitsConfig{})
	if status, body, _ := get(t, e.url("subject=/demo/a&subject=/demo/b")); status != 400 || body["code"] != "too_many_subscriptions" {
		t.Fatalf("%d %v", status, body)
	}
	if limits.Hits(core.LimitSubscriptions, auth.ProtocolSSE) != 1 {
		t.Fatal("not counted")
	}
}
