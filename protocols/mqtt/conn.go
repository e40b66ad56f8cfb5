package mqtt

import (
	"sync"
	"time"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/kedgehq/kedge/core"
)

// conn is one network connection of an MQTT client. mochi owns its read
// loop; kedge owns what it writes beside mochi's own packets: deliveries
// (from the session's queue) and publish acknowledgements (from Kafka's
// answers), drained by a writer goroutine that exists only while there is
// something to write.
type conn struct {
	srv *Server
	nc  *netConn
	cl  *mochi.Client // set by OnConnect
	v5  bool

	// sess is set once by OnSessionEstablish, before anything is written.
	sess    *session
	present bool // the session existed: CONNACK's session present flag

	auth   *core.Session // who the client is; set by OnConnect
	expiry *time.Timer   // closes the connection when its credentials expire

	refused error        // a connection limit refused it: OnConnect answers CONNACK with the reason
	rate    *core.Bucket // publish rate; nil: unbounded

	// Guarded by sess.mu.
	ctrl      [][]byte // acknowledgements and DISCONNECT, before deliveries
	ctrlBytes int
	writing   bool // the writer goroutine runs
	held      bool // a SUBSCRIBE is being handled: deliveries wait for its SUBACK
	stopped   bool // the server shuts down: no more deliveries
	finishing bool // close once ctrl is written; no more deliveries
	dead      bool // closed, or writing failed
	resend    int  // session.inflight entries to write again (DUP) first
	window    int  // QoS 1 deliveries in flight at most
	maxOut    int  // the client's Maximum Packet Size; 0: none
	problem   bool // MQTT 5: reason strings may be sent

	// The writer's batch; used by the running writer only.
	iov  [][]byte
	head []byte

	pub publishes

	// Used by the read loop (mochi's hooks) only.
	suback, unsuback *ackCodes
	subscribing      bool   // a SUBSCRIBE holds deliveries
	establishing     string // the client identifier whose CONNECT this connection is answering
	will             *will
	disconnected     bool // OnDisconnect ran
}

// ackCodes are the reason codes kedge decided for a SUBSCRIBE or
// UNSUBSCRIBE; OnPacketEncode puts them into mochi's SUBACK or UNSUBACK.
type ackCodes struct {
	id     uint16
	codes  []byte // keepCode: mochi's code stands ($ filters)
	reason string
}

// keepCode marks a filter whose reason code mochi decides.
const keepCode = 0xFF

// maxBatch bounds the bytes one write takes from the session's queue.
const maxBatch = 1 << 20

// kick starts the writer if there is something it may write. sess.mu is held.
func (c *conn) kick() {
	if c.writing || c.dead || !c.pending() {
		return
	}
	c.writing = true
	c.srv.writers.Add(1)
	go c.run()
}

// pending reports whether the writer has something to write now.
func (c *conn) pending() bool {
	if len(c.ctrl) > 0 || c.finishing {
		return true
	}
	s := c.sess
	if c.held || c.stopped || s.conn != c {
		return false
	}
	if c.resend > 0 {
		return true
	}
	return s.q.len() > 0 && (s.q.front().qos == 0 || len(s.inflight) < c.window)
}

// run writes batches until nothing is left, then closes the connection if
// it is finishing.
func (c *conn) run() {
	defer c.srv.writers.Done()
	s := c.sess
	for {
		s.mu.Lock()
		c.collect()
		if len(c.iov) == 0 {
			c.writing = false
			closing := c.finishing && !c.dead
			if closing {
				c.dead = true
			}
			s.mu.Unlock()
			if closing {
				_ = c.nc.Close()
			}
			return
		}
		s.mu.Unlock()
		err := c.nc.writeBatch(c.iov)
		clear(c.iov)
		c.iov, c.head = c.iov[:0], c.head[:0]
		if err != nil {
			s.mu.Lock()
			c.dead, c.writing = true, false
			c.ctrl, c.ctrlBytes = nil, 0
			s.mu.Unlock()
			c.nc.writeFailed(err)
			c.srv.stats.writeErrors.Add(1)
			return
		}
	}
}

// collect fills the batch: control packets, deliveries to write again after
// a reconnect, then queued deliveries while the inflight window allows.
// sess.mu is held.
func (c *conn) collect() {
	c.iov = append(c.iov, c.ctrl...)
	clear(c.ctrl)
	c.ctrl, c.ctrlBytes = c.ctrl[:0], 0
	s := c.sess
	if c.finishing || c.dead || c.held || c.stopped || s.conn != c {
		return
	}
	c.resend = min(c.resend, len(s.inflight))
	n := 0
	for ; c.resend > 0 && n < maxBatch; c.resend-- {
		e := s.inflight[len(s.inflight)-c.resend]
		n += c.addPublish(e.d, e.id, true)
	}
	for n < maxBatch && s.q.len() > 0 {
		d := s.q.front()
		if d.qos > 0 && len(s.inflight) >= c.window {
			break
		}
		dd := s.q.pop()
		s.queued -= dd.size()
		if !dd.retain && (dd.qos == 0 || c.maxOut > 0 && publishSize(dd.enc, dd.qos) > c.maxOut) {
			s.advanceLocked(dd.sub, dd.pos) // QoS 0: the client has what was written
		}
		if c.maxOut > 0 && publishSize(dd.enc, dd.qos) > c.maxOut {
			c.srv.stats.tooLarge.Add(1) // MQTT 5: discarded as if delivered
			continue
		}
		var id uint16
		if dd.qos > 0 {
			id = s.nextPacketID()
			s.inflight = append(s.inflight, sent{id, dd})
		}
		n += c.addPublish(dd, id, false)
	}
}

// addPublish appends one PUBLISH to the batch and returns its size.
func (c *conn) addPublish(d delivery, id uint16, dup bool) int {
	var part, rest []byte
	c.head, part, rest = appendPublishHead(c.head, d.enc, d.qos, id, dup, d.retain)
	c.iov = append(c.iov, part, rest)
	return len(part) + len(rest)
}

// sendLocked queues a control packet. Like deliveries, control packets count
// against the write queue bound: a client that publishes but never reads
// its acknowledgements is a slow consumer too. sess.mu is held.
func (c *conn) sendLocked(p []byte) {
	if c.dead || c.finishing {
		return
	}
	if c.ctrlBytes+len(p) > c.srv.cfg.WriteQueueSize {
		c.srv.stats.slow.Add(1)
		c.abortLocked(reasonFor(core.DisconnectSlow))
		return
	}
	c.ctrl = append(c.ctrl, p)
	c.ctrlBytes += len(p)
	c.kick()
}

// send queues a control packet.
func (c *conn) send(p []byte) {
	c.sess.mu.Lock()
	defer c.sess.mu.Unlock()
	c.sendLocked(p)
}

// abortLocked disconnects the client: an MQTT 5 client gets a DISCONNECT
// with the reason first. Acknowledgements already queued still go out.
// sess.mu is held.
func (c *conn) abortLocked(code packets.Code) {
	if c.dead || c.finishing {
		return
	}
	if c.v5 {
		p := disconnectPacket(code, c.problem)
		c.ctrl = append(c.ctrl, p)
		c.ctrlBytes += len(p)
	}
	c.finishing = true
	c.kick()
}

// abort disconnects the client with a reason. Only goroutines that know
// the session is set (the read loop after CONNECT, Kafka's answers) call it.
func (c *conn) abort(code packets.Code) { c.abortWith(c.sess, code) }

// abortWith disconnects the client of sess; without a session yet (before
// CONNECT is handled) it closes the connection.
func (c *conn) abortWith(sess *session, code packets.Code) {
	if sess == nil {
		_ = c.nc.Close()
		return
	}
	sess.mu.Lock()
	defer sess.mu.Unlock()
	c.abortLocked(code)
}

// hold makes deliveries wait, so that a SUBACK precedes the retained
// messages of the subscriptions it acknowledges.
func (c *conn) hold() {
	c.sess.mu.Lock()
	c.held = true
	c.sess.mu.Unlock()
}

func (c *conn) release() {
	c.sess.mu.Lock()
	c.held = false
	c.kick()
	c.sess.mu.Unlock()
}

// connOf returns kedge's connection of a mochi client.
func connOf(cl *mochi.Client) *conn {
	if nc, ok := cl.Net.Conn.(*netConn); ok {
		return nc.conn
	}
	return nil
}

// publishes tracks a connection's publishes waiting for Kafka.
type publishes struct {
	mu       sync.Mutex
	slots    chan struct{}       // one token per publish waiting for Kafka (QoS 1 and 2)
	ids      map[uint16]struct{} // their packet identifiers, to spot re-sent duplicates
	qos      int                 // QoS 1 and 2 publishes waiting
	wg       sync.WaitGroup
	draining bool
}

// ackFor builds a publish's acknowledgement: PUBACK for QoS 1, PUBREC for QoS 2.
func ackFor(qos byte, id uint16, v5 bool, code packets.Code, reason bool) []byte {
	typ := byte(typePuback)
	if qos == 2 {
		typ = typePubrec
	}
	return ackPacket(typ, id, v5, code, reason)
}
