package sse

import (
	"context"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kedgehq/kedge/auth"
	"github.com/kedgehq/kedge/core"
)

// Config tunes the SSE stream and the HTTP publish and snapshot endpoints.
// The zero value of a field means its default.
type Config struct {
	// HeartbeatInterval is how often an idle stream gets a comment line (default 15s).
	HeartbeatInterval time.Duration
	// Retry is the reconnection delay suggested to EventSource (default 2s).
	Retry time.Duration
	// WriteQueueSize bounds the bytes queued for one stream (default 1 MiB).
	WriteQueueSize int
	// WriteTimeout bounds one write to the client (default 10s).
	WriteTimeout time.Duration
	// MaxSubscriptions bounds the subjects of one stream (default 100).
	MaxSubscriptions int
	// MaxPayload bounds the payload of an HTTP publish (default 64 KiB).
	MaxPayload int
	// TokenParam is the query parameter that may carry an access token
	// (EventSource cannot set headers); empty allows only the
	// Authorization header.
	TokenParam string
	// AllowedOrigins lists the origins browsers may call from ("*": any);
	// empty allows any. A page is always allowed on its own origin. Origins,
	// when set, is used instead.
	AllowedOrigins []string
	Origins        *auth.Origins
	// BodyTimeout bounds reading the body of an HTTP publish (default 10s).
	BodyTimeout time.Duration
	Logger      *slog.Logger
}

func (c Config) withDefaults() Config {
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	defDur := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	defDur(&c.HeartbeatInterval, 15*time.Second)
	defDur(&c.Retry, 2*time.Second)
	defDur(&c.WriteTimeout, 10*time.Second)
	def(&c.WriteQueueSize, 1<<20)
	def(&c.MaxSubscriptions, 100)
	def(&c.MaxPayload, 64<<10)
	defDur(&c.BodyTimeout, 10*time.Second)
	if c.Origins == nil {
		c.Origins = auth.NewOrigins(c.AllowedOrigins)
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// bodyLimit is the largest publish body read: a payload at the limit in its
// most expanded JSON form (\u0001 takes six bytes) plus room for the rest.
func (c Config) bodyLimit() int64 { return int64(c.MaxPayload)*6 + 64<<10 }

// Server serves GET /v1/sse (ServeHTTP), POST /v1/publish (Publish) and GET
// /v1/snapshot (Snapshot).
type Server struct {
	node *core.Node
	cfg  Config

	mu       sync.Mutex
	streams  map[*stream]struct{}
	draining bool

	stats stats
}

type stats struct {
	connections, accepted, subscriptions atomic.Int64
	delivered, dropped, slow             atomic.Int64
	resumes, resets, errors              atomic.Int64
	denied, expired, duplicates          atomic.Int64
	published, publishErrors, snapshots  atomic.Int64
}

// NewServer returns an SSE and HTTP server over node.
func NewServer(node *core.Node, cfg Config) *Server {
	return &Server{node: node, cfg: cfg.withDefaults(), streams: make(map[*stream]struct{})}
}

// ServeHTTP serves one event stream: GET /v1/sse?subject=…[&subject=…].
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !s.allowOrigin(w, r, "GET", auth.ProtocolSSE) {
		return
	}
	if r.Method != http.MethodGet {
		s.fail(w, methodNotAllowed("GET"))
		return
	}
	release, err := s.node.Admit(auth.ProtocolSSE, r.RemoteAddr)
	if err != nil {
		s.fail(w, coreError(err, ""))
		return
	}
	defer release()
	sess := s.authenticate(w, r, auth.ProtocolSSE)
	if sess == nil {
		return
	}
	req, aerr := s.parseStreamRequest(r)
	if aerr != nil {
		s.fail(w, aerr)
		return
	}
	if aerr := s.authorize(r.Context(), sess, auth.Subscribe, req.names...); aerr != nil {
		s.fail(w, aerr)
		return
	}
	st, aerr := s.open(r.Context(), w, req)
	if aerr != nil {
		s.fail(w, aerr)
		return
	}
	defer s.cleanup(st)
	for _, n := range req.names {
		sess.Subscribed(n)
	}
	defer sess.Disconnected("stream ended")
	defer st.watchExpiry(sess)()
	st.startHeartbeat()
	select {
	case <-r.Context().Done():
		st.end()
	case <-st.out.done:
	}
	<-st.out.done // the writer has stopped: the response is ours again
}

// streamRequest is a parsed GET /v1/sse.
type streamRequest struct {
	names    []string
	filters  []core.Filter
	mode     core.Mode
	snapshot bool
	since    []cursor // nil unless resuming
}

func (s *Server) parseStreamRequest(r *http.Request) (*streamRequest, *apiError) {
	q := r.URL.Query()
	req := &streamRequest{snapshot: true}
	seen := make(map[string]struct{}, min(len(q["subject"]), s.cfg.MaxSubscriptions+1))
	for _, n := range q["subject"] {
		if _, dup := seen[n]; dup {
			continue
		}
		if len(seen) == s.cfg.MaxSubscriptions {
			s.node.Limited(core.LimitSubscriptions, auth.ProtocolSSE)
			return nil, apiErrf(codeTooManySubs, "", "a stream may hold %d subjects", s.cfg.MaxSubscriptions)
		}
		seen[n] = struct{}{}
		req.names = append(req.names, n)
	}
	if len(req.names) == 0 {
		return nil, apiErrf(codeMissingField, "", `give at least one "subject" query parameter`)
	}
	for _, n := range req.names {
		f, err := s.node.ParseFilter(n)
		if err != nil {
			return nil, coreError(err, n)
		}
		req.filters = append(req.filters, f)
	}
	switch q.Get("mode") {
	case "", "guaranteed":
	case "standard":
		req.mode = core.Standard
	default:
		return nil, apiErrf(codeInvalidField, "", `"mode" must be "guaranteed" or "standard", got %q`, q.Get("mode"))
	}
	if v := q.Get("snapshot"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return nil, apiErrf(codeInvalidField, "", `"snapshot" must be true or false, got %q`, v)
		}
		req.snapshot = b
	}
	// EventSource sends the header when it reconnects, to the URL it was
	// made with: the header is newer than a last_event_id in that URL.
	id := r.Header.Get("Last-Event-ID")
	if id == "" {
		id = q.Get("last_event_id")
	}
	if id != "" {
		since, err := parseID(id, req.names)
		if err != nil {
			return nil, coreError(err, "")
		}
		req.since = since
	}
	return req, nil
}

// open subscribes the stream and sends its first event. Each subscription's
// start is the topic's frontier read before it is registered: every message
// at or below it came before the subscription, and every later one the
// subscription either gets or came before it too, so an id built from the
// starts never claims a message the client does not have.
func (s *Server) open(ctx context.Context, w http.ResponseWriter, req *streamRequest) (*stream, *apiError) {
	st := &stream{srv: s, names: req.names, fp: fingerprint(req.names), log: s.cfg.Logger}
	prepared := map[string]bool{}
	for i, f := range req.filters {
		if !prepared[f.Topic] {
			s.node.Prepare(ctx, f.Topic)
			prepared[f.Topic] = true
		}
		var start cursor
		if c, ok := s.node.Hub.Frontier(f.Topic); ok {
			start = cursorFrom(c)
		}
		st.starts = append(st.starts, start)
		if req.since != nil && len(req.since[i].parts) == 0 && len(start.parts) > 0 {
			// The id was made before the topic existed (its node knew no
			// partitions): everything the topic holds came after it, as
			// with WebSocket's cursor "new".
			req.since[i] = fromStart(start)
		}
		cur, floor := start, cursor{}
		if req.since != nil && len(req.since[i].parts) > 0 {
			cur, floor = req.since[i], req.since[i]
		}
		st.cursors = append(st.cursors, cursor{epoch: cur.epoch, parts: slices.Clone(cur.parts)})
		st.floors = append(st.floors, floor)
	}
	line := st.buildIDLine()
	if len(line)-5 > maxConnectIDLen {
		return nil, apiErrf(codeTooManySubs, "", "the id of these subscriptions would take %d characters, more than %d: subscribe to fewer subjects or patterns", len(line)-5, maxConnectIDLen)
	}
	if s.isDraining() {
		return nil, coreError(core.ErrShuttingDown, "")
	}
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no") // tell nginx-like proxies not to buffer
	w.WriteHeader(http.StatusOK)
	// From here on only the writer's goroutine writes to w.
	st.out = newWriter(w, s.cfg.WriteQueueSize, s.cfg.WriteTimeout, func(err error) {
		s.stats.errors.Add(1)
		st.log.Debug("sse write failed", "err", err)
	})
	if !s.track(st) { // Shutdown began after the check above
		st.Close(core.DisconnectShutdown)
		return st, nil
	}
	retry := []byte("retry: " + strconv.FormatInt(s.cfg.Retry.Milliseconds(), 10) + "\n")
	st.out.mu.Lock()
	st.out.push(retry, st.out.putID(line), simpleEvent(evReady, readyData(req.names, req.since != nil)))
	st.out.mu.Unlock()

	for i, f := range req.filters {
		opts := core.SubscribeOptions{Mode: req.mode, Snapshot: req.snapshot, Tag: i}
		if req.since != nil && len(req.since[i].parts) > 0 {
			c := req.since[i].core()
			opts.Since = &c
			s.stats.resumes.Add(1)
		}
		sub := s.node.Subscribe(st, f, opts)
		st.subsMu.Lock()
		st.subs = append(st.subs, sub)
		st.subsMu.Unlock()
		s.stats.subscriptions.Add(1)
	}
	return st, nil
}

func (s *Server) cleanup(st *stream) {
	st.stopHeartbeat()
	st.subsMu.Lock()
	subs := st.subs
	st.subs = nil
	st.subsMu.Unlock()
	for _, sub := range subs {
		s.node.Hub.Unsubscribe(sub)
	}
	s.stats.subscriptions.Add(-int64(len(subs)))
	s.forget(st)
}

func (s *Server) isDraining() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.draining
}

func (s *Server) track(st *stream) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.draining {
		return false
	}
	s.streams[st] = struct{}{}
	s.stats.connections.Add(1)
	s.stats.accepted.Add(1)
	return true
}

func (s *Server) forget(st *stream) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.streams[st]; ok {
		delete(s.streams, st)
		s.stats.connections.Add(-1)
	}
}

// Shutdown refuses new streams and ends every open one with an error event
// (shutting_down), after what is queued for it. Register it with
// http.Server.RegisterOnShutdown: streams are requests that would otherwise
// hold http.Server.Shutdown until its deadline.
func (s *Server) Shutdown() {
	s.mu.Lock()
	s.draining = true
	streams := make([]*stream, 0, len(s.streams))
	for st := range s.streams {
		streams = append(streams, st)
	}
	s.mu.Unlock()
	for _, st := range streams {
		st.Close(core.DisconnectShutdown)
	}
}

// Stats are the SSE and HTTP endpoints' counters for metrics.
type Stats struct {
	Connections   int64 // streams open now
	Accepted      int64 // streams since start
	Subscriptions int64 // held by open streams
	Delivered     int64 // messages queued to streams
	Dropped       int64 // messages dropped for standard-mode streams
	SlowClosed    int64 // streams ended as slow consumers
	Resumes       int64 // subscriptions resumed from a Last-Event-ID
	Resets        int64 // resumes whose history could not be recovered
	Errors        int64 // failed writes and refused requests
	Published     int64 // HTTP publishes acknowledged by Kafka
	PublishErrors int64 // HTTP publishes that failed
	Snapshots     int64 // snapshot requests served
	Denied        int64 // requests refused by authentication or authorization
	Expired       int64 // streams ended because their credentials expired
	Duplicates    int64 // messages a resumed stream had already (from a node ahead of this one)
}

// Stats returns the server's counters.
func (s *Server) Stats() Stats {
	st := &s.stats
	return Stats{
		Connections: st.connections.Load(), Accepted: st.accepted.Load(), Subscriptions: st.subscriptions.Load(),
		Delivered: st.delivered.Load(), Dropped: st.dropped.Load(), SlowClosed: st.slow.Load(),
		Resumes: st.resumes.Load(), Resets: st.resets.Load(), Errors: st.errors.Load(),
		Published: st.published.Load(), PublishErrors: st.publishErrors.Load(), Snapshots: st.snapshots.Load(),
		Denied: st.denied.Load(), Expired: st.expired.Load(), Duplicates: st.duplicates.Load(),
	}
}
