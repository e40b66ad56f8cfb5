package ws

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/kedgehq/kedge/core"
)

// A Kafka batch reaches a connection whole and in order, through
// DeliverBatch, for an exact and a pattern subscription alike.
func TestDeliverBatchInOrder(t *testing.T) {
	h := newHarness(t, Config{}, cacheSize(1000))
	c := h.dial()
	c.subscribe("/demo/a", "/demo/b/+")
	var batch []*core.Message
	for i := range int64(600) { // past core's chunk of 256
		batch = append(batch, msg(t, []string{"/demo/a", "/demo/b/x"}[i%2], i, fmt.Sprint(i)))
	}
	h.hub.DispatchBatch(batch)
	next := map[string]int64{"/demo/a": 0, "/demo/b/x": 1}
	for range 600 {
		f := c.next()
		var off int64
		if _, err := fmt.Sscanf(f.Position, "1-0-%d", &off); err != nil || f.Op != "message" {
			t.Fatalf("got %.80s", f)
		}
		if want := next[f.Subject]; off != want {
			t.Fatalf("%s: offset %d, want %d", f.Subject, off, want)
		}
		next[f.Subject] += 2
	}
	if st := h.srv.Stats(); st.Delivered != 600 || st.Dropped != 0 {
		t.Fatalf("stats %+v", st)
	}
}

// A batch that does not fit the queue: a standard subscription drops what
// does not fit and stays; a guaranteed one gets an unbroken prefix, then a
// slow-consumer close.
func TestDeliverBatchOverflow(t *testing.T) {
	payload := strings.Repeat("x", 16<<10)
	batch := func(t *testing.T, subject string) []*core.Message {
		var ms []*core.Message
		for i := range int64(20) { // 320 KiB into a 64 KiB queue at once
			ms = append(ms, msg(t, subject, i, payload))
		}
		return ms
	}
	t.Run("standard", func(t *testing.T) {
		h := newHarness(t, Config{WriteQueueSize: 64 << 10}, cacheSize(1))
		c := h.dial()
		id := c.send(map[string]any{"op": "subscribe", "subjects": []string{"/demo/std"}, "mode": "standard"})
		c.expect("ack", id)
		c.waitSubscribed("/demo/std")
		h.hub.DispatchBatch(batch(t, "/demo/std"))
		st := h.srv.Stats()
		if st.Dropped == 0 || st.Delivered+st.Dropped != 20 || st.SlowClosed != 0 {
			t.Fatalf("stats %+v: want drops, delivered+dropped = 20, no close", st)
		}
		h.hub.Dispatch(msg(t, "/demo/std", 20, "after"))
		last := int64(-1)
		for {
			f := c.next()
			var off int64
			if _, err := fmt.Sscanf(f.Position, "1-0-%d", &off); err != nil || off <= last {
				t.Fatalf("after %d got %.80s", last, f)
			}
			if last = off; off == 20 {
				break
			}
		}
	})
	t.Run("guaranteed", func(t *testing.T) {
		h := newHarness(t, Config{WriteQueueSize: 64 << 10}, cacheSize(1))
		c := h.dial()
		c.subscribe("/demo/slow")
		h.hub.DispatchBatch(batch(t, "/demo/slow"))
		if st := h.srv.Stats(); st.SlowClosed != 1 || st.Dropped != 0 {
			t.Fatalf("stats %+v", st)
		}
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
			if err != nil || f.Position != fmt.Sprintf("1-0-%d", got) {
				t.Fatalf("message %d: %.80s %v", got, data, err)
			}
			got++
		}
		if got == 0 || got >= 20 {
			t.Fatalf("read %d of 20 messages before the close", got)
		}
	})
}

// BenchmarkDispatchServerSideBatch is BenchmarkDispatchServerSide with the
// messages dispatched as Kafka batches of 64 (core.Hub.DispatchBatch, as
// the kafka package does): each connection's queue is locked, and its
// writer woken, once per batch. ns/op is per message to 1000 connections.
func BenchmarkDispatchServerSideBatch(b *testing.B) {
	const conns, batch = 1000, 64
	h := newHarness(b, Config{})
	f, err := h.node.ParseFilter("/bench/k")
	if err != nil {
		b.Fatal(err)
	}
	var cs []*conn
	var subs []*core.Subscription
	for range conns {
		c := &conn{srv: h.srv, out: &writer{nc: &discardConn{}, limit: 1 << 20, timeout: time.Second, onError: func(error) {}}}
		cs = append(cs, c)
		subs = append(subs, h.node.Subscribe(c, f, core.SubscribeOptions{}))
	}
	b.Cleanup(func() {
		for _, s := range subs {
			h.hub.Unsubscribe(s)
		}
		for _, c := range cs {
			for c.out.queued() > 0 {
				time.Sleep(time.Millisecond)
			}
		}
	})
	payload := []byte(`{"speed":88.5,"heading":270,"vehicle":"bus-42","note":"a typical small JSON payload"}`)
	now := time.Now()
	ms := make([]*core.Message, batch)
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i += batch {
		for j := range ms {
			ms[j] = &core.Message{Subject: f.Name, Topic: f.Topic, Key: f.Subject.Key, HasKey: true,
				Payload: payload, Time: now, Pos: core.Position{Epoch: 1, Offset: int64(i + j)}}
		}
		h.hub.DispatchBatch(ms)
	}
	for _, c := range cs {
		for c.out.queued() > 0 {
			time.Sleep(10 * time.Microsecond)
		}
	}
	elapsed := time.Since(start)
	b.StopTimer()
	n := (b.N + batch - 1) / batch * batch
	if st := h.srv.Stats(); st.Delivered != int64(n)*conns {
		b.Fatalf("delivered %d of %d", st.Delivered, int64(n)*conns)
	}
	b.ReportMetric(float64(n)*conns/elapsed.Seconds(), "deliveries/s")
}
