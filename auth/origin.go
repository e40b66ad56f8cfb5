package auth

import (
	"net/http"
	"strings"
)

// Origins is the policy on which web pages may use kedge from a browser:
// the Origin header of a WebSocket upgrade, an SSE stream, an HTTP publish
// or snapshot, or MQTT over WebSocket. A browser sends Origin on every
// such request, and cookies or cached credentials with it, so a page of
// another site must not be able to act for its visitor. Requests without
// Origin (not from a browser page) and pages of kedge's own origin are
// always allowed. Safe for concurrent use; a nil *Origins allows any.
type Origins struct {
	any     bool
	allowed []string
}

// NewOrigins allows the listed origins ("https://app.example"), compared
// without regard to case; "*" in the list, or an empty list, allows any.
func NewOrigins(list []string) *Origins {
	o := &Origins{any: len(list) == 0}
	for _, s := range list {
		s = strings.TrimSpace(s)
		if s == "*" {
			o.any = true
		}
		o.allowed = append(o.allowed, strings.TrimSuffix(s, "/"))
	}
	return o
}

// Any reports whether every origin is allowed (the development default).
func (o *Origins) Any() bool { return o == nil || o.any }

// Allowed reports whether a page of origin may use the server reached as
// host (the request's Host header). An empty origin is allowed.
func (o *Origins) Allowed(origin, host string) bool {
	if origin == "" || o.Any() {
		return true
	}
	if strings.EqualFold(origin, "http://"+host) || strings.EqualFold(origin, "https://"+host) {
		return true
	}
	for _, a := range o.allowed {
		if strings.EqualFold(a, origin) {
			return true
		}
	}
	return false
}

// AllowedRequest applies Allowed to an HTTP request.
func (o *Origins) AllowedRequest(r *http.Request) bool {
	return o.Allowed(r.Header.Get("Origin"), r.Host)
}
