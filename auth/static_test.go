package auth

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func sha256Hex(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

func TestStatic(t *testing.T) {
	clk := newClock()
	s, err := NewStatic(StaticConfig{Tokens: []StaticToken{
		{Name: "dashboard", Token: "dash-secret-0123456789", Subscribe: []string{"/vehicles/#"}},
		{Name: "truck-17", TokenSHA256: sha256Hex("truck-secret"), Publish: []string{"/vehicles/17/#"}},
		{Name: "old", Token: "old-secret", Expires: clk.Now().Add(time.Hour)},
	}}, WithClock(clk.Now))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		creds   Credentials
		want    string // identity name, or "" for a refusal
		wantErr error
		msg     string
	}{
		{Credentials{Token: "dash-secret-0123456789"}, "dashboard", nil, ""},
		{Credentials{Token: "truck-secret"}, "truck-17", nil, ""},
		{Credentials{Protocol: ProtocolMQTT, Username: "truck", Password: "truck-secret"}, "truck-17", nil, ""},
		{Credentials{Protocol: ProtocolWS, Password: "truck-secret"}, "", ErrUnauthenticated, "no token"},
		{Credentials{Token: "dash-secret-012345678"}, "", ErrUnauthenticated, "unknown token"},
		{Credentials{Token: "dash-secret-0123456789x"}, "", ErrUnauthenticated, "unknown token"},
		{Credentials{Token: sha256Hex("truck-secret")}, "", ErrUnauthenticated, "unknown token"},
		{Credentials{}, "", ErrUnauthenticated, "no token"},
		{Credentials{Token: "old-secret"}, "old", nil, ""},
	} {
		id, err := s.Authenticate(t.Context(), &tc.creds)
		if tc.want != "" {
			if err != nil || id.Name != tc.want {
				t.Errorf("%+v: got %+v, %v; want %s", tc.creds, id, err, tc.want)
			}
			continue
		}
		if id != nil || !errors.Is(err, tc.wantErr) || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%+v: got %+v, %v; want %v containing %q", tc.creds, id, err, tc.wantErr, tc.msg)
		}
	}

	// Permissions come with the identity, and mutating them does not reach
	// the configuration.
	id, _ := s.Authenticate(t.Context(), &Credentials{Token: "dash-secret-0123456789"})
	if len(id.Subscribe) != 1 || id.Subscribe[0] != "/vehicles/#" || len(id.Publish) != 0 {
		t.Fatalf("permissions: %+v", id)
	}
	id.Subscribe[0] = "/#"
	id2, _ := s.Authenticate(t.Context(), &Credentials{Token: "dash-secret-0123456789"})
	if id2.Subscribe[0] != "/vehicles/#" {
		t.Fatal("an identity shares its permission slice with the configuration")
	}

	clk.Add(time.Hour)
	_, err = s.Authenticate(t.Context(), &Credentials{Token: "old-secret"})
	if !errors.Is(err, ErrExpired) || !strings.Contains(err.Error(), `"old" may not connect: token expired at 2026-11-21T21:00:00Z`) {
		t.Fatalf("expired static token: %v", err)
	}
}

func TestStaticConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		cfg  StaticConfig
		want string
	}{
		{StaticConfig{}, "no tokens configured"},
		{StaticConfig{Tokens: []StaticToken{{Token: "x"}}}, "name is required"},
		{StaticConfig{Tokens: []StaticToken{{Name: "a"}}}, "token or token.sha256 is required"},
		{StaticConfig{Tokens: []StaticToken{{Name: "a", Token: "x", TokenSHA256: sha256Hex("x")}}}, "not both"},
		{StaticConfig{Tokens: []StaticToken{{Name: "a", TokenSHA256: "abc"}}}, "64 hex digits"},
		{StaticConfig{Tokens: []StaticToken{{Name: "a", Token: "x", Subscribe: []string{"/a/#/b"}}}}, "subscribe: invalid permission pattern"},
		{StaticConfig{Tokens: []StaticToken{{Name: "a", Token: "x", Publish: []string{"a"}}}}, "publish: invalid permission pattern"},
		{StaticConfig{Tokens: []StaticToken{{Name: "a", Token: "x"}, {Name: "b", TokenSHA256: sha256Hex("x")}}},
			`token 2 (name "b"): the same token is configured twice`},
		{StaticConfig{File: "/nonexistent/tokens.json"}, "auth.static.file"},
	} {
		_, err := NewStatic(tc.cfg)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("NewStatic(%+v) = %v, want an error containing %q", tc.cfg, err, tc.want)
		}
	}
}

func TestStaticFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "tokens.json")
	body := `[{"name":"dev","token_sha256":"` + sha256Hex("from-file") + `","subscribe":["/#"],"publish":["/dev/#"]}]`
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := NewStatic(StaticConfig{File: path, Tokens: []StaticToken{{Name: "inline", Token: "inline"}}})
	if err != nil {
		t.Fatal(err)
	}
	for tok, name := range map[string]string{"from-file": "dev", "inline": "inline"} {
		id, err := s.Authenticate(t.Context(), &Credentials{Token: tok})
		if err != nil || id.Name != name {
			t.Errorf("token %q: %+v, %v", tok, id, err)
		}
	}
	if err := os.WriteFile(path, []byte(`[{"name":"x","tokn":"typo"}]`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := NewStatic(StaticConfig{File: path}); err == nil || !strings.Contains(err.Error(), `unknown field "tokn"`) {
		t.Errorf("a misspelt field: %v", err)
	}
}

func TestChain(t *testing.T) {
	static, err := NewStatic(StaticConfig{Tokens: []StaticToken{{Name: "svc", Token: "static-token"}}})
	if err != nil {
		t.Fatal(err)
	}
	expired := AuthenticatorFunc(func(context.Context, *Credentials) (*Identity, error) {
		return nil, &Error{Kind: ErrExpired, Reason: "token expired"}
	})
	byToken := AuthenticatorFunc(func(_ context.Context, c *Credentials) (*Identity, error) {
		if c.Token == "second" {
			return &Identity{Name: "second"}, nil
		}
		return nil, unauthenticated("not mine", nil)
	})
	nilNil := AuthenticatorFunc(func(context.Context, *Credentials) (*Identity, error) { return nil, nil })

	c := Chain{static, byToken}
	for tok, want := range map[string]string{"static-token": "svc", "second": "second"} {
		if id, err := c.Authenticate(t.Context(), &Credentials{Token: tok}); err != nil || id.Name != want {
			t.Errorf("token %q: %+v, %v", tok, id, err)
		}
	}
	_, err = c.Authenticate(t.Context(), &Credentials{Token: "nope"})
	if !errors.Is(err, ErrUnauthenticated) || errors.Is(err, ErrExpired) ||
		!strings.Contains(err.Error(), "(unauthenticated: may not connect: unknown token) (unauthenticated: may not connect: not mine)") {
		t.Errorf("all refuse: %v", err)
	}
	_, err = Chain{static, expired}.Authenticate(t.Context(), &Credentials{Token: "nope"})
	if !errors.Is(err, ErrExpired) {
		t.Errorf("one says expired: %v", err)
	}
	_, err = Chain{nilNil}.Authenticate(t.Context(), &Credentials{})
	if !errors.Is(err, ErrUnauthenticated) || !strings.Contains(err.Error(), "no identity") {
		t.Errorf("nil, nil: %v", err)
	}
	if _, err := (Chain{}).Authenticate(t.Context(), &Credentials{}); !errors.Is(err, ErrUnauthenticated) {
		t.Errorf("empty chain: %v", err)
	}
}
