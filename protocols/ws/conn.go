package ws

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"

	"github.com/kedgehq/kedge/auth"
	"github.com/kedgehq/kedge/core"
)

// conn is one WebSocket client: a core.Subscriber whose read loop runs in the
// HTTP handler's goroutine.
type conn struct {
	srv     *Server
	ws      *websocket.Conn
	out     *writer
	log     *slog.Logger
	remote  string
	release func()       // ends the connection's count in core.Limits
	rate    *core.Bucket // publish rate; nil: unbounded

	session      atomic.Pointer[core.Session] // nil until authenticated
	originMu     sync.Mutex
	originSent   map[*core.Subscription]bool
	authDeadline *time.Timer
	expiryMu     sync.Mutex
	expiry       *time.Timer

	ctx    context.Context // canceled when the connection ends
	cancel context.CancelFunc

	mu        sync.Mutex
	subs      map[string]*core.Subscription // by filter name
	closeOnce sync.Once
	closedBy  atomic.Pointer[core.Disconnect]

	inflight  chan struct{} // one token per publish awaiting Kafka
	publishes sync.WaitGroup
	draining  bool // set by Server.Shutdown under mu: publishes are refused

	pingMu  sync.Mutex
	pinger  *time.Timer
	pingOff bool
}

// Deliver implements core.Subscriber: queue the shared frame, or apply the
// subscription's mode when the queue is full.
func (c *conn) Deliver(sub *core.Subscription, m *core.Message, snapshot bool) {
	var f []byte
	if snapshot {
		f = snapshotFrame(m)
	} else {
		if !sub.HasStart {
			c.sendOrigin(sub, m)
		}
		f = m.Encoded(slot, encoder)
	}
	if c.out.push(f, true) {
		c.srv.stats.delivered.Add(1)
		return
	}
	if sub.Mode == core.Standard {
		c.srv.stats.dropped.Add(1)
		return
	}
	c.srv.stats.slow.Add(1)
	// What is queued still goes out, then the close: a client resuming
	// from the last message it got makes progress on every reconnection,
	// even when what it missed is more than one queue holds.
	c.Close(core.DisconnectSlow)
}

// sendOrigin gives a subscription made before its topic existed (so its ack
// had no cursor) its start cursor, once, before its first message: the
// offsets before the first this node dispatched, which the subscription has
// been handed everything since.
func (c *conn) sendOrigin(sub *core.Subscription, m *core.Message) {
	c.originMu.Lock()
	defer c.originMu.Unlock()
	if c.originSent[sub] {
		return
	}
	o, ok := c.srv.node.Origin(m.Topic)
	if !ok || o.Epoch != m.Pos.Epoch {
		return
	}
	if c.originSent == nil {
		c.originSent = make(map[*core.Subscription]bool)
	}
	c.originSent[sub] = true
	c.out.push(cursorFrame(sub.Filter.Name, o.String()), false)
}

// Reset implements core.Subscriber: the subscription's history since the
// client's cursor cannot be recovered.
func (c *conn) Reset(sub *core.Subscription, reason string) {
	c.srv.stats.resets.Add(1)
	cursor := ""
	if sub.HasStart {
		cursor = sub.Start.String()
	}
	c.send(resetFrame(sub.Filter.Name, reason, cursor))
}

// Close implements core.Subscriber: send a close frame with the reason, then
// close the connection. It never blocks.
func (c *conn) Close(d core.Disconnect) {
	c.closeOnce.Do(func() {
		c.closedBy.Store(&d)
		c.out.finish(closeFrame(d))
	})
}

// serve is the read loop; it returns when the connection ends.
func (c *conn) serve() {
	defer c.cleanup()
	c.ws.SetPingHandler(func(data string) error {
		c.touch()
		c.send(controlFrame(opPong, []byte(data)))
		return nil
	})
	c.ws.SetPongHandler(func(string) error { c.touch(); return nil })
	c.ws.SetCloseHandler(func(code int, _ string) error {
		c.Close(core.Disconnect{Code: echoCode(code), Reason: ""})
		return nil
	})
	c.touch()
	c.schedulePing()
	for {
		typ, data, err := c.ws.ReadMessage()
		if err != nil {
			c.readFailed(err)
			return
		}
		c.touch()
		c.srv.stats.received.Add(1)
		if typ != websocket.TextMessage {
			c.reply(nil, errf(codeBinaryFrame, "requests are JSON text frames"))
			continue
		}
		c.handle(data)
	}
}

// echoCode answers a client's close with the same code where allowed.
func echoCode(code int) int {
	if code == websocket.CloseNoStatusReceived || code == websocket.CloseAbnormalClosure {
		return websocket.CloseNormalClosure
	}
	return code
}

func (c *conn) readFailed(err error) {
	var ne net.Error
	switch {
	case errors.As(err, &ne) && ne.Timeout():
		c.Close(core.DisconnectNoPong)
	case errors.Is(err, websocket.ErrReadLimit):
		c.srv.stats.errors.Add(1)
		c.srv.node.Limited(core.LimitPayload, auth.ProtocolWS)
		c.Close(core.DisconnectMessageTooBig)
	case websocket.IsCloseError(err, websocket.CloseNormalClosure, websocket.CloseGoingAway, websocket.CloseNoStatusReceived):
	default:
		c.log.Debug("websocket read ended", "err", err)
		c.Close(core.Disconnect{Code: websocket.CloseProtocolError, Reason: "read error"})
	}
}

// touch extends the read deadline: a client must send something (a pong at
// least) within ping interval + pong timeout.
func (c *conn) touch() {
	cfg := c.srv.cfg
	_ = c.ws.SetReadDeadline(time.Now().Add(cfg.PingInterval + cfg.PongTimeout))
}

func (c *conn) schedulePing() {
	c.pingMu.Lock()
	defer c.pingMu.Unlock()
	c.pinger = time.AfterFunc(c.srv.cfg.PingInterval, c.ping)
}

func (c *conn) ping() {
	c.pingMu.Lock()
	defer c.pingMu.Unlock()
	if c.pingOff {
		return
	}
	c.send(controlFrame(opPing, nil))
	c.pinger.Reset(c.srv.cfg.PingInterval)
}

func (c *conn) stopPing() {
	c.pingMu.Lock()
	defer c.pingMu.Unlock()
	c.pingOff = true
	c.pinger.Stop()
}

// send queues a reply or control frame. These count against the queue
// limit too: a client that sends requests but never reads its replies is a
// slow consumer like any other.
func (c *conn) send(f []byte) {
	if !c.out.push(f, true) {
		c.srv.stats.slow.Add(1)
		c.Close(core.DisconnectSlow)
	}
}

func (c *conn) cleanup() {
	c.stopPing()
	c.authDeadline.Stop()
	c.expiryMu.Lock()
	if c.expiry != nil {
		c.expiry.Stop()
	}
	c.expiryMu.Unlock()
	if sess := c.session.Load(); sess != nil {
		reason := "client closed"
		if d := c.closedBy.Load(); d != nil && d.Reason != "" {
			reason = d.Reason
		}
		sess.Disconnected(reason)
	}
	c.mu.Lock()
	subs := c.subs
	c.subs = nil
	c.mu.Unlock()
	for _, s := range subs {
		c.srv.node.Hub.Unsubscribe(s)
	}
	c.srv.stats.subscriptions.Add(-int64(len(subs)))
	c.cancel()
	c.Close(core.Disconnect{Code: websocket.CloseNormalClosure})
	c.srv.forget(c)
	c.release()
}

// reply queues an ack or error frame for a request.
func (c *conn) reply(id []byte, perr *protoError) {
	if perr == nil {
		c.send(ackFrame(id, nil))
		return
	}
	c.srv.stats.errors.Add(1)
	c.send(errorFrame(id, perr.code, perr.subject, perr.msg))
}

func (c *conn) handle(data []byte) {
	r, perr := decodeRequest(data)
	if perr != nil {
		c.reply(idOf(r), perr)
		return
	}
	id := idOf(r)
	if r.Op == "auth" {
		c.authFrame(r, id)
		return
	}
	if r.Op != "ping" && c.authorized(id) == nil {
		return
	}
	switch r.Op {
	case "subscribe":
		if perr := c.subscribe(r, id); perr != nil {
			c.reply(id, perr)
		}
	case "unsubscribe":
		c.reply(id, c.unsubscribe(r))
	case "publish":
		if perr := c.publish(r, id); perr != nil {
			c.reply(id, perr)
		}
	case "ping":
		c.send(pongFrame(id))
	default:
		c.reply(id, errf(codeUnknownOp, "unknown op %q: want subscribe, unsubscribe, publish, ping or auth", r.Op))
	}
}

// subscribe checks every filter first, so a request is taken whole or not at
// all; on success it queues the ack itself, before any snapshot.
func (c *conn) subscribe(r *request, id []byte) *protoError {
	if len(r.Subjects) == 0 {
		return errf(codeMissingField, `"subjects" must list at least one subject`)
	}
	mode, perr := r.mode()
	if perr != nil {
		return perr
	}
	filters, perr := c.parseFilters(r.Subjects)
	if perr != nil {
		return perr
	}
	sess := c.session.Load()
	for _, f := range filters {
		if err := sess.Authorize(c.ctx, auth.Subscribe, f.Name); err != nil {
			c.srv.stats.forbidden.Add(1)
			return coreError(err, f.Name)
		}
	}
	since, perr := parsePositions(r.Positions, filters)
	if perr != nil {
		return perr
	}
	for _, f := range filters {
		c.srv.node.Prepare(c.ctx, f.Topic)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	fresh := filters[:0]
	for _, f := range filters {
		if c.subs[f.Name] == nil {
			fresh = append(fresh, f)
		}
	}
	if len(c.subs)+len(fresh) > c.srv.cfg.MaxSubscriptions {
		c.srv.node.Limited(core.LimitSubscriptions, auth.ProtocolWS)
		return errf(codeTooManySubs, "a connection may hold %d subscriptions", c.srv.cfg.MaxSubscriptions)
	}
	c.out.hold()
	cursors := make(map[string]string, len(fresh))
	for _, f := range fresh {
		from := since[f.Name]
		if from != nil && from.New {
			from = c.resolveNew(f)
		}
		opts := core.SubscribeOptions{Mode: mode, Snapshot: r.Snapshot == nil || *r.Snapshot, Since: from}
		c.subs[f.Name] = c.srv.node.Subscribe(c, f, opts)
		c.srv.stats.subscriptions.Add(1)
		sess.Subscribed(f.Name)
		if opts.Since != nil {
			c.srv.stats.resumes.Add(1)
			continue
		}
		if sub := c.subs[f.Name]; sub.HasStart {
			cursors[f.Name] = sub.Start.String()
		} else {
			cursors[f.Name] = core.NewTopicCursor.String()
		}
	}
	c.out.release(subscribeAckFrame(id, cursors))
	return nil
}

// resolveNew turns the cursor "new" of a subscription made before its topic
// existed into the cursor it resumes from where this node knows the topic:
// every partition from its start (-1). The client is told with a cursor
// frame, queued (held behind the ack) before any message of the
// subscription: its own cursor still says "new", and advancing "new" by
// one message would name that message's partition only, so a second resume
// before it had a message of every partition would miss the others. While
// the topic is unknown here, "new" stays (a plain subscription, whose first
// message brings its cursor frame). c.mu is held.
func (c *conn) resolveNew(f core.Filter) *core.Cursor {
	front, ok := c.srv.node.Hub.Frontier(f.Topic)
	if !ok {
		still := core.NewTopicCursor
		return &still
	}
	from := front.FromStart()
	c.out.push(cursorFrame(f.Name, from.String()), false)
	return &from
}

// parsePositions reads a subscribe's "positions": filter → cursor token.
func parsePositions(positions map[string]string, filters []core.Filter) (map[string]*core.Cursor, *protoError) {
	if len(positions) == 0 {
		return nil, nil
	}
	named := make(map[string]bool, len(filters))
	for _, f := range filters {
		named[f.Name] = true
	}
	out := make(map[string]*core.Cursor, len(positions))
	for name, tok := range positions {
		if !named[name] {
			return nil, &protoError{code: codeInvalidField, subject: name,
				msg: fmt.Sprintf(`"positions" names %q, which is not in "subjects"`, name)}
		}
		cur, err := core.ParseCursor(tok)
		if err != nil {
			return nil, coreError(err, name)
		}
		out[name] = &cur
	}
	return out, nil
}

// parseFilters checks every filter of a request, dropping repeats.
func (c *conn) parseFilters(names []string) ([]core.Filter, *protoError) {
	filters := make([]core.Filter, 0, len(names))
	seen := make(map[string]struct{}, len(names))
	for _, s := range names {
		if _, dup := seen[s]; dup {
			continue
		}
		seen[s] = struct{}{}
		f, err := c.srv.node.ParseFilter(s)
		if err != nil {
			return nil, coreError(err, s)
		}
		filters = append(filters, f)
	}
	return filters, nil
}

func (c *conn) unsubscribe(r *request) *protoError {
	if len(r.Subjects) == 0 {
		return errf(codeMissingField, `"subjects" must list at least one subject`)
	}
	c.mu.Lock()
	var gone []*core.Subscription
	for _, s := range r.Subjects {
		if sub := c.subs[s]; sub != nil {
			gone = append(gone, sub)
			delete(c.subs, s)
		}
	}
	c.mu.Unlock()
	for _, sub := range gone {
		c.srv.node.Hub.Unsubscribe(sub)
		c.session.Load().Unsubscribed(sub.Filter.Name)
		c.originMu.Lock()
		delete(c.originSent, sub)
		c.originMu.Unlock()
	}
	c.srv.stats.subscriptions.Add(-int64(len(gone)))
	return nil
}

// publish hands the message to Kafka in this connection's order; the ack
// is sent from Kafka's answer. At most MaxInflight publishes wait at once;
// past that the read loop waits, which slows the client down.
func (c *conn) publish(r *request, id []byte) *protoError {
	if r.Subject == "" {
		return errf(codeMissingField, `"subject" is required`)
	}
	subj, err := c.srv.node.ParseSubject(r.Subject)
	if err != nil {
		return coreError(err, r.Subject)
	}
	sess := c.session.Load()
	if err := sess.Authorize(c.ctx, auth.Publish, subj.Name); err != nil {
		c.srv.stats.forbidden.Add(1)
		return coreError(err, r.Subject)
	}
	payload, perr := r.payload()
	if perr != nil {
		return perr
	}
	if max := c.srv.cfg.MaxPayload; len(payload) > max {
		c.srv.node.Limited(core.LimitPayload, auth.ProtocolWS)
		return &protoError{code: codePayloadTooLarge, subject: r.Subject,
			msg: fmt.Sprintf("payload is %d bytes; the limit is %d", len(payload), max)}
	}
	if _, err := c.srv.node.Limits.Take(c.rate, auth.ProtocolWS); err != nil {
		return coreError(err, r.Subject)
	}
	select {
	case c.inflight <- struct{}{}:
	case <-c.ctx.Done():
		return nil
	}
	c.mu.Lock()
	if c.draining {
		c.mu.Unlock()
		<-c.inflight
		return coreError(core.ErrShuttingDown, r.Subject)
	}
	c.publishes.Add(1)
	c.mu.Unlock()
	c.srv.stats.published.Add(1)
	pub := core.Publication{Subject: subj, Payload: payload, Headers: r.headers()}
	c.srv.node.PublishAsync(context.WithoutCancel(c.ctx), pub, func(pos core.Position, err error) {
		defer c.publishes.Done()
		<-c.inflight
		if err != nil {
			c.srv.stats.publishErrors.Add(1)
			c.reply(id, coreError(err, r.Subject))
			return
		}
		sess.Published(subj.Name)
		c.send(ackFrame(id, &pos))
	})
	return nil
}
