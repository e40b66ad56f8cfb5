package mqtt

import (
	"context"
	"encoding/json"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/kedgehq/kedge/auth"
	"github.com/kedgehq/kedge/core"
)

// Sessions that outlive their node. With Config.Sessions set, every
// persistent session keeps a record in that table (a compacted Kafka
// topic), keyed by client identifier: who owns it, its MQTT generation and
// expiry, and for each subscription its filter, QoS and a cursor of what
// the client has — for QoS 1 what it acknowledged, for QoS 0 what was
// written to it. Records are written when the subscriptions change, when
// the client leaves (the exact positions), when the server shuts down, and
// at most every checkpointInterval while positions move; never one write
// per message. A session's end (clean start, expiry, reset) writes a
// tombstone.
//
// A client that connects without clean start makes the node catch up with
// the table. A session of this node that the table shows taken over since
// by another node ends here. Without a session here, the node takes the
// table's over when the record's owner and MQTT generation match: it
// subscribes each filter from its cursor — the client gets everything
// after it, from the cache or read back from Kafka, then live messages —
// and answers session present 1 once its record, written with a higher
// version, is in Kafka. That record tells the node that held the session
// (Table.Watch) to end its copy, disconnecting a client still connected
// there with "session taken over".

// sessionRecord is a session's value in the table.
type sessionRecord struct {
	Owner  string      `json:"owner"`
	V5     bool        `json:"v5"`
	Expiry int64       `json:"expiry"`           // seconds kept while the client is away
	Online bool        `json:"online,omitempty"` // its client was connected when it was written
	Subs   []recordSub `json:"subs"`
}

type recordSub struct {
	Filter string `json:"f"`
	QoS    byte   `json:"q"`
	Cursor string `json:"c"`
}

const (
	// checkpointInterval is how often moved positions are written.
	checkpointInterval = time.Second
	// maxRecordSize bounds a record: Kafka's default largest message is 1 MB.
	maxRecordSize = 900 << 10
	// onlineGrace bounds how long a CONNECT waits for the node whose record
	// says the client is still connected there to write its final positions
	// (a client that left one node and came to another at once).
	onlineGrace = time.Second
	// shutdownAckWait bounds how long shutdown waits for the PUBACKs of
	// QoS 1 messages in flight, so the positions it writes are exact.
	shutdownAckWait = 2 * time.Second
)

// checkpoints is the set of sessions whose records are to be written.
type checkpoints struct {
	mu    sync.Mutex
	dirty map[*session]struct{}
	wake  chan struct{}
	stop  chan struct{}
	done  chan struct{}
	// flushMu makes one flush at a time, so one key's records reach the
	// table in the order they were encoded.
	flushMu sync.Mutex
	// last closes when every record handed to the table so far is
	// written (or failed); guarded by flushMu.
	last chan struct{}
}

func (s *Server) startCheckpoints() {
	s.ck = checkpoints{dirty: make(map[*session]struct{}), wake: make(chan struct{}, 1),
		stop: make(chan struct{}), done: make(chan struct{})}
	s.table.Watch(s.watched)
	go s.checkpointLoop()
}

func (s *Server) checkpointLoop() {
	defer close(s.ck.done)
	tick := time.NewTicker(checkpointInterval)
	defer tick.Stop()
	for n := 1; ; n++ {
		select {
		case <-s.ck.stop:
			return
		case <-s.ck.wake:
		case <-tick.C:
			if n%30 == 0 {
				s.refresh()
			}
		}
		s.flush()
	}
}

// stopCheckpoints writes what is left and stops the loop, bounded by ctx.
func (s *Server) stopCheckpoints(ctx context.Context) {
	if s.table == nil {
		return
	}
	s.flushWait(ctx)
	select {
	case <-s.ck.stop:
	default:
		close(s.ck.stop)
	}
	<-s.ck.done
}

// flushWait writes the dirty records and waits (bounded by ctx) for Kafka's answer.
func (s *Server) flushWait(ctx context.Context) {
	select {
	case <-s.flush():
	case <-ctx.Done():
	}
}

// refresh marks the connected persistent sessions whose record is older
// than half their expiry, so a record outlives a node that dies.
func (s *Server) refresh() {
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, ss := range s.sessions {
		ss.mu.Lock()
		if ss.persist && !ss.ended && ss.conn != nil && now.Sub(ss.wrote) > ss.keep/2 {
			ss.markLocked(false)
		}
		ss.mu.Unlock()
	}
}

// markLocked puts the session into the next checkpoint; now wakes the
// writer at once (a change of subscriptions, a departure), otherwise the
// next tick writes it (positions moved). session.mu is held.
func (ss *session) markLocked(now bool) {
	s := ss.srv
	if s.table == nil || ss.moved || !ss.persist && !ss.drop && ss.final == nil {
		return
	}
	if !ss.dirty {
		ss.dirty = true
		s.ck.mu.Lock()
		s.ck.dirty[ss] = struct{}{}
		s.ck.mu.Unlock()
	}
	if now {
		select {
		case s.ck.wake <- struct{}{}:
		default:
		}
	}
}

// retireLocked decides what the table keeps of a session that ends: while
// the server shuts down, its last record (the client may resume on another
// node); otherwise a tombstone, unless another session has it now.
// session.mu is held, the session not ended yet.
func (ss *session) retireLocked() {
	s := ss.srv
	if s.table == nil || ss.moved {
		return
	}
	if s.closing.Load() {
		if ss.persist {
			if v, ok := ss.encodeLocked(time.Now(), false); ok {
				ss.final = v
			}
			ss.markLocked(true)
		}
		ss.persist = false
		return
	}
	if ss.persist || ss.recorded {
		ss.drop = true
		ss.persist, ss.final = false, nil
		ss.markLocked(true)
	}
}

// advanceLocked records that the client has a message of t. session.mu is held.
func (ss *session) advanceLocked(t *subscription, p core.Position) {
	if ss.srv.table == nil {
		return
	}
	if t.have.New || t.have.Offsets == nil {
		// Subscribed before the topic was known here: everything of the
		// topic is after the subscription.
		if front, ok := ss.srv.node.Hub.Frontier(t.topic); ok && front.Epoch == p.Epoch {
			t.have = front.FromStart()
		}
	}
	t.have.Advance(p)
	ss.markLocked(false)
}

// startOf is the cursor a subscription starts from: its topic's frontier
// when it was registered, or "new" when the topic was not known.
func startOf(sub *core.Subscription) core.Cursor {
	if sub.HasStart {
		return cloneCursor(sub.Start)
	}
	return core.NewTopicCursor
}

func cloneCursor(c core.Cursor) core.Cursor {
	c.Offsets = maps.Clone(c.Offsets)
	return c
}

// cursorLocked is what the client has of t: t.have, held back before any
// QoS 1 message of t it has not acknowledged yet. session.mu is held.
func (ss *session) cursorLocked(t *subscription) string {
	if t.have.New || t.have.Offsets == nil {
		return core.NewTopicCursor.String()
	}
	c := cloneCursor(t.have)
	for _, e := range ss.inflight {
		d := e.d
		if d.sub != t || d.retain || d.pos.Epoch != c.Epoch {
			continue
		}
		if off, ok := c.Offsets[d.pos.Partition]; ok && off >= d.pos.Offset {
			c.Offsets[d.pos.Partition] = d.pos.Offset - 1
		}
	}
	return c.String()
}

// encodeLocked encodes the session's record. session.mu is held.
func (ss *session) encodeLocked(now time.Time, online bool) ([]byte, bool) {
	r := sessionRecord{Owner: ss.owner, V5: ss.v5, Expiry: int64(ss.keep / time.Second), Online: online,
		Subs: make([]recordSub, 0, len(ss.subs))}
	for _, f := range slices.Sorted(maps.Keys(ss.subs)) {
		t := ss.subs[f]
		r.Subs = append(r.Subs, recordSub{Filter: f, QoS: t.qos, Cursor: ss.cursorLocked(t)})
	}
	v, err := json.Marshal(r)
	if err != nil || len(v) > maxRecordSize {
		ss.srv.stats.checkpointErrors.Add(1)
		ss.srv.log.Warn("mqtt: session record too large for the sessions topic; the session stays on this node",
			"client", ss.id, "bytes", len(v))
		return nil, false
	}
	ss.wrote = now
	return v, true
}

// recordLocked returns the record to write for a session taken from the
// checkpoint set. session.mu is held.
func (ss *session) recordLocked(now time.Time) (core.TableRecord, bool) {
	ss.dirty = false
	rec := core.TableRecord{Key: ss.id, Version: ss.ver}
	switch {
	case ss.moved:
		return rec, false
	case ss.drop:
		ss.drop, ss.recorded = false, false
		return rec, true
	case ss.final != nil:
		rec.Value, ss.final = ss.final, nil
	case !ss.persist || ss.ended:
		return rec, false
	default:
		v, ok := ss.encodeLocked(now, ss.conn != nil && !ss.srv.closing.Load())
		if !ok {
			return rec, false
		}
		rec.Value = v
	}
	ss.recorded = true
	rec.Expires = now.Add(max(ss.keep, time.Millisecond))
	return rec, true
}

// flush writes the records of the sessions marked since the last flush,
// and returns a channel closed when Kafka answered for them and for every
// record written before.
func (s *Server) flush() <-chan struct{} {
	if s.table == nil {
		done := make(chan struct{})
		close(done)
		return done
	}
	s.ck.flushMu.Lock()
	defer s.ck.flushMu.Unlock()
	prev := s.ck.last
	if prev == nil {
		prev = make(chan struct{})
		close(prev)
	}
	s.ck.mu.Lock()
	batch := s.ck.dirty
	s.ck.dirty = make(map[*session]struct{})
	s.ck.mu.Unlock()
	now := time.Now()
	recs := make([]core.TableRecord, 0, len(batch))
	for ss := range batch {
		ss.mu.Lock()
		if rec, ok := ss.recordLocked(now); ok {
			recs = append(recs, rec)
		}
		ss.mu.Unlock()
	}
	if len(recs) == 0 {
		return prev
	}
	done := make(chan struct{})
	s.ck.last = done
	s.table.Put(recs, func(err error) {
		if err != nil {
			s.stats.checkpointErrors.Add(int64(len(recs)))
			s.log.Warn("mqtt: writing session records failed", "records", len(recs), "err", err)
		} else {
			s.stats.checkpoints.Add(int64(len(recs)))
		}
		go func() { // after the earlier writes' answers
			<-prev
			close(done)
		}()
	})
	return done
}

// durable writes a session's record before CONNACK (bounded by the
// connect timeout): a client that leaves at once for another node is then
// resumed there from this session, not from an older one.
func (s *Server) durable(ctx context.Context, ss *session) {
	if s.table == nil {
		return
	}
	ss.mu.Lock()
	involved := ss.persist || ss.recorded || ss.drop
	ss.mu.Unlock()
	if !involved {
		return
	}
	s.flushWait(ctx)
}

// watched sees every record that becomes its key's newest: a newer version
// of a session this node holds means another node has taken it over, and
// this node's copy ends (its record is the other node's now). A client
// still connected here with the same identifier is disconnected with
// "session taken over", as for a second connection on one node.
func (s *Server) watched(r core.TableRecord) {
	if r.Version.Node == s.cfg.NodeName {
		return
	}
	s.mu.Lock()
	ss := s.sessions[r.Key]
	if ss == nil {
		s.mu.Unlock()
		return
	}
	ss.mu.Lock()
	if ss.moved || !ss.ver.Less(r.Version) {
		ss.mu.Unlock()
		s.mu.Unlock()
		return
	}
	ss.moved = true
	if c := ss.conn; c != nil {
		ss.conn = nil
		c.abortLocked(packets.ErrSessionTakenOver)
	}
	ss.endLocked()
	ss.mu.Unlock()
	_ = s.forget(ss) // a will waiting for its delay: the client is back, elsewhere
	s.mu.Unlock()
	s.stats.movedAway.Add(1)
	s.unsubscribeAll(ss) // no lock held here: the table's reading goroutine
}

// lookup returns the table's record of a client identifier, and its
// session when it is one that may be resumed (not a tombstone, not
// expired). With catchUp it first reads the table up to its end (bounded
// by ctx: the connect timeout); when the record says its client is connected
// to another node, it gives that node up to onlineGrace to write the
// client's final positions.
func (s *Server) lookup(ctx context.Context, id string, catchUp bool) (core.TableRecord, *sessionRecord) {
	if s.table == nil {
		return core.TableRecord{}, nil
	}
	if !catchUp {
		return s.decode(id)
	}
	if err := s.table.CatchUp(ctx); err != nil {
		s.log.Warn("mqtt: the sessions topic could not be read up to its end; using what was read", "client", id, "err", err)
		return s.decode(id)
	}
	deadline := time.Now().Add(onlineGrace)
	for {
		rec, sr := s.decode(id)
		if sr == nil || !sr.Online || rec.Version.Node == s.cfg.NodeName || time.Now().After(deadline) {
			return rec, sr
		}
		select {
		case <-time.After(20 * time.Millisecond):
		case <-ctx.Done():
			return rec, sr
		}
		if s.table.CatchUp(ctx) != nil {
			return s.decode(id)
		}
	}
}

func (s *Server) decode(id string) (core.TableRecord, *sessionRecord) {
	rec, ok := s.table.Get(id)
	if !ok {
		return core.TableRecord{}, nil
	}
	if rec.Value == nil || !rec.Expires.IsZero() && rec.Expires.Before(time.Now()) {
		return rec, nil
	}
	var sr sessionRecord
	if err := json.Unmarshal(rec.Value, &sr); err != nil {
		s.log.Warn("mqtt: unreadable session record ignored", "client", id, "err", err)
		return rec, nil
	}
	return rec, &sr
}

// restore subscribes a session taken over from the table to the record's
// filters, each from its cursor. Filters the client may no longer use
// (authorization, exposure) are left out. Called before CONNACK, with the
// connection held.
func (s *Server) restore(c *conn, ss *session, sr *sessionRecord) {
	s.stats.takenOver.Add(1)
	n := 0
	for _, rs := range sr.Subs {
		if n >= s.cfg.MaxSubscriptions {
			break
		}
		filter, terr := parseFilter(s.node, rs.Filter)
		if terr != nil || c.authorize(auth.Subscribe, filter.Name) != nil {
			continue
		}
		qos := min(rs.QoS, 1)
		mode := core.Guaranteed
		if qos == 0 {
			mode = core.Standard
		}
		t := &subscription{filter: rs.Filter, qos: qos, topic: filter.Topic}
		// Snapshot: after a reset (the history is gone), the latest message
		// of each subject, as for a new subscription.
		opts := core.SubscribeOptions{Mode: mode, Tag: t, Snapshot: true}
		since, err := core.ParseCursor(rs.Cursor)
		if err == nil && since.New {
			if front, ok := s.node.Hub.Frontier(filter.Topic); ok {
				since = front.FromStart()
			}
		}
		if err == nil && !since.New {
			t.have = cloneCursor(since)
			opts.Since = &since
		}
		t.sub = s.node.Subscribe(ss, filter, opts)
		ss.mu.Lock()
		if ss.ended {
			ss.mu.Unlock()
			s.node.Hub.Unsubscribe(t.sub)
			return
		}
		if opts.Since == nil {
			t.have = startOf(t.sub)
		}
		if ss.subs == nil {
			ss.subs = make(map[string]*subscription)
		}
		ss.subs[t.filter] = t
		ss.markLocked(true)
		ss.mu.Unlock()
		n++
		s.stats.subscriptions.Add(1)
		c.auth.Subscribed(filter.Name)
	}
}

// stopDeliveries stops writing deliveries to the connections and waits
// (at most shutdownAckWait, bounded by ctx) for the QoS 1 messages in
// flight to be acknowledged, so that the positions the sessions leave
// behind are exact.
func (s *Server) stopDeliveries(ctx context.Context, conns []*conn, sessions []*session) {
	for i, c := range conns {
		if ss := sessions[i]; ss != nil {
			ss.mu.Lock()
			c.stopped = true
			ss.mu.Unlock()
		}
	}
	deadline := time.Now().Add(shutdownAckWait)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		busy := false
		for i, c := range conns {
			if ss := sessions[i]; ss != nil {
				ss.mu.Lock()
				busy = busy || ss.conn == c && !c.dead && len(ss.inflight) > 0
				ss.mu.Unlock()
			}
		}
		if !busy {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
}
