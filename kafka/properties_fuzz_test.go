package kafka

import (
	"errors"
	"strings"
	"testing"
)

// FuzzParseProperties feeds arbitrary Kafka properties (as a configuration
// file or KEDGE_KAFKA_EXTRA_OPTS would give them) to the mapping onto
// franz-go. It must never panic; every error names a kafka.<property> key
// and wraps a sentinel or says what is wrong; accepted properties build
// clients franz-go takes.
func FuzzParseProperties(f *testing.F) {
	for _, s := range []string{
		"bootstrap.servers=k:9092", "linger.ms=5\nacks=all", "acks=1", "security.protocol=SASL_SSL\nsasl.username=u\nsasl.password=p",
		"sasl.jaas.config=x required username=\"u\" password=\"p\";\nsecurity.protocol=sasl_plaintext", "batch.size=99999999999999999999",
		"partitioner.class=org.apache.kafka.clients.producer.RoundRobinPartitioner", "compression.type=zstd\nfetch.max.wait.ms=-1",
		"group.id=g", "lingerms=1", "ssl.ca.location=/nonexistent\nsecurity.protocol=SSL", "=", "metadata.max.age.ms=0",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, text string) {
		props := map[string]string{}
		for _, line := range strings.Split(text, "\n") {
			k, v, _ := strings.Cut(line, "=")
			props[k] = v
		}
		o, err := ParseProperties(props)
		if err == nil && props["bootstrap.servers"] == "" && len(o.Brokers) != 0 {
			t.Fatalf("brokers %v from nowhere", o.Brokers)
		}
		if err != nil {
			if !strings.Contains(err.Error(), "kafka.") {
				t.Fatalf("%q: error names no kafka.<property>: %v", props, err)
			}
			var unknown bool
			for k := range props {
				_, known := properties[k]
				_, refused := unsupported[k]
				unknown = unknown || !known && !refused
			}
			if unknown && !errors.Is(err, ErrUnknownProperty) {
				t.Fatalf("an unknown property without ErrUnknownProperty: %v", err)
			}
			return
		}
		if err := o.validate(); err != nil {
			t.Fatalf("accepted properties %v that franz-go refuses: %v", props, err)
		}
	})
}

// Broker addresses franz-go takes are accepted: host:port, a host alone,
// and bracketed IPv6 with or without a port.
func TestBootstrapServersAccepted(t *testing.T) {
	for _, s := range []string{"[::1]:9092", "[::1]", "k1", "k1:9093,k2:9094", "10.0.0.1:1", " k1:9092 , k2 "} {
		if _, err := ParseProperties(map[string]string{"bootstrap.servers": s}); err != nil {
			t.Errorf("%s: %v", s, err)
		}
	}
}
