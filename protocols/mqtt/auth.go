package mqtt

import (
	"context"
	"errors"
	"time"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/kedgehq/kedge/auth"
	"github.com/kedgehq/kedge/core"
)

// Authentication and authorization go through core's Session, like every
// protocol's: CONNECT's user name and password are the credentials (a
// token-holding client sends the token as the password), and for MQTT
// over WebSocket also a bearer token of the upgrade request. Every
// subscription and publish (and the will) is authorized for the
// connection's identity; a session belongs to the identity that made it.

// authenticate checks a CONNECT's credentials and returns the refusal to
// answer it with, if any.
func (c *conn) authenticate(cl *mochi.Client, pk packets.Packet) *packets.Code {
	srv := c.srv
	creds := &auth.Credentials{Protocol: auth.ProtocolMQTT, Remote: c.nc.RemoteAddr().String(),
		Username: string(pk.Connect.Username), Password: string(pk.Connect.Password)}
	if h := c.nc.header; h != nil {
		creds.Header, creds.Token = h.header, h.token
	}
	ctx, cancel := context.WithTimeout(context.Background(), srv.cfg.ConnectTimeout)
	defer cancel()
	as, err := srv.node.Authenticate(ctx, creds)
	if err != nil {
		srv.stats.denied.Add(1)
		code := packets.ErrBadUsernameOrPassword
		if errors.Is(err, auth.ErrUnavailable) {
			code = packets.ErrServerUnavailable
		}
		code.Reason = clipReason(core.Code(err) + ": " + err.Error())
		return &code
	}
	c.auth = as
	c.watchExpiry(as)
	return nil
}

// authorize checks an action on a subject or pattern; the refusal carries
// an MQTT 5 reason code and kedge's error code in its reason.
func (c *conn) authorize(action auth.Action, subject string) *packets.Code {
	ctx, cancel := context.WithTimeout(context.Background(), c.srv.cfg.ConnectTimeout)
	defer cancel()
	err := c.auth.Authorize(ctx, action, subject)
	if err == nil {
		return nil
	}
	c.srv.stats.denied.Add(1)
	code := packets.ErrNotAuthorized
	if errors.Is(err, auth.ErrUnavailable) {
		code = packets.ErrUnspecifiedError
	}
	code.Reason = clipReason(core.Code(err) + ": " + err.Error())
	return &code
}

// watchExpiry disconnects the client when its credentials expire (MQTT 5:
// DISCONNECT 0x87 "token expired"); it reconnects with fresh ones.
func (c *conn) watchExpiry(as *core.Session) {
	exp := as.Expires()
	if exp.IsZero() {
		return
	}
	c.expiry = time.AfterFunc(time.Until(exp), func() {
		c.srv.stats.tokenExpired.Add(1)
		code := packets.ErrNotAuthorized
		code.Reason = "token_expired: credentials expired"
		c.abortWith(c.sessionOf(), code)
	})
}

// sessionOf reads the connection's session from another goroutine.
func (c *conn) sessionOf() *session {
	c.srv.mu.Lock()
	defer c.srv.mu.Unlock()
	return c.sess
}

// owner names the identity a session belongs to.
func (c *conn) owner() string {
	if c.auth == nil {
		return ""
	}
	return c.auth.Identity().Name
}

// recheck ends the subscriptions of a resumed session that the connection's
// identity may no longer make (its permissions changed while it was away),
// with the messages queued for them. MQTT has no way to tell the client;
// the session keeps the others.
func (c *conn) recheck() {
	s := c.sess
	s.mu.Lock()
	var names []string
	for f := range s.subs {
		names = append(names, f)
	}
	s.mu.Unlock()
	gone := map[*subscription]bool{}
	for _, f := range names {
		if c.authorize(auth.Subscribe, SubjectOf(f)) == nil {
			continue
		}
		s.mu.Lock()
		t := s.subs[f]
		s.mu.Unlock()
		if t != nil && c.unsubscribe(f) == packets.CodeSuccess.Code {
			gone[t] = true
		}
	}
	if len(gone) == 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.queued -= s.q.drop(func(d *delivery) bool { return gone[d.sub] })
	kept := s.inflight[:0]
	for _, e := range s.inflight {
		if !gone[e.d.sub] {
			kept = append(kept, e)
		}
	}
	clear(s.inflight[len(kept):])
	s.inflight = kept
	c.resend = min(c.resend, len(s.inflight))
}

// upgradeAuth is what the WebSocket upgrade request says about the client.
type upgradeAuth struct {
	header map[string][]string
	token  string
}
