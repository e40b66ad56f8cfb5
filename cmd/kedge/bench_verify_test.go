package main

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// The SSE driver handles only complete events: an event cut off by the end
// of the stream is neither counted nor its id kept, so the next connection
// resumes from the last event handled.
func TestReadSSEStream(t *testing.T) {
	var gotLastID string
	body := "retry: 2000\nid: A\nevent: ready\ndata: {}\n\n" +
		": heartbeat\n\n" +
		"id: B\nevent: message\ndata: {\"subject\":\"/verify/k1\",\"payload\":\"0\"}\n\n" +
		"id: C\nevent: reset\ndata: {\"subject\":\"/verify/+\",\"reason\":\"retention\"}\n\n" +
		"id: D\r\nevent: message\r\ndata: {\"subject\":\"/verify/k1\",\r\ndata: \"payload\":\"1\"}\r\n\r\n" +
		"id: E\nevent: message\ndata: {\"subject\":\"/verify/k1\",\"payload\":\"2\"}\n" // no blank line: cut off
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotLastID = r.Header.Get("Last-Event-ID")
		if !strings.Contains(r.URL.RawQuery, "subject=%2Fverify%2F%2B") || r.URL.Query().Get("snapshot") != "false" {
			t.Errorf("query %q", r.URL.RawQuery)
		}
		_, _ = w.Write([]byte(body))
	}))
	defer srv.Close()
	node := &benchNode{HTTP: strings.TrimPrefix(srv.URL, "http://")}
	tl := newTally("sse", 2)
	lastID := "Z"
	err := readSSEStream(context.Background(), srv.Client(), node, "verify", &lastID, tl)
	if err == nil {
		t.Fatal("the end of the stream is no error")
	}
	if gotLastID != "Z" {
		t.Fatalf("Last-Event-ID %q, want Z", gotLastID)
	}
	if lastID != "D" {
		t.Fatalf("last id %q, want D (E was cut off)", lastID)
	}
	if tl.delivered != 2 || tl.resets.Load() != 1 || tl.malformed != 0 {
		t.Fatalf("delivered %d resets %d malformed %d, want 2 1 0", tl.delivered, tl.resets.Load(), tl.malformed)
	}
	select {
	case <-tl.ready:
	default:
		t.Fatal("the ready event did not mark the subscriber subscribed")
	}
}

// A line longer than the bound ends the stream with an error.
func TestReadSSEStreamBoundsLines(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("data: " + strings.Repeat("x", sseMaxLine) + "\n\n"))
	}))
	defer srv.Close()
	node := &benchNode{HTTP: strings.TrimPrefix(srv.URL, "http://")}
	lastID := ""
	err := readSSEStream(context.Background(), srv.Client(), node, "verify", &lastID, newTally("sse", 1))
	if err == nil || !strings.Contains(err.Error(), "longer than") {
		t.Fatalf("err %v, want a line too long", err)
	}
}

// The tally counts each key's sequence numbers: once each, in order.
func TestTally(t *testing.T) {
	tl := newTally("ws", 2)
	for _, m := range [][2]string{{"/v/k0", "0"}, {"/v/k0", "2"}, {"/v/k0", "1"}, {"/v/k1", "0"}, {"/v/k0", "2"}, {"/v/x", "0"}} {
		tl.record(m[0], m[1])
	}
	if tl.delivered != 4 || tl.reordered != 1 || tl.duplicated != 1 || tl.malformed != 1 {
		t.Fatalf("delivered %d reordered %d duplicated %d malformed %d, want 4 1 1 1",
			tl.delivered, tl.reordered, tl.duplicated, tl.malformed)
	}
	if got := strings.Join(tl.missing(6, 10), " "); got != "k1/1 k1/2" {
		t.Fatalf("missing %q", got)
	}
}
