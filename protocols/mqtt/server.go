package mqtt

import (
	"container/list"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/kedgehq/kedge/auth"
	"github.com/kedgehq/kedge/core"
	"github.com/kedgehq/kedge/internal/certfile"
	"github.com/kedgehq/kedge/protocols/internal/admit"
)

// Config tunes the MQTT server. The zero value of a field means its
// default, except Listen, where empty means no TCP listener.
type Config struct {
	// Listen is the TCP address of MQTT (":1883"); empty serves MQTT over
	// WebSocket only.
	Listen string
	// TLSCertFile and TLSKeyFile, both set, make Listen serve MQTT over
	// TLS; the files are loaded again when they change (internal/certfile).
	TLSCertFile, TLSKeyFile string
	// MaxPacketSize bounds a packet from a client (default 256 KiB);
	// advertised to MQTT 5 clients. A larger packet closes the connection.
	MaxPacketSize int
	// MaxInflight bounds QoS 1 and 2 messages in flight per client in each
	// direction (default 64, at most 65535): publishes waiting for Kafka
	// (MQTT 5's Receive Maximum) and deliveries waiting for PUBACK.
	MaxInflight int
	// MaxKeepalive is the longest keepalive a client may use (default 20m,
	// at most 65535s); a client asking for more, or for none, gets this.
	MaxKeepalive time.Duration
	// ConnectTimeout bounds the time from accepting a connection (TLS
	// handshake included) to its CONNECT packet (default 10s).
	ConnectTimeout time.Duration
	// WriteQueueSize bounds the bytes queued for a connected client
	// (default 1 MiB); past it the client is a slow consumer.
	WriteQueueSize int
	// WriteTimeout bounds one write to a client (default 10s).
	WriteTimeout time.Duration
	// MaxSubscriptions bounds the subscriptions of one session (default 1000).
	MaxSubscriptions int
	// MaxSessionExpiry is the longest a persistent session is kept while
	// its client is away (default 1h).
	MaxSessionExpiry time.Duration
	// SessionQueueSize bounds the bytes kept for a session while its client
	// is away (default 256 KiB); past it the session is reset.
	SessionQueueSize int
	// MaxOfflineSessions bounds the sessions kept for absent clients
	// (default 10000); past it the longest-absent one is reset.
	MaxOfflineSessions int
	// TokenParam names the query parameter that may carry a bearer token on
	// the MQTT over WebSocket upgrade (as for WebSocket and SSE); empty: none.
	TokenParam string
	// Origins decides which browser pages may use MQTT over WebSocket (the
	// upgrade's Origin header); nil allows any.
	Origins *auth.Origins
	// Sessions, when set, keeps persistent sessions' records so that a
	// client may resume its session on any node (persist.go); nil keeps
	// sessions on the node that made them. The server sets its Watch.
	Sessions core.Table
	// NodeName names this node in the records' versions; it must differ
	// between the nodes sharing Sessions.
	NodeName string
	Logger   *slog.Logger
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
	def(&c.MaxPacketSize, 256<<10)
	def(&c.MaxInflight, 64)
	def(&c.WriteQueueSize, 1<<20)
	def(&c.MaxSubscriptions, 1000)
	def(&c.SessionQueueSize, 256<<10)
	def(&c.MaxOfflineSessions, 10000)
	defDur(&c.MaxKeepalive, 20*time.Minute)
	defDur(&c.ConnectTimeout, 10*time.Second)
	defDur(&c.WriteTimeout, 10*time.Second)
	defDur(&c.MaxSessionExpiry, time.Hour)
	c.MaxInflight = min(c.MaxInflight, math.MaxUint16)
	c.MaxKeepalive = min(c.MaxKeepalive, math.MaxUint16*time.Second)
	c.MaxSessionExpiry = min(c.MaxSessionExpiry, math.MaxUint32*time.Second)
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.NodeName == "" {
		c.NodeName = "kedge"
	}
	return c
}

// keepalive is MaxKeepalive in whole seconds (at least one).
func (c Config) keepalive() uint16 { return uint16(max(c.MaxKeepalive/time.Second, 1)) }

// mochi's listener identifiers.
const (
	listenerTCP = "kedge-tcp"
	listenerWS  = "kedge-ws"
)

// Server is kedge's MQTT server: mochi-mqtt bridged to core by a hook. It
// serves MQTT over TCP (Start) and over WebSocket (it is the http.Handler).
type Server struct {
	node   *core.Node
	cfg    Config
	log    *slog.Logger
	broker *mochi.Server
	tcp    *tcpListener
	tls    *tls.Config
	cert   *certfile.Reloader // the TLS listener's certificate; nil without TLS
	up     websocket.Upgrader

	refusing atomic.Int64 // connections refused by a limit, waiting for CONNECT

	mu       sync.Mutex
	conns    map[*conn]struct{}
	sessions map[string]*session
	// establishing holds the client identifiers whose CONNECT is being
	// answered; the channel closes when it is done (registry.go).
	establishing map[string]chan struct{}
	offline      list.List // sessions of absent clients, longest absent first
	draining     bool
	started      bool

	accepts sync.WaitGroup // connections being served
	writers sync.WaitGroup // writer goroutines
	bg      sync.WaitGroup // session clean-ups started under Hub locks
	stats   stats

	table   core.Table // persistent sessions' records; nil: node-local sessions
	ck      checkpoints
	closing atomic.Bool // Shutdown began: sessions that end keep their records
}

type stats struct {
	connections, accepted, subscriptions      atomic.Int64
	received, delivered, dropped, slow        atomic.Int64
	published, publishErrors, refused         atomic.Int64
	resets, subResets, expired, undeliverable atomic.Int64
	tooLarge, writeErrors, wills              atomic.Int64
	denied, tokenExpired, malformed           atomic.Int64
	takenOver, movedAway                      atomic.Int64
	checkpoints, checkpointErrors             atomic.Int64
}

// NewServer returns an MQTT server over node; Start opens its TCP listener.
func NewServer(node *core.Node, cfg Config) (*Server, error) {
	cfg = cfg.withDefaults()
	s := &Server{
		node: node, cfg: cfg, log: cfg.Logger,
		conns:        make(map[*conn]struct{}),
		sessions:     make(map[string]*session),
		establishing: make(map[string]chan struct{}),
	}
	if (cfg.TLSCertFile == "") != (cfg.TLSKeyFile == "") {
		return nil, errors.New("mqtt: TLS needs both a certificate file and a key file")
	}
	if cfg.TLSCertFile != "" {
		cert, err := certfile.New("mqtt", cfg.TLSCertFile, cfg.TLSKeyFile, certfile.Options{Logger: cfg.Logger})
		if err != nil {
			return nil, fmt.Errorf("mqtt: %w", err)
		}
		s.cert, s.tls = cert, cert.Config()
	}
	s.up = websocket.Upgrader{
		HandshakeTimeout: cfg.ConnectTimeout,
		ReadBufferSize:   1024,
		WriteBufferSize:  256, // gorilla writes only the handshake
		Subprotocols:     []string{"mqtt", "mqttv3.1"},
		CheckOrigin:      func(*http.Request) bool { return true },
	}
	if cfg.Sessions != nil {
		s.table = cfg.Sessions
		s.startCheckpoints()
	}
	s.broker = mochi.New(s.mochiOptions())
	if err := s.broker.AddHook(&hook{srv: s}, nil); err != nil {
		return nil, fmt.Errorf("mqtt: %w", err)
	}
	return s, nil
}

// mochiOptions tunes mochi for many idle clients and for kedge's bridge.
func (s *Server) mochiOptions() *mochi.Options {
	cfg := s.cfg
	caps := mochi.NewDefaultServerCapabilities()
	caps.MaximumPacketSize = uint32(cfg.MaxPacketSize)
	caps.ReceiveMaximum = uint16(cfg.MaxInflight)
	caps.MaximumSessionExpiryInterval = uint32(cfg.MaxSessionExpiry / time.Second)
	// mochi's own queue serves $SYS topics only (kedge queues the rest), and
	// is allocated for every client: keep it small.
	caps.MaximumClientWritesPending = 16
	caps.TopicAliasMaximum = topicAliasMaximum
	caps.SharedSubAvailable = 0
	caps.SubIDAvailable = 0
	return &mochi.Options{
		Capabilities:             caps,
		ClientNetReadBufferSize:  512,
		ClientNetWriteBufferSize: 1024,
		SysTopicResendInterval:   10,
		Logger:                   slog.New(quietHandler{s.log.Handler().WithAttrs([]slog.Attr{slog.String("component", "mochi")})}),
	}
}

// topicAliasMaximum is how many topic aliases a client may set (MQTT 5).
const topicAliasMaximum = 16

// Start opens the TCP listener (when configured) and starts serving.
func (s *Server) Start() error {
	if s.cfg.Listen != "" {
		s.tcp = &tcpListener{srv: s, addr: s.cfg.Listen}
		if err := s.broker.AddListener(s.tcp); err != nil {
			return fmt.Errorf("mqtt listener %s: %w", s.cfg.Listen, err)
		}
	}
	if err := s.broker.AddListener(wsListener{}); err != nil {
		return fmt.Errorf("mqtt: %w", err)
	}
	if err := s.broker.Serve(); err != nil {
		return fmt.Errorf("mqtt: %w", err)
	}
	s.mu.Lock()
	s.started = true
	s.mu.Unlock()
	return nil
}

// Addr returns the TCP listener's address, or nil without one.
func (s *Server) Addr() net.Addr {
	if s.tcp == nil || s.tcp.ln == nil {
		return nil
	}
	return s.tcp.ln.Addr()
}

// TLS reports whether the TCP listener speaks TLS.
func (s *Server) TLS() bool { return s.tls != nil }

// Certificate returns the TLS listener's certificate holder; nil without TLS.
func (s *Server) Certificate() *certfile.Reloader { return s.cert }

// ServeHTTP serves MQTT over WebSocket. Before upgrading it checks the
// page's origin (403 origin_not_allowed) and the connection limits (503
// server_full, 429 too_many_connections), with JSON bodies as on /v1/ws.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	release, ok := admit.Upgrade(w, r, s.node, s.cfg.Origins, auth.ProtocolMQTT)
	if !ok {
		return
	}
	defer release()
	if !s.track() {
		http.Error(w, "server shutting down", http.StatusServiceUnavailable)
		return
	}
	defer s.accepts.Done()
	ws, err := s.up.Upgrade(w, r, nil)
	if err != nil {
		return // the upgrader has answered with an HTTP error
	}
	ws.SetReadLimit(int64(s.cfg.MaxPacketSize) + 4096)
	nc := newNetConn(ws.NetConn(), s.cfg.WriteTimeout)
	nc.ws = ws
	nc.header = &upgradeAuth{header: r.Header, token: auth.TokenFromRequest(r, s.cfg.TokenParam)}
	ws.SetPingHandler(func(data string) error {
		_ = nc.writeControl(websocket.PongMessage, []byte(data))
		return nil
	})
	ws.SetCloseHandler(func(code int, _ string) error {
		_ = nc.writeControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, ""))
		return nil
	})
	s.serveConn(listenerWS, nc, nil)
}

// limitCode is the CONNACK refusal of a connection a limit refused: 0x89
// server busy when the node is full (another node may take the client),
// 0x97 quota exceeded when its address holds too many. MQTT 3.1.1 clients
// get return code 3, server unavailable.
func limitCode(err error) packets.Code {
	code := packets.ErrQuotaExceeded
	if errors.Is(err, core.ErrServerFull) {
		code = packets.ErrServerBusy
	}
	code.Reason = clipReason(core.Code(err) + ": " + err.Error())
	return code
}

// track counts a connection about to be served, unless shutting down.
func (s *Server) track() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.draining {
		return false
	}
	s.accepts.Add(1)
	return true
}

// serveConn runs one client connection through mochi until it ends. A
// connection a limit refused (refused not nil) is answered with a CONNACK
// saying so.
func (s *Server) serveConn(listener string, nc *netConn, refused error) {
	c := &conn{srv: s, nc: nc, held: true, refused: refused, rate: s.node.Limits.NewBucket()}
	nc.conn = c
	_ = nc.raw.SetReadDeadline(time.Now().Add(s.cfg.ConnectTimeout))
	s.mu.Lock()
	s.conns[c] = struct{}{}
	s.mu.Unlock()
	s.stats.connections.Add(1)
	s.stats.accepted.Add(1)
	malformed, err := s.establish(listener, nc, c)
	if err != nil {
		s.log.Debug("mqtt connection ended", "remote", nc.RemoteAddr().String(), "err", err)
		s.countLimit(c, err)
	}
	_ = nc.Close()
	s.endEstablish(c)
	if c.expiry != nil { // a CONNECT refused after authentication
		c.expiry.Stop()
	}
	if c.sess != nil && !c.disconnected { // mochi failed after the session was attached (CONNACK)
		p := c.cl.Properties
		expire := p.ProtocolVersion == 5 && p.Props.SessionExpiryInterval == 0 || p.ProtocolVersion < 5 && p.Clean
		s.disconnected(c, malformed, expire, s.sessionExpiry(c.cl))
	}
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
	s.stats.connections.Add(-1)
}

// establish runs the connection through mochi. A packet mochi's decoder
// cannot take panics in the connection's goroutine (mochi v2.7.9's
// SubscribeDecode indexes past the end of an MQTT 5 SUBSCRIBE whose last
// filter has no options byte): that must end this connection, not the
// server. mochi's own deferred clean-ups have run by the time the panic
// is recovered here (its writer stopped, the socket closed); what is left
// is removing its client record, as mochi does after a failed read.
func (s *Server) establish(listener string, nc *netConn, c *conn) (malformed bool, err error) {
	defer func() {
		p := recover()
		if p == nil {
			return
		}
		malformed, err = true, fmt.Errorf("%w: mochi could not decode a packet: %v", packets.ErrMalformedPacket, p)
		level := slog.LevelDebug
		if s.stats.malformed.Add(1) == 1 { // the first one loudly; all are counted
			level = slog.LevelWarn
		}
		s.log.Log(context.Background(), level, "mqtt: malformed packet; connection closed", "remote", nc.RemoteAddr().String(), "panic", p)
		_ = nc.Close()
		if cl := c.cl; cl != nil {
			if cur, ok := s.broker.Clients.Get(cl.ID); ok && cur == cl {
				s.broker.UnsubscribeClient(cl)
				s.broker.Clients.Delete(cl.ID)
			}
		}
	}()
	return false, s.broker.EstablishConnection(listener, nc)
}

// countLimit counts a connection that ended at a limit: no CONNECT within
// mqtt.connect.timeout, or a packet over mqtt.max.packet.size.
func (s *Server) countLimit(c *conn, err error) {
	var ne net.Error
	switch {
	case errors.Is(err, packets.ErrPacketTooLarge):
		s.node.Limited(core.LimitPayload, auth.ProtocolMQTT)
	case c.cl == nil && errors.As(err, &ne) && ne.Timeout():
		s.node.Limited(core.LimitHandshake, auth.ProtocolMQTT)
	}
}

// async runs a clean-up that must not run under the Hub's locks.
func (s *Server) async(f func()) {
	s.bg.Add(1)
	go func() {
		defer s.bg.Done()
		f()
	}()
}

// Shutdown stops accepting, refuses new publishes, waits (bounded by ctx)
// for the publishes in flight to be answered, disconnects every client —
// MQTT 5 clients with DISCONNECT "server shutting down" (0x8B) — and ends
// every session. Calling it again does nothing.
func (s *Server) Shutdown(ctx context.Context) {
	s.mu.Lock()
	if s.draining {
		s.mu.Unlock()
		return // shut down already
	}
	s.draining = true
	s.closing.Store(true)
	conns := make([]*conn, 0, len(s.conns))
	sessions := make([]*session, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
		sessions = append(sessions, c.sess) // set under s.mu by attach
	}
	started := s.started
	s.mu.Unlock()
	if s.tcp != nil && started {
		s.tcp.stop()
	}
	for _, c := range conns {
		c.pub.drain()
	}
	if s.table != nil {
		s.stopDeliveries(ctx, conns, sessions)
	}
	for i, c := range conns {
		waitGroup(ctx, &c.pub.wg)
		c.abortWith(sessions[i], reasonFor(core.DisconnectShutdown))
	}
	done := make(chan struct{})
	go func() { s.accepts.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		for _, c := range conns {
			_ = c.nc.Close() // a client that does not read its DISCONNECT
		}
		<-done
	}
	_ = s.broker.Close()
	s.endAll()
	s.writers.Wait()
	s.bg.Wait()
	s.stopCheckpoints(ctx)
}

// endAll ends every session and publishes the wills still waiting for
// their delay.
func (s *Server) endAll() {
	s.mu.Lock()
	all := make([]*session, 0, len(s.sessions))
	for _, ss := range s.sessions {
		all = append(all, ss)
	}
	s.mu.Unlock()
	for _, ss := range all {
		s.endSession(ss)
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

// Stats are the MQTT server's counters for metrics.
type Stats struct {
	Connections     int64 // open now
	Accepted        int64 // since start
	Sessions        int64 // sessions now, connected or not
	OfflineSessions int64 // sessions of absent clients now
	Subscriptions   int64 // held now
	Received        int64 // PUBLISH packets from clients
	Delivered       int64 // messages queued to clients
	Dropped         int64 // QoS 0 messages dropped under backpressure
	SlowClosed      int64 // clients disconnected as slow consumers
	Published       int64 // publishes handed to Kafka
	PublishErrors   int64 // publishes Kafka did not take
	Refused         int64 // publishes refused before Kafka (topic, limits)
	SessionResets   int64 // sessions reset because their queue overflowed
	SessionsExpired int64 // sessions that expired while their client was away
	Resets          int64 // subscription history resets (core.Subscriber.Reset)
	Undeliverable   int64 // messages that cannot be MQTT messages (topic, size)
	WriteErrors     int64 // writes to clients that failed
	Wills           int64 // will messages published
	Denied          int64 // connects, subscriptions and publishes refused by authentication or authorization
	TokenExpired    int64 // clients disconnected because their credentials expired
	Malformed       int64 // connections closed for a packet mochi's decoder could not take
	TakenOver       int64 // sessions resumed from the sessions table (made on another node, or before a restart)
	MovedAway       int64 // sessions ended here because another node took them over
	Checkpoints     int64 // session records written to the sessions table
	CheckpointErrs  int64 // session records that could not be written
}

// Stats returns the server's counters.
func (s *Server) Stats() Stats {
	st := &s.stats
	s.mu.Lock()
	sessions, offline := len(s.sessions), s.offline.Len()
	s.mu.Unlock()
	return Stats{
		Connections: st.connections.Load(), Accepted: st.accepted.Load(),
		Sessions: int64(sessions), OfflineSessions: int64(offline),
		Subscriptions: st.subscriptions.Load(), Received: st.received.Load(),
		Delivered: st.delivered.Load(), Dropped: st.dropped.Load(), SlowClosed: st.slow.Load(),
		Published: st.published.Load(), PublishErrors: st.publishErrors.Load(), Refused: st.refused.Load(),
		SessionResets: st.resets.Load(), SessionsExpired: st.expired.Load(), Resets: st.subResets.Load(),
		Undeliverable: st.undeliverable.Load() + st.tooLarge.Load(), WriteErrors: st.writeErrors.Load(),
		Wills: st.wills.Load(), Denied: st.denied.Load(), TokenExpired: st.tokenExpired.Load(),
		Malformed: st.malformed.Load(),
		TakenOver: st.takenOver.Load(), MovedAway: st.movedAway.Load(),
		Checkpoints: st.checkpoints.Load(), CheckpointErrs: st.checkpointErrors.Load(),
	}
}
