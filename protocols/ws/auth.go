package ws

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"time"

	"github.com/kedgehq/kedge/auth"
	"github.com/kedgehq/kedge/core"
)

// authenticateRequest authenticates the upgrade request when it carries a
// token (an Authorization header or the token query parameter), or when no
// token is needed (allow-all). It answers 401 itself for a token that is
// refused; ok false without an answer means: upgrade, and wait for the
// client's {"op":"auth"} frame.
func (s *Server) authenticateRequest(w http.ResponseWriter, r *http.Request) (sess *core.Session, answered bool) {
	creds := auth.RequestCredentials(r, auth.ProtocolWS, s.cfg.TokenParam)
	sess, err := s.node.Authenticate(r.Context(), creds)
	if err == nil {
		return sess, false
	}
	if creds.Token == "" && errors.Is(err, auth.ErrUnauthenticated) && !errors.Is(err, auth.ErrExpired) {
		return nil, false // no token yet: it may come in the first frame
	}
	s.stats.denied.Add(1)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusUnauthorized)
	_ = json.NewEncoder(w).Encode(map[string]string{"code": core.Code(err), "message": err.Error()})
	return nil, true
}

// authFrame handles {"op":"auth","token":…}: the first authentication of
// a connection that upgraded without a token, or an in-band refresh before
// the token expires.
func (c *conn) authFrame(r *request, id []byte) {
	if r.Token == "" {
		c.reply(id, errf(codeMissingField, `"token" is required`))
		return
	}
	creds := &auth.Credentials{Protocol: auth.ProtocolWS, Remote: c.remote, Token: r.Token}
	sess := c.session.Load()
	if sess == nil {
		fresh, err := c.srv.node.Authenticate(c.ctx, creds)
		if err != nil {
			c.deny(id, err)
			return
		}
		c.session.Store(fresh)
		c.authDeadline.Stop()
		c.watchExpiry(fresh)
		c.reply(id, nil)
		return
	}
	if err := sess.Refresh(c.ctx, creds); err != nil {
		c.reply(id, coreError(err, ""))
		return
	}
	c.watchExpiry(sess)
	c.reply(id, nil)
	c.recheckSubscriptions(sess)
}

// deny answers a refused authentication and closes the connection.
func (c *conn) deny(id []byte, err error) {
	c.srv.stats.denied.Add(1)
	c.reply(id, coreError(err, ""))
	c.Close(core.Disconnect{Code: core.DisconnectUnauthorized.Code, Reason: core.Code(err)})
}

// watchExpiry closes the connection when the session's credentials expire,
// unless they are refreshed first.
func (c *conn) watchExpiry(sess *core.Session) {
	c.expiryMu.Lock()
	defer c.expiryMu.Unlock()
	if c.expiry != nil {
		c.expiry.Stop()
	}
	exp := sess.Expires()
	if exp.IsZero() {
		return
	}
	c.expiry = time.AfterFunc(time.Until(exp), func() {
		if sess.Expires().After(time.Now()) {
			return // refreshed meanwhile; the refresh set a new timer
		}
		c.srv.stats.expired.Add(1)
		c.Close(core.Disconnect{Code: core.DisconnectUnauthorized.Code, Reason: "token expired"})
	})
}

// recheckSubscriptions ends the subscriptions that refreshed credentials
// no longer allow, telling the client with a forbidden error for each.
func (c *conn) recheckSubscriptions(sess *core.Session) {
	c.mu.Lock()
	var gone []*core.Subscription
	for name, sub := range c.subs {
		if sess.Authorize(context.Background(), auth.Subscribe, name) != nil {
			gone = append(gone, sub)
			delete(c.subs, name)
		}
	}
	c.mu.Unlock()
	for _, sub := range gone {
		c.srv.node.Hub.Unsubscribe(sub)
		c.srv.stats.subscriptions.Add(-1)
		c.reply(nil, &protoError{code: "forbidden", subject: sub.Filter.Name,
			msg: "the refreshed credentials do not allow this subscription; it has ended"})
	}
}

// authorized returns the session, or answers that the connection must
// authenticate first.
func (c *conn) authorized(id []byte) *core.Session {
	sess := c.session.Load()
	if sess == nil {
		c.reply(id, errf("unauthorized", `authenticate first: send {"op":"auth","token":"…"}`))
	}
	return sess
}
