package auth

import (
	"log/slog"
	"net/http"
	"time"
)

// Option adjusts a built-in beyond its configuration: the clock, the HTTP
// client, the logger. Tests and embedders use them; configuration does not.
type Option func(*options)

type options struct {
	now    func() time.Time
	client *http.Client
	logger *slog.Logger
}

// WithClock makes a built-in read the time from now instead of time.Now.
func WithClock(now func() time.Time) Option {
	return func(o *options) { o.now = now }
}

// WithHTTPClient makes the webhook use client (its Timeout is ignored: the
// configured timeout applies to every call).
func WithHTTPClient(client *http.Client) Option {
	return func(o *options) { o.client = client }
}

// WithLogger makes a built-in report trouble that is not a denial (a JWKS file
// that fails to reload) to logger instead of slog.Default().
func WithLogger(logger *slog.Logger) Option {
	return func(o *options) { o.logger = logger }
}

func buildOptions(opts []Option) options {
	o := options{now: time.Now, client: http.DefaultClient, logger: slog.Default()}
	for _, opt := range opts {
		opt(&o)
	}
	return o
}
