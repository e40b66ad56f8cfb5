package sse

import (
	"log/slog"
	"sync"
	"time"

	"github.com/kedgehq/kedge/core"
)

// stream is one SSE connection: a core.Subscriber whose HTTP handler waits
// while a writer goroutine, started only when there is something to write,
// sends its events.
type stream struct {
	srv   *Server
	out   *writer
	log   *slog.Logger
	names []string // the subscriptions, in the order of the request
	fp    uint32   // fingerprint(names)

	// Guarded by out.mu, with the queue: the cursor of each subscription
	// (index = Subscription.Tag) and its start, used after a reset.
	cursors []cursor
	starts  []cursor
	// floors are the cursors a stream resumed from: a message at or below
	// one is one the client has, arriving again because this node is
	// behind the one that sent it (its frontier is older than the id).
	floors  []cursor
	scratch []byte // the id's binary form
	idLine  []byte // "id: …\n" being built

	subs     []*core.Subscription // set once subscribed; read by cleanup
	subsMu   sync.Mutex
	closeOne sync.Once

	beatMu  sync.Mutex
	beat    *time.Timer
	beatOff bool
}

// Deliver implements core.Subscriber: advance the subscription's cursor and
// queue the shared event with this connection's id, or apply the
// subscription's mode when the queue is full.
func (s *stream) Deliver(sub *core.Subscription, m *core.Message, snapshot bool) {
	var ev []byte
	if snapshot {
		ev = messageEvent(m, true)
	} else {
		ev = m.Encoded(slot, encoder)
	}
	i := sub.Tag.(int)
	w := s.out
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return
	}
	// The id is at most as long as it will be after advancing, plus the
	// room a new partition takes; checking first keeps the cursor exact.
	if !w.fits(len(ev) + len(s.idLine) + 32) {
		w.mu.Unlock()
		s.overflow(sub)
		return
	}
	if !snapshot && s.floors[i].has(m.Pos) {
		w.mu.Unlock()
		s.srv.stats.duplicates.Add(1)
		return
	}
	c := &s.cursors[i]
	if len(c.parts) == 0 || (!snapshot && c.epoch != m.Pos.Epoch) {
		// The topic's partitions were unknown when the subscription was
		// made, or the topic was re-created: start from where this node
		// began each partition, so partitions not seen yet are named too.
		if o, ok := s.srv.node.Origin(m.Topic); ok && o.Epoch == m.Pos.Epoch {
			*c = cursorFrom(o)
		}
	}
	if !snapshot || len(c.parts) == 0 || c.epoch == m.Pos.Epoch {
		// A snapshot is older than every message the subscription is
		// owed, so advancing by it skips only messages from before the
		// subscription; one of an older epoch says nothing about this one.
		c.advance(m.Pos)
	}
	id := w.putID(s.buildIDLine())
	w.push(id, ev)
	w.mu.Unlock()
	s.srv.stats.delivered.Add(1)
}

// overflow applies sub's mode to a message that does not fit the queue.
func (s *stream) overflow(sub *core.Subscription) {
	if sub.Mode == core.Standard {
		s.srv.stats.dropped.Add(1)
		return
	}
	s.srv.stats.slow.Add(1)
	s.closeWith(core.DisconnectSlow, false)
}

// buildIDLine renders "id: TOKEN\n" from the cursors into s.idLine. The id
// line comes first in each event: a client that, unlike a browser, hands
// on the incomplete last event of a broken connection then sees either no
// id or a complete one with incomplete data, never complete data with a
// truncated id.
// Callers hold out.mu.
func (s *stream) buildIDLine() []byte {
	b := append(s.idLine[:0], "id: "...)
	b, s.scratch = appendID(b, s.scratch, s.fp, s.cursors)
	s.idLine = append(b, '\n')
	return s.idLine
}

// Reset implements core.Subscriber: the history of sub since the client's
// id cannot be recovered. The subscription's cursor starts again from where
// the subscription was registered, and a reset event says so.
func (s *stream) Reset(sub *core.Subscription, reason string) {
	s.srv.stats.resets.Add(1)
	i := sub.Tag.(int)
	w := s.out
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return
	}
	s.cursors[i] = cursor{epoch: s.starts[i].epoch, parts: append([]partOffset(nil), s.starts[i].parts...)}
	s.floors[i] = cursor{}
	ev := simpleEvent(evReset, resetData(sub.Filter.Name, reason))
	line := s.buildIDLine()
	if !w.fits(len(ev) + len(line)) {
		w.mu.Unlock()
		s.srv.stats.slow.Add(1)
		s.closeWith(core.DisconnectSlow, false)
		return
	}
	w.push(w.putID(line), ev)
	w.mu.Unlock()
}

// Close implements core.Subscriber: end the stream with an error event
// saying why. It never blocks.
func (s *stream) Close(d core.Disconnect) { s.closeWith(d, false) }

// closeWith ends the stream with an error event after what is queued (or,
// with discard, instead of it). The event carries no id, so the client's
// Last-Event-ID stays that of the last event it got.
//
// A slow consumer's backlog is sent, not discarded: a client resuming a gap
// larger than the queue gets its history at once and overflows; sending
// what fit lets every reconnection make progress instead of failing the
// same way forever. The queue is at its bound already, so this holds no
// more memory, and sending it is bounded by the write timeout.
func (s *stream) closeWith(d core.Disconnect, discard bool) {
	s.closeOne.Do(func() {
		ev := simpleEvent(evError, errorEventData(d))
		w := s.out
		w.mu.Lock()
		if discard {
			w.discard()
		}
		w.finish(ev)
		w.mu.Unlock()
	})
}

// end stops the stream without a last event (the client went away).
func (s *stream) end() {
	s.closeOne.Do(func() {
		w := s.out
		w.mu.Lock()
		w.discard()
		w.finish(nil)
		w.mu.Unlock()
	})
}

// heartbeat queues a comment line every interval, which keeps proxies from
// closing an idle stream and finds clients that are gone.
func (s *stream) heartbeat() {
	s.beatMu.Lock()
	defer s.beatMu.Unlock()
	if s.beatOff {
		return
	}
	w := s.out
	w.mu.Lock()
	if w.fits(len(heartbeatComment)) {
		w.push(heartbeatComment)
	}
	w.mu.Unlock()
	s.beat.Reset(s.srv.cfg.HeartbeatInterval)
}

var heartbeatComment = []byte(":\n\n")

func (s *stream) startHeartbeat() {
	s.beatMu.Lock()
	defer s.beatMu.Unlock()
	s.beat = time.AfterFunc(s.srv.cfg.HeartbeatInterval, s.heartbeat)
}

func (s *stream) stopHeartbeat() {
	s.beatMu.Lock()
	defer s.beatMu.Unlock()
	s.beatOff = true
	if s.beat != nil {
		s.beat.Stop()
	}
}
