package auth

import (
	"context"
	"fmt"
	"strings"
	"time"
)

// Permissions is the built-in Authorizer: it allows what the Identity's own
// Subscribe and Publish patterns grant (from a JWT's claims, a static token's
// configuration, the webhook's answer) and nothing else. An expired identity
// is refused with ErrExpired. The zero value is ready to use.
type Permissions struct {
	// Now returns the current time; nil means time.Now.
	Now func() time.Time
}

// Authorize implements Authorizer.
func (p *Permissions) Authorize(_ context.Context, id *Identity, action Action, subject string) error {
	if err := checkIdentity(id, action, subject, p.now()); err != nil {
		return err
	}
	switch action {
	case Publish:
		if err := checkPattern(subject, false); err != nil {
			return forbidden(id, action, subject, "not a valid subject to publish on: "+err.Error())
		}
		for _, perm := range id.Publish {
			if matchValid(perm, subject) {
				return nil
			}
		}
		return forbidden(id, action, subject, "no publish permission grants it")
	case Subscribe:
		ok, err := Covered(id.Subscribe, subject)
		switch {
		case err != nil:
			return forbidden(id, action, subject, err.Error())
		case !ok && strings.ContainsAny(subject, "+#"):
			return forbidden(id, action, subject, "no subscribe permission covers every subject it matches")
		case !ok:
			return forbidden(id, action, subject, "no subscribe permission grants it")
		}
		return nil
	}
	return forbidden(id, action, subject, "unknown action")
}

func (p *Permissions) now() time.Time {
	if p.Now == nil {
		return time.Now()
	}
	return p.Now()
}

// checkIdentity refuses a missing or expired identity; every built-in
// Authorizer starts with it.
func checkIdentity(id *Identity, action Action, subject string, now time.Time) error {
	if id == nil {
		return &Error{Kind: ErrUnauthenticated, Action: action, Subject: subject, Reason: "no identity"}
	}
	if id.Expired(now) {
		return &Error{Kind: ErrExpired, User: id.Name, Action: action, Subject: subject,
			Reason: fmt.Sprintf("identity expired at %s", id.Expires.UTC().Format(time.RFC3339))}
	}
	return nil
}
