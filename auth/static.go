package auth

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"time"
)

// StaticConfig configures static tokens: each token a client may present, and
// the identity it stands for.
type StaticConfig struct {
	// Tokens lists the accepted tokens.
	Tokens []StaticToken
	// File names a JSON file holding more tokens: an array of StaticToken
	// objects, e.g. [{"name":"dev","token_sha256":"…","subscribe":["/#"]}].
	// It is read once, by NewStatic. Empty means none. Together Tokens and
	// File must give at least one token.
	File string
}

// StaticToken is one accepted token and the identity it stands for.
type StaticToken struct {
	// Name is the identity's name, for audit and errors. Required.
	Name string `json:"name,omitempty"`
	// Token is the secret as clients send it. Give Token or TokenSHA256, not
	// both.
	Token string `json:"token,omitempty"`
	// TokenSHA256 is the hex SHA-256 of the token, so that the configuration
	// need not hold the secret itself (printf %s "$TOKEN" | sha256sum).
	TokenSHA256 string `json:"token_sha256,omitempty"`
	// Subscribe and Publish are the identity's permission patterns; empty
	// means none.
	Subscribe []string `json:"subscribe,omitempty"`
	Publish   []string `json:"publish,omitempty"`
	// Expires is when the token stops being accepted; zero means never.
	Expires time.Time `json:"expires,omitempty"`
}

// Static authenticates clients by a token listed in the configuration. The
// presented token is hashed and compared with every configured hash in
// constant time, so neither the comparison nor its position leaks anything
// about the secrets.
type Static struct {
	tokens []staticEntry
	now    func() time.Time
}

type staticEntry struct {
	hash [sha256.Size]byte
	id   Identity
}

// NewStatic checks cfg and returns the authenticator.
func NewStatic(cfg StaticConfig, opts ...Option) (*Static, error) {
	o := buildOptions(opts)
	tokens := cfg.Tokens
	if cfg.File != "" {
		more, err := readStaticFile(cfg.File)
		if err != nil {
			return nil, err
		}
		tokens = append(slices.Clip(tokens), more...)
	}
	if len(tokens) == 0 {
		return nil, errors.New("auth.static: no tokens configured")
	}
	s := &Static{now: o.now}
	seen := map[[sha256.Size]byte]bool{}
	for i, t := range tokens {
		e, err := staticEntryFor(t)
		if err != nil {
			return nil, fmt.Errorf("auth.static: token %d (name %q): %w", i+1, t.Name, err)
		}
		if seen[e.hash] {
			return nil, fmt.Errorf("auth.static: token %d (name %q): the same token is configured twice", i+1, t.Name)
		}
		seen[e.hash] = true
		s.tokens = append(s.tokens, e)
	}
	return s, nil
}

func staticEntryFor(t StaticToken) (staticEntry, error) {
	e := staticEntry{id: Identity{Name: t.Name, Expires: t.Expires,
		Subscribe: slices.Clone(t.Subscribe), Publish: slices.Clone(t.Publish)}}
	switch {
	case t.Name == "":
		return e, errors.New("name is required")
	case t.Token != "" && t.TokenSHA256 != "":
		return e, errors.New("give token or token.sha256, not both")
	case t.Token != "":
		e.hash = sha256.Sum256([]byte(t.Token))
	case t.TokenSHA256 != "":
		b, err := hex.DecodeString(t.TokenSHA256)
		if err != nil || len(b) != sha256.Size {
			return e, errors.New("token.sha256 must be 64 hex digits")
		}
		copy(e.hash[:], b)
	default:
		return e, errors.New("token or token.sha256 is required")
	}
	if err := ValidatePermissions(t.Subscribe); err != nil {
		return e, fmt.Errorf("subscribe: %w", err)
	}
	if err := ValidatePermissions(t.Publish); err != nil {
		return e, fmt.Errorf("publish: %w", err)
	}
	return e, nil
}

// Authenticate implements Authenticator. The token is Credentials.BearerToken.
func (s *Static) Authenticate(_ context.Context, c *Credentials) (*Identity, error) {
	tok := c.BearerToken()
	if tok == "" {
		return nil, unauthenticated("no token", nil)
	}
	h := sha256.Sum256([]byte(tok))
	found := -1
	for i := range s.tokens {
		eq := subtle.ConstantTimeCompare(h[:], s.tokens[i].hash[:])
		found = subtle.ConstantTimeSelect(eq, i, found)
	}
	if found < 0 {
		return nil, unauthenticated("unknown token", nil)
	}
	id := s.tokens[found].id
	if id.Expired(s.now()) {
		return nil, &Error{Kind: ErrExpired, User: id.Name,
			Reason: "token expired at " + id.Expires.UTC().Format(time.RFC3339)}
	}
	id.Subscribe, id.Publish = slices.Clone(id.Subscribe), slices.Clone(id.Publish)
	return &id, nil
}

func readStaticFile(path string) ([]StaticToken, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("auth.static.file: %w", err)
	}
	var tokens []StaticToken
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&tokens); err != nil {
		return nil, fmt.Errorf("auth.static.file %s: %w", path, err)
	}
	return tokens, nil
}
