package ws

import (
	"context"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"

	"github.com/kedgehq/kedge/auth"
	"github.com/kedgehq/kedge/core"
	"github.com/kedgehq/kedge/protocols/internal/admit"
)

// Config tunes the WebSocket endpoint. The zero value of a field means its default.
type Config struct {
	// MaxPayload bounds a published payload in bytes (default 64 KiB); a
	// larger one gets a payload_too_large error and the connection stays.
	MaxPayload int
	// WriteQueueSize bounds the bytes queued for one connection (default 1 MiB).
	WriteQueueSize int
	// WriteTimeout bounds one write to the client (default 10s).
	WriteTimeout time.Duration
	// PingInterval is how often the server pings (default 25s).
	PingInterval time.Duration
	// PongTimeout is how long after a ping the client may stay silent (default 10s).
	PongTimeout time.Duration
	// MaxSubscriptions bounds the subscriptions of one connection (default 1000).
	MaxSubscriptions int
	// MaxInflight bounds the publishes of one connection awaiting Kafka (default 64).
	MaxInflight int
	// TokenParam is the query parameter that may carry a token (browsers
	// cannot set headers on a WebSocket); empty disables it.
	TokenParam string
	// AuthTimeout bounds how long a connection that upgraded without a token
	// may take to send {"op":"auth"} (default 10s).
	AuthTimeout time.Duration
	// Origins decides which browser pages may connect (the upgrade's Origin
	// header); nil allows any.
	Origins *auth.Origins
	Logger  *slog.Logger
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
	def(&c.MaxPayload, 64<<10)
	def(&c.WriteQueueSize, 1<<20)
	def(&c.MaxSubscriptions, 1000)
	def(&c.MaxInflight, 64)
	defDur(&c.WriteTimeout, 10*time.Second)
	defDur(&c.PingInterval, 25*time.Second)
	defDur(&c.PongTimeout, 10*time.Second)
	defDur(&c.AuthTimeout, 10*time.Second)
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// frameLimit is the largest client frame read: a payload at the limit in
// its most expanded JSON form (a control character escaped as \u0001 takes
// six bytes), plus room for the subject, headers and the object around it.
// Within it, a payload over MaxPayload gets an error and the connection stays.
func (c Config) frameLimit() int64 { return int64(c.MaxPayload)*6 + 64<<10 }

// Server serves the WebSocket protocol. It is an http.Handler.
type Server struct {
	node     *core.Node
	cfg      Config
	upgrader websocket.Upgrader

	mu       sync.Mutex
	conns    map[*conn]struct{}
	draining bool

	stats stats
}

type stats struct {
	connections, accepted              atomic.Int64
	subscriptions                      atomic.Int64
	received, delivered, dropped, slow atomic.Int64
	published, publishErrors, errors   atomic.Int64
	resumes, resets                    atomic.Int64
	denied, forbidden, expired         atomic.Int64
}

// NewServer returns a WebSocket server over node.
func NewServer(node *core.Node, cfg Config) *Server {
	cfg = cfg.withDefaults()
	return &Server{
		node:  node,
		cfg:   cfg,
		conns: make(map[*conn]struct{}),
		upgrader: websocket.Upgrader{
			HandshakeTimeout: 10 * time.Second,
			ReadBufferSize:   1024,
			// gorilla writes only rare control frames (kedge writes the
			// rest): from a shared pool, so an idle connection holds no
			// write buffer.
			WriteBufferPool: &sync.Pool{},
			// ServeHTTP has applied Config.Origins before upgrading.
			CheckOrigin: func(*http.Request) bool { return true },
		},
	}
}

// ServeHTTP upgrades the request and starts the connection's read loop.
// Before upgrading it checks the page's origin (403 origin_not_allowed),
// the connection limits (503 server_full, 429 too_many_connections) and
// the request's credentials (401).
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	release, ok := admit.Upgrade(w, r, s.node, s.cfg.Origins, auth.ProtocolWS)
	if !ok {
		return
	}
	sess, answered := s.authenticateRequest(w, r)
	if answered {
		release()
		return
	}
	ws, err := s.upgrader.Upgrade(w, r, nil)
	if err != nil {
		release()
		return // the upgrader has answered with an HTTP error
	}
	ctx, cancel := context.WithCancel(context.Background())
	c := &conn{
		srv: s, ws: ws, ctx: ctx, cancel: cancel, remote: r.RemoteAddr, release: release,
		rate:     s.node.Limits.NewBucket(),
		log:      s.cfg.Logger.With("remote", r.RemoteAddr),
		subs:     make(map[string]*core.Subscription),
		inflight: make(chan struct{}, s.cfg.MaxInflight),
	}
	c.out = &writer{nc: ws.NetConn(), limit: s.cfg.WriteQueueSize, timeout: s.cfg.WriteTimeout,
		onError: func(err error) {
			s.stats.errors.Add(1)
			c.log.Debug("websocket write failed", "err", err)
		}}
	ws.SetReadLimit(s.cfg.frameLimit())
	c.session.Store(sess)
	c.authDeadline = time.AfterFunc(s.cfg.AuthTimeout, func() {
		if c.session.Load() == nil {
			s.node.Limited(core.LimitHandshake, auth.ProtocolWS)
			c.Close(core.Disconnect{Code: core.DisconnectUnauthorized.Code, Reason: "no credentials in time"})
		}
	})
	if sess != nil {
		c.authDeadline.Stop()
		c.watchExpiry(sess)
	}
	if !s.track(c) {
		cancel()
		release()
		c.Close(core.DisconnectShutdown)
		return
	}
	// The read loop runs in its own goroutine and the handler returns: the
	// HTTP server then drops what it held for the request (its 4 KiB read
	// and write buffers, the request, a deep stack), which would otherwise
	// stay with every idle connection for its whole life.
	go c.serve()
}

func (s *Server) track(c *conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.draining {
		return false
	}
	s.conns[c] = struct{}{}
	s.stats.connections.Add(1)
	s.stats.accepted.Add(1)
	return true
}

func (s *Server) forget(c *conn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.conns[c]; ok {
		delete(s.conns, c)
		s.stats.connections.Add(-1)
	}
}

// Shutdown refuses new connections, waits (bounded by ctx) for the
// publishes in flight to get Kafka's answer to their clients, then closes
// every connection with DisconnectShutdown.
func (s *Server) Shutdown(ctx context.Context) {
	s.mu.Lock()
	s.draining = true
	conns := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		c.mu.Lock()
		c.draining = true // no publish is accepted after this
		c.mu.Unlock()
	}
	for _, c := range conns {
		waitGroup(ctx, &c.publishes)
		c.Close(core.DisconnectShutdown)
	}
	for _, c := range conns { // let the close frames go out
		for c.out.queued() > 0 && ctx.Err() == nil {
			time.Sleep(5 * time.Millisecond)
		}
	}
}

func waitGroup(ctx context.Context, wg *sync.WaitGroup) {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
	}
}

// Stats are the WebSocket server's counters for metrics.
type Stats struct {
	Connections   int64 // open now
	Accepted      int64 // since start
	Subscriptions int64 // held now
	Received      int64 // client frames
	Delivered     int64 // messages queued to clients
	Dropped       int64 // messages dropped for standard-mode subscriptions
	SlowClosed    int64 // connections closed as slow consumers
	Published     int64 // publishes handed to Kafka
	PublishErrors int64 // publishes that failed
	Errors        int64 // error frames sent and failed connections
	Resumes       int64 // subscriptions resumed from a cursor
	Resets        int64 // resumes whose history could not be recovered
	Denied        int64 // connections refused authentication
	Forbidden     int64 // subscribes and publishes refused authorization
	Expired       int64 // connections closed because their token expired
}

// Stats returns the server's counters.
func (s *Server) Stats() Stats {
	st := &s.stats
	return Stats{
		Connections: st.connections.Load(), Accepted: st.accepted.Load(),
		Subscriptions: st.subscriptions.Load(), Received: st.received.Load(),
		Delivered: st.delivered.Load(), Dropped: st.dropped.Load(), SlowClosed: st.slow.Load(),
		Published: st.published.Load(), PublishErrors: st.publishErrors.Load(), Errors: st.errors.Load(),
		Resumes: st.resumes.Load(), Resets: st.resets.Load(),
		Denied: st.denied.Load(), Forbidden: st.forbidden.Load(), Expired: st.expired.Load(),
	}
}
