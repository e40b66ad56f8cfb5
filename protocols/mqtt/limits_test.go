package mqtt

import (
	"bufio"
	"crypto/tls"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/kedgehq/kedge/internal/testcert"

	"github.com/gorilla/websocket"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/kedgehq/kedge/auth"
	"github.com/kedgehq/kedge/core"
)

// newLimitHarness is a harness whose node applies limits; they are set
// before the listener starts, since a connection reads them on accept.
func newLimitHarness(t *testing.T, cfg Config, limits core.LimitsConfig) (*harness, *core.Limits) {
	t.Helper()
	l := core.NewLimits(limits)
	cfg.Listen = "127.0.0.1:0"
	return startHarness(t, cfg, &core.Node{Hub: core.NewHub(core.CacheConfig{}), Limits: l}), l
}

// A connection past a limit is answered with CONNACK: 0x97 quota exceeded
// for its address, 0x89 server busy for the node (MQTT 3.1.1: 3, server
// unavailable); the clients connected go on.
func TestConnectionLimitsConnack(t *testing.T) {
	h, limits := newLimitHarness(t, Config{}, core.LimitsConfig{MaxConnections: 3, MaxConnectionsPerIP: 2})
	a := dial(t, h.addr, 5)
	a.mustConnect("a", true)
	a.subscribe(1, sub("demo/k1", 1))
	b := dial(t, h.addr, 4)
	b.mustConnect("b", true)

	c := dial(t, h.addr, 5)
	ack := c.connect("c", true)
	if ack.ReasonCode != packets.ErrQuotaExceeded.Code || !strings.HasPrefix(ack.Properties.ReasonString, "too_many_connections: ") {
		t.Fatalf("CONNACK %#x %q, want 0x97 too_many_connections", ack.ReasonCode, ack.Properties.ReasonString)
	}
	c.closed(5 * time.Second)
	v3 := dial(t, h.addr, 4)
	if ack := v3.connect("v3", true); ack.ReasonCode != 3 {
		t.Fatalf("MQTT 3.1.1 CONNACK %#x, want 3", ack.ReasonCode)
	}
	if n := limits.Hits(core.LimitConnectionsPerIP, auth.ProtocolMQTT); n != 2 {
		t.Fatalf("%d refusals counted, want 2", n)
	}
	release, err := limits.Admit(auth.ProtocolWS, "192.0.2.3:1")
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	full := dial(t, h.addr, 5)
	if ack := full.connect("full", true); ack.ReasonCode != packets.ErrServerBusy.Code ||
		!strings.HasPrefix(ack.Properties.ReasonString, "server_full: ") {
		t.Fatalf("CONNACK on a full node %#x %q", ack.ReasonCode, ack.Properties.ReasonString)
	}
	// The connected clients were not disturbed.
	h.kafka.dispatch("/demo/k1", "still served")
	a.message("demo/k1", "still served")
	b.write(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Pingreq}})
	b.expect(packets.Pingresp)
	// The refused connections are counted until the server has closed them.
	waitFor(t, 5*time.Second, "2 connections open", func() bool { return h.srv.Stats().Connections == 2 })
}

// Publishes beyond the rate: MQTT 5 gets PUBACK 0x96 rate_limited and the
// publish never reaches Kafka; MQTT 3.1.1 (no negative acknowledgement) is
// slowed down instead: the connection is not read until the publish is
// within the rate.
func TestPublishRateLimited(t *testing.T) {
	h, limits := newLimitHarness(t, Config{}, core.LimitsConfig{PublishRate: 1, PublishBurst: 2})
	c := dial(t, h.addr, 5)
	c.mustConnect("fast", true)
	for id := uint16(1); id <= 2; id++ {
		c.publish("demo/k1", "x", 1, id)
		if ack := c.expect(packets.Puback); ack.ReasonCode != 0 {
			t.Fatalf("publish %d: PUBACK %#x", id, ack.ReasonCode)
		}
	}
	c.publish("demo/k1", "x", 1, 3)
	ack := c.expect(packets.Puback)
	if ack.ReasonCode != packets.ErrMessageRateTooHigh.Code || !strings.HasPrefix(ack.Properties.ReasonString, "rate_limited: ") {
		t.Fatalf("third publish: PUBACK %#x %q", ack.ReasonCode, ack.Properties.ReasonString)
	}
	c.publish("demo/k1", "dropped", 0, 0) // QoS 0: dropped and counted
	if n := len(h.kafka.published()); n != 2 {
		t.Fatalf("%d publishes reached Kafka, want 2", n)
	}
	v3 := dial(t, h.addr, 4)
	v3.mustConnect("v3", true)
	start := time.Now()
	for id := uint16(1); id <= 3; id++ {
		v3.publish("demo/k1", "x", 1, id)
		v3.expect(packets.Puback)
	}
	if took := time.Since(start); took < 900*time.Millisecond {
		t.Fatalf("three publishes at 1/s with a burst of 2 took %v, want about 1s", took)
	}
	if n := len(h.kafka.published()); n != 5 {
		t.Fatalf("%d publishes reached Kafka, want 5", n)
	}
	if n := limits.Hits(core.LimitPublishRate, auth.ProtocolMQTT); n != 3 {
		t.Fatalf("%d refusals counted, want 3", n)
	}
}

// A connection that sends no CONNECT in time, and one that sends a packet
// over the maximum, are closed and counted.
func TestConnectTimeoutAndPacketSizeCounted(t *testing.T) {
	h, limits := newLimitHarness(t, Config{ConnectTimeout: 100 * time.Millisecond, MaxPacketSize: 1024}, core.LimitsConfig{})
	silent := dial(t, h.addr, 4)
	silent.closed(5 * time.Second)
	waitFor(t, 5*time.Second, "the timeout to be counted", func() bool {
		return limits.Hits(core.LimitHandshake, auth.ProtocolMQTT) == 1
	})
	big := dial(t, h.addr, 4)
	big.mustConnect("big", true)
	big.publish("demo/k1", strings.Repeat("x", 2048), 0, 0)
	big.closed(5 * time.Second)
	waitFor(t, 5*time.Second, "the large packet to be counted", func() bool {
		return limits.Hits(core.LimitPayload, auth.ProtocolMQTT) == 1
	})
	if limits.Hits(core.LimitHandshake, auth.ProtocolMQTT) != 1 {
		t.Fatal("a connection that sent CONNECT was counted as a handshake timeout")
	}
}

// MQTT over WebSocket applies the origins and the connection limits before
// the upgrade.
func TestWebSocketOriginAndLimits(t *testing.T) {
	h, limits := newLimitHarness(t, Config{Origins: auth.NewOrigins([]string{"https://app.example"})}, core.LimitsConfig{MaxConnectionsPerIP: 1})
	ts := httptest.NewServer(h.srv)
	t.Cleanup(ts.Close)
	url := "ws" + strings.TrimPrefix(ts.URL, "http") + "/mqtt"
	d := websocket.Dialer{Subprotocols: []string{"mqtt"}}
	refused := func(origin string, status int, code string) {
		t.Helper()
		ws, resp, err := d.Dial(url, http.Header{"Origin": {origin}})
		if err == nil {
			_ = ws.Close()
			t.Fatalf("origin %q upgraded", origin)
		}
		b, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode != status || !strings.Contains(string(b), `"code":"`+code+`"`) {
			t.Fatalf("origin %q: %d %s, want %d %s", origin, resp.StatusCode, b, status, code)
		}
	}
	refused("https://evil.example", http.StatusForbidden, "origin_not_allowed")
	ws, _, err := d.Dial(url, http.Header{"Origin": {"https://app.example"}})
	if err != nil {
		t.Fatal(err)
	}
	nc := &wsNetConn{Conn: ws.NetConn(), ws: ws}
	c := &client{t: t, nc: nc, br: bufio.NewReader(nc), v: 5}
	c.mustConnect("browser", true)
	refused("https://app.example", http.StatusTooManyRequests, "too_many_connections")
	if limits.Hits(core.LimitOrigin, auth.ProtocolMQTT) != 1 || limits.Hits(core.LimitConnectionsPerIP, auth.ProtocolMQTT) != 1 {
		t.Fatal("refusals not counted")
	}
	_ = ws.Close()
	waitFor(t, 5*time.Second, "the connection's slot", func() bool { return limits.Open() == 0 })
}

// A new certificate written over the files is served to the next clients
// without a restart; the connected ones go on.
func TestTLSCertificateReload(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := dir+"/cert.pem", dir+"/key.pem"
	testcert.Write(t, certFile, keyFile, "before")
	h := newHarness(t, Config{TLSCertFile: certFile, TLSKeyFile: keyFile})
	served := func() (string, *tls.Conn) {
		t.Helper()
		raw, err := tls.Dial("tcp", h.addr, &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // the test reads the certificate
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = raw.Close() })
		return raw.ConnectionState().PeerCertificates[0].Subject.CommonName, raw
	}
	name, raw := served()
	if name != "before" {
		t.Fatalf("serves %q", name)
	}
	old := &client{t: t, nc: raw, br: bufio.NewReader(raw), v: 4}
	old.mustConnect("old", true)
	old.subscribe(1, sub("demo/k1", 0))

	testcert.Write(t, certFile, keyFile, "after")
	waitFor(t, 10*time.Second, "the new certificate to be served", func() bool {
		name, _ := served()
		return name == "after"
	})
	h.kafka.dispatch("/demo/k1", "over the old connection")
	old.message("demo/k1", "over the old connection")
	if st := h.srv.Certificate().Stats(); st.Reloads != 1 {
		t.Fatalf("reloads %d", st.Reloads)
	}
}
