package kafka

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kedgehq/kedge/core"
)

// collector records dispatched messages.
type collector struct {
	mu   sync.Mutex
	msgs []*core.Message
}

func (c *collector) BeginAll(string, uint32, map[int32]int64) {}
func (c *collector) Forget(string)                            {}

func (c *collector) Dispatch(m *core.Message) {
	c.mu.Lock()
	c.msgs = append(c.msgs, m)
	c.mu.Unlock()
}

// batchCollector records batches too, as core.Hub takes them.
type batchCollector struct {
	collector
	batches int
}

func (c *batchCollector) DispatchBatch(ms []*core.Message) {
	c.mu.Lock()
	c.batches++
	for _, m := range ms {
		if m.Pos.Partition != ms[0].Pos.Partition || m.Topic != ms[0].Topic {
			panic("a batch mixes partitions")
		}
	}
	c.msgs = append(c.msgs, ms...)
	c.mu.Unlock()
}

func (c *collector) snapshot() []*core.Message {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]*core.Message(nil), c.msgs...)
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func startBroker(t *testing.T, partitions int) *Embedded {
	t.Helper()
	e, err := StartEmbedded(EmbeddedConfig{Listen: "127.0.0.1:0", Partitions: partitions, RetentionTime: time.Hour, RetentionBytes: 1 << 30})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	return e
}

func startSource(t *testing.T, addr string, consumers int, out Dispatcher, recover time.Duration) *Source {
	t.Helper()
	opts, err := ParseProperties(map[string]string{"bootstrap.servers": addr, "metadata.max.age.ms": "200"})
	if err != nil {
		t.Fatal(err)
	}
	exp, _ := core.NewExposure(nil, "")
	s, err := NewSource(SourceConfig{Options: opts, Exposure: exp, Consumers: consumers, RecoverFor: recover, NewTopicsFrom: time.Minute}, out)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return s
}

func TestPublishReachesSourceInOrder(t *testing.T) {
	t.Run("one by one", func(t *testing.T) {
		var got collector
		testPublishReachesSourceInOrder(t, &got, got.snapshot)
	})
	t.Run("batches", func(t *testing.T) {
		var got batchCollector
		testPublishReachesSourceInOrder(t, &got, got.snapshot)
		got.mu.Lock()
		defer got.mu.Unlock()
		if got.batches == 0 {
			t.Fatal("a BatchDispatcher got no batch")
		}
	})
}

func testPublishReachesSourceInOrder(t *testing.T, out Dispatcher, dispatched func() []*core.Message) {
	e := startBroker(t, 3)
	src := startSource(t, e.Addr(), 2, out, time.Minute)
	opts, _ := ParseProperties(map[string]string{"bootstrap.servers": e.Addr()})
	prod, err := NewProducer(opts, 2, src)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = prod.Close(context.Background()) }()

	const n = 200
	for i := range n {
		subj, _ := core.ParseSubject("/orders/k" + string(rune('a'+i%5)))
		pos, err := publishSync(prod, core.Publication{Subject: subj, Payload: []byte{byte(i)}})
		if err != nil {
			t.Fatalf("publish %d: %v", i, err)
		}
		if pos.Epoch == 0 {
			t.Fatalf("publish %d: ack without epoch: %+v", i, pos)
		}
	}
	waitFor(t, 10*time.Second, "all records dispatched", func() bool { return len(dispatched()) == n })
	last := map[string]int{}
	for _, m := range dispatched() {
		if prev, ok := last[m.Subject]; ok && int(m.Payload[0]) <= prev {
			t.Fatalf("%s out of order: %d after %d", m.Subject, m.Payload[0], prev)
		}
		last[m.Subject] = int(m.Payload[0])
	}
	if len(last) != 5 {
		t.Fatalf("want 5 subjects, got %v", last)
	}
}

func TestRecoverOnStartReadsBack(t *testing.T) {
	e := startBroker(t, 1)
	cl, err := kgo.NewClient(kgo.SeedBrokers(e.Addr()), kgo.AllowAutoTopicCreation())
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if err := cl.ProduceSync(context.Background(), &kgo.Record{Topic: "old", Key: []byte("k"), Value: []byte("v1")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	var with, without collector
	startSource(t, e.Addr(), 1, &with, time.Minute)
	startSource(t, e.Addr(), 1, &without, 0)
	waitFor(t, 10*time.Second, "recovered record", func() bool { return len(with.snapshot()) == 1 })
	if m := with.snapshot()[0]; m.Subject != "/old/k" || string(m.Payload) != "v1" {
		t.Fatalf("recovered %+v", m)
	}
	if n := len(without.snapshot()); n != 0 {
		t.Fatalf("without recovery got %d records", n)
	}
}

func publishSync(p *Producer, pub core.Publication) (core.Position, error) {
	type result struct {
		pos core.Position
		err error
	}
	ch := make(chan result, 1)
	p.Publish(context.Background(), pub, func(pos core.Position, err error) { ch <- result{pos, err} })
	r := <-ch
	return r.pos, r.err
}
