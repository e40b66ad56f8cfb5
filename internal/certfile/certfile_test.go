package certfile

import (
	"crypto/tls"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kedgehq/kedge/internal/testcert"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// serveTLS accepts TLS connections with cfg until the test ends, completing
// each handshake.
func serveTLS(t *testing.T, cfg *tls.Config) string {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_ = c.(*tls.Conn).Handshake()
			_ = c.Close()
		}
	}()
	t.Cleanup(func() { _ = ln.Close(); <-done })
	return ln.Addr().String()
}

func waitServed(t *testing.T, addr, want string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := testcert.Served(t, addr)
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("listener serves %q, want %q", got, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestReloadWithoutRestart(t *testing.T) {
	dir := t.TempDir()
	cf, kf := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	testcert.Write(t, cf, kf, "first")
	r, err := New("test", cf, kf, Options{CheckInterval: 10 * time.Millisecond, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	addr := serveTLS(t, r.Config())
	if got := testcert.Served(t, addr); got != "first" {
		t.Fatalf("serves %q", got)
	}

	testcert.Write(t, cf, kf, "second")
	waitServed(t, addr, "second")
	if st := r.Stats(); st.Reloads != 1 || st.NotAfter.IsZero() {
		t.Fatalf("stats %+v", st)
	}

	// A broken key: the previous certificate stays, the failure is counted.
	if err := os.WriteFile(kf, []byte("not a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for r.Stats().Failures == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the broken key was never noticed")
		}
		if got := testcert.Served(t, addr); got != "second" {
			t.Fatalf("serves %q with a broken key file", got)
		}
	}
	// A rename over the files (how certificate managers replace them).
	tmpC, tmpK := filepath.Join(dir, "c.tmp"), filepath.Join(dir, "k.tmp")
	testcert.Write(t, tmpC, tmpK, "third")
	if err := os.Rename(tmpC, cf); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmpK, kf); err != nil {
		t.Fatal(err)
	}
	waitServed(t, addr, "third")
}

// A certificate written a moment before its key does not load; once the
// key is there, it does.
func TestReloadCertificateBeforeKey(t *testing.T) {
	dir := t.TempDir()
	cf, kf := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	testcert.Write(t, cf, kf, "old")
	r, err := New("test", cf, kf, Options{CheckInterval: time.Hour, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	certPEM, keyPEM := testcert.PEM(t, "new")
	if err := os.WriteFile(cf, certPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if r.Check() || r.Stats().Failures != 1 {
		t.Fatalf("a certificate with the old key loaded: %+v", r.Stats())
	}
	c, _ := r.GetCertificate(nil)
	if c.Leaf.Subject.CommonName != "old" {
		t.Fatalf("in use: %s", c.Leaf.Subject.CommonName)
	}
	if r.Check() {
		t.Fatal("unchanged files were loaded again")
	}
	if err := os.WriteFile(kf, keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if !r.Check() {
		t.Fatal("the complete pair did not load")
	}
	c, _ = r.GetCertificate(nil)
	if c.Leaf.Subject.CommonName != "new" {
		t.Fatalf("in use: %s", c.Leaf.Subject.CommonName)
	}
}

func TestNewErrors(t *testing.T) {
	dir := t.TempDir()
	cf, kf := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	testcert.Write(t, cf, kf, "x")
	for _, c := range []struct{ cert, key, want string }{
		{cf, "", "both a certificate file and a key file"},
		{filepath.Join(dir, "missing.pem"), kf, "http TLS certificate: stat"},
		{cf, filepath.Join(dir, "missing.pem"), "http TLS key: stat"},
		{kf, kf, "loading"},
	} {
		_, err := New("http", c.cert, c.key, Options{})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("New(%s, %s): %v, want %q", c.cert, c.key, err, c.want)
		}
	}
}
