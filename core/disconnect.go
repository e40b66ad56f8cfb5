package core

import "fmt"

// Disconnect is why the server closes a client connection. It implements
// error. Codes below 4000 never occur; codes 4000–4499 mean the client should
// reconnect (and recover from its positions); codes 4500–4999 mean it should
// not reconnect without changing something (credentials, request, version).
// WebSocket sends the code and reason in its close frame; other protocols map
// them onto their own means.
type Disconnect struct {
	Code   int
	Reason string
}

func (d Disconnect) Error() string { return fmt.Sprintf("disconnect %d: %s", d.Code, d.Reason) }

// Reconnect reports whether a client should reconnect after this disconnect.
func (d Disconnect) Reconnect() bool { return d.Code < 4500 }

// The disconnect reasons kedge uses. The list is stable; new codes are appended.
var (
	// DisconnectShutdown: the node is shutting down; reconnect (to another node).
	DisconnectShutdown = Disconnect{4000, "server shutting down"}
	// DisconnectSlow: the client did not read fast enough for guaranteed
	// delivery; reconnect and recover from the last position.
	DisconnectSlow = Disconnect{4001, "slow consumer: outgoing queue full"}
	// DisconnectWriteError: writing to the client failed or timed out.
	DisconnectWriteError = Disconnect{4002, "write error"}
	// DisconnectNoPong: the client did not answer keepalive pings in time.
	DisconnectNoPong = Disconnect{4003, "keepalive timeout"}
	// DisconnectInsufficient: the node's cache cannot serve this client; reconnect.
	DisconnectInsufficient = Disconnect{4004, "insufficient state"}
	// DisconnectBadRequest: the client broke the protocol beyond a per-request error.
	DisconnectBadRequest = Disconnect{4500, "bad request"}
	// DisconnectMessageTooBig: a frame exceeded the configured maximum size.
	DisconnectMessageTooBig = Disconnect{4501, "message too big"}
	// DisconnectUnauthorized: credentials were missing, wrong or expired.
	DisconnectUnauthorized = Disconnect{4502, "unauthorized"}
)
