package integration

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kedgehq/kedge/internal/testcert"

	paho3 "github.com/eclipse/paho.mqtt.golang"
	"github.com/gorilla/websocket"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/scram"
)

// writeCertPair writes a self-signed certificate for 127.0.0.1 named name,
// and its key; rename puts them in place the way certificate managers do.
func writeCertPair(t *testing.T, dir, name string) (certFile, keyFile string) {
	t.Helper()
	certPEM, keyPEM := testcert.PEM(t, name)
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	for path, data := range map[string][]byte{certFile: certPEM, keyFile: keyPEM} {
		tmp := path + ".tmp"
		if err := os.WriteFile(tmp, data, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, path); err != nil {
			t.Fatal(err)
		}
	}
	return certFile, keyFile
}

// TLS on every listener: HTTPS (SSE, HTTP publish), WSS, MQTT over TLS and
// MQTT over WSS. A certificate rotated on disk is served to new clients on
// both listeners without a restart; connections made before go on.
func TestTLSListenersReloadCertificates(t *testing.T) {
	dir := t.TempDir()
	cert, key := writeCertPair(t, dir, "first")
	n := startKedgeTLS(t, "http.tls.cert.file="+cert, "http.tls.key.file="+key,
		"mqtt.tls.cert.file="+cert, "mqtt.tls.key.file="+key)
	// A configuration per client: net/http's Transport adds "h2" to the one it is given.
	insecure := func() *tls.Config { return &tls.Config{InsecureSkipVerify: true} } //nolint:gosec // a self-signed test certificate
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: insecure(), ForceAttemptHTTP2: true}, Timeout: 10 * time.Second}
	t.Cleanup(hc.CloseIdleConnections) // goleak after the suite: no idle connection's goroutines left

	// Plain HTTP on the TLS port is refused (Go's TLS server answers 400).
	plain := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 10 * time.Second}
	if resp, err := plain.Get("http://" + n.HTTP + "/healthz"); err == nil {
		_ = resp.Body.Close()
		if resp.StatusCode == 200 {
			t.Fatal("plain HTTP served on the TLS listener")
		}
	}
	resp, err := hc.Get("https://" + n.HTTP + "/healthz")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("HTTPS: %v %v", resp, err)
	}
	_ = resp.Body.Close()
	if resp.ProtoMajor != 2 {
		t.Errorf("HTTPS served %s, want HTTP/2 for SSE and HTTP requests", resp.Proto)
	}
	d := websocket.Dialer{TLSClientConfig: insecure()}
	wsConn, _, err := d.Dial("wss://"+n.HTTP+"/v1/ws", nil)
	if err != nil {
		t.Fatalf("WSS: %v", err)
	}
	ws := &wsClient{t: t, conn: wsConn, frames: make(chan map[string]any, 1000), closed: make(chan struct{})}
	go ws.read()
	t.Cleanup(func() { _ = wsConn.Close() })
	ws.subscribe("/tls/k")
	sse := openSSEClient(t, &http.Client{Transport: hc.Transport}, "https://"+n.HTTP+"/v1/sse?subject=/tls/k&snapshot=false", nil)
	if sse.status != 200 {
		t.Fatalf("SSE over HTTPS: %d %v", sse.status, sse.body)
	}
	mq := paho3.NewClient(paho3.NewClientOptions().AddBroker("ssl://" + n.MQTT).SetClientID("tls").
		SetTLSConfig(insecure()).SetAutoReconnect(false))
	if tk := mq.Connect(); !tk.WaitTimeout(10*time.Second) || tk.Error() != nil {
		t.Fatalf("MQTT over TLS: %v", tk.Error())
	}
	defer mq.Disconnect(0)
	got := make(chan string, 10)
	if tk := mq.Subscribe("tls/k", 1, func(_ paho3.Client, m paho3.Message) { got <- string(m.Payload()) }); !tk.WaitTimeout(10*time.Second) || tk.Error() != nil {
		t.Fatal(tk.Error())
	}
	mqws := paho3.NewClient(paho3.NewClientOptions().AddBroker("wss://" + n.HTTP + "/mqtt").SetClientID("tls-ws").
		SetTLSConfig(insecure()).SetAutoReconnect(false))
	if tk := mqws.Connect(); !tk.WaitTimeout(10*time.Second) || tk.Error() != nil {
		t.Fatalf("MQTT over WSS: %v", tk.Error())
	}
	defer mqws.Disconnect(0)
	if testcert.Served(t, n.HTTP) != "first" || testcert.Served(t, n.MQTT) != "first" {
		t.Fatal("not serving the configured certificate")
	}

	writeCertPair(t, dir, "second")
	waitFor(t, 10*time.Second, "the rotated certificate on both listeners", func() bool {
		return testcert.Served(t, n.HTTP) == "second" && testcert.Served(t, n.MQTT) == "second"
	})
	// The connections made before go on, over every transport.
	status, body := postJSONClient(t, hc, "https://"+n.HTTP+"/v1/publish", `{"subject":"/tls/k","payload":"after rotation"}`)
	if status != 200 {
		t.Fatalf("HTTPS publish: %d %v", status, body)
	}
	if m := wsMessage(ws); m["payload"] != "after rotation" {
		t.Fatalf("WSS got %v", m)
	}
	if ev := sse.next(10 * time.Second); ev.data["payload"] != "after rotation" {
		t.Fatalf("SSE over HTTPS got %v", ev)
	}
	select {
	case p := <-got:
		if p != "after rotation" {
			t.Fatalf("MQTT over TLS got %q", p)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("MQTT over TLS got nothing")
	}
	_, metrics := httpsGet(t, hc, "https://"+n.HTTP+"/metrics")
	for _, l := range []string{`kedge_tls_certificate_reloads_total{listener="http"} 1`, `kedge_tls_certificate_reloads_total{listener="mqtt"} 1`} {
		if !strings.Contains(metrics, l) {
			t.Errorf("metrics lack %q:\n%s", l, grepLines(metrics, "kedge_tls"))
		}
	}
}

// startKedgeTLS is startKedge for a node whose HTTP listener speaks TLS:
// readiness is polled over HTTPS.
func startKedgeTLS(t *testing.T, sets ...string) *node {
	t.Helper()
	return startKedgeWith(t, func(n *node) bool {
		hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}, Timeout: 2 * time.Second} //nolint:gosec // test
		defer hc.CloseIdleConnections()
		resp, err := hc.Get("https://" + n.HTTP + "/readyz")
		if err != nil {
			return false
		}
		_ = resp.Body.Close()
		return resp.StatusCode == 200
	}, sets...)
}

func httpsGet(t *testing.T, hc *http.Client, url string) (int, string) {
	t.Helper()
	resp, err := hc.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func postJSONClient(t *testing.T, hc *http.Client, url, body string) (int, string) {
	t.Helper()
	resp, err := hc.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// The connection limits count across protocols from one address, and a
// connection past them is refused in each protocol's own way; the publish
// rate is per connection; /metrics counts each refusal.
func TestConnectionAndRateLimitsAcrossProtocols(t *testing.T) {
	n := startKedge(t, "limits.max.connections.per.ip=3", "limits.publish.rate=5", "limits.publish.burst=5")
	ws := dialWS(t, n.WS())
	sse := openSSE(t, sseURL(n, []string{"/lim/k"}, ""), nil)
	if sse.status != 200 {
		t.Fatalf("SSE: %d %v", sse.status, sse.body)
	}
	mq := dialMQTT3(t, n.mqttURL(), "lim", true)
	// A fourth connection from 127.0.0.1, on each protocol.
	_, resp, err := websocket.DefaultDialer.Dial(n.WS(), nil)
	if err == nil || resp == nil || resp.StatusCode != 429 {
		t.Fatalf("fourth WebSocket: %v %v", resp, err)
	}
	b, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if !strings.Contains(string(b), `"code":"too_many_connections"`) || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("fourth WebSocket: %s %v", b, resp.Header)
	}
	if s := openSSE(t, sseURL(n, []string{"/lim/k"}, ""), nil); s.status != 429 || s.body["code"] != "too_many_connections" {
		t.Fatalf("fourth SSE: %d %v", s.status, s.body)
	}
	if status, body := postJSON(t, "http://"+n.HTTP+"/v1/publish", `{"subject":"/lim/k","payload":"x"}`); status != 429 || body["code"] != "too_many_connections" {
		t.Fatalf("HTTP publish as a fourth connection: %d %v", status, body)
	}
	c := dialTCP(t, n.MQTT)
	_, _ = c.Write(mqttConnectPacket(4, "fourth"))
	b, _ = closedWithin(t, c, 5*time.Second)
	if len(b) < 4 || b[0] != 0x20 || b[3] != 3 {
		t.Fatalf("fourth MQTT connection: CONNACK %x, want return code 3", b)
	}
	// The three connections go on; closing one frees its slot.
	mq.subscribe("lim/k", 1)
	produce(t, kafkaClient(t, n.Kafka), &kgo.Record{Topic: "lim", Key: []byte("k"), Value: []byte("still served")})
	mq.expect("lim/k", "still served")
	sse.cancel()
	waitFor(t, 10*time.Second, "the SSE stream's slot", func() bool {
		status, _ := postJSON(t, "http://"+n.HTTP+"/v1/publish", `{"subject":"/lim/k","payload":"freed"}`)
		return status == 200
	})

	// Publish rate: 5 at once, then rate_limited; the connection goes on.
	var codes []string
	for range 7 {
		id := ws.send(map[string]any{"op": "publish", "subject": "/lim/r", "payload": "x"})
		m := ws.next(20 * time.Second)
		if m["id"] != id {
			t.Fatalf("reply %v to %v", m, id)
		}
		code, _ := m["code"].(string)
		codes = append(codes, m["op"].(string)+":"+code)
	}
	if strings.Join(codes, " ") != "ack: ack: ack: ack: ack: error:rate_limited error:rate_limited" {
		t.Fatalf("replies %v", codes)
	}
	ws.expect("pong", ws.send(map[string]any{"op": "ping"}))
	_, metrics := httpGet("http://" + n.HTTP + "/metrics")
	for _, series := range []string{
		`kedge_limit_refusals_total{limit="connections_per_ip",protocol="ws"}`,
		`kedge_limit_refusals_total{limit="connections_per_ip",protocol="sse"}`,
		`kedge_limit_refusals_total{limit="connections_per_ip",protocol="http"}`,
		`kedge_limit_refusals_total{limit="connections_per_ip",protocol="mqtt"}`,
		`kedge_limit_refusals_total{limit="publish_rate",protocol="ws"}`,
	} {
		if !hasPositive(metrics, series) {
			t.Errorf("%s is not positive:\n%s", series, grepLines(metrics, "kedge_limit_refusals_total"))
		}
	}
}

// A kedge process on a Kafka that requires SASL (SCRAM-SHA-512) over TLS,
// configured with Kafka's own property names: WebSocket publishes reach
// Kafka, and records from the outside world reach WebSocket subscribers.
func TestKedgeOnSASLSSLKafka(t *testing.T) {
	certFile, keyFile := writeCertPair(t, t.TempDir(), "broker")
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	broker := startBroker(t, kfake.EnableSASL(), kfake.Superuser("SCRAM-SHA-512", "kedge", "s3cret"),
		kfake.TLS(&tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}))
	addr := broker.ListenAddrs()[0]
	n := startKedge(t, "kafka.bootstrap.servers="+addr, "kafka.security.protocol=SASL_SSL",
		"kafka.sasl.mechanism=SCRAM-SHA-512", "kafka.sasl.username=kedge", "kafka.sasl.password=s3cret",
		"kafka.ssl.ca.location="+certFile)
	pool := x509.NewCertPool()
	pool.AddCert(pair.Leaf)
	outside := kafkaClient(t, addr, kgo.SASL(scram.Auth{User: "kedge", Pass: "s3cret"}.AsSha512Mechanism()),
		kgo.DialTLSConfig(&tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}))

	ws := dialWS(t, n.WS())
	ws.subscribe("/secure/in")
	produce(t, outside, &kgo.Record{Topic: "secure", Key: []byte("in"), Value: []byte("from outside")})
	if m := wsMessage(ws); m["payload"] != "from outside" {
		t.Fatalf("got %v", m)
	}
	id := ws.send(map[string]any{"op": "publish", "subject": "/secure/out", "payload": "from kedge"})
	if m := ws.expect("ack", id); m["position"] == nil {
		t.Fatalf("ack %v", m)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cons := kafkaClient(t, addr, append(outside.Opts(), kgo.ConsumeTopics("secure"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))...)
	for found := false; !found; {
		fs := cons.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatal("kedge's publish is not in Kafka")
		}
		for _, r := range fs.Records() {
			found = found || string(r.Key) == "out" && string(r.Value) == "from kedge"
		}
	}
}
