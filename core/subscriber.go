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
}

// Subscription is one filter of one Subscriber registered in the Hub.
type Subscription struct {
	Filter     Filter
	Subscriber Subscriber
	Mode       Mode
	Tag        any

	state *subjectState // exact subscriptions: the subject they sit in
	index int           // position in state.subs, for O(1) removal

	// Pattern subscriptions, while their snapshots are being sent, remember
	// the subjects that already got a live message so that no older snapshot
	// follows a newer live message.
	snapshotting atomic.Bool
	mu           sync.Mutex
	seenLive     map[string]struct{}
	removed      bool
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
