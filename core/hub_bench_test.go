package core

import (
	"fmt"
	"testing"
)

// nopSubscriber counts deliveries and does nothing else, so the benchmarks
// measure the Hub's fan-out.
type nopSubscriber struct{ n int }

func (s *nopSubscriber) Deliver(*Subscription, *Message, bool) { s.n++ }
func (s *nopSubscriber) Close(Disconnect)                      {}
func (s *nopSubscriber) Reset(*Subscription, string)           {}

// discard is a stateless Subscriber, safe for concurrent Deliver calls.
type discard struct{}

func (discard) Deliver(*Subscription, *Message, bool) {}
func (discard) Close(Disconnect)                      {}
func (discard) Reset(*Subscription, string)           {}

func benchDispatch(b *testing.B, h *Hub, subject string, want int) {
	b.Helper()
	m := testMsg(subject, 1)
	m.Payload = make([]byte, 64)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		h.Dispatch(m)
	}
	b.StopTimer()
	if d := h.Stats().Delivered; d != int64(want)*int64(b.N) {
		b.Fatalf("delivered %d, want %d × %d", d, want, b.N)
	}
	b.ReportMetric(float64(want), "deliveries/op")
}

func BenchmarkDispatchExact(b *testing.B) {
	for _, n := range []int{1, 100, 1000} {
		b.Run(fmt.Sprintf("subs=%d", n), func(b *testing.B) {
			h := NewHub(CacheConfig{})
			f, err := ParseFilter("/vehicles/1/speed")
			if err != nil {
				b.Fatal(err)
			}
			s := &nopSubscriber{}
			for range n {
				h.Subscribe(s, f, SubscribeOptions{})
			}
			benchDispatch(b, h, "/vehicles/1/speed", n)
		})
	}
}

func BenchmarkDispatchPattern(b *testing.B) {
	// 1000 subscriptions of one topic, all matching the subject.
	b.Run("subs=1000/all-match", func(b *testing.B) {
		h := NewHub(CacheConfig{})
		s := &nopSubscriber{}
		for i := range 1000 {
			f, err := ParseFilter([]string{"/vehicles/+/speed", "/vehicles/#", "/vehicles/1/+", "/vehicles/+/+"}[i%4])
			if err != nil {
				b.Fatal(err)
			}
			h.Subscribe(s, f, SubscribeOptions{})
		}
		benchDispatch(b, h, "/vehicles/1/speed", 1000)
	})
	// 1000 distinct patterns of one topic, one of which matches: the trie
	// visits only the matching branch.
	b.Run("subs=1000/one-match", func(b *testing.B) {
		h := NewHub(CacheConfig{})
		s := &nopSubscriber{}
		for i := range 1000 {
			f, err := ParseFilter(fmt.Sprintf("/vehicles/%d/+", i))
			if err != nil {
				b.Fatal(err)
			}
			h.Subscribe(s, f, SubscribeOptions{})
		}
		benchDispatch(b, h, "/vehicles/7/speed", 1)
	})
}

func BenchmarkDispatchParallel(b *testing.B) {
	h := NewHub(CacheConfig{})
	var subjects []*Message
	for i := range 256 {
		subjects = append(subjects, testMsg(fmt.Sprintf("/vehicles/%d/speed", i), 1))
	}
	f, err := ParseFilter("/vehicles/+/speed")
	if err != nil {
		b.Fatal(err)
	}
	h.Subscribe(discard{}, f, SubscribeOptions{})
	b.ReportAllocs()
	next := make(chan int, 1024)
	for i := range cap(next) {
		next <- i
	}
	b.RunParallel(func(pb *testing.PB) {
		// Each goroutine owns the subjects ≡ its start modulo 256, much as
		// per-partition consumers would.
		i := <-next
		for pb.Next() {
			h.Dispatch(subjects[i%len(subjects)])
			i += cap(next)
		}
	})
}

func BenchmarkParseSubject(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseSubject("/vehicles/1234/speed"); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParseFilter(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseFilter("/vehicles/+/speed"); err != nil {
			b.Fatal(err)
		}
	}
}
