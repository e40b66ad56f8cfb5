package mqtt

import (
	"strings"
	"time"

	"github.com/kedgehq/kedge/core"
)

// Sessions by client identifier. Lock order: Server.mu, then session.mu;
// the Hub's locks come before session.mu (Deliver), and neither Server.mu
// nor session.mu is held while calling into the Hub.

// beginEstablish waits until no other connection of the client identifier
// is between OnSessionEstablish and OnSessionEstablished, and claims that
// span: two CONNECTs with one identifier must reach kedge's registry and
// mochi's session take-over in the same order, or the loser of mochi's
// race would stay connected outside its session. The span ends with
// CONNACK written (or the connection's end), so the wait is bounded by the
// write timeout.
func (s *Server) beginEstablish(c *conn, id string) {
	for {
		s.mu.Lock()
		ch, busy := s.establishing[id]
		if !busy {
			s.establishing[id] = make(chan struct{})
			c.establishing = id
			s.mu.Unlock()
			return
		}
		s.mu.Unlock()
		<-ch
	}
}

// endEstablish ends the span beginEstablish claimed, if any.
func (s *Server) endEstablish(c *conn) {
	if c.establishing == "" {
		return
	}
	s.mu.Lock()
	ch := s.establishing[c.establishing]
	delete(s.establishing, c.establishing)
	s.mu.Unlock()
	c.establishing = ""
	close(ch)
}

// takeoverGrace bounds how long a CONNECT waits for the connection its
// session is attached to to end by itself.
const takeoverGrace = 200 * time.Millisecond

// awaitPrevious gives the connection a client identifier's session is
// attached to a moment to end by itself before a new connection takes the
// session over. A client that acknowledges deliveries, sends DISCONNECT,
// closes and connects again at once may have its new CONNECT handled
// before the old connection's read loop has read those packets (each
// connection has its own); taking over at once would close the old
// connection with them unread, so acknowledged messages would be sent again
// and the will published. A connection that is still in use (another
// device with the same identifier, a half-open connection) is taken over
// after takeoverGrace. Called between beginEstablish and attach.
func (s *Server) awaitPrevious(id string) {
	deadline := time.Now().Add(takeoverGrace)
	for {
		s.mu.Lock()
		ss := s.sessions[id]
		attached := false
		if ss != nil {
			ss.mu.Lock()
			attached = ss.conn != nil
			ss.mu.Unlock()
		}
		s.mu.Unlock()
		if !attached || time.Now().After(deadline) {
			return
		}
		time.Sleep(time.Millisecond)
	}
}

// attach binds a connection to its client identifier's session and reports
// whether the session existed (CONNACK's session present flag). The
// existing session is resumed unless the client asks for a clean one, it
// has ended (reset), or the client now speaks another MQTT generation; a
// connection still attached to it is taken over (mochi disconnects it with
// "session taken over", 0x8E).
//
// With a sessions table (persist.go), a client without a session here
// resumes the table's record of it (rec, sr; see lookup) when the owner and
// MQTT generation match: its subscriptions are made again from their
// cursors. A new session's version is above every earlier one of the
// identifier, so its record (or tombstone) supersedes theirs everywhere.
func (s *Server) attach(c *conn, id string, clean bool, rec core.TableRecord, sr *sessionRecord) (*session, bool) {
	var stale *session
	var staleWill *will
	gen := rec.Version.Gen
	staleRecorded := false
	s.mu.Lock()
	ss := s.sessions[id]
	if ss != nil {
		ss.mu.Lock()
		// superseded: another node took the session over since (its
		// newer record is read, Watch has not ended this copy yet).
		superseded := ss.ver.Less(rec.Version) && rec.Version.Node != s.cfg.NodeName
		if clean || ss.ended || ss.v5 != c.v5 || ss.owner != c.owner() || superseded {
			gen = max(gen, ss.ver.Gen)
			staleRecorded = ss.persist || ss.recorded
			ss.conn = nil
			ss.moved = ss.moved || s.table != nil && !ss.ended // the new session writes the record
			if superseded {
				s.stats.movedAway.Add(1)
			}
			ss.endLocked()
			ss.mu.Unlock()
			staleWill = s.forget(ss)
			if superseded {
				staleWill = nil // the client came back elsewhere first
			}
			stale, ss = ss, nil
		}
	}
	present := ss != nil
	var restore *sessionRecord
	if ss == nil {
		ss = &session{srv: s, id: strings.Clone(id), v5: c.v5, owner: c.owner(),
			ver: core.Version{Gen: gen + 1, Node: s.cfg.NodeName}}
		if sr != nil && !clean && sr.Owner == ss.owner && sr.V5 == c.v5 {
			restore, present = sr, true
		}
		// An earlier session's record is superseded: by this one's, or by a tombstone.
		ss.recorded = rec.Value != nil || staleRecorded
		s.sessions[ss.id] = ss
		ss.mu.Lock()
	}
	ss.conn = c
	c.sess, c.present = ss, present
	c.resend = len(ss.inflight)
	s.online(ss)
	if s.table != nil {
		ss.keep = s.sessionExpiry(c.cl)
		if !c.v5 && clean {
			ss.keep = 0
		}
		ss.persist = ss.keep > 0 || restore != nil
		ss.drop = !ss.persist && ss.recorded
		ss.markLocked(true)
	}
	ss.mu.Unlock()
	s.mu.Unlock()
	if stale != nil {
		s.unsubscribeAll(stale)
	}
	if staleWill != nil {
		s.publishWill(staleWill)
	}
	if restore != nil {
		s.restore(c, ss, restore)
	}
	return ss, present
}

// online takes a session off the offline list: its expiry and a will
// waiting for its delay are cancelled (the client is back in time).
// Server.mu is held.
func (s *Server) online(ss *session) {
	if ss.offline != nil {
		s.offline.Remove(ss.offline)
		ss.offline = nil
	}
	if ss.expirer != nil {
		ss.expirer.Stop()
		ss.expirer = nil
	}
	if ss.willTimer != nil {
		ss.willTimer.Stop()
		ss.willTimer, ss.will = nil, nil
	}
}

// disconnected handles the end of a connection that had a session. The
// session ends when the client asked for no persistence (expire), when it
// was reset, when the server is shutting down, or when more is queued for
// it than it may keep while away; otherwise it waits for the client, for
// at most its expiry. abnormal means the connection ended without a
// DISCONNECT from the client: the will is published (after its delay, if
// the session waits for the client and the client does not come back in
// time), except when the server closed the connection to shut down.
func (s *Server) disconnected(c *conn, abnormal, expire bool, expiry time.Duration) {
	c.disconnected = true
	if c.expiry != nil {
		c.expiry.Stop()
	}
	if c.auth != nil {
		reason := "disconnect"
		if abnormal {
			reason = "connection lost"
		}
		c.auth.Disconnected(reason)
	}
	ss := c.sess
	w := c.will
	if !abnormal {
		w = nil
	}
	var victims []*session
	var endWill *will
	s.mu.Lock()
	if s.draining {
		w = nil
	}
	ss.mu.Lock()
	c.dead = true
	c.ctrl, c.ctrlBytes = nil, 0
	if ss.conn != c { // taken over by a new connection
		ended := ss.ended
		ss.mu.Unlock()
		s.mu.Unlock()
		if w != nil && (w.delay == 0 || ended) { // a will delay ends with the session
			s.publishWill(w)
		}
		return
	}
	ss.conn = nil
	end := expire || ss.ended || s.draining || !s.keepOffline(ss)
	if end {
		ss.endLocked()
		ss.mu.Unlock()
		endWill = s.forget(ss)
	} else {
		ss.keep = expiry
		ss.markLocked(true) // the final positions
		ss.mu.Unlock()
		s.goOffline(ss, expiry)
		if w != nil && w.delay > 0 {
			s.delayWill(ss, w, min(w.delay, expiry))
			w = nil
		}
		victims = s.trimOffline()
	}
	s.mu.Unlock()
	if end {
		s.unsubscribeAll(ss)
	}
	for _, v := range victims {
		s.stats.resets.Add(1)
		s.endSession(v)
	}
	for _, x := range []*will{w, endWill} {
		if x != nil {
			s.publishWill(x)
		}
	}
}

// keepOffline trims a session's queue to what it may keep while its client
// is away: QoS 0 messages are dropped first; when QoS 1 messages alone are
// too many, the session cannot be kept (false). session.mu is held.
func (s *Server) keepOffline(ss *session) bool {
	limit := s.cfg.SessionQueueSize
	if ss.queued <= limit {
		return true
	}
	n := ss.q.len()
	ss.queued -= ss.q.dropQoS0()
	s.stats.dropped.Add(int64(n - ss.q.len()))
	if ss.queued <= limit {
		return true
	}
	s.stats.resets.Add(1)
	return false
}

// goOffline puts a session on the offline list and starts its expiry.
// Server.mu is held.
func (s *Server) goOffline(ss *session, expiry time.Duration) {
	ss.expiry = expiry
	ss.offline = s.offline.PushBack(ss)
	var t *time.Timer
	t = time.AfterFunc(expiry, func() {
		s.mu.Lock()
		due := ss.expirer == t && ss.offline != nil
		s.mu.Unlock()
		if due {
			s.stats.expired.Add(1)
			s.endSession(ss)
		}
	})
	ss.expirer = t
}

// delayWill publishes w after delay unless the client comes back first or
// the session ends first (then it is published at once). Server.mu is held.
func (s *Server) delayWill(ss *session, w *will, delay time.Duration) {
	ss.will = w
	ss.willTimer = time.AfterFunc(delay, func() {
		s.mu.Lock()
		due := ss.will == w
		if due {
			ss.will, ss.willTimer = nil, nil
		}
		s.mu.Unlock()
		if due {
			s.publishWill(w)
		}
	})
}

// trimOffline returns the sessions past the offline bound, longest absent
// first, taken off the list. Server.mu is held.
func (s *Server) trimOffline() []*session {
	var out []*session
	for s.offline.Len() > s.cfg.MaxOfflineSessions {
		ss := s.offline.Remove(s.offline.Front()).(*session)
		ss.offline = nil
		out = append(out, ss)
	}
	return out
}

// forget removes a session from the registry and the offline list and
// stops its timers. It returns a will that was waiting for its delay: the
// session ends first, so it is to be published now. Server.mu is held.
func (s *Server) forget(ss *session) *will {
	if s.sessions[ss.id] == ss {
		delete(s.sessions, ss.id)
	}
	if ss.offline != nil {
		s.offline.Remove(ss.offline)
		ss.offline = nil
	}
	if ss.expirer != nil {
		ss.expirer.Stop()
		ss.expirer = nil
	}
	w := ss.will
	if ss.willTimer != nil && !ss.willTimer.Stop() {
		w = nil // it fired and is publishing
	}
	ss.will, ss.willTimer = nil, nil
	return w
}

// endSession ends a session from outside any lock: it leaves the registry,
// drops what it holds, and its subscriptions leave the Hub.
func (s *Server) endSession(ss *session) {
	s.mu.Lock()
	w := s.forget(ss)
	s.mu.Unlock()
	ss.mu.Lock()
	ss.endLocked()
	ss.mu.Unlock()
	s.unsubscribeAll(ss)
	if w != nil {
		s.publishWill(w)
	}
}

// unsubscribeAll removes a session's subscriptions from the Hub, once.
func (s *Server) unsubscribeAll(ss *session) {
	ss.mu.Lock()
	subs := ss.subs
	done := ss.unsubbed
	ss.subs, ss.unsubbed = nil, true
	ss.mu.Unlock()
	if done {
		return
	}
	for _, t := range subs {
		s.node.Hub.Unsubscribe(t.sub)
	}
	s.stats.subscriptions.Add(-int64(len(subs)))
}
