package sse

import (
	"fmt"
	"log/slog"
	"net/http"
	"testing"
	"time"

	"github.com/kedgehq/kedge/core"
)

// discardWriter is a ResponseWriter that accepts everything at once.
type discardWriter struct{ h http.Header }

func (d *discardWriter) Header() http.Header         { return d.h }
func (d *discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (d *discardWriter) WriteHeader(int)             {}
func (d *discardWriter) Flush()                      {}

// fanOut subscribes n streams writing into discardWriters (which cannot
// set write deadlines) to one subject, runs loop with a dispatch function,
// and checks every message reached every stream.
func fanOut(tb testing.TB, n int, loop func(dispatch func())) {
	hub := core.NewHub(core.CacheConfig{Size: 1})
	hub.Begin("demo", 1, 0, 0)
	srv := NewServer(&core.Node{Hub: hub}, Config{Logger: slog.New(slog.DiscardHandler)})
	f, _ := core.ParseFilter("/demo/k")
	names := []string{"/demo/k"}
	var streams []*stream
	for range n {
		st := &stream{srv: srv, names: names, fp: fingerprint(names),
			cursors: []cursor{{epoch: 1, parts: []partOffset{{0, -1}}}}, starts: []cursor{{}}, floors: []cursor{{}}}
		// A large queue: a tight dispatch loop may outrun a writer the
		// scheduler has not run yet, which is a slow consumer, not the point.
		st.out = newWriter(&discardWriter{h: http.Header{}}, 256<<20, time.Second, func(error) {})
		st.subs = append(st.subs, hub.Subscribe(st, f, core.SubscribeOptions{Tag: 0}))
		streams = append(streams, st)
	}
	payload := make([]byte, 100)
	off := int64(0)
	loop(func() {
		hub.Dispatch(&core.Message{Subject: "/demo/k", Topic: "demo", Key: "k", HasKey: true,
			Payload: payload, Pos: core.Position{Epoch: 1, Offset: off}})
		off++
	})
	for _, st := range streams {
		hub.Unsubscribe(st.subs[0])
		st.end()
		<-st.out.done
	}
	if s := srv.Stats(); s.Delivered != off*int64(n) || s.Errors != 0 {
		tb.Fatalf("delivered %d of %d messages × %d streams: %+v", s.Delivered, off, n, s)
	}
}

// A ResponseWriter without write deadlines (wrapped by middleware without
// Unwrap) still carries the stream.
func TestStreamWithoutWriteDeadlines(t *testing.T) {
	fanOut(t, 3, func(dispatch func()) {
		for range 100 {
			dispatch()
		}
	})
}

// BenchmarkFanOut measures one message delivered to n SSE streams: the
// shared encoding, each stream's id and queueing, and the writers.
func BenchmarkFanOut(b *testing.B) {
	for _, n := range []int{1, 100, 1000} {
		b.Run(fmt.Sprintf("streams=%d", n), func(b *testing.B) {
			fanOut(b, n, func(dispatch func()) {
				b.ReportAllocs()
				b.SetBytes(int64(100 * n))
				for b.Loop() {
					dispatch()
				}
				b.StopTimer()
			})
		})
	}
}
