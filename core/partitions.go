package core

import (
	"slices"
	"sync"
	"sync/atomic"
)

// partitionState is what the Hub knows of one partition of a topic: its
// epoch, the first offset this node dispatches, and the last one it did.
type partitionState struct {
	epoch    uint32
	first    int64
	frontier atomic.Int64
}

type topicPartition struct {
	topic     string
	partition int32
}

// partitions indexes partitionStates; the kafka package announces each
// partition with Begin before dispatching from it.
type partitions struct {
	mu      sync.RWMutex
	byTP    map[topicPartition]*partitionState
	byTopic map[string][]int32
}

func (ps *partitions) get(topic string, p int32) *partitionState {
	ps.mu.RLock()
	defer ps.mu.RUnlock()
	return ps.byTP[topicPartition{topic, p}]
}

// Begin tells the Hub that from offset first on, every record of the
// partition is dispatched (in order). Calling it again for the same
// partition (a new epoch, a restarted consumption) replaces what was known.
func (h *Hub) Begin(topic string, epoch uint32, partition int32, first int64) {
	h.BeginAll(topic, epoch, map[int32]int64{partition: first})
}

// BeginAll is Begin for several partitions of a topic at once: Frontier
// and Origin see all of them or none. A topic's partitions announced one by
// one would let a subscription made in between get a start cursor naming
// only some of them, and a client resuming from it elsewhere would miss the
// others' first messages.
func (h *Hub) BeginAll(topic string, epoch uint32, firsts map[int32]int64) {
	ps := &h.parts
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if ps.byTP == nil {
		ps.byTP = make(map[topicPartition]*partitionState)
		ps.byTopic = make(map[string][]int32)
	}
	for partition, first := range firsts {
		st := &partitionState{epoch: epoch, first: first}
		st.frontier.Store(first - 1)
		tp := topicPartition{topic, partition}
		if _, known := ps.byTP[tp]; !known {
			ps.byTopic[topic] = append(ps.byTopic[topic], partition)
		}
		ps.byTP[tp] = st
	}
	slices.Sort(ps.byTopic[topic])
}

// Forget drops what the Hub knows of a topic's partitions (the topic was
// deleted); subscriptions resuming on it are reset.
func (h *Hub) Forget(topic string) {
	ps := &h.parts
	ps.mu.Lock()
	defer ps.mu.Unlock()
	for _, p := range ps.byTopic[topic] {
		delete(ps.byTP, topicPartition{topic, p})
	}
	delete(ps.byTopic, topic)
}

// Frontier returns, for every known partition of topic, the offset of the
// last message dispatched (first-1 before any): a cursor that a subscription
// made now can resume from without missing anything. ok is false while the
// topic's partitions are unknown or of mixed epochs.
func (h *Hub) Frontier(topic string) (c Cursor, ok bool) {
	return h.parts.cursor(topic, func(st *partitionState) int64 { return st.frontier.Load() })
}

// cursor builds a cursor of topic's partitions from one offset of each.
func (ps *partitions) cursor(topic string, offset func(*partitionState) int64) (c Cursor, ok bool) {
	ps.mu.RLock()
	defer ps.mu.RUnlock()
	parts := ps.byTopic[topic]
	if len(parts) == 0 {
		return Cursor{}, false
	}
	c.Offsets = make(map[int32]int64, len(parts))
	for i, p := range parts {
		st := ps.byTP[topicPartition{topic, p}]
		if i > 0 && st.epoch != c.Epoch {
			return Cursor{}, false
		}
		c.Epoch = st.epoch
		c.Offsets[p] = offset(st)
	}
	return c, true
}

// advance records msg as its partition's last dispatched message. Dispatch
// calls it under the subject's shard lock, before any delivery.
func (h *Hub) advance(msg *Message) {
	if st := h.parts.get(msg.Topic, msg.Pos.Partition); st != nil && st.epoch == msg.Pos.Epoch {
		st.frontier.Store(msg.Pos.Offset)
	}
}
