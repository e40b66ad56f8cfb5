package auth

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// maxTokenLen bounds the token a JWT authenticator will look at.
const maxTokenLen = 16 << 10

// jwtAlgs are the only algorithms accepted.
var jwtAlgs = []string{"HS256", "RS256", "ES256"}

// JWTConfig configures JWT authentication. At least one of Secret,
// PublicKeys, PublicKeyFiles and JWKSFile must be given; all given keys are
// used.
//
// The token's permissions are read from the claim named by Claim, an object:
//
//	{"sub": "truck-17", "exp": 1767225600,
//	 "kedge": {"subscribe": ["/vehicles/17/#", "/alerts/+"], "publish": ["/vehicles/17/position"]}}
//
// A token without the claim authenticates with no permissions.
type JWTConfig struct {
	// Secret is the HS256 shared secret, at least 32 bytes (RFC 7518 §3.2).
	// Empty means HS256 tokens are refused.
	Secret string
	// PublicKeys are PEM-encoded public keys ("PUBLIC KEY", "RSA PUBLIC KEY"
	// or "CERTIFICATE" blocks): RSA keys of 2048 bits or more verify RS256,
	// P-256 EC keys verify ES256.
	PublicKeys []string
	// PublicKeyFiles are files of PEM-encoded public keys, read once, by
	// NewJWT.
	PublicKeyFiles []string
	// JWKSFile is a JSON Web Key Set file of RSA and P-256 EC public keys
	// (other keys in it are ignored). It is re-read when its modification
	// time or size changes, so keys can be rotated without a restart; a key's
	// "kid" is matched against the token's.
	JWKSFile string
	// JWKSCheckInterval is how often, at most, the JWKS file is checked for a
	// change; zero means 10s.
	JWKSCheckInterval time.Duration
	// Issuer, when set, must equal the token's "iss" claim.
	Issuer string
	// Audience, when set, must be one of the token's "aud" values.
	Audience string
	// Leeway is the clock skew tolerated when checking "exp", "nbf" and
	// "iat"; zero means 30s, a negative value means none. An identity
	// expires Leeway after the token's "exp".
	Leeway time.Duration
	// AllowNoExpiry accepts tokens without an "exp" claim, which then never
	// expire. The default refuses them.
	AllowNoExpiry bool
	// Claim names the claim holding the permissions; empty means "kedge".
	// Identity providers that require namespaced claims may use a URL here.
	Claim string
}

// JWT authenticates clients by a signed JSON Web Token: HS256, RS256 or
// ES256, verified with github.com/golang-jwt/jwt/v5. The token's "sub" claim
// (required) is the identity's name; its permissions come from the claim
// JWTConfig.Claim; all claims are kept in Identity.Claims.
//
// Only those three algorithms are accepted ("none" never), and each only with
// its own kind of key: an HS256 token is never checked against an RSA public
// key used as a secret.
type JWT struct {
	keys   []verifyKey // from the configuration
	jwks   *jwksSource // nil without a JWKS file
	parser *jwt.Parser
	claim  string
	leeway time.Duration
	now    func() time.Time
}

// NewJWT checks cfg, reads its keys and returns the authenticator.
func NewJWT(cfg JWTConfig, opts ...Option) (*JWT, error) {
	o := buildOptions(opts)
	j := &JWT{claim: cfg.Claim, leeway: cfg.Leeway, now: o.now}
	if j.claim == "" {
		j.claim = "kedge"
	}
	switch {
	case j.leeway == 0:
		j.leeway = 30 * time.Second
	case j.leeway < 0:
		j.leeway = 0
	}
	if err := j.loadKeys(cfg); err != nil {
		return nil, err
	}
	if cfg.JWKSFile != "" {
		every := cfg.JWKSCheckInterval
		if every <= 0 {
			every = 10 * time.Second
		}
		src, err := newJWKSSource(cfg.JWKSFile, every, o)
		if err != nil {
			return nil, err
		}
		j.jwks = src
	}
	if len(j.keys) == 0 && j.jwks == nil {
		return nil, errors.New("auth.jwt: no key: set secret, public.keys, public.key.files or jwks.file")
	}
	popts := []jwt.ParserOption{
		jwt.WithValidMethods(jwtAlgs),
		jwt.WithLeeway(j.leeway),
		jwt.WithTimeFunc(o.now),
		jwt.WithIssuedAt(),
		jwt.WithStrictDecoding(),
	}
	if !cfg.AllowNoExpiry {
		popts = append(popts, jwt.WithExpirationRequired())
	}
	if cfg.Issuer != "" {
		popts = append(popts, jwt.WithIssuer(cfg.Issuer))
	}
	if cfg.Audience != "" {
		popts = append(popts, jwt.WithAudience(cfg.Audience))
	}
	j.parser = jwt.NewParser(popts...)
	return j, nil
}

func (j *JWT) loadKeys(cfg JWTConfig) error {
	if cfg.Secret != "" {
		if len(cfg.Secret) < 32 {
			return errors.New("auth.jwt.secret: an HS256 secret must be at least 32 bytes")
		}
		j.keys = append(j.keys, verifyKey{alg: "HS256", key: []byte(cfg.Secret)})
	}
	for i, text := range cfg.PublicKeys {
		keys, err := parsePEMKeys([]byte(text))
		if err != nil {
			return fmt.Errorf("auth.jwt.public.keys[%d]: %w", i, err)
		}
		j.keys = append(j.keys, keys...)
	}
	for _, path := range cfg.PublicKeyFiles {
		b, err := os.ReadFile(path)
		if err != nil {
			return fmt.Errorf("auth.jwt.public.key.files: %w", err)
		}
		keys, err := parsePEMKeys(b)
		if err != nil {
			return fmt.Errorf("auth.jwt.public.key.files: %s: %w", path, err)
		}
		j.keys = append(j.keys, keys...)
	}
	return nil
}

// Authenticate implements Authenticator. The token is Credentials.BearerToken.
func (j *JWT) Authenticate(_ context.Context, c *Credentials) (*Identity, error) {
	tok := c.BearerToken()
	switch {
	case tok == "":
		return nil, unauthenticated("no token", nil)
	case len(tok) > maxTokenLen:
		return nil, unauthenticated(fmt.Sprintf("token longer than %d bytes", maxTokenLen), nil)
	}
	claims := jwt.MapClaims{}
	if t, err := j.parser.ParseWithClaims(tok, claims, j.keyFor); err != nil {
		return nil, j.deny(err, t, claims)
	}
	sub, err := claims.GetSubject()
	if err != nil || sub == "" {
		return nil, unauthenticated(`token has no "sub" claim`, nil)
	}
	id := &Identity{Name: sub, Claims: claims}
	if exp, _ := claims.GetExpirationTime(); exp != nil {
		id.Expires = exp.Add(j.leeway)
	}
	if id.Subscribe, id.Publish, err = permissionsClaim(claims, j.claim); err != nil {
		return nil, &Error{Kind: ErrUnauthenticated, User: sub, Reason: err.Error()}
	}
	return id, nil
}

// keyFor offers the keys that may verify t: those of t's algorithm, and of its
// "kid" when both name one.
func (j *JWT) keyFor(t *jwt.Token) (any, error) {
	alg := t.Method.Alg()
	kid, _ := t.Header["kid"].(string)
	var set jwt.VerificationKeySet
	add := func(keys []verifyKey) {
		for _, k := range keys {
			if k.alg == alg && (kid == "" || k.kid == "" || k.kid == kid) {
				set.Keys = append(set.Keys, k.key)
			}
		}
	}
	add(j.keys)
	if j.jwks != nil {
		add(j.jwks.current())
	}
	if len(set.Keys) == 0 {
		if kid != "" {
			return nil, fmt.Errorf("no %s key with kid %s", alg, quote(kid))
		}
		return nil, fmt.Errorf("no %s key configured", alg)
	}
	return set, nil
}

// deny turns the JWT library's error into a denial.
func (j *JWT) deny(err error, t *jwt.Token, claims jwt.MapClaims) error {
	user, _ := claims.GetSubject()
	if t != nil && t.Method != nil && !slices.Contains(jwtAlgs, t.Method.Alg()) {
		return unauthenticated(fmt.Sprintf("invalid token: algorithm %s is not accepted (only %s)",
			quote(t.Method.Alg()), strings.Join(jwtAlgs, ", ")), nil)
	}
	switch {
	case errors.Is(err, jwt.ErrTokenExpired):
		reason := "token expired"
		if exp, _ := claims.GetExpirationTime(); exp != nil {
			reason += " at " + exp.UTC().Format(time.RFC3339)
		}
		return &Error{Kind: ErrExpired, User: user, Reason: reason}
	case errors.Is(err, jwt.ErrTokenNotValidYet):
		return &Error{Kind: ErrExpired, User: user, Reason: "token not valid yet (nbf)"}
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		// Claims of a token with a bad signature are not to be believed.
		return unauthenticated("invalid token signature", nil)
	case errors.Is(err, jwt.ErrTokenMalformed), errors.Is(err, jwt.ErrTokenUnverifiable):
		return unauthenticated("invalid token", err)
	}
	return &Error{Kind: ErrUnauthenticated, User: user, Reason: "invalid token", Cause: err}
}

// permissionsClaim reads {"subscribe": [...], "publish": [...]} from claim.
func permissionsClaim(claims jwt.MapClaims, claim string) (sub, pub []string, err error) {
	raw, ok := claims[claim]
	if !ok {
		return nil, nil, nil
	}
	obj, ok := raw.(map[string]any)
	if !ok {
		return nil, nil, fmt.Errorf("claim %q must be an object", claim)
	}
	if sub, err = stringList(obj, "subscribe", claim); err != nil {
		return nil, nil, err
	}
	if pub, err = stringList(obj, "publish", claim); err != nil {
		return nil, nil, err
	}
	return sub, pub, nil
}

func stringList(obj map[string]any, field, claim string) ([]string, error) {
	raw, ok := obj[field]
	if !ok || raw == nil {
		return nil, nil
	}
	list, ok := raw.([]any)
	if !ok {
		return nil, fmt.Errorf("claim %q: %q must be a list of strings", claim, field)
	}
	out := make([]string, 0, len(list))
	for _, v := range list {
		s, ok := v.(string)
		if !ok {
			return nil, fmt.Errorf("claim %q: %q must be a list of strings", claim, field)
		}
		if err := ValidatePermission(s); err != nil {
			return nil, fmt.Errorf("claim %q: %q: %w", claim, field, err)
		}
		out = append(out, s)
	}
	return out, nil
}
