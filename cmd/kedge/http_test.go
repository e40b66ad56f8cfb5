package main

import (
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/kedgehq/kedge/auth"
	"github.com/kedgehq/kedge/core"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// Connections that send no complete request within the handshake timeout
// are counted; those that give up sooner, or send a request, are not.
func TestHandshakeTimeoutsCounted(t *testing.T) {
	limits := core.NewLimits(core.LimitsConfig{})
	watch := &handshakes{timeout: 200 * time.Millisecond, limits: limits, fresh: make(map[net.Conn]time.Time)}
	srv := &http.Server{ReadHeaderTimeout: watch.timeout, ConnState: watch.state, ConnContext: watch.connContext,
		Handler: watch.wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/long" { // a stream outliving the timeout
				time.Sleep(2 * watch.timeout)
			}
			_, _ = io.WriteString(w, "ok")
		}))}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = srv.Serve(ln); close(done) }()
	defer func() { _ = srv.Close(); <-done }()
	addr := ln.Addr().String()
	hits := func() int64 { return limits.Hits(core.LimitHandshake, auth.ProtocolHTTP) }

	// Slowloris: half a request line, then nothing.
	slow, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = slow.Close() }()
	_, _ = io.WriteString(slow, "GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ")
	_ = slow.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadAll(slow); err != nil {
		t.Fatalf("the slow connection was not closed: %v", err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for hits() != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("%d handshake timeouts counted, want 1", hits())
		}
		time.Sleep(5 * time.Millisecond)
	}
	// A client that gives up at once, a request, and a request outliving the
	// timeout.
	quick, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	_ = quick.Close()
	for _, path := range []string{"/", "/long"} {
		resp, err := http.Get("http://" + addr + path)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
	}
	http.DefaultClient.CloseIdleConnections()
	time.Sleep(3 * watch.timeout) // long enough for a wrong count to show
	if hits() != 1 {
		t.Fatalf("%d handshake timeouts counted, want still 1", hits())
	}
	watch.mu.Lock()
	defer watch.mu.Unlock()
	if len(watch.fresh) != 0 {
		t.Fatalf("%d connections still tracked", len(watch.fresh))
	}
}
