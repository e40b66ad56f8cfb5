package auth

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"log/slog"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

const testSecret = "0123456789abcdef0123456789abcdef-test"

// testKeys are generated once: RSA key generation is slow.
var testKeys = sync.OnceValue(func() (k struct {
	rsa, rsa2 *rsa.PrivateKey
	ec, ec2   *ecdsa.PrivateKey
},
) {
	var err error
	for _, p := range []**rsa.PrivateKey{&k.rsa, &k.rsa2} {
		if *p, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			panic(err)
		}
	}
	for _, p := range []**ecdsa.PrivateKey{&k.ec, &k.ec2} {
		if *p, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
			panic(err)
		}
	}
	return k
})

func pemPublic(t testing.TB, key any) string {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
}

// sign makes a token; header entries override the defaults.
func sign(t testing.TB, method jwt.SigningMethod, key any, claims jwt.MapClaims, header map[string]any) string {
	t.Helper()
	tok := jwt.NewWithClaims(method, claims)
	for k, v := range header {
		tok.Header[k] = v
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// claimsAt returns valid claims for a token issued at now.
func claimsAt(now time.Time) jwt.MapClaims {
	return jwt.MapClaims{
		"sub": "truck-17", "iat": now.Unix(), "exp": now.Add(time.Hour).Unix(),
		"kedge": map[string]any{"subscribe": []any{"/vehicles/17/#", "/alerts/+"}, "publish": []any{"/vehicles/17/position"}},
	}
}

func with(c jwt.MapClaims, kv ...any) jwt.MapClaims {
	out := jwt.MapClaims{}
	for k, v := range c {
		out[k] = v
	}
	for i := 0; i < len(kv); i += 2 {
		if kv[i+1] == nil {
			delete(out, kv[i].(string))
		} else {
			out[kv[i].(string)] = kv[i+1]
		}
	}
	return out
}

func newTestJWT(t testing.TB, clk *clock, cfg JWTConfig) *JWT {
	t.Helper()
	j, err := NewJWT(cfg, WithClock(clk.Now))
	if err != nil {
		t.Fatal(err)
	}
	return j
}

func TestJWTAccepts(t *testing.T) {
	k := testKeys()
	clk := newClock()
	now := clk.Now()
	j := newTestJWT(t, clk, JWTConfig{Secret: testSecret,
		PublicKeys: []string{pemPublic(t, &k.rsa.PublicKey), pemPublic(t, &k.ec.PublicKey)}})
	for name, tok := range map[string]string{
		"HS256": sign(t, jwt.SigningMethodHS256, []byte(testSecret), claimsAt(now), nil),
		"RS256": sign(t, jwt.SigningMethodRS256, k.rsa, claimsAt(now), nil),
		"ES256": sign(t, jwt.SigningMethodES256, k.ec, claimsAt(now), nil),
	} {
		id, err := j.Authenticate(t.Context(), &Credentials{Token: tok})
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if id.Name != "truck-17" || !id.Expires.Equal(now.Add(time.Hour+30*time.Second)) ||
			strings.Join(id.Subscribe, " ") != "/vehicles/17/# /alerts/+" ||
			strings.Join(id.Publish, " ") != "/vehicles/17/position" || id.Claims["sub"] != "truck-17" {
			t.Errorf("%s: identity %+v", name, id)
		}
		// MQTT: the token as the password.
		if _, err := j.Authenticate(t.Context(), &Credentials{Protocol: ProtocolMQTT, Username: "x", Password: tok}); err != nil {
			t.Errorf("%s as MQTT password: %v", name, err)
		}
	}
}

func TestJWTRefuses(t *testing.T) {
	k := testKeys()
	clk := newClock()
	now := clk.Now()
	rsaPEM := pemPublic(t, &k.rsa.PublicKey)
	j := newTestJWT(t, clk, JWTConfig{Secret: testSecret, PublicKeys: []string{rsaPEM, pemPublic(t, &k.ec.PublicKey)},
		Issuer: "https://id.example", Audience: "kedge"})
	good := with(claimsAt(now), "iss", "https://id.example", "aud", []any{"other", "kedge"})
	hs := []byte(testSecret)
	none := sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, good, nil)

	for _, tc := range []struct {
		name    string
		token   string
		wantErr error // nil: accepted
		msg     string
	}{
		{"valid", sign(t, jwt.SigningMethodHS256, hs, good, nil), nil, ""},
		{"alg none", none, ErrUnauthenticated, `algorithm "none" is not accepted (only HS256, RS256, ES256)`},
		{"alg none, no signature part", strings.TrimSuffix(none, "."), ErrUnauthenticated, "invalid token"},
		{"alg confusion: HS256 keyed with the RSA public key",
			sign(t, jwt.SigningMethodHS256, []byte(rsaPEM), good, nil), ErrUnauthenticated, "invalid token signature"},
		{"HS384 with the right secret", sign(t, jwt.SigningMethodHS384, hs, good, nil), ErrUnauthenticated, `algorithm "HS384" is not accepted`},
		{"RS512 with the right key", sign(t, jwt.SigningMethodRS512, k.rsa, good, nil), ErrUnauthenticated, `algorithm "RS512" is not accepted`},
		{"PS256 with the right key", sign(t, jwt.SigningMethodPS256, k.rsa, good, nil), ErrUnauthenticated, `algorithm "PS256" is not accepted`},
		{"RS256 by another key", sign(t, jwt.SigningMethodRS256, k.rsa2, good, nil), ErrUnauthenticated, "invalid token signature"},
		{"ES256 by another key", sign(t, jwt.SigningMethodES256, k.ec2, good, nil), ErrUnauthenticated, "invalid token signature"},
		{"HS256 by another secret", sign(t, jwt.SigningMethodHS256, []byte(testSecret+"x"), good, nil), ErrUnauthenticated, "invalid token signature"},
		{"expired", sign(t, jwt.SigningMethodHS256, hs, with(good, "exp", now.Add(-31*time.Second).Unix()), nil),
			ErrExpired, `"truck-17" may not connect: token expired at 2026-11-21T19:59:29Z`},
		{"expired within leeway", sign(t, jwt.SigningMethodHS256, hs, with(good, "exp", now.Add(-29*time.Second).Unix()), nil), nil, ""},
		{"not valid yet", sign(t, jwt.SigningMethodHS256, hs, with(good, "nbf", now.Add(time.Minute).Unix()), nil), ErrExpired, "not valid yet"},
		{"nbf within leeway", sign(t, jwt.SigningMethodHS256, hs, with(good, "nbf", now.Add(29*time.Second).Unix()), nil), nil, ""},
		{"issued in the future", sign(t, jwt.SigningMethodHS256, hs, with(good, "iat", now.Add(time.Minute).Unix()), nil),
			ErrUnauthenticated, "used before issued"},
		{"no exp", sign(t, jwt.SigningMethodHS256, hs, with(good, "exp", nil), nil), ErrUnauthenticated, "exp claim is required"},
		{"wrong issuer", sign(t, jwt.SigningMethodHS256, hs, with(good, "iss", "https://evil.example"), nil), ErrUnauthenticated, "invalid issuer"},
		{"no issuer", sign(t, jwt.SigningMethodHS256, hs, with(good, "iss", nil), nil), ErrUnauthenticated, "iss claim is required"},
		{"wrong audience", sign(t, jwt.SigningMethodHS256, hs, with(good, "aud", "other"), nil), ErrUnauthenticated, "invalid audience"},
		{"audience string", sign(t, jwt.SigningMethodHS256, hs, with(good, "aud", "kedge"), nil), nil, ""},
		{"no sub", sign(t, jwt.SigningMethodHS256, hs, with(good, "sub", nil), nil), ErrUnauthenticated, `no "sub" claim`},
		{"sub not a string", sign(t, jwt.SigningMethodHS256, hs, with(good, "sub", 17), nil), ErrUnauthenticated, ""},
		{"permissions not an object", sign(t, jwt.SigningMethodHS256, hs, with(good, "kedge", []any{"/#"}), nil),
			ErrUnauthenticated, `claim "kedge" must be an object`},
		{"subscribe not a list", sign(t, jwt.SigningMethodHS256, hs, with(good, "kedge", map[string]any{"subscribe": "/#"}), nil),
			ErrUnauthenticated, `"subscribe" must be a list of strings`},
		{"publish holds a number", sign(t, jwt.SigningMethodHS256, hs, with(good, "kedge", map[string]any{"publish": []any{1}}), nil),
			ErrUnauthenticated, `"publish" must be a list of strings`},
		{"malformed permission", sign(t, jwt.SigningMethodHS256, hs, with(good, "kedge", map[string]any{"publish": []any{"/a/#/b"}}), nil),
			ErrUnauthenticated, `"truck-17" may not connect: claim "kedge": "publish": invalid permission pattern "/a/#/b"`},
		{"unknown kid", sign(t, jwt.SigningMethodRS256, k.rsa, good, map[string]any{"kid": "k9"}), nil, ""}, // configured keys have no kid
		{"empty", "", ErrUnauthenticated, "no token"},
		{"garbage", "not a token", ErrUnauthenticated, "invalid token"},
		{"three empty parts", "..", ErrUnauthenticated, "invalid token"},
		{"too long", strings.Repeat("a", maxTokenLen+1), ErrUnauthenticated, "token longer than"},
	} {
		id, err := j.Authenticate(t.Context(), &Credentials{Token: tc.token})
		if tc.wantErr == nil {
			if err != nil || id == nil {
				t.Errorf("%s: refused: %v", tc.name, err)
			}
			continue
		}
		if id != nil || !errors.Is(err, tc.wantErr) || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%s: got %+v, %v; want %v containing %q", tc.name, id, err, tc.wantErr, tc.msg)
		}
	}
}

func TestJWTTamperedPayload(t *testing.T) {
	clk := newClock()
	j := newTestJWT(t, clk, JWTConfig{Secret: testSecret})
	tok := sign(t, jwt.SigningMethodHS256, []byte(testSecret), claimsAt(clk.Now()), nil)
	parts := strings.Split(tok, ".")
	payload, _ := base64.RawURLEncoding.DecodeString(parts[1])
	payload = bytes.Replace(payload, []byte(`"/vehicles/17/position"`), []byte(`"/#"`), 1)
	forged := parts[0] + "." + base64.RawURLEncoding.EncodeToString(payload) + "." + parts[2]
	if _, err := j.Authenticate(t.Context(), &Credentials{Token: forged}); !errors.Is(err, ErrUnauthenticated) ||
		!strings.Contains(err.Error(), "invalid token signature") {
		t.Fatalf("forged permissions accepted: %v", err)
	}
}

func TestJWTOptions(t *testing.T) {
	clk := newClock()
	now := clk.Now()
	hs := []byte(testSecret)
	// Without an expiry, with a custom claim, no leeway.
	j := newTestJWT(t, clk, JWTConfig{Secret: testSecret, AllowNoExpiry: true, Claim: "https://example.com/kedge", Leeway: -1})
	tok := sign(t, jwt.SigningMethodHS256, hs, jwt.MapClaims{"sub": "a",
		"https://example.com/kedge": map[string]any{"subscribe": []any{"/a/#"}}}, nil)
	id, err := j.Authenticate(t.Context(), &Credentials{Token: tok})
	if err != nil || !id.Expires.IsZero() || len(id.Subscribe) != 1 || id.Subscribe[0] != "/a/#" {
		t.Fatalf("no exp, custom claim: %+v, %v", id, err)
	}
	// The default claim name is not read when another is configured.
	tok = sign(t, jwt.SigningMethodHS256, hs, jwt.MapClaims{"sub": "a", "kedge": map[string]any{"subscribe": []any{"/#"}}}, nil)
	if id, err := j.Authenticate(t.Context(), &Credentials{Token: tok}); err != nil || len(id.Subscribe) != 0 {
		t.Fatalf("default claim read: %+v, %v", id, err)
	}
	// No leeway: one second past exp is expired, and Expires is exp itself.
	tok = sign(t, jwt.SigningMethodHS256, hs, jwt.MapClaims{"sub": "a", "exp": now.Add(-time.Second).Unix()}, nil)
	if _, err := j.Authenticate(t.Context(), &Credentials{Token: tok}); !errors.Is(err, ErrExpired) {
		t.Fatalf("no leeway: %v", err)
	}
	tok = sign(t, jwt.SigningMethodHS256, hs, jwt.MapClaims{"sub": "a", "exp": now.Add(time.Minute).Unix()}, nil)
	if id, err := j.Authenticate(t.Context(), &Credentials{Token: tok}); err != nil || !id.Expires.Equal(now.Add(time.Minute)) {
		t.Fatalf("no leeway expiry: %+v, %v", id, err)
	}
	// A longer leeway moves the identity's expiry.
	j = newTestJWT(t, clk, JWTConfig{Secret: testSecret, Leeway: 2 * time.Minute})
	if id, err := j.Authenticate(t.Context(), &Credentials{Token: tok}); err != nil || !id.Expires.Equal(now.Add(3*time.Minute)) {
		t.Fatalf("leeway expiry: %+v, %v", id, err)
	}
}

func TestJWTKeyFormats(t *testing.T) {
	k := testKeys()
	clk := newClock()
	pkcs1 := string(pem.EncodeToMemory(&pem.Block{Type: "RSA PUBLIC KEY", Bytes: x509.MarshalPKCS1PublicKey(&k.rsa.PublicKey)}))
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "issuer"},
		NotBefore: clk.Now(), NotAfter: clk.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.ec.PublicKey, k.ec)
	if err != nil {
		t.Fatal(err)
	}
	cert := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
	file := filepath.Join(t.TempDir(), "keys.pem")
	// Two keys in one file.
	if err := os.WriteFile(file, []byte(pkcs1+cert), 0o600); err != nil {
		t.Fatal(err)
	}
	for name, cfg := range map[string]JWTConfig{
		"PKCS1 + certificate text": {PublicKeys: []string{pkcs1, cert}},
		"one file of both":         {PublicKeyFiles: []string{file}},
	} {
		j := newTestJWT(t, clk, cfg)
		for _, tok := range []string{
			sign(t, jwt.SigningMethodRS256, k.rsa, claimsAt(clk.Now()), nil),
			sign(t, jwt.SigningMethodES256, k.ec, claimsAt(clk.Now()), nil),
		} {
			if _, err := j.Authenticate(t.Context(), &Credentials{Token: tok}); err != nil {
				t.Errorf("%s: %v", name, err)
			}
		}
		// No secret configured: HS256 is refused, whatever it is keyed with.
		tok := sign(t, jwt.SigningMethodHS256, []byte(pkcs1), claimsAt(clk.Now()), nil)
		if _, err := j.Authenticate(t.Context(), &Credentials{Token: tok}); !errors.Is(err, ErrUnauthenticated) ||
			!strings.Contains(err.Error(), "no HS256 key configured") {
			t.Errorf("%s: HS256 with no secret: %v", name, err)
		}
	}
}

func TestJWTConfigErrors(t *testing.T) {
	k := testKeys()
	small, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	privDER, _ := x509.MarshalPKCS8PrivateKey(k.ec)
	priv := string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: privDER}))
	for _, tc := range []struct {
		cfg  JWTConfig
		want string
	}{
		{JWTConfig{}, "no key"},
		{JWTConfig{Secret: "short"}, "at least 32 bytes"},
		{JWTConfig{PublicKeys: []string{"not PEM"}}, "no PEM-encoded public key"},
		{JWTConfig{PublicKeys: []string{priv}}, "only public keys and certificates"},
		{JWTConfig{PublicKeys: []string{pemPublic(t, &small.PublicKey)}}, "RSA key of 1024 bits"},
		{JWTConfig{PublicKeys: []string{pemPublic(t, &p384.PublicKey)}}, "ES256 needs P-256"},
		{JWTConfig{PublicKeyFiles: []string{"/nonexistent.pem"}}, "auth.jwt.public.key.files"},
		{JWTConfig{JWKSFile: "/nonexistent.json"}, "auth.jwt.jwks.file"},
	} {
		if _, err := NewJWT(tc.cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("NewJWT(%+v) = %v, want an error containing %q", tc.cfg, err, tc.want)
		}
	}
}

// jwkOf returns the JWK of a public key.
func jwkOf(t testing.TB, kid string, key any) map[string]any {
	t.Helper()
	b64 := base64.RawURLEncoding.EncodeToString
	switch k := key.(type) {
	case *rsa.PublicKey:
		return map[string]any{"kty": "RSA", "kid": kid, "alg": "RS256", "use": "sig",
			"n": b64(k.N.Bytes()), "e": b64(big.NewInt(int64(k.E)).Bytes())}
	case *ecdsa.PublicKey:
		pt, err := k.Bytes()
		if err != nil {
			t.Fatal(err)
		}
		return map[string]any{"kty": "EC", "kid": kid, "crv": "P-256", "x": b64(pt[1:33]), "y": b64(pt[33:])}
	}
	t.Fatalf("no JWK for %T", key)
	return nil
}

func writeJWKS(t testing.TB, path string, mtime time.Time, keys ...map[string]any) {
	t.Helper()
	b, err := json.Marshal(map[string]any{"keys": keys})
	if err != nil {
		t.Fatal(err)
	}
	writeFileAt(t, path, b, mtime)
}

func writeFileAt(t testing.TB, path string, b []byte, mtime time.Time) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(path, mtime, mtime); err != nil {
		t.Fatal(err)
	}
}

func TestJWKSReload(t *testing.T) {
	k := testKeys()
	clk := newClock()
	var logs bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&logs, nil))
	path := filepath.Join(t.TempDir(), "jwks.json")
	mtime := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	// Besides key "a": keys kedge must skip (encryption, other curve, symmetric).
	writeJWKS(t, path, mtime, jwkOf(t, "a", &k.rsa.PublicKey),
		map[string]any{"kty": "RSA", "use": "enc", "kid": "enc", "n": "AQAB", "e": "AQAB"},
		map[string]any{"kty": "EC", "crv": "P-384", "kid": "p384", "x": "AA", "y": "AA"},
		map[string]any{"kty": "oct", "kid": "sym", "k": base64.RawURLEncoding.EncodeToString([]byte(testSecret))})
	j, err := NewJWT(JWTConfig{JWKSFile: path}, WithClock(clk.Now), WithLogger(logger))
	if err != nil {
		t.Fatal(err)
	}
	tokA := sign(t, jwt.SigningMethodRS256, k.rsa, claimsAt(clk.Now()), map[string]any{"kid": "a"})
	tokB := sign(t, jwt.SigningMethodES256, k.ec, claimsAt(clk.Now()), map[string]any{"kid": "b"})
	tokNoKid := sign(t, jwt.SigningMethodRS256, k.rsa, claimsAt(clk.Now()), nil)
	tokSym := sign(t, jwt.SigningMethodHS256, []byte(testSecret), claimsAt(clk.Now()), map[string]any{"kid": "sym"})
	tokWrongKid := sign(t, jwt.SigningMethodRS256, k.rsa, claimsAt(clk.Now()), map[string]any{"kid": "b"})
	accepts := func(tok string) bool {
		_, err := j.Authenticate(t.Context(), &Credentials{Token: tok})
		return err == nil
	}
	if !accepts(tokA) || !accepts(tokNoKid) || accepts(tokB) || accepts(tokSym) {
		t.Fatal("initial key set: want key a only")
	}
	if _, err := j.Authenticate(t.Context(), &Credentials{Token: tokB}); !strings.Contains(err.Error(), `no ES256 key with kid "b"`) {
		t.Fatalf("unknown kid: %v", err)
	}

	// Rotate: the file now holds key b only.
	writeJWKS(t, path, mtime.Add(time.Second), jwkOf(t, "b", &k.ec.PublicKey), jwkOf(t, "a2", &k.rsa2.PublicKey))
	clk.Add(9 * time.Second)
	if !accepts(tokA) || accepts(tokB) {
		t.Fatal("the file was re-read before the check interval")
	}
	clk.Add(time.Second)
	if accepts(tokA) || !accepts(tokB) || accepts(tokWrongKid) {
		t.Fatal("after the interval: want key b, not a")
	}

	// A broken file keeps the previous keys and is logged once.
	writeFileAt(t, path, []byte(`{"keys": [`), mtime.Add(2*time.Second))
	clk.Add(10 * time.Second)
	if !accepts(tokB) {
		t.Fatal("a broken file dropped the keys")
	}
	clk.Add(10 * time.Second)
	accepts(tokB)
	if n := strings.Count(logs.String(), "JWKS file not reloaded"); n != 1 {
		t.Fatalf("broken file logged %d times:\n%s", n, logs.String())
	}
	// A key set with no usable key is refused the same way.
	writeJWKS(t, path, mtime.Add(3*time.Second), map[string]any{"kty": "oct", "k": "AA"})
	clk.Add(10 * time.Second)
	if !accepts(tokB) || !strings.Contains(logs.String(), "no RS256 or ES256 signature key") {
		t.Fatalf("an empty key set replaced the keys; log:\n%s", logs.String())
	}
}

func TestParseJWKSErrors(t *testing.T) {
	k := testKeys()
	good := jwkOf(t, "a", &k.rsa.PublicKey)
	for _, tc := range []struct {
		key  map[string]any
		want string
	}{
		{with(good, "n", "!!"), `bad RSA modulus "n"`},
		{with(good, "e", "AAAAAAAB"), `bad RSA exponent "e"`}, // 6 bytes
		{with(good, "e", "Ag"), `bad RSA exponent "e"`},       // 2: even
		{with(good, "n", base64.RawURLEncoding.EncodeToString(make([]byte, 128))), "RSA key of 0 bits"},
		{map[string]any{"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"}, `bad P-256 point`},
		{map[string]any{"kty": "EC", "crv": "P-256",
			"x": base64.RawURLEncoding.EncodeToString(make([]byte, 32)),
			"y": base64.RawURLEncoding.EncodeToString(make([]byte, 32))}, "key 0"}, // not on the curve
	} {
		b, _ := json.Marshal(map[string]any{"keys": []any{tc.key}})
		if _, err := parseJWKS(b); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("parseJWKS(%v) = %v, want %q", tc.key, err, tc.want)
		}
	}
	if _, err := parseJWKS([]byte("[]")); err == nil || !strings.Contains(err.Error(), "not a JWKS document") {
		t.Errorf("not a JWKS: %v", err)
	}
}

// FuzzJWT feeds arbitrary tokens to a JWT authenticator that knows one key of
// each kind. Nothing may panic, and a token is accepted only if its signed
// part (header and payload) is one this test signed: no mutation may forge.
func FuzzJWT(f *testing.F) {
	k := testKeys()
	clk := newClock()
	j := newTestJWT(f, clk, JWTConfig{Secret: testSecret,
		PublicKeys: []string{pemPublic(f, &k.rsa.PublicKey), pemPublic(f, &k.ec.PublicKey)}})
	signed := map[string]bool{}
	add := func(tok string) {
		parts := strings.Split(tok, ".")
		signed[parts[0]+"."+parts[1]] = true
		f.Add(tok)
	}
	now := clk.Now()
	add(sign(f, jwt.SigningMethodHS256, []byte(testSecret), claimsAt(now), nil))
	add(sign(f, jwt.SigningMethodRS256, k.rsa, claimsAt(now), nil))
	add(sign(f, jwt.SigningMethodES256, k.ec, claimsAt(now), map[string]any{"kid": "x"}))
	add(sign(f, jwt.SigningMethodHS256, []byte(testSecret), with(claimsAt(now), "kedge", map[string]any{"publish": []any{"/a/#/b"}}), nil))
	add(sign(f, jwt.SigningMethodHS256, []byte(testSecret), with(claimsAt(now), "exp", now.Add(-time.Hour).Unix()), nil))
	f.Add(sign(f, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, claimsAt(now), nil))
	f.Add("eyJhbGciOiJIUzI1NiJ9.e30.")
	f.Add("..")
	f.Fuzz(func(t *testing.T, tok string) {
		id, err := j.Authenticate(t.Context(), &Credentials{Token: tok})
		if (id == nil) == (err == nil) {
			t.Fatalf("identity %v with error %v", id, err)
		}
		if err != nil {
			if !errors.Is(err, ErrUnauthenticated) {
				t.Fatalf("refusal without ErrUnauthenticated: %v", err)
			}
			return
		}
		parts := strings.Split(tok, ".")
		if len(parts) != 3 || !signed[parts[0]+"."+parts[1]] {
			t.Fatalf("accepted a token this test never signed: %q", tok)
		}
		if err := ValidatePermissions(append(id.Subscribe, id.Publish...)); err != nil {
			t.Fatalf("accepted a malformed permission: %v", err)
		}
	})
}

// FuzzKeyFiles feeds arbitrary bytes to the JWKS and PEM key parsers: no
// panic, and every key they return is usable, of its algorithm's type.
func FuzzKeyFiles(f *testing.F) {
	k := testKeys()
	b, _ := json.Marshal(map[string]any{"keys": []any{jwkOf(f, "a", &k.rsa.PublicKey), jwkOf(f, "b", &k.ec.PublicKey)}})
	f.Add(b)
	f.Add([]byte(pemPublic(f, &k.rsa.PublicKey) + pemPublic(f, &k.ec.PublicKey)))
	f.Add([]byte(`{"keys":[{"kty":"EC","crv":"P-256","x":"AA","y":"AA"}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		check := func(keys []verifyKey, err error) {
			if err == nil && len(keys) == 0 {
				t.Fatal("no error and no key")
			}
			for _, vk := range keys {
				switch vk.key.(type) {
				case *rsa.PublicKey:
					if vk.alg != "RS256" {
						t.Fatalf("RSA key for %s", vk.alg)
					}
				case *ecdsa.PublicKey:
					if vk.alg != "ES256" {
						t.Fatalf("EC key for %s", vk.alg)
					}
				default:
					t.Fatalf("key of type %T", vk.key)
				}
			}
		}
		check(parseJWKS(data))
		check(parsePEMKeys(data))
	})
}
