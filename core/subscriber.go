package core

import (
	"sync"
	"sync/atomic"
)

// Subscriber is the boundary every protocol adapter implements: one client
// connection (or session) as the Hub sees it. There is no Read: the adapter
// owns its read loop.
type Subscriber interface {
	// Deliver hands one message of sub to the client. It is called with Hub
	// locks held, in per-subject order, and must never block: it queues the
	// message (encoding it with Message.Encoded so all subscribers share one
	// encoding) or, when the queue is full, applies the subscription's Mode.
	// snapshot marks the latest cached message sent on subscribe.
	Deliver(sub *Subscription, msg *Message, snapshot bool)
	// Reset tells the client that sub's history since the cursor it resumed
	// from cannot be recovered (Kafka's retention, a re-created topic, the
	// recovery bounds): some messages are missing, and live messages (after
	// a snapshot, when one was asked for) follow. It must not block.
	Reset(sub *Subscription, reason string)
	// Close disconnects the client with a reason. It must not block either.
	Close(reason Disconnect)
}

// Mode is a subscription's delivery mode.
type Mode uint8

const (
	// Guaranteed delivery: in order and nothing lost. A client too slow to keep
	// up is disconnected with DisconnectSlow and recovers on reconnect.
	Guaranteed Mode = iota
	// Standard delivery: under backpressure messages may be dropped, and every
	// drop is counted.
	Standard
)

func (m Mode) String() string {
	if m == Standard {
		return "standard"
	}
	return "guaranteed"
}

// SubscribeOptions tune one subscription.
type SubscribeOptions struct {
	Mode Mode
	// Snapshot asks for the latest cached message of each matching subject
	// before live messages. MQTT calls this the retained message.
	Snapshot bool
	// Tag is the adapter's own value, returned untouched in Subscription.Tag.
	Tag any
	// Since resumes the subscription: every message after the cursor is
	// delivered (from the cache, or read back from Kafka), then live ones,
	// with no gap and no duplicate; or, when that history cannot be had,
	// Subscriber.Reset is called. Partitions the cursor does not name are
	// not recovered. Subscriptions made without Since get their start cursor
	// from Hub.Frontier.
	Since *Cursor
}

// Subscription is one filter of one Subscriber registered in the Hub.
type Subscription struct {
	Filter     Filter
	Subscriber Subscriber
	Mode       Mode
	Tag        any
	// Start is the topic's frontier when the subscription was registered:
	// every message it gets is after it, every message before it was
	// dispatched before. Clients resume from it (advanced by the positions
	// of the messages they got); after a Reset too. HasStart is false when
	// the topic's partitions were not known yet.
	Start    Cursor
	HasStart bool

	state   *subjectState   // exact subscriptions: the subject they sit in
	batcher BatchSubscriber // Subscriber, when it takes batches
	index   int             // position in state.subs, for O(1) removal

	// Pattern subscriptions, while their snapshots are being sent, remember
	// the subjects that already got a live message so that no older snapshot
	// follows a newer live message.
	snapshotting atomic.Bool
	// A resuming subscription holds the live messages that arrive while its
	// history is being delivered, and delivers them after it.
	recovering atomic.Bool
	// skipping: the node was behind the resume cursor; skip holds, per
	// partition, the offset up to which live messages are the client's already.
	skipping atomic.Bool
	skip     *Cursor
	mu       sync.Mutex
	seenLive map[string]struct{}
	pending  []*Message
	overflow bool
	// pendingLimit bounds pending; past it the client is disconnected as a
	// slow consumer when the recovery ends (and can resume again).
	pendingLimit int
	removed      bool
}

// live delivers a message dispatched now, or holds it while the
// subscription's history is being recovered. Callers hold the subject's
// shard lock, so one subject's messages reach here in order.
func (s *Subscription) live(m *Message) {
	if s.recovering.Load() && s.hold(m) {
		return
	}
	if s.skipping.Load() && s.behind(m) {
		return
	}
	s.noteLive(m.Subject)
	s.Subscriber.Deliver(s, m, false)
}

// behind reports whether m is at or before the cursor the subscription
// resumed from: a node that lags behind the one the client came from
// dispatches messages the client already has.
func (s *Subscription) behind(m *Message) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.skip == nil || s.skip.Epoch != m.Pos.Epoch {
		return false
	}
	upTo, ok := s.skip.Offsets[m.Pos.Partition]
	if !ok {
		return false
	}
	if m.Pos.Offset <= upTo {
		return true
	}
	delete(s.skip.Offsets, m.Pos.Partition) // caught up on this partition
	if len(s.skip.Offsets) == 0 {
		s.skip = nil
		s.skipping.Store(false)
	}
	return false
}

// hold keeps m for after the recovery; false when the recovery ended meanwhile.
func (s *Subscription) hold(m *Message) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.recovering.Load() {
		return false
	}
	if len(s.pending) >= s.pendingLimit {
		s.overflow = true // the recovery ends with a slow-consumer disconnect
		return true
	}
	s.pending = append(s.pending, m)
	return true
}

// noteLive records, during the snapshot phase, that subject got a live message.
func (s *Subscription) noteLive(subject string) {
	if !s.snapshotting.Load() {
		return
	}
	s.mu.Lock()
	if s.seenLive != nil {
		s.seenLive[subject] = struct{}{}
	}
	s.mu.Unlock()
}

// deliverSnapshot delivers m as subject's snapshot unless the subject already
// got a live message or the subscription is gone. Holding s.mu across Deliver
// (which never blocks) means Unsubscribe, once returned, sees no snapshot.
func (s *Subscription) deliverSnapshot(subject string, m *Message) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, seen := s.seenLive[subject]; seen || s.removed {
		return
	}
	s.Subscriber.Deliver(s, m, true)
}
