package auth

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// verifyKey is a key and the one algorithm it may verify.
type verifyKey struct {
	kid string
	alg string // "HS256", "RS256" or "ES256"
	key any    // []byte, *rsa.PublicKey or *ecdsa.PublicKey
}

// publicKey checks a parsed public key and returns it with its algorithm.
func publicKey(kid string, key any) (verifyKey, error) {
	switch k := key.(type) {
	case *rsa.PublicKey:
		if k.N.BitLen() < 2048 {
			return verifyKey{}, fmt.Errorf("RSA key of %d bits: at least 2048 are required", k.N.BitLen())
		}
		return verifyKey{kid: kid, alg: "RS256", key: k}, nil
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() {
			return verifyKey{}, fmt.Errorf("EC key on curve %s: ES256 needs P-256", k.Curve.Params().Name)
		}
		return verifyKey{kid: kid, alg: "ES256", key: k}, nil
	}
	return verifyKey{}, fmt.Errorf("unsupported public key type %T: RSA (RS256) or P-256 EC (ES256) only", key)
}

// parsePEMKeys reads every PEM block of text as a public key.
func parsePEMKeys(text []byte) ([]verifyKey, error) {
	var keys []verifyKey
	for {
		block, rest := pem.Decode(text)
		if block == nil {
			break
		}
		text = rest
		var key any
		var err error
		switch block.Type {
		case "PUBLIC KEY":
			key, err = x509.ParsePKIXPublicKey(block.Bytes)
		case "RSA PUBLIC KEY":
			key, err = x509.ParsePKCS1PublicKey(block.Bytes)
		case "CERTIFICATE":
			var cert *x509.Certificate
			if cert, err = x509.ParseCertificate(block.Bytes); err == nil {
				key = cert.PublicKey
			}
		default:
			return nil, fmt.Errorf("PEM block %q: only public keys and certificates belong here", block.Type)
		}
		if err != nil {
			return nil, fmt.Errorf("PEM block %q: %w", block.Type, err)
		}
		k, err := publicKey("", key)
		if err != nil {
			return nil, err
		}
		keys = append(keys, k)
	}
	if len(keys) == 0 {
		return nil, errors.New("no PEM-encoded public key found")
	}
	return keys, nil
}

// jwk is the part of a JSON Web Key (RFC 7517, 7518) that kedge reads.
type jwk struct {
	Kty string `json:"kty"`
	Kid string `json:"kid"`
	Alg string `json:"alg"`
	Use string `json:"use"`
	Crv string `json:"crv"`
	N   string `json:"n"`
	E   string `json:"e"`
	X   string `json:"x"`
	Y   string `json:"y"`
}

// parseJWKS reads the RSA and P-256 EC signature keys of a JWKS document.
// Other keys (encryption keys, other curves and algorithms) are skipped; a
// usable-looking key that does not parse is an error.
func parseJWKS(data []byte) ([]verifyKey, error) {
	var doc struct {
		Keys []jwk `json:"keys"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("not a JWKS document: %w", err)
	}
	var keys []verifyKey
	for i, k := range doc.Keys {
		if k.Use != "" && k.Use != "sig" {
			continue
		}
		var key any
		var err error
		switch {
		case k.Kty == "RSA" && (k.Alg == "" || k.Alg == "RS256"):
			key, err = k.rsa()
		case k.Kty == "EC" && k.Crv == "P-256" && (k.Alg == "" || k.Alg == "ES256"):
			key, err = k.ecdsa()
		default:
			continue
		}
		if err == nil {
			var vk verifyKey
			if vk, err = publicKey(k.Kid, key); err == nil {
				keys = append(keys, vk)
				continue
			}
		}
		return nil, fmt.Errorf("key %d (kid %s): %w", i, quote(k.Kid), err)
	}
	if len(keys) == 0 {
		return nil, errors.New("no RS256 or ES256 signature key in the key set")
	}
	return keys, nil
}

func (k *jwk) rsa() (any, error) {
	n, err := base64.RawURLEncoding.DecodeString(k.N)
	if err != nil || len(n) == 0 {
		return nil, errors.New(`bad RSA modulus "n"`)
	}
	e, err := base64.RawURLEncoding.DecodeString(k.E)
	if err != nil || len(e) == 0 || len(e) > 4 {
		return nil, errors.New(`bad RSA exponent "e"`)
	}
	exp := new(big.Int).SetBytes(e).Int64()
	if exp < 3 || exp%2 == 0 {
		return nil, errors.New(`bad RSA exponent "e"`)
	}
	return &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: int(exp)}, nil
}

func (k *jwk) ecdsa() (any, error) {
	x, errX := base64.RawURLEncoding.DecodeString(k.X)
	y, errY := base64.RawURLEncoding.DecodeString(k.Y)
	if errX != nil || errY != nil || len(x) != 32 || len(y) != 32 {
		return nil, errors.New(`bad P-256 point "x", "y"`)
	}
	point := append(append([]byte{4}, x...), y...)
	return ecdsa.ParseUncompressedPublicKey(elliptic.P256(), point)
}

// jwksSource holds the keys of a JWKS file and re-reads the file when its
// modification time or size changes. The check is made on use, at most once
// per interval, by one caller at a time (the others go on with the keys they
// have), so no goroutine runs in the background.
type jwksSource struct {
	path   string
	every  time.Duration
	now    func() time.Time
	logger *slog.Logger
	keys   atomic.Pointer[[]verifyKey]

	mu    sync.Mutex // guards the fields below; held while checking
	next  time.Time  // when to check again
	mtime time.Time
	size  int64
}

func newJWKSSource(path string, every time.Duration, o options) (*jwksSource, error) {
	s := &jwksSource{path: path, every: every, now: o.now, logger: o.logger}
	if err := s.load(); err != nil {
		return nil, fmt.Errorf("auth.jwt.jwks.file: %w", err)
	}
	s.next = s.now().Add(every)
	return s, nil
}

// current returns the keys, re-reading the file first if it is time to check
// and it changed.
func (s *jwksSource) current() []verifyKey {
	if s.mu.TryLock() {
		if now := s.now(); !now.Before(s.next) {
			s.next = now.Add(s.every)
			if err := s.load(); err != nil {
				s.logger.Error("auth: JWKS file not reloaded; keeping the previous keys",
					"file", s.path, "error", err)
			}
		}
		s.mu.Unlock()
	}
	return *s.keys.Load()
}

// load reads the file if it changed since the last load. A file that fails
// to parse is not retried until it changes again. Called with mu held (or
// before s is shared).
func (s *jwksSource) load() error {
	fi, err := os.Stat(s.path)
	if err != nil {
		return err
	}
	if s.keys.Load() != nil && fi.ModTime().Equal(s.mtime) && fi.Size() == s.size {
		return nil
	}
	s.mtime, s.size = fi.ModTime(), fi.Size()
	data, err := os.ReadFile(s.path)
	if err != nil {
		return err
	}
	keys, err := parseJWKS(data)
	if err != nil {
		return fmt.Errorf("%s: %w", s.path, err)
	}
	s.keys.Store(&keys)
	return nil
}
