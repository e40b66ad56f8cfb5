package auth

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// The sentinels every denial wraps; test for them with errors.Is.
var (
	// ErrUnauthenticated: the credentials are missing, malformed, unknown or
	// their signature is wrong. The connection must not proceed.
	ErrUnauthenticated = errors.New("unauthenticated")
	// ErrExpired: the credentials were valid but have expired (or are not yet
	// valid). It wraps ErrUnauthenticated, so a check for that catches both;
	// the client should fetch a new token and reconnect (or refresh in-band).
	ErrExpired = fmt.Errorf("%w: credentials expired", ErrUnauthenticated)
	// ErrForbidden: the identity is known but may not perform the action on
	// the subject. The connection may go on; only the request is refused.
	ErrForbidden = errors.New("forbidden")
	// ErrUnavailable: the backend that decides (the webhook) could not be
	// asked or gave no usable answer. It always comes together with
	// ErrUnauthenticated or ErrForbidden: an unanswered question is a denial.
	ErrUnavailable = errors.New("auth backend unavailable")
)

// Error is a denial. Kind is ErrUnauthenticated, ErrExpired or ErrForbidden;
// errors.Is matches Kind and Cause. Its message names who was refused what:
//
//	forbidden: "alice" may not subscribe to "/vehicles/#": no subscribe permission covers every subject it matches
type Error struct {
	// Kind is the sentinel this denial is.
	Kind error
	// User is the identity's name; empty when unknown (authentication).
	User string
	// Action is what was refused; zero for authentication (connect).
	Action Action
	// Subject is the subject or pattern of a refused Subscribe or Publish.
	Subject string
	// Reason says why, for the client and the audit log.
	Reason string
	// Cause is the underlying error, if any (a timeout, a JWT library error).
	Cause error
}

// Error returns the message.
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.Kind.Error())
	b.WriteString(": ")
	switch {
	case e.Action != 0 && e.User != "":
		fmt.Fprintf(&b, "%s may not %s %s", quote(e.User), verb(e.Action), quote(e.Subject))
	case e.Action != 0:
		fmt.Fprintf(&b, "may not %s %s", verb(e.Action), quote(e.Subject))
	case e.User != "":
		fmt.Fprintf(&b, "%s may not connect", quote(e.User))
	default:
		b.WriteString("may not connect")
	}
	if e.Reason != "" {
		b.WriteString(": ")
		b.WriteString(e.Reason)
	}
	if e.Cause != nil {
		b.WriteString(": ")
		b.WriteString(e.Cause.Error())
	}
	return b.String()
}

// Unwrap returns Kind and Cause.
func (e *Error) Unwrap() []error {
	if e.Cause == nil {
		return []error{e.Kind}
	}
	return []error{e.Kind, e.Cause}
}

func verb(a Action) string {
	switch a {
	case Subscribe:
		return "subscribe to"
	case Publish:
		return "publish on"
	}
	return a.String()
}

// quote quotes s for a message, cut to 64 bytes so that a hostile subject or
// user name cannot flood a log.
func quote(s string) string {
	if len(s) > 64 {
		cut := 64
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		return fmt.Sprintf("%q…", s[:cut])
	}
	return fmt.Sprintf("%q", s)
}

// unauthenticated returns an authentication denial.
func unauthenticated(reason string, cause error) *Error {
	return &Error{Kind: ErrUnauthenticated, Reason: reason, Cause: cause}
}

// forbidden returns an authorization denial.
func forbidden(id *Identity, action Action, subject, reason string) *Error {
	return &Error{Kind: ErrForbidden, User: name(id), Action: action, Subject: subject, Reason: reason}
}

func name(id *Identity) string {
	if id == nil {
		return ""
	}
	return id.Name
}
