package ws

import (
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kedgehq/kedge/core"
)

// BenchmarkFanout dispatches one message per iteration to 1000 real loopback
// WebSocket connections, each drained by a reader; it reports deliveries
// per second (messages × connections over the wall time until every reader
// has everything). The readers run in this process too, so the number is a
// floor for the server alone. Dispatch keeps at most `window` messages ahead
// of the slowest reader, far below the write queue limit, so no connection
// is ever a slow consumer.
func BenchmarkFanout(b *testing.B) {
	const (
		conns  = 1000
		window = 256
	)
	h := newHarness(b, Config{})
	counts := make([]atomic.Int64, conns)
	for i := 0; i < conns; i++ {
		c := h.dial()
		id := c.send(map[string]any{"op": "subscribe", "subjects": []string{"/bench/k"}, "snapshot": false})
		c.expect("ack", id)
		c.waitSubscribed("/bench/k")
		go func() {
			for {
				_, r, err := c.ws.NextReader()
				if err != nil {
					return
				}
				if _, err := io.Copy(io.Discard, r); err != nil {
					return
				}
				counts[i].Add(1)
			}
		}()
	}
	minCount := func() int64 {
		m := counts[0].Load()
		for i := range counts {
			if n := counts[i].Load(); n < m {
				m = n
			}
		}
		return m
	}
	waitAll := func(n int64) {
		deadline := time.Now().Add(time.Minute)
		for minCount() < n {
			if time.Now().After(deadline) {
				b.Fatalf("readers stuck at %d of %d messages (stats %+v)", minCount(), n, h.srv.Stats())
			}
			time.Sleep(20 * time.Microsecond)
		}
	}
	payload := []byte(`{"speed":88.5,"heading":270,"vehicle":"bus-42","note":"a typical small JSON payload"}`)
	subj, _ := core.ParseSubject("/bench/k")
	now := time.Now()

	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		h.hub.Dispatch(&core.Message{Subject: subj.Name, Topic: subj.Topic, Key: subj.Key, HasKey: true,
			Payload: payload, Time: now, Pos: core.Position{Epoch: 1, Offset: int64(i)}})
		if i%64 == 63 && i >= window {
			waitAll(int64(i - window))
		}
	}
	waitAll(int64(b.N))
	elapsed := time.Since(start)
	b.StopTimer()
	if st := h.srv.Stats(); st.SlowClosed != 0 || st.Dropped != 0 {
		b.Fatalf("stats %+v", st)
	}
	b.ReportMetric(float64(b.N)*conns/elapsed.Seconds(), "deliveries/s")
}

func BenchmarkEncodeMessage(b *testing.B) {
	m := &core.Message{Subject: "/vehicles/bus-42/position", Topic: "vehicles", Key: "bus-42/position", HasKey: true,
		Payload: []byte(`{"lat":52.52,"lon":13.405,"speed":31.5,"note":"quote \" and newline \n"}`),
		Headers: []core.Header{{Key: "content-type", Value: []byte("application/json")}, {Key: "trace", Value: []byte{0xde, 0xad}}},
		Time:    time.Now(), Pos: core.Position{Epoch: 1, Partition: 3, Offset: 123456789}}
	b.ReportAllocs()
	var n int
	for b.Loop() {
		n += len(encoder.Encode(m))
	}
	b.SetBytes(int64(len(encoder.Encode(m))))
	_ = n
}

// discardConn is a net.Conn that accepts every write at once.
type discardConn struct {
	net.Conn // nil: only the methods below are used
	written  atomic.Int64
}

func (d *discardConn) Write(p []byte) (int, error) {
	d.written.Add(int64(len(p)))
	return len(p), nil
}
func (d *discardConn) SetWriteDeadline(time.Time) error { return nil }
func (d *discardConn) Close() error                     { return nil }

// BenchmarkDispatchServerSide measures the server's share of a fan-out
// alone: one message dispatched to 1000 connections whose writers write to
// a discarding net.Conn (no sockets, no client readers). allocs/op divided
// by 1000 is the allocations per delivery (design §5: none).
func BenchmarkDispatchServerSide(b *testing.B) {
	const conns = 1000
	h := newHarness(b, Config{})
	f, err := h.node.ParseFilter("/bench/k")
	if err != nil {
		b.Fatal(err)
	}
	var cs []*conn
	for i := 0; i < conns; i++ {
		dc := &discardConn{}
		c := &conn{srv: h.srv, out: &writer{nc: dc, limit: 1 << 20, timeout: time.Second, onError: func(error) {}}}
		cs = append(cs, c)
	}
	var subs []*core.Subscription
	for _, c := range cs {
		subs = append(subs, h.node.Subscribe(c, f, core.SubscribeOptions{}))
	}
	b.Cleanup(func() {
		for _, s := range subs {
			h.hub.Unsubscribe(s)
		}
		for _, c := range cs { // let every writer goroutine finish
			for c.out.queued() > 0 {
				time.Sleep(time.Millisecond)
			}
		}
	})
	payload := []byte(`{"speed":88.5,"heading":270,"vehicle":"bus-42","note":"a typical small JSON payload"}`)
	now := time.Now()
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		h.hub.Dispatch(&core.Message{Subject: f.Name, Topic: f.Topic, Key: f.Subject.Key, HasKey: true,
			Payload: payload, Time: now, Pos: core.Position{Epoch: 1, Offset: int64(i)}})
	}
	for _, c := range cs {
		for c.out.queued() > 0 {
			time.Sleep(10 * time.Microsecond)
		}
	}
	elapsed := time.Since(start)
	b.StopTimer()
	if st := h.srv.Stats(); st.Delivered != int64(b.N)*conns {
		b.Fatalf("delivered %d of %d", st.Delivered, int64(b.N)*conns)
	}
	b.ReportMetric(float64(b.N)*conns/elapsed.Seconds(), "deliveries/s")
}
