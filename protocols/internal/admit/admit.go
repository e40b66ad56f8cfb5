// Package admit decides, before upgrading, whether an HTTP request may
// become a long-lived connection (WebSocket on /v1/ws, MQTT over WebSocket
// on /mqtt), and answers a refusal the same way for both: a JSON body
// {"code", "message"}, with Retry-After when trying again later may work.
package admit

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/kedgehq/kedge/auth"
	"github.com/kedgehq/kedge/core"
)

// Upgrade checks the page's origin (403 origin_not_allowed) and the
// connection limits (503 server_full: the node is full, another may take
// the client; 429 too_many_connections: its address holds too many). When
// it returns ok, the connection is counted until release is called; when
// not, the refusal has been answered and counted.
func Upgrade(w http.ResponseWriter, r *http.Request, node *core.Node, origins *auth.Origins, proto auth.Protocol) (release func(), ok bool) {
	if !origins.AllowedRequest(r) {
		node.Limited(core.LimitOrigin, proto)
		Refuse(w, http.StatusForbidden, "origin_not_allowed",
			fmt.Sprintf("origin %q is not in http.cors.allowed.origins", r.Header.Get("Origin")))
		return nil, false
	}
	release, err := node.Admit(proto, r.RemoteAddr)
	if err != nil {
		status := http.StatusTooManyRequests
		if errors.Is(err, core.ErrServerFull) {
			status = http.StatusServiceUnavailable
		}
		Refuse(w, status, core.Code(err), err.Error())
		return nil, false
	}
	return release, true
}

// Refuse answers a request that is not upgraded with a JSON error.
func Refuse(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	if status == http.StatusServiceUnavailable || status == http.StatusTooManyRequests {
		w.Header().Set("Retry-After", "1")
	}
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"code": code, "message": msg})
}
