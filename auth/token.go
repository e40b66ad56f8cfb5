package auth

import (
	"net/http"
	"strings"
)

// TokenFromRequest returns the bearer token an HTTP request carries: the
// "Authorization: Bearer <token>" header, or else, when param is not empty,
// the query parameter param (EventSource in a browser cannot set headers).
// It returns "" when there is none.
func TokenFromRequest(r *http.Request, param string) string {
	if h := r.Header.Get("Authorization"); h != "" {
		scheme, tok, ok := strings.Cut(h, " ")
		if ok && strings.EqualFold(scheme, "Bearer") {
			return strings.TrimSpace(tok)
		}
	}
	if param != "" {
		return r.URL.Query().Get(param)
	}
	return ""
}

// RequestCredentials returns the Credentials of an HTTP request (WebSocket
// upgrade, SSE, HTTP publish): the token as TokenFromRequest finds it, the
// remote address and the headers.
func RequestCredentials(r *http.Request, protocol Protocol, param string) *Credentials {
	return &Credentials{Protocol: protocol, Remote: r.RemoteAddr, Token: TokenFromRequest(r, param), Header: r.Header}
}
