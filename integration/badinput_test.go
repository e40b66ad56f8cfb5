package integration

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/twmb/franz-go/pkg/kgo"
)

// healthy are one subscriber per protocol that must keep receiving while
// others send garbage.
type healthy struct {
	t   *testing.T
	n   *node
	pub *kgo.Client
	ws  *wsClient
	sse *sseStream
	mq  *mqtt5
	seq int
}

func newHealthy(t *testing.T, n *node) *healthy {
	h := &healthy{t: t, n: n, pub: kafkaClient(t, n.Kafka)}
	h.ws = dialWS(t, n.WS())
	h.ws.subscribe("/bad/health")
	h.sse = openSSE(t, sseURL(n, []string{"/bad/health"}, "&snapshot=false"), nil)
	if h.sse.status != 200 {
		t.Fatalf("SSE: %d", h.sse.status)
	}
	h.mq = dialMQTT5(t, n.MQTT, "healthy", nil)
	h.mq.subscribe("bad/health", 1)
	h.check("start")
	return h
}

// check produces a message and waits for every healthy subscriber to get it.
func (h *healthy) check(after string) {
	h.t.Helper()
	h.seq++
	want := fmt.Sprintf("health %d after %s", h.seq, after)
	produce(h.t, h.pub, &kgo.Record{Topic: "bad", Key: []byte("health"), Value: []byte(want)})
	if m := wsMessage(h.ws); m["payload"] != want {
		h.t.Fatalf("after %s the WebSocket subscriber got %v", after, m)
	}
	for {
		ev := h.sse.next(10 * time.Second)
		if ev.typ == "message" && ev.data["payload"] == want {
			break
		}
		if ev.typ == "error" {
			h.t.Fatalf("after %s the SSE subscriber's stream ended: %v", after, ev.data)
		}
	}
	if m := nextMsg(h.t, h.mq.msgs, 10*time.Second); m.payload != want {
		h.t.Fatalf("after %s the MQTT subscriber got %q", after, m.payload)
	}
}

// closedWithin reads from c until the server closes it and returns what it
// sent and how long that took; it fails when the server keeps it open.
func closedWithin(t *testing.T, c net.Conn, d time.Duration) ([]byte, time.Duration) {
	t.Helper()
	start := time.Now()
	_ = c.SetReadDeadline(start.Add(d))
	b, err := io.ReadAll(c)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("the server kept the connection open for %v (sent %q)", d, b)
	}
	return b, time.Since(start)
}

func dialTCP(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// rawWS performs the WebSocket handshake on a TCP connection.
func rawWS(t *testing.T, n *node) (net.Conn, *bufio.Reader) {
	t.Helper()
	c := dialTCP(t, n.HTTP)
	_, _ = fmt.Fprintf(c, "GET /v1/ws HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n", n.HTTP)
	br := bufio.NewReader(c)
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("handshake: %v %v", resp, err)
	}
	return c, br
}

// serverClose reads raw server frames until a close frame and returns its code.
func serverClose(t *testing.T, br *bufio.Reader, c net.Conn, d time.Duration) (int, []byte) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(d))
	var ops []byte
	for {
		var hdr [2]byte
		if _, err := io.ReadFull(br, hdr[:]); err != nil {
			t.Fatalf("no close frame (frames %v): %v", ops, err)
		}
		n := int(hdr[1] & 0x7F)
		switch n {
		case 126:
			var b [2]byte
			_, _ = io.ReadFull(br, b[:])
			n = int(binary.BigEndian.Uint16(b[:]))
		case 127:
			var b [8]byte
			_, _ = io.ReadFull(br, b[:])
			n = int(binary.BigEndian.Uint64(b[:]))
		}
		payload := make([]byte, n)
		if _, err := io.ReadFull(br, payload); err != nil {
			t.Fatal(err)
		}
		ops = append(ops, hdr[0]&0x0F)
		if hdr[0]&0x0F == websocket.CloseMessage {
			if len(payload) < 2 {
				return 1005, ops
			}
			return int(binary.BigEndian.Uint16(payload)), ops
		}
	}
}

func mqttConnectPacket(version byte, id string) []byte {
	var body []byte
	body = append(body, 0, 4, 'M', 'Q', 'T', 'T', version, 0x02, 0, 30)
	if version == 5 {
		body = append(body, 0) // no properties
	}
	body = append(body, byte(len(id)>>8), byte(len(id)))
	body = append(body, id...)
	return append([]byte{0x10, byte(len(body))}, body...)
}

// mqttConnected dials the MQTT port and completes a CONNECT.
func mqttConnected(t *testing.T, n *node, version byte, id string) (net.Conn, *bufio.Reader) {
	t.Helper()
	c := dialTCP(t, n.MQTT)
	if _, err := c.Write(mqttConnectPacket(version, id)); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	first, err := br.ReadByte()
	if err != nil || first != 0x20 {
		t.Fatalf("no CONNACK: %#x %v", first, err)
	}
	l, _ := br.ReadByte()
	ack := make([]byte, l)
	if _, err := io.ReadFull(br, ack); err != nil || ack[1] != 0 {
		t.Fatalf("CONNACK %x %v", ack, err)
	}
	return c, br
}

// The bad-input matrix: for every protocol, malformed, truncated,
// oversized, invalid UTF-8 and binary input, connections that open and
// never speak, and slowloris clients each get a clear error or a clean
// close, within the configured bounds — while a healthy subscriber on
// each protocol keeps receiving after every case.
func TestBadInputMatrix(t *testing.T) {
	n := startKedge(t, "ws.ping.interval=500ms", "ws.pong.timeout=500ms", "http.handshake.timeout=1s",
		"mqtt.connect.timeout=1s", "ws.max.message.size=1KiB", "http.publish.max.payload=1KiB", "mqtt.max.packet.size=2KiB")
	h := newHealthy(t, n)
	base := "http://" + n.HTTP
	garbage := make([]byte, 4096)
	_, _ = rand.Read(garbage)

	cases := []struct {
		name string
		run  func(t *testing.T)
	}{
		// ---- WebSocket ----
		{"ws malformed JSON", func(t *testing.T) {
			c := dialWS(t, n.WS())
			c.sendRaw(`{"op":"subscribe","subjects":[`)
			if m := c.next(5 * time.Second); m["code"] != "invalid_json" {
				t.Fatalf("got %v", m)
			}
			c.expect("pong", c.send(map[string]any{"op": "ping"}))
		}},
		{"ws invalid UTF-8", func(t *testing.T) {
			c := dialWS(t, n.WS())
			if err := c.conn.WriteMessage(websocket.TextMessage, []byte("{\"op\":\"ping\",\"id\":\"\xff\xfe\"}")); err != nil {
				t.Fatal(err)
			}
			if m := c.next(5 * time.Second); m["code"] != "invalid_json" || !strings.Contains(m["message"].(string), "UTF-8") {
				t.Fatalf("got %v", m)
			}
		}},
		{"ws binary garbage", func(t *testing.T) {
			c := dialWS(t, n.WS())
			if err := c.conn.WriteMessage(websocket.BinaryMessage, garbage); err != nil {
				t.Fatal(err)
			}
			if m := c.next(5 * time.Second); m["code"] != "binary_frame" {
				t.Fatalf("got %v", m)
			}
		}},
		{"ws oversized frame", func(t *testing.T) {
			c := dialWS(t, n.WS())
			_ = c.conn.WriteMessage(websocket.TextMessage, bytes.Repeat([]byte("x"), 200<<10))
			if code := c.closeCode(5 * time.Second); code != 4501 && code != websocket.CloseMessageTooBig {
				t.Fatalf("close %d, want 4501", code)
			}
		}},
		{"ws oversized payload", func(t *testing.T) {
			c := dialWS(t, n.WS())
			id := c.send(map[string]any{"op": "publish", "subject": "/bad/big", "payload": strings.Repeat("x", 2048)})
			if m := c.expect("error", id); m["code"] != "payload_too_large" {
				t.Fatalf("got %v", m)
			}
		}},
		{"ws truncated frame", func(t *testing.T) {
			c, _ := rawWS(t, n)
			// A masked text frame announcing 100 bytes, 10 sent, then the client leaves.
			_, _ = c.Write(append([]byte{0x81, 0x80 | 100, 1, 2, 3, 4}, garbage[:10]...))
			_ = c.(*net.TCPConn).CloseWrite()
			closedWithin(t, c, 5*time.Second)
		}},
		{"ws upgrades and never speaks", func(t *testing.T) {
			c, br := rawWS(t, n)
			start := time.Now()
			code, ops := serverClose(t, br, c, 5*time.Second)
			if code != 4003 || time.Since(start) < 900*time.Millisecond {
				t.Fatalf("close %d after %v (frames %v), want 4003 after ping interval + pong timeout", code, time.Since(start), ops)
			}
		}},
		{"ws slowloris handshake", func(t *testing.T) {
			c := dialTCP(t, n.HTTP)
			_, _ = fmt.Fprintf(c, "GET /v1/ws HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\n", n.HTTP)
			if _, took := closedWithin(t, c, 5*time.Second); took < 900*time.Millisecond {
				t.Fatalf("closed after %v, before http.handshake.timeout", took)
			}
		}},
		// ---- SSE and HTTP ----
		{"sse invalid subject", func(t *testing.T) {
			if s := openSSE(t, base+"/v1/sse?subject=demo", nil); s.status != 400 || s.body["code"] != "invalid_subject" {
				t.Fatalf("%d %v", s.status, s.body)
			}
		}},
		{"sse invalid UTF-8 subject", func(t *testing.T) {
			if s := openSSE(t, base+"/v1/sse?subject=/bad/%ff%fe", nil); s.status != 400 || s.body["code"] != "invalid_subject" {
				t.Fatalf("%d %v", s.status, s.body)
			}
		}},
		{"sse malformed Last-Event-ID", func(t *testing.T) {
			s := openSSE(t, base+"/v1/sse?subject=/bad/x", http.Header{"Last-Event-ID": {"!!not-an-id"}})
			if s.status != 400 || s.body["code"] != "invalid_position" {
				t.Fatalf("%d %v", s.status, s.body)
			}
		}},
		{"sse oversized Last-Event-ID", func(t *testing.T) {
			s := openSSE(t, base+"/v1/sse?subject=/bad/x", http.Header{"Last-Event-ID": {strings.Repeat("A", 20000)}})
			if s.status != 400 || s.body["code"] != "invalid_position" {
				t.Fatalf("%d %v", s.status, s.body)
			}
		}},
		{"http publish malformed JSON", func(t *testing.T) {
			if status, body := postJSON(t, base+"/v1/publish", `{"subject":"/bad/x","payload":`); status != 400 || body["code"] != "invalid_json" {
				t.Fatalf("%d %v", status, body)
			}
		}},
		{"http publish invalid UTF-8", func(t *testing.T) {
			if status, body := postJSON(t, base+"/v1/publish", "{\"subject\":\"/bad/x\",\"payload\":\"\xff\"}"); status != 400 || body["code"] != "invalid_json" {
				t.Fatalf("%d %v", status, body)
			}
		}},
		{"http publish binary garbage", func(t *testing.T) {
			if status, body := postJSON(t, base+"/v1/publish", string(garbage[:512])); status != 400 || body["code"] != "invalid_json" {
				t.Fatalf("%d %v", status, body)
			}
		}},
		{"http publish oversized", func(t *testing.T) {
			status, body := postJSON(t, base+"/v1/publish", `{"subject":"/bad/x","payload":"`+strings.Repeat("x", 2048)+`"}`)
			if status != 413 || body["code"] != "payload_too_large" {
				t.Fatalf("%d %v", status, body)
			}
		}},
		{"http publish truncated body", func(t *testing.T) {
			c := dialTCP(t, n.HTTP)
			_, _ = fmt.Fprintf(c, "POST /v1/publish HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"subject\":\"/bad/x\"")
			_ = c.(*net.TCPConn).CloseWrite()
			b, _ := closedWithin(t, c, 5*time.Second)
			if !strings.HasPrefix(string(b), "HTTP/1.1 400") || !strings.Contains(string(b), `"code":"invalid_json"`) {
				t.Fatalf("answer %q", b)
			}
		}},
		{"http publish slowloris body", func(t *testing.T) {
			c := dialTCP(t, n.HTTP)
			_, _ = fmt.Fprintf(c, "POST /v1/publish HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"sub")
			b, took := closedWithin(t, c, 5*time.Second)
			if !strings.HasPrefix(string(b), "HTTP/1.1 408") || !strings.Contains(string(b), `"code":"request_timeout"`) || took < 900*time.Millisecond {
				t.Fatalf("after %v: %q", took, b)
			}
		}},
		{"http oversized headers", func(t *testing.T) {
			c := dialTCP(t, n.HTTP)
			go func() {
				_, _ = fmt.Fprintf(c, "GET /v1/sse?subject=/bad/x HTTP/1.1\r\nHost: x\r\nX-Big: %s\r\n\r\n", strings.Repeat("b", 2<<20))
			}()
			b, _ := closedWithin(t, c, 5*time.Second)
			if !strings.HasPrefix(string(b), "HTTP/1.1 431") {
				t.Fatalf("answer %.100q", b)
			}
		}},
		{"http binary garbage", func(t *testing.T) {
			c := dialTCP(t, n.HTTP)
			_, _ = c.Write(append(garbage[:200:200], "\r\n\r\n"...))
			if b, _ := closedWithin(t, c, 5*time.Second); !strings.HasPrefix(string(b), "HTTP/1.1 400") {
				t.Fatalf("answer %q", b)
			}
		}},
		// ---- MQTT ----
		{"mqtt binary garbage", func(t *testing.T) {
			c := dialTCP(t, n.MQTT)
			_, _ = c.Write(garbage)
			closedWithin(t, c, 5*time.Second)
		}},
		{"mqtt HTTP on the MQTT port", func(t *testing.T) {
			c := dialTCP(t, n.MQTT)
			_, _ = fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
			closedWithin(t, c, 5*time.Second)
		}},
		{"mqtt TLS ClientHello on the plain port", func(t *testing.T) {
			c := dialTCP(t, n.MQTT)
			_, _ = c.Write([]byte{0x16, 0x03, 0x01, 0x00, 0x40, 0x01, 0x00, 0x00, 0x3c, 0x03, 0x03})
			closedWithin(t, c, 5*time.Second)
		}},
		{"mqtt never speaks", func(t *testing.T) {
			c := dialTCP(t, n.MQTT)
			if _, took := closedWithin(t, c, 5*time.Second); took < 900*time.Millisecond {
				t.Fatalf("closed after %v, before mqtt.connect.timeout", took)
			}
		}},
		{"mqtt truncated CONNECT", func(t *testing.T) {
			c := dialTCP(t, n.MQTT)
			p := mqttConnectPacket(4, "truncated")
			_, _ = c.Write(p[:len(p)/2])
			if _, took := closedWithin(t, c, 5*time.Second); took < 900*time.Millisecond {
				t.Fatalf("closed after %v, before mqtt.connect.timeout", took)
			}
		}},
		{"mqtt oversized packet", func(t *testing.T) {
			c, _ := mqttConnected(t, n, 4, "big")
			// PUBLISH QoS 0, topic bad/x, a 4 KiB payload: remaining length 4103.
			pk := []byte{0x30, 0x87, 0x20, 0, 5, 'b', 'a', 'd', '/', 'x'}
			_, _ = c.Write(append(pk, bytes.Repeat([]byte("x"), 4096)...))
			closedWithin(t, c, 5*time.Second)
		}},
		{"mqtt invalid UTF-8 topic", func(t *testing.T) {
			c, _ := mqttConnected(t, n, 4, "utf8")
			_, _ = c.Write([]byte{0x30, 0x08, 0, 3, 'b', 0xff, 'x', 'h', 'i', '!'})
			closedWithin(t, c, 5*time.Second)
		}},
		{"mqtt malformed SUBSCRIBE", func(t *testing.T) {
			c, _ := mqttConnected(t, n, 5, "malformed")
			// MQTT 5 SUBSCRIBE whose filter has no options byte (mochi's decoder panics on it).
			_, _ = c.Write([]byte{0x82, 0x07, 0x00, 0x01, 0x00, 0x00, 0x02, 'd', 'e'})
			closedWithin(t, c, 5*time.Second)
		}},
		{"mqtt over WebSocket text frame", func(t *testing.T) {
			d := websocket.Dialer{Subprotocols: []string{"mqtt"}}
			ws, _, err := d.Dial(n.mqttWSURL(), nil)
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = ws.Close() }()
			_ = ws.WriteMessage(websocket.TextMessage, []byte("not mqtt"))
			_ = ws.SetReadDeadline(time.Now().Add(5 * time.Second))
			_, _, err = ws.ReadMessage()
			var ne net.Error
			if err == nil || errors.As(err, &ne) && ne.Timeout() {
				t.Fatalf("still open: %v", err)
			}
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			c.run(t)
			h.check(c.name)
		})
	}
	// The limits that ended some of them are counted.
	_, metrics := httpGet(base + "/metrics")
	for _, series := range []string{
		`kedge_limit_refusals_total{limit="handshake",protocol="http"}`,
		`kedge_limit_refusals_total{limit="handshake",protocol="mqtt"}`,
		`kedge_limit_refusals_total{limit="payload",protocol="ws"}`,
		`kedge_limit_refusals_total{limit="payload",protocol="http"}`,
		`kedge_limit_refusals_total{limit="payload",protocol="mqtt"}`,
		`kedge_mqtt_malformed_total`,
	} {
		if !hasPositive(metrics, series) {
			t.Errorf("metric %s is not positive:\n%s", series, grepLines(metrics, series[:strings.IndexAny(series+"{", "{")]))
		}
	}
}

func hasPositive(metrics, series string) bool {
	for _, l := range strings.Split(metrics, "\n") {
		if v, ok := strings.CutPrefix(l, series+" "); ok {
			return v != "0"
		}
	}
	return false
}

func grepLines(s, substr string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, substr) && !strings.HasPrefix(l, "#") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
