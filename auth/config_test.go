package auth

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

func TestNewErrors(t *testing.T) {
	static := StaticConfig{Tokens: []StaticToken{{Name: "a", Token: "t"}}}
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{}, "auth.mode is not set"},
		{Config{Mode: []string{" ", ""}}, "auth.mode is not set"},
		{Config{Mode: []string{"none"}}, `auth.mode: "none" is not one of`},
		{Config{Mode: []string{"allow-all", "static"}, Static: static}, "must stand alone"},
		{Config{Mode: []string{"static", "allow-all"}, Static: static}, "must stand alone"},
		{Config{Mode: []string{"allow-all"}, Authorize: "webhook"}, "must stand alone"},
		{Config{Mode: []string{"static"}}, "auth.static: no tokens"},
		{Config{Mode: []string{"jwt"}}, "auth.jwt: no key"},
		{Config{Mode: []string{"webhook"}}, "auth.webhook.url"},
		{Config{Mode: []string{"static"}, Static: static, Authorize: "webhook"}, "auth.webhook.url"},
		{Config{Mode: []string{"static"}, Static: static, Authorize: "maybe"}, `auth.authorize: "maybe"`},
	} {
		if a, err := New(tc.cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("New(%+v) = %v, %v; want an error containing %q", tc.cfg, a, err, tc.want)
		}
	}
}

func TestNewAllowAll(t *testing.T) {
	a, err := New(Config{Mode: []string{"Allow-All"}})
	if err != nil {
		t.Fatal(err)
	}
	if !a.Development() || !strings.Contains(a.String(), "development only") {
		t.Fatalf("allow-all does not say it is for development: %v", a)
	}
	id, err := a.Authenticate(t.Context(), &Credentials{Protocol: ProtocolMQTT, Remote: "192.0.2.9:1883"})
	if err != nil || id.Name != "anonymous" || id.Protocol != ProtocolMQTT || id.Remote != "192.0.2.9:1883" {
		t.Fatalf("identity %+v, %v", id, err)
	}
	for _, action := range []Action{Subscribe, Publish} {
		if err := a.Authorize(t.Context(), id, action, "/any/thing"); err != nil {
			t.Errorf("%v: %v", action, err)
		}
	}
	a, _ = New(Config{Mode: []string{"allow-all"}, Anonymous: "dev"})
	if id, _ := a.Authenticate(t.Context(), &Credentials{}); id.Name != "dev" {
		t.Fatalf("Anonymous not used: %+v", id)
	}
}

// TestNewChain: static tokens first, then JWT, with a webhook authorizer.
func TestNewChain(t *testing.T) {
	clk := newClock()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte(`{"allow":true}`))
	}))
	defer srv.Close()
	a, err := New(Config{
		Mode:      []string{"static", " JWT "},
		Authorize: "webhook",
		Static:    StaticConfig{Tokens: []StaticToken{{Name: "svc", Token: "static-token"}}},
		JWT:       JWTConfig{Secret: testSecret},
		Webhook:   WebhookConfig{URL: srv.URL},
	}, WithClock(clk.Now))
	if err != nil {
		t.Fatal(err)
	}
	if a.Development() || a.String() != "authentication static then jwt, authorization webhook" {
		t.Fatalf("description %q", a)
	}
	tok := sign(t, jwt.SigningMethodHS256, []byte(testSecret), claimsAt(clk.Now()), nil)
	for token, want := range map[string]string{"static-token": "svc", tok: "truck-17"} {
		id, err := a.Authenticate(t.Context(), &Credentials{Token: token})
		if err != nil || id.Name != want {
			t.Errorf("token %.12s…: %+v, %v", token, id, err)
			continue
		}
		if err := a.Authorize(t.Context(), id, Publish, "/anything"); err != nil {
			t.Errorf("webhook authorizer: %v", err)
		}
	}
	_, err = a.Authenticate(t.Context(), &Credentials{Token: "nope"})
	if !errors.Is(err, ErrUnauthenticated) || !strings.Contains(err.Error(), "unknown token") ||
		!strings.Contains(err.Error(), "invalid token") {
		t.Fatalf("refusal does not name both authenticators' reasons: %v", err)
	}
	// One webhook serves both roles.
	b, err := New(Config{Mode: []string{"webhook"}, Authorize: "webhook", Webhook: WebhookConfig{URL: srv.URL}})
	if err != nil {
		t.Fatal(err)
	}
	if b.authn.(*Webhook) != b.authz.(*Webhook) {
		t.Fatal("two webhook clients for one webhook")
	}
}

func TestAuthGuarantees(t *testing.T) {
	clk := newClock()
	shared := &Identity{Name: "shared", Expires: clk.Now().Add(time.Minute)}
	var authorizerCalls int
	authz := AuthorizerFunc(func(_ context.Context, id *Identity, _ Action, subject string) error {
		authorizerCalls++
		if subject == "/plain" {
			return errors.New("plain refusal")
		}
		return nil
	})
	authn := AuthenticatorFunc(func(_ context.Context, c *Credentials) (*Identity, error) {
		switch c.Token {
		case "nil":
			return nil, nil
		case "plain":
			return nil, errors.New("plain failure")
		case "expired":
			return &Identity{Name: "old", Expires: clk.Now()}, nil
		}
		return shared, nil
	})
	a := Compose(authn, authz, WithClock(clk.Now))
	if a.String() != "custom" || a.Development() {
		t.Fatalf("Compose: %v", a)
	}
	for tok, want := range map[string]error{"nil": ErrUnauthenticated, "plain": ErrUnauthenticated, "expired": ErrExpired} {
		if id, err := a.Authenticate(t.Context(), &Credentials{Token: tok}); id != nil || !errors.Is(err, want) {
			t.Errorf("token %q: %v, %v; want %v", tok, id, err, want)
		}
	}
	id, err := a.Authenticate(t.Context(), &Credentials{Protocol: ProtocolWS, Remote: "192.0.2.1:1"})
	if err != nil || id == shared || id.Remote != "192.0.2.1:1" || shared.Remote != "" {
		t.Fatalf("the authenticator's identity was not copied: %+v, %v", id, err)
	}
	if err := a.Authorize(t.Context(), id, Publish, "/plain"); !errors.Is(err, ErrForbidden) ||
		err.Error() != `forbidden: "shared" may not publish on "/plain": plain refusal` {
		t.Fatalf("plain authorizer error: %v", err)
	}
	calls := authorizerCalls
	if err := a.Authorize(t.Context(), nil, Publish, "/a"); !errors.Is(err, ErrUnauthenticated) {
		t.Fatalf("nil identity: %v", err)
	}
	clk.Add(time.Minute)
	if err := a.Authorize(t.Context(), id, Publish, "/a"); !errors.Is(err, ErrExpired) {
		t.Fatalf("expired identity: %v", err)
	}
	if authorizerCalls != calls {
		t.Fatal("the authorizer was asked about a nil or expired identity")
	}
}

func TestTokenFromRequest(t *testing.T) {
	for _, tc := range []struct {
		header, url, param, want string
	}{
		{"Bearer abc", "/v1/sse", "token", "abc"},
		{"bearer  abc ", "/v1/sse", "", "abc"},
		{"Basic dXNlcg==", "/v1/sse?token=q", "token", "q"},
		{"", "/v1/sse?token=q&x=1", "token", "q"},
		{"", "/v1/sse?token=q", "", ""},
		{"Bearer h", "/v1/sse?token=q", "token", "h"}, // the header wins
		{"", "/v1/sse", "token", ""},
	} {
		r := httptest.NewRequest(http.MethodGet, tc.url, nil)
		if tc.header != "" {
			r.Header.Set("Authorization", tc.header)
		}
		if got := TokenFromRequest(r, tc.param); got != tc.want {
			t.Errorf("%q %q: %q, want %q", tc.header, tc.url, got, tc.want)
		}
	}
	r := httptest.NewRequest(http.MethodGet, "/v1/ws?access_token=x", nil)
	r.Header.Set("Cookie", "c=1")
	c := RequestCredentials(r, ProtocolWS, "access_token")
	if c.Protocol != ProtocolWS || c.Token != "x" || c.Remote != r.RemoteAddr || c.Header.Get("Cookie") != "c=1" {
		t.Fatalf("credentials %+v", c)
	}
	if (&Credentials{Protocol: ProtocolMQTT, Password: "p", Token: "t"}).BearerToken() != "t" {
		t.Fatal("MQTT token field ignored")
	}
}

func TestRefresh(t *testing.T) {
	clk := newClock()
	a, err := New(Config{Mode: []string{"jwt"}, JWT: JWTConfig{Secret: testSecret}}, WithClock(clk.Now))
	if err != nil {
		t.Fatal(err)
	}
	hs := []byte(testSecret)
	first, err := a.Authenticate(t.Context(), &Credentials{Token: sign(t, jwt.SigningMethodHS256, hs, claimsAt(clk.Now()), nil)})
	if err != nil {
		t.Fatal(err)
	}
	clk.Add(50 * time.Minute)
	later := with(claimsAt(clk.Now()), "kedge", map[string]any{"subscribe": []any{"/only/this"}})
	id, err := a.Refresh(t.Context(), first, &Credentials{Protocol: ProtocolWS, Token: sign(t, jwt.SigningMethodHS256, hs, later, nil)})
	if err != nil || !id.Expires.After(first.Expires) || id.Subscribe[0] != "/only/this" || id.Protocol != ProtocolWS {
		t.Fatalf("refresh: %+v, %v", id, err)
	}
	other := with(claimsAt(clk.Now()), "sub", "someone-else")
	_, err = a.Refresh(t.Context(), first, &Credentials{Token: sign(t, jwt.SigningMethodHS256, hs, other, nil)})
	if !errors.Is(err, ErrUnauthenticated) ||
		!strings.Contains(err.Error(), `the refreshed credentials are for "someone-else", not "truck-17"`) {
		t.Fatalf("refresh as someone else: %v", err)
	}
	if _, err := a.Refresh(t.Context(), first, &Credentials{Token: "garbage"}); !errors.Is(err, ErrUnauthenticated) {
		t.Fatalf("refresh with garbage: %v", err)
	}
}
