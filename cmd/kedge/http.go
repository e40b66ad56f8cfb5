package main

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/kedgehq/kedge/auth"
	"github.com/kedgehq/kedge/core"
	"github.com/kedgehq/kedge/internal/certfile"
	"github.com/kedgehq/kedge/protocols/console"
)

// newHTTPServer builds the HTTP listener's server: the routes, the
// handshake timeout (request headers, TLS handshake included; idle
// keep-alive connections), and TLS from http.tls.cert.file and
// http.tls.key.file, reloaded when they change.
func (s *server) newHTTPServer() error {
	h := s.cfg.HTTP
	if (h.TLSCertFile == "") != (h.TLSKeyFile == "") {
		return errors.New("http.tls.cert.file and http.tls.key.file: set both or neither")
	}
	if h.TLSCertFile != "" {
		cert, err := certfile.New("http", h.TLSCertFile, h.TLSKeyFile, certfile.Options{Logger: s.log})
		if err != nil {
			return err
		}
		s.cert = cert
	}
	watch := &handshakes{timeout: h.HandshakeTimeout, limits: s.limits, fresh: make(map[net.Conn]time.Time)}
	s.http = &http.Server{Handler: watch.wrap(s.routes()), ReadHeaderTimeout: h.HandshakeTimeout,
		ConnState: watch.state, ConnContext: watch.connContext, ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelWarn)}
	if s.cert == nil {
		return nil
	}
	s.http.TLSConfig = s.cert.Config()
	// HTTP/2 for SSE and HTTP requests; WebSocket upgrades stay on
	// HTTP/1.1 (Go's HTTP/2 server does not offer extended CONNECT).
	s.http.TLSConfig.NextProtos = []string{"h2", "http/1.1"}
	return nil
}

// handshakes counts the HTTP listener's connections closed because they
// sent no complete request within the handshake timeout (slowloris, or a
// connection that never speaks): closed before any of their requests
// reached a handler, at least the timeout after they were accepted.
// Connections that give up sooner are not counted.
type handshakes struct {
	timeout time.Duration
	limits  *core.Limits
	mu      sync.Mutex
	fresh   map[net.Conn]time.Time // accepted, no request handled yet
}

type connKey struct{}

// connContext is http.Server.ConnContext: requests carry their connection.
func (h *handshakes) connContext(ctx context.Context, c net.Conn) context.Context {
	return context.WithValue(ctx, connKey{}, c)
}

// wrap marks a request's connection as past its handshake.
func (h *handshakes) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if c, ok := r.Context().Value(connKey{}).(net.Conn); ok {
			h.mu.Lock()
			delete(h.fresh, c)
			h.mu.Unlock()
		}
		next.ServeHTTP(w, r)
	})
}

// state is http.Server.ConnState.
func (h *handshakes) state(c net.Conn, st http.ConnState) {
	h.mu.Lock()
	defer h.mu.Unlock()
	switch st {
	case http.StateNew:
		h.fresh[c] = time.Now()
	case http.StateHijacked:
		delete(h.fresh, c)
	case http.StateClosed:
		if t, ok := h.fresh[c]; ok {
			delete(h.fresh, c)
			if time.Since(t) >= h.timeout {
				h.limits.Limited(core.LimitHandshake, auth.ProtocolHTTP)
			}
		}
	}
}

// routes is the HTTP listener's mux: the WebSocket endpoint and operations.
func (s *server) routes() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET "+s.cfg.WS.Path, s.ws)
	if p := s.cfg.MQTT.WSPath; p != "" {
		mux.Handle("GET "+p, s.mqtt)
	}
	// The SSE and HTTP endpoints answer every method themselves (CORS
	// preflights, JSON 405s); the console takes every other path.
	mux.Handle("/v1/sse", s.sse)
	mux.HandleFunc("/v1/publish", s.sse.Publish)
	mux.HandleFunc("/v1/snapshot", s.sse.Snapshot)
	mux.Handle("/", console.Handler(s.cfg.WS.Path))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"status": "ok"})
	})
	mux.HandleFunc("GET /readyz", s.readyz)
	mux.Handle("GET /metrics", s.metricsHandler())
	return mux
}

// readyz is ready only while Kafka answers metadata requests.
func (s *server) readyz(w http.ResponseWriter, _ *http.Request) {
	if !s.source.Ready() {
		writeJSON(w, http.StatusServiceUnavailable, map[string]any{"status": "not ready", "kafka": "unreachable"})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"status": "ready", "kafka": "reachable"})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
