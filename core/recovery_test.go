package core

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"
)

// fakeHistory serves reads from a log of messages, like Kafka would.
type fakeHistory struct {
	mu      sync.Mutex
	log     []*Message
	err     error
	queries []HistoryQuery
	gate    chan struct{} // when set, Read waits for it
}

func (f *fakeHistory) Read(ctx context.Context, q HistoryQuery) ([]*Message, error) {
	if f.gate != nil {
		select {
		case <-f.gate:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.queries = append(f.queries, q)
	if f.err != nil {
		return nil, f.err
	}
	var out []*Message
	for _, m := range f.log {
		if m.Topic == q.Topic && m.Pos.Partition == q.Partition && m.Pos.Offset >= q.From && m.Pos.Offset <= q.To && q.Keep(m) {
			out = append(out, m)
			if len(out) > q.Max {
				break
			}
		}
	}
	return out, nil
}

// kmsg is a message of topic t on partition 0 at offset off, epoch 1.
func kmsg(subject string, off int64) *Message {
	m := testMsg(subject, off)
	m.Pos.Epoch = 1
	return m
}

// feed dispatches messages (recording them in the history's log too).
func feed(h *Hub, hist *fakeHistory, ms ...*Message) {
	for _, m := range ms {
		if hist != nil {
			hist.mu.Lock()
			hist.log = append(hist.log, m)
			hist.mu.Unlock()
		}
		h.Dispatch(m)
	}
}

func resume(t *testing.T, h *Hub, r Subscriber, filter string, since Cursor, snapshot bool) *Subscription {
	t.Helper()
	f, err := ParseFilter(filter)
	if err != nil {
		t.Fatal(err)
	}
	return h.Subscribe(r, f, SubscribeOptions{Since: &since, Snapshot: snapshot})
}

func offsetsOf(ds []delivery, subject string) []int64 {
	var out []int64
	for _, d := range ds {
		if d.subject == subject {
			out = append(out, d.off)
		}
	}
	return out
}

func cur(off int64) Cursor { return Cursor{Epoch: 1, Offsets: map[int32]int64{0: off}} }

func TestResumeFromCache(t *testing.T) {
	h := NewHub(CacheConfig{})
	h.Begin("t", 1, 0, 0)
	for i := int64(0); i < 10; i += 2 {
		feed(h, nil, kmsg("/t/a", i), kmsg("/t/b", i+1))
	}
	r := &recorder{}
	sub := resume(t, h, r, "/t/a", cur(3), true)
	h.Wait()
	feed(h, nil, kmsg("/t/a", 10))
	got := r.take()
	if fmt.Sprint(offsetsOf(got, "/t/a")) != "[4 6 8 10]" {
		t.Fatalf("resumed /t/a got %v, want [4 6 8 10]", offsetsOf(got, "/t/a"))
	}
	for _, d := range got {
		if d.snapshot {
			t.Fatalf("a resume sent a snapshot: %+v", d)
		}
	}
	if len(r.resets) != 0 {
		t.Fatalf("resets %v", r.resets)
	}
	h.Unsubscribe(sub)

	p := &recorder{}
	resume(t, h, p, "/t/+", cur(5), false)
	h.Wait()
	if got := p.take(); fmt.Sprint(offsetsOf(got, "/t/a"), offsetsOf(got, "/t/b")) != "[6 8 10] [7 9]" {
		t.Fatalf("resumed pattern got /t/a %v /t/b %v", offsetsOf(got, "/t/a"), offsetsOf(got, "/t/b"))
	}
}

// While a resume is delivering history, live messages keep coming: the
// subscriber must see every offset after its cursor exactly once, in order.
func TestResumeNoGapNoDuplicateWhileLive(t *testing.T) {
	for _, filter := range []string{"/t/a", "/t/#"} {
		t.Run(filter, func(t *testing.T) {
			h := NewHub(CacheConfig{})
			h.Begin("t", 1, 0, 0)
			hist := &fakeHistory{gate: make(chan struct{})}
			h.EnableRecovery(hist, RecoveryConfig{})
			for i := range int64(100) {
				feed(h, hist, kmsg("/t/a", i))
			}
			r := &recorder{}
			// Evict nothing but force the history path: cursor before first.
			h.parts.get("t", 0).first = 50
			resume(t, h, r, filter, cur(9), false)
			var wg sync.WaitGroup
			wg.Go(func() {
				for i := int64(100); i < 300; i++ {
					feed(h, hist, kmsg("/t/a", i))
				}
			})
			time.Sleep(time.Millisecond) // let some live messages be held
			close(hist.gate)
			wg.Wait()
			h.Wait()
			got := offsetsOf(r.take(), "/t/a")
			if len(got) != 290 {
				t.Fatalf("got %d messages, want 290 (10..299)", len(got))
			}
			for i, off := range got {
				if off != int64(10+i) {
					t.Fatalf("message %d has offset %d, want %d", i, off, 10+i)
				}
			}
		})
	}
}

func TestResumeFallsBackToKafka(t *testing.T) {
	h := NewHub(CacheConfig{Size: 2})
	h.Begin("t", 1, 0, 0)
	hist := &fakeHistory{}
	h.EnableRecovery(hist, RecoveryConfig{})
	for i := range int64(10) {
		feed(h, hist, kmsg("/t/a", i))
	}
	r := &recorder{}
	resume(t, h, r, "/t/a", cur(2), false)
	h.Wait()
	if got := offsetsOf(r.take(), "/t/a"); fmt.Sprint(got) != "[3 4 5 6 7 8 9]" {
		t.Fatalf("got %v", got)
	}
	if len(hist.queries) != 1 || hist.queries[0].From != 3 || hist.queries[0].To != 9 {
		t.Fatalf("history queries %+v, want one from 3 to 9", hist.queries)
	}
}

func TestResumeResets(t *testing.T) {
	cases := []struct {
		name   string
		cfg    RecoveryConfig
		hist   *fakeHistory
		since  Cursor
		reason string
	}{
		{"epoch changed", RecoveryConfig{}, &fakeHistory{}, Cursor{Epoch: 9, Offsets: map[int32]int64{0: 1}}, "re-created"},
		{"retention", RecoveryConfig{}, &fakeHistory{err: fmt.Errorf("x: %w", ErrHistoryGone)}, cur(1), "retention"},
		{"kafka fails", RecoveryConfig{}, &fakeHistory{err: errors.New("boom")}, cur(1), "boom"},
		{"too many", RecoveryConfig{MaxMessages: 3}, &fakeHistory{}, cur(1), "recovery.max.messages"},
		{"no history", RecoveryConfig{}, nil, cur(1), "no longer cached"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := NewHub(CacheConfig{Size: 1})
			h.Begin("t", 1, 0, 0)
			if tc.hist != nil {
				h.EnableRecovery(tc.hist, tc.cfg)
			} else {
				h.recovery = tc.cfg.withDefaults()
			}
			for i := range int64(10) {
				feed(h, tc.hist, kmsg("/t/a", i))
			}
			r := &recorder{}
			resume(t, h, r, "/t/a", tc.since, true)
			h.Wait()
			if len(r.resets) != 1 || !containsStr(r.resets[0], tc.reason) {
				t.Fatalf("resets %q, want one mentioning %q", r.resets, tc.reason)
			}
			got := r.take()
			if len(got) != 1 || !got[0].snapshot || got[0].off != 9 {
				t.Fatalf("after a reset want the snapshot (9), got %+v", got)
			}
			feed(h, nil, kmsg("/t/a", 10))
			if got := offsetsOf(r.take(), "/t/a"); fmt.Sprint(got) != "[10]" {
				t.Fatalf("live after reset: %v", got)
			}
		})
	}
}

func containsStr(s, sub string) bool {
	return len(sub) == 0 || (len(s) >= len(sub) && (s == sub || indexOf(s, sub) >= 0))
}

func indexOf(s, sub string) int {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return i
		}
	}
	return -1
}

func TestResumePendingOverflowDisconnects(t *testing.T) {
	h := NewHub(CacheConfig{Size: 1})
	h.Begin("t", 1, 0, 0)
	hist := &fakeHistory{gate: make(chan struct{})}
	h.EnableRecovery(hist, RecoveryConfig{MaxPending: 3})
	for i := range int64(5) {
		feed(h, hist, kmsg("/t/a", i))
	}
	r := &recorder{}
	resume(t, h, r, "/t/a", cur(0), false)
	for i := int64(5); i < 10; i++ { // 5 live messages held, bound 3
		feed(h, hist, kmsg("/t/a", i))
	}
	close(hist.gate)
	h.Wait()
	if len(r.closes) != 1 || r.closes[0] != DisconnectSlow {
		t.Fatalf("closes %v, want one slow-consumer disconnect", r.closes)
	}
}

func TestUnsubscribeDuringResume(t *testing.T) {
	h := NewHub(CacheConfig{Size: 1})
	h.Begin("t", 1, 0, 0)
	hist := &fakeHistory{gate: make(chan struct{})}
	h.EnableRecovery(hist, RecoveryConfig{})
	for i := range int64(5) {
		feed(h, hist, kmsg("/t/a", i))
	}
	r := &recorder{}
	sub := resume(t, h, r, "/t/a", cur(0), false)
	h.Unsubscribe(sub)
	close(hist.gate)
	h.Wait()
	if got := r.take(); len(got) != 0 || len(r.resets) != 0 {
		t.Fatalf("delivered after Unsubscribe: %+v resets %v", got, r.resets)
	}
}

func TestFrontierAndCursorTokens(t *testing.T) {
	h := NewHub(CacheConfig{})
	if _, ok := h.Frontier("t"); ok {
		t.Fatal("frontier of an unknown topic")
	}
	h.Begin("t", 7, 0, 10)
	h.Begin("t", 7, 1, 0)
	m := testMsg("/t/a", 12)
	m.Pos.Epoch = 7
	h.Dispatch(m)
	c, ok := h.Frontier("t")
	// -1: nothing dispatched yet on partition 1; it must round-trip too.
	if !ok || c.String() != "7-0-12,7-1--1" {
		t.Fatalf("frontier %q, want 7-0-12,7-1--1", c)
	}
	back, err := ParseCursor(c.String())
	if err != nil {
		t.Fatalf("frontier token %q does not parse: %v", c, err)
	}
	if fmt.Sprint(back) != fmt.Sprint(c) {
		t.Fatalf("round trip %v → %q → %v", c, c.String(), back)
	}
	for _, bad := range []string{"", "1-0-1,2-1-1", "1-0-1,1-0-2", "1-0", "x"} {
		if _, err := ParseCursor(bad); !errors.Is(err, ErrBadPosition) {
			t.Errorf("ParseCursor(%q) = %v, want ErrBadPosition", bad, err)
		}
	}
	c.Advance(Position{Epoch: 7, Partition: 1, Offset: 3})
	if c.Offsets[1] != 3 {
		t.Fatalf("Advance: %v", c)
	}
}

// A client resuming on a node that is behind its cursor gets nothing it
// already has: live messages up to the cursor are skipped, later ones come.
func TestResumeOnNodeBehind(t *testing.T) {
	h := NewHub(CacheConfig{})
	h.Begin("t", 1, 0, 0)
	for i := range int64(3) {
		feed(h, nil, kmsg("/t/a", i))
	}
	r := &recorder{}
	resume(t, h, r, "/t/+", cur(6), false) // the client has up to 6; this node is at 2
	h.Wait()
	for i := int64(3); i < 10; i++ {
		feed(h, nil, kmsg("/t/a", i))
	}
	if got := fmt.Sprint(offsetsOf(r.take(), "/t/a")); got != "[7 8 9]" {
		t.Fatalf("got %s, want [7 8 9]", got)
	}
}

// A cursor "new" (the client subscribed before the topic existed) resumes
// from the start of every partition once the topic exists, and is a plain
// subscription while it still does not.
func TestResumeNewTopicCursor(t *testing.T) {
	h := NewHub(CacheConfig{})
	r := &recorder{}
	sub := resume(t, h, r, "/t/+", NewTopicCursor, false)
	if sub.HasStart {
		t.Fatal("a subscription to an unknown topic has a start")
	}
	h.Unsubscribe(sub)
	h.Begin("t", 1, 0, 0)
	for i := range int64(4) {
		feed(h, nil, kmsg("/t/a", i))
	}
	r2 := &recorder{}
	resume(t, h, r2, "/t/+", NewTopicCursor, false)
	h.Wait()
	if got := fmt.Sprint(offsetsOf(r2.take(), "/t/a")); got != "[0 1 2 3]" {
		t.Fatalf("got %s, want everything: [0 1 2 3]", got)
	}
	if c, err := ParseCursor("new"); err != nil || !c.New || c.String() != "new" {
		t.Fatalf("ParseCursor(new) = %+v, %v", c, err)
	}
}
