package core

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"
)

// History reads messages back from Kafka; the kafka package implements it.
type History interface {
	// Read returns, in offset order, the messages of q's partition with
	// offsets from q.From to q.To (both included) that q.Keep accepts,
	// stopping once it has more than q.Max of them. It returns an error
	// wrapping ErrHistoryGone when q.From is no longer in Kafka.
	Read(ctx context.Context, q HistoryQuery) ([]*Message, error)
}

// HistoryQuery is one read-back of a partition.
type HistoryQuery struct {
	Topic     string
	Partition int32
	Epoch     uint32
	From, To  int64
	Keep      func(*Message) bool
	Max       int
}

// ErrHistoryGone means Kafka no longer holds the messages asked for.
var ErrHistoryGone = errors.New("the messages are no longer in Kafka (retention)")

// RecoveryConfig bounds resuming. The zero value of a field means its default.
type RecoveryConfig struct {
	// MaxMessages is the most messages one resume delivers from history
	// (default 10000); a larger gap is reset.
	MaxMessages int
	// MaxAge is the oldest a missed message may be (default 24h); an older
	// gap is reset.
	MaxAge time.Duration
	// Timeout bounds one resume, Kafka reads included (default 30s).
	Timeout time.Duration
	// MaxPending bounds the live messages held while history is delivered
	// (default 10000); past it the client is disconnected as slow.
	MaxPending int
}

func (c RecoveryConfig) withDefaults() RecoveryConfig {
	if c.MaxMessages <= 0 {
		c.MaxMessages = 10000
	}
	if c.MaxAge <= 0 {
		c.MaxAge = 24 * time.Hour
	}
	if c.Timeout <= 0 {
		c.Timeout = 30 * time.Second
	}
	if c.MaxPending <= 0 {
		c.MaxPending = 10000
	}
	return c
}

// EnableRecovery lets resumes read history that the cache no longer holds
// back from Kafka, within cfg's bounds. Without it such resumes are reset.
func (h *Hub) EnableRecovery(hist History, cfg RecoveryConfig) {
	h.history = hist
	h.recovery = cfg.withDefaults()
}

// Wait waits for the resumes in progress to finish (for shutdown and tests).
func (h *Hub) Wait() { h.recovers.Wait() }

// resume registers sub at once, holding its live messages, and recovers its
// history in the background.
func (h *Hub) resume(sub *Subscription, since Cursor, snapshot bool) {
	sub.pendingLimit = h.recovery.MaxPending
	sub.recovering.Store(true)
	h.register(sub)
	h.recovers.Add(1)
	go func() {
		defer h.recovers.Done()
		h.recover(sub, since, snapshot)
	}()
}

func (h *Hub) recover(sub *Subscription, since Cursor, snapshot bool) {
	ctx, cancel := context.WithTimeout(context.Background(), h.recovery.Timeout)
	defer cancel()
	var msgs []*Message
	front, err := h.waitFrontier(ctx, sub.Filter.Topic)
	reason := ""
	switch {
	case err != nil:
		reason = "the topic's partitions are not known to this node"
	case front.Epoch != since.Epoch:
		reason = "the topic was re-created or its partition count changed"
	default:
		msgs, reason = h.collect(ctx, sub.Filter, since, front)
	}
	if reason == "" {
		sub.skipAhead(since, front)
		h.settle(sub.Filter)
		h.finishRecovery(sub, msgs, false, delivered(since, front))
		return
	}
	sub.mu.Lock()
	if !sub.removed {
		sub.Subscriber.Reset(sub, reason)
	}
	sub.mu.Unlock()
	if snapshot {
		h.finishRecovery(sub, h.snapshots(sub.Filter), true, Cursor{})
		return
	}
	h.finishRecovery(sub, nil, false, Cursor{})
}

// settle returns once every dispatch of f's messages that was under way
// when it was called has handed its messages to the subscriptions. A
// dispatch advances the frontier before it delivers (DispatchBatch: for a
// whole chunk), under the shard locks of its subjects, which it holds until
// it has delivered; so a recovery that read the frontier while a dispatch
// was under way would otherwise end first and the dispatch then hand the
// subscription, as live messages, ones the recovery delivered from history.
// Settled, they are held with the others and dropped by finishRecovery.
func (h *Hub) settle(f Filter) {
	if !f.Wildcard {
		sh := h.shardOf(f.Subject.Name)
		sh.mu.Lock()
		sh.mu.Unlock() //nolint:staticcheck // an empty critical section: waiting is the point
		return
	}
	for i := range h.shards {
		h.shards[i].mu.Lock()
		h.shards[i].mu.Unlock() //nolint:staticcheck // as above
	}
}

// delivered is, per partition of the cursor a recovery resumed from, the
// offset up to which the subscription has everything once the recovery's
// messages are delivered: the later of the cursor (a node behind it
// dispatches what the client has) and the frontier the recovery read (it
// delivered everything up to it).
func delivered(since, front Cursor) Cursor {
	c := Cursor{Epoch: since.Epoch, Offsets: make(map[int32]int64, len(since.Offsets))}
	for p, off := range since.Offsets {
		if f, ok := front.Offsets[p]; ok {
			off = max(off, f)
		}
		c.Offsets[p] = off
	}
	return c
}

// waitFrontier waits until the topic's partitions are known (a node that has
// just started may not have read the topic's metadata yet).
func (h *Hub) waitFrontier(ctx context.Context, topic string) (Cursor, error) {
	for {
		if c, ok := h.Frontier(topic); ok {
			return c, nil
		}
		select {
		case <-ctx.Done():
			return Cursor{}, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// collect gathers the messages of f after since up to front, partition by
// partition, from the cache where it holds them all and from Kafka
// otherwise. A non-empty reason means the history cannot be had.
func (h *Hub) collect(ctx context.Context, f Filter, since, front Cursor) ([]*Message, string) {
	var out []*Message
	for _, p := range slices.Sorted(maps.Keys(since.Offsets)) {
		from, to := since.Offsets[p]+1, front.Offsets[p]
		if to < from {
			continue
		}
		ms, covered := h.fromCache(f, p, from, to)
		// Kafka's order within the partition, across subjects too.
		slices.SortFunc(ms, func(a, b *Message) int { return cmp.Compare(a.Pos.Offset, b.Pos.Offset) })
		if !covered {
			var reason string
			if ms, reason = h.fromKafka(ctx, f, p, since.Epoch, from, to, h.recovery.MaxMessages-len(out)); reason != "" {
				return nil, reason
			}
		}
		out = append(out, ms...)
		if len(out) > h.recovery.MaxMessages {
			return nil, fmt.Sprintf("more than %d messages were missed (recovery.max.messages)", h.recovery.MaxMessages)
		}
	}
	return out, ""
}

// fromCache returns the cached messages of f in partition p with offsets in
// [from, to], and whether the cache holds all of them: this node dispatched
// the partition since before from, and evicted nothing after it.
func (h *Hub) fromCache(f Filter, p int32, from, to int64) ([]*Message, bool) {
	ps := h.parts.get(f.Topic, p)
	if ps == nil || from < ps.first {
		return nil, false
	}
	tp := topicPartition{f.Topic, p}
	if !f.Wildcard {
		sh := h.shardOf(f.Subject.Name)
		sh.mu.Lock()
		defer sh.mu.Unlock()
		if ev, ok := sh.evictedTo[tp]; ok && ev >= from {
			return nil, false
		}
		return sh.subjects[f.Subject.Name].between(p, from, to, nil), true
	}
	var out []*Message
	for i := range h.shards {
		sh := &h.shards[i]
		sh.mu.Lock()
		if ev, ok := sh.evictedTo[tp]; ok && ev >= from {
			sh.mu.Unlock()
			return nil, false
		}
		for st := range sh.byTopic[f.Topic] {
			if f.Matches(st.key, st.hasKey) {
				out = st.between(p, from, to, out)
			}
		}
		sh.mu.Unlock()
	}
	return out, true
}

// between appends st's cached messages of partition p with offsets in [from, to].
func (st *subjectState) between(p int32, from, to int64, out []*Message) []*Message {
	if st == nil {
		return out
	}
	for e := st.oldest; e != nil; e = e.sNext {
		pos := e.msg.Pos
		if pos.Partition == p && pos.Offset >= from && pos.Offset <= to {
			out = append(out, e.msg)
		}
	}
	return out
}

func (h *Hub) fromKafka(ctx context.Context, f Filter, p int32, epoch uint32, from, to int64, budget int) ([]*Message, string) {
	if h.history == nil {
		return nil, "the missed messages are no longer cached on this node"
	}
	ms, err := h.history.Read(ctx, HistoryQuery{
		Topic: f.Topic, Partition: p, Epoch: epoch, From: from, To: to, Max: max(budget, 0),
		Keep: func(m *Message) bool { return f.Matches(m.Key, m.HasKey) },
	})
	switch {
	case errors.Is(err, ErrHistoryGone):
		return nil, "the missed messages were removed by Kafka's retention"
	case err != nil:
		return nil, "reading the missed messages from Kafka failed: " + err.Error()
	case len(ms) > 0 && !ms[0].Time.IsZero() && h.now().Sub(ms[0].Time) > h.recovery.MaxAge:
		return nil, fmt.Sprintf("the missed messages are older than %v (recovery.max.age)", h.recovery.MaxAge)
	}
	return ms, ""
}

// snapshots returns the latest cached message of each subject f matches.
func (h *Hub) snapshots(f Filter) []*Message {
	if !f.Wildcard {
		if m := h.Latest(f.Subject.Name); m != nil {
			return []*Message{m}
		}
		return nil
	}
	var out []*Message
	for i := range h.shards {
		sh := &h.shards[i]
		sh.mu.Lock()
		for st := range sh.byTopic[f.Topic] {
			if m := h.fresh(st.latest()); m != nil && f.Matches(st.key, st.hasKey) {
				out = append(out, m)
			}
		}
		sh.mu.Unlock()
	}
	return out
}

// skipAhead arms the subscription to drop live messages the client already
// has: those at or before its cursor on partitions where this node is still
// behind it (front < since).
func (s *Subscription) skipAhead(since, front Cursor) {
	var ahead map[int32]int64
	for p, off := range since.Offsets {
		if f, ok := front.Offsets[p]; ok && f < off {
			if ahead == nil {
				ahead = make(map[int32]int64)
			}
			ahead[p] = off
		}
	}
	if ahead == nil {
		return
	}
	s.mu.Lock()
	s.skip = &Cursor{Epoch: since.Epoch, Offsets: ahead}
	s.skipping.Store(true)
	s.mu.Unlock()
}

// seqKey identifies the sequence a message belongs to: one subject in one
// partition, whose offsets only grow.
type seqKey struct {
	subject   string
	partition int32
}

// finishRecovery delivers the recovered messages, then the live ones held
// meanwhile that are newer — than the last recovered one of their subject,
// and than have on their partition — and ends the recovery: from then on
// messages go straight to the subscriber.
//
// It holds sub.mu throughout (Deliver never blocks), so that once
// Unsubscribe has returned nothing more is delivered.
func (h *Hub) finishRecovery(sub *Subscription, msgs []*Message, snapshot bool, have Cursor) {
	last := make(map[seqKey]int64, len(msgs))
	sub.mu.Lock()
	overflow := sub.overflow
	if !sub.removed && !overflow {
		for _, m := range msgs {
			k := seqKey{m.Subject, m.Pos.Partition}
			if off, ok := last[k]; ok && m.Pos.Offset <= off {
				continue
			}
			sub.Subscriber.Deliver(sub, m, snapshot)
			last[k] = m.Pos.Offset
		}
		for _, m := range sub.pending {
			if off, ok := last[seqKey{m.Subject, m.Pos.Partition}]; ok && m.Pos.Offset <= off {
				continue
			}
			if upTo, ok := have.Offsets[m.Pos.Partition]; ok && have.Epoch == m.Pos.Epoch && m.Pos.Offset <= upTo {
				continue // recovered, or the client had it
			}
			if sub.skip != nil && sub.skip.Epoch == m.Pos.Epoch {
				if upTo, ok := sub.skip.Offsets[m.Pos.Partition]; ok && m.Pos.Offset <= upTo {
					continue // the client has it: this node was behind its cursor
				}
			}
			sub.Subscriber.Deliver(sub, m, false)
		}
	}
	sub.pending = nil
	sub.recovering.Store(false)
	sub.mu.Unlock()
	if overflow {
		sub.Subscriber.Close(DisconnectSlow)
	}
}
