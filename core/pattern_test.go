package core

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

var matchCases = []struct {
	filter, subject string
	want            bool
}{
	// '+' is exactly one segment
	{"/t/+", "/t/a", true},
	{"/t/+", "/t/a/b", false},
	{"/t/+", "/t", false},
	{"/t/+/speed", "/t/1/speed", true},
	{"/t/+/speed", "/t/1/speed/x", false},
	{"/t/+/speed", "/t/1", false},
	{"/t/+/speed", "/t/1/sp", false},
	{"/t/+/speed", "/t/speed", false},
	{"/t/+/+", "/t/a/b", true},
	{"/t/+/+", "/t/a", false},
	{"/t/+/+", "/t/a/b/c", false},
	{"/t/a/+", "/t/a/b", true},
	{"/t/a/+", "/t/b/b", false},
	{"/t/a/+", "/t/a", false},

	// '#' is any number of segments, including none
	{"/t/#", "/t", true},
	{"/t/#", "/t/a", true},
	{"/t/#", "/t/a/b/c", true},
	{"/t/a/#", "/t/a", true},
	{"/t/a/#", "/t/a/b", true},
	{"/t/a/#", "/t/a/b/c/d", true},
	{"/t/a/#", "/t", false},
	{"/t/a/#", "/t/b", false},
	{"/t/a/#", "/t/ab", false},
	{"/t/a/#", "/t/b/a", false},
	{"/t/+/#", "/t/a", true},
	{"/t/+/#", "/t/a/b/c", true},
	{"/t/+/#", "/t", false},
	{"/t/a/b/#", "/t/a", false},
	{"/t/ab/#", "/t/a/b", false},
	{"/t/+/b/#", "/t/x/b", true},
	{"/t/+/b/#", "/t/x/c", false},

	// concrete filters
	{"/t/a", "/t/a", true},
	{"/t/a", "/t/a/b", false},
	{"/t/a", "/t", false},
	{"/t/a/b", "/t/a", false},
	{"/t", "/t", true},
	{"/t", "/t/a", false},
}

func TestFilterMatches(t *testing.T) {
	for _, tc := range matchCases {
		f, err := ParseFilter(tc.filter)
		if err != nil {
			t.Fatal(err)
		}
		s, err := ParseSubject(tc.subject)
		if err != nil {
			t.Fatal(err)
		}
		if f.Topic != s.Topic {
			t.Fatalf("case %q/%q: topics differ", tc.filter, tc.subject)
		}
		if got := f.Matches(s.Key, s.HasKey); got != tc.want {
			t.Errorf("ParseFilter(%q).Matches(%q, %v) = %v, want %v", tc.filter, s.Key, s.HasKey, got, tc.want)
		}
	}
}

// TestTrieMatches runs the same table through the Hub's trie.
func TestTrieMatches(t *testing.T) {
	for _, tc := range matchCases {
		h := NewHub(CacheConfig{})
		r := &recorder{}
		other := &recorder{}
		sub := mustSubscribe(t, h, r, tc.filter, SubscribeOptions{})
		mustSubscribe(t, h, other, "/u/#", SubscribeOptions{}) // another topic, never matches
		h.Dispatch(testMsg(tc.subject, 1))
		got := r.take()
		if want := b2i(tc.want); len(got) != want {
			t.Errorf("filter %q, subject %q: %d deliveries, want %d", tc.filter, tc.subject, len(got), want)
		}
		for _, d := range got {
			if d.sub != sub || d.subject != tc.subject || d.snapshot {
				t.Errorf("filter %q: unexpected delivery %+v", tc.filter, d)
			}
		}
		if n := len(other.take()); n != 0 {
			t.Errorf("subscription of another topic got %d deliveries of %q", n, tc.subject)
		}
		if want := int64(b2i(tc.want)); h.Stats().Delivered != want {
			t.Errorf("filter %q, subject %q: Stats.Delivered = %d, want %d", tc.filter, tc.subject, h.Stats().Delivered, want)
		}
	}
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

func TestOverlappingPatterns(t *testing.T) {
	h := NewHub(CacheConfig{})
	r := &recorder{}
	filters := []string{"/t/#", "/t/+", "/t/a", "/t/a/#", "/t/+/b", "/t/a/b", "/t/+/+", "/t/+/#",
		"/t/a/+", "/t/b/#", "/t", "/u/#", "/u/a/b", "/t/#"} // "/t/#" twice: two subscriptions
	subs := map[*Subscription]string{}
	for _, f := range filters {
		subs[mustSubscribe(t, h, r, f, SubscribeOptions{})] = f
	}
	tests := []struct {
		subject string
		want    []string
	}{
		{"/t/a/b", []string{"/t/#", "/t/#", "/t/+/#", "/t/+/+", "/t/+/b", "/t/a/#", "/t/a/+", "/t/a/b"}},
		{"/t/a", []string{"/t/#", "/t/#", "/t/+", "/t/+/#", "/t/a", "/t/a/#"}},
		{"/t", []string{"/t", "/t/#", "/t/#"}},
		{"/t/b", []string{"/t/#", "/t/#", "/t/+", "/t/+/#", "/t/b/#"}},
		{"/t/c/d/e", []string{"/t/#", "/t/#", "/t/+/#"}},
		{"/u/a/b", []string{"/u/#", "/u/a/b"}},
		{"/v/a", nil},
	}
	for _, tc := range tests {
		h.Dispatch(testMsg(tc.subject, 1))
		var got []string
		for _, d := range r.take() {
			if d.subject != tc.subject {
				t.Errorf("%q: delivered %q", tc.subject, d.subject)
			}
			got = append(got, subs[d.sub])
		}
		slices.Sort(got)
		if !slices.Equal(got, tc.want) {
			t.Errorf("%q delivered to %q, want %q", tc.subject, got, tc.want)
		}
	}
}

// TestTrieProperty checks the Hub's sharded index and pattern trie against a
// brute-force Filter.Matches over many random filters and subjects, through
// subscribes, partial unsubscribes and a full teardown.
func TestTrieProperty(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	topics := []string{"t", "u"}
	keySegs := []string{"a", "b", "c"}
	filterSegs := []string{"a", "b", "c", "+", "+", "#"}

	randFilter := func() string {
		var b strings.Builder
		b.WriteString("/" + topics[rng.IntN(len(topics))])
		n := rng.IntN(5)
		for i := range n {
			seg := filterSegs[rng.IntN(len(filterSegs))]
			for seg == "#" && i != n-1 {
				seg = filterSegs[rng.IntN(len(filterSegs))]
			}
			b.WriteString("/" + seg)
		}
		return b.String()
	}
	// every subject of both topics with up to 4 key segments
	var subjects []string
	var gen func(prefix string, depth int)
	gen = func(prefix string, depth int) {
		subjects = append(subjects, prefix)
		if depth == 4 {
			return
		}
		for _, s := range keySegs {
			gen(prefix+"/"+s, depth+1)
		}
	}
	for _, tp := range topics {
		gen("/"+tp, 0)
	}

	h := NewHub(CacheConfig{Size: 1})
	r := &recorder{}
	live := map[*Subscription]bool{}
	for range 400 {
		f := randFilter()
		live[mustSubscribe(t, h, r, f, SubscribeOptions{})] = true
	}

	check := func(phase string) {
		t.Helper()
		for i, subject := range subjects {
			s, err := ParseSubject(subject)
			if err != nil {
				t.Fatal(err)
			}
			h.Dispatch(testMsg(subject, int64(i)))
			got := map[*Subscription]int{}
			for _, d := range r.take() {
				got[d.sub]++
			}
			for sub := range got {
				if !live[sub] {
					t.Fatalf("%s: %q delivered to removed subscription %q", phase, subject, sub.Filter.Name)
				}
			}
			for sub := range live {
				want := b2i(sub.Filter.Topic == s.Topic && sub.Filter.Matches(s.Key, s.HasKey))
				if got[sub] != want {
					t.Fatalf("%s: %q delivered %d times to %q, brute force says %d",
						phase, subject, got[sub], sub.Filter.Name, want)
				}
			}
		}
	}
	check("all subscribed")

	for sub := range live {
		if rng.IntN(2) == 0 {
			h.Unsubscribe(sub)
			delete(live, sub)
		}
	}
	for range 50 {
		live[mustSubscribe(t, h, r, randFilter(), SubscribeOptions{})] = true
	}
	check("after churn")
	if got := h.Stats().Subscriptions; got != int64(len(live)) {
		t.Fatalf("Stats.Subscriptions = %d, want %d", got, len(live))
	}

	for sub := range live {
		h.Unsubscribe(sub)
		delete(live, sub)
	}
	check("all unsubscribed")
	h.patterns.Range(func(k, v any) bool {
		tp := v.(*topicPatterns)
		if !tp.root.isEmpty() {
			t.Errorf("pattern trie of topic %v not pruned after all unsubscribes", k)
		}
		return true
	})
	if st := h.Stats(); st.Subscriptions != 0 {
		t.Fatalf("Stats.Subscriptions = %d after all unsubscribes", st.Subscriptions)
	}
}

func mustSubscribe(t testing.TB, h *Hub, s Subscriber, filter string, opts SubscribeOptions) *Subscription {
	t.Helper()
	f, err := ParseFilter(filter)
	if err != nil {
		t.Fatalf("ParseFilter(%q): %v", filter, err)
	}
	sub := h.Subscribe(s, f, opts)
	if sub == nil || sub.Filter.Name != filter || sub.Subscriber != s || sub.Mode != opts.Mode || sub.Tag != opts.Tag {
		t.Fatalf("Subscribe(%q) returned %+v", filter, sub)
	}
	return sub
}

func testMsg(subject string, off int64) *Message {
	s, err := ParseSubject(subject)
	if err != nil {
		panic(fmt.Sprintf("testMsg(%q): %v", subject, err))
	}
	return &Message{
		Subject: s.Name, Topic: s.Topic, Key: s.Key, HasKey: s.HasKey,
		Payload: []byte(fmt.Sprint(off)),
		Pos:     Position{Offset: off},
	}
}
