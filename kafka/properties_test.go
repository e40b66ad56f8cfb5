package kafka

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl"
)

// newClients builds one producer client and one consumer client exactly as
// NewProducer and NewSource do, so tests can read the options franz-go ended
// up with. Nothing connects.
func newClients(t *testing.T, o Options) (prod, cons *kgo.Client, err error) {
	t.Helper()
	if len(o.Brokers) == 0 {
		o.Brokers = []string{"127.0.0.1:1"}
	}
	p, err := NewProducer(o, 1, nil)
	if err != nil {
		return nil, nil, err
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = p.Close(ctx)
	})
	s, err := NewSource(SourceConfig{Options: o}, nil)
	if err != nil {
		return nil, nil, err
	}
	t.Cleanup(s.closeClients)
	return p.clients[0], s.clients[0], nil
}

func mustClients(t *testing.T, o Options) (prod, cons *kgo.Client) {
	t.Helper()
	prod, cons, err := newClients(t, o)
	if err != nil {
		t.Fatalf("franz-go rejects the options: %v", err)
	}
	return prod, cons
}

func mustParse(t *testing.T, props map[string]string) Options {
	t.Helper()
	o, err := ParseProperties(props)
	if err != nil {
		t.Fatalf("ParseProperties(%q): %v", props, err)
	}
	return o
}

// wantOpt checks the value franz-go holds for the option opt (kgo.ClientID …).
func wantOpt(t *testing.T, who string, cl *kgo.Client, opt, want any) {
	t.Helper()
	got := cl.OptValue(opt)
	if !reflect.DeepEqual(got, want) && fmt.Sprint(got) != fmt.Sprint(want) {
		name := fmt.Sprint(opt)
		if v := reflect.ValueOf(opt); v.Kind() == reflect.Func {
			name = runtime.FuncForPC(v.Pointer()).Name()
			name = name[strings.LastIndexByte(name, '/')+1:]
		}
		t.Errorf("%s client: option %s = %v (%T), want %v", who, name, got, got, want)
	}
}

// tlsOf returns the TLS configuration a client dials with.
func tlsOf(cl *kgo.Client) *tls.Config {
	tc, _ := cl.OptValue(kgo.DialTLSConfig).(*tls.Config)
	return tc
}

// saslOf returns a client's SASL mechanism and the first message it would send.
func saslOf(t *testing.T, cl *kgo.Client) (name string, first []byte) {
	t.Helper()
	ms, _ := cl.OptValue(kgo.SASL).([]sasl.Mechanism)
	if len(ms) != 1 {
		t.Fatalf("want one SASL mechanism, got %d", len(ms))
	}
	_, first, err := ms[0].Authenticate(context.Background(), "broker:9092")
	if err != nil {
		t.Fatalf("%s Authenticate: %v", ms[0].Name(), err)
	}
	return ms[0].Name(), first
}

// pki is a CA with a server and a client certificate, written as PEM files.
type pki struct {
	ca                        *x509.Certificate
	caFile, certFile, keyFile string
	otherKeyFile, notPEMFile  string
	server, stranger          *x509.Certificate
	clientCert                []byte // DER
	serverPool                *x509.CertPool
}

func newPKI(t *testing.T) *pki {
	t.Helper()
	dir := t.TempDir()
	write := func(name, typ string, der []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	key := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	serial := int64(1)
	issue := func(tmpl *x509.Certificate, parent *x509.Certificate, pub, signer any) *x509.Certificate {
		serial++
		tmpl.SerialNumber = big.NewInt(serial)
		tmpl.NotBefore = time.Now().Add(-time.Hour)
		tmpl.NotAfter = time.Now().Add(time.Hour)
		if parent == nil {
			parent = tmpl
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, signer)
		if err != nil {
			t.Fatal(err)
		}
		c, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	caKey := key()
	ca := issue(&x509.Certificate{Subject: pkix.Name{CommonName: "test CA"}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}, nil, &caKey.PublicKey, caKey)
	serverKey := key()
	server := issue(&x509.Certificate{Subject: pkix.Name{CommonName: "broker"}, DNSNames: []string{"broker.example"},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}, ca, &serverKey.PublicKey, caKey)
	clientKey := key()
	client := issue(&x509.Certificate{Subject: pkix.Name{CommonName: "kedge"},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}, ca, &clientKey.PublicKey, caKey)
	otherKey := key()
	strangerKey := key()
	stranger := issue(&x509.Certificate{Subject: pkix.Name{CommonName: "stranger"}, DNSNames: []string{"broker.example"},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}, nil, &strangerKey.PublicKey, strangerKey)

	der := func(k *ecdsa.PrivateKey) []byte {
		b, err := x509.MarshalECPrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	p := &pki{ca: ca, server: server, stranger: stranger, clientCert: client.Raw}
	p.caFile = write("ca.pem", "CERTIFICATE", ca.Raw)
	p.certFile = write("client.pem", "CERTIFICATE", client.Raw)
	p.keyFile = write("client-key.pem", "EC PRIVATE KEY", der(clientKey))
	p.otherKeyFile = write("other-key.pem", "EC PRIVATE KEY", der(otherKey))
	p.notPEMFile = filepath.Join(dir, "not.pem")
	if err := os.WriteFile(p.notPEMFile, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	p.serverPool = x509.NewCertPool()
	p.serverPool.AddCert(ca)
	return p
}

// propertyCase is a valid use of one property and how to see it took effect.
type propertyCase struct {
	props map[string]string
	check func(t *testing.T, o Options, prod, cons *kgo.Client)
}

func propertyCases(p *pki) map[string]propertyCase {
	both := func(opt, want any) func(t *testing.T, o Options, prod, cons *kgo.Client) {
		return func(t *testing.T, _ Options, prod, cons *kgo.Client) {
			wantOpt(t, "producer", prod, opt, want)
			wantOpt(t, "consumer", cons, opt, want)
		}
	}
	producer := func(opt, want any) func(t *testing.T, o Options, prod, cons *kgo.Client) {
		return func(t *testing.T, _ Options, prod, _ *kgo.Client) { wantOpt(t, "producer", prod, opt, want) }
	}
	consumer := func(opt, want any) func(t *testing.T, o Options, prod, cons *kgo.Client) {
		return func(t *testing.T, _ Options, _, cons *kgo.Client) { wantOpt(t, "consumer", cons, opt, want) }
	}
	plainAuth := func(user, pass string) func(t *testing.T, o Options, prod, cons *kgo.Client) {
		return func(t *testing.T, _ Options, prod, cons *kgo.Client) {
			for _, cl := range []*kgo.Client{prod, cons} {
				name, first := saslOf(t, cl)
				if want := "\x00" + user + "\x00" + pass; name != "PLAIN" || string(first) != want {
					t.Errorf("SASL %s sends %q, want PLAIN %q", name, first, want)
				}
			}
		}
	}
	return map[string]propertyCase{
		"bootstrap.servers": {props: map[string]string{"bootstrap.servers": " a:9092, b:9093,,"},
			check: func(t *testing.T, o Options, prod, _ *kgo.Client) {
				if want := []string{"a:9092", "b:9093"}; !slices.Equal(o.Brokers, want) {
					t.Errorf("Brokers = %q, want %q", o.Brokers, want)
				}
			}},
		"client.id": {props: map[string]string{"client.id": "edge-1"}, check: both(kgo.ClientID, "edge-1")},
		"security.protocol": {props: map[string]string{"security.protocol": "ssl"},
			check: func(t *testing.T, _ Options, prod, cons *kgo.Client) {
				for _, cl := range []*kgo.Client{prod, cons} {
					tc := tlsOf(cl)
					if tc == nil || tc.MinVersion != tls.VersionTLS12 || tc.InsecureSkipVerify || tc.RootCAs != nil {
						t.Errorf("TLS config = %+v, want TLS 1.2+, system roots, host name verified", tc)
					}
				}
			}},
		"sasl.mechanism": {props: map[string]string{"security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": "scram-sha-512",
			"sasl.username": "carol", "sasl.password": "c"},
			check: func(t *testing.T, _ Options, prod, cons *kgo.Client) {
				for _, cl := range []*kgo.Client{prod, cons} {
					if name, first := saslOf(t, cl); name != "SCRAM-SHA-512" || !bytes.HasPrefix(first, []byte("n,,n=carol,r=")) {
						t.Errorf("SASL %s sends %q, want SCRAM-SHA-512 for carol", name, first)
					}
					if tlsOf(cl) != nil {
						t.Error("SASL_PLAINTEXT dials with TLS")
					}
				}
			}},
		"sasl.username": {props: map[string]string{"security.protocol": "SASL_SSL", "sasl.username": "alice", "sasl.password": "x"},
			check: func(t *testing.T, o Options, prod, cons *kgo.Client) {
				plainAuth("alice", "x")(t, o, prod, cons)
				if tlsOf(prod) == nil || tlsOf(cons) == nil {
					t.Error("SASL_SSL dials without TLS")
				}
			}},
		"sasl.password": {props: map[string]string{"security.protocol": "SASL_PLAINTEXT", "sasl.username": "alice", "sasl.password": "s3cret"},
			check: plainAuth("alice", "s3cret")},
		"sasl.jaas.config": {props: map[string]string{"security.protocol": "SASL_PLAINTEXT",
			"sasl.jaas.config": `org.apache.kafka.common.security.plain.PlainLoginModule required username="alice" password="alice-secret";`},
			check: plainAuth("alice", "alice-secret")},
		"ssl.ca.location": {props: map[string]string{"security.protocol": "SSL", "ssl.ca.location": p.caFile},
			check: func(t *testing.T, _ Options, prod, cons *kgo.Client) {
				for _, cl := range []*kgo.Client{prod, cons} {
					if tc := tlsOf(cl); tc == nil || tc.RootCAs == nil || !tc.RootCAs.Equal(p.serverPool) {
						t.Errorf("TLS roots are not exactly the CA file's")
					}
				}
			}},
		"ssl.certificate.location": {props: map[string]string{"security.protocol": "SSL", "ssl.certificate.location": p.certFile, "ssl.key.location": p.keyFile},
			check: func(t *testing.T, _ Options, prod, cons *kgo.Client) {
				for _, cl := range []*kgo.Client{prod, cons} {
					tc := tlsOf(cl)
					if tc == nil || len(tc.Certificates) != 1 || !bytes.Equal(tc.Certificates[0].Certificate[0], p.clientCert) {
						t.Errorf("TLS client certificate is not the one in %s", p.certFile)
					}
				}
			}},
		"ssl.key.location": {props: map[string]string{"security.protocol": "SASL_SSL", "sasl.username": "u", "sasl.password": "p",
			"ssl.certificate.location": p.certFile, "ssl.key.location": p.keyFile},
			check: func(t *testing.T, _ Options, prod, _ *kgo.Client) {
				if tc := tlsOf(prod); tc == nil || len(tc.Certificates) != 1 || tc.Certificates[0].PrivateKey == nil {
					t.Error("no client key loaded")
				}
			}},
		"ssl.endpoint.identification.algorithm": {props: map[string]string{"security.protocol": "SSL", "ssl.ca.location": p.caFile,
			"ssl.endpoint.identification.algorithm": ""},
			check: func(t *testing.T, _ Options, prod, cons *kgo.Client) {
				for _, cl := range []*kgo.Client{prod, cons} {
					tc := tlsOf(cl)
					if tc == nil || !tc.InsecureSkipVerify || tc.VerifyConnection == nil {
						t.Fatalf("host name check not replaced by a chain-only check: %+v", tc)
					}
					// The chain is still verified, whatever the host name.
					if err := tc.VerifyConnection(tls.ConnectionState{PeerCertificates: []*x509.Certificate{p.server}}); err != nil {
						t.Errorf("a broker certificate from the trusted CA is refused: %v", err)
					}
					if err := tc.VerifyConnection(tls.ConnectionState{PeerCertificates: []*x509.Certificate{p.stranger}}); err == nil {
						t.Error("a self-signed broker certificate is accepted")
					}
					if err := tc.VerifyConnection(tls.ConnectionState{}); err == nil {
						t.Error("a broker without a certificate is accepted")
					}
				}
			}},
		"acks": {props: map[string]string{"acks": "-1"}, check: producer(kgo.RequiredAcks, kgo.AllISRAcks())},
		"enable.idempotence": {props: map[string]string{"enable.idempotence": "true"},
			check: producer(kgo.DisableIdempotentWrite, false)},
		"compression.type": {props: map[string]string{"compression.type": "ZSTD"},
			check: producer(kgo.ProducerBatchCompression, []kgo.CompressionCodec{kgo.ZstdCompression()})},
		"linger.ms":  {props: map[string]string{"linger.ms": "25"}, check: producer(kgo.ProducerLinger, 25*time.Millisecond)},
		"batch.size": {props: map[string]string{"batch.size": "16384"}, check: producer(kgo.ProducerBatchMaxBytes, int32(16384))},
		"buffer.memory": {props: map[string]string{"buffer.memory": "1048576"},
			check: producer(kgo.MaxBufferedBytes, int64(1048576))},
		"request.timeout.ms": {props: map[string]string{"request.timeout.ms": "3000"},
			check: producer(kgo.ProduceRequestTimeout, 3*time.Second)},
		"delivery.timeout.ms": {props: map[string]string{"delivery.timeout.ms": "30000"},
			check: func(t *testing.T, o Options, prod, _ *kgo.Client) {
				if o.DeliveryTimeout != 30*time.Second {
					t.Errorf("DeliveryTimeout = %v, want 30s", o.DeliveryTimeout)
				}
				wantOpt(t, "producer", prod, kgo.RecordDeliveryTimeout, 30*time.Second)
			}},
		"retries": {props: map[string]string{"retries": "3"}, check: producer(kgo.RecordRetries, int64(3))},
		"retry.backoff.ms": {props: map[string]string{"retry.backoff.ms": "750"},
			check: func(t *testing.T, _ Options, prod, cons *kgo.Client) {
				for _, cl := range []*kgo.Client{prod, cons} {
					fn, _ := cl.OptValue(kgo.RetryBackoffFn).(func(int) time.Duration)
					if fn == nil || fn(1) != 750*time.Millisecond || fn(10) != 750*time.Millisecond {
						t.Error("retry backoff is not a constant 750ms")
					}
				}
			}},
		"partitioner.class": {props: map[string]string{"partitioner.class": "null-key-zero"},
			check: func(t *testing.T, _ Options, prod, _ *kgo.Client) {
				if _, ok := prod.OptValue(kgo.RecordPartitioner).(nullKeyZero); !ok {
					t.Errorf("partitioner is %T, want nullKeyZero", prod.OptValue(kgo.RecordPartitioner))
				}
			}},
		"fetch.max.bytes": {props: map[string]string{"fetch.max.bytes": "1048576"},
			check: consumer(kgo.FetchMaxBytes, int32(1048576))},
		"fetch.min.bytes": {props: map[string]string{"fetch.min.bytes": "1024"},
			check: consumer(kgo.FetchMinBytes, int32(1024))},
		"fetch.max.wait.ms": {props: map[string]string{"fetch.max.wait.ms": "250"},
			check: consumer(kgo.FetchMaxWait, 250*time.Millisecond)},
		"max.partition.fetch.bytes": {props: map[string]string{"max.partition.fetch.bytes": "524288"},
			check: consumer(kgo.FetchMaxPartitionBytes, int32(524288))},
		"isolation.level": {props: map[string]string{"isolation.level": "read_committed"},
			check: consumer(kgo.FetchIsolationLevel, int8(1))},
		"metadata.max.age.ms": {props: map[string]string{"metadata.max.age.ms": "60000"},
			check: func(t *testing.T, o Options, prod, cons *kgo.Client) {
				if o.MetadataMaxAge != time.Minute {
					t.Errorf("MetadataMaxAge = %v, want 1m", o.MetadataMaxAge)
				}
				both(kgo.MetadataMaxAge, time.Minute)(t, o, prod, cons)
				both(kgo.MetadataMinAge, 5*time.Second)(t, o, prod, cons)
			}},
		"socket.connection.setup.timeout.ms": {props: map[string]string{"socket.connection.setup.timeout.ms": "3000"},
			check: both(kgo.DialTimeout, 3*time.Second)},
		"connections.max.idle.ms": {props: map[string]string{"connections.max.idle.ms": "60000"},
			check: both(kgo.ConnIdleTimeout, time.Minute)},
	}
}

// TestEveryPropertyApplies sets each supported property to a valid value and
// checks that franz-go's clients end up configured accordingly.
func TestEveryPropertyApplies(t *testing.T) {
	cases := propertyCases(newPKI(t))
	var names []string
	for name := range cases {
		names = append(names, name)
	}
	slices.Sort(names)
	if got := PropertyNames(); !slices.Equal(got, names) {
		t.Errorf("PropertyNames() = %v\nthe test covers %v", got, names)
	}
	for _, name := range names {
		tc := cases[name]
		t.Run(name, func(t *testing.T) {
			if _, ok := tc.props[name]; !ok {
				t.Fatalf("the case for %s does not set it", name)
			}
			o := mustParse(t, tc.props)
			prod, cons := mustClients(t, o)
			tc.check(t, o, prod, cons)
		})
	}
}

func TestPropertyNamesAndDocs(t *testing.T) {
	names := PropertyNames()
	if !slices.IsSorted(names) || len(slices.Compact(slices.Clone(names))) != len(names) {
		t.Errorf("PropertyNames() is not sorted and unique: %v", names)
	}
	if len(names) != len(properties) {
		t.Errorf("PropertyNames() has %d names, the table %d", len(names), len(properties))
	}
	for _, n := range names {
		if PropertyDoc(n) == "" {
			t.Errorf("property %s has no doc", n)
		}
		if _, ok := unsupported[n]; ok {
			t.Errorf("property %s is both supported and unsupported", n)
		}
	}
	if PropertyDoc("no.such.property") != "" {
		t.Error("PropertyDoc of an unknown property is not empty")
	}
	for n, why := range unsupported {
		if why == "" {
			t.Errorf("unsupported property %s has no reason", n)
		}
	}
}

func TestDefaults(t *testing.T) {
	if DefaultDeliveryTimeout != 15*time.Second || DefaultMetadataMaxAge != 5*time.Second {
		t.Errorf("defaults are %v and %v, want 15s and 5s", DefaultDeliveryTimeout, DefaultMetadataMaxAge)
	}
	for _, props := range []map[string]string{nil, {}} {
		o := mustParse(t, props)
		if o.DeliveryTimeout != 15*time.Second || o.MetadataMaxAge != 5*time.Second || len(o.Brokers) != 0 {
			t.Errorf("ParseProperties(%v) = DeliveryTimeout %v, MetadataMaxAge %v, Brokers %q; want 15s, 5s, none",
				props, o.DeliveryTimeout, o.MetadataMaxAge, o.Brokers)
		}
		prod, cons := mustClients(t, o)
		for who, cl := range map[string]*kgo.Client{"producer": prod, "consumer": cons} {
			wantOpt(t, who, cl, kgo.ClientID, "kedge")
			wantOpt(t, who, cl, kgo.MetadataMaxAge, 5*time.Second)
			if tlsOf(cl) != nil {
				t.Errorf("%s dials with TLS by default", who)
			}
			if ms, _ := cl.OptValue(kgo.SASL).([]sasl.Mechanism); len(ms) != 0 {
				t.Errorf("%s uses SASL by default", who)
			}
		}
		wantOpt(t, "producer", prod, kgo.RecordDeliveryTimeout, 15*time.Second)
		wantOpt(t, "producer", prod, kgo.ProduceRequestTimeout, 10*time.Second)
		wantOpt(t, "producer", prod, kgo.RequiredAcks, kgo.AllISRAcks())
		wantOpt(t, "producer", prod, kgo.DisableIdempotentWrite, false)
	}
}

func TestOverrides(t *testing.T) {
	tests := []struct {
		props                     map[string]string
		delivery, request, maxAge time.Duration
		minAge                    time.Duration
	}{
		{map[string]string{"delivery.timeout.ms": "30000"}, 30 * time.Second, 10 * time.Second, 5 * time.Second, 5 * time.Second},
		{map[string]string{"delivery.timeout.ms": "2000"}, 2 * time.Second, 2 * time.Second, 5 * time.Second, 5 * time.Second},
		{map[string]string{"delivery.timeout.ms": "2000", "request.timeout.ms": "1500"}, 2 * time.Second, 1500 * time.Millisecond, 5 * time.Second, 5 * time.Second},
		{map[string]string{"metadata.max.age.ms": "1000"}, 15 * time.Second, 10 * time.Second, time.Second, time.Second},
		{map[string]string{"metadata.max.age.ms": "100"}, 15 * time.Second, 10 * time.Second, 100 * time.Millisecond, 100 * time.Millisecond},
		{map[string]string{"metadata.max.age.ms": " 600000 "}, 15 * time.Second, 10 * time.Second, 10 * time.Minute, 5 * time.Second},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.props), func(t *testing.T) {
			o := mustParse(t, tt.props)
			if o.DeliveryTimeout != tt.delivery || o.MetadataMaxAge != tt.maxAge {
				t.Errorf("DeliveryTimeout %v, MetadataMaxAge %v; want %v, %v", o.DeliveryTimeout, o.MetadataMaxAge, tt.delivery, tt.maxAge)
			}
			prod, cons := mustClients(t, o)
			wantOpt(t, "producer", prod, kgo.RecordDeliveryTimeout, tt.delivery)
			wantOpt(t, "producer", prod, kgo.ProduceRequestTimeout, tt.request)
			for who, cl := range map[string]*kgo.Client{"producer": prod, "consumer": cons} {
				wantOpt(t, who, cl, kgo.MetadataMaxAge, tt.maxAge)
				wantOpt(t, who, cl, kgo.MetadataMinAge, tt.minAge)
			}
		})
	}
}

func TestUnknownProperty(t *testing.T) {
	for _, name := range []string{"linger.mss", "topic", "kafka.linger.ms", "LINGER.MS", "", "security.providers"} {
		_, err := ParseProperties(map[string]string{name: "1"})
		if !errors.Is(err, ErrUnknownProperty) {
			t.Errorf("%q: error %v does not wrap ErrUnknownProperty", name, err)
			continue
		}
		if errors.Is(err, ErrUnsupportedProperty) {
			t.Errorf("%q: an unknown property is reported as unsupported: %v", name, err)
		}
		if !strings.Contains(err.Error(), "kafka."+name+":") || !strings.Contains(err.Error(), "docs/configuration.md") {
			t.Errorf("%q: error does not name the property and point at the docs: %v", name, err)
		}
	}
}

func TestUnsupportedProperties(t *testing.T) {
	type tc struct{ name, value, reason string }
	var tests []tc
	for name, why := range unsupported {
		tests = append(tests, tc{name, "x", why})
	}
	tests = append(tests,
		tc{"group.id", "my-group", "uses no consumer group"},
		tc{"ssl.truststore.location", "/etc/kafka/truststore.jks", "use ssl.ca.location"},
		tc{"acks", "1", "acks=all"},
		tc{"acks", "0", "acks=all"},
		tc{"acks", "ALL", "acks=all"},
		tc{"enable.idempotence", "false", "idempotent producer"},
		tc{"enable.idempotence", "no", "idempotent producer"},
	)
	for _, tt := range tests {
		t.Run(tt.name+"="+tt.value, func(t *testing.T) {
			_, err := ParseProperties(map[string]string{tt.name: tt.value})
			if !errors.Is(err, ErrUnsupportedProperty) {
				t.Fatalf("error %v does not wrap ErrUnsupportedProperty", err)
			}
			if errors.Is(err, ErrUnknownProperty) {
				t.Errorf("also reported as unknown: %v", err)
			}
			if msg := err.Error(); !strings.Contains(msg, "kafka."+tt.name) || !strings.Contains(msg, tt.reason) {
				t.Errorf("error %q does not name %s and say %q", msg, tt.name, tt.reason)
			}
		})
	}
	for _, v := range []string{"all", "-1"} {
		mustParse(t, map[string]string{"acks": v})
	}
	for _, v := range []string{"true", "TRUE", "1"} {
		mustParse(t, map[string]string{"enable.idempotence": v})
	}
}

func TestInvalidValues(t *testing.T) {
	saslOn := map[string]string{"security.protocol": "SASL_PLAINTEXT", "sasl.username": "u", "sasl.password": "p"}
	tests := []struct {
		name, value string
		with        map[string]string
		want        string // besides the property name
	}{
		{name: "security.protocol", value: "TLS", want: `"TLS" is not PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL`},
		{name: "bootstrap.servers", value: "k1:9092,:", want: `":": the port must be 1 to 65535`},
		{name: "bootstrap.servers", value: "k1:1:2", want: `"k1:1:2" is not host:port`},
		{name: "bootstrap.servers", value: "k1:99999", want: `"k1:99999": the port must be 1 to 65535`},
		{name: "bootstrap.servers", value: "k1:x"},
		{name: "bootstrap.servers", value: "[", want: `"[" is not host:port`},
		{name: "bootstrap.servers", value: "[::1", want: "is not host:port"},
		{name: "sasl.mechanism", value: "GSSAPI", with: saslOn, want: "is not PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512"},
		{name: "sasl.mechanism", value: "OAUTHBEARER", with: saslOn},
		{name: "compression.type", value: "brotli", want: `"brotli" is not none, gzip, snappy, lz4 or zstd`},
		{name: "linger.ms", value: "-1", want: "milliseconds"},
		{name: "linger.ms", value: "soon"},
		{name: "linger.ms", value: "1.5"},
		{name: "batch.size", value: "-1", want: "non-negative integer"},
		{name: "batch.size", value: "big"},
		{name: "buffer.memory", value: "-5"},
		{name: "request.timeout.ms", value: "-1"},
		{name: "delivery.timeout.ms", value: "0", want: "at least 1000 milliseconds"},
		{name: "delivery.timeout.ms", value: "-5"},
		{name: "delivery.timeout.ms", value: "15s"},
		{name: "retries", value: "-1"},
		{name: "retry.backoff.ms", value: "x"},
		{name: "partitioner.class", value: "sticky", want: `"sticky" is not default, null-key-zero or round-robin`},
		{name: "partitioner.class", value: ""},
		{name: "partitioner.class", value: "org.apache.kafka.clients.producer.UniformStickyPartitioner", want: "UniformStickyPartitioner"},
		{name: "partitioner.class", value: "null-key-zero."},
		{name: "fetch.max.bytes", value: "x"},
		{name: "fetch.min.bytes", value: "-1"},
		{name: "fetch.max.wait.ms", value: "x"},
		{name: "max.partition.fetch.bytes", value: "-1"},
		{name: "isolation.level", value: "serializable", want: "read_uncommitted or read_committed"},
		{name: "metadata.max.age.ms", value: "99", want: "at least 100 milliseconds"},
		{name: "metadata.max.age.ms", value: "x"},
		{name: "socket.connection.setup.timeout.ms", value: "-1"},
		{name: "connections.max.idle.ms", value: "x"},
		{name: "ssl.endpoint.identification.algorithm", value: "http", want: "is not https or empty"},
		{name: "sasl.jaas.config", value: "username=alice password=secret", with: map[string]string{"security.protocol": "SASL_PLAINTEXT"},
			want: `want username="…" password="…"`},
	}
	for _, tt := range tests {
		t.Run(tt.name+"="+tt.value, func(t *testing.T) {
			props := map[string]string{tt.name: tt.value}
			for k, v := range tt.with {
				props[k] = v
			}
			_, err := ParseProperties(props)
			if err == nil {
				t.Fatal("accepted")
			}
			if errors.Is(err, ErrUnknownProperty) || errors.Is(err, ErrUnsupportedProperty) {
				t.Errorf("a bad value is reported as an unknown or unsupported property: %v", err)
			}
			if msg := err.Error(); !strings.Contains(msg, "kafka."+tt.name+":") || !strings.Contains(msg, tt.want) {
				t.Errorf("error %q does not name kafka.%s and say %q", msg, tt.name, tt.want)
			}
		})
	}
}

func TestSecurity(t *testing.T) {
	p := newPKI(t)
	tests := []struct {
		name  string
		props map[string]string
		want  string // substring of the error; "" means valid
		tls   bool   // when valid: clients dial with TLS
		sasl  string // when valid: the SASL mechanism
	}{
		{name: "SASL without user name", props: map[string]string{"security.protocol": "SASL_SSL"},
			want: "kafka.sasl.username and kafka.sasl.password (or sasl.jaas.config) are required with SASL"},
		{name: "SASL with password only", props: map[string]string{"security.protocol": "SASL_PLAINTEXT", "sasl.password": "p"},
			want: "kafka.sasl.username"},
		{name: "SASL user name without SASL protocol", props: map[string]string{"sasl.username": "u", "sasl.password": "p"},
			want: "set security.protocol to SASL_PLAINTEXT or SASL_SSL"},
		{name: "SASL mechanism with SSL protocol", props: map[string]string{"security.protocol": "SSL", "sasl.mechanism": "PLAIN"},
			want: "set security.protocol to SASL_PLAINTEXT or SASL_SSL"},
		{name: "JAAS without SASL protocol", props: map[string]string{"sasl.jaas.config": `x required username="u" password="p";`},
			want: "set security.protocol to SASL_PLAINTEXT or SASL_SSL"},
		{name: "SASL password without SASL protocol", props: map[string]string{"sasl.password": "p"},
			want: "set security.protocol to SASL_PLAINTEXT or SASL_SSL"},
		{name: "SASL without password", props: map[string]string{"security.protocol": "SASL_PLAINTEXT", "sasl.username": "u"},
			want: "sasl.password"},
		{name: "CA without SSL protocol", props: map[string]string{"ssl.ca.location": p.caFile},
			want: "set security.protocol to SSL or SASL_SSL"},
		{name: "certificate with SASL_PLAINTEXT", props: map[string]string{"security.protocol": "SASL_PLAINTEXT", "sasl.username": "u",
			"sasl.password": "p", "ssl.certificate.location": p.certFile, "ssl.key.location": p.keyFile},
			want: "set security.protocol to SSL or SASL_SSL"},
		{name: "key without SSL protocol", props: map[string]string{"ssl.key.location": p.keyFile},
			want: "set security.protocol to SSL or SASL_SSL"},
		{name: "certificate without key", props: map[string]string{"security.protocol": "SSL", "ssl.certificate.location": p.certFile},
			want: "kafka.ssl.certificate.location and kafka.ssl.key.location go together"},
		{name: "key without certificate", props: map[string]string{"security.protocol": "SSL", "ssl.key.location": p.keyFile},
			want: "go together"},
		{name: "certificate with the wrong key", props: map[string]string{"security.protocol": "SSL",
			"ssl.certificate.location": p.certFile, "ssl.key.location": p.otherKeyFile},
			want: "kafka.ssl.certificate.location"},
		{name: "missing CA file", props: map[string]string{"security.protocol": "SSL", "ssl.ca.location": p.caFile + ".missing"},
			want: "kafka.ssl.ca.location"},
		{name: "CA file without PEM", props: map[string]string{"security.protocol": "SSL", "ssl.ca.location": p.notPEMFile},
			want: "kafka.ssl.ca.location: no PEM certificates in " + p.notPEMFile},
		{name: "SSL", props: map[string]string{"security.protocol": "SSL"}, tls: true},
		{name: "plaintext", props: map[string]string{"security.protocol": "plaintext"}},
		{name: "SASL_SSL with JAAS, CA and client certificate", props: map[string]string{"security.protocol": "sasl_ssl",
			"sasl.mechanism": "SCRAM-SHA-256", "sasl.jaas.config": `org.apache.kafka.common.security.scram.ScramLoginModule required username="u" password="p";`,
			"ssl.ca.location": p.caFile, "ssl.certificate.location": p.certFile, "ssl.key.location": p.keyFile},
			tls: true, sasl: "SCRAM-SHA-256"},
		{name: "SASL_PLAINTEXT defaults to PLAIN", props: map[string]string{"security.protocol": "SASL_PLAINTEXT", "sasl.username": "u", "sasl.password": "p"},
			sasl: "PLAIN"},
		{name: "SCRAM-SHA-256", props: map[string]string{"security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": "SCRAM-SHA-256",
			"sasl.username": "u", "sasl.password": "p"}, sasl: "SCRAM-SHA-256"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o, err := ParseProperties(tt.props)
			if tt.want != "" {
				if err == nil || !strings.Contains(err.Error(), tt.want) {
					t.Fatalf("error %v, want one saying %q", err, tt.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			prod, cons := mustClients(t, o)
			for _, cl := range []*kgo.Client{prod, cons} {
				if got := tlsOf(cl) != nil; got != tt.tls {
					t.Errorf("TLS %v, want %v", got, tt.tls)
				}
				ms, _ := cl.OptValue(kgo.SASL).([]sasl.Mechanism)
				switch {
				case tt.sasl == "" && len(ms) != 0:
					t.Errorf("SASL %s in use, want none", ms[0].Name())
				case tt.sasl != "":
					if name, _ := saslOf(t, cl); name != tt.sasl {
						t.Errorf("SASL %s, want %s", name, tt.sasl)
					}
				}
			}
		})
	}
}

func TestJAAS(t *testing.T) {
	tests := []struct {
		line, mechanism string
		user, pass      string
		bad             bool
	}{
		{line: `org.apache.kafka.common.security.plain.PlainLoginModule required username="alice" password="alice-secret";`,
			user: "alice", pass: "alice-secret"},
		{line: `org.apache.kafka.common.security.plain.PlainLoginModule required password="p w" username = "bob";`,
			user: "bob", pass: "p w"},
		{line: "PlainLoginModule required\n  username=\"carol\"\n  password=\"c\";", user: "carol", pass: "c"},
		{line: `org.apache.kafka.common.security.scram.ScramLoginModule required username="dave" password="d";`,
			mechanism: "SCRAM-SHA-512", user: "dave", pass: "d"},
		{line: `PlainLoginModule required username="" password="x";`, bad: true}, // empty user: SASL needs one
		{line: `PlainLoginModule required username=alice password=secret;`, bad: true},
		{line: "", bad: true},
	}
	for _, tt := range tests {
		t.Run(tt.line, func(t *testing.T) {
			props := map[string]string{"security.protocol": "SASL_PLAINTEXT", "sasl.jaas.config": tt.line}
			if tt.mechanism != "" {
				props["sasl.mechanism"] = tt.mechanism
			}
			o, err := ParseProperties(props)
			if tt.bad {
				if err == nil || !strings.Contains(err.Error(), "sasl") {
					t.Fatalf("error %v, want one naming the SASL setting", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			prod, _ := mustClients(t, o)
			name, first := saslOf(t, prod)
			switch name {
			case "PLAIN":
				if want := "\x00" + tt.user + "\x00" + tt.pass; string(first) != want {
					t.Errorf("PLAIN sends %q, want %q", first, want)
				}
			default:
				if name != tt.mechanism || !bytes.HasPrefix(first, []byte("n,,n="+tt.user+",")) {
					t.Errorf("%s sends %q, want %s for %s", name, first, tt.mechanism, tt.user)
				}
			}
		})
	}
}

// TestJAASAndExplicitCredentials: sasl.username and sasl.password beat the
// JAAS line's (as docs/configuration.md says).
func TestJAASAndExplicitCredentials(t *testing.T) {
	for _, tc := range []struct {
		props      map[string]string
		user, pass string
	}{
		{map[string]string{"sasl.username": "explicit"}, "explicit", "jp"},
		{map[string]string{"sasl.password": "explicit"}, "ju", "explicit"},
		{map[string]string{"sasl.username": "eu", "sasl.password": "ep"}, "eu", "ep"},
	} {
		props := map[string]string{"security.protocol": "SASL_PLAINTEXT",
			"sasl.jaas.config": `PlainLoginModule required username="ju" password="jp";`}
		for k, v := range tc.props {
			props[k] = v
		}
		prod, _ := mustClients(t, mustParse(t, props))
		if _, first := saslOf(t, prod); string(first) != "\x00"+tc.user+"\x00"+tc.pass {
			t.Errorf("%v: PLAIN sends %q, want user %q and password %q", tc.props, first, tc.user, tc.pass)
		}
	}
}

func TestPartitionerClass(t *testing.T) {
	sticky := fmt.Sprintf("%T", kgo.StickyKeyPartitioner(nil))
	roundRobin := fmt.Sprintf("%T", kgo.RoundRobinPartitioner())
	nullZero := fmt.Sprintf("%T", nullKeyZero{})
	tests := map[string]string{
		"default":            sticky,
		"DEFAULT":            sticky,
		"murmur2":            sticky,
		"DefaultPartitioner": sticky,
		"org.apache.kafka.clients.producer.internals.DefaultPartitioner": sticky,
		"org.apache.kafka.clients.producer.internals.BuiltInPartitioner": sticky,
		"null-key-zero":         nullZero,
		"round-robin":           roundRobin,
		"Round-Robin":           roundRobin,
		"RoundRobinPartitioner": roundRobin,
		"org.apache.kafka.clients.producer.RoundRobinPartitioner": roundRobin,
		"":               "",
		"sticky":         "",
		"uniform":        "",
		"null-key-zero.": "",
		"org.apache.kafka.clients.producer.UniformStickyPartitioner": "",
	}
	for value, want := range tests {
		t.Run(value, func(t *testing.T) {
			p, err := partitioner(value)
			if want == "" {
				if err == nil || !strings.Contains(err.Error(), strconv.Quote(value)) {
					t.Errorf("partitioner(%q) = %T, %v; want an error quoting the value", value, p, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := fmt.Sprintf("%T", p); got != want {
				t.Errorf("partitioner(%q) is %s, want %s", value, got, want)
			}
			prod, _ := mustClients(t, mustParse(t, map[string]string{"partitioner.class": value}))
			if got := fmt.Sprintf("%T", prod.OptValue(kgo.RecordPartitioner)); got != want {
				t.Errorf("the producer client's partitioner is %s, want %s", got, want)
			}
		})
	}
}

// TestNullKeyZeroPartitioner: null keys all go to partition 0, keyed records
// exactly where Kafka's (and franz-go's sticky key) murmur2 hashing puts them.
func TestNullKeyZeroPartitioner(t *testing.T) {
	p, err := partitioner("null-key-zero")
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []int{1, 2, 3, 12, 100} {
		tp := p.ForTopic("orders")
		ref := kgo.StickyKeyPartitioner(nil).ForTopic("orders")
		for i := range 200 {
			r := &kgo.Record{Topic: "orders", Value: []byte(strconv.Itoa(i))}
			if got := tp.Partition(r, n); got != 0 {
				t.Fatalf("n=%d: null-key record %d went to partition %d, want 0", n, i, got)
			}
			if !tp.RequiresConsistency(r) {
				t.Errorf("null-key records do not require consistency")
			}
			keyed := &kgo.Record{Topic: "orders", Key: []byte("key-" + strconv.Itoa(i))}
			if got, want := tp.Partition(keyed, n), ref.Partition(keyed, n); got != want {
				t.Fatalf("n=%d: key %q went to partition %d, sticky key partitioner says %d", n, keyed.Key, got, want)
			}
		}
		// An empty key is a key, not a null key (as in Kafka).
		empty := &kgo.Record{Topic: "orders", Key: []byte{}}
		if got, want := tp.Partition(empty, n), ref.Partition(empty, n); got != want {
			t.Errorf("n=%d: empty key went to %d, want %d", n, got, want)
		}
	}
	// Keys really are spread: the test above would pass for a partitioner
	// sending everything to 0 only if the reference did too.
	spread := map[int]bool{}
	tp := p.ForTopic("orders")
	for i := range 100 {
		spread[tp.Partition(&kgo.Record{Key: []byte(strconv.Itoa(i))}, 12)] = true
	}
	if len(spread) < 6 {
		t.Errorf("100 keys hit only %d of 12 partitions", len(spread))
	}
}

// TestNullKeyZeroProduce produces through a franz-go client configured by
// ParseProperties against a fake cluster.
func TestNullKeyZeroProduce(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(6, "orders"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	o := mustParse(t, map[string]string{"partitioner.class": "org.example.null-key-zero", "bootstrap.servers": strings.Join(c.ListenAddrs(), ",")})
	cl, err := kgo.NewClient(append(append([]kgo.Opt{kgo.SeedBrokers(o.Brokers...)}, o.Common...), o.Producer...)...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ref := kgo.StickyKeyPartitioner(nil).ForTopic("orders")
	var records []*kgo.Record
	for i := range 30 {
		records = append(records, &kgo.Record{Topic: "orders", Value: []byte("v")})
		records = append(records, &kgo.Record{Topic: "orders", Key: []byte("k" + strconv.Itoa(i)), Value: []byte("v")})
	}
	if err := cl.ProduceSync(ctx, records...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	for _, r := range records {
		want := int32(0)
		if r.Key != nil {
			want = int32(ref.Partition(r, 6))
		}
		if r.Partition != want {
			t.Errorf("record with key %q went to partition %d, want %d", r.Key, r.Partition, want)
		}
	}
}

// TestSeveralErrorsTogether: every bad property is reported at once, each by name.
func TestSeveralErrorsTogether(t *testing.T) {
	_, err := ParseProperties(map[string]string{
		"linger.ms":        "soon",
		"group.id":         "g",
		"lingerms":         "5",
		"compression.type": "brotli",
		"acks":             "1",
		"sasl.username":    "u",
		"client.id":        "fine",
	})
	if err == nil {
		t.Fatal("accepted")
	}
	msg := err.Error()
	for _, want := range []string{"kafka.linger.ms:", "kafka.group.id:", "kafka.lingerms:", "kafka.compression.type:", "kafka.acks:", "kafka.sasl.*"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error does not mention %s:\n%s", want, msg)
		}
	}
	if strings.Contains(msg, "client.id") {
		t.Errorf("a good property is reported:\n%s", msg)
	}
	if !errors.Is(err, ErrUnknownProperty) || !errors.Is(err, ErrUnsupportedProperty) {
		t.Errorf("error does not wrap both sentinels: %v", err)
	}
	var multi interface{ Unwrap() []error }
	if !errors.As(err, &multi) || len(multi.Unwrap()) != 6 {
		t.Errorf("want 6 joined errors, got:\n%s", msg)
	}
}

// TestAcceptedValuesWorkWithFranzGo: a value ParseProperties accepts must not
// make franz-go refuse to build the clients later, or `kedge config check`
// passes a configuration `kedge serve` cannot start with.
func TestAcceptedValuesWorkWithFranzGo(t *testing.T) {
	tests := []struct {
		name, value string
		invalid     string // why the value must be refused
	}{
		{name: "delivery.timeout.ms", value: "1000"},
		{name: "delivery.timeout.ms", value: "500", invalid: "franz-go needs a record timeout of at least 1s"},
		{name: "delivery.timeout.ms", value: "50", invalid: "franz-go needs at least 1s (and a produce timeout of at least 100ms)"},
		{name: "request.timeout.ms", value: "100"},
		{name: "request.timeout.ms", value: "50", invalid: "franz-go needs a produce timeout of at least 100ms"},
		{name: "batch.size", value: "512"},
		{name: "batch.size", value: "104857600"},
		{name: "batch.size", value: "0", invalid: "franz-go needs a batch of at least 512 bytes"},
		{name: "batch.size", value: "104857601", invalid: "franz-go needs batch.size at most its broker write limit (100MiB)"},
		{name: "linger.ms", value: "60000"},
		{name: "linger.ms", value: "60001", invalid: "franz-go allows a linger of at most 1m"},
		{name: "connections.max.idle.ms", value: "100"},
		{name: "connections.max.idle.ms", value: "900000"},
		{name: "connections.max.idle.ms", value: "0", invalid: "franz-go needs an idle timeout from 100ms to 15m"},
		{name: "connections.max.idle.ms", value: "900001", invalid: "franz-go needs an idle timeout from 100ms to 15m"},
		{name: "fetch.max.wait.ms", value: "10"},
		{name: "fetch.max.wait.ms", value: "0", invalid: "franz-go needs a fetch wait of at least 10ms"},
		{name: "fetch.max.bytes", value: "104857601", invalid: "franz-go needs fetch.max.bytes at most its broker read limit (100MiB)"},
		{name: "metadata.max.age.ms", value: "3600000"},
		{name: "metadata.max.age.ms", value: "3600001", invalid: "franz-go allows a metadata max age of at most 1h"},
		{name: "client.id", value: strings.Repeat("c", 256)},
		{name: "client.id", value: strings.Repeat("c", 257), invalid: "franz-go allows a client ID of at most 256 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name+"="+tt.value[:min(len(tt.value), 12)], func(t *testing.T) {
			o, err := ParseProperties(map[string]string{tt.name: tt.value})
			if err != nil {
				if tt.invalid == "" {
					t.Fatalf("a valid value is rejected: %v", err)
				}
				if !strings.Contains(err.Error(), "kafka."+tt.name) {
					t.Errorf("error does not name the property: %v", err)
				}
				return
			}
			if tt.invalid != "" {
				t.Fatalf("%s=%s accepted; want it refused: %s", tt.name, tt.value, tt.invalid)
			}
			if _, _, err := newClients(t, o); err != nil {
				t.Errorf("ParseProperties accepted %s=%s but franz-go refuses it: %v", tt.name, tt.value, err)
			}
		})
	}
}

// TestBatchSizeOverflow: a batch.size beyond int32 must not wrap around.
func TestBatchSizeOverflow(t *testing.T) {
	o, err := ParseProperties(map[string]string{"batch.size": "4294967808"})
	if err != nil {
		return // rejected: good
	}
	prod, _ := mustClients(t, o)
	t.Errorf("batch.size=4294967808 accepted as %v", prod.OptValue(kgo.ProducerBatchMaxBytes))
}

// TestConfigurationDocListsProperties: docs/configuration.md has a table row
// for every supported and every rejected property.
func TestConfigurationDocListsProperties(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "docs", "configuration.md"))
	if err != nil {
		t.Fatal(err)
	}
	rows := map[string]string{}
	row := regexp.MustCompile("(?m)^\\| `([a-z][a-z0-9.-]*)` \\|.*$")
	for _, m := range row.FindAllStringSubmatch(string(b), -1) {
		rows[m[1]] = m[0]
	}
	for name := range properties {
		if _, ok := rows[name]; !ok {
			t.Errorf("docs/configuration.md has no row for supported property %s", name)
		}
	}
	for name := range unsupported {
		if _, ok := rows[name]; !ok {
			t.Errorf("docs/configuration.md has no row for rejected property %s", name)
		}
	}
}
