// Package auth decides who may connect to kedge and what they may subscribe to
// and publish on, and records what they did. It owns kedge's authentication and
// authorization extension API and the audit trail:
//
//   - Authenticator turns a connection's Credentials (a bearer token, MQTT
//     username and password, request headers) into an Identity, or refuses.
//   - Authorizer decides whether an Identity may subscribe to a subject or a
//     pattern, or publish on a subject.
//   - Sink receives audit Events: connects, disconnects, subscribes, publishes
//     and every denial.
//
// Every protocol adapter (WebSocket, SSE, MQTT, HTTP publish) calls the same
// two interfaces, so a user is treated alike whichever protocol they speak.
//
// # Built-in implementations
//
// JWT (HS256, RS256, ES256, keys from configuration or a JWKS file), static
// tokens from configuration, a webhook to the user's own backend (cached, with
// a timeout), and AllowAll for development. An Identity carries the subject
// patterns it may subscribe to and publish on; Permissions authorizes against
// them. Chain tries several authenticators in order. New builds all of these
// from a Config.
//
// # Permission patterns
//
// Permissions are written like subscription patterns: "/vehicles/+/speed",
// "/vehicles/#". In a permission, unlike in a subscription, the topic segment
// may be a wildcard too: "/#" grants every subject, "/+/status" the subject
// "status" under every topic. A subscription pattern is authorized only when
// every subject it can match is granted (see Covered): "/vehicles/#" covers
// "/vehicles/+/speed", never the other way round.
//
// # Errors
//
// Every denial is an *Error wrapping one of ErrUnauthenticated, ErrExpired or
// ErrForbidden (and ErrUnavailable when a backend could not answer), with a
// message that names the user, the action and the subject that was refused.
//
// auth is a leaf: it imports no other kedge package, so core and every
// protocol adapter may import it.
package auth
