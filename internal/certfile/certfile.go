// Package certfile serves a TLS certificate from PEM files and picks up new
// files without a restart, for kedge's listeners (HTTP and MQTT).
//
// The files are checked when a client starts a TLS handshake, at most once
// per check interval: when either file's modification time or size changed
// (a rewrite, or a rename over it as certificate managers and Kubernetes
// secrets do), the pair is loaded again. A pair that does not load — a new
// certificate written before its key, a typo — is logged and counted, and the
// previous certificate stays in use until the files are fixed. No goroutine
// is started: an idle listener does no work.
package certfile

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultCheckInterval is how often, at most, the files are checked.
const DefaultCheckInterval = time.Second

// Reloader holds the certificate of one listener. Safe for concurrent use.
type Reloader struct {
	name, certFile, keyFile string
	interval                time.Duration
	log                     *slog.Logger

	cert      atomic.Pointer[tls.Certificate]
	nextCheck atomic.Int64 // unix nanoseconds

	mu        sync.Mutex // one check at a time; guards the stamps and lastErr
	certStamp stamp
	keyStamp  stamp
	lastErr   string

	reloads, failures atomic.Int64
}

// stamp is what tells a file changed.
type stamp struct {
	mod  time.Time
	size int64
}

func stampOf(path string) (stamp, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return stamp{}, err
	}
	return stamp{fi.ModTime(), fi.Size()}, nil
}

// Options tune a Reloader; the zero value means the defaults.
type Options struct {
	// CheckInterval is how often, at most, the files are checked
	// (default DefaultCheckInterval).
	CheckInterval time.Duration
	Logger        *slog.Logger
}

// New loads the certificate (chain) and key of the listener name; an error
// names the files and the problem.
func New(name, certFile, keyFile string, o Options) (*Reloader, error) {
	if certFile == "" || keyFile == "" {
		return nil, fmt.Errorf("%s TLS: both a certificate file and a key file are needed", name)
	}
	if o.CheckInterval <= 0 {
		o.CheckInterval = DefaultCheckInterval
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	r := &Reloader{name: name, certFile: certFile, keyFile: keyFile, interval: o.CheckInterval, log: o.Logger}
	cs, ks, err := r.stamps()
	if err != nil {
		return nil, err
	}
	cert, err := load(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("%s TLS: %w", name, err)
	}
	r.cert.Store(cert)
	r.certStamp, r.keyStamp = cs, ks
	r.nextCheck.Store(time.Now().Add(r.interval).UnixNano())
	return r, nil
}

func (r *Reloader) stamps() (cs, ks stamp, err error) {
	if cs, err = stampOf(r.certFile); err != nil {
		return cs, ks, fmt.Errorf("%s TLS certificate: %w", r.name, err)
	}
	if ks, err = stampOf(r.keyFile); err != nil {
		return cs, ks, fmt.Errorf("%s TLS key: %w", r.name, err)
	}
	return cs, ks, nil
}

// load reads a certificate pair and parses its leaf (for its expiry).
func load(certFile, keyFile string) (*tls.Certificate, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("loading %s and %s: %w", certFile, keyFile, err)
	}
	if cert.Leaf == nil {
		if cert.Leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return nil, fmt.Errorf("parsing %s: %w", certFile, err)
		}
	}
	return &cert, nil
}

// GetCertificate is tls.Config.GetCertificate: the current certificate,
// checking the files first when the check interval has passed.
func (r *Reloader) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	now := time.Now().UnixNano()
	if next := r.nextCheck.Load(); now >= next && r.nextCheck.CompareAndSwap(next, now+int64(r.interval)) {
		r.Check()
	}
	return r.cert.Load(), nil
}

// Check loads the files again now if they changed since the last load or
// attempt. It reports whether a new certificate is in use.
func (r *Reloader) Check() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	cs, ks, err := r.stamps()
	if err != nil {
		r.fail(err)
		return false
	}
	if cs == r.certStamp && ks == r.keyStamp {
		return false
	}
	r.certStamp, r.keyStamp = cs, ks // a failed attempt is not retried until a file changes again
	cert, err := load(r.certFile, r.keyFile)
	if err != nil {
		r.fail(fmt.Errorf("%s TLS: %w", r.name, err))
		return false
	}
	r.cert.Store(cert)
	r.reloads.Add(1)
	r.lastErr = ""
	r.log.Info("TLS certificate reloaded", "listener", r.name, "cert_file", r.certFile,
		"subject", cert.Leaf.Subject.String(), "not_after", cert.Leaf.NotAfter)
	return true
}

// fail counts a check that found no usable files, and logs it unless the
// check before failed the same way. Callers hold r.mu.
func (r *Reloader) fail(err error) {
	r.failures.Add(1)
	if err.Error() == r.lastErr {
		return
	}
	r.lastErr = err.Error()
	r.log.Warn("TLS certificate not reloaded; the previous one stays in use", "listener", r.name, "err", err)
}

// Config returns a server TLS configuration (TLS 1.2 or later) that serves
// the current certificate.
func (r *Reloader) Config() *tls.Config {
	return &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: r.GetCertificate}
}

// Stats are a Reloader's counters for metrics.
type Stats struct {
	Reloads  int64     // new certificates taken into use
	Failures int64     // checks whose files did not load
	NotAfter time.Time // expiry of the certificate in use
}

// Stats returns the Reloader's counters.
func (r *Reloader) Stats() Stats {
	return Stats{Reloads: r.reloads.Load(), Failures: r.failures.Load(), NotAfter: r.cert.Load().Leaf.NotAfter}
}
