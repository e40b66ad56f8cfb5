package auth

import "context"

// AllowAll authenticates every connection and authorizes every action. It is
// for development only: kedge's embedded development default uses it and says
// so at start-up. Never expose it to the Internet.
//
// It must be built with NewAllowAll: the zero value refuses everything, so
// that forgetting to configure authentication can never mean "allow all".
type AllowAll struct {
	on   bool
	name string
}

// NewAllowAll returns an AllowAll whose identities are called name (e.g.
// "anonymous") and may subscribe and publish everywhere.
func NewAllowAll(name string) *AllowAll {
	return &AllowAll{on: true, name: name}
}

// Authenticate implements Authenticator: every connection is name, with the
// permissions "/#" to subscribe and publish.
func (a *AllowAll) Authenticate(_ context.Context, _ *Credentials) (*Identity, error) {
	if a == nil || !a.on {
		return nil, unauthenticated("auth.AllowAll was not built with NewAllowAll", nil)
	}
	return &Identity{Name: a.name, Subscribe: []string{"/#"}, Publish: []string{"/#"}}, nil
}

// Authorize implements Authorizer: everything is allowed, whatever the
// identity (even nil).
func (a *AllowAll) Authorize(_ context.Context, id *Identity, action Action, subject string) error {
	if a == nil || !a.on {
		return forbidden(id, action, subject, "auth.AllowAll was not built with NewAllowAll")
	}
	return nil
}
