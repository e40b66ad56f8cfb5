package auth

import (
	"context"
	"net/http"
	"time"
)

// Protocol names the protocol a connection speaks.
type Protocol string

// The protocols kedge serves.
const (
	ProtocolWS   Protocol = "ws"   // WebSocket, /v1/ws
	ProtocolSSE  Protocol = "sse"  // Server-Sent Events, /v1/sse
	ProtocolMQTT Protocol = "mqtt" // MQTT over TCP or WebSocket
	ProtocolHTTP Protocol = "http" // HTTP publish and snapshot endpoints
)

// Action is what an Identity asks to do with a subject.
type Action int

// The actions an Authorizer decides.
const (
	// Subscribe receives the messages of a subject or of every subject a
	// pattern matches (a snapshot read counts as a subscribe).
	Subscribe Action = iota + 1
	// Publish sends a message to a subject; never a pattern.
	Publish
)

// String returns "subscribe" or "publish".
func (a Action) String() string {
	switch a {
	case Subscribe:
		return "subscribe"
	case Publish:
		return "publish"
	}
	return "unknown action"
}

// Credentials are what a connection presents when it opens. The protocol
// adapter fills in what its protocol carries and leaves the rest empty.
type Credentials struct {
	// Protocol is the protocol of the connection.
	Protocol Protocol
	// Remote is the client's network address, "host:port".
	Remote string
	// Token is a bearer token: from an "Authorization: Bearer" header, a query
	// parameter (SSE), or the first frame (WebSocket).
	Token string
	// Username and Password are MQTT's CONNECT fields. By convention an MQTT
	// client that holds a token sends it as the password; see BearerToken.
	Username string
	Password string
	// Header holds the HTTP request headers (WebSocket, SSE, HTTP and MQTT
	// over WebSocket); nil for MQTT over TCP. Treat it as read-only.
	Header http.Header
}

// BearerToken returns Token, or for MQTT, when Token is empty, Password: the
// built-in token authenticators accept a token either way.
func (c *Credentials) BearerToken() string {
	if c.Token == "" && c.Protocol == ProtocolMQTT {
		return c.Password
	}
	return c.Token
}

// Identity is who a connection is once authenticated, and what it may do.
// Authenticators create it; treat it as immutable once returned, since
// concurrent Authorize calls read it.
type Identity struct {
	// Name is the principal: the JWT "sub" claim, a static token's name, the
	// webhook's answer. It appears in audit events and error messages.
	Name string
	// Expires is when the identity stops being valid (a token's expiry); the
	// zero time means never. The connection is closed when it passes.
	Expires time.Time
	// Subscribe lists the subject patterns the identity may subscribe to, in
	// the permission syntax of Covered ("/vehicles/#", "/+/status").
	Subscribe []string
	// Publish lists the subject patterns the identity may publish on.
	Publish []string
	// Claims carries whatever else the authenticator knows: a JWT's claims,
	// the webhook's "claims" object. Custom Authorizers may use it.
	Claims map[string]any
	// Protocol and Remote are copied from the Credentials by Auth.Authenticate
	// (an Authenticator need not set them).
	Protocol Protocol
	Remote   string
}

// Expired reports whether the identity has expired at now.
func (id *Identity) Expired(now time.Time) bool {
	return !id.Expires.IsZero() && !now.Before(id.Expires)
}

// Authenticator turns Credentials into an Identity. It returns an error
// wrapping ErrUnauthenticated (or ErrExpired) to refuse; it must never return a
// nil Identity with a nil error. It is called once per connection (and again
// when a WebSocket client refreshes its token), and must be safe for
// concurrent use.
type Authenticator interface {
	Authenticate(ctx context.Context, c *Credentials) (*Identity, error)
}

// Authorizer decides whether id may perform action on subject. For Subscribe
// the subject may be a pattern ("/vehicles/+/speed"), which must be allowed
// only if every subject it can match is allowed. It returns nil to allow, or
// an error wrapping ErrForbidden, ErrExpired or ErrUnauthenticated to deny.
//
// The caller has already checked that subject is well formed. Publish is
// checked for every message, so Authorize must be fast and safe for
// concurrent use.
type Authorizer interface {
	Authorize(ctx context.Context, id *Identity, action Action, subject string) error
}

// AuthenticatorFunc adapts a function to the Authenticator interface.
type AuthenticatorFunc func(ctx context.Context, c *Credentials) (*Identity, error)

// Authenticate calls f.
func (f AuthenticatorFunc) Authenticate(ctx context.Context, c *Credentials) (*Identity, error) {
	return f(ctx, c)
}

// AuthorizerFunc adapts a function to the Authorizer interface.
type AuthorizerFunc func(ctx context.Context, id *Identity, action Action, subject string) error

// Authorize calls f.
func (f AuthorizerFunc) Authorize(ctx context.Context, id *Identity, action Action, subject string) error {
	return f(ctx, id, action, subject)
}
