package kafka

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"
)

// ErrUnknownProperty is wrapped by the error for a Kafka property kedge does not know.
var ErrUnknownProperty = errors.New("unknown Kafka property")

// ErrUnsupportedProperty is wrapped by the error for a Kafka property kedge
// knows but cannot honour (the message says why).
var ErrUnsupportedProperty = errors.New("unsupported Kafka property")

// Options are franz-go options built from Kafka properties.
type Options struct {
	Brokers  []string
	Common   []kgo.Opt // every client
	Producer []kgo.Opt // producer clients only
	Consumer []kgo.Opt // consumer clients only
	// DeliveryTimeout bounds how long a publish waits for Kafka (delivery.timeout.ms).
	DeliveryTimeout time.Duration
	// MetadataMaxAge is how often topics and partitions are rediscovered.
	MetadataMaxAge time.Duration
}

// consumerOpts is a consumer client's options: the seeds, the properties'
// common and consumer options, then extra (which win over them).
func (o Options) consumerOpts(extra ...kgo.Opt) []kgo.Opt {
	return slices.Concat([]kgo.Opt{kgo.SeedBrokers(o.Brokers...)}, o.Common, o.Consumer, extra)
}

// producerOpts is consumerOpts for a producer client.
func (o Options) producerOpts(extra ...kgo.Opt) []kgo.Opt {
	return slices.Concat([]kgo.Opt{kgo.SeedBrokers(o.Brokers...)}, o.Common, o.Producer, extra)
}

// Defaults kedge uses where Kafka's own would not suit an edge server.
const (
	DefaultDeliveryTimeout = 15 * time.Second
	DefaultMetadataMaxAge  = 5 * time.Second
)

// builder accumulates what properties ask for; some options need several
// properties together (TLS, SASL).
type builder struct {
	opts                      Options
	protocol, mechanism       string
	user, pass                string
	caFile, certFile, keyFile string
	verifyHost                bool
}

type property struct {
	doc   string
	apply func(b *builder, v string) error
}

// unsupported lists Kafka properties kedge recognises but will not take, with
// the reason given to the user.
var unsupported = map[string]string{
	"group.id":                              "kedge reads every partition itself and uses no consumer group",
	"enable.auto.commit":                    "kedge commits no offsets",
	"auto.offset.reset":                     "kedge starts at the end, or cache.expire.time back with kafka.recover.on.start",
	"transactional.id":                      "kedge does not produce transactionally",
	"key.serializer":                        "kedge passes keys and values through as bytes",
	"value.serializer":                      "kedge passes keys and values through as bytes",
	"key.deserializer":                      "kedge passes keys and values through as bytes",
	"value.deserializer":                    "kedge passes keys and values through as bytes",
	"ssl.truststore.location":               "Java key stores are not supported; use ssl.ca.location with a PEM file",
	"ssl.keystore.location":                 "Java key stores are not supported; use ssl.certificate.location and ssl.key.location with PEM files",
	"ssl.truststore.password":               "Java key stores are not supported",
	"ssl.keystore.password":                 "Java key stores are not supported",
	"sasl.oauthbearer.config":               "OAUTHBEARER is not supported yet",
	"max.block.ms":                          "kedge never blocks a publish on a full buffer; it fails at once with kafka_busy",
	"max.in.flight.requests.per.connection": "franz-go's idempotent producer manages its in-flight requests itself",
}

// properties maps every Kafka property name kedge accepts onto franz-go.
var properties = map[string]property{
	"bootstrap.servers": {"Comma-separated host:port list; empty starts the embedded broker.", func(b *builder, v string) error {
		for _, s := range strings.Split(v, ",") {
			if s = strings.TrimSpace(s); s != "" {
				if err := checkBroker(s); err != nil {
					return err
				}
				b.opts.Brokers = append(b.opts.Brokers, s)
			}
		}
		return nil
	}},
	"client.id": {"Client ID sent to brokers (default kedge).", func(b *builder, v string) error {
		b.common(kgo.ClientID(v))
		return nil
	}},
	"security.protocol": {"PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL.", func(b *builder, v string) error {
		v = strings.ToUpper(v)
		if !slices.Contains([]string{"PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"}, v) {
			return fmt.Errorf("%q is not PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL", v)
		}
		b.protocol = v
		return nil
	}},
	"sasl.mechanism": {"PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512.", func(b *builder, v string) error {
		v = strings.ToUpper(v)
		if !slices.Contains([]string{"PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"}, v) {
			return fmt.Errorf("%q is not PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512", v)
		}
		b.mechanism = v
		return nil
	}},
	"sasl.username":    {"SASL user name.", func(b *builder, v string) error { b.user = v; return nil }},
	"sasl.password":    {"SASL password.", func(b *builder, v string) error { b.pass = v; return nil }},
	"sasl.jaas.config": {"Java-style JAAS line; its username and password are used.", parseJAAS},
	"ssl.ca.location": {"PEM file of the CA certificates to trust.", func(b *builder, v string) error {
		b.caFile = v
		return nil
	}},
	"ssl.certificate.location": {"PEM client certificate (mutual TLS).", func(b *builder, v string) error {
		b.certFile = v
		return nil
	}},
	"ssl.key.location": {"PEM client key (mutual TLS).", func(b *builder, v string) error {
		b.keyFile = v
		return nil
	}},
	"ssl.endpoint.identification.algorithm": {"https (verify the broker host name, the default) or empty.", func(b *builder, v string) error {
		switch strings.ToLower(v) {
		case "https":
			b.verifyHost = true
		case "", "none":
			b.verifyHost = false
		default:
			return fmt.Errorf("%q is not https or empty", v)
		}
		return nil
	}},
	"acks": {"Must be all (or -1): kedge acknowledges a publish only once every in-sync replica has it.", func(b *builder, v string) error {
		if v != "all" && v != "-1" {
			return fmt.Errorf("%w: acks=%s: kedge acknowledges publishes only after acks=all, so nothing acknowledged is lost", ErrUnsupportedProperty, v)
		}
		return nil
	}},
	"enable.idempotence": {"Must be true: per-key order depends on it.", func(b *builder, v string) error {
		if ok, err := strconv.ParseBool(v); err != nil || !ok {
			return fmt.Errorf("%w: enable.idempotence=%s: kedge keeps per-key order with the idempotent producer", ErrUnsupportedProperty, v)
		}
		return nil
	}},
	"compression.type": {"none, gzip, snappy, lz4 or zstd.", func(b *builder, v string) error {
		codecs := map[string]kgo.CompressionCodec{"none": kgo.NoCompression(), "gzip": kgo.GzipCompression(),
			"snappy": kgo.SnappyCompression(), "lz4": kgo.Lz4Compression(), "zstd": kgo.ZstdCompression()}
		c, ok := codecs[strings.ToLower(v)]
		if !ok {
			return fmt.Errorf("%q is not none, gzip, snappy, lz4 or zstd", v)
		}
		b.producer(kgo.ProducerBatchCompression(c))
		return nil
	}},
	"linger.ms":          {"How long a producer waits to fill a batch.", msOpt(func(d time.Duration) kgo.Opt { return kgo.ProducerLinger(d) }, toProducer)},
	"batch.size":         {"Largest record batch in bytes.", intOpt(func(n int) kgo.Opt { return kgo.ProducerBatchMaxBytes(int32(n)) }, toProducer)},
	"buffer.memory":      {"Bytes of publishes buffered before new ones fail with kafka_busy.", intOpt(func(n int) kgo.Opt { return kgo.MaxBufferedBytes(n) }, toProducer)},
	"request.timeout.ms": {"How long a produce request may take at the broker.", msOpt(func(d time.Duration) kgo.Opt { return kgo.ProduceRequestTimeout(d) }, toProducer)},
	"delivery.timeout.ms": {"Longest a publish waits for Kafka's acknowledgement (kedge default 15000).", func(b *builder, v string) error {
		d, err := parseMs(v)
		if err != nil || d < time.Second {
			return fmt.Errorf("want at least 1000 milliseconds (franz-go's minimum), got %q", v)
		}
		b.opts.DeliveryTimeout = d
		return nil
	}},
	"retries":          {"Produce retries before a publish fails.", intOpt(func(n int) kgo.Opt { return kgo.RecordRetries(n) }, toProducer)},
	"retry.backoff.ms": {"Wait between retries.", msOpt(func(d time.Duration) kgo.Opt { return kgo.RetryBackoffFn(func(int) time.Duration { return d }) }, toCommon)},
	"partitioner.class": {"default (murmur2 keys, sticky null keys), null-key-zero (null keys all to partition 0, so they are ordered too) or round-robin.", func(b *builder, v string) error {
		p, err := partitioner(v)
		if err == nil {
			b.producer(kgo.RecordPartitioner(p))
		}
		return err
	}},
	"fetch.max.bytes":           {"Most bytes one fetch returns.", intOpt(func(n int) kgo.Opt { return kgo.FetchMaxBytes(int32(n)) }, toConsumer)},
	"fetch.min.bytes":           {"Fewest bytes a fetch waits for.", intOpt(func(n int) kgo.Opt { return kgo.FetchMinBytes(int32(n)) }, toConsumer)},
	"fetch.max.wait.ms":         {"Longest a fetch waits for fetch.min.bytes.", msOpt(func(d time.Duration) kgo.Opt { return kgo.FetchMaxWait(d) }, toConsumer)},
	"max.partition.fetch.bytes": {"Most bytes per partition in one fetch.", intOpt(func(n int) kgo.Opt { return kgo.FetchMaxPartitionBytes(int32(n)) }, toConsumer)},
	"isolation.level": {"read_uncommitted (default) or read_committed.", func(b *builder, v string) error {
		switch v {
		case "read_uncommitted":
			b.consumer(kgo.FetchIsolationLevel(kgo.ReadUncommitted()))
		case "read_committed":
			b.consumer(kgo.FetchIsolationLevel(kgo.ReadCommitted()))
		default:
			return fmt.Errorf("%q is not read_uncommitted or read_committed", v)
		}
		return nil
	}},
	"metadata.max.age.ms": {"How often topics and partitions are rediscovered (kedge default 5000).", func(b *builder, v string) error {
		d, err := parseMs(v)
		if err != nil || d < 100*time.Millisecond {
			return fmt.Errorf("want at least 100 milliseconds, got %q", v)
		}
		b.opts.MetadataMaxAge = d
		b.common(kgo.MetadataMaxAge(d), kgo.MetadataMinAge(min(d, 5*time.Second)))
		return nil
	}},
	"socket.connection.setup.timeout.ms": {"Dial timeout.", msOpt(func(d time.Duration) kgo.Opt { return kgo.DialTimeout(d) }, toCommon)},
	"connections.max.idle.ms":            {"Idle connections are closed after this.", msOpt(func(d time.Duration) kgo.Opt { return kgo.ConnIdleTimeout(d) }, toCommon)},
}

// PropertyNames lists the Kafka property names kedge maps, sorted.
func PropertyNames() []string {
	names := make([]string, 0, len(properties))
	for n := range properties {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// PropertyDoc returns the one-line documentation of a property.
func PropertyDoc(name string) string { return properties[name].doc }

func (b *builder) common(o ...kgo.Opt) { b.opts.Common = append(b.opts.Common, o...) }
func (b *builder) producer(o kgo.Opt)  { b.opts.Producer = append(b.opts.Producer, o) }
func (b *builder) consumer(o kgo.Opt)  { b.opts.Consumer = append(b.opts.Consumer, o) }

func parseMs(v string) (time.Duration, error) {
	n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("want milliseconds, got %q", v)
	}
	return time.Duration(n) * time.Millisecond, nil
}

// target says which clients an option goes to.
type target int

const (
	toCommon target = iota
	toProducer
	toConsumer
)

func (b *builder) add(t target, o kgo.Opt) {
	switch t {
	case toProducer:
		b.producer(o)
	case toConsumer:
		b.consumer(o)
	default:
		b.common(o)
	}
}

func msOpt(opt func(time.Duration) kgo.Opt, t target) func(*builder, string) error {
	return func(b *builder, v string) error {
		d, err := parseMs(v)
		if err != nil {
			return err
		}
		b.add(t, opt(d))
		return nil
	}
}

func intOpt(opt func(int) kgo.Opt, t target) func(*builder, string) error {
	return func(b *builder, v string) error {
		n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 32)
		if err != nil || n < 0 {
			return fmt.Errorf("want a non-negative integer below 2^31, got %q", v)
		}
		b.add(t, opt(int(n)))
		return nil
	}
}

var jaasField = regexp.MustCompile(`(username|password)\s*=\s*"([^"]*)"`)

func parseJAAS(b *builder, v string) error {
	m := jaasField.FindAllStringSubmatch(v, -1)
	if len(m) == 0 {
		return errors.New(`want username="…" password="…" in the JAAS line`)
	}
	for _, f := range m {
		if f[1] == "username" {
			b.user = f[2]
		} else {
			b.pass = f[2]
		}
	}
	return nil
}

// ParseProperties checks Kafka properties and maps them onto franz-go
// options. Every problem is reported, each naming its property.
func ParseProperties(props map[string]string) (Options, error) {
	b := &builder{verifyHost: true}
	b.opts.DeliveryTimeout = DefaultDeliveryTimeout
	b.opts.MetadataMaxAge = DefaultMetadataMaxAge
	b.common(kgo.ClientID("kedge"))
	b.common(kgo.MetadataMaxAge(DefaultMetadataMaxAge))
	var errs []error
	for _, name := range sortedKeys(props) {
		v := props[name]
		if why, ok := unsupported[name]; ok {
			errs = append(errs, fmt.Errorf("kafka.%s: %w: %s", name, ErrUnsupportedProperty, why))
			continue
		}
		p, ok := properties[name]
		if !ok {
			errs = append(errs, fmt.Errorf("kafka.%s: %w (see docs/configuration.md for the supported list)", name, ErrUnknownProperty))
			continue
		}
		before := b.opts
		if err := p.apply(b, v); err != nil {
			errs = append(errs, fmt.Errorf("kafka.%s: %w", name, err))
			continue
		}
		if err := b.opts.addedSince(before).validate(); err != nil {
			errs = append(errs, fmt.Errorf("kafka.%s=%s: %w", name, v, err))
		}
	}
	if err := b.security(); err != nil {
		errs = append(errs, err)
	}
	if len(errs) == 0 {
		if err := b.opts.validate(); err != nil {
			errs = append(errs, fmt.Errorf("kafka: the properties together: %w", err))
		}
	}
	return b.opts, errors.Join(errs...)
}

// addedSince returns only the options added after before was taken.
func (o Options) addedSince(before Options) Options {
	return Options{
		Common:   o.Common[len(before.Common):],
		Producer: o.Producer[len(before.Producer):],
		Consumer: o.Consumer[len(before.Consumer):],
	}
}

// validate builds (and at once closes) a producer and a consumer client with
// the options, so that every value franz-go would refuse at start is
// reported by `kedge config check` too. Building a client does not connect.
func (o Options) validate() error {
	if len(o.Brokers) == 0 {
		o.Brokers = []string{"127.0.0.1:9092"} // a placeholder: nothing is dialled
	}
	for _, opts := range [][]kgo.Opt{o.producerOpts(), o.consumerOpts()} {
		cl, err := kgo.NewClient(opts...)
		if err != nil {
			return fmt.Errorf("franz-go refuses it: %w", err)
		}
		cl.Close()
	}
	return nil
}

// checkBroker accepts host:port ([v6::addr]:port), or a host alone
// (franz-go adds port 9092), and only what franz-go itself parses.
func checkBroker(s string) error {
	_, port, err := net.SplitHostPort(s)
	var ae *net.AddrError
	switch {
	case errors.As(err, &ae) && ae.Err == "missing port in address":
		if _, _, err := net.SplitHostPort(s + ":9092"); err != nil {
			return fmt.Errorf("%q is not host:port: %v", s, err)
		}
	case err != nil:
		return fmt.Errorf("%q is not host:port: %v", s, err)
	default:
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return fmt.Errorf("%q: the port must be 1 to 65535", s)
		}
	}
	// Building a client parses its seeds and dials nothing.
	cl, err := kgo.NewClient(kgo.SeedBrokers(s))
	if err != nil {
		return fmt.Errorf("%q is not a broker address: %v", s, err)
	}
	cl.Close()
	return nil
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// security turns security.protocol and its companions into TLS and SASL options.
func (b *builder) security() error {
	proto := b.protocol
	if proto == "" {
		proto = "PLAINTEXT"
	}
	useTLS := proto == "SSL" || proto == "SASL_SSL"
	useSASL := strings.HasPrefix(proto, "SASL_")
	if useTLS {
		tc, err := b.tlsConfig()
		if err != nil {
			return err
		}
		b.common(kgo.DialTLSConfig(tc))
	} else if b.caFile != "" || b.certFile != "" || b.keyFile != "" {
		return errors.New("kafka.ssl.*: set security.protocol to SSL or SASL_SSL to use TLS")
	}
	if !useSASL {
		if b.mechanism != "" || b.user != "" || b.pass != "" {
			return errors.New("kafka.sasl.*: set security.protocol to SASL_PLAINTEXT or SASL_SSL to use SASL")
		}
		return nil
	}
	m, err := b.saslMechanism()
	if err != nil {
		return err
	}
	b.common(kgo.SASL(m))
	return nil
}

func (b *builder) saslMechanism() (sasl.Mechanism, error) {
	if b.user == "" || b.pass == "" {
		return nil, errors.New("kafka.sasl.username and kafka.sasl.password (or sasl.jaas.config) are required with SASL")
	}
	switch b.mechanism {
	case "", "PLAIN":
		return plain.Auth{User: b.user, Pass: b.pass}.AsMechanism(), nil
	case "SCRAM-SHA-256":
		return scram.Auth{User: b.user, Pass: b.pass}.AsSha256Mechanism(), nil
	default:
		return scram.Auth{User: b.user, Pass: b.pass}.AsSha512Mechanism(), nil
	}
}

func (b *builder) tlsConfig() (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if b.caFile != "" {
		pem, err := os.ReadFile(b.caFile)
		if err != nil {
			return nil, fmt.Errorf("kafka.ssl.ca.location: %w", err)
		}
		tc.RootCAs = x509.NewCertPool()
		if !tc.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("kafka.ssl.ca.location: no PEM certificates in %s", b.caFile)
		}
	}
	if (b.certFile == "") != (b.keyFile == "") {
		return nil, errors.New("kafka.ssl.certificate.location and kafka.ssl.key.location go together")
	}
	if b.certFile != "" {
		cert, err := tls.LoadX509KeyPair(b.certFile, b.keyFile)
		if err != nil {
			return nil, fmt.Errorf("kafka.ssl.certificate.location: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	if !b.verifyHost {
		// Skip only the host name check: the chain is still verified.
		tc.InsecureSkipVerify = true //nolint:gosec // VerifyConnection below verifies the chain
		tc.VerifyConnection = verifyChainOnly(tc.RootCAs)
	}
	return tc, nil
}
