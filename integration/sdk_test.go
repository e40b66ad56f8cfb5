package integration

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kedgehq/kedge/protocols/ws/client"
)

// The Go SDK across a kedge restart: records keep flowing into Kafka while
// the node stops and a new one starts on the same address; the subscriber,
// using nothing but the SDK, ends with every message exactly once, in order.
func TestGoSDKAcrossServerRestart(t *testing.T) {
	broker := startBroker(t)
	addr := broker.ListenAddrs()[0]
	cl := kafkaClient(t, addr)
	produce(t, cl, &kgo.Record{Topic: "ticks", Value: []byte("create")})
	first := startKedge(t, "kafka.bootstrap.servers="+addr)

	// --- the application: only the SDK's API ---
	var mu sync.Mutex
	var got []string
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c, err := client.Connect(ctx, first.WS(), client.Options{MinBackoff: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Close() }()
	_, err = c.Subscribe(ctx, "/ticks/+", func(m client.Message) {
		mu.Lock()
		got = append(got, m.Subject+"="+string(m.Payload))
		mu.Unlock()
	}, client.SubscribeOptions{NoSnapshot: true, OnReset: func(r string) { t.Errorf("unexpected reset: %s", r) }})
	if err != nil {
		t.Fatal(err)
	}
	// --- end of the application ---

	const n = 600
	var want []string
	produced := make(chan struct{})
	go func() {
		defer close(produced)
		for i := range n {
			key := fmt.Sprintf("k%d", i%4)
			if err := cl.ProduceSync(ctx, &kgo.Record{Topic: "ticks", Key: []byte(key), Value: []byte(strconv.Itoa(i))}).FirstErr(); err != nil {
				t.Errorf("produce %d: %v", i, err)
				return
			}
			time.Sleep(2 * time.Millisecond)
		}
	}()
	for i := range n {
		want = append(want, fmt.Sprintf("/ticks/k%d=%d", i%4, i))
	}
	waitFor(t, 30*time.Second, "some messages before the restart", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(got) > 100
	})
	first.stop()
	second := startKedge(t, "kafka.bootstrap.servers="+addr, "http.listen="+first.HTTP)
	<-produced
	waitFor(t, 30*time.Second, "every message", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(got) >= n
	})
	time.Sleep(300 * time.Millisecond) // a duplicate would arrive now
	mu.Lock()
	defer mu.Unlock()
	if len(got) != n {
		t.Fatalf("got %d messages, want %d", len(got), n)
	}
	// One partition (kfake default 3? then per key): check per-key order and exactly-once.
	perKey := map[string]int{}
	for _, g := range got {
		var k, v int
		if _, err := fmt.Sscanf(g, "/ticks/k%d=%d", &k, &v); err != nil {
			t.Fatalf("message %q: %v", g, err)
		}
		if prev, ok := perKey[fmt.Sprint(k)]; ok && v <= prev {
			t.Fatalf("key k%d: %d after %d", k, v, prev)
		}
		perKey[fmt.Sprint(k)] = v
	}
	seen := map[string]bool{}
	for _, g := range got {
		if seen[g] {
			t.Fatalf("duplicate %s", g)
		}
		seen[g] = true
	}
	for _, w := range want {
		if !seen[w] {
			t.Fatalf("missing %s", w)
		}
	}
	_ = second
}
