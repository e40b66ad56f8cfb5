package main

import (
	"encoding/json"
	"net/http"

	"github.com/kedgehq/kedge/protocols/console"
)

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
