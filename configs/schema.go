package configs

import "time"

// Kind is the type of a configuration value.
type Kind int

// The kinds of values a key can hold.
const (
	String Kind = iota
	Int
	Bool
	Duration
	Bytes   // a size: 65536, "64KiB", "256MiB", "1GB"
	List    // a YAML list, or a comma-separated string
	Section // free-form properties (the kafka section's Kafka property names)
)

func (k Kind) String() string {
	return [...]string{"string", "integer", "boolean", "duration (like 180s)", "size (like 64KiB)", "list", "section"}[k]
}

// Key describes one configuration key.
type Key struct {
	Name    string
	Kind    Kind
	Default any
	Doc     string
	// Allowed, when set, lists the only valid values of a String key.
	Allowed []string
	// Min is the smallest valid value of an Int, Bytes or Duration key.
	Min int64
	set func(c *Config, v any)
}

// Config is kedge's whole configuration, after loading and checking.
type Config struct {
	Node struct{ Name string }
	Log  struct{ Level, Format string }
	HTTP struct {
		Listen             string
		TLSCertFile        string
		TLSKeyFile         string
		HandshakeTimeout   time.Duration
		ShutdownTimeout    time.Duration
		CORSAllowedOrigins []string
		PublishMaxPayload  int64
	}
	WS struct {
		Path             string
		MaxMessageSize   int64
		WriteQueueSize   int64
		WriteTimeout     time.Duration
		PingInterval     time.Duration
		PongTimeout      time.Duration
		MaxSubscriptions int
		MaxInflight      int
		AuthTimeout      time.Duration
	}
	SSE struct {
		HeartbeatInterval time.Duration
		Retry             time.Duration
		WriteQueueSize    int64
		WriteTimeout      time.Duration
		MaxSubscriptions  int
	}
	Limits struct {
		MaxConnections      int
		MaxConnectionsPerIP int
		PublishRate         int
		PublishBurst        int
	}
	Cache struct {
		Size       int
		ExpireTime time.Duration
		MaxMemory  int64
	}
	Recovery struct {
		MaxMessages     int
		MaxAge          time.Duration
		Timeout         time.Duration
		MaxPending      int
		ConcurrentReads int
	}
	Kafka struct {
		Topics         []string
		TopicsRegex    string
		Consumers      int
		Producers      int
		RecoverOnStart bool
		// Properties holds Kafka's own property names (bootstrap.servers,
		// linger.ms, …) as given; the kafka package checks and maps them.
		Properties map[string]string
	}
	Auth struct {
		Mode       []string
		Authorize  string
		Anonymous  string
		TokenParam string
		StaticFile string
		JWT        struct {
			Secret            string
			PublicKeyFiles    []string
			JWKSFile          string
			JWKSCheckInterval time.Duration
			Issuer, Audience  string
			Leeway            time.Duration
			AllowNoExpiry     bool
			Claim             string
		}
		Webhook struct {
			URL            string
			Timeout        time.Duration
			CacheSize      int
			CacheTTL       time.Duration
			Secret         string
			ForwardHeaders []string
		}
	}
	Audit struct {
		Log            string
		Events         []string
		KafkaTopic     string
		KafkaQueueSize int
		KafkaBatchSize int
		KafkaTimeout   time.Duration
	}
	Embedded struct {
		Listen         string
		DataDir        string
		Partitions     int
		RetentionTime  time.Duration
		RetentionBytes int64
	}
	MQTT struct {
		Listen             string
		WSPath             string
		TLSCertFile        string
		TLSKeyFile         string
		MaxPacketSize      int64
		MaxInflight        int
		MaxKeepalive       time.Duration
		ConnectTimeout     time.Duration
		WriteQueueSize     int64
		WriteTimeout       time.Duration
		MaxSubscriptions   int
		MaxSessionExpiry   time.Duration
		SessionQueueSize   int64
		MaxOfflineSessions int
		SessionsTopic      string
		SessionsMaxMemory  int64
	}
}

// Keys is the schema: every key kedge accepts, in the order the example file
// documents them.
var Keys = []Key{
	{Name: "node.name", Kind: String, Default: "", Doc: "Name of this node in logs and metrics; empty means the host name.",
		set: func(c *Config, v any) { c.Node.Name = v.(string) }},

	{Name: "log.level", Kind: String, Default: "info", Allowed: []string{"debug", "info", "warn", "error"},
		Doc: "Least severe log level written: debug, info, warn or error.",
		set: func(c *Config, v any) { c.Log.Level = v.(string) }},
	{Name: "log.format", Kind: String, Default: "text", Allowed: []string{"text", "json"},
		Doc: "Log line format: text (key=value) or json.",
		set: func(c *Config, v any) { c.Log.Format = v.(string) }},

	{Name: "http.listen", Kind: String, Default: ":8080",
		Doc: "Address of the HTTP listener: WebSocket, health, readiness and metrics endpoints.",
		set: func(c *Config, v any) { c.HTTP.Listen = v.(string) }},
	{Name: "http.tls.cert.file", Kind: String, Default: "",
		Doc: "PEM certificate (chain) of the HTTP listener; with tls.key.file it serves HTTPS and WSS only. Re-read when it changes, without a restart.",
		set: func(c *Config, v any) { c.HTTP.TLSCertFile = v.(string) }},
	{Name: "http.tls.key.file", Kind: String, Default: "",
		Doc: "PEM private key of tls.cert.file.",
		set: func(c *Config, v any) { c.HTTP.TLSKeyFile = v.(string) }},
	{Name: "http.handshake.timeout", Kind: Duration, Default: "10s", Min: int64(time.Millisecond),
		Doc: "How long a client of the HTTP listener may take to send a request's headers (TLS handshake included), and a publish its body; a slower one is disconnected.",
		set: func(c *Config, v any) { c.HTTP.HandshakeTimeout = v.(time.Duration) }},
	{Name: "http.shutdown.timeout", Kind: Duration, Default: "10s", Min: int64(time.Millisecond),
		Doc: "On SIGINT/SIGTERM, how long to wait for publishes in flight and the producer to flush.",
		set: func(c *Config, v any) { c.HTTP.ShutdownTimeout = v.(time.Duration) }},
	{Name: "http.cors.allowed.origins", Kind: List, Default: []string{},
		Doc: "Origins whose pages may use WebSocket, MQTT over WebSocket, /v1/sse, /v1/publish and /v1/snapshot, like https://app.example; empty allows any origin (a development default). A page is always allowed on kedge's own origin; others get 403 origin_not_allowed.",
		set: func(c *Config, v any) { c.HTTP.CORSAllowedOrigins = v.([]string) }},
	{Name: "http.publish.max.payload", Kind: Bytes, Default: "64KiB", Min: 1,
		Doc: "Largest payload POST /v1/publish accepts; a larger one gets 413 payload_too_large.",
		set: func(c *Config, v any) { c.HTTP.PublishMaxPayload = v.(int64) }},

	{Name: "ws.path", Kind: String, Default: "/v1/ws", Doc: "HTTP path of the WebSocket endpoint.",
		set: func(c *Config, v any) { c.WS.Path = v.(string) }},
	{Name: "ws.max.message.size", Kind: Bytes, Default: "64KiB", Min: 256,
		Doc: "Largest frame a client may send; a larger one gets a message_too_big close.",
		set: func(c *Config, v any) { c.WS.MaxMessageSize = v.(int64) }},
	{Name: "ws.write.queue.size", Kind: Bytes, Default: "1MiB", Min: 1024,
		Doc: "Bytes queued for one connection before it counts as a slow consumer (guaranteed: disconnected; standard: drops).",
		set: func(c *Config, v any) { c.WS.WriteQueueSize = v.(int64) }},
	{Name: "ws.write.timeout", Kind: Duration, Default: "10s", Min: int64(time.Millisecond),
		Doc: "How long one write to a client may take before the connection is closed.",
		set: func(c *Config, v any) { c.WS.WriteTimeout = v.(time.Duration) }},
	{Name: "ws.ping.interval", Kind: Duration, Default: "25s", Min: int64(time.Millisecond),
		Doc: "How often the server pings an idle client.",
		set: func(c *Config, v any) { c.WS.PingInterval = v.(time.Duration) }},
	{Name: "ws.pong.timeout", Kind: Duration, Default: "10s", Min: int64(time.Millisecond),
		Doc: "How long after a ping the client may stay silent before it is disconnected.",
		set: func(c *Config, v any) { c.WS.PongTimeout = v.(time.Duration) }},
	{Name: "ws.max.subscriptions", Kind: Int, Default: 1000, Min: 1,
		Doc: "Most subscriptions one connection may hold.",
		set: func(c *Config, v any) { c.WS.MaxSubscriptions = v.(int) }},
	{Name: "ws.max.inflight", Kind: Int, Default: 64, Min: 1,
		Doc: "Most publishes of one connection waiting for Kafka; past it the server stops reading that connection until one is answered.",
		set: func(c *Config, v any) { c.WS.MaxInflight = v.(int) }},
	{Name: "ws.auth.timeout", Kind: Duration, Default: "10s", Min: int64(time.Millisecond),
		Doc: "How long a connection that upgraded without a token may take to send its auth frame; past it, it is closed with 4502.",
		set: func(c *Config, v any) { c.WS.AuthTimeout = v.(time.Duration) }},

	{Name: "sse.heartbeat.interval", Kind: Duration, Default: "15s", Min: int64(time.Millisecond),
		Doc: "How often a Server-Sent Events stream gets a heartbeat comment, which keeps proxies from closing it and finds clients that are gone.",
		set: func(c *Config, v any) { c.SSE.HeartbeatInterval = v.(time.Duration) }},
	{Name: "sse.retry", Kind: Duration, Default: "2s", Min: int64(time.Millisecond),
		Doc: "Reconnection delay suggested to EventSource clients (the retry: field of the first event).",
		set: func(c *Config, v any) { c.SSE.Retry = v.(time.Duration) }},
	{Name: "sse.write.queue.size", Kind: Bytes, Default: "1MiB", Min: 1024,
		Doc: "Bytes queued for one SSE stream before it counts as a slow consumer (guaranteed: ended with an error event; standard: drops).",
		set: func(c *Config, v any) { c.SSE.WriteQueueSize = v.(int64) }},
	{Name: "sse.write.timeout", Kind: Duration, Default: "10s", Min: int64(time.Millisecond),
		Doc: "How long one write to an SSE client may take before the stream is ended.",
		set: func(c *Config, v any) { c.SSE.WriteTimeout = v.(time.Duration) }},
	{Name: "sse.max.subscriptions", Kind: Int, Default: 100, Min: 1,
		Doc: "Most subjects and patterns one SSE stream may name.",
		set: func(c *Config, v any) { c.SSE.MaxSubscriptions = v.(int) }},

	{Name: "limits.max.connections", Kind: Int, Default: 100000, Min: 0,
		Doc: "Most connections the node serves at once, over every protocol together (WebSocket, SSE streams, HTTP publishes in flight, MQTT); past it a new one gets server_full. 0: no bound.",
		set: func(c *Config, v any) { c.Limits.MaxConnections = v.(int) }},
	{Name: "limits.max.connections.per.ip", Kind: Int, Default: 1000, Min: 0,
		Doc: "Most connections one client IP address may hold at once, counted like max.connections; past it a new one gets too_many_connections. Behind a proxy every client has the proxy's address: raise it or use 0 (no bound).",
		set: func(c *Config, v any) { c.Limits.MaxConnectionsPerIP = v.(int) }},
	{Name: "limits.publish.rate", Kind: Int, Default: 1000, Min: 0,
		Doc: "Publishes per second one connection may make (one client IP address for HTTP publishes); a faster one gets rate_limited. 0: no bound.",
		set: func(c *Config, v any) { c.Limits.PublishRate = v.(int) }},
	{Name: "limits.publish.burst", Kind: Int, Default: 0, Min: 0,
		Doc: "Publishes a connection may make at once above publish.rate (a token bucket of this size); 0 means publish.rate.",
		set: func(c *Config, v any) { c.Limits.PublishBurst = v.(int) }},

	{Name: "cache.size", Kind: Int, Default: 1000, Min: 1,
		Doc: "Messages kept per subject for snapshots and recovery.",
		set: func(c *Config, v any) { c.Cache.Size = v.(int) }},
	{Name: "cache.expire.time", Kind: Duration, Default: "180s", Min: int64(time.Second),
		Doc: "How long a message stays cached; also how far back recover.on.start reads.",
		set: func(c *Config, v any) { c.Cache.ExpireTime = v.(time.Duration) }},
	{Name: "cache.max.memory", Kind: Bytes, Default: "256MiB", Min: 64 << 10,
		Doc: "Bound on the memory all cached messages hold together; the oldest go first.",
		set: func(c *Config, v any) { c.Cache.MaxMemory = v.(int64) }},

	{Name: "recovery.max.messages", Kind: Int, Default: 10000, Min: 1,
		Doc: "Most messages one resume delivers from history; a larger gap gets a reset instead.",
		set: func(c *Config, v any) { c.Recovery.MaxMessages = v.(int) }},
	{Name: "recovery.max.age", Kind: Duration, Default: "24h", Min: int64(time.Second),
		Doc: "Oldest a missed message may be for a resume to deliver it; an older gap gets a reset instead.",
		set: func(c *Config, v any) { c.Recovery.MaxAge = v.(time.Duration) }},
	{Name: "recovery.timeout", Kind: Duration, Default: "30s", Min: int64(100 * time.Millisecond),
		Doc: "Longest one resume may take, reading back from Kafka included; past it the client gets a reset.",
		set: func(c *Config, v any) { c.Recovery.Timeout = v.(time.Duration) }},
	{Name: "recovery.max.pending", Kind: Int, Default: 10000, Min: 1,
		Doc: "Live messages held for a subscription while its history is delivered; past it the client is disconnected as slow.",
		set: func(c *Config, v any) { c.Recovery.MaxPending = v.(int) }},
	{Name: "recovery.concurrent.reads", Kind: Int, Default: 16, Min: 1,
		Doc: "Most read-backs from Kafka at once (each uses its own Kafka connection).",
		set: func(c *Config, v any) { c.Recovery.ConcurrentReads = v.(int) }},

	{Name: "kafka.topics", Kind: List, Default: []string{},
		Doc: "Topics exposed to clients. With neither this nor topics.regex, every topic is (a development default).",
		set: func(c *Config, v any) { c.Kafka.Topics = v.([]string) }},
	{Name: "kafka.topics.regex", Kind: String, Default: "",
		Doc: "Topics matching this regular expression (anchored) are exposed too, including ones created later.",
		set: func(c *Config, v any) { c.Kafka.TopicsRegex = v.(string) }},
	{Name: "kafka.consumers", Kind: Int, Default: 1, Min: 1,
		Doc: "How many Kafka clients share the consumption of the exposed partitions.",
		set: func(c *Config, v any) { c.Kafka.Consumers = v.(int) }},
	{Name: "kafka.producers", Kind: Int, Default: 1, Min: 1,
		Doc: "How many Kafka producer clients share client publishes (one key always uses the same one).",
		set: func(c *Config, v any) { c.Kafka.Producers = v.(int) }},
	{Name: "kafka.recover.on.start", Kind: Bool, Default: true,
		Doc: "At start, read back cache.expire.time of every exposed topic so snapshots work at once.",
		set: func(c *Config, v any) { c.Kafka.RecoverOnStart = v.(bool) }},
	{Name: "kafka", Kind: Section, Default: map[string]string{},
		Doc: "Kafka's own client properties (see docs/configuration.md for the list kedge maps onto franz-go).",
		set: func(c *Config, v any) { c.Kafka.Properties = v.(map[string]string) }},

	{Name: "embedded.listen", Kind: String, Default: "127.0.0.1:9092",
		Doc: "Address of the embedded Kafka broker, started when kafka.bootstrap.servers is empty (development only).",
		set: func(c *Config, v any) { c.Embedded.Listen = v.(string) }},
	{Name: "embedded.data.dir", Kind: String, Default: "./kedge-data",
		Doc: "Where the embedded broker keeps its log, so it survives a restart; empty keeps it in memory.",
		set: func(c *Config, v any) { c.Embedded.DataDir = v.(string) }},
	{Name: "embedded.partitions", Kind: Int, Default: 1, Min: 1,
		Doc: "Partitions of topics the embedded broker creates automatically.",
		set: func(c *Config, v any) { c.Embedded.Partitions = v.(int) }},
	{Name: "embedded.retention.time", Kind: Duration, Default: "168h", Min: int64(time.Second),
		Doc: "How long the embedded broker keeps records.",
		set: func(c *Config, v any) { c.Embedded.RetentionTime = v.(time.Duration) }},
	{Name: "embedded.retention.bytes", Kind: Bytes, Default: "1GiB", Min: 1 << 20,
		Doc: "How many bytes the embedded broker keeps per partition.",
		set: func(c *Config, v any) { c.Embedded.RetentionBytes = v.(int64) }},

	{Name: "mqtt.listen", Kind: String, Default: ":1883",
		Doc: "Address of the MQTT listener (TCP; TLS with tls.cert.file and tls.key.file); empty turns it off.",
		set: func(c *Config, v any) { c.MQTT.Listen = v.(string) }},
	{Name: "mqtt.ws.path", Kind: String, Default: "/mqtt",
		Doc: "HTTP path of MQTT over WebSocket on the HTTP listener; empty turns it off.",
		set: func(c *Config, v any) { c.MQTT.WSPath = v.(string) }},
	{Name: "mqtt.tls.cert.file", Kind: String, Default: "",
		Doc: "PEM certificate (chain) of the MQTT listener; with tls.key.file, mqtt.listen speaks MQTT over TLS.",
		set: func(c *Config, v any) { c.MQTT.TLSCertFile = v.(string) }},
	{Name: "mqtt.tls.key.file", Kind: String, Default: "",
		Doc: "PEM private key of tls.cert.file.",
		set: func(c *Config, v any) { c.MQTT.TLSKeyFile = v.(string) }},
	{Name: "mqtt.max.packet.size", Kind: Bytes, Default: "256KiB", Min: 1024,
		Doc: "Largest MQTT packet a client may send (told to MQTT 5 clients); a larger one closes the connection.",
		set: func(c *Config, v any) { c.MQTT.MaxPacketSize = v.(int64) }},
	{Name: "mqtt.max.inflight", Kind: Int, Default: 64, Min: 1,
		Doc: "QoS 1 and 2 messages in flight per client, each way: publishes waiting for Kafka (MQTT 5's Receive Maximum) and deliveries waiting for PUBACK. At most 65535.",
		set: func(c *Config, v any) { c.MQTT.MaxInflight = v.(int) }},
	{Name: "mqtt.max.keepalive", Kind: Duration, Default: "20m", Min: int64(time.Second),
		Doc: "Longest keepalive a client may use; one asking for more, or for none, gets this (MQTT 5 is told). At most 65535s.",
		set: func(c *Config, v any) { c.MQTT.MaxKeepalive = v.(time.Duration) }},
	{Name: "mqtt.connect.timeout", Kind: Duration, Default: "10s", Min: int64(time.Millisecond),
		Doc: "How long a new connection may take to send CONNECT, TLS handshake included.",
		set: func(c *Config, v any) { c.MQTT.ConnectTimeout = v.(time.Duration) }},
	{Name: "mqtt.write.queue.size", Kind: Bytes, Default: "1MiB", Min: 1024,
		Doc: "Bytes of pending writes for one connected client before it counts as a slow consumer (QoS 1: disconnected, session reset; QoS 0: drops).",
		set: func(c *Config, v any) { c.MQTT.WriteQueueSize = v.(int64) }},
	{Name: "mqtt.write.timeout", Kind: Duration, Default: "10s", Min: int64(time.Millisecond),
		Doc: "How long one write to a client may take before the connection is closed.",
		set: func(c *Config, v any) { c.MQTT.WriteTimeout = v.(time.Duration) }},
	{Name: "mqtt.max.subscriptions", Kind: Int, Default: 1000, Min: 1,
		Doc: "Most subscriptions one MQTT session may hold.",
		set: func(c *Config, v any) { c.MQTT.MaxSubscriptions = v.(int) }},
	{Name: "mqtt.max.session.expiry", Kind: Duration, Default: "1h", Min: int64(time.Second),
		Doc: "Longest a persistent session is kept while its client is away (MQTT 5 session expiry intervals are capped to it; 3.1.1 clean-session-false sessions get it).",
		set: func(c *Config, v any) { c.MQTT.MaxSessionExpiry = v.(time.Duration) }},
	{Name: "mqtt.session.queue.size", Kind: Bytes, Default: "256KiB", Min: 1024,
		Doc: "Bytes of messages kept for a persistent session while its client is away; when a QoS 1 message does not fit, the session is reset (QoS 0 messages are dropped instead).",
		set: func(c *Config, v any) { c.MQTT.SessionQueueSize = v.(int64) }},
	{Name: "mqtt.max.offline.sessions", Kind: Int, Default: 10000, Min: 1,
		Doc: "Most persistent sessions kept for absent clients; past it the one absent longest is reset.",
		set: func(c *Config, v any) { c.MQTT.MaxOfflineSessions = v.(int) }},
	{Name: "mqtt.sessions.topic", Kind: String, Default: "__kedge_mqtt_sessions",
		Doc: "Compacted Kafka topic (created if missing) where persistent sessions keep their subscriptions and positions, so that a client may come back to any node; empty keeps sessions on their node. Clients never reach it (naming it in kafka.topics is an error).",
		set: func(c *Config, v any) { c.MQTT.SessionsTopic = v.(string) }},
	{Name: "mqtt.sessions.max.memory", Kind: Bytes, Default: "256MiB", Min: 64 << 10,
		Doc: "Bound on the memory of each node's copy of the sessions topic (keys and records); past it the records updated longest ago are forgotten, and their sessions can no longer move to this node.",
		set: func(c *Config, v any) { c.MQTT.SessionsMaxMemory = v.(int64) }},

	{Name: "auth.mode", Kind: List, Default: []string{"allow-all"},
		Doc: "Authenticators tried in order: static, jwt, webhook; or allow-all alone (development only: every client may do everything, and the start-up log says so).",
		set: func(c *Config, v any) { c.Auth.Mode = v.([]string) }},
	{Name: "auth.authorize", Kind: String, Default: "", Allowed: []string{"", "permissions", "webhook"},
		Doc: "Who decides subscribes and publishes: permissions (the identity's own patterns, the default) or webhook. Must be empty with allow-all.",
		set: func(c *Config, v any) { c.Auth.Authorize = v.(string) }},
	{Name: "auth.anonymous", Kind: String, Default: "anonymous",
		Doc: "Identity name of every client under allow-all.",
		set: func(c *Config, v any) { c.Auth.Anonymous = v.(string) }},
	{Name: "auth.token.param", Kind: String, Default: "token",
		Doc: "Query parameter that may carry a token on WebSocket, SSE and HTTP requests (browsers cannot set headers there); empty turns query tokens off.",
		set: func(c *Config, v any) { c.Auth.TokenParam = v.(string) }},
	{Name: "auth.static.file", Kind: String, Default: "",
		Doc: "JSON file of static tokens: [{\"name\":\u2026,\"token_sha256\":\u2026,\"subscribe\":[\u2026],\"publish\":[\u2026]}] (see docs/auth.md).",
		set: func(c *Config, v any) { c.Auth.StaticFile = v.(string) }},
	{Name: "auth.jwt.secret", Kind: String, Default: "",
		Doc: "HS256 secret (at least 32 bytes); prefer the environment variable KEDGE_AUTH_JWT_SECRET.",
		set: func(c *Config, v any) { c.Auth.JWT.Secret = v.(string) }},
	{Name: "auth.jwt.public.key.files", Kind: List, Default: []string{},
		Doc: "Files of PEM public keys for RS256 and ES256 tokens.",
		set: func(c *Config, v any) { c.Auth.JWT.PublicKeyFiles = v.([]string) }},
	{Name: "auth.jwt.jwks.file", Kind: String, Default: "",
		Doc: "JWKS file of public keys, re-read when it changes.",
		set: func(c *Config, v any) { c.Auth.JWT.JWKSFile = v.(string) }},
	{Name: "auth.jwt.jwks.check.interval", Kind: Duration, Default: "10s", Min: int64(time.Second),
		Doc: "How often, at most, the JWKS file is checked for changes.",
		set: func(c *Config, v any) { c.Auth.JWT.JWKSCheckInterval = v.(time.Duration) }},
	{Name: "auth.jwt.issuer", Kind: String, Default: "",
		Doc: "Required iss claim, when set.",
		set: func(c *Config, v any) { c.Auth.JWT.Issuer = v.(string) }},
	{Name: "auth.jwt.audience", Kind: String, Default: "",
		Doc: "Required aud claim value, when set.",
		set: func(c *Config, v any) { c.Auth.JWT.Audience = v.(string) }},
	{Name: "auth.jwt.leeway", Kind: Duration, Default: "30s", Min: -int64(time.Hour),
		Doc: "Clock skew allowed on exp, nbf and iat; a negative value allows none.",
		set: func(c *Config, v any) { c.Auth.JWT.Leeway = v.(time.Duration) }},
	{Name: "auth.jwt.allow.no.expiry", Kind: Bool, Default: false,
		Doc: "Accept tokens without an exp claim.",
		set: func(c *Config, v any) { c.Auth.JWT.AllowNoExpiry = v.(bool) }},
	{Name: "auth.jwt.claim", Kind: String, Default: "kedge",
		Doc: "Claim holding the holder's permissions: {\"subscribe\": [patterns], \"publish\": [patterns]}.",
		set: func(c *Config, v any) { c.Auth.JWT.Claim = v.(string) }},
	{Name: "auth.webhook.url", Kind: String, Default: "",
		Doc: "http(s) URL the webhook authenticator/authorizer POSTs to (see docs/auth.md for the bodies).",
		set: func(c *Config, v any) { c.Auth.Webhook.URL = v.(string) }},
	{Name: "auth.webhook.timeout", Kind: Duration, Default: "2s", Min: int64(time.Millisecond),
		Doc: "Bound on each webhook call; a timeout denies.",
		set: func(c *Config, v any) { c.Auth.Webhook.Timeout = v.(time.Duration) }},
	{Name: "auth.webhook.cache.size", Kind: Int, Default: 10000, Min: -1,
		Doc: "Webhook answers kept (of each kind); -1 turns the cache off.",
		set: func(c *Config, v any) { c.Auth.Webhook.CacheSize = v.(int) }},
	{Name: "auth.webhook.cache.ttl", Kind: Duration, Default: "30s", Min: int64(time.Second),
		Doc: "How long a webhook answer is reused.",
		set: func(c *Config, v any) { c.Auth.Webhook.CacheTTL = v.(time.Duration) }},
	{Name: "auth.webhook.secret", Kind: String, Default: "",
		Doc: "Sent to the webhook as Authorization: Bearer, so it can tell kedge's calls.",
		set: func(c *Config, v any) { c.Auth.Webhook.Secret = v.(string) }},
	{Name: "auth.webhook.forward.headers", Kind: List, Default: []string{"Authorization", "Cookie"},
		Doc: "Client request headers copied into authenticate calls.",
		set: func(c *Config, v any) { c.Auth.Webhook.ForwardHeaders = v.([]string) }},
	{Name: "audit.log", Kind: String, Default: "info", Allowed: []string{"debug", "info", "off"},
		Doc: "Level of audit records in the log: debug, info or off (denials are logged at warn unless off).",
		set: func(c *Config, v any) { c.Audit.Log = v.(string) }},
	{Name: "audit.events", Kind: List, Default: []string{"connect", "disconnect", "subscribe", "unsubscribe", "deny"},
		Doc: "Events recorded, of connect, disconnect, subscribe, unsubscribe, publish, deny; empty means all. The default leaves out publish: one record per message costs about a quarter of publish throughput.",
		set: func(c *Config, v any) { c.Audit.Events = v.([]string) }},
	{Name: "audit.kafka.topic", Kind: String, Default: "",
		Doc: "Kafka topic receiving audit events as JSON; empty means none. Clients never reach it, whatever kafka.topics and kafka.topics.regex say (naming it in kafka.topics is an error).",
		set: func(c *Config, v any) { c.Audit.KafkaTopic = v.(string) }},
	{Name: "audit.kafka.queue.size", Kind: Int, Default: 10000, Min: 1,
		Doc: "Audit events waiting to be produced; beyond it they are dropped and counted.",
		set: func(c *Config, v any) { c.Audit.KafkaQueueSize = v.(int) }},
	{Name: "audit.kafka.batch.size", Kind: Int, Default: 500, Min: 1,
		Doc: "Most audit events per produce call.",
		set: func(c *Config, v any) { c.Audit.KafkaBatchSize = v.(int) }},
	{Name: "audit.kafka.timeout", Kind: Duration, Default: "10s", Min: int64(time.Millisecond),
		Doc: "Bound on one produce of audit events.",
		set: func(c *Config, v any) { c.Audit.KafkaTimeout = v.(time.Duration) }},
}
