package core

import (
	"context"
	"errors"
	"sync/atomic"
	"time"

	"github.com/kedgehq/kedge/auth"
)

// Session is one client connection as authentication and audit see it, on
// any protocol: who it is, and the checks and audit events of what it does.
// Adapters create one per connection with Node.Authenticate and ask it
// before every subscribe and publish, so every protocol enforces the same
// rules the same way.
type Session struct {
	node     *Node
	protocol auth.Protocol
	remote   string
	id       atomic.Pointer[auth.Identity]
}

// allowAll is what a Node without Auth uses (tests, embedded uses): every
// client may do everything.
var allowAll = auth.NewAllowAll("anonymous")

func (n *Node) auth() *auth.Auth {
	if n.Auth != nil {
		return n.Auth
	}
	return defaultAuth
}

var defaultAuth = auth.Compose(allowAll, allowAll)

// Authenticate checks a connection's credentials and returns its Session,
// recording a connect (or a denial) in the audit trail.
func (n *Node) Authenticate(ctx context.Context, c *auth.Credentials) (*Session, error) {
	id, err := n.auth().Authenticate(ctx, c)
	if err != nil {
		n.record(auth.DenyEvent(c.Protocol, c.Remote, err))
		return nil, err
	}
	s := &Session{node: n, protocol: c.Protocol, remote: c.Remote}
	s.id.Store(id)
	s.audit(auth.EventConnect, "", "")
	return s, nil
}

// Identity is who the session is now.
func (s *Session) Identity() *auth.Identity { return s.id.Load() }

// Expires is when the session's credentials expire; zero for never.
func (s *Session) Expires() time.Time { return s.id.Load().Expires }

// Refresh replaces the session's identity with one from new credentials of
// the same principal (a WebSocket client refreshing its token in-band).
func (s *Session) Refresh(ctx context.Context, c *auth.Credentials) error {
	id, err := s.node.auth().Refresh(ctx, s.id.Load(), c)
	if err != nil {
		s.node.record(auth.DenyEvent(s.protocol, s.remote, err))
		return err
	}
	s.id.Store(id)
	return nil
}

// Authorize checks an action on a subject (or, for Subscribe, a pattern);
// a denial is recorded in the audit trail and wraps auth.ErrForbidden,
// auth.ErrExpired or auth.ErrUnavailable.
func (s *Session) Authorize(ctx context.Context, action auth.Action, subject string) error {
	err := s.node.auth().Authorize(ctx, s.id.Load(), action, subject)
	if err != nil {
		ev := auth.DenyEvent(s.protocol, s.remote, err)
		ev.Denied, ev.Subject = denied(action), subject
		if ev.Identity == "" {
			ev.Identity = s.id.Load().Name
		}
		s.node.record(ev)
	}
	return err
}

func denied(a auth.Action) auth.EventAction {
	if a == auth.Publish {
		return auth.EventPublish
	}
	return auth.EventSubscribe
}

// Subscribed, Unsubscribed, Published and Disconnected record what the
// session did (when the audit trail wants it).
func (s *Session) Subscribed(subject string)   { s.audit(auth.EventSubscribe, subject, "") }
func (s *Session) Unsubscribed(subject string) { s.audit(auth.EventUnsubscribe, subject, "") }
func (s *Session) Published(subject string)    { s.audit(auth.EventPublish, subject, "") }
func (s *Session) Disconnected(reason string)  { s.audit(auth.EventDisconnect, "", reason) }

func (s *Session) audit(action auth.EventAction, subject, reason string) {
	a := s.node.Audit
	if a == nil || !a.Enabled(action) {
		return
	}
	a.Record(auth.Event{Time: time.Now(), Action: action, Protocol: s.protocol, Remote: s.remote,
		Identity: s.id.Load().Name, Subject: subject, Reason: reason})
}

func (n *Node) record(ev auth.Event) {
	if n.Audit != nil && n.Audit.Enabled(ev.Action) {
		n.Audit.Record(ev)
	}
}

// authCode maps authentication and authorization errors to protocol codes.
func authCode(err error) (string, bool) {
	switch {
	case errors.Is(err, auth.ErrExpired):
		return "token_expired", true
	case errors.Is(err, auth.ErrUnavailable):
		return "auth_unavailable", true
	case errors.Is(err, auth.ErrUnauthenticated):
		return "unauthorized", true
	case errors.Is(err, auth.ErrForbidden):
		return "forbidden", true
	}
	return "", false
}
