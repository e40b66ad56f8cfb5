package core

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
)

// batchRecorder is a recorder that takes batches.
type batchRecorder struct {
	recorder
	batches atomic.Int64
}

func (r *batchRecorder) DeliverBatch(sub *Subscription, msgs []*Message) {
	r.batches.Add(1)
	for _, m := range msgs {
		r.Deliver(sub, m, false)
	}
}

// randomMessages is n messages of topic t on partition p (offsets from
// first on) over keyed subjects /t/k0../t/k{keys-1}, /t/k0/x and the null-key /t.
func randomMessages(rng *rand.Rand, n, keys int, p int32, first int64) []*Message {
	out := make([]*Message, n)
	for i := range out {
		var subject string
		switch r := rng.IntN(keys + 2); {
		case r < keys:
			subject = fmt.Sprintf("/t/k%d", r)
		case r == keys:
			subject = "/t/k0/x"
		default:
			subject = "/t"
		}
		m := kmsg(subject, first+int64(i))
		m.Pos.Partition = p
		out[i] = m
	}
	return out
}

// sequences is what each subscription got, as "subject@offset" lists.
func sequences(ds []delivery) map[*Subscription][]string {
	out := map[*Subscription][]string{}
	for _, d := range ds {
		out[d.sub] = append(out[d.sub], fmt.Sprintf("%s@%d", d.subject, d.off))
	}
	return out
}

// DispatchBatch must do exactly what Dispatch does message by message: the
// same deliveries to every subscription, in the same order, the same cache
// and frontier, whatever the batch sizes (past the chunk size too).
func TestDispatchBatchMatchesDispatch(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	msgs := randomMessages(rng, 3000, 8, 0, 0)
	filters := []string{"/t/k0", "/t/k1", "/t/k1", "/t/k0/x", "/t", "/t/+", "/t/#", "/t/k0/#", "/t/+/x", "/u/k0"}
	type setup struct {
		h    *Hub
		recs []Subscriber
		subs []*Subscription
	}
	build := func() setup {
		s := setup{h: NewHub(CacheConfig{Size: 50})}
		s.h.Begin("t", 1, 0, 0)
		for i, f := range filters {
			var r Subscriber = &recorder{}
			if i%2 == 0 {
				r = &batchRecorder{}
			}
			flt, err := ParseFilter(f)
			if err != nil {
				t.Fatal(err)
			}
			s.recs = append(s.recs, r)
			s.subs = append(s.subs, s.h.Subscribe(r, flt, SubscribeOptions{}))
		}
		return s
	}
	one, batched := build(), build()
	for _, m := range msgs {
		one.h.Dispatch(m)
	}
	for rest := msgs; len(rest) > 0; {
		n := min(len(rest), 1+rng.IntN(400))
		batched.h.DispatchBatch(rest[:n])
		rest = rest[n:]
	}
	take := func(r Subscriber) []delivery {
		if br, ok := r.(*batchRecorder); ok {
			return br.take()
		}
		return r.(*recorder).take()
	}
	for i := range filters {
		want := sequences(take(one.recs[i]))[one.subs[i]]
		got := sequences(take(batched.recs[i]))[batched.subs[i]]
		if !slices.Equal(got, want) {
			t.Errorf("%s: batched dispatch delivered %d messages, one by one %d; first difference at %d",
				filters[i], len(got), len(want), firstDiff(got, want))
		}
	}
	if b := batched.recs[0].(*batchRecorder).batches.Load(); b == 0 || b >= int64(len(take(batched.recs[0]))+3000) {
		t.Errorf("a batch subscriber got %d batches", b)
	}
	so, sb := one.h.Stats(), batched.h.Stats()
	if so != sb {
		t.Errorf("stats one by one %+v, batched %+v", so, sb)
	}
	fo, _ := one.h.Frontier("t")
	fb, _ := batched.h.Frontier("t")
	if fo.String() != fb.String() {
		t.Errorf("frontier one by one %v, batched %v", fo, fb)
	}
	for _, s := range []string{"/t/k0", "/t", "/t/k0/x"} {
		if lo, lb := one.h.Latest(s), batched.h.Latest(s); lo != lb {
			t.Errorf("latest %s: %v vs %v", s, lo, lb)
		}
	}
}

func firstDiff(a, b []string) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// The resume guarantee with batches: live messages dispatched in batches
// while history is being delivered; every offset after the cursor exactly
// once, in order, for batch and plain subscribers, exact and pattern.
func TestDispatchBatchResumeNoGapNoDuplicate(t *testing.T) {
	for _, filter := range []string{"/t/a", "/t/#"} {
		for _, batch := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/batch=%v", filter, batch), func(t *testing.T) {
				h := NewHub(CacheConfig{})
				h.Begin("t", 1, 0, 0)
				hist := &fakeHistory{gate: make(chan struct{})}
				h.EnableRecovery(hist, RecoveryConfig{})
				for i := range int64(100) {
					feed(h, hist, kmsg("/t/a", i))
				}
				var r Subscriber = &recorder{}
				if batch {
					r = &batchRecorder{}
				}
				h.parts.get("t", 0).first = 50 // force the history path
				resume(t, h, r, filter, cur(9), false)
				var wg sync.WaitGroup
				wg.Go(func() {
					rng := rand.New(rand.NewPCG(3, 4))
					var open sync.Once
					for i := int64(100); i < 1000; {
						n := min(int64(1+rng.IntN(40)), 1000-i)
						var ms []*Message
						for j := range n {
							ms = append(ms, kmsg("/t/a", i+j))
						}
						hist.mu.Lock()
						hist.log = append(hist.log, ms...)
						hist.mu.Unlock()
						h.DispatchBatch(ms)
						i += n
						if i >= 400 {
							open.Do(func() { close(hist.gate) }) // recovery runs while batches keep coming
						}
					}
				})
				wg.Wait()
				h.Wait()
				var got []int64
				if br, ok := r.(*batchRecorder); ok {
					got = offsetsOf(br.take(), "/t/a")
				} else {
					got = offsetsOf(r.(*recorder).take(), "/t/a")
				}
				if len(got) != 990 {
					t.Fatalf("got %d messages, want 990 (10..999)", len(got))
				}
				for i, off := range got {
					if off != int64(10+i) {
						t.Fatalf("message %d has offset %d, want %d", i, off, 10+i)
					}
				}
			})
		}
	}
}

// Subscriptions made and removed while two partitions are dispatched in
// batches concurrently: each gets, per subject and partition, exactly the
// messages after its start cursor, in order, and nothing once Unsubscribe
// has returned. Run with -race; a lock-order mistake deadlocks here.
func TestDispatchBatchConcurrentSubscribes(t *testing.T) {
	h := NewHub(CacheConfig{Size: 20})
	h.Begin("t", 1, 0, 0)
	h.Begin("t", 1, 1, 0)
	const perPartition = 20000
	logs := [2][]*Message{}
	for p := range logs {
		rng := rand.New(rand.NewPCG(uint64(p), 9))
		logs[p] = randomMessages(rng, perPartition, 6, int32(p), 0)
	}
	var feeders sync.WaitGroup
	var stop atomic.Bool
	for p := range logs {
		feeders.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(p), 10))
			for rest := logs[p]; len(rest) > 0; {
				n := min(len(rest), 1+rng.IntN(300))
				h.DispatchBatch(rest[:n])
				rest = rest[n:]
			}
		})
	}
	filters := []string{"/t/k1", "/t/+", "/t/#", "/t", "/t/k0/+"}
	var subscribers sync.WaitGroup
	for w := range 4 {
		subscribers.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 11))
			for !stop.Load() {
				f, _ := ParseFilter(filters[rng.IntN(len(filters))])
				r := &batchRecorder{}
				var s Subscriber = r
				if rng.IntN(2) == 0 {
					s = &r.recorder
				}
				sub := h.Subscribe(s, f, SubscribeOptions{})
				checkAfterStart(t, sub, r.take(), logs)
				h.Unsubscribe(sub)
				r.stopped.Store(true)
				if n := r.late.Load(); n > 0 {
					t.Errorf("%s: %d deliveries after Unsubscribe returned", f.Name, n)
				}
			}
		})
	}
	feeders.Wait()
	stop.Store(true)
	subscribers.Wait()
}

// checkAfterStart checks that what sub got so far is, per subject and
// partition, a prefix of the log's matching messages after its start.
func checkAfterStart(t *testing.T, sub *Subscription, got []delivery, logs [2][]*Message) {
	t.Helper()
	if !sub.HasStart {
		t.Fatalf("%s: no start cursor", sub.Filter.Name)
	}
	next := map[string]int{} // subject@partition → index into its expected list
	for _, d := range got {
		p := d.msg.Pos.Partition
		var want []int64
		for _, m := range logs[p] {
			if m.Subject == d.subject && m.Pos.Offset > sub.Start.Offsets[p] {
				want = append(want, m.Pos.Offset)
			}
		}
		k := fmt.Sprintf("%s@%d", d.subject, p)
		i := next[k]
		if i >= len(want) || want[i] != d.off {
			t.Fatalf("%s: got %s offset %d as message %d after start %d; want %v…", sub.Filter.Name, k, d.off, i,
				sub.Start.Offsets[p], want[:min(i+1, len(want))])
		}
		next[k] = i + 1
	}
}

// nopBatchSubscriber counts deliveries, batches included.
type nopBatchSubscriber struct{ nopSubscriber }

func (s *nopBatchSubscriber) DeliverBatch(_ *Subscription, msgs []*Message) { s.n += len(msgs) }

// BenchmarkDispatchBatch fans a Kafka batch of 64 messages out to 1000
// subscriptions of one subject: per message (Dispatch), per batch to
// subscribers that take one message at a time, and per batch to
// BatchSubscribers (DispatchBatch). ns/op is per message.
func BenchmarkDispatchBatch(b *testing.B) {
	const batch = 64
	for _, mode := range []string{"Dispatch", "DispatchBatch/Deliver", "DispatchBatch/DeliverBatch"} {
		b.Run(mode, func(b *testing.B) {
			h := NewHub(CacheConfig{})
			f, err := ParseFilter("/vehicles/1/speed")
			if err != nil {
				b.Fatal(err)
			}
			var s Subscriber = &nopSubscriber{}
			if mode == "DispatchBatch/DeliverBatch" {
				s = &nopBatchSubscriber{}
			}
			for range 1000 {
				h.Subscribe(s, f, SubscribeOptions{})
			}
			ms := make([]*Message, batch)
			for i := range ms {
				ms[i] = testMsg("/vehicles/1/speed", int64(i))
				ms[i].Payload = make([]byte, 64)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i += batch {
				if mode == "Dispatch" {
					for _, m := range ms {
						h.Dispatch(m)
					}
					continue
				}
				h.DispatchBatch(ms)
			}
			b.ReportMetric(1000, "deliveries/op")
		})
	}
}
