package configs

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// noEnv is an empty environment: a nil Environ would read the real one.
var noEnv = []string{}

// defaultConfig is the configuration with nothing set, written out by hand so
// that a changed default in the schema is noticed.
func defaultConfig() *Config {
	c := &Config{}
	c.Node.Name = ""
	c.Log.Level, c.Log.Format = "info", "text"
	c.HTTP.Listen = ":8080"
	c.HTTP.TLSCertFile, c.HTTP.TLSKeyFile = "", ""
	c.HTTP.HandshakeTimeout = 10 * time.Second
	c.HTTP.ShutdownTimeout = 10 * time.Second
	c.HTTP.CORSAllowedOrigins = []string{}
	c.HTTP.PublishMaxPayload = 64 << 10
	c.WS.Path = "/v1/ws"
	c.WS.MaxMessageSize = 64 << 10
	c.WS.WriteQueueSize = 1 << 20
	c.WS.WriteTimeout = 10 * time.Second
	c.WS.PingInterval = 25 * time.Second
	c.WS.PongTimeout = 10 * time.Second
	c.WS.MaxSubscriptions = 1000
	c.WS.MaxInflight = 64
	c.WS.AuthTimeout = 10 * time.Second
	c.SSE.HeartbeatInterval = 15 * time.Second
	c.SSE.Retry = 2 * time.Second
	c.SSE.WriteQueueSize = 1 << 20
	c.SSE.WriteTimeout = 10 * time.Second
	c.SSE.MaxSubscriptions = 100
	c.Limits.MaxConnections = 100000
	c.Limits.MaxConnectionsPerIP = 1000
	c.Limits.PublishRate = 1000
	c.Limits.PublishBurst = 0
	c.Recovery.MaxMessages = 10000
	c.Recovery.MaxAge = 24 * time.Hour
	c.Recovery.Timeout = 30 * time.Second
	c.Recovery.MaxPending = 10000
	c.Recovery.ConcurrentReads = 16
	c.Auth.Mode = []string{"allow-all"}
	c.Auth.Anonymous = "anonymous"
	c.Auth.TokenParam = "token"
	c.Auth.JWT.PublicKeyFiles = []string{}
	c.Auth.JWT.JWKSCheckInterval = 10 * time.Second
	c.Auth.JWT.Leeway = 30 * time.Second
	c.Auth.JWT.Claim = "kedge"
	c.Auth.Webhook.Timeout = 2 * time.Second
	c.Auth.Webhook.CacheSize = 10000
	c.Auth.Webhook.CacheTTL = 30 * time.Second
	c.Auth.Webhook.ForwardHeaders = []string{"Authorization", "Cookie"}
	c.Audit.Log = "info"
	c.Audit.Events = []string{"connect", "disconnect", "subscribe", "unsubscribe", "deny"}
	c.Audit.KafkaQueueSize = 10000
	c.Audit.KafkaBatchSize = 500
	c.Audit.KafkaTimeout = 10 * time.Second
	c.Cache.Size = 1000
	c.Cache.ExpireTime = 180 * time.Second
	c.Cache.MaxMemory = 256 << 20
	c.Kafka.Topics = []string{}
	c.Kafka.TopicsRegex = ""
	c.Kafka.Consumers = 1
	c.Kafka.Producers = 1
	c.Kafka.RecoverOnStart = true
	c.Kafka.Properties = map[string]string{}
	c.Embedded.Listen = "127.0.0.1:9092"
	c.Embedded.DataDir = "./kedge-data"
	c.Embedded.Partitions = 1
	c.Embedded.RetentionTime = 168 * time.Hour
	c.Embedded.RetentionBytes = 1 << 30
	c.MQTT.Listen = ":1883"
	c.MQTT.WSPath = "/mqtt"
	c.MQTT.TLSCertFile, c.MQTT.TLSKeyFile = "", ""
	c.MQTT.MaxPacketSize = 256 << 10
	c.MQTT.MaxInflight = 64
	c.MQTT.MaxKeepalive = 20 * time.Minute
	c.MQTT.ConnectTimeout = 10 * time.Second
	c.MQTT.WriteQueueSize = 1 << 20
	c.MQTT.WriteTimeout = 10 * time.Second
	c.MQTT.MaxSubscriptions = 1000
	c.MQTT.MaxSessionExpiry = time.Hour
	c.MQTT.SessionQueueSize = 256 << 10
	c.MQTT.MaxOfflineSessions = 10000
	c.MQTT.SessionsTopic = "__kedge_mqtt_sessions"
	c.MQTT.SessionsMaxMemory = 256 << 20
	return c
}

// fields returns every schema key's value in c, by key name.
func fields(c *Config) map[string]any {
	return map[string]any{
		"node.name":                     c.Node.Name,
		"log.level":                     c.Log.Level,
		"log.format":                    c.Log.Format,
		"http.listen":                   c.HTTP.Listen,
		"http.tls.cert.file":            c.HTTP.TLSCertFile,
		"http.tls.key.file":             c.HTTP.TLSKeyFile,
		"http.handshake.timeout":        c.HTTP.HandshakeTimeout,
		"http.shutdown.timeout":         c.HTTP.ShutdownTimeout,
		"http.cors.allowed.origins":     c.HTTP.CORSAllowedOrigins,
		"http.publish.max.payload":      c.HTTP.PublishMaxPayload,
		"ws.path":                       c.WS.Path,
		"ws.max.message.size":           c.WS.MaxMessageSize,
		"ws.write.queue.size":           c.WS.WriteQueueSize,
		"ws.write.timeout":              c.WS.WriteTimeout,
		"ws.ping.interval":              c.WS.PingInterval,
		"ws.pong.timeout":               c.WS.PongTimeout,
		"ws.max.subscriptions":          c.WS.MaxSubscriptions,
		"ws.max.inflight":               c.WS.MaxInflight,
		"ws.auth.timeout":               c.WS.AuthTimeout,
		"sse.heartbeat.interval":        c.SSE.HeartbeatInterval,
		"sse.retry":                     c.SSE.Retry,
		"sse.write.queue.size":          c.SSE.WriteQueueSize,
		"sse.write.timeout":             c.SSE.WriteTimeout,
		"sse.max.subscriptions":         c.SSE.MaxSubscriptions,
		"limits.max.connections":        c.Limits.MaxConnections,
		"limits.max.connections.per.ip": c.Limits.MaxConnectionsPerIP,
		"limits.publish.rate":           c.Limits.PublishRate,
		"limits.publish.burst":          c.Limits.PublishBurst,
		"recovery.max.messages":         c.Recovery.MaxMessages,
		"recovery.max.age":              c.Recovery.MaxAge,
		"recovery.timeout":              c.Recovery.Timeout,
		"recovery.max.pending":          c.Recovery.MaxPending,
		"recovery.concurrent.reads":     c.Recovery.ConcurrentReads,
		"auth.mode":                     c.Auth.Mode,
		"auth.authorize":                c.Auth.Authorize,
		"auth.anonymous":                c.Auth.Anonymous,
		"auth.token.param":              c.Auth.TokenParam,
		"auth.static.file":              c.Auth.StaticFile,
		"auth.jwt.secret":               c.Auth.JWT.Secret,
		"auth.jwt.public.key.files":     c.Auth.JWT.PublicKeyFiles,
		"auth.jwt.jwks.file":            c.Auth.JWT.JWKSFile,
		"auth.jwt.jwks.check.interval":  c.Auth.JWT.JWKSCheckInterval,
		"auth.jwt.issuer":               c.Auth.JWT.Issuer,
		"auth.jwt.audience":             c.Auth.JWT.Audience,
		"auth.jwt.leeway":               c.Auth.JWT.Leeway,
		"auth.jwt.allow.no.expiry":      c.Auth.JWT.AllowNoExpiry,
		"auth.jwt.claim":                c.Auth.JWT.Claim,
		"auth.webhook.url":              c.Auth.Webhook.URL,
		"auth.webhook.timeout":          c.Auth.Webhook.Timeout,
		"auth.webhook.cache.size":       c.Auth.Webhook.CacheSize,
		"auth.webhook.cache.ttl":        c.Auth.Webhook.CacheTTL,
		"auth.webhook.secret":           c.Auth.Webhook.Secret,
		"auth.webhook.forward.headers":  c.Auth.Webhook.ForwardHeaders,
		"audit.log":                     c.Audit.Log,
		"audit.events":                  c.Audit.Events,
		"audit.kafka.topic":             c.Audit.KafkaTopic,
		"audit.kafka.queue.size":        c.Audit.KafkaQueueSize,
		"audit.kafka.batch.size":        c.Audit.KafkaBatchSize,
		"audit.kafka.timeout":           c.Audit.KafkaTimeout,
		"cache.size":                    c.Cache.Size,
		"cache.expire.time":             c.Cache.ExpireTime,
		"cache.max.memory":              c.Cache.MaxMemory,
		"kafka.topics":                  c.Kafka.Topics,
		"kafka.topics.regex":            c.Kafka.TopicsRegex,
		"kafka.consumers":               c.Kafka.Consumers,
		"kafka.producers":               c.Kafka.Producers,
		"kafka.recover.on.start":        c.Kafka.RecoverOnStart,
		"embedded.listen":               c.Embedded.Listen,
		"embedded.data.dir":             c.Embedded.DataDir,
		"embedded.partitions":           c.Embedded.Partitions,
		"embedded.retention.time":       c.Embedded.RetentionTime,
		"embedded.retention.bytes":      c.Embedded.RetentionBytes,
		"mqtt.listen":                   c.MQTT.Listen,
		"mqtt.ws.path":                  c.MQTT.WSPath,
		"mqtt.tls.cert.file":            c.MQTT.TLSCertFile,
		"mqtt.tls.key.file":             c.MQTT.TLSKeyFile,
		"mqtt.max.packet.size":          c.MQTT.MaxPacketSize,
		"mqtt.max.inflight":             c.MQTT.MaxInflight,
		"mqtt.max.keepalive":            c.MQTT.MaxKeepalive,
		"mqtt.connect.timeout":          c.MQTT.ConnectTimeout,
		"mqtt.write.queue.size":         c.MQTT.WriteQueueSize,
		"mqtt.write.timeout":            c.MQTT.WriteTimeout,
		"mqtt.max.subscriptions":        c.MQTT.MaxSubscriptions,
		"mqtt.max.session.expiry":       c.MQTT.MaxSessionExpiry,
		"mqtt.session.queue.size":       c.MQTT.SessionQueueSize,
		"mqtt.max.offline.sessions":     c.MQTT.MaxOfflineSessions,
		"mqtt.sessions.topic":           c.MQTT.SessionsTopic,
		"mqtt.sessions.max.memory":      c.MQTT.SessionsMaxMemory,
	}
}

// writeFile writes a YAML file into a temporary directory and returns its path.
func writeFile(t testing.TB, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "kedge.yaml")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func mustLoad(t *testing.T, o Options) *Config {
	t.Helper()
	if o.Environ == nil {
		o.Environ = noEnv
	}
	c, err := Load(o)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	return c
}

func TestDefaults(t *testing.T) {
	got := mustLoad(t, Options{})
	if want := defaultConfig(); !reflect.DeepEqual(got, want) {
		t.Errorf("Load with nothing set:\n got %+v\nwant %+v", got, want)
	}
}

// TestSchema checks the schema table itself: every default is valid for its
// key and lands in the right field, names are unique and well formed.
func TestSchema(t *testing.T) {
	want := fields(defaultConfig())
	var names []string
	seen := map[string]bool{}
	sections := 0
	for _, k := range Keys {
		if seen[k.Name] {
			t.Errorf("key %s appears twice", k.Name)
		}
		seen[k.Name] = true
		if k.Doc == "" {
			t.Errorf("key %s has no doc", k.Name)
		}
		if k.Kind == Section {
			sections++
			if k.Name != "kafka" {
				t.Errorf("unexpected section key %s", k.Name)
			}
			continue
		}
		names = append(names, k.Name)
		if k.Name != strings.ToLower(k.Name) || strings.ContainsAny(k.Name, "_/ ") || !strings.Contains(k.Name, ".") {
			t.Errorf("key name %q is not lowercase dotted words", k.Name)
		}
		v, err := convert(k, k.Default)
		if err != nil {
			t.Errorf("default of %s is invalid: %v", k.Name, err)
			continue
		}
		if w, ok := want[k.Name]; !ok {
			t.Errorf("test helper fields() lacks key %s", k.Name)
		} else if !reflect.DeepEqual(v, w) {
			t.Errorf("default of %s converts to %#v, want %#v", k.Name, v, w)
		}
		c := &Config{}
		k.set(c, v)
		if got := fields(c)[k.Name]; !reflect.DeepEqual(got, v) {
			t.Errorf("setting %s fills the wrong field: got %#v there, want %#v", k.Name, got, v)
		}
		if k.Allowed != nil && !slices.Contains(k.Allowed, k.Default.(string)) {
			t.Errorf("default of %s is not among its allowed values", k.Name)
		}
	}
	if sections != 1 {
		t.Errorf("%d section keys, want 1 (kafka)", sections)
	}
	if len(want) != len(names) {
		t.Errorf("fields() has %d keys, schema %d", len(want), len(names))
	}
	slices.Sort(names)
	if got := Names(); !slices.Equal(got, names) {
		t.Errorf("Names() = %v, want %v", got, names)
	}
	if !slices.IsSorted(Names()) {
		t.Error("Names() is not sorted")
	}
}

func TestLoad(t *testing.T) {
	tests := []struct {
		name string
		file string // YAML content; "" means no file
		env  []string
		sets []string
		bug  string // a known bug makes this case fail
		want func(c *Config)
	}{
		{name: "empty file", file: "# nothing\n", want: func(*Config) {}},
		{name: "null document", file: "~\n", want: func(*Config) {}},
		{name: "dotted key in section", file: "cache:\n  expire.time: 10s\n",
			want: func(c *Config) { c.Cache.ExpireTime = 10 * time.Second }},
		{name: "nested key", file: "cache: {expire: {time: 10s}}\n",
			want: func(c *Config) { c.Cache.ExpireTime = 10 * time.Second }},
		{name: "partly nested key", file: "ws:\n  max:\n    message.size: 1MB\n    subscriptions: 5\n",
			want: func(c *Config) { c.WS.MaxMessageSize = 1_000_000; c.WS.MaxSubscriptions = 5 }},
		{name: "other keys keep defaults", file: "log: {level: debug}\n",
			want: func(c *Config) { c.Log.Level = "debug" }},
		{name: "scalars of every kind",
			file: "node: {name: edge-1}\nlog: {format: json}\nhttp: {listen: \"127.0.0.1:0\", shutdown.timeout: 1m30s}\n" +
				"cache: {size: 5, max.memory: 1GiB}\nkafka: {recover.on.start: false, consumers: 4}\n",
			want: func(c *Config) {
				c.Node.Name = "edge-1"
				c.Log.Format = "json"
				c.HTTP.Listen = "127.0.0.1:0"
				c.HTTP.ShutdownTimeout = 90 * time.Second
				c.Cache.Size = 5
				c.Cache.MaxMemory = 1 << 30
				c.Kafka.RecoverOnStart = false
				c.Kafka.Consumers = 4
			}},
		{name: "numbers given as strings", file: "cache: {size: \"7\"}\nkafka: {recover.on.start: \"false\"}\n",
			want: func(c *Config) { c.Cache.Size = 7; c.Kafka.RecoverOnStart = false }},
		{name: "sizes with units",
			file: "ws: {max.message.size: 64KiB, write.queue.size: 1MB}\ncache: {max.memory: 1GiB}\nembedded: {retention.bytes: 2GB}\n",
			want: func(c *Config) {
				c.WS.MaxMessageSize = 65536
				c.WS.WriteQueueSize = 1_000_000
				c.Cache.MaxMemory = 1 << 30
				c.Embedded.RetentionBytes = 2_000_000_000
			}},
		{name: "size as plain number", file: "ws: {max.message.size: 4096}\n",
			want: func(c *Config) { c.WS.MaxMessageSize = 4096 }},
		{name: "topics list and regex coexist",
			file: "kafka:\n  topics: [orders, prices]\n  topics.regex: \"sensor-.*\"\n",
			want: func(c *Config) { c.Kafka.Topics = []string{"orders", "prices"}; c.Kafka.TopicsRegex = "sensor-.*" }},
		{name: "topics as a comma-separated string", file: "kafka: {topics: \"a, b,,c\"}\n",
			want: func(c *Config) { c.Kafka.Topics = []string{"a", "b", "c"} }},
		{name: "topics list from file, regex from env",
			file: "kafka: {topics: [a]}\n", env: []string{"KEDGE_KAFKA_TOPICS_REGEX=b.*"},
			want: func(c *Config) { c.Kafka.Topics = []string{"a"}; c.Kafka.TopicsRegex = "b.*" }},
		{name: "kafka properties in the kafka section",
			file: "kafka:\n  linger.ms: 5\n  bootstrap.servers: [a:9092, b:9092]\n  enable.idempotence: true\n  ssl:\n    ca:\n      location: /etc/ca.pem\n",
			want: func(c *Config) {
				c.Kafka.Properties = map[string]string{"linger.ms": "5", "bootstrap.servers": "a:9092,b:9092",
					"enable.idempotence": "true", "ssl.ca.location": "/etc/ca.pem"}
			}},

		// Environment.
		{name: "env overrides default", env: []string{"KEDGE_CACHE_EXPIRE_TIME=5s"},
			want: func(c *Config) { c.Cache.ExpireTime = 5 * time.Second }},
		{name: "env beats dotted file key", file: "cache: {expire.time: 10s}\n", env: []string{"KEDGE_CACHE_EXPIRE_TIME=5s"},
			want: func(c *Config) { c.Cache.ExpireTime = 5 * time.Second }},
		{name: "env beats nested file key", file: "cache: {expire: {time: 10s}}\n", env: []string{"KEDGE_CACHE_EXPIRE_TIME=5s"},
			want: func(c *Config) { c.Cache.ExpireTime = 5 * time.Second }},
		{name: "env beats nested file Kafka property", file: "kafka: {linger: {ms: 1}}\n", env: []string{"KEDGE_KAFKA_LINGER_MS=5"},
			want: func(c *Config) { c.Kafka.Properties = map[string]string{"linger.ms": "5"} }},
		{name: "env of every kind",
			env: []string{"KEDGE_WS_MAX_MESSAGE_SIZE=1MiB", "KEDGE_KAFKA_TOPICS=a,b", "KEDGE_KAFKA_RECOVER_ON_START=false",
				"KEDGE_LOG_LEVEL=debug", "KEDGE_CACHE_SIZE= 42 ", "KEDGE_NODE_NAME=n=1"},
			want: func(c *Config) {
				c.WS.MaxMessageSize = 1 << 20
				c.Kafka.Topics = []string{"a", "b"}
				c.Kafka.RecoverOnStart = false
				c.Log.Level = "debug"
				c.Cache.Size = 42
				c.Node.Name = "n=1"
			}},
		{name: "env Kafka property", env: []string{"KEDGE_KAFKA_LINGER_MS=5", "KEDGE_KAFKA_BOOTSTRAP_SERVERS=k:9092"},
			want: func(c *Config) {
				c.Kafka.Properties = map[string]string{"linger.ms": "5", "bootstrap.servers": "k:9092"}
			}},
		{name: "other variables are ignored", env: []string{"PATH=/bin", "KEDGEX_CACHE_SIZE=1", "kedge_cache_size=1", "HOME=/", "NOEQUALS"},
			want: func(*Config) {}},

		// KEDGE_KAFKA_EXTRA_OPTS.
		{name: "extra opts override file and env", file: "kafka: {linger.ms: 1, topics: [f], bootstrap.servers: file:9092}\n",
			env: []string{ExtraOptsEnv + "=-Dbootstrap.servers=a:9092 -Dlinger.ms=5 -Dtopics=x,y", "KEDGE_KAFKA_LINGER_MS=3", "KEDGE_KAFKA_TOPICS=z"},
			want: func(c *Config) {
				c.Kafka.Topics = []string{"x", "y"}
				c.Kafka.Properties = map[string]string{"bootstrap.servers": "a:9092", "linger.ms": "5"}
			}},
		{name: "extra opts beat env whatever the order",
			env: []string{"KEDGE_KAFKA_LINGER_MS=3", "KEDGE_KAFKA_TOPICS=z", ExtraOptsEnv + "=-Dlinger.ms=5 -Dtopics=x,y", "KEDGE_KAFKA_CONSUMERS=2"},
			want: func(c *Config) {
				c.Kafka.Topics = []string{"x", "y"}
				c.Kafka.Consumers = 2
				c.Kafka.Properties = map[string]string{"linger.ms": "5"}
			}},
		{name: "extra opts set kedge's own kafka keys", env: []string{ExtraOptsEnv + "=-Dconsumers=3 -Dtopics.regex=t.* -Drecover.on.start=false"},
			want: func(c *Config) { c.Kafka.Consumers = 3; c.Kafka.TopicsRegex = "t.*"; c.Kafka.RecoverOnStart = false }},
		{name: "extra opts with a quoted value",
			env: []string{ExtraOptsEnv + `=-Dsasl.jaas.config='x.PlainLoginModule required username="u" password="p";' -Dclient.id="my edge"`},
			want: func(c *Config) {
				c.Kafka.Properties = map[string]string{"sasl.jaas.config": `x.PlainLoginModule required username="u" password="p";`, "client.id": "my edge"}
			}},
		{name: "empty extra opts", env: []string{ExtraOptsEnv + "="}, want: func(*Config) {}},

		// Command line.
		{name: "sets beat everything", file: "cache: {expire.time: 10s}\nkafka: {linger.ms: 1}\n",
			env:  []string{"KEDGE_CACHE_EXPIRE_TIME=5s", ExtraOptsEnv + "=-Dlinger.ms=5 -Dconsumers=2"},
			sets: []string{"cache.expire.time=1s", "kafka.linger.ms=9", "kafka.consumers=7"},
			want: func(c *Config) {
				c.Cache.ExpireTime = time.Second
				c.Kafka.Consumers = 7
				c.Kafka.Properties = map[string]string{"linger.ms": "9"}
			}},
		{name: "set beats nested file key", file: "cache: {expire: {time: 10s}}\n", sets: []string{"cache.expire.time=7s"},
			want: func(c *Config) { c.Cache.ExpireTime = 7 * time.Second }},
		{name: "later set wins", sets: []string{"cache.size=1", "cache.size=2"},
			want: func(c *Config) { c.Cache.Size = 2 }},
		{name: "set value may hold =", sets: []string{"node.name=a=b", "kafka.topics=p,q"},
			want: func(c *Config) { c.Node.Name = "a=b"; c.Kafka.Topics = []string{"p", "q"} }},

		// Empty sections and YAML's dates.
		{name: "empty section", file: "cache:\n  # size: 1000\nlog:\n",
			want: func(*Config) {}},
		{name: "empty kafka section", file: "kafka:\n  # linger.ms: 5\n",
			want: func(*Config) {}},
		{name: "date-like string", file: "node: {name: 2024-01-02}\n",
			want: func(c *Config) { c.Node.Name = "2024-01-02" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := Options{Environ: tt.env, Sets: tt.sets}
			if o.Environ == nil {
				o.Environ = noEnv
			}
			if tt.file != "" {
				o.File = writeFile(t, tt.file)
			}
			got, err := Load(o)
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			want := defaultConfig()
			tt.want(want)
			if !reflect.DeepEqual(got, want) {
				t.Errorf("\n got %+v\nwant %+v", got, want)
			}
		})
	}
}

// TestLoadProcessEnvironment checks that a nil Environ reads the real environment.
func TestLoadProcessEnvironment(t *testing.T) {
	t.Setenv("KEDGE_CACHE_SIZE", "7")
	t.Setenv(ExtraOptsEnv, "-Dlinger.ms=5")
	c, err := Load(Options{})
	if err != nil {
		t.Fatal(err)
	}
	if c.Cache.Size != 7 || c.Kafka.Properties["linger.ms"] != "5" {
		t.Errorf("cache.size = %d, linger.ms = %q; want 7 and 5 from the environment", c.Cache.Size, c.Kafka.Properties["linger.ms"])
	}
	c, err = Load(Options{Environ: noEnv})
	if err != nil {
		t.Fatal(err)
	}
	if c.Cache.Size != 1000 {
		t.Errorf("an empty Environ read the process environment: cache.size = %d", c.Cache.Size)
	}
}

// TestTestdata loads every valid file under testdata.
func TestTestdata(t *testing.T) {
	full := defaultConfig()
	full.Node.Name = "edge-7"
	full.Log.Level, full.Log.Format = "warn", "json"
	full.HTTP.Listen = "0.0.0.0:9000"
	full.HTTP.ShutdownTimeout = 30 * time.Second
	full.WS.Path = "/ws"
	full.WS.MaxMessageSize = 1 << 20
	full.WS.WriteQueueSize = 4 << 20
	full.WS.WriteTimeout = 5 * time.Second
	full.WS.PingInterval = 20 * time.Second
	full.WS.PongTimeout = 5 * time.Second
	full.WS.MaxSubscriptions = 50
	full.Cache.Size = 100
	full.Cache.ExpireTime = 10 * time.Minute
	full.Cache.MaxMemory = 512_000_000
	full.Kafka.Topics = []string{"orders", "prices"}
	full.Kafka.TopicsRegex = "sensor-[0-9]+"
	full.Kafka.Consumers = 4
	full.Kafka.Producers = 2
	full.Kafka.RecoverOnStart = false
	full.Kafka.Properties = map[string]string{
		"bootstrap.servers": "k1:9092,k2:9092", "client.id": "edge-7", "linger.ms": "5",
		"compression.type": "zstd", "security.protocol": "SASL_SSL", "sasl.mechanism": "SCRAM-SHA-512",
		"sasl.username": "edge", "sasl.password": "secret", "partitioner.class": "null-key-zero",
	}
	full.Embedded.Listen = "127.0.0.1:0"
	full.Embedded.DataDir = ""
	full.Embedded.Partitions = 3
	full.Embedded.RetentionTime = 24 * time.Hour
	full.Embedded.RetentionBytes = 100 << 20

	nested := defaultConfig()
	nested.WS.MaxMessageSize = 128 << 10
	nested.WS.PingInterval = 30 * time.Second
	nested.Cache.ExpireTime = 5 * time.Minute
	nested.Kafka.TopicsRegex = "t.*"
	nested.Kafka.RecoverOnStart = false
	nested.Kafka.Properties = map[string]string{"linger.ms": "20", "ssl.ca.location": "/etc/kafka/ca.pem"}
	nested.Embedded.RetentionTime = time.Hour

	for file, want := range map[string]*Config{"testdata/full.yaml": full, "testdata/nested.yaml": nested} {
		t.Run(file, func(t *testing.T) {
			got := mustLoad(t, Options{File: file})
			if !reflect.DeepEqual(got, want) {
				t.Errorf("\n got %+v\nwant %+v", got, want)
			}
		})
	}
	for file, want := range map[string][]string{
		"testdata/unknown.yaml":   {`"cache.expire.tim"`, `"cache.colour"`, `"frobnicate"`},
		"testdata/badvalues.yaml": {"key log.level", "key ws.max.message.size", "key ws.write.timeout", "key cache.size", "key cache.expire.time", "key kafka.topics", "key kafka.recover.on.start"},
		"testdata/syntax.yaml":    {"config file testdata/syntax.yaml"},
	} {
		t.Run(file, func(t *testing.T) {
			_, err := Load(Options{File: file, Environ: noEnv})
			if err == nil {
				t.Fatal("Load succeeded; want an error")
			}
			for _, w := range append(want, file) {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not contain %q:\n%v", w, err)
				}
			}
		})
	}
}

func TestLoadErrors(t *testing.T) {
	tests := []struct {
		name    string
		file    string // YAML content
		env     []string
		sets    []string
		is      error    // a sentinel the error must wrap, or nil
		want    []string // substrings of the error; "FILE" stands for the file's path
		notWant []string
		count   int // if set, how many errors are joined
	}{
		// Unknown keys, with their origin and a suggestion.
		{name: "unknown key in file", file: "cache:\n  expire.tim: 1s\n", is: ErrUnknownKey,
			want: []string{`unknown key "cache.expire.tim"`, "in FILE", `did you mean "cache.expire.time"?`}},
		{name: "unknown nested key in file", file: "ws: {ping: {intervall: 1s}}\n", is: ErrUnknownKey,
			want: []string{`"ws.ping.intervall"`, "in FILE", `did you mean "ws.ping.interval"?`}},
		{name: "unknown key in env", env: []string{"KEDGE_CACHE_SIZ=1"}, is: ErrUnknownKey,
			want: []string{`unknown key "cache.siz"`, "from environment variable KEDGE_CACHE_SIZ", `did you mean "cache.size"?`}},
		{name: "unknown key from --set", sets: []string{"ws.pingg.interval=1s"}, is: ErrUnknownKey,
			want: []string{`unknown key "ws.pingg.interval"`, "from the command line", `did you mean "ws.ping.interval"?`}},
		{name: "misspelled section", file: "kafak:\n  consumers: 2\n", is: ErrUnknownKey,
			want: []string{`"kafak.consumers"`, `did you mean "kafka.consumers"?`}},
		{name: "far miss has no suggestion", file: "frobnicate: 1\n", is: ErrUnknownKey,
			want: []string{`unknown key "frobnicate"`, "in FILE"}, notWant: []string{"did you mean"}},
		{name: "unknown key in a known section", env: []string{"KEDGE_CACHE_COLOUR=red"}, is: ErrUnknownKey,
			want: []string{`"cache.colour"`, "KEDGE_CACHE_COLOUR"}, notWant: []string{"did you mean"}},

		// Wrong types and values name the key and where it came from.
		{name: "duration without unit", file: "cache: {expire.time: 10}\n",
			want: []string{"key cache.expire.time (in FILE)", "want a duration"}},
		{name: "bad duration", file: "ws: {write.timeout: soon}\n",
			want: []string{"key ws.write.timeout", "soon"}},
		{name: "bad size", file: "ws: {max.message.size: 64KB2}\n",
			want: []string{"key ws.max.message.size (in FILE)", "want a size", "64KB2"}},
		{name: "size unit not known", sets: []string{"cache.max.memory=1TiB"},
			want: []string{"key cache.max.memory (from the command line)", "want a size"}},
		{name: "negative size", file: "cache: {max.memory: -5KiB}\n",
			want: []string{"key cache.max.memory", "want a size"}},
		{name: "negative integer", file: "cache: {size: -1}\n",
			want: []string{"key cache.size (in FILE)", "-1 is below the minimum 1"}},
		{name: "negative duration", env: []string{"KEDGE_WS_PING_INTERVAL=-5s"},
			want: []string{"key ws.ping.interval (from environment variable KEDGE_WS_PING_INTERVAL)", "below the minimum 1ms"}},
		{name: "duration below minimum", file: "cache: {expire.time: 500ms}\n",
			want: []string{"key cache.expire.time", "500ms is below the minimum 1s"}},
		{name: "size below minimum", file: "embedded: {retention.bytes: 1KiB}\n",
			want: []string{"key embedded.retention.bytes", "1024 is below the minimum 1048576"}},
		{name: "zero below minimum", sets: []string{"kafka.consumers=0"},
			want: []string{"key kafka.consumers (from the command line)", "below the minimum 1"}},
		{name: "below minimum from extra opts", env: []string{ExtraOptsEnv + "=-Dproducers=0"},
			want: []string{"key kafka.producers (from " + ExtraOptsEnv + ")", "below the minimum 1"}},
		{name: "log level not allowed", file: "log: {level: verbose}\n",
			want: []string{"key log.level (in FILE)", `"verbose" is not one of debug, info, warn, error`}},
		{name: "log format not allowed", env: []string{"KEDGE_LOG_FORMAT=xml"},
			want: []string{"key log.format", `"xml" is not one of text, json`}},
		{name: "not an integer", file: "cache: {size: ten}\n",
			want: []string{"key cache.size", "want an integer"}},
		{name: "fractional integer", file: "cache: {size: 1.5}\n",
			want: []string{"key cache.size", "want an integer"}},
		{name: "not a boolean", file: "kafka: {recover.on.start: maybe}\n",
			want: []string{"key kafka.recover.on.start", "want true or false"}},
		{name: "list given to a string key", file: "node: {name: [a, b]}\n",
			want: []string{"key node.name", "want a string"}},
		{name: "nested list element", file: "kafka: {topics: [[a]]}\n",
			want: []string{"key kafka.topics", "list element"}},
		{name: "Kafka property given a list of maps", file: "kafka: {linger.ms: [{a: 1}]}\n",
			want: []string{"key kafka.linger.ms"}},
		{name: "kafka section set as a value", env: []string{"KEDGE_KAFKA=x"},
			want: []string{"key kafka (from environment variable KEDGE_KAFKA)"}},

		// Malformed sources.
		{name: "YAML syntax error names the file", file: "cache:\n  size: [1, 2\n",
			want: []string{"config file FILE", "yaml"}},
		{name: "YAML that is not a map", file: "- a\n- b\n", want: []string{"config file FILE"}},
		{name: "duplicate YAML key", file: "cache: {size: 1}\ncache: {size: 2}\n", want: []string{"config file FILE", "already defined"}},
		{name: "set without =", sets: []string{"cache.size"}, want: []string{`--set "cache.size"`, "key=value"}},
		{name: "set without a key", sets: []string{"=5"}, want: []string{`--set "=5"`}},
		{name: "malformed extra opts", env: []string{ExtraOptsEnv + "=-Dlinger.ms=5 linger.ms=6"},
			want: []string{ExtraOptsEnv, `"linger.ms=6" is not of the form -Dname=value`}},

		// Several problems at once.
		{name: "several errors reported together",
			file: "cache:\n  size: 0\n  expire.tim: 1s\nlog:\n  level: loud\n",
			env:  []string{"KEDGE_WS_PATHH=/x", "KEDGE_WS_WRITE_TIMEOUT=fast"},
			sets: []string{"embedded.partitions=-2", "nodes.name=x"},
			is:   ErrUnknownKey,
			want: []string{"key cache.size", `"cache.expire.tim"`, "key log.level", `"ws.pathh"`, "key ws.write.timeout",
				"key embedded.partitions", `"nodes.name"`, `did you mean "node.name"?`},
			count: 7},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := Options{Environ: tt.env, Sets: tt.sets}
			if o.Environ == nil {
				o.Environ = noEnv
			}
			if tt.file != "" {
				o.File = writeFile(t, tt.file)
			}
			c, err := Load(o)
			if err == nil {
				t.Fatalf("Load succeeded with %+v; want an error", c)
			}
			if c != nil {
				t.Errorf("Load returned a Config with its error")
			}
			msg := err.Error()
			for _, w := range tt.want {
				w = strings.ReplaceAll(w, "FILE", o.File)
				if !strings.Contains(msg, w) {
					t.Errorf("error does not contain %q:\n%s", w, msg)
				}
			}
			for _, w := range tt.notWant {
				if strings.Contains(msg, w) {
					t.Errorf("error contains %q:\n%s", w, msg)
				}
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("error does not wrap %v: %v", tt.is, err)
			}
			if tt.is == nil && errors.Is(err, ErrUnknownKey) {
				t.Errorf("error wraps ErrUnknownKey but no key is unknown: %v", err)
			}
			if tt.count > 0 {
				var multi interface{ Unwrap() []error }
				if !errors.As(err, &multi) {
					t.Fatalf("error is not a joined error: %v", err)
				}
				if n := len(multi.Unwrap()); n != tt.count {
					t.Errorf("%d errors joined, want %d:\n%s", n, tt.count, msg)
				}
				if n := strings.Count(msg, "\n") + 1; n != tt.count {
					t.Errorf("%d lines, want one per error (%d):\n%s", n, tt.count, msg)
				}
			}
		})
	}
}

func TestMissingFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "absent.yaml")
	_, err := Load(Options{File: p, Environ: noEnv})
	if err == nil || !strings.Contains(err.Error(), p) {
		t.Errorf("error %v does not name the missing file %s", err, p)
	}
}

// TestUnknownKeyIsolated checks that each unknown-key error is its own error
// wrapping ErrUnknownKey, with the key quoted exactly once.
func TestUnknownKeyIsolated(t *testing.T) {
	_, err := Load(Options{Environ: noEnv, Sets: []string{"cache.sise=1", "zzz.yyy=2"}})
	var multi interface{ Unwrap() []error }
	if !errors.As(err, &multi) {
		t.Fatalf("want a joined error, got %v", err)
	}
	errs := multi.Unwrap()
	if len(errs) != 2 {
		t.Fatalf("want 2 errors, got %d: %v", len(errs), err)
	}
	for i, key := range []string{"cache.sise", "zzz.yyy"} {
		if !errors.Is(errs[i], ErrUnknownKey) {
			t.Errorf("error %d (%v) does not wrap ErrUnknownKey", i, errs[i])
		}
		if strings.Count(errs[i].Error(), `"`+key+`"`) != 1 {
			t.Errorf("error %d does not name %q once: %v", i, key, errs[i])
		}
	}
}

func TestSuggest(t *testing.T) {
	for in, want := range map[string]string{
		"cache.expire.tim":     "cache.expire.time",
		"cache.expiretime":     "cache.expire.time",
		"kafak.consumers":      "kafka.consumers",
		"ws.max.mesage.size":   "ws.max.message.size",
		"log.levels":           "log.level",
		"embeded.data.dir":     "embedded.data.dir",
		"completely.different": "",
		"kafka":                "", // the section itself is never suggested
		"":                     "",
	} {
		if got := suggest(in); got != want {
			t.Errorf("suggest(%q) = %q, want %q", in, got, want)
		}
	}
	for _, tc := range []struct {
		a, b string
		d    int
	}{{"", "", 0}, {"abc", "", 3}, {"", "ab", 2}, {"kitten", "sitting", 3}, {"same", "same", 0}, {"ab", "ba", 2}} {
		if got := distance(tc.a, tc.b); got != tc.d {
			t.Errorf("distance(%q, %q) = %d, want %d", tc.a, tc.b, got, tc.d)
		}
	}
}

func TestParseBytes(t *testing.T) {
	tests := []struct {
		in   any
		want int64
		bad  bool
	}{
		{in: 65536, want: 65536},
		{in: int64(7), want: 7},
		{in: float64(2048), want: 2048},
		{in: "65536", want: 65536},
		{in: "0", want: 0},
		{in: "64KiB", want: 64 << 10},
		{in: "1MiB", want: 1 << 20},
		{in: "1GiB", want: 1 << 30},
		{in: "1KB", want: 1000},
		{in: "1MB", want: 1_000_000},
		{in: "2GB", want: 2_000_000_000},
		{in: "512B", want: 512},
		{in: " 3 MiB ", want: 3 << 20},
		{in: "8589934591GiB", want: 8589934591 << 30},
		{in: "8589934592GiB", bad: true}, // overflows int64
		{in: "1.5MiB", bad: true},
		{in: "-1KiB", bad: true},
		{in: "64kib", bad: true},
		{in: "1TiB", bad: true},
		{in: "KiB", bad: true},
		{in: "", bad: true},
		{in: "lots", bad: true},
		{in: "5iB", bad: true},
		{in: true, bad: true},
		{in: float64(1.5), bad: true},
		{in: nil, bad: true},
	}
	for _, tt := range tests {
		got, err := ParseBytes(tt.in)
		switch {
		case tt.bad && err == nil:
			t.Errorf("ParseBytes(%#v) = %d, want an error", tt.in, got)
		case !tt.bad && err != nil:
			t.Errorf("ParseBytes(%#v): %v", tt.in, err)
		case !tt.bad && got != tt.want:
			t.Errorf("ParseBytes(%#v) = %d, want %d", tt.in, got, tt.want)
		}
	}
}

func TestParseExtraOpts(t *testing.T) {
	tests := []struct {
		in   string
		want map[string]string
		bad  string // the token the error must quote
		bug  string
	}{
		{in: "", want: map[string]string{}},
		{in: "  \t\n ", want: map[string]string{}},
		{in: "-Dlinger.ms=5", want: map[string]string{"linger.ms": "5"}},
		{in: "-Dbootstrap.servers=a:9092,b:9092 -Dlinger.ms=5\t-Dtopics=x,y\n-Dacks=all",
			want: map[string]string{"bootstrap.servers": "a:9092,b:9092", "linger.ms": "5", "topics": "x,y", "acks": "all"}},
		{in: `-Dsasl.jaas.config="a b  c"`, want: map[string]string{"sasl.jaas.config": "a b  c"}},
		{in: `-Dsasl.jaas.config='x required username="u" password="p";'`,
			want: map[string]string{"sasl.jaas.config": `x required username="u" password="p";`}},
		{in: `"-Dclient.id=my edge"`, want: map[string]string{"client.id": "my edge"}},
		{in: `-Dclient.id=a"b c"d`, want: map[string]string{"client.id": "ab cd"}},
		{in: `-Dclient.id=""`, want: map[string]string{"client.id": ""}},
		{in: "-Dclient.id=", want: map[string]string{"client.id": ""}},
		{in: "-Dclient.id=a=b", want: map[string]string{"client.id": "a=b"}},
		{in: "-Dlinger.ms=1 -Dlinger.ms=2", want: map[string]string{"linger.ms": "2"}},
		{in: "linger.ms=5", bad: "linger.ms=5"},
		{in: "-Dlinger.ms", bad: "-Dlinger.ms"},
		{in: "-D=5", bad: "-D=5"},
		{in: "-D", bad: "-D"},
		{in: "-Xmx=1g", bad: "-Xmx=1g"},
		{in: "-Dlinger.ms=5 junk", bad: "junk"},
		{in: `-Dlinger.ms=5 ""`, bad: ""},
		{in: `-Dclient.id="unterminated`, bad: `-Dclient.id=unterminated`},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseExtraOpts(tt.in)
			if tt.want == nil {
				if err == nil {
					t.Fatalf("ParseExtraOpts(%q) = %v, want an error", tt.in, got)
				}
				for _, w := range []string{ExtraOptsEnv, strconv.Quote(tt.bad)} {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q does not contain %s", err, w)
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseExtraOpts(%q): %v", tt.in, err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("ParseExtraOpts(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

// An explicit null keeps a key's default, like a section whose keys are all
// commented out.
func TestNullKeepsDefault(t *testing.T) {
	for _, yaml := range []string{"kafka: {topics: null}\n", "kafka: {linger.ms: null}\n", "cache: {size: }\n"} {
		got, err := Load(Options{File: writeFile(t, yaml), Environ: noEnv})
		if err != nil {
			t.Fatalf("%q: %v", yaml, err)
		}
		want, _ := Load(Options{Environ: noEnv})
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("%q: got %+v, want the defaults", yaml, got)
		}
	}
}

// Variables that name no section are not configuration (kedge sub reads
// KEDGE_URL); a misspelt key within a section is still an error.
func TestEnvOutsideSections(t *testing.T) {
	if _, err := Load(Options{Environ: []string{"KEDGE_URL=ws://x", "KEDGE_HOME=/tmp"}}); err != nil {
		t.Fatalf("KEDGE_URL and KEDGE_HOME: %v", err)
	}
	_, err := Load(Options{Environ: []string{"KEDGE_CACHE_SIZ=5"}})
	if !errors.Is(err, ErrUnknownKey) || !strings.Contains(err.Error(), "cache.siz") {
		t.Fatalf("KEDGE_CACHE_SIZ: %v", err)
	}
}
