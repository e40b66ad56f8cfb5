package kafka

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kedgehq/kedge/core"
)

func tableBroker(t *testing.T) *kfake.Cluster {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.DefaultNumPartitions(3))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// runTable starts a table on the broker as node; it stops with the test.
func runTable(t *testing.T, addr, topic, node string, maxMemory int64) (*Table, *watched) {
	t.Helper()
	tb, err := NewTable(Options{Brokers: []string{addr}, DeliveryTimeout: 5 * time.Second},
		TableConfig{Topic: topic, Node: node, MaxMemory: maxMemory})
	if err != nil {
		t.Fatal(err)
	}
	w := &watched{}
	tb.Watch(w.add)
	if err := tb.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { tb.Run(ctx); close(done) }()
	t.Cleanup(func() {
		cancel()
		<-done
		cctx, ccancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer ccancel()
		_ = tb.Close(cctx)
	})
	waitFor(t, 10*time.Second, "the table read to its end", tb.Ready)
	return tb, w
}

type watched struct {
	mu   sync.Mutex
	recs []core.TableRecord
}

func (w *watched) add(r core.TableRecord) {
	w.mu.Lock()
	w.recs = append(w.recs, r)
	w.mu.Unlock()
}

// versions lists the versions of key's records watched, in order.
func (w *watched) versions(key string) string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []string
	for _, r := range w.recs {
		if r.Key == key {
			out = append(out, fmt.Sprintf("%d/%s", r.Version.Gen, r.Version.Node))
		}
	}
	return fmt.Sprint(out)
}

func putSync(t *testing.T, tb *Table, recs ...core.TableRecord) {
	t.Helper()
	done := make(chan error, 1)
	tb.Put(recs, func(err error) { done <- err })
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("put: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("put: no answer")
	}
}

func catchUp(t *testing.T, tb *Table) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := tb.CatchUp(ctx); err != nil {
		t.Fatal(err)
	}
}

func rec(key, value string, gen uint64, node string) core.TableRecord {
	r := core.TableRecord{Key: key, Version: core.Version{Gen: gen, Node: node}}
	if value != "" {
		r.Value = []byte(value)
	}
	return r
}

// The table creates its topic compacted, and leaves an existing one be.
func TestTableCreatesCompactedTopic(t *testing.T) {
	broker := tableBroker(t)
	addr := broker.ListenAddrs()[0]
	tb, _ := runTable(t, addr, "__sessions", "a", 1<<20)
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	rcs, err := kadm.NewClient(cl).DescribeTopicConfigs(ctx, "__sessions")
	if err != nil {
		t.Fatal(err)
	}
	rc, err := rcs.On("__sessions", nil)
	if err != nil {
		t.Fatal(err)
	}
	policy := ""
	for _, c := range rc.Configs {
		if c.Key == "cleanup.policy" {
			policy = c.MaybeValue()
		}
	}
	if policy != "compact" {
		t.Fatalf("cleanup.policy %q, want compact", policy)
	}
	if err := tb.Start(context.Background()); err != nil {
		t.Fatalf("Start on an existing topic: %v", err)
	}
}

// What one node writes, another reads: CatchUp right after the write's
// acknowledgement shows it (read-your-writes across nodes). Each key keeps
// its highest version; a record of a lower version (a node that had not
// seen the newer one yet) is ignored by everyone, and the node whose
// record is newer writes it again so that compaction keeps it.
func TestTableVersions(t *testing.T) {
	broker := tableBroker(t)
	addr := broker.ListenAddrs()[0]
	a, aw := runTable(t, addr, "__sessions", "a", 1<<20)
	b, _ := runTable(t, addr, "__sessions", "b", 1<<20)

	putSync(t, a, rec("dev-1", "one", 1, "a"))
	catchUp(t, b)
	if r, ok := b.Get("dev-1"); !ok || string(r.Value) != "one" || r.Version != (core.Version{Gen: 1, Node: "a"}) {
		t.Fatalf("b read %+v %v after catching up", r, ok)
	}
	putSync(t, b, rec("dev-1", "two", 2, "b"))
	catchUp(t, a)
	if r, _ := a.Get("dev-1"); string(r.Value) != "two" {
		t.Fatalf("a read %q, want two", r.Value)
	}
	// a writes late, with the version it had: nobody takes it.
	putSync(t, a, rec("dev-1", "stale", 1, "a"))
	catchUp(t, a)
	catchUp(t, b)
	for name, tb := range map[string]*Table{"a": a, "b": b} {
		if r, _ := tb.Get("dev-1"); string(r.Value) != "two" {
			t.Fatalf("%s read %q after a stale write, want two", name, r.Value)
		}
	}
	waitFor(t, 5*time.Second, "b writing its record again", func() bool { return b.Stats().Reasserted == 1 })
	if a.Stats().Reasserted != 0 || a.Stats().Stale != 1 {
		t.Fatalf("a: %+v", a.Stats())
	}
	// Kafka's last record of the key is b's again.
	waitFor(t, 5*time.Second, "the key's last record", func() bool {
		last := lastRecord(t, addr, "__sessions", "dev-1")
		return last != nil && string(last.Value) == "two"
	})
	// Equal generations: the greater node name wins, whatever the order.
	putSync(t, b, rec("dev-2", "from b", 7, "b"))
	putSync(t, a, rec("dev-2", "from a", 7, "a"))
	catchUp(t, a)
	catchUp(t, b)
	for name, tb := range map[string]*Table{"a": a, "b": b} {
		if r, _ := tb.Get("dev-2"); string(r.Value) != "from b" {
			t.Fatalf("%s read %q, want b's record", name, r.Value)
		}
	}
	// A tombstone ends the key, and an older record does not bring it back
	// (a writes its tombstone again).
	putSync(t, a, rec("dev-1", "", 3, "a"))
	putSync(t, b, rec("dev-1", "resurrected", 2, "b"))
	catchUp(t, b)
	waitFor(t, 5*time.Second, "a writing its tombstone again", func() bool { return a.Stats().Reasserted == 1 })
	if r, ok := b.Get("dev-1"); !ok || r.Value != nil || r.Version.Gen != 3 {
		t.Fatalf("b read %+v %v after a tombstone, want the tombstone", r, ok)
	}
	// Watch saw each record that became its key's newest, the writer's own
	// too, and b's records written again after each stale one (per key in
	// order; keys live in different partitions).
	want := map[string]string{"dev-1": "[1/a 2/b 2/b 3/a 3/a]", "dev-2": "[7/b 7/b]"}
	deadline := time.Now().Add(5 * time.Second)
	for key, w := range want {
		for aw.versions(key) != w && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
		if got := aw.versions(key); got != w {
			t.Fatalf("a watched %s at %s, want %s", key, got, w)
		}
	}
}

// lastRecord reads the topic's last record of key.
func lastRecord(t *testing.T, addr, topic, key string) *kgo.Record {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchMaxWait(tableFetchWait))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	adm := kadm.NewClient(cl)
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	want := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) { want[o.Partition] = o.Offset })
	got := map[int32]int64{}
	var last *kgo.Record
	for {
		done := true
		for p, end := range want {
			if got[p] < end {
				done = false
			}
		}
		if done {
			return last
		}
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("reading the topic timed out at %v of %v", got, want)
		}
		fs.EachError(func(_ string, p int32, err error) { t.Logf("partition %d: %v", p, err) })
		fs.EachRecord(func(r *kgo.Record) {
			got[r.Partition] = r.Offset + 1
			if string(r.Key) == key {
				last = r
			}
		})
	}
}

// The index is bounded: past MaxMemory the keys updated longest ago go,
// and are counted; expired records keep only their version.
func TestTableBounds(t *testing.T) {
	broker := tableBroker(t)
	addr := broker.ListenAddrs()[0]
	tb, _ := runTable(t, addr, "__sessions", "a", 10*(tableEntryOverhead+110))
	value := string(make([]byte, 100))
	for i := range 20 { // read in the order written
		putSync(t, tb, rec(fmt.Sprintf("k%02d", i), value, 1, "a"))
		catchUp(t, tb)
	}
	st := tb.Stats()
	if st.Entries > 10 || st.Evicted < 10 || st.Bytes > 10*(tableEntryOverhead+110) {
		t.Fatalf("stats %+v: want at most 10 entries, 10 evicted", st)
	}
	if _, ok := tb.Get("k00"); ok {
		t.Fatal("the oldest key was kept")
	}
	if _, ok := tb.Get("k19"); !ok {
		t.Fatal("the newest key was evicted")
	}
	expired := rec("old", "gone", 1, "a")
	expired.Expires = time.Now().Add(-time.Second)
	putSync(t, tb, expired)
	catchUp(t, tb)
	if r, ok := tb.Get("old"); !ok || r.Value != nil || r.Version.Gen != 1 {
		t.Fatalf("expired record read as %+v %v, want a marker", r, ok)
	}
	if tb.Stats().Expired != 1 {
		t.Fatalf("expired %d, want 1", tb.Stats().Expired)
	}
}

// A node that starts reads what the topic holds before it is ready.
func TestTableLoadsAtStart(t *testing.T) {
	broker := tableBroker(t)
	addr := broker.ListenAddrs()[0]
	a, _ := runTable(t, addr, "__sessions", "a", 1<<20)
	for i := range 50 {
		putSync(t, a, rec(fmt.Sprintf("dev-%d", i), "v", 1, "a"))
	}
	b, _ := runTable(t, addr, "__sessions", "b", 1<<20)
	if n := b.Stats().Entries; n != 50 {
		t.Fatalf("b ready with %d entries, want 50", n)
	}
}
