package mqtt

import (
	"bufio"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kedgehq/kedge/internal/testcert"

	"github.com/gorilla/websocket"
	"github.com/mochi-mqtt/server/v2/packets"
)

// wsNetConn lets the raw test client speak over a WebSocket.
type wsNetConn struct {
	net.Conn
	ws *websocket.Conn
	r  io.Reader
}

func (c *wsNetConn) Read(p []byte) (int, error) {
	for {
		if c.r == nil {
			typ, r, err := c.ws.NextReader()
			if err != nil {
				return 0, err
			}
			if typ != websocket.BinaryMessage {
				return 0, errors.New("server sent a non-binary frame")
			}
			c.r = r
		}
		n, err := c.r.Read(p)
		if errors.Is(err, io.EOF) {
			c.r, err = nil, nil
		}
		if n > 0 || err != nil {
			return n, err
		}
	}
}

func (c *wsNetConn) Write(p []byte) (int, error) {
	return len(p), c.ws.WriteMessage(websocket.BinaryMessage, p)
}

func (c *wsNetConn) SetReadDeadline(t time.Time) error { return c.ws.SetReadDeadline(t) }

// MQTT over WebSocket: binary frames, the "mqtt" subprotocol, the same
// sessions and subjects.
func TestWebSocket(t *testing.T) {
	h := newHarness(t, Config{})
	ts := httptest.NewServer(h.srv)
	t.Cleanup(ts.Close)
	d := websocket.Dialer{Subprotocols: []string{"mqtt"}}
	ws, resp, err := d.Dial("ws"+strings.TrimPrefix(ts.URL, "http")+"/mqtt", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ws.Close() })
	if p := resp.Header.Get("Sec-WebSocket-Protocol"); p != "mqtt" {
		t.Fatalf("subprotocol %q", p)
	}
	nc := &wsNetConn{Conn: ws.NetConn(), ws: ws}
	c := &client{t: t, nc: nc, br: bufio.NewReader(nc), v: 5}
	c.mustConnect("ws", true)
	c.subscribe(1, sub("demo/k1", 1))
	c.publish("demo/k1", "over websocket", 1, 2)
	// The PUBACK and the message come back in either order.
	for seen := map[byte]bool{}; len(seen) < 2; {
		pk, err := c.next(10 * time.Second)
		if err != nil {
			t.Fatal(err)
		}
		seen[pk.FixedHeader.Type] = true
		switch {
		case pk.FixedHeader.Type == packets.Puback && pk.PacketID == 2:
		case pk.FixedHeader.Type == packets.Publish && pk.TopicName == "demo/k1" && string(pk.Payload) == "over websocket":
			c.puback(pk.PacketID)
		default:
			t.Fatalf("got %+v", pk)
		}
	}
	if err := ws.WriteControl(websocket.PingMessage, []byte("hi"), time.Now().Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	if err := ws.WriteMessage(websocket.TextMessage, []byte("not mqtt")); err != nil {
		t.Fatal(err)
	}
	c.closed(5 * time.Second)
}

func TestTLS(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	testcert.Write(t, certFile, keyFile, "kedge test")
	if _, err := NewServer(testNode(t), Config{TLSCertFile: certFile}); err == nil {
		t.Fatal("a certificate without a key was accepted")
	}
	if _, err := NewServer(testNode(t), Config{TLSCertFile: keyFile, TLSKeyFile: keyFile}); err == nil {
		t.Fatal("a key file as certificate was accepted")
	}
	h := newHarness(t, Config{TLSCertFile: certFile, TLSKeyFile: keyFile, ConnectTimeout: time.Second})
	raw, err := tls.Dial("tcp", h.addr, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = raw.Close() })
	c := &client{t: t, nc: raw, br: bufio.NewReader(raw), v: 4}
	c.mustConnect("tls", true)
	c.subscribe(1, sub("demo/k1", 0))
	h.kafka.dispatch("/demo/k1", "secret")
	c.message("demo/k1", "secret")
	// Plain MQTT on the TLS port fails the handshake within the timeout.
	plain := dial(t, h.addr, 4)
	plain.write(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connect},
		Connect: packets.ConnectParams{ProtocolName: []byte("MQTT"), ClientIdentifier: "plain", Clean: true}})
	plain.closed(5 * time.Second)
}

// A QoS 1 subscriber that does not acknowledge is a slow consumer once its
// queue is full: disconnected (MQTT 5: DISCONNECT 0x97) and its session
// reset. A QoS 0 subscriber loses messages instead, and stays.
func TestSlowConsumer(t *testing.T) {
	h := newHarness(t, Config{WriteQueueSize: 4096, MaxInflight: 8})
	slow := dial(t, h.addr, 5)
	slow.mustConnect("slow", false, withExpiry(60))
	slow.subscribe(1, sub("demo/k1", 1))
	payload := strings.Repeat("x", 1000)
	for range 20 {
		h.kafka.dispatch("/demo/k1", payload)
	}
	got := slow.closed(5 * time.Second)
	last := got[len(got)-1]
	if len(got) > 9 || last.FixedHeader.Type != packets.Disconnect || last.ReasonCode != packets.ErrQuotaExceeded.Code ||
		!strings.Contains(last.Properties.ReasonString, "slow consumer") {
		t.Fatalf("got %d packets, last %+v; want at most 8 messages, then DISCONNECT 0x97", len(got), last)
	}
	for _, pk := range got[:len(got)-1] {
		if pk.FixedHeader.Type != packets.Publish {
			t.Fatalf("got %+v", pk)
		}
	}
	waitFor(t, 5*time.Second, "the session reset", func() bool { return h.srv.Stats().Subscriptions == 0 })
	again := dial(t, h.addr, 5)
	if ack := again.mustConnect("slow", false, withExpiry(60)); ack.SessionPresent {
		t.Fatal("the slow consumer's session survived")
	}
	if st := h.srv.Stats(); st.SlowClosed != 1 || st.SessionResets != 1 {
		t.Fatalf("stats %+v", st)
	}

	lossy := dial(t, h.addr, 4)
	lossy.mustConnect("lossy", true)
	lossy.subscribe(1, sub("demo/k2", 0))
	big := strings.Repeat("y", 32<<10)
	waitFor(t, 20*time.Second, "drops", func() bool {
		for range 100 { // faster than the socket takes them, once its buffers are full
			h.kafka.dispatch("/demo/k2", big)
		}
		return h.srv.Stats().Dropped > 0
	})
	lossy.message("demo/k2", big) // still connected
	if st := h.srv.Stats(); st.SlowClosed != 1 {
		t.Fatalf("a QoS 0 subscriber was disconnected: %+v", st)
	}
}
