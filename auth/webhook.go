package auth

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
)

// maxWebhookAnswer bounds the body read from the webhook.
const maxWebhookAnswer = 1 << 20

// WebhookConfig configures the webhook: kedge asks the user's backend, by an
// HTTP POST of a JSON body, whether to accept a connection (authenticate) or
// an action (authorize). docs/auth.md describes the bodies.
type WebhookConfig struct {
	// URL receives the POSTs: http or https. Required.
	URL string
	// Timeout bounds each call; zero means 2s. A call that times out denies.
	Timeout time.Duration
	// CacheSize is how many answers are kept; zero means 10000, a negative
	// value disables the cache. Answers are reused for CacheTTL; a backend
	// failure is never cached.
	CacheSize int
	// CacheTTL is how long an answer is reused; zero means 30s. An
	// authenticated identity is never reused past its own expiry.
	CacheTTL time.Duration
	// Secret, when set, is sent as "Authorization: Bearer <Secret>", so the
	// backend can tell kedge's calls from anyone else's.
	Secret string
	// ForwardHeaders names the client's request headers copied into an
	// authenticate call; empty means Authorization and Cookie.
	ForwardHeaders []string
}

// Webhook authenticates and authorizes by asking the user's backend. It is
// both an Authenticator and an Authorizer; either role may be used alone
// (e.g. JWT authentication with webhook authorization). Answers are cached
// (bounded in size and time), concurrent identical questions share one call,
// and any failure — a timeout, a status other than 200, 401 and 403, a body
// that is not the expected JSON — denies with ErrUnavailable.
type Webhook struct {
	url     string
	timeout time.Duration
	ttl     time.Duration
	secret  string
	forward []string
	client  *http.Client
	logger  *slog.Logger
	now     func() time.Time
	authn   *ttlCache[*webhookAnswer]
	authz   *ttlCache[*webhookAnswer]

	mu       sync.Mutex
	inflight map[string]*webhookCall
}

// webhookAnswer is the body the backend returns (and what is cached).
type webhookAnswer struct {
	Allow     bool           `json:"allow"`
	Reason    string         `json:"reason,omitempty"`
	Name      string         `json:"name,omitempty"`
	Expires   time.Time      `json:"expires,omitzero"`
	Subscribe []string       `json:"subscribe,omitempty"`
	Publish   []string       `json:"publish,omitempty"`
	Claims    map[string]any `json:"claims,omitempty"`
}

// webhookRequest is the body kedge sends.
type webhookRequest struct {
	Type     string              `json:"type"` // "authenticate" or "authorize"
	Protocol Protocol            `json:"protocol,omitempty"`
	Remote   string              `json:"remote,omitempty"`
	Token    string              `json:"token,omitempty"`
	Username string              `json:"username,omitempty"`
	Password string              `json:"password,omitempty"`
	Headers  map[string][]string `json:"headers,omitempty"`
	Identity *webhookIdentity    `json:"identity,omitempty"`
	Action   string              `json:"action,omitempty"`
	Subject  string              `json:"subject,omitempty"`
}

type webhookIdentity struct {
	Name   string         `json:"name"`
	Claims map[string]any `json:"claims,omitempty"`
}

type webhookCall struct {
	done   chan struct{}
	ans    *webhookAnswer
	err    error
	askers int // guarded by Webhook.mu; for tests and metrics
}

// NewWebhook checks cfg and returns the webhook client.
func NewWebhook(cfg WebhookConfig, opts ...Option) (*Webhook, error) {
	o := buildOptions(opts)
	u, err := url.Parse(cfg.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("auth.webhook.url: %q is not an http or https URL", cfg.URL)
	}
	w := &Webhook{url: cfg.URL, timeout: cfg.Timeout, ttl: cfg.CacheTTL, secret: cfg.Secret,
		forward: cfg.ForwardHeaders, client: o.client, logger: o.logger, now: o.now,
		inflight: map[string]*webhookCall{}}
	if w.timeout <= 0 {
		w.timeout = 2 * time.Second
	}
	if w.ttl <= 0 {
		w.ttl = 30 * time.Second
	}
	if len(w.forward) == 0 {
		w.forward = []string{"Authorization", "Cookie"}
	}
	size := cfg.CacheSize
	if size == 0 {
		size = 10000
	}
	w.authn = newTTLCache[*webhookAnswer](size, o.now)
	w.authz = newTTLCache[*webhookAnswer](size, o.now)
	return w, nil
}

// Authenticate implements Authenticator: it posts a "type":"authenticate" body.
func (w *Webhook) Authenticate(ctx context.Context, c *Credentials) (*Identity, error) {
	req := &webhookRequest{Type: "authenticate", Protocol: c.Protocol, Remote: c.Remote,
		Token: c.Token, Username: c.Username, Password: c.Password, Headers: w.headers(c.Header)}
	key := cacheKey(req.Type, string(req.Protocol), hostOf(req.Remote), req.Token, req.Username, req.Password,
		fmt.Sprint(req.Headers))
	ans, err := w.ask(ctx, w.authn, key, req, w.validIdentity)
	if err != nil {
		return nil, &Error{Kind: ErrUnauthenticated, Reason: "webhook", Cause: err}
	}
	if !ans.Allow {
		return nil, &Error{Kind: ErrUnauthenticated, User: ans.Name, Reason: orDefault(ans.Reason, "refused by the webhook")}
	}
	id := &Identity{Name: ans.Name, Expires: ans.Expires, Subscribe: ans.Subscribe,
		Publish: ans.Publish, Claims: ans.Claims}
	if id.Expired(w.now()) {
		return nil, &Error{Kind: ErrExpired, User: id.Name,
			Reason: "webhook identity expired at " + id.Expires.UTC().Format(time.RFC3339)}
	}
	return id, nil
}

// Authorize implements Authorizer: it posts a "type":"authorize" body.
func (w *Webhook) Authorize(ctx context.Context, id *Identity, action Action, subject string) error {
	if err := checkIdentity(id, action, subject, w.now()); err != nil {
		return err
	}
	req := &webhookRequest{Type: "authorize", Protocol: id.Protocol, Remote: id.Remote,
		Identity: &webhookIdentity{Name: id.Name, Claims: id.Claims}, Action: action.String(), Subject: subject}
	key := cacheKey(req.Type, string(id.Protocol), id.Name, action.String(), subject)
	ans, err := w.ask(ctx, w.authz, key, req, nil)
	if err != nil {
		return &Error{Kind: ErrForbidden, User: id.Name, Action: action, Subject: subject, Reason: "webhook", Cause: err}
	}
	if !ans.Allow {
		return forbidden(id, action, subject, orDefault(ans.Reason, "refused by the webhook"))
	}
	return nil
}

// ask returns the cached answer for key, or asks the backend (one call for
// all concurrent askers of the same key) and caches a definite answer.
func (w *Webhook) ask(ctx context.Context, cache *ttlCache[*webhookAnswer], key string,
	req *webhookRequest, check func(*webhookAnswer) error) (*webhookAnswer, error) {
	if ans, ok := cache.get(key); ok {
		return ans, nil
	}
	w.mu.Lock()
	call, ok := w.inflight[key]
	if !ok {
		call = &webhookCall{done: make(chan struct{})}
		w.inflight[key] = call
		go w.run(cache, key, req, check, call)
	}
	call.askers++
	w.mu.Unlock()
	select {
	case <-call.done:
		return call.ans, call.err
	case <-ctx.Done():
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, ctx.Err())
	}
}

// run makes one call on behalf of every asker of key. It does not depend on
// any asker's context; the timeout bounds it.
func (w *Webhook) run(cache *ttlCache[*webhookAnswer], key string, req *webhookRequest,
	check func(*webhookAnswer) error, call *webhookCall) {
	ans, err := w.post(req)
	if err == nil && check != nil && ans.Allow {
		err = check(ans)
	}
	if err != nil {
		w.logger.Warn("auth: webhook failed", "url", w.url, "type", req.Type, "error", err)
		err = fmt.Errorf("%w: %s", ErrUnavailable, publicReason(err))
	} else {
		expires := w.now().Add(w.ttl)
		if !ans.Expires.IsZero() && ans.Expires.Before(expires) {
			expires = ans.Expires
		}
		cache.add(key, ans, expires)
	}
	call.ans, call.err = ans, err
	w.mu.Lock()
	delete(w.inflight, key)
	w.mu.Unlock()
	close(call.done)
}

// webhookFailure is a failure whose short text may be shown to clients; the
// full error, which may name the backend's address, is only logged.
type webhookFailure struct {
	public string
	err    error
}

func (f *webhookFailure) Error() string { return f.public + ": " + f.err.Error() }
func (f *webhookFailure) Unwrap() error { return f.err }

func publicReason(err error) string {
	var f *webhookFailure
	if errors.As(err, &f) {
		return f.public
	}
	return err.Error()
}

func (w *Webhook) post(req *webhookRequest) (*webhookAnswer, error) {
	body, err := json.Marshal(req)
	if err != nil {
		return nil, &webhookFailure{"request not encodable", err}
	}
	ctx, cancel := context.WithTimeout(context.Background(), w.timeout)
	defer cancel()
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, w.url, bytes.NewReader(body))
	if err != nil {
		return nil, &webhookFailure{"bad request", err}
	}
	hreq.Header.Set("Content-Type", "application/json")
	if w.secret != "" {
		hreq.Header.Set("Authorization", "Bearer "+w.secret)
	}
	resp, err := w.client.Do(hreq)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return nil, &webhookFailure{fmt.Sprintf("no answer within %s", w.timeout), err}
		}
		return nil, &webhookFailure{"request failed", err}
	}
	defer func() { _ = resp.Body.Close() }()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxWebhookAnswer))
	if err != nil {
		return nil, &webhookFailure{"answer not read", err}
	}
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusUnauthorized, http.StatusForbidden:
		ans := &webhookAnswer{}
		_ = json.Unmarshal(data, ans) // a reason, if the body has one
		ans.Allow = false
		return ans, nil
	default:
		return nil, &webhookFailure{fmt.Sprintf("answered %s", resp.Status), errors.New(resp.Status)}
	}
	ans := &webhookAnswer{}
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(ans); err != nil {
		return nil, &webhookFailure{"answer is not the expected JSON", err}
	}
	return ans, nil
}

// validIdentity checks an authenticate answer that allows.
func (w *Webhook) validIdentity(ans *webhookAnswer) error {
	if ans.Name == "" {
		return &webhookFailure{`answer allows but has no "name"`, errors.New("no name")}
	}
	if err := ValidatePermissions(ans.Subscribe); err != nil {
		return &webhookFailure{"answer has an invalid subscribe permission", err}
	}
	if err := ValidatePermissions(ans.Publish); err != nil {
		return &webhookFailure{"answer has an invalid publish permission", err}
	}
	return nil
}

func (w *Webhook) headers(h http.Header) map[string][]string {
	var out map[string][]string
	for _, name := range w.forward {
		if v := h.Values(name); len(v) > 0 {
			if out == nil {
				out = map[string][]string{}
			}
			out[http.CanonicalHeaderKey(name)] = v
		}
	}
	return out
}

// cacheKey hashes parts, so that secrets are not kept as map keys and every
// key has the same size.
func cacheKey(parts ...string) string {
	h := sha256.New()
	for _, p := range parts {
		_, _ = fmt.Fprintf(h, "%d:%s", len(p), p) // length-prefixed: unambiguous
	}
	return hex.EncodeToString(h.Sum(nil))
}

// hostOf returns the host of "host:port" (answers are cached per client
// address, not per connection).
func hostOf(remote string) string {
	if host, _, err := net.SplitHostPort(remote); err == nil {
		return host
	}
	return remote
}

func orDefault(s, def string) string {
	if strings.TrimSpace(s) == "" {
		return def
	}
	return s
}
