package core

import (
	"hash/maphash"
	"sync"
	"sync/atomic"
	"time"
)

// numShards is how many independently locked parts the subject index has.
const numShards = 64

// Hub indexes subscriptions by subject, keeps the per-subject cache, and fans
// each dispatched message out to the subscribers of its subject and of every
// matching pattern. Subjects are spread over 64 shards by hash, so dispatches
// and subscribes on different subjects rarely share a lock.
type Hub struct {
	cfg      CacheConfig
	memShare int64
	seed     maphash.Seed
	shards   [numShards]shard
	patterns sync.Map // topic → *topicPatterns
	parts    partitions
	now      func() time.Time

	history  History
	recovery RecoveryConfig
	recovers sync.WaitGroup

	subscriptions atomic.Int64
	dispatched    atomic.Int64
	delivered     atomic.Int64
}

type shard struct {
	mu       sync.Mutex
	subjects map[string]*subjectState
	byTopic  map[string]map[*subjectState]struct{}
	fifo     fifo
	// evictedTo is, per partition, the highest offset this shard evicted:
	// above it the shard's cache holds every message it was dispatched.
	evictedTo map[topicPartition]int64
	stats     struct{ cached, evicted int64 }
}

// NewHub returns a Hub with the given cache bounds.
func NewHub(cfg CacheConfig) *Hub {
	cfg = cfg.withDefaults()
	h := &Hub{cfg: cfg, memShare: cfg.MaxMemory / numShards, seed: maphash.MakeSeed(), now: time.Now}
	for i := range h.shards {
		h.shards[i].subjects = make(map[string]*subjectState)
		h.shards[i].byTopic = make(map[string]map[*subjectState]struct{})
		h.shards[i].evictedTo = make(map[topicPartition]int64)
	}
	h.recovery = RecoveryConfig{}.withDefaults()
	return h
}

func (h *Hub) shardOf(subject string) *shard { return &h.shards[h.shardIndex(subject)] }

func (h *Hub) shardIndex(subject string) int {
	return int(maphash.String(h.seed, subject) % numShards)
}

func (sh *shard) get(name, topic, key string, hasKey bool) *subjectState {
	if st := sh.subjects[name]; st != nil {
		return st
	}
	st := &subjectState{name: name, topic: topic, key: key, hasKey: hasKey}
	sh.subjects[name] = st
	m := sh.byTopic[topic]
	if m == nil {
		m = make(map[*subjectState]struct{})
		sh.byTopic[topic] = m
	}
	m[st] = struct{}{}
	return st
}

func (sh *shard) remove(st *subjectState) {
	delete(sh.subjects, st.name)
	if m := sh.byTopic[st.topic]; m != nil {
		delete(m, st)
		if len(m) == 0 {
			delete(sh.byTopic, st.topic)
		}
	}
}

func (h *Hub) topicPatterns(topic string, create bool) *topicPatterns {
	if tp, ok := h.patterns.Load(topic); ok {
		return tp.(*topicPatterns)
	}
	if !create {
		return nil
	}
	tp, _ := h.patterns.LoadOrStore(topic, &topicPatterns{})
	return tp.(*topicPatterns)
}

// Dispatch caches msg and delivers it to every matching subscription. The
// kafka package calls it in each partition's order; messages of one subject
// come from one partition, so each subject's subscribers see Kafka's order.
func (h *Hub) Dispatch(msg *Message) {
	now := h.now().UnixNano()
	sh := h.shardOf(msg.Subject)
	sh.mu.Lock()
	// Under the shard lock, with the deliveries: a subscription registered
	// under the same lock(s) reads a start cursor that is exactly before
	// the first message it gets.
	h.advance(msg)
	st := sh.get(msg.Subject, msg.Topic, msg.Key, msg.HasKey)
	sh.appendMsg(st, msg, now)
	n := len(st.subs)
	for _, sub := range st.subs {
		sub.live(msg)
	}
	if tp := h.topicPatterns(msg.Topic, false); tp != nil {
		tp.mu.RLock()
		tp.match(msg.Key, msg.HasKey, func(sub *Subscription) {
			sub.live(msg)
			n++
		})
		tp.mu.RUnlock()
	}
	sh.trim(st, &h.cfg, h.memShare, now)
	sh.mu.Unlock()
	h.dispatched.Add(1)
	h.delivered.Add(int64(n))
}

// Subscribe registers sub for filter f. With opts.Snapshot the latest cached
// message of every matching subject is delivered first, marked as a snapshot,
// and no live message of a subject is ever followed by an older snapshot.
func (h *Hub) Subscribe(s Subscriber, f Filter, opts SubscribeOptions) *Subscription {
	sub := &Subscription{Filter: f, Subscriber: s, Mode: opts.Mode, Tag: opts.Tag}
	sub.batcher, _ = s.(BatchSubscriber)
	h.subscriptions.Add(1)
	if opts.Since != nil && opts.Since.New {
		// The topic did not exist when the client subscribed: everything in
		// it now is after that, from each partition's start.
		if front, ok := h.Frontier(f.Topic); ok {
			since := front.FromStart()
			opts.Since = &since
		} else {
			opts.Since = nil // it still does not exist: a plain subscription
		}
	}
	if opts.Since != nil {
		h.resume(sub, *opts.Since, opts.Snapshot)
		return sub
	}
	if !f.Wildcard {
		h.subscribeExact(sub, opts.Snapshot)
		return sub
	}
	if opts.Snapshot {
		sub.seenLive = make(map[string]struct{})
		sub.snapshotting.Store(true)
	}
	h.register(sub)
	if opts.Snapshot {
		h.sendPatternSnapshots(sub)
	}
	return sub
}

func (h *Hub) subscribeExact(sub *Subscription, snapshot bool) {
	subj := sub.Filter.Subject
	sh := h.shardOf(subj.Name)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	st := sh.get(subj.Name, subj.Topic, subj.Key, subj.HasKey)
	sub.state, sub.index = st, len(st.subs)
	st.subs = append(st.subs, sub)
	sub.Start, sub.HasStart = h.Frontier(subj.Topic)
	if snapshot {
		if m := h.fresh(st.latest()); m != nil {
			sub.Subscriber.Deliver(sub, m, true)
		}
	}
}

// fresh returns m unless it has expired.
func (h *Hub) fresh(m *Message) *Message {
	if m == nil || (!m.Time.IsZero() && h.now().Sub(m.Time) > h.cfg.ExpireTime) {
		return nil
	}
	return m
}

func (h *Hub) sendPatternSnapshots(sub *Subscription) {
	f := sub.Filter
	for i := range h.shards {
		sh := &h.shards[i]
		sh.mu.Lock()
		for st := range sh.byTopic[f.Topic] {
			if m := h.fresh(st.latest()); m != nil && f.Matches(st.key, st.hasKey) {
				sub.deliverSnapshot(st.name, m)
			}
		}
		sh.mu.Unlock()
	}
	sub.mu.Lock()
	sub.seenLive = nil
	sub.snapshotting.Store(false)
	sub.mu.Unlock()
}

// register puts sub into the index without any snapshot: exact
// subscriptions into their subject, patterns into their topic's trie.
//
// Either way it reads sub.Start under the locks every dispatch of a matching
// message holds: each message of the topic is then either dispatched before
// (and counted in Start) or after (and delivered, or held while recovering).
// A pattern may match subjects in any shard, so it takes them all, briefly.
func (h *Hub) register(sub *Subscription) {
	if sub.Filter.Wildcard {
		for i := range h.shards {
			h.shards[i].mu.Lock()
		}
		for !h.topicPatterns(sub.Filter.Topic, true).insert(sub) {
			// The trie was emptied and dropped meanwhile; the next one is fresh.
		}
		sub.Start, sub.HasStart = h.Frontier(sub.Filter.Topic)
		for i := range h.shards {
			h.shards[i].mu.Unlock()
		}
		return
	}
	subj := sub.Filter.Subject
	sh := h.shardOf(subj.Name)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	st := sh.get(subj.Name, subj.Topic, subj.Key, subj.HasKey)
	sub.state, sub.index = st, len(st.subs)
	st.subs = append(st.subs, sub)
	sub.Start, sub.HasStart = h.Frontier(subj.Topic)
}

// Unsubscribe removes sub; after it returns no further message is delivered
// to it. Unsubscribing twice is harmless.
func (h *Hub) Unsubscribe(sub *Subscription) {
	sub.mu.Lock()
	if sub.removed {
		sub.mu.Unlock()
		return
	}
	sub.removed = true
	sub.pending = nil
	sub.mu.Unlock()
	h.subscriptions.Add(-1)
	if sub.Filter.Wildcard {
		if tp := h.topicPatterns(sub.Filter.Topic, false); tp != nil && tp.remove(sub) {
			h.patterns.CompareAndDelete(sub.Filter.Topic, tp)
		}
		return
	}
	sh := h.shardOf(sub.Filter.Subject.Name)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	st := sub.state
	last := len(st.subs) - 1
	st.subs[sub.index] = st.subs[last]
	st.subs[sub.index].index = sub.index
	st.subs[last] = nil
	st.subs = st.subs[:last]
	if st.empty() {
		sh.remove(st)
	}
}

// Latest returns the newest cached message of a subject, if any.
func (h *Hub) Latest(subject string) *Message {
	sh := h.shardOf(subject)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if st := sh.subjects[subject]; st != nil {
		return h.fresh(st.latest())
	}
	return nil
}

// Expire drops expired cache entries in every shard. Dispatch expires as it
// goes; a periodic call also frees subjects that no longer receive messages.
func (h *Hub) Expire() {
	now := h.now().UnixNano()
	for i := range h.shards {
		sh := &h.shards[i]
		sh.mu.Lock()
		sh.expire(&h.cfg, now)
		sh.mu.Unlock()
	}
}

// Stats is a point-in-time view of the Hub for metrics.
type Stats struct {
	Subscriptions int64 // current subscriptions
	Subjects      int64 // subjects with subscribers or cached messages
	Dispatched    int64 // messages dispatched since start
	Delivered     int64 // deliveries (message × subscription) since start
	CachedBytes   int64 // bytes held by the cache (estimate)
	Cached        int64 // messages ever cached
	Evicted       int64 // messages evicted (size, expiry or memory)
}

// Stats returns the Hub's counters.
func (h *Hub) Stats() Stats {
	s := Stats{
		Subscriptions: h.subscriptions.Load(),
		Dispatched:    h.dispatched.Load(),
		Delivered:     h.delivered.Load(),
	}
	for i := range h.shards {
		sh := &h.shards[i]
		sh.mu.Lock()
		s.Subjects += int64(len(sh.subjects))
		s.CachedBytes += sh.fifo.bytes
		s.Cached += sh.stats.cached
		s.Evicted += sh.stats.evicted
		sh.mu.Unlock()
	}
	return s
}
