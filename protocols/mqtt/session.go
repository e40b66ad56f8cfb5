package mqtt

import (
	"container/list"
	"sync"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/kedgehq/kedge/core"
)

// session is one MQTT client identifier's state, the core.Subscriber the
// Hub delivers to. It outlives its connections when the client asked for a
// persistent session: its subscriptions stay in the Hub while the client is
// away, and what they deliver waits in the queue (bounded by
// Config.SessionQueueSize) until the client comes back.
type session struct {
	srv   *Server
	id    string
	v5    bool
	owner string // the identity that made it; another one cannot resume it

	mu       sync.Mutex
	conn     *conn                    // nil while the client is away
	subs     map[string]*subscription // by MQTT filter
	q        fifo                     // deliveries not written yet
	queued   int                      // bytes in q
	inflight []sent                   // QoS 1 deliveries written and not acknowledged, in order
	nextID   uint16
	ended    bool // reset, expired or cleaned: the Hub's deliveries are ignored
	unsubbed bool // its subscriptions have been removed from the Hub

	// Guarded by srv.mu.
	expiry    time.Duration // how long it is kept while the client is away
	offline   *list.Element // in srv.offline while the client is away
	expirer   *time.Timer
	will      *will // published when willTimer fires, unless the client is back
	willTimer *time.Timer

	// Its record in Server.table (persist.go); guarded by mu.
	ver      core.Version  // the version its records carry
	keep     time.Duration // how long it is kept while the client is away (the record's expiry)
	persist  bool          // its record is kept up to date
	recorded bool          // a record of it may be in the table: its end writes a tombstone
	drop     bool          // a tombstone is to be written
	moved    bool          // another node (or a newer session here) has it: write nothing more
	dirty    bool          // in the checkpoint set
	final    []byte        // its last record, encoded as it ended while the server shut down
	wrote    time.Time     // when its record was last encoded
}

// subscription is one MQTT subscription of a session: the core
// subscription's Tag.
type subscription struct {
	filter string
	qos    byte
	sub    *core.Subscription
	topic  string
	reset  string // guarded by session.mu: to be told on the next message (MQTT 5)
	// have is what the client has of this subscription (guarded by
	// session.mu): the cursor it started from, advanced by every QoS 1
	// message it acknowledged and every QoS 0 message written to it.
	have core.Cursor
}

// delivery is one message waiting to be written.
type delivery struct {
	enc    []byte        // shared encoding (see encode.go)
	sub    *subscription // the subscription it is for
	qos    byte
	retain bool // a snapshot: MQTT's retained message
	pos    core.Position
}

// deliveryOverhead approximates a queued delivery's own memory beside enc.
const deliveryOverhead = 40

func (d delivery) size() int { return len(d.enc) + deliveryOverhead }

// sent is a QoS 1 delivery waiting for the client's PUBACK.
type sent struct {
	id uint16
	d  delivery
}

// Deliver implements core.Subscriber. It never blocks: the message is
// queued, or, when the queue is full, dropped (QoS 0: core.Standard) or the
// session is reset (QoS 1: core.Guaranteed — nothing may be lost silently).
func (s *session) Deliver(sub *core.Subscription, m *core.Message, snapshot bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.deliverLocked(sub, m, snapshot)
}

// DeliverBatch implements core.BatchSubscriber: Deliver for each of a
// subscription's live messages, in order, under one lock.
func (s *session) DeliverBatch(sub *core.Subscription, msgs []*core.Message) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, m := range msgs {
		s.deliverLocked(sub, m, false)
	}
}

func (s *session) deliverLocked(sub *core.Subscription, m *core.Message, snapshot bool) {
	t := sub.Tag.(*subscription)
	st := &s.srv.stats
	if s.ended || snapshot && len(m.Payload) == 0 {
		return // an empty retained message means "no retained message" in MQTT
	}
	enc := shared(m, s.v5)
	if enc == nil {
		st.undeliverable.Add(1)
		return
	}
	if t.reset != "" && s.v5 {
		if e := encodePublish(m, true, t.reset); e != nil {
			enc = e
		}
		t.reset = ""
	}
	d := delivery{enc: enc, sub: t, qos: t.qos, retain: snapshot, pos: m.Pos}
	limit := s.srv.cfg.SessionQueueSize
	if s.conn != nil {
		limit = s.srv.cfg.WriteQueueSize
	}
	if s.queued > 0 && s.queued+d.size() > limit { // one message always fits
		if sub.Mode == core.Standard {
			st.dropped.Add(1)
			return
		}
		s.overflow()
		return
	}
	s.q.push(d)
	s.queued += d.size()
	st.delivered.Add(1)
	if s.conn != nil {
		s.conn.kick()
	}
}

// overflow resets the session when a QoS 1 message does not fit its queue:
// a connected client is disconnected as a slow consumer, and the session
// ends so that the client, on reconnecting, learns from CONNACK's session
// present flag (0) that its state is gone. Called with s.mu held, under Hub
// locks: the Hub subscriptions are removed by another goroutine.
func (s *session) overflow() {
	st := &s.srv.stats
	if c := s.conn; c != nil {
		st.slow.Add(1)
		c.abortLocked(reasonFor(core.DisconnectSlow))
	}
	st.resets.Add(1)
	s.endLocked()
	s.srv.async(func() { s.srv.endSession(s) })
}

// Reset implements core.Subscriber: the history of sub since the client's
// cursor could not be recovered. An MQTT 5 client finds the reason in the
// kedge-reset user property of the next message of that subscription;
// MQTT 3.1.1 has no way to say it, so it is only counted.
func (s *session) Reset(sub *core.Subscription, reason string) {
	s.srv.stats.subResets.Add(1)
	if reason == "" {
		reason = "history unavailable"
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	t := sub.Tag.(*subscription)
	if s.v5 {
		t.reset = reason
	}
	if s.srv.table != nil { // what follows is live from its start, after any snapshot
		t.have = startOf(sub)
	}
}

// Close implements core.Subscriber: disconnect the client with a reason. A
// slow consumer's session is reset, since its messages are lost.
func (s *session) Close(d core.Disconnect) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if d == core.DisconnectSlow && !s.ended {
		s.overflow()
		return
	}
	if s.conn != nil {
		s.conn.abortLocked(reasonFor(d))
	}
}

// endLocked marks the session ended and drops what it holds; s.mu is held.
func (s *session) endLocked() {
	if !s.ended {
		s.retireLocked()
	}
	s.ended = true
	s.q.clear()
	s.queued = 0
	s.inflight = nil
}

// nextPacketID returns an identifier no unacknowledged delivery holds.
func (s *session) nextPacketID() uint16 {
	for {
		s.nextID++
		if s.nextID == 0 {
			s.nextID = 1
		}
		if !s.inFlight(s.nextID) {
			return s.nextID
		}
	}
}

func (s *session) inFlight(id uint16) bool {
	for i := range s.inflight {
		if s.inflight[i].id == id {
			return true
		}
	}
	return false
}

// acked handles the client's PUBACK of a delivery.
func (s *session) acked(c *conn, id uint16) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range s.inflight {
		if s.inflight[i].id != id {
			continue
		}
		if s.conn == c && i >= len(s.inflight)-c.resend {
			c.resend-- // acknowledged before it was sent again
		}
		if d := s.inflight[i].d; !d.retain {
			s.advanceLocked(d.sub, d.pos)
		}
		s.inflight = append(s.inflight[:i], s.inflight[i+1:]...)
		if s.conn == c {
			c.kick()
		}
		return
	}
}

// fifo is a queue of deliveries in a ring buffer. It gives its memory back
// once drained, so an idle client holds none.
type fifo struct {
	buf        []delivery
	head, size int
}

func (f *fifo) len() int { return f.size }

func (f *fifo) push(d delivery) {
	if f.size == len(f.buf) {
		f.grow()
	}
	f.buf[(f.head+f.size)%len(f.buf)] = d
	f.size++
}

func (f *fifo) grow() {
	n := 2 * len(f.buf)
	if n == 0 {
		n = 8
	}
	buf := make([]delivery, n)
	for i := range f.size {
		buf[i] = f.buf[(f.head+i)%len(f.buf)]
	}
	f.buf, f.head = buf, 0
}

func (f *fifo) front() *delivery { return &f.buf[f.head] }

func (f *fifo) pop() delivery {
	d := f.buf[f.head]
	f.buf[f.head] = delivery{}
	f.head = (f.head + 1) % len(f.buf)
	f.size--
	if f.size == 0 && len(f.buf) > 64 {
		f.buf, f.head = nil, 0
	}
	return d
}

// drop removes the deliveries for which gone is true and returns the bytes
// freed.
func (f *fifo) drop(gone func(*delivery) bool) int {
	freed, kept := 0, fifo{}
	for f.size > 0 {
		d := f.pop()
		if gone(&d) {
			freed += d.size()
			continue
		}
		kept.push(d)
	}
	*f = kept
	return freed
}

// dropQoS0 removes the QoS 0 deliveries (for a session going offline with
// more queued than it may keep) and returns the bytes freed.
func (f *fifo) dropQoS0() int { return f.drop(func(d *delivery) bool { return d.qos == 0 }) }

func (f *fifo) clear() { *f = fifo{} }

// reasonFor maps a core disconnect reason onto an MQTT 5 DISCONNECT reason code.
func reasonFor(d core.Disconnect) packets.Code {
	var code packets.Code
	switch d.Code {
	case core.DisconnectShutdown.Code:
		code = packets.ErrServerShuttingDown
	case core.DisconnectSlow.Code:
		code = packets.ErrQuotaExceeded
	case core.DisconnectNoPong.Code:
		code = packets.ErrKeepAliveTimeout
	case core.DisconnectInsufficient.Code:
		code = packets.ErrServerBusy
	case core.DisconnectBadRequest.Code:
		code = packets.ErrProtocolViolation
	case core.DisconnectMessageTooBig.Code:
		code = packets.ErrPacketTooLarge
	case core.DisconnectUnauthorized.Code:
		code = packets.ErrNotAuthorized
	default:
		code = packets.ErrUnspecifiedError
	}
	code.Reason = d.Reason
	return code
}
