package auth

import (
	"context"
	"errors"
	"strings"
)

// Chain tries each Authenticator in turn and returns the first Identity: with
// Chain{static, jwt}, a configured static token is accepted, and anything
// else must be a valid JWT. When all refuse, the error gathers every refusal;
// it is ErrExpired when any of them is, and wraps ErrUnavailable when any
// backend failed, so the client learns the most useful reason.
type Chain []Authenticator

// Authenticate implements Authenticator.
func (c Chain) Authenticate(ctx context.Context, cr *Credentials) (*Identity, error) {
	if len(c) == 0 {
		return nil, unauthenticated("no authenticator configured", nil)
	}
	var errs refusals
	for _, a := range c {
		id, err := a.Authenticate(ctx, cr)
		if err == nil && id != nil {
			return id, nil
		}
		if err == nil {
			err = unauthenticated("authenticator returned no identity", nil)
		}
		errs = append(errs, err)
	}
	if len(errs) == 1 {
		return nil, errs[0]
	}
	kind := ErrUnauthenticated
	if errors.Is(errs, ErrExpired) {
		kind = ErrExpired
	}
	return nil, &Error{Kind: kind, Reason: "no authenticator accepted the credentials", Cause: errs}
}

// refusals are the errors of a Chain, shown on one line.
type refusals []error

func (r refusals) Error() string {
	parts := make([]string, len(r))
	for i, err := range r {
		parts[i] = "(" + err.Error() + ")"
	}
	return strings.Join(parts, " ")
}

func (r refusals) Unwrap() []error { return r }
