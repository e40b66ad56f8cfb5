package client

import (
	"context"
	"errors"
	"sync"

	"github.com/kedgehq/kedge/core"
)

// SubscribeOptions tune a subscription.
type SubscribeOptions struct {
	// Standard asks for standard delivery (kedge may drop messages when the
	// client cannot keep up) instead of guaranteed.
	Standard bool
	// NoSnapshot skips the latest cached message on subscribe.
	NoSnapshot bool
	// OnReset is called when kedge could not recover the messages missed
	// while disconnected (Kafka's retention, a re-created topic, the
	// recovery bounds): some messages are lost to this subscription; the
	// snapshot and live messages follow. Also called, with the error, when
	// a resubscription is refused after a reconnect (then the subscription
	// has ended).
	OnReset func(reason string)
}

// Subscription is one subject or pattern the Client is subscribed to.
type Subscription struct {
	c       *Client
	name    string
	filter  core.Filter
	handler func(Message)
	opts    SubscribeOptions

	// Guarded by c.mu.
	cursor   *core.Cursor
	acked    chan struct{}
	ackOnce  sync.Once
	err      error
	snapSeen map[string]int64 // snapshots handed since the last (re)subscribe
}

// Subscribe subscribes to a subject or pattern and waits for kedge's ack
// (which kedge sends once the subscription is live). handler is called for
// every message, in order, on the Client's handler goroutine (one for all
// subscriptions). If the PositionStore has a cursor for the subject, the
// subscription resumes from it.
func (c *Client) Subscribe(ctx context.Context, subject string, handler func(Message), opts SubscribeOptions) (*Subscription, error) {
	f, err := core.ParseFilter(subject)
	if err != nil {
		return nil, &Error{Code: core.Code(err), Subject: subject, Message: err.Error()}
	}
	s := &Subscription{c: c, name: subject, filter: f, handler: handler, opts: opts, acked: make(chan struct{})}
	if tok, ok := c.opts.Store.Get(subject); ok {
		if cur, err := core.ParseCursor(tok); err == nil {
			s.cursor = &cur
		}
	}
	c.mu.Lock()
	switch {
	case c.err != nil:
		c.mu.Unlock()
		return nil, c.err
	case c.subs[subject] != nil:
		c.mu.Unlock()
		return nil, ErrAlreadySubscribed
	}
	c.subs[subject] = s
	connected := c.conn != nil
	c.mu.Unlock()
	if connected {
		c.resubscribe(s)
	}
	select {
	case <-s.acked:
	case <-ctx.Done():
		c.forget(s)
		return nil, ctx.Err()
	}
	c.mu.Lock()
	err = s.err
	c.mu.Unlock()
	if err != nil {
		return nil, err
	}
	return s, nil
}

// resubscribe sends the subscribe request for s, resuming from its cursor,
// and handles the answer when it comes.
func (c *Client) resubscribe(s *Subscription) {
	req := map[string]any{"op": "subscribe", "subjects": []string{s.name}}
	if s.opts.Standard {
		req["mode"] = "standard"
	}
	if s.opts.NoSnapshot {
		req["snapshot"] = false
	}
	c.mu.Lock()
	if s.cursor != nil {
		req["positions"] = map[string]string{s.name: s.cursor.String()}
	}
	s.snapSeen = nil
	c.mu.Unlock()
	cl := newCall(req)
	if err := c.send(cl); errors.Is(err, ErrNotConnected) {
		return // the next connection resubscribes
	} else if err != nil {
		s.fail(err)
		return
	}
	go c.awaitSubscribe(s, cl)
}

func (c *Client) awaitSubscribe(s *Subscription, cl *call) {
	f, ok := <-cl.reply
	if !ok {
		return // the connection dropped: the next one resubscribes
	}
	if f.Op == "error" {
		c.subscribeRefused(s, f.err())
		return
	}
	c.mu.Lock()
	if s.cursor == nil {
		if tok, ok := f.Cursors[s.name]; ok {
			if cur, err := core.ParseCursor(tok); err == nil {
				s.cursor = &cur
				c.opts.Store.Set(s.name, tok)
			}
		}
	}
	c.mu.Unlock()
	s.ackOnce.Do(func() { close(s.acked) })
}

// subscribeRefused handles an error answer: a stored cursor kedge cannot
// read is dropped and the subscription made afresh; anything else ends it.
func (c *Client) subscribeRefused(s *Subscription, e *Error) {
	if e.Code == "invalid_position" {
		c.mu.Lock()
		s.cursor = nil
		c.mu.Unlock()
		c.opts.Store.Delete(s.name)
		c.event(func() { s.reset("stored position not accepted: " + e.Message) })
		c.resubscribe(s)
		return
	}
	first := false
	c.mu.Lock()
	select {
	case <-s.acked:
	default:
		first = true
	}
	c.mu.Unlock()
	c.forget(s)
	s.fail(e)
	if !first {
		c.event(func() { s.reset("resubscribing failed: " + e.Error()) })
	}
}

// fail ends a subscription waiting for its first ack with err.
func (s *Subscription) fail(err error) {
	s.ackOnce.Do(func() {
		s.err = err
		close(s.acked)
	})
}

func (s *Subscription) reset(reason string) {
	if s.opts.OnReset != nil {
		s.opts.OnReset(reason)
	}
}

func (c *Client) forget(s *Subscription) {
	c.mu.Lock()
	if c.subs[s.name] == s {
		delete(c.subs, s.name)
	}
	c.mu.Unlock()
}

// Unsubscribe ends the subscription and forgets its stored cursor.
func (s *Subscription) Unsubscribe(ctx context.Context) error {
	c := s.c
	c.forget(s)
	c.opts.Store.Delete(s.name)
	cl := newCall(map[string]any{"op": "unsubscribe", "subjects": []string{s.name}})
	c.mu.Lock()
	connected := c.conn != nil
	c.mu.Unlock()
	if !connected {
		return nil // kedge has no subscription for a connection that is gone
	}
	_, err := c.await(ctx, cl)
	return err
}

// Cursor returns the subscription's current cursor token ("" if unknown).
func (s *Subscription) Cursor() string {
	s.c.mu.Lock()
	defer s.c.mu.Unlock()
	if s.cursor == nil {
		return ""
	}
	return s.cursor.String()
}

// onMessage hands a message to every subscription it belongs to, once: kedge
// sends a message once per matching subscription, and the cursor check
// drops the copies (and anything a resume already delivered).
func (c *Client) onMessage(f *frame) {
	m, err := f.message()
	pos, perr := core.ParsePosition(f.Position)
	if err != nil || perr != nil {
		c.opts.Logger.Warn("kedge client: malformed message frame", "subject", f.Subject)
		return
	}
	subj, err := core.ParseSubject(m.Subject)
	if err != nil {
		return
	}
	var subs []*Subscription
	c.mu.Lock()
	for _, s := range c.subs {
		if s.filter.Topic == subj.Topic && s.filter.Matches(subj.Key, subj.HasKey) {
			subs = append(subs, s)
		}
	}
	c.mu.Unlock()
	for _, s := range subs {
		// Decided when the handler is about to run, not on receipt: the
		// cursor (and the store) then say exactly what the application has.
		c.event(func() {
			c.mu.Lock()
			take := c.subs[s.name] == s && s.take(m, pos, c.opts.Store)
			c.mu.Unlock()
			if take {
				s.handler(m)
			}
		})
	}
}

// take decides whether s gets m and advances its cursor; c.mu is held.
func (s *Subscription) take(m Message, pos core.Position, store PositionStore) bool {
	if m.Snapshot {
		if off, seen := s.snapSeen[m.Subject]; seen && off >= pos.Offset {
			return false
		}
		if s.snapSeen == nil {
			s.snapSeen = make(map[string]int64)
		}
		s.snapSeen[m.Subject] = pos.Offset
		return true
	}
	if s.cursor != nil && s.cursor.Epoch == pos.Epoch {
		if off, ok := s.cursor.Offsets[pos.Partition]; ok && pos.Offset <= off {
			return false // a copy, or already delivered
		}
	}
	if s.cursor == nil {
		s.cursor = &core.Cursor{}
	}
	s.cursor.Advance(pos)
	store.Set(s.name, s.cursor.String())
	return true
}

// onCursor adopts the start cursor kedge gives a subscription whose ack
// had none (its topic did not exist yet), keeping any partition the client
// is already past. It goes through the handler queue, so that it comes
// before the messages that follow it.
func (c *Client) onCursor(f *frame) {
	cur, err := core.ParseCursor(f.Cursor)
	if err != nil {
		return
	}
	c.event(func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		s := c.subs[f.Subject]
		if s == nil {
			return
		}
		if s.cursor != nil && s.cursor.Epoch == cur.Epoch {
			for p, off := range s.cursor.Offsets {
				if off > cur.Offsets[p] {
					cur.Offsets[p] = off
				}
			}
		}
		s.cursor = &cur
		c.opts.Store.Set(s.name, cur.String())
	})
}

func (c *Client) onReset(f *frame) {
	c.mu.Lock()
	s := c.subs[f.Subject]
	if s != nil && f.Cursor != "" {
		if cur, err := core.ParseCursor(f.Cursor); err == nil {
			s.cursor = &cur
			c.opts.Store.Set(s.name, f.Cursor)
		}
	}
	c.mu.Unlock()
	if s != nil {
		c.event(func() { s.reset(f.Reason) })
	}
}

// event queues fn for the handler goroutine; when the buffer is full this
// waits, and the read loop with it.
func (c *Client) event(fn func()) {
	select {
	case c.events <- fn:
	case <-c.ctx.Done():
	}
}
