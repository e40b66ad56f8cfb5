package mqtt

import (
	"fmt"
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kedgehq/kedge/core"
)

// BenchmarkFanout dispatches messages to MQTT subscribers on loopback TCP
// that read and discard everything: the Hub's delivery, the shared
// encoding, each session's queue and each connection's batched writes.
// One op is one message delivered to every subscriber; allocs/op divided by
// the subscriber count is the allocation per delivery.
func BenchmarkFanout(b *testing.B) {
	for _, v := range []byte{4, 5} {
		for _, subs := range []int{1, 100} {
			b.Run(fmt.Sprintf("v%d/subscribers=%d", v, subs), func(b *testing.B) { benchFanout(b, v, subs) })
		}
	}
}

func benchFanout(b *testing.B, v byte, subs int) {
	hub := core.NewHub(core.CacheConfig{})
	k := &fakeKafka{hub: hub, offsets: map[string]int64{}}
	srv, err := NewServer(&core.Node{Hub: hub, Publisher: k}, Config{Listen: "127.0.0.1:0", WriteQueueSize: 64 << 20})
	if err != nil {
		b.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() {
		srv.Shutdown(b.Context())
	}()
	var conns []net.Conn
	var read atomic.Int64
	for i := range subs {
		c := dial(b, srv.Addr().String(), v)
		c.mustConnect(fmt.Sprint("bench", i), true)
		c.subscribe(1, sub("bench/k1", 0))
		conns = append(conns, c.nc)
		go func() { _, _ = io.Copy(countWriter{&read}, c.br) }()
	}
	payload, headers := make([]byte, 100), []core.Header{{Key: "h", Value: []byte("v")}}
	message := func(i int) *core.Message {
		return &core.Message{Subject: "/bench/k1", Topic: "bench", Key: "k1", HasKey: true,
			Payload: payload, Headers: headers, Pos: core.Position{Offset: int64(i)}}
	}
	size := int64(publishSize(encodePublish(message(0), v == 5, ""), 0))
	b.SetBytes(int64(len(payload) * subs))
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		hub.Dispatch(message(i)) // one allocation per message: the Kafka side's
	}
	want := int64(b.N*subs) * size
	deadline := time.Now().Add(time.Minute)
	for read.Load() < want && time.Now().Before(deadline) {
		time.Sleep(100 * time.Microsecond)
	}
	b.StopTimer()
	if got := read.Load(); got < want {
		b.Fatalf("subscribers read %d bytes of %d (dropped %d)", got, want, srv.Stats().Dropped)
	}
	for _, c := range conns {
		_ = c.Close()
	}
}

type countWriter struct{ n *atomic.Int64 }

func (w countWriter) Write(p []byte) (int, error) {
	w.n.Add(int64(len(p)))
	return len(p), nil
}
