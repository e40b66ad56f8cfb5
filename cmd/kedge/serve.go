package main

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/pflag"

	"github.com/kedgehq/kedge/auth"
	"github.com/kedgehq/kedge/configs"
	"github.com/kedgehq/kedge/core"
	"github.com/kedgehq/kedge/internal/certfile"
	"github.com/kedgehq/kedge/kafka"
	"github.com/kedgehq/kedge/protocols/mqtt"
	"github.com/kedgehq/kedge/protocols/sse"
	"github.com/kedgehq/kedge/protocols/ws"
)

func serve(args []string, stderr io.Writer) int {
	fs := pflag.NewFlagSet("serve", pflag.ContinueOnError)
	fs.SetOutput(stderr)
	cf := newConfigFlags(fs)
	if err := fs.Parse(args); err != nil {
		return 2
	}
	cfg, kopts, err := loadConfig(cf.options())
	if err != nil {
		_, _ = fmt.Fprintf(stderr, "kedge: invalid configuration:\n  %s\n", joinErrorsIndented(err))
		return 2
	}
	log := newLogger(cfg, stderr)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := runServer(ctx, cfg, kopts, log); err != nil {
		log.Error("kedge stopped", "err", err)
		return 1
	}
	return 0
}

func joinErrorsIndented(err error) string {
	s := joinErrors(err)
	out := ""
	for i, line := range splitLines(s) {
		if i > 0 {
			out += "\n  "
		}
		out += line
	}
	return out
}

func splitLines(s string) []string {
	var lines []string
	start := 0
	for i := range len(s) {
		if s[i] == '\n' {
			lines = append(lines, s[start:i])
			start = i + 1
		}
	}
	return append(lines, s[start:])
}

func newLogger(cfg *configs.Config, w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.Log.Level))
	opts := &slog.HandlerOptions{Level: level}
	var h slog.Handler = slog.NewTextHandler(w, opts)
	if cfg.Log.Format == "json" {
		h = slog.NewJSONHandler(w, opts)
	}
	return slog.New(h).With("node", nodeName(cfg))
}

// server holds the running parts of one kedge node.
type server struct {
	cfg      *configs.Config
	log      *slog.Logger
	embedded *kafka.Embedded
	source   *kafka.Source
	producer *kafka.Producer
	hub      *core.Hub
	audit    *auth.Audit
	ws       *ws.Server
	mqtt     *mqtt.Server
	sse      *sse.Server
	http     *http.Server
	limits   *core.Limits
	cert     *certfile.Reloader // the HTTP listener's certificate; nil without TLS
	// sessions keeps MQTT persistent sessions (mqtt.sessions.topic); nil: off.
	sessions     *kafka.Table
	stopSessions context.CancelFunc
	sessionsDone chan struct{}
	instanceName string
}

// runServer starts every part, serves until ctx ends, then shuts down in
// order: stop accepting, answer publishes in flight, flush the producer,
// close clients with a reason, stop consuming, stop the embedded broker.
func runServer(ctx context.Context, cfg *configs.Config, kopts kafka.Options, log *slog.Logger) error {
	s := &server{cfg: cfg, log: log}
	defer s.close()
	if err := s.start(kopts); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.HTTP.Listen)
	if err != nil {
		return fmt.Errorf("http listener: %w", err)
	}
	if s.cert != nil {
		ln = tls.NewListener(ln, s.http.TLSConfig)
	}
	if err := s.mqtt.Start(); err != nil {
		_ = ln.Close()
		return err
	}
	s.announce(ln.Addr().String(), kopts)
	if s.sessions != nil {
		var tctx context.Context
		tctx, s.stopSessions = context.WithCancel(context.Background())
		s.sessionsDone = make(chan struct{})
		go func() { s.runSessions(tctx); close(s.sessionsDone) }()
	}

	srcCtx, stopSource := context.WithCancel(context.Background())
	srcDone := make(chan struct{})
	go func() { s.source.Run(srcCtx); close(srcDone) }()
	go s.expireCache(srcCtx)

	httpErr := make(chan error, 1)
	go func() { httpErr <- s.http.Serve(ln) }()
	select {
	case <-ctx.Done():
	case err := <-httpErr:
		stopSource()
		<-srcDone
		return fmt.Errorf("http server: %w", err)
	}
	log.Info("shutting down")
	s.shutdown(stopSource, srcDone)
	return nil
}

func (s *server) start(kopts kafka.Options) error {
	cfg := s.cfg
	exposure, err := core.NewExposure(cfg.Kafka.Topics, cfg.Kafka.TopicsRegex)
	if err != nil {
		return fmt.Errorf("kafka.topics: %w", err)
	}
	if err := exposure.Hide(cfg.MQTT.SessionsTopic); err != nil {
		return fmt.Errorf("kafka.topics names mqtt.sessions.topic: %w", err)
	}
	if err := exposure.Hide(cfg.Audit.KafkaTopic); err != nil {
		return fmt.Errorf("kafka.topics names audit.kafka.topic: %w", err)
	}
	if len(kopts.Brokers) == 0 {
		if err := s.startEmbedded(); err != nil {
			return err
		}
		kopts.Brokers = []string{s.embedded.Addr()}
	}
	s.hub = core.NewHub(core.CacheConfig{Size: cfg.Cache.Size, ExpireTime: cfg.Cache.ExpireTime, MaxMemory: cfg.Cache.MaxMemory})
	var recoverFor time.Duration
	if cfg.Kafka.RecoverOnStart {
		recoverFor = cfg.Cache.ExpireTime
	}
	s.source, err = kafka.NewSource(kafka.SourceConfig{
		Options: kopts, Exposure: exposure, Consumers: cfg.Kafka.Consumers,
		RecoverFor: recoverFor, NewTopicsFrom: cfg.Cache.ExpireTime, Logger: s.log,
	}, s.hub)
	if err != nil {
		return err
	}
	r := cfg.Recovery
	s.hub.EnableRecovery(kafka.NewHistory(kopts, r.ConcurrentReads), core.RecoveryConfig{
		MaxMessages: r.MaxMessages, MaxAge: r.MaxAge, Timeout: r.Timeout, MaxPending: r.MaxPending,
	})
	s.producer, err = kafka.NewProducer(kopts, cfg.Kafka.Producers, s.source)
	if err != nil {
		return err
	}
	au, audit, err := s.buildAuth()
	if err != nil {
		return err
	}
	s.audit = audit
	l := cfg.Limits
	s.limits = core.NewLimits(core.LimitsConfig{MaxConnections: l.MaxConnections, MaxConnectionsPerIP: l.MaxConnectionsPerIP,
		PublishRate: float64(l.PublishRate), PublishBurst: l.PublishBurst})
	origins := auth.NewOrigins(cfg.HTTP.CORSAllowedOrigins)
	node := &core.Node{Hub: s.hub, Publisher: s.producer, Source: s.source, Exposure: exposure, Auth: au, Audit: audit, Limits: s.limits}
	s.ws = ws.NewServer(node, ws.Config{TokenParam: cfg.Auth.TokenParam, Origins: origins, AuthTimeout: cfg.WS.AuthTimeout,
		MaxPayload: int(cfg.WS.MaxMessageSize), WriteQueueSize: int(cfg.WS.WriteQueueSize),
		WriteTimeout: cfg.WS.WriteTimeout, PingInterval: cfg.WS.PingInterval, PongTimeout: cfg.WS.PongTimeout,
		MaxSubscriptions: cfg.WS.MaxSubscriptions, MaxInflight: cfg.WS.MaxInflight, Logger: s.log,
	})
	s.sse = sse.NewServer(node, sse.Config{
		HeartbeatInterval: cfg.SSE.HeartbeatInterval, Retry: cfg.SSE.Retry,
		WriteQueueSize: int(cfg.SSE.WriteQueueSize), WriteTimeout: cfg.SSE.WriteTimeout,
		MaxSubscriptions: cfg.SSE.MaxSubscriptions, MaxPayload: int(cfg.HTTP.PublishMaxPayload),
		Origins: origins, BodyTimeout: cfg.HTTP.HandshakeTimeout, TokenParam: cfg.Auth.TokenParam, Logger: s.log,
	})
	if err := s.startSessions(kopts); err != nil {
		return err
	}
	if err := s.startMQTT(node, origins); err != nil {
		return err
	}
	if err := s.newHTTPServer(); err != nil {
		return err
	}
	// SSE streams are requests: end them when shutdown begins, or
	// http.Server.Shutdown would wait for them until its deadline.
	s.http.RegisterOnShutdown(s.sse.Shutdown)
	s.warnLimits()
	if !exposure.All() {
		return nil
	}
	s.log.Warn("every Kafka topic is exposed to clients (development default): set kafka.topics or kafka.topics.regex")
	return nil
}

// warnLimits says which limit settings are development defaults.
func (s *server) warnLimits() {
	if len(s.cfg.HTTP.CORSAllowedOrigins) == 0 {
		s.log.Warn("pages of any origin may use WebSocket, SSE, HTTP publish and MQTT over WebSocket (development default): set http.cors.allowed.origins")
	}
	l := s.cfg.Limits
	if l.MaxConnections == 0 || l.MaxConnectionsPerIP == 0 || l.PublishRate == 0 {
		s.log.Warn("some client limits are off (0)", "max_connections", l.MaxConnections,
			"max_connections_per_ip", l.MaxConnectionsPerIP, "publish_rate", l.PublishRate)
	}
}

// startSessions creates the MQTT sessions table; runServer creates its
// topic if needed and reads it (runSessions).
func (s *server) startSessions(kopts kafka.Options) error {
	topic := s.cfg.MQTT.SessionsTopic
	if topic == "" {
		return nil
	}
	t, err := kafka.NewTable(kopts, kafka.TableConfig{Topic: topic, Node: s.instance(),
		MaxMemory: s.cfg.MQTT.SessionsMaxMemory, Logger: s.log})
	if err != nil {
		return fmt.Errorf("mqtt.sessions.topic: %w", err)
	}
	s.sessions = t
	return nil
}

// runSessions creates the sessions topic when missing — again every second
// while Kafka cannot be reached, as kedge starts without Kafka — then reads
// it until ctx ends. Session records written meanwhile wait in the
// producer (its client never creates topics).
func (s *server) runSessions(ctx context.Context) {
	for try := 0; ctx.Err() == nil; try++ {
		err := s.sessions.Start(ctx)
		if err == nil {
			break
		}
		if ctx.Err() == nil && try%30 == 0 { // once, then every half minute
			s.log.Warn("mqtt.sessions.topic: cannot create or check the topic yet; MQTT sessions cannot move between nodes until then", "err", err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
	s.sessions.Run(ctx) // returns at once when ctx has ended
}

// instance names this run of the node in the versions of shared records:
// the node's name and a random suffix, so that nodes sharing a host name
// (or a node restarted) never write under one name.
func (s *server) instance() string {
	if s.instanceName == "" {
		var b [4]byte
		_, _ = rand.Read(b[:])
		s.instanceName = nodeName(s.cfg) + "-" + hex.EncodeToString(b[:])
	}
	return s.instanceName
}

// startMQTT creates the MQTT server; runServer starts its listener.
func (s *server) startMQTT(node *core.Node, origins *auth.Origins) error {
	m := s.cfg.MQTT
	if p := m.WSPath; p != "" && (p[0] != '/' || p == s.cfg.WS.Path) {
		return fmt.Errorf("mqtt.ws.path %q: must start with '/' and differ from ws.path", p)
	}
	var sessions core.Table // not a nil *kafka.Table
	if s.sessions != nil {
		sessions = s.sessions
	}
	var err error
	s.mqtt, err = mqtt.NewServer(node, mqtt.Config{
		Listen: m.Listen, TLSCertFile: m.TLSCertFile, TLSKeyFile: m.TLSKeyFile,
		MaxPacketSize: int(m.MaxPacketSize), MaxInflight: m.MaxInflight, MaxKeepalive: m.MaxKeepalive,
		ConnectTimeout: m.ConnectTimeout, WriteQueueSize: int(m.WriteQueueSize), WriteTimeout: m.WriteTimeout,
		MaxSubscriptions: m.MaxSubscriptions, MaxSessionExpiry: m.MaxSessionExpiry,
		SessionQueueSize: int(m.SessionQueueSize), MaxOfflineSessions: m.MaxOfflineSessions,
		TokenParam: s.cfg.Auth.TokenParam, Origins: origins, Logger: s.log,
		NodeName: s.instance(), Sessions: sessions,
	})
	return err
}

// mqttAddrs returns the MQTT listener's address ("" without one) and the
// MQTT over WebSocket URL ("" when off), for the ready line.
func (s *server) mqttAddrs(httpAddr string) (tcp, ws string) {
	if a := s.mqtt.Addr(); a != nil {
		tcp = a.String()
	}
	if p := s.cfg.MQTT.WSPath; p != "" {
		ws = "ws://" + httpAddr + p
		if s.cert != nil {
			ws = "wss://" + httpAddr + p
		}
	}
	return tcp, ws
}

func (s *server) startEmbedded() error {
	e := s.cfg.Embedded
	var err error
	s.embedded, err = kafka.StartEmbedded(kafka.EmbeddedConfig{
		Listen: e.Listen, DataDir: e.DataDir, Partitions: e.Partitions,
		RetentionTime: e.RetentionTime, RetentionBytes: e.RetentionBytes, Logger: s.log,
	})
	if err != nil {
		return err
	}
	s.log.Warn("no kafka.bootstrap.servers: started the EMBEDDED Kafka broker, for development only",
		"kafka", s.embedded.Addr(), "data_dir", e.DataDir)
	return nil
}

// announce logs where every listener is, in one line tools can parse.
func (s *server) announce(httpAddr string, kopts kafka.Options) {
	kafkaAddr := s.cfg.Kafka.Properties["bootstrap.servers"]
	if s.embedded != nil {
		kafkaAddr = s.embedded.Addr()
	}
	mqttTCP, mqttWS := s.mqttAddrs(httpAddr)
	web, ws := "http://", "ws://"
	if s.cert != nil {
		web, ws = "https://", "wss://"
	}
	s.log.Info("kedge ready", "version", version, "http", httpAddr, "http_tls", s.cert != nil,
		"ws", ws+httpAddr+s.cfg.WS.Path, "sse", web+httpAddr+"/v1/sse", "console", web+httpAddr+"/", "kafka", kafkaAddr, "embedded", s.embedded != nil,
		"consumers", s.cfg.Kafka.Consumers, "producers", s.cfg.Kafka.Producers,
		"delivery_timeout", kopts.DeliveryTimeout, "mqtt", mqttTCP, "mqtt_ws", mqttWS, "mqtt_tls", s.mqtt.TLS())
}

func (s *server) expireCache(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.hub.Expire()
		}
	}
}

func (s *server) shutdown(stopSource context.CancelFunc, srcDone <-chan struct{}) {
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.HTTP.ShutdownTimeout)
	defer cancel()
	if err := s.http.Shutdown(ctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		s.log.Warn("http shutdown", "err", err)
	}
	s.ws.Shutdown(ctx)
	s.mqtt.Shutdown(ctx)
	s.closeSessions(ctx)
	if err := s.producer.Flush(ctx); err != nil {
		s.log.Error("producer flush incomplete: some publishes got no acknowledgement", "err", err)
	}
	stopSource()
	<-srcDone
}

// closeSessions writes what the sessions table was handed (the MQTT
// sessions' last records) and stops reading it.
func (s *server) closeSessions(ctx context.Context) {
	if s.sessions == nil {
		return
	}
	if err := s.sessions.Close(ctx); err != nil {
		s.log.Warn("mqtt sessions topic: some session records were not written", "err", err)
	}
	if s.stopSessions != nil {
		s.stopSessions()
		<-s.sessionsDone
	}
	s.sessions = nil
}

// close releases what start acquired, in reverse order.
func (s *server) close() {
	if s.mqtt != nil { // after a failed start; after shutdown it does nothing
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		s.mqtt.Shutdown(ctx)
		s.closeSessions(ctx)
		cancel()
	}
	if s.audit != nil { // flush audit events to Kafka before the producer goes
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_ = s.audit.Close(ctx)
		cancel()
	}
	if s.producer != nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_ = s.producer.Close(ctx)
		cancel()
	}
	if s.embedded != nil {
		s.embedded.Close()
		s.log.Info("embedded Kafka broker stopped")
	}
}

func hostname() string {
	h, _ := os.Hostname()
	return h
}
