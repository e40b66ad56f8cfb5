package core

import (
	"math/bits"
	"sync"
)

// BatchSubscriber is a Subscriber that can take several live messages of
// one subscription at once, as Deliver would take them one by one: in
// order, without blocking, with the subscription's mode applied to each
// message that does not fit. Hub.DispatchBatch hands a Kafka batch to it
// with one call per subscription instead of one per message, so an adapter
// locks its queue (and wakes its writer) once per batch.
type BatchSubscriber interface {
	Subscriber
	DeliverBatch(sub *Subscription, msgs []*Message)
}

// batchChunk bounds the messages dispatched under one taking of the locks,
// so that a large Kafka batch does not hold subscribes up for long.
const batchChunk = 256

// DispatchBatch does what Dispatch does for each message of msgs, which
// must be of one partition and in its order (a Kafka fetch's records of
// that partition): it caches them and delivers them to every matching
// subscription. It takes each shard the batch touches, and the topic's
// pattern index, once per chunk of up to 256 messages rather than once per
// message, and hands each subscription all its messages of the chunk at
// once (BatchSubscriber).
//
// Every invariant of Dispatch holds: the shards are locked in index order
// (as register locks them all) and held while the chunk's messages are
// dispatched one by one in partition order — each advancing the
// partition's frontier, then cached — and delivered, so a subscription
// registered under a shard's lock sees either none or all of the chunk's
// messages of that shard, and its start cursor is exactly before the first
// it gets. Each subscription gets its messages in partition order, so per
// subject order is Kafka's; only between two subscriptions of one client
// may messages of different subjects come in another order than Kafka's.
func (h *Hub) DispatchBatch(msgs []*Message) {
	for len(msgs) > 0 {
		n := 1
		for n < len(msgs) && n < batchChunk && msgs[n].Topic == msgs[0].Topic {
			n++
		}
		if n == 1 {
			h.Dispatch(msgs[0])
		} else {
			h.dispatchChunk(msgs[:n])
		}
		msgs = msgs[n:]
	}
}

// dispatchBatch is the scratch space of one chunk.
type dispatchBatch struct {
	shard    [batchChunk]uint8
	subjects []subjectBatch // in order of first message
	patterns []patternBatch
	pindex   map[*Subscription]int
}

// subjectBatch is a subject's messages in a chunk, for its exact subscriptions.
type subjectBatch struct {
	st   *subjectState
	msgs []*Message
}

type patternBatch struct {
	sub  *Subscription
	msgs []*Message
}

var batchPool = sync.Pool{New: func() any { return &dispatchBatch{pindex: make(map[*Subscription]int)} }}

func (h *Hub) dispatchChunk(msgs []*Message) {
	now := h.now().UnixNano()
	b := batchPool.Get().(*dispatchBatch)
	var locked uint64
	for i, m := range msgs {
		idx := h.shardIndex(m.Subject)
		b.shard[i] = uint8(idx)
		locked |= 1 << idx
	}
	for set := locked; set != 0; set &= set - 1 {
		h.shards[bits.TrailingZeros64(set)].mu.Lock()
	}
	// The trie cannot be created while shards are held (register holds them
	// all); holding it for reading keeps Unsubscribe waiting until the
	// chunk's pattern deliveries are done, as Dispatch does per message.
	tp := h.topicPatterns(msgs[0].Topic, false)
	if tp != nil {
		tp.mu.RLock()
	}
	for i, m := range msgs {
		sh := &h.shards[b.shard[i]]
		h.advance(m)
		st := sh.get(m.Subject, m.Topic, m.Key, m.HasKey)
		sh.appendMsg(st, m, now)
		if len(st.subs) > 0 { // constant while the shard is held
			b.addSubject(st, m)
		}
		if tp != nil {
			tp.match(m.Key, m.HasKey, func(sub *Subscription) { b.addPattern(sub, m) })
		}
		sh.trim(st, &h.cfg, h.memShare, now)
	}
	n := 0
	for i := range b.subjects {
		sb := &b.subjects[i]
		sb.st.batchIdx = 0
		for _, sub := range sb.st.subs {
			sub.liveBatch(sb.msgs)
		}
		n += len(sb.msgs) * len(sb.st.subs)
	}
	for i := range b.patterns {
		p := &b.patterns[i]
		p.sub.liveBatch(p.msgs)
		n += len(p.msgs)
	}
	if tp != nil {
		tp.mu.RUnlock()
	}
	for set := locked; set != 0; set &= set - 1 {
		h.shards[bits.TrailingZeros64(set)].mu.Unlock()
	}
	h.dispatched.Add(int64(len(msgs)))
	h.delivered.Add(int64(n))
	b.reset()
	batchPool.Put(b)
}

// addSubject adds m to its subject's messages; st.batchIdx (guarded by the
// shard lock) finds them without a map.
func (b *dispatchBatch) addSubject(st *subjectState, m *Message) {
	if st.batchIdx == 0 {
		if i := len(b.subjects); i < cap(b.subjects) {
			b.subjects = b.subjects[:i+1]
			b.subjects[i].st = st
		} else {
			b.subjects = append(b.subjects, subjectBatch{st: st})
		}
		st.batchIdx = int32(len(b.subjects))
	}
	sb := &b.subjects[st.batchIdx-1]
	sb.msgs = append(sb.msgs, m)
}

func (b *dispatchBatch) addPattern(sub *Subscription, m *Message) {
	i, ok := b.pindex[sub]
	if !ok {
		i = len(b.patterns)
		b.pindex[sub] = i
		if i < cap(b.patterns) {
			b.patterns = b.patterns[:i+1]
			b.patterns[i].sub = sub
		} else {
			b.patterns = append(b.patterns, patternBatch{sub: sub})
		}
	}
	b.patterns[i].msgs = append(b.patterns[i].msgs, m)
}

// reset empties the scratch space for the next chunk, keeping its capacity
// but no pointer into the messages or subscriptions.
func (b *dispatchBatch) reset() {
	for i := range b.subjects {
		clear(b.subjects[i].msgs)
		b.subjects[i] = subjectBatch{msgs: b.subjects[i].msgs[:0]}
	}
	b.subjects = b.subjects[:0]
	for i := range b.patterns {
		clear(b.patterns[i].msgs)
		b.patterns[i] = patternBatch{msgs: b.patterns[i].msgs[:0]}
	}
	b.patterns = b.patterns[:0]
	clear(b.pindex)
}

// liveBatch delivers messages dispatched now, in order: all at once to a
// BatchSubscriber, one by one otherwise — and while the subscription's
// history is recovered (held), its snapshots sent (noted) or the messages
// it already has skipped, as live does.
func (s *Subscription) liveBatch(msgs []*Message) {
	if s.batcher == nil || s.recovering.Load() || s.snapshotting.Load() || s.skipping.Load() {
		for _, m := range msgs {
			s.live(m)
		}
		return
	}
	// No flag is set again once cleared: the whole batch is live.
	s.batcher.DeliverBatch(s, msgs)
}
