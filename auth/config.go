package auth

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Config configures authentication and authorization; New builds them. Each
// built-in's section is read only when Mode or Authorize names it.
type Config struct {
	// Mode lists the authenticators, tried in order until one accepts:
	// "static", "jwt", "webhook", or "allow-all" alone (development only:
	// everyone connects as Anonymous and may do everything). It has no
	// default: empty is an error, so that allow-all is always written by
	// someone who meant it.
	Mode []string
	// Authorize chooses the Authorizer: "permissions" (the identity's own
	// subscribe and publish patterns, from its token or the webhook) or
	// "webhook" (ask the webhook about every subscribe and publish, cached).
	// Empty means "permissions". It must be empty with allow-all.
	Authorize string
	// Anonymous is the identity name allow-all gives everyone; empty means
	// "anonymous".
	Anonymous string
	// Static configures the "static" authenticator.
	Static StaticConfig
	// JWT configures the "jwt" authenticator.
	JWT JWTConfig
	// Webhook configures the "webhook" authenticator and authorizer.
	Webhook WebhookConfig
}

// Auth is an Authenticator and Authorizer pair, as New builds it from a
// Config or Compose from custom implementations. On top of them it
// guarantees what every caller relies on: Authenticate never returns a nil
// Identity without an error, fills in the identity's Protocol and Remote, and
// refuses an already expired identity; Authorize refuses a nil or expired
// identity without asking; every denial, even a custom implementation's plain
// error, wraps one of the sentinels.
type Auth struct {
	authn Authenticator
	authz Authorizer
	dev   bool
	desc  string
	now   func() time.Time
}

// New builds the Auth that cfg describes.
func New(cfg Config, opts ...Option) (*Auth, error) {
	o := buildOptions(opts)
	modes := make([]string, 0, len(cfg.Mode))
	for _, m := range cfg.Mode {
		if m = strings.ToLower(strings.TrimSpace(m)); m != "" {
			modes = append(modes, m)
		}
	}
	if len(modes) == 0 {
		return nil, errors.New("auth.mode is not set: choose static, jwt, webhook (or a list of them), " +
			"or allow-all for development")
	}
	authz := strings.ToLower(strings.TrimSpace(cfg.Authorize))
	if modes[0] == "allow-all" {
		if len(modes) > 1 || authz != "" {
			return nil, errors.New("auth.mode allow-all must stand alone, without auth.authorize")
		}
		name := cfg.Anonymous
		if name == "" {
			name = "anonymous"
		}
		a := NewAllowAll(name)
		return &Auth{authn: a, authz: a, dev: true, now: o.now,
			desc: "allow-all (development only: everyone may connect, subscribe and publish)"}, nil
	}
	var webhook *Webhook
	getWebhook := func() (*Webhook, error) {
		var err error
		if webhook == nil {
			webhook, err = NewWebhook(cfg.Webhook, opts...)
		}
		return webhook, err
	}
	var chain Chain
	for _, m := range modes {
		a, err := buildAuthenticator(m, cfg, opts, getWebhook)
		if err != nil {
			return nil, err
		}
		chain = append(chain, a)
	}
	res := &Auth{authn: chain, now: o.now}
	if len(chain) == 1 {
		res.authn = chain[0]
	}
	switch authz {
	case "", "permissions":
		res.authz, authz = &Permissions{Now: o.now}, "permissions"
	case "webhook":
		w, err := getWebhook()
		if err != nil {
			return nil, err
		}
		res.authz = w
	default:
		return nil, fmt.Errorf("auth.authorize: %q is not one of permissions, webhook", cfg.Authorize)
	}
	res.desc = fmt.Sprintf("authentication %s, authorization %s", strings.Join(modes, " then "), authz)
	return res, nil
}

func buildAuthenticator(mode string, cfg Config, opts []Option, webhook func() (*Webhook, error)) (Authenticator, error) {
	switch mode {
	case "static":
		return NewStatic(cfg.Static, opts...)
	case "jwt":
		return NewJWT(cfg.JWT, opts...)
	case "webhook":
		return webhook()
	case "allow-all":
		return nil, errors.New("auth.mode allow-all must stand alone")
	}
	return nil, fmt.Errorf("auth.mode: %q is not one of allow-all, static, jwt, webhook", mode)
}

// Compose pairs custom (or built-in) implementations into an Auth, with the
// guarantees described on Auth. Only WithClock matters among opts.
func Compose(authn Authenticator, authz Authorizer, opts ...Option) *Auth {
	o := buildOptions(opts)
	return &Auth{authn: authn, authz: authz, now: o.now, desc: "custom"}
}

// Development reports whether this is allow-all, which the caller must
// announce loudly at start-up.
func (a *Auth) Development() bool { return a.dev }

// String describes the configuration for the start-up log, e.g.
// "authentication static then jwt, authorization permissions".
func (a *Auth) String() string { return a.desc }

// Authenticate implements Authenticator. The Identity returned is the
// authenticator's, copied, with Protocol and Remote set from c.
func (a *Auth) Authenticate(ctx context.Context, c *Credentials) (*Identity, error) {
	id, err := a.authn.Authenticate(ctx, c)
	switch {
	case err != nil:
		if !errors.Is(err, ErrUnauthenticated) {
			err = &Error{Kind: ErrUnauthenticated, Cause: err}
		}
		return nil, err
	case id == nil:
		return nil, unauthenticated("authenticator returned no identity", nil)
	}
	cp := *id
	cp.Protocol, cp.Remote = c.Protocol, c.Remote
	if cp.Expired(a.now()) {
		return nil, &Error{Kind: ErrExpired, User: cp.Name,
			Reason: "identity expired at " + cp.Expires.UTC().Format(time.RFC3339)}
	}
	return &cp, nil
}

// Authorize implements Authorizer. A nil or expired identity is refused
// before the Authorizer is asked.
func (a *Auth) Authorize(ctx context.Context, id *Identity, action Action, subject string) error {
	if err := checkIdentity(id, action, subject, a.now()); err != nil {
		return err
	}
	err := a.authz.Authorize(ctx, id, action, subject)
	if err == nil || errors.Is(err, ErrForbidden) || errors.Is(err, ErrUnauthenticated) {
		return err
	}
	return &Error{Kind: ErrForbidden, User: name(id), Action: action, Subject: subject, Cause: err}
}

// Refresh authenticates a connection's new credentials (a WebSocket client
// refreshing its token in-band before it expires) and returns the new
// identity, which replaces old, only if it names the same principal: a
// connection cannot turn into someone else. The new identity's permissions
// apply from then on; the caller should re-authorize the connection's
// subscriptions with them.
func (a *Auth) Refresh(ctx context.Context, old *Identity, c *Credentials) (*Identity, error) {
	id, err := a.Authenticate(ctx, c)
	if err != nil {
		return nil, err
	}
	if old != nil && id.Name != old.Name {
		return nil, &Error{Kind: ErrUnauthenticated, User: old.Name,
			Reason: fmt.Sprintf("the refreshed credentials are for %s, not %s", quote(id.Name), quote(old.Name))}
	}
	return id, nil
}
