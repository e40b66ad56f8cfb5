package sse

import (
	"context"
	"net/http"
	"time"

	"github.com/kedgehq/kedge/auth"
	"github.com/kedgehq/kedge/core"
)

// Authentication and authorization go through core.Session, as on every
// protocol: each request (a stream, a publish, a snapshot) is authenticated
// from its Authorization: Bearer header or, for EventSource, which cannot
// set headers, the Config.TokenParam query parameter; a stream's subjects
// are authorized for subscribe, a publish's subject for publish, a
// snapshot's subject for subscribe. Without Node.Auth everything is allowed.

// authenticate returns the request's session, or answers 401 (503 when
// the authenticator cannot be reached) and returns nil.
func (s *Server) authenticate(w http.ResponseWriter, r *http.Request, proto auth.Protocol) *core.Session {
	sess, err := s.node.Authenticate(r.Context(), auth.RequestCredentials(r, proto, s.cfg.TokenParam))
	if err != nil {
		s.stats.denied.Add(1)
		e := coreError(err, "")
		if e.status == http.StatusUnauthorized {
			w.Header().Set("WWW-Authenticate", `Bearer realm="kedge"`)
		}
		s.fail(w, e)
		return nil
	}
	return sess
}

// authorize checks one action on each subject; the first refusal is the
// error (403 forbidden, 401 token_expired, 503 auth_unavailable).
func (s *Server) authorize(ctx context.Context, sess *core.Session, action auth.Action, subjects ...string) *apiError {
	for _, subj := range subjects {
		if err := sess.Authorize(ctx, action, subj); err != nil {
			s.stats.denied.Add(1)
			return coreError(err, subj)
		}
	}
	return nil
}

// watchExpiry ends the stream with an unauthorized error event when the
// session's credentials expire; stop cancels it.
func (st *stream) watchExpiry(sess *core.Session) (stop func() bool) {
	exp := sess.Expires()
	if exp.IsZero() {
		return func() bool { return false }
	}
	t := time.AfterFunc(time.Until(exp), func() {
		st.srv.stats.expired.Add(1)
		st.Close(core.Disconnect{Code: core.DisconnectUnauthorized.Code, Reason: "token expired"})
	})
	return t.Stop
}
