package kafka

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/kedgehq/kedge/core"
)

// brokerPKI is a CA and a broker certificate for 127.0.0.1 it signed.
type brokerPKI struct {
	caFile string
	server tls.Certificate
	pool   *x509.CertPool
}

func newBrokerPKI(t *testing.T) *brokerPKI {
	t.Helper()
	key := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	caKey, serverKey := key(), key()
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "kafka test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	srvTmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "broker"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	srvDER, err := x509.CreateCertificate(rand.Reader, srvTmpl, ca, &serverKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	p := &brokerPKI{caFile: filepath.Join(t.TempDir(), "ca.pem"), pool: x509.NewCertPool()}
	p.pool.AddCert(ca)
	if err := os.WriteFile(p.caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	p.server = tls.Certificate{Certificate: [][]byte{srvDER}, PrivateKey: serverKey}
	return p
}

// secureBroker starts kfake with SASL (when mechanism is set) and TLS (when
// p is set), and returns its address and a franz-go client option set that
// reaches it as the outside world.
func secureBroker(t *testing.T, mechanism string, p *brokerPKI) (string, []kgo.Opt) {
	t.Helper()
	opts := []kfake.Opt{kfake.NumBrokers(1), kfake.AllowAutoTopicCreation(), kfake.DefaultNumPartitions(2)}
	var client []kgo.Opt
	if mechanism != "" {
		opts = append(opts, kfake.EnableSASL(), kfake.Superuser(mechanism, "kedge", "s3cret"))
		switch mechanism {
		case "PLAIN":
			client = append(client, kgo.SASL(plain.Auth{User: "kedge", Pass: "s3cret"}.AsMechanism()))
		case "SCRAM-SHA-256":
			client = append(client, kgo.SASL(scram.Auth{User: "kedge", Pass: "s3cret"}.AsSha256Mechanism()))
		default:
			client = append(client, kgo.SASL(scram.Auth{User: "kedge", Pass: "s3cret"}.AsSha512Mechanism()))
		}
	}
	if p != nil {
		opts = append(opts, kfake.TLS(&tls.Config{Certificates: []tls.Certificate{p.server}, MinVersion: tls.VersionTLS12}))
		client = append(client, kgo.DialTLSConfig(&tls.Config{RootCAs: p.pool, MinVersion: tls.VersionTLS12}))
	}
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c.ListenAddrs()[0], client
}

// kedge consumes (reading back history at start, then live) and produces
// through each security protocol and SASL mechanism kfake offers, with
// Kafka's own property names.
func TestSecurityProtocolsEndToEnd(t *testing.T) {
	cases := []struct {
		name, protocol, mechanism string
		tls                       bool
	}{
		{"SSL", "SSL", "", true},
		{"SASL_PLAINTEXT PLAIN", "SASL_PLAINTEXT", "PLAIN", false},
		{"SASL_PLAINTEXT SCRAM-SHA-256", "SASL_PLAINTEXT", "SCRAM-SHA-256", false},
		{"SASL_PLAINTEXT SCRAM-SHA-512", "SASL_PLAINTEXT", "SCRAM-SHA-512", false},
		{"SASL_SSL PLAIN", "SASL_SSL", "PLAIN", true},
		{"SASL_SSL SCRAM-SHA-256", "SASL_SSL", "SCRAM-SHA-256", true},
		{"SASL_SSL SCRAM-SHA-512", "SASL_SSL", "SCRAM-SHA-512", true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var p *brokerPKI
			if tc.tls {
				p = newBrokerPKI(t)
			}
			addr, outside := secureBroker(t, tc.mechanism, p)
			props := map[string]string{"bootstrap.servers": addr, "security.protocol": tc.protocol, "metadata.max.age.ms": "200"}
			if tc.mechanism != "" {
				props["sasl.mechanism"] = tc.mechanism
				props["sasl.jaas.config"] = `org.apache.kafka.common.security.scram.ScramLoginModule required username="kedge" password="s3cret";`
			}
			if tc.tls {
				props["ssl.ca.location"] = p.caFile
			}
			opts, err := ParseProperties(props)
			if err != nil {
				t.Fatal(err)
			}

			// A record in Kafka before kedge starts: read back at start.
			cl := outsideClient(t, addr, outside)
			produceOutside(t, cl, &kgo.Record{Topic: "secure", Key: []byte("before"), Value: []byte("from history")})

			var got collector
			src := startSecureSource(t, opts, &got)
			waitFor(t, 15*time.Second, "the record from before start", func() bool { return hasPayload(got.snapshot(), "from history") })
			if !src.Ready() {
				t.Fatal("the source is not ready")
			}
			// Live: kedge's producer, then the outside world.
			prod, err := NewProducer(opts, 1, src)
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = prod.Close(context.Background()) }()
			subj, _ := core.ParseSubject("/secure/k1")
			if _, err := publishSync(prod, core.Publication{Subject: subj, Payload: []byte("from kedge")}); err != nil {
				t.Fatalf("publish through %s: %v", tc.name, err)
			}
			produceOutside(t, cl, &kgo.Record{Topic: "secure", Key: []byte("k2"), Value: []byte("from outside")})
			waitFor(t, 15*time.Second, "both live records", func() bool {
				ms := got.snapshot()
				return hasPayload(ms, "from kedge") && hasPayload(ms, "from outside")
			})
			// What kedge published is in Kafka, keyed.
			rs := consumeOutside(t, cl, "secure", 3)
			if r := findValue(rs, "from kedge"); r == nil || string(r.Key) != "k1" {
				t.Fatalf("kedge's record in Kafka: %+v", r)
			}
		})
	}
}

// Wrong credentials and an unknown CA are refused by the broker: a publish
// fails with a clear error, nothing is produced, and the source does not
// report ready.
func TestSecurityRefusals(t *testing.T) {
	p := newBrokerPKI(t)
	addr, outside := secureBroker(t, "SCRAM-SHA-512", p)
	other := newBrokerPKI(t) // a CA that did not sign the broker's certificate
	for name, props := range map[string]map[string]string{
		"wrong password": {"sasl.password": "wrong", "ssl.ca.location": p.caFile},
		"unknown CA":     {"sasl.password": "s3cret", "ssl.ca.location": other.caFile},
		"no TLS":         {"security.protocol": "SASL_PLAINTEXT", "sasl.password": "s3cret"},
	} {
		t.Run(name, func(t *testing.T) {
			all := map[string]string{"bootstrap.servers": addr, "security.protocol": "SASL_SSL", "sasl.mechanism": "SCRAM-SHA-512",
				"sasl.username": "kedge", "delivery.timeout.ms": "2000", "socket.connection.setup.timeout.ms": "1000"}
			for k, v := range props {
				all[k] = v
			}
			opts, err := ParseProperties(all)
			if err != nil {
				t.Fatal(err)
			}
			var got collector
			src := startSecureSource(t, opts, &got)
			prod, err := NewProducer(opts, 1, src)
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = prod.Close(context.Background()) }()
			subj, _ := core.ParseSubject("/refused/k1")
			_, err = publishSync(prod, core.Publication{Subject: subj, Payload: []byte("x")})
			if err == nil {
				t.Fatal("published with refused credentials")
			}
			if !errors.Is(err, core.ErrUnavailable) && !errors.Is(err, core.ErrTimeout) && !errors.Is(err, core.ErrRejected) {
				t.Fatalf("error %v wraps none of kedge's Kafka errors", err)
			}
			if src.Ready() {
				t.Fatal("the source is ready without a usable connection")
			}
		})
	}
	// Nothing reached the broker.
	cl := outsideClient(t, addr, outside)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	topics, err := cl.Request(ctx, metadataAll())
	if err != nil {
		t.Fatal(err)
	}
	if hasTopic(topics, "refused") {
		t.Fatal("a refused client created its topic")
	}
}

func startSecureSource(t *testing.T, opts Options, out Dispatcher) *Source {
	t.Helper()
	exp, _ := core.NewExposure(nil, "")
	s, err := NewSource(SourceConfig{Options: opts, Exposure: exp, Consumers: 1, RecoverFor: time.Hour, NewTopicsFrom: time.Hour}, out)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return s
}

func outsideClient(t *testing.T, addr string, opts []kgo.Opt) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(addr), kgo.AllowAutoTopicCreation()}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

func produceOutside(t *testing.T, cl *kgo.Client, r *kgo.Record) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := cl.ProduceSync(ctx, r).FirstErr(); err != nil {
		t.Fatalf("produce: %v", err)
	}
}

// consumeOutside reads n records of topic from the start, with a new
// consuming client of the same security settings.
func consumeOutside(t *testing.T, seed *kgo.Client, topic string, n int) []*kgo.Record {
	t.Helper()
	opts := append(seed.Opts(), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	var out []*kgo.Record
	for len(out) < n {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("consumed %d of %d records", len(out), n)
		}
		out = append(out, fs.Records()...)
	}
	return out
}

func hasPayload(ms []*core.Message, payload string) bool {
	for _, m := range ms {
		if string(m.Payload) == payload {
			return true
		}
	}
	return false
}

func findValue(rs []*kgo.Record, value string) *kgo.Record {
	for _, r := range rs {
		if string(r.Value) == value {
			return r
		}
	}
	return nil
}

func metadataAll() kmsg.Request { return kmsg.NewPtrMetadataRequest() }

func hasTopic(resp kmsg.Response, name string) bool {
	for _, t := range resp.(*kmsg.MetadataResponse).Topics {
		if t.Topic != nil && *t.Topic == name {
			return true
		}
	}
	return false
}
