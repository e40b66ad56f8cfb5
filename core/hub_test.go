package core

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"
)

// ---- test doubles -------------------------------------------------------

type delivery struct {
	sub      *Subscription
	msg      *Message
	subject  string
	off      int64
	snapshot bool
}

// recorder is a Subscriber that records every delivery; safe for concurrent use.
type recorder struct {
	mu     sync.Mutex
	got    []delivery
	closes []Disconnect
	resets []string
	// stopped is set once the test has unsubscribed everything; any delivery
	// after it is counted in late.
	stopped atomic.Bool
	late    atomic.Int64
}

func (r *recorder) Deliver(sub *Subscription, msg *Message, snapshot bool) {
	if r.stopped.Load() {
		r.late.Add(1)
	}
	r.mu.Lock()
	r.got = append(r.got, delivery{sub: sub, msg: msg, subject: msg.Subject, off: msg.Pos.Offset, snapshot: snapshot})
	r.mu.Unlock()
}

func (r *recorder) Close(d Disconnect) {
	r.mu.Lock()
	r.closes = append(r.closes, d)
	r.mu.Unlock()
}

func (r *recorder) Reset(_ *Subscription, reason string) {
	r.mu.Lock()
	r.resets = append(r.resets, reason)
	r.mu.Unlock()
}

// take returns the deliveries so far and forgets them.
func (r *recorder) take() []delivery {
	r.mu.Lock()
	defer r.mu.Unlock()
	got := r.got
	r.got = nil
	return got
}

// fakeClock is a settable clock for Hub.now.
type fakeClock struct{ ns atomic.Int64 }

func newFakeClock() *fakeClock {
	c := &fakeClock{}
	c.ns.Store(time.Date(2026, 11, 21, 20, 0, 0, 0, time.UTC).UnixNano())
	return c
}

func (c *fakeClock) Now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *fakeClock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

func newClockedHub(cfg CacheConfig) (*Hub, *fakeClock) {
	h := NewHub(cfg)
	c := newFakeClock()
	h.now = c.Now
	return h, c
}

// checkOrder verifies, for each subscription and subject, that at most one
// snapshot arrives and only before any live message, and that offsets
// strictly increase. With consecutive (the dispatcher numbers each subject's
// messages 1, 2, 3, ...), it also checks that nothing is skipped after the
// first delivery: no gap between the snapshot and live messages. It returns a
// description of the first violation.
func checkOrder(ds []delivery, consecutive bool) error {
	type key struct {
		sub     *Subscription
		subject string
	}
	type seen struct {
		last  int64
		any   bool
		lives int
	}
	state := map[key]*seen{}
	for _, d := range ds {
		if d.sub.Filter.Topic != d.msg.Topic || !d.sub.Filter.Matches(d.msg.Key, d.msg.HasKey) {
			return fmt.Errorf("%q delivered to non-matching filter %q", d.subject, d.sub.Filter.Name)
		}
		k := key{d.sub, d.subject}
		s := state[k]
		if s == nil {
			s = &seen{}
			state[k] = s
		}
		if d.snapshot && s.any {
			return fmt.Errorf("filter %q subject %q: snapshot (offset %d) after an earlier delivery (offset %d, %d live)",
				d.sub.Filter.Name, d.subject, d.off, s.last, s.lives)
		}
		if s.any && d.off <= s.last {
			return fmt.Errorf("filter %q subject %q: offset %d after %d", d.sub.Filter.Name, d.subject, d.off, s.last)
		}
		if consecutive && s.any && d.off != s.last+1 {
			return fmt.Errorf("filter %q subject %q: gap, offset %d after %d", d.sub.Filter.Name, d.subject, d.off, s.last)
		}
		s.any, s.last = true, d.off
		if !d.snapshot {
			s.lives++
		}
	}
	return nil
}

// ---- delivery -----------------------------------------------------------

func TestHubExactDelivery(t *testing.T) {
	h := NewHub(CacheConfig{})
	r1, r2, r3 := &recorder{}, &recorder{}, &recorder{}
	s1 := mustSubscribe(t, h, r1, "/t/a", SubscribeOptions{Mode: Standard, Tag: "tag1"})
	s2 := mustSubscribe(t, h, r2, "/t", SubscribeOptions{})
	mustSubscribe(t, h, r3, "/u/a", SubscribeOptions{})

	m := testMsg("/t/a", 7)
	h.Dispatch(m)
	got := r1.take()
	if len(got) != 1 || got[0].sub != s1 || got[0].msg != m || got[0].snapshot {
		t.Fatalf("exact subscriber got %+v, want one live delivery of the message", got)
	}
	if s1.Tag != "tag1" || s1.Mode != Standard {
		t.Fatalf("subscription lost its options: %+v", s1)
	}
	if n := len(r2.take()) + len(r3.take()); n != 0 {
		t.Fatalf("%d deliveries to non-matching subscribers", n)
	}

	h.Dispatch(testMsg("/t/b", 8)) // nobody subscribed
	h.Dispatch(testMsg("/t/a/b", 9))
	if n := len(r1.take()) + len(r2.take()) + len(r3.take()); n != 0 {
		t.Fatalf("%d deliveries of subjects nobody subscribed to", n)
	}

	h.Dispatch(testMsg("/t", 10)) // null key
	got = r2.take()
	if len(got) != 1 || got[0].sub != s2 || got[0].subject != "/t" {
		t.Fatalf("null-key subscriber got %+v", got)
	}
	if n := len(r1.take()); n != 0 {
		t.Fatalf("/t/a got the null-key message")
	}
	st := h.Stats()
	if st.Dispatched != 4 || st.Delivered != 2 || st.Subscriptions != 3 || st.Cached != 4 {
		t.Fatalf("Stats = %+v", st)
	}
}

func TestHubPatternDelivery(t *testing.T) {
	h := NewHub(CacheConfig{})
	r := &recorder{}
	sub := mustSubscribe(t, h, r, "/vehicles/+/speed", SubscribeOptions{})
	h.Dispatch(testMsg("/vehicles/1/speed", 1))
	h.Dispatch(testMsg("/vehicles/2/speed", 2))
	h.Dispatch(testMsg("/vehicles/2/heading", 3))
	h.Dispatch(testMsg("/vehicles/2/speed/x", 4))
	h.Dispatch(testMsg("/vehicles", 5))
	h.Dispatch(testMsg("/trucks/1/speed", 6))
	got := r.take()
	if len(got) != 2 || got[0].subject != "/vehicles/1/speed" || got[1].subject != "/vehicles/2/speed" {
		t.Fatalf("got %+v", got)
	}
	for _, d := range got {
		if d.sub != sub || d.snapshot {
			t.Fatalf("bad delivery %+v", d)
		}
	}
}

// ---- snapshots ----------------------------------------------------------

func TestHubSnapshotExact(t *testing.T) {
	h := NewHub(CacheConfig{})
	for i := int64(1); i <= 3; i++ {
		h.Dispatch(testMsg("/t/a", i))
	}
	r := &recorder{}
	sub := mustSubscribe(t, h, r, "/t/a", SubscribeOptions{Snapshot: true})
	got := r.take()
	if len(got) != 1 || !got[0].snapshot || got[0].off != 3 || got[0].sub != sub {
		t.Fatalf("snapshot on subscribe: got %+v, want the latest message (offset 3) as a snapshot", got)
	}
	h.Dispatch(testMsg("/t/a", 4))
	got = r.take()
	if len(got) != 1 || got[0].snapshot || got[0].off != 4 {
		t.Fatalf("after the snapshot: got %+v, want live offset 4", got)
	}

	// Without Snapshot nothing is sent on subscribe.
	r2 := &recorder{}
	mustSubscribe(t, h, r2, "/t/a", SubscribeOptions{})
	if got := r2.take(); len(got) != 0 {
		t.Fatalf("subscribe without snapshot delivered %+v", got)
	}
	// Nothing cached: no snapshot.
	r3 := &recorder{}
	mustSubscribe(t, h, r3, "/t/none", SubscribeOptions{Snapshot: true})
	mustSubscribe(t, h, r3, "/t/none/+", SubscribeOptions{Snapshot: true})
	if got := r3.take(); len(got) != 0 {
		t.Fatalf("snapshot of an uncached subject: %+v", got)
	}
}

func TestHubSnapshotPattern(t *testing.T) {
	h := NewHub(CacheConfig{})
	for i, s := range []string{"/t/a", "/t/a", "/t/b", "/t/c/d", "/t", "/u/a", "/t/b/e", "/t/a"} {
		h.Dispatch(testMsg(s, int64(i+1)))
	}
	// latest offsets: /t/a 8, /t/b 3, /t/c/d 4, /t 5, /u/a 6, /t/b/e 7
	tests := []struct {
		filter string
		want   map[string]int64
	}{
		{"/t/+", map[string]int64{"/t/a": 8, "/t/b": 3}},
		{"/t/#", map[string]int64{"/t/a": 8, "/t/b": 3, "/t/c/d": 4, "/t": 5, "/t/b/e": 7}},
		{"/t/b/#", map[string]int64{"/t/b": 3, "/t/b/e": 7}},
		{"/t/+/+", map[string]int64{"/t/c/d": 4, "/t/b/e": 7}},
		{"/t/x/+", map[string]int64{}},
		{"/u/+", map[string]int64{"/u/a": 6}},
	}
	for _, tc := range tests {
		r := &recorder{}
		sub := mustSubscribe(t, h, r, tc.filter, SubscribeOptions{Snapshot: true})
		got := map[string]int64{}
		for _, d := range r.take() {
			if !d.snapshot || d.sub != sub {
				t.Fatalf("%q: non-snapshot delivery on subscribe %+v", tc.filter, d)
			}
			if _, dup := got[d.subject]; dup {
				t.Fatalf("%q: two snapshots of %q", tc.filter, d.subject)
			}
			got[d.subject] = d.off
		}
		if fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("%q snapshots = %v, want %v", tc.filter, got, tc.want)
		}
		if sub.snapshotting.Load() || sub.seenLive != nil {
			t.Errorf("%q: snapshot phase not finished", tc.filter)
		}
	}

	// Live messages follow, not marked as snapshots.
	r := &recorder{}
	mustSubscribe(t, h, r, "/t/+", SubscribeOptions{Snapshot: true})
	r.take()
	h.Dispatch(testMsg("/t/b", 9))
	if got := r.take(); len(got) != 1 || got[0].snapshot || got[0].off != 9 {
		t.Fatalf("live after pattern snapshot: %+v", got)
	}
}

// ---- unsubscribe --------------------------------------------------------

func TestHubUnsubscribe(t *testing.T) {
	h := NewHub(CacheConfig{})
	r := &recorder{}
	sub := mustSubscribe(t, h, r, "/t/x", SubscribeOptions{})
	if st := h.Stats(); st.Subjects != 1 || st.Subscriptions != 1 {
		t.Fatalf("after subscribe: %+v", st)
	}
	h.Unsubscribe(sub)
	if st := h.Stats(); st.Subjects != 0 || st.Subscriptions != 0 {
		t.Fatalf("after unsubscribe the subject state is not freed: %+v", st)
	}
	h.Unsubscribe(sub) // harmless
	if st := h.Stats(); st.Subscriptions != 0 {
		t.Fatalf("double unsubscribe: %+v", st)
	}
	// A new subscription to the same subject works after the state was freed.
	sub2 := mustSubscribe(t, h, r, "/t/x", SubscribeOptions{})
	h.Dispatch(testMsg("/t/x", 1))
	if got := r.take(); len(got) != 1 || got[0].sub != sub2 {
		t.Fatalf("resubscribe: %+v", got)
	}
	h.Unsubscribe(sub2)
	h.Dispatch(testMsg("/t/x", 2))
	if got := r.take(); len(got) != 0 {
		t.Fatalf("delivered after unsubscribe: %+v", got)
	}
	// The subject keeps its cache after the last subscriber left.
	if st := h.Stats(); st.Subjects != 1 || h.Latest("/t/x") == nil {
		t.Fatalf("cached subject dropped: %+v", st)
	}

	// Patterns.
	p := mustSubscribe(t, h, r, "/t/+", SubscribeOptions{})
	h.Dispatch(testMsg("/t/y", 3))
	if got := r.take(); len(got) != 1 {
		t.Fatalf("pattern before unsubscribe: %+v", got)
	}
	h.Unsubscribe(p)
	h.Unsubscribe(p)
	h.Dispatch(testMsg("/t/y", 4))
	if got := r.take(); len(got) != 0 {
		t.Fatalf("pattern delivered after unsubscribe: %+v", got)
	}
	if st := h.Stats(); st.Subscriptions != 0 {
		t.Fatalf("Subscriptions = %d", st.Subscriptions)
	}
}

// TestHubUnsubscribeMany removes subscriptions of one subject in every order,
// exercising the O(1) swap removal.
func TestHubUnsubscribeMany(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	h := NewHub(CacheConfig{})
	for round := range 20 {
		r := &recorder{}
		subs := map[*Subscription]bool{}
		for range 6 {
			subs[mustSubscribe(t, h, r, "/t/many", SubscribeOptions{})] = true
		}
		order := make([]*Subscription, 0, len(subs))
		for s := range subs {
			order = append(order, s)
		}
		rng.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
		for i, s := range order {
			h.Unsubscribe(s)
			delete(subs, s)
			h.Dispatch(testMsg("/t/many", int64(round*10+i)))
			got := map[*Subscription]int{}
			for _, d := range r.take() {
				got[d.sub]++
			}
			if len(got) != len(subs) {
				t.Fatalf("round %d: %d subscriptions got the message, want %d", round, len(got), len(subs))
			}
			for s, n := range got {
				if !subs[s] || n != 1 {
					t.Fatalf("round %d: subscription delivered %d times, live=%v", round, n, subs[s])
				}
			}
		}
	}
	if st := h.Stats(); st.Subscriptions != 0 {
		t.Fatalf("Subscriptions = %d", st.Subscriptions)
	}
}

// unsubscribingRecorder unsubscribes its subscription from another goroutine
// (as an adapter closing the connection would) on the first delivery. Deliver
// must not block, so it does not wait for Unsubscribe.
type unsubscribingRecorder struct {
	recorder
	h    *Hub
	once sync.Once
	done chan struct{}
}

func (u *unsubscribingRecorder) Deliver(sub *Subscription, msg *Message, snapshot bool) {
	u.recorder.Deliver(sub, msg, snapshot)
	u.once.Do(func() {
		u.done = make(chan struct{})
		go func() {
			u.h.Unsubscribe(sub)
			u.stopped.Store(true)
			close(u.done)
		}()
	})
}

// TestHubUnsubscribeDuringPatternSnapshot: once Unsubscribe has returned, the
// rest of the pattern's snapshots are not sent.
func TestHubUnsubscribeDuringPatternSnapshot(t *testing.T) {
	h := NewHub(CacheConfig{})
	for i := range 200 {
		h.Dispatch(testMsg(fmt.Sprintf("/t/k%d", i), 1))
	}
	u := &unsubscribingRecorder{h: h}
	mustSubscribe(t, h, u, "/t/+", SubscribeOptions{Snapshot: true})
	<-u.done
	if got := u.take(); len(got) == 0 || !got[0].snapshot {
		t.Fatalf("want at least the first snapshot, got %d deliveries", len(got))
	}
	if n := u.late.Load(); n != 0 {
		t.Fatalf("%d snapshots after Unsubscribe returned", n)
	}
	if st := h.Stats(); st.Subscriptions != 0 {
		t.Fatalf("Subscriptions = %d", st.Subscriptions)
	}
}

// ---- ordering under concurrency -----------------------------------------

func TestHubPerSubjectOrderConcurrent(t *testing.T) {
	const (
		dispatchers = 8
		perG        = 4
		msgs        = 300
	)
	h := NewHub(CacheConfig{Size: 10})
	exact := &recorder{}
	pat := &recorder{}
	var subjects []string
	for g := range dispatchers {
		for j := range perG {
			s := fmt.Sprintf("/t/g%d/s%d", g, j)
			subjects = append(subjects, s)
			mustSubscribe(t, h, exact, s, SubscribeOptions{})
		}
	}
	mustSubscribe(t, h, pat, "/t/#", SubscribeOptions{})
	mustSubscribe(t, h, pat, "/t/+/+", SubscribeOptions{})
	var wg sync.WaitGroup
	for g := range dispatchers {
		wg.Go(func() {
			for i := range msgs {
				for j := range perG {
					h.Dispatch(testMsg(fmt.Sprintf("/t/g%d/s%d", g, j), int64(i)))
				}
			}
		})
	}
	wg.Wait()
	for _, r := range []*recorder{exact, pat} {
		got := r.take()
		if err := checkOrder(got, true); err != nil {
			t.Fatal(err)
		}
		perSub := map[*Subscription]map[string]int{}
		for _, d := range got {
			if perSub[d.sub] == nil {
				perSub[d.sub] = map[string]int{}
			}
			perSub[d.sub][d.subject]++
		}
		for sub, m := range perSub {
			for s, n := range m {
				if n != msgs {
					t.Fatalf("%q got %d messages of %q, want %d", sub.Filter.Name, n, s, msgs)
				}
			}
			if !sub.Filter.Wildcard && len(m) != 1 || sub.Filter.Wildcard && len(m) != len(subjects) {
				t.Fatalf("%q got %d subjects", sub.Filter.Name, len(m))
			}
		}
	}
	if st := h.Stats(); st.Dispatched != dispatchers*perG*msgs || st.Delivered != 3*dispatchers*perG*msgs {
		t.Fatalf("Stats = %+v", st)
	}
}

// ---- cache --------------------------------------------------------------

// cachedOffsets returns the offsets cached for subject, oldest first.
func cachedOffsets(h *Hub, subject string) []int64 {
	sh := h.shardOf(subject)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	st := sh.subjects[subject]
	if st == nil {
		return nil
	}
	var o []int64
	for e := st.oldest; e != nil; e = e.sNext {
		o = append(o, e.msg.Pos.Offset)
	}
	var back []int64
	for e := st.newest; e != nil; e = e.sPrev {
		back = append(back, e.msg.Pos.Offset)
	}
	if len(back) != len(o) || len(o) != st.count {
		panic(fmt.Sprintf("subject list of %q inconsistent: %v / %v / count %d", subject, o, back, st.count))
	}
	return o
}

func TestHubCacheSize(t *testing.T) {
	h := NewHub(CacheConfig{Size: 3})
	for i := int64(1); i <= 5; i++ {
		h.Dispatch(testMsg("/t/a", i))
	}
	h.Dispatch(testMsg("/t/b", 100))
	if got := fmt.Sprint(cachedOffsets(h, "/t/a")); got != "[3 4 5]" {
		t.Fatalf("cached offsets of /t/a = %s, want [3 4 5]", got)
	}
	if got := fmt.Sprint(cachedOffsets(h, "/t/b")); got != "[100]" {
		t.Fatalf("cached offsets of /t/b = %s, want [100]", got)
	}
	if m := h.Latest("/t/a"); m == nil || m.Pos.Offset != 5 {
		t.Fatalf("Latest = %+v", m)
	}
	st := h.Stats()
	if st.Cached != 6 || st.Evicted != 2 || st.Subjects != 2 {
		t.Fatalf("Stats = %+v", st)
	}
	want := int64(0)
	for _, o := range []int64{3, 4, 5} {
		want += int64(testMsg("/t/a", o).Size())
	}
	want += int64(testMsg("/t/b", 100).Size())
	if st.CachedBytes != want {
		t.Fatalf("CachedBytes = %d, want %d", st.CachedBytes, want)
	}
}

func TestHubLatest(t *testing.T) {
	h := NewHub(CacheConfig{})
	if m := h.Latest("/t/a"); m != nil {
		t.Fatalf("Latest of an unknown subject = %+v", m)
	}
	m1, m2 := testMsg("/t/a", 1), testMsg("/t/a", 2)
	h.Dispatch(m1)
	if h.Latest("/t/a") != m1 {
		t.Fatal("Latest is not the dispatched message")
	}
	h.Dispatch(m2)
	h.Dispatch(testMsg("/t/b", 3))
	if h.Latest("/t/a") != m2 {
		t.Fatal("Latest is not the newest message")
	}
	if h.Latest("/t/c") != nil || h.Latest("/t") != nil {
		t.Fatal("Latest of another subject")
	}
}

func TestHubExpiry(t *testing.T) {
	h, clock := newClockedHub(CacheConfig{ExpireTime: 10 * time.Second})
	at := func(subject string, off int64) *Message {
		m := testMsg(subject, off)
		m.Time = clock.Now()
		return m
	}
	h.Dispatch(at("/t/a", 1))
	clock.Advance(5 * time.Second)
	h.Dispatch(at("/t/b", 2))

	clock.Advance(5 * time.Second) // /t/a exactly 10s old: still fresh
	if h.Latest("/t/a") == nil {
		t.Fatal("message expired at exactly ExpireTime")
	}
	h.Expire()
	if st := h.Stats(); st.Subjects != 2 || st.Evicted != 0 {
		t.Fatalf("Expire at the boundary: %+v", st)
	}

	clock.Advance(time.Second) // /t/a 11s, /t/b 6s
	if m := h.Latest("/t/a"); m != nil {
		t.Fatalf("Latest returned an expired message %+v", m)
	}
	r := &recorder{}
	mustSubscribe(t, h, r, "/t/a", SubscribeOptions{Snapshot: true})
	mustSubscribe(t, h, r, "/t/+", SubscribeOptions{Snapshot: true})
	if got := r.take(); len(got) != 1 || got[0].subject != "/t/b" || !got[0].snapshot {
		t.Fatalf("snapshots after expiry: %+v, want only /t/b", got)
	}
	h.Expire()
	if st := h.Stats(); st.Evicted != 1 || st.Subjects != 2 || st.Cached != 2 { // /t/a stays: it has a subscriber
		t.Fatalf("after Expire: %+v", st)
	}
	if got := cachedOffsets(h, "/t/a"); len(got) != 0 {
		t.Fatalf("/t/a still caches %v", got)
	}

	clock.Advance(5 * time.Second) // /t/b 11s
	h.Expire()
	st := h.Stats()
	if st.Evicted != 2 || st.CachedBytes != 0 || st.Subjects != 1 {
		t.Fatalf("after expiring everything: %+v", st)
	}

	// Dispatch expires as it goes.
	h.Dispatch(at("/t/c", 10))
	h.Dispatch(at("/t/c", 11))
	clock.Advance(11 * time.Second)
	h.Dispatch(at("/t/c", 12))
	if got := fmt.Sprint(cachedOffsets(h, "/t/c")); got != "[12]" {
		t.Fatalf("after a dispatch past expiry /t/c caches %s, want [12]", got)
	}

	// A message read back from Kafka has aged already: its record time decides
	// whether it is served; its arrival time when the cache drops it, which
	// keeps each shard's fifo in expiry order.
	h, clock = newClockedHub(CacheConfig{ExpireTime: 10 * time.Second})
	old := at("/t/d", 20)
	old.Time = clock.Now().Add(-9 * time.Second)
	h.Dispatch(old)
	if h.Latest("/t/d") != old {
		t.Fatal("9s-old message not cached")
	}
	clock.Advance(2 * time.Second)
	if h.Latest("/t/d") != nil {
		t.Fatal("message with an 11s-old record time still served")
	}
	h.Expire()
	if got := cachedOffsets(h, "/t/d"); fmt.Sprint(got) != "[20]" {
		t.Fatalf("/t/d dropped before its arrival expired: %v", got)
	}
	clock.Advance(9 * time.Second) // 11s after arrival
	h.Expire()
	if got := cachedOffsets(h, "/t/d"); got != nil {
		t.Fatalf("/t/d still cached: %v", got)
	}
}

func TestHubMemoryBound(t *testing.T) {
	const maxMem = numShards * 1024 // 1 KiB per shard
	h := NewHub(CacheConfig{MaxMemory: maxMem})
	payload := strings.Repeat("x", 100)
	for i := int64(1); i <= 100; i++ {
		m := testMsg("/t/a", i)
		m.Payload = []byte(payload)
		h.Dispatch(m)
	}
	size := int64(testMsg("/t/a", 0).Size()) - 1 + 100 // payload "0" replaced by 100 bytes
	perShard := int64(1024) / size
	got := cachedOffsets(h, "/t/a")
	if int64(len(got)) != perShard || got[len(got)-1] != 100 {
		t.Fatalf("cached offsets %v, want the newest %d", got, perShard)
	}
	st := h.Stats()
	if st.CachedBytes > 1024 || st.CachedBytes != perShard*size || st.Evicted != 100-perShard {
		t.Fatalf("Stats = %+v (message size %d)", st, size)
	}
	if m := h.Latest("/t/a"); m == nil || m.Pos.Offset != 100 {
		t.Fatalf("Latest = %v", m)
	}

	// Many subjects: every shard keeps to its share and holds its newest messages.
	h = NewHub(CacheConfig{MaxMemory: maxMem})
	for i := range 3000 {
		m := testMsg(fmt.Sprintf("/t/k%d", i), int64(i))
		m.Payload = []byte(payload)
		h.Dispatch(m)
	}
	st = h.Stats()
	if st.CachedBytes > maxMem || st.Cached != 3000 || st.Cached-st.Evicted < numShards {
		t.Fatalf("Stats = %+v", st)
	}
	var total int64
	for i := range h.shards {
		sh := &h.shards[i]
		if sh.fifo.bytes > h.memShare {
			t.Fatalf("shard %d holds %d bytes, share %d", i, sh.fifo.bytes, h.memShare)
		}
		var sum int64
		prev := int64(-1)
		for e := sh.fifo.head; e != nil; e = e.fNext {
			if e.msg.Pos.Offset <= prev {
				t.Fatalf("shard %d: fifo out of arrival order", i)
			}
			prev = e.msg.Pos.Offset
			sum += int64(e.msg.Size())
		}
		if sum != sh.fifo.bytes {
			t.Fatalf("shard %d: fifo.bytes %d, entries sum to %d", i, sh.fifo.bytes, sum)
		}
		total += sum
		// No subscriptions: every subject left in the shard has cached messages.
		for s, st := range sh.subjects {
			if st.count == 0 {
				t.Fatalf("shard %d keeps empty subject %q", i, s)
			}
		}
	}
	// Each shard evicted its oldest first: what it keeps is the newest
	// messages dispatched to it.
	perShard2 := map[*shard][]int64{}
	for i := range 3000 {
		sh := h.shardOf(fmt.Sprintf("/t/k%d", i))
		perShard2[sh] = append(perShard2[sh], int64(i))
	}
	for sh, all := range perShard2 {
		var kept []int64
		for e := sh.fifo.head; e != nil; e = e.fNext {
			kept = append(kept, e.msg.Pos.Offset)
		}
		if len(kept) == 0 || fmt.Sprint(kept) != fmt.Sprint(all[len(all)-len(kept):]) {
			t.Fatalf("shard keeps %v of %v: not the newest", kept, all)
		}
	}
	if total != st.CachedBytes {
		t.Fatalf("CachedBytes %d != sum over shards %d", st.CachedBytes, total)
	}
	// The last message dispatched is always cached.
	if m := h.Latest("/t/k2999"); m == nil {
		t.Fatal("newest message evicted")
	}
	// No more subjects than cached messages (no subscriptions here).
	if st.Subjects != st.Cached-st.Evicted {
		t.Fatalf("Subjects %d, cached messages %d", st.Subjects, st.Cached-st.Evicted)
	}
}

// ---- messages and positions ---------------------------------------------

var (
	testSlot  = NewEncodingSlot()
	testSlot2 = NewEncodingSlot()
)

type countingEncoder struct {
	n   atomic.Int64
	tag string
}

func (e *countingEncoder) Encode(m *Message) []byte {
	e.n.Add(1)
	return []byte(e.tag + ":" + m.Subject + ":" + string(m.Payload))
}

func TestMessageEncodedOnce(t *testing.T) {
	m := testMsg("/t/a", 1)
	enc, enc2 := &countingEncoder{tag: "ws"}, &countingEncoder{tag: "sse"}
	first := m.Encoded(testSlot, enc)
	for range 10 {
		b := m.Encoded(testSlot, enc)
		if unsafe.SliceData(b) != unsafe.SliceData(first) {
			t.Fatal("Encoded returned different bytes on a later call")
		}
	}
	if string(first) != "ws:/t/a:1" || enc.n.Load() != 1 {
		t.Fatalf("Encoded = %q after %d encodes, want one encode", first, enc.n.Load())
	}
	if b := m.Encoded(testSlot2, enc2); string(b) != "sse:/t/a:1" || enc2.n.Load() != 1 {
		t.Fatalf("second slot: %q, %d encodes", b, enc2.n.Load())
	}
	if enc.n.Load() != 1 || string(m.Encoded(testSlot, enc)) != "ws:/t/a:1" {
		t.Fatal("slots interfere")
	}
}

func TestMessageEncodedConcurrent(t *testing.T) {
	const goroutines = 32
	for range 50 {
		m := testMsg("/t/a", 1)
		enc := &countingEncoder{tag: "ws"}
		var wg sync.WaitGroup
		start := make(chan struct{})
		results := make([][]byte, goroutines)
		for i := range goroutines {
			wg.Go(func() {
				<-start
				results[i] = m.Encoded(testSlot, enc)
			})
		}
		close(start)
		wg.Wait()
		for _, b := range results {
			if unsafe.SliceData(b) != unsafe.SliceData(results[0]) || string(b) != "ws:/t/a:1" {
				t.Fatalf("concurrent callers got different encodings: %q vs %q", b, results[0])
			}
		}
		// Racing first callers may encode more than once, but they all share
		// one result, and later calls never encode again.
		n := enc.n.Load()
		if n < 1 || n > goroutines {
			t.Fatalf("%d encodes", n)
		}
		m.Encoded(testSlot, enc)
		if enc.n.Load() != n {
			t.Fatal("encoded again after the first result was stored")
		}
	}
}

func TestNewEncodingSlotLimit(t *testing.T) {
	seen := map[EncodingSlot]bool{testSlot: true, testSlot2: true}
	panicked := false
	for range maxEncodings + 1 {
		func() {
			defer func() {
				if recover() != nil {
					panicked = true
				}
			}()
			s := NewEncodingSlot()
			if s < 0 || int(s) >= maxEncodings || seen[s] {
				t.Fatalf("NewEncodingSlot returned %d", s)
			}
			seen[s] = true
		}()
		if panicked {
			break
		}
	}
	if !panicked {
		t.Fatal("NewEncodingSlot did not panic past the maximum")
	}
}

func TestMessageSize(t *testing.T) {
	m := testMsg("/t/a", 1)
	base := m.Size()
	m.Headers = []Header{{Key: "k", Value: []byte("vv")}}
	if m.Size() != base+3+40 || base != messageOverhead+len("/t/a")+len("1") {
		t.Fatalf("Size = %d / %d", base, m.Size())
	}
}

func TestPositionRoundTrip(t *testing.T) {
	tests := []struct {
		p   Position
		tok string
	}{
		{Position{}, "0-0-0"},
		{Position{Epoch: 1, Partition: 2, Offset: 3}, "1-2-3"},
		{Position{Epoch: 7, Partition: 0, Offset: 123456789012}, "7-0-123456789012"},
		{Position{Epoch: math.MaxUint32, Partition: math.MaxInt32, Offset: math.MaxInt64},
			"4294967295-2147483647-9223372036854775807"},
	}
	for _, tc := range tests {
		if got := tc.p.String(); got != tc.tok {
			t.Errorf("%+v.String() = %q, want %q", tc.p, got, tc.tok)
		}
		if got := string(tc.p.AppendTo([]byte("x"))); got != "x"+tc.tok {
			t.Errorf("AppendTo = %q", got)
		}
		p, err := ParsePosition(tc.tok)
		if err != nil || p != tc.p {
			t.Errorf("ParsePosition(%q) = %+v, %v; want %+v", tc.tok, p, err, tc.p)
		}
	}
	rng := rand.New(rand.NewPCG(5, 6))
	for range 1000 {
		p := Position{Epoch: rng.Uint32(), Partition: rng.Int32(), Offset: rng.Int64()}
		if q, err := ParsePosition(p.String()); err != nil || q != p {
			t.Fatalf("round trip of %+v: %+v, %v", p, q, err)
		}
	}
	buf := make([]byte, 0, 64)
	p := Position{Epoch: 1, Partition: 2, Offset: 3}
	if a := testing.AllocsPerRun(100, func() { buf = p.AppendTo(buf[:0]) }); a != 0 {
		t.Errorf("AppendTo allocates %v times", a)
	}
}

func TestParsePositionBad(t *testing.T) {
	for _, tok := range []string{
		"", "1", "1-2", "-", "--", "1-2-", "-2-3", "1--3", "a-2-3", "1-b-3", "1-2-c",
		"1-2-3-4", "1--2-3", "1-2--3", "-1-2-3", " 1-2-3", "1-2-3 ", "1.0-2-3", "0x1-2-3",
		"4294967296-0-0", "0-2147483648-0", "0-0-9223372036854775808", "0-0-99999999999999999999",
	} {
		p, err := ParsePosition(tok)
		if !errors.Is(err, ErrBadPosition) {
			t.Errorf("ParsePosition(%q) = %+v, %v; want ErrBadPosition", tok, p, err)
			continue
		}
		if p != (Position{}) || !strings.Contains(err.Error(), fmt.Sprintf("%q", tok)) {
			t.Errorf("ParsePosition(%q): %+v, error %q does not name the token", tok, p, err)
		}
		if Code(err) != "invalid_position" {
			t.Errorf("Code = %q", Code(err))
		}
	}
}

// ---- exposure and node --------------------------------------------------

func TestExposure(t *testing.T) {
	all, err := NewExposure(nil, "")
	if err != nil {
		t.Fatal(err)
	}
	if !all.All() || !all.Exposed("anything") || !all.Exposed("a.b-c_d") {
		t.Fatal("no topics and no regex must expose everything")
	}

	list, err := NewExposure([]string{"vehicles", "demo", "__consumer_offsets"}, "")
	if err != nil {
		t.Fatal(err)
	}
	regex, err := NewExposure(nil, "veh.*|sensors-[0-9]+")
	if err != nil {
		t.Fatal(err)
	}
	both, err := NewExposure([]string{"demo"}, "veh.*")
	if err != nil {
		t.Fatal(err)
	}
	dotAll, err := NewExposure(nil, ".*")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		e     *Exposure
		topic string
		want  bool
	}{
		{list, "vehicles", true},
		{list, "demo", true},
		{list, "vehicles2", false},
		{list, "demo.x", false},
		{list, "other", false},
		{regex, "vehicles", true},
		{regex, "veh", true},
		{regex, "myvehicles", false}, // anchored at the start
		{regex, "sensors-12", true},
		{regex, "sensors-12x", false}, // anchored at the end (applies to each alternative)
		{regex, "xsensors-1", false},
		{both, "demo", true},
		{both, "vehicles", true},
		{both, "other", false},
		{dotAll, "anything", true},
		// Kafka's internal topics never.
		{all, "__consumer_offsets", false},
		{all, "__transaction_state", false},
		{list, "__consumer_offsets", false},
		{dotAll, "__consumer_offsets", false},
		{all, "_single", true},
	}
	for i, tc := range tests {
		if got := tc.e.Exposed(tc.topic); got != tc.want {
			t.Errorf("case %d: Exposed(%q) = %v, want %v", i, tc.topic, got, tc.want)
		}
		if tc.e != all && tc.e.All() {
			t.Errorf("case %d: All() true with topics or regex", i)
		}
	}

	if _, err := NewExposure([]string{"ok", "bad topic"}, ""); !errors.Is(err, ErrTopicChars) ||
		!strings.Contains(err.Error(), "bad topic") {
		t.Errorf("invalid listed topic: %v", err)
	}
	if _, err := NewExposure([]string{".."}, ""); !errors.Is(err, ErrTopicDots) {
		t.Errorf("listed '..': %v", err)
	}
	if _, err := NewExposure(nil, "a("); err == nil {
		t.Error("invalid regex accepted")
	}
}

// kedge's own topics (sessions, audit) are hidden from clients whatever
// exposes them, and listing one is an error that names it.
func TestExposureHidesOwnTopics(t *testing.T) {
	for _, tc := range []struct {
		name   string
		topics []string
		regex  string
	}{{"every topic", nil, ""}, {"regex", nil, ".*"}, {"list and regex", []string{"demo"}, "sess.*|audit"}} {
		e, err := NewExposure(tc.topics, tc.regex)
		if err != nil {
			t.Fatal(err)
		}
		if err := e.Hide("sessions", "", "audit"); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		for topic, want := range map[string]bool{"sessions": false, "audit": false, "demo": true} {
			if got := e.Exposed(topic); got != want {
				t.Errorf("%s: Exposed(%q) = %v, want %v", tc.name, topic, got, want)
			}
		}
	}
	e, _ := NewExposure([]string{"demo", "sessions"}, "")
	if err := e.Hide("sessions"); err == nil || !strings.Contains(err.Error(), `"sessions"`) {
		t.Errorf("a listed own topic: %v, want an error naming it", err)
	}
}

// fakePublisher records publications and answers each one from its own
// goroutine, as a real producer's callback would.
type fakePublisher struct {
	mu   sync.Mutex
	pubs []Publication
	pos  Position
	err  error
	wg   sync.WaitGroup
}

func (p *fakePublisher) Publish(ctx context.Context, pub Publication, done func(Position, error)) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.pubs = append(p.pubs, pub)
	pos, err := p.pos, p.err
	if err != nil {
		pos = Position{}
	}
	p.wg.Go(func() { done(pos, err) })
}

func (p *fakePublisher) published() []Publication {
	p.wg.Wait()
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.pubs)
}

type fakeSource struct {
	mu      sync.Mutex
	watched []string
}

func (s *fakeSource) Refresh(context.Context) error { return nil }

func (s *fakeSource) Watch(topic string) {
	s.mu.Lock()
	s.watched = append(s.watched, topic)
	s.mu.Unlock()
}

func (s *fakeSource) get() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return fmt.Sprint(s.watched)
}

func newTestNode(t *testing.T) (*Node, *fakePublisher, *fakeSource) {
	t.Helper()
	exp, err := NewExposure([]string{"demo"}, "veh.*")
	if err != nil {
		t.Fatal(err)
	}
	pub := &fakePublisher{pos: Position{Epoch: 1, Partition: 2, Offset: 3}}
	src := &fakeSource{}
	return &Node{Hub: NewHub(CacheConfig{}), Publisher: pub, Source: src, Exposure: exp, MaxPayload: 4}, pub, src
}

func TestNodeSubscribe(t *testing.T) {
	n, _, src := newTestNode(t)
	r := &recorder{}
	tests := []struct {
		filter string
		err    error
		code   string
	}{
		{"demo/a", ErrNoLeadingSlash, "invalid_subject"},
		{"/demo//a", ErrEmptySegment, "invalid_subject"},
		{"/demo/a+", ErrWildcardMixed, "invalid_pattern"},
		{"/+/a", ErrWildcardTopic, "invalid_pattern"},
		{"/secret/a", ErrNotExposed, "not_exposed"},
		{"/secret/#", ErrNotExposed, "not_exposed"},
		{"/__consumer_offsets", ErrNotExposed, "not_exposed"},
	}
	for _, tc := range tests {
		f, err := n.ParseFilter(tc.filter)
		if !errors.Is(err, tc.err) || Code(err) != tc.code || f.Name != "" {
			t.Errorf("ParseFilter(%q) = %+v, %v (code %q); want %v (%s)", tc.filter, f, err, Code(err), tc.err, tc.code)
		}
		if errors.Is(err, ErrNotExposed) && !strings.Contains(err.Error(), strconv.Quote(strings.Split(tc.filter, "/")[1])) {
			t.Errorf("not-exposed error %q does not name the topic", err)
		}
	}
	if src.get() != "[]" || n.Hub.Stats().Subscriptions != 0 {
		t.Fatalf("refused filters touched the source %v or the hub %+v", src.get(), n.Hub.Stats())
	}

	f, err := n.ParseFilter("/vehicles/+/speed")
	if err != nil || !f.Wildcard || f.Topic != "vehicles" {
		t.Fatalf("ParseFilter: %+v, %v", f, err)
	}
	sub := n.Subscribe(r, f, SubscribeOptions{Tag: 5})
	if sub == nil || sub.Tag != 5 || sub.Filter.Name != "/vehicles/+/speed" {
		t.Fatalf("Subscribe: %+v", sub)
	}
	f2, err := n.ParseFilter("/demo")
	if err != nil || f2.Wildcard || f2.Subject.HasKey {
		t.Fatalf("ParseFilter(/demo): %+v, %v", f2, err)
	}
	n.Subscribe(r, f2, SubscribeOptions{})
	if src.get() != "[vehicles demo]" {
		t.Fatalf("watched %v", src.get())
	}
	n.Hub.Dispatch(testMsg("/vehicles/1/speed", 1))
	if got := r.take(); len(got) != 1 || got[0].sub != sub {
		t.Fatalf("deliveries %+v", got)
	}

	n.Source = nil // optional
	f3, err := n.ParseFilter("/demo/x")
	if err != nil {
		t.Fatal(err)
	}
	if n.Subscribe(r, f3, SubscribeOptions{}) == nil {
		t.Fatal("Subscribe without a Source")
	}
	if n.Hub.Stats().Subscriptions != 3 {
		t.Fatalf("Subscriptions = %d", n.Hub.Stats().Subscriptions)
	}
}

func TestNodePublish(t *testing.T) {
	n, pub, src := newTestNode(t)
	ctx := context.Background()
	hdr := []Header{{Key: "h", Value: []byte("v")}}
	tests := []struct {
		subject string
		payload string
		err     error
		code    string
	}{
		{"", "x", ErrEmptySubject, "invalid_subject"},
		{"/demo/", "x", ErrEmptySegment, "invalid_subject"},
		{"/demo/+", "x", ErrWildcardPublish, "invalid_pattern"},
		{"/demo/#", "x", ErrWildcardPublish, "invalid_pattern"},
		{"/secret/a", "x", ErrNotExposed, "not_exposed"},
		{"/__consumer_offsets/a", "x", ErrNotExposed, "not_exposed"},
		{"/demo/a", "12345", ErrPayloadTooLarge, "payload_too_large"},
	}
	for _, tc := range tests {
		p, err := n.Publish(ctx, tc.subject, []byte(tc.payload), nil)
		if !errors.Is(err, tc.err) || Code(err) != tc.code || p != (Position{}) {
			t.Errorf("Publish(%q, %q) = %v, %v (code %q); want %v", tc.subject, tc.payload, p, err, Code(err), tc.err)
		}
		if tc.err != ErrPayloadTooLarge {
			if s, err := n.ParseSubject(tc.subject); !errors.Is(err, tc.err) || s != (Subject{}) {
				t.Errorf("ParseSubject(%q) = %+v, %v; want %v", tc.subject, s, err, tc.err)
			}
		}
	}
	if got := pub.published(); len(got) != 0 || src.get() != "[]" {
		t.Fatalf("refused publishes reached the publisher %v / source %v", got, src.get())
	}

	p, err := n.Publish(ctx, "/demo/a/b", []byte("1234"), hdr) // exactly MaxPayload
	if err != nil || p != pub.pos {
		t.Fatalf("Publish = %v, %v", p, err)
	}
	pubs := pub.published()
	if len(pubs) != 1 {
		t.Fatalf("publications %v", pubs)
	}
	want := Subject{Name: "/demo/a/b", Topic: "demo", Key: "a/b", HasKey: true}
	if got := pubs[0]; got.Subject != want || string(got.Payload) != "1234" || len(got.Headers) != 1 || got.Headers[0].Key != "h" {
		t.Fatalf("publication %+v", got)
	}
	if src.get() != "[demo]" {
		t.Fatalf("watched %v after a successful publish", src.get())
	}
	// A publish never short-cuts to local subscribers.
	r := &recorder{}
	f, err := n.ParseFilter("/demo/#")
	if err != nil {
		t.Fatal(err)
	}
	n.Subscribe(r, f, SubscribeOptions{})
	if _, err := n.Publish(ctx, "/demo", nil, nil); err != nil {
		t.Fatal(err)
	}
	if got := r.take(); len(got) != 0 {
		t.Fatalf("publish delivered locally: %+v", got)
	}
	if pubs := pub.published(); pubs[1].Subject.HasKey || pubs[1].Subject.KafkaKey() != nil {
		t.Fatalf("null-key publish: %+v", pubs[1])
	}

	// Publisher errors pass through; a failed publish does not watch the topic.
	pub.mu.Lock()
	pub.err = fmt.Errorf("produce: %w", ErrTimeout)
	pub.mu.Unlock()
	before := src.get()
	if p, err := n.Publish(ctx, "/vehicles/1", []byte("x"), nil); !errors.Is(err, ErrTimeout) ||
		Code(err) != "kafka_timeout" || p != (Position{}) {
		t.Fatalf("publisher error: %v, %v", p, err)
	}
	if src.get() != before {
		t.Fatalf("failed publish watched: %v", src.get())
	}
	// No bound when MaxPayload is 0.
	pub.mu.Lock()
	pub.err = nil
	pub.mu.Unlock()
	n.MaxPayload = 0
	if _, err := n.Publish(ctx, "/demo/a", make([]byte, 1<<20), nil); err != nil {
		t.Fatalf("unbounded payload: %v", err)
	}
	pub.published()
}

func TestNodePublishAsync(t *testing.T) {
	n, pub, src := newTestNode(t)
	subj, err := n.ParseSubject("/vehicles/7")
	if err != nil || subj.Key != "7" {
		t.Fatalf("ParseSubject: %+v, %v", subj, err)
	}
	// Too large: done is called once, at once, and Kafka never sees it.
	var calls atomic.Int32
	var gotErr error
	n.PublishAsync(context.Background(), Publication{Subject: subj, Payload: []byte("12345")}, func(p Position, err error) {
		calls.Add(1)
		gotErr = err
	})
	if calls.Load() != 1 || !errors.Is(gotErr, ErrPayloadTooLarge) || !strings.Contains(gotErr.Error(), "5 > 4") {
		t.Fatalf("oversized PublishAsync: %d calls, %v", calls.Load(), gotErr)
	}
	if len(pub.published()) != 0 {
		t.Fatal("oversized payload reached the publisher")
	}

	// Many in flight: each done exactly once with Kafka's answer.
	const n2 = 50
	var wg sync.WaitGroup
	var ok atomic.Int32
	for range n2 {
		wg.Add(1)
		n.PublishAsync(context.Background(), Publication{Subject: subj, Payload: []byte("x")}, func(p Position, err error) {
			if err == nil && p == pub.pos {
				ok.Add(1)
			}
			wg.Done()
		})
	}
	wg.Wait()
	if ok.Load() != n2 || len(pub.published()) != n2 {
		t.Fatalf("%d of %d answered with the position", ok.Load(), n2)
	}
	if !strings.HasPrefix(src.get(), "[vehicles") {
		t.Fatalf("watched %v", src.get())
	}
}

// ---- stress -------------------------------------------------------------

// TestHubRaceStress subscribes and unsubscribes patterns and subjects with
// snapshots while messages are dispatched on many subjects, and checks every
// subscription's view: no snapshot after any message of the same subject,
// strictly increasing offsets per subject with no gap once delivery of a
// subject began, nothing after Unsubscribe returns.
func TestHubRaceStress(t *testing.T) {
	const (
		dispatchers = 4
		subscribers = 6
		rounds      = 150
	)
	h := NewHub(CacheConfig{Size: 4})
	var subjects []string
	for i := range 8 {
		subjects = append(subjects, fmt.Sprintf("/t/k%d", i))
	}
	for i := range 4 {
		for j := range 3 {
			subjects = append(subjects, fmt.Sprintf("/t/g%d/k%d", i, j))
		}
	}
	subjects = append(subjects, "/t", "/u/k0", "/u/g1/k1")
	filters := []string{"/t/#", "/t/+", "/t/+/k1", "/t/g1/#", "/t/+/+", "/t/k3", "/t", "/t/g2/k0", "/u/#", "/t/#"}

	stop := make(chan struct{})
	var dwg sync.WaitGroup
	var dispatchedN atomic.Int64
	for d := range dispatchers {
		dwg.Go(func() {
			var mine []string
			for i, s := range subjects {
				if i%dispatchers == d {
					mine = append(mine, s)
				}
			}
			off := make([]int64, len(mine))
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				j := i % len(mine)
				off[j]++
				h.Dispatch(testMsg(mine[j], off[j]))
				dispatchedN.Add(1)
				if i%64 == 0 {
					runtime.Gosched()
				}
			}
		})
	}

	var swg sync.WaitGroup
	var received atomic.Int64
	var recorders sync.Map
	for s := range subscribers {
		swg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(s), 99))
			for range rounds {
				r := &recorder{}
				recorders.Store(r, true)
				var subs []*Subscription
				for range 1 + rng.IntN(3) {
					f, err := ParseFilter(filters[rng.IntN(len(filters))])
					if err != nil {
						t.Error(err)
						return
					}
					subs = append(subs, h.Subscribe(r, f, SubscribeOptions{Snapshot: true}))
				}
				for range rng.IntN(200) {
					runtime.Gosched()
				}
				for _, sub := range subs {
					h.Unsubscribe(sub)
				}
				r.stopped.Store(true)
				got := r.take()
				received.Add(int64(len(got)))
				if err := checkOrder(got, true); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	swg.Wait()
	// Keep dispatching a little after the last unsubscribe to catch late deliveries.
	time.Sleep(20 * time.Millisecond)
	close(stop)
	dwg.Wait()

	recorders.Range(func(k, _ any) bool {
		if n := k.(*recorder).late.Load(); n != 0 {
			t.Errorf("%d deliveries after Unsubscribe returned", n)
		}
		return true
	})
	st := h.Stats()
	if st.Subscriptions != 0 {
		t.Errorf("Subscriptions = %d after all unsubscribes", st.Subscriptions)
	}
	if received.Load() == 0 || dispatchedN.Load() == 0 {
		t.Errorf("stress test exercised nothing: %d dispatched, %d received", dispatchedN.Load(), received.Load())
	}
	h.patterns.Range(func(k, v any) bool {
		if !v.(*topicPatterns).root.isEmpty() {
			t.Errorf("pattern trie of %v not empty", k)
		}
		return true
	})
	t.Logf("dispatched %d, received %d", dispatchedN.Load(), received.Load())
}

// A topic's pattern trie lives only while the topic has pattern
// subscriptions, so subscribe/unsubscribe churn over many topics leaves nothing.
func TestHubPatternTriesFreed(t *testing.T) {
	h := NewHub(CacheConfig{})
	r := &recorder{}
	for i := range 1000 {
		f, err := ParseFilter(fmt.Sprintf("/x%d/#", i))
		if err != nil {
			t.Fatal(err)
		}
		h.Unsubscribe(h.Subscribe(r, f, SubscribeOptions{}))
	}
	n := 0
	h.patterns.Range(func(any, any) bool { n++; return true })
	if n != 0 {
		t.Fatalf("%d topic tries left after every pattern left", n)
	}
	// A trie dropped while a subscribe races for it is replaced, not lost.
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			f, _ := ParseFilter(fmt.Sprintf("/y/+/%d", g))
			for range 500 {
				h.Unsubscribe(h.Subscribe(r, f, SubscribeOptions{}))
			}
		})
	}
	wg.Wait()
	f, _ := ParseFilter("/y/+/z")
	sub := h.Subscribe(r, f, SubscribeOptions{})
	h.Dispatch(testMsg("/y/a/z", 1))
	if got := r.take(); len(got) != 1 {
		t.Fatalf("pattern subscribed after churn got %d messages", len(got))
	}
	h.Unsubscribe(sub)
}
