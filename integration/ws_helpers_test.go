package integration

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

var httpClient = &http.Client{Timeout: 10 * time.Second}

// wsClient is a raw protocol client: it sends request objects and reads
// server frames as maps, so tests see exactly what is on the wire.
type wsClient struct {
	t      testing.TB
	conn   *websocket.Conn
	frames chan map[string]any
	closed chan struct{}
	err    error
	nextID int
}

func dialWS(t testing.TB, url string) *wsClient {
	t.Helper()
	conn, _, err := websocket.DefaultDialer.Dial(url, nil)
	if err != nil {
		t.Fatalf("dial %s: %v", url, err)
	}
	c := &wsClient{t: t, conn: conn, frames: make(chan map[string]any, 100000), closed: make(chan struct{})}
	go c.read()
	t.Cleanup(func() { _ = conn.Close() })
	return c
}

func (c *wsClient) read() {
	defer close(c.closed)
	for {
		_, data, err := c.conn.ReadMessage()
		if err != nil {
			c.err = err
			return
		}
		var m map[string]any
		if err := json.Unmarshal(data, &m); err != nil {
			c.err = fmt.Errorf("server sent invalid JSON %q: %w", data, err)
			return
		}
		c.frames <- m
	}
}

// send writes a request; an "id" is added when missing and returned.
func (c *wsClient) send(req map[string]any) float64 {
	c.t.Helper()
	if _, ok := req["id"]; !ok {
		c.nextID++
		req["id"] = c.nextID
	}
	b, _ := json.Marshal(req)
	if err := c.conn.WriteMessage(websocket.TextMessage, b); err != nil {
		c.t.Fatalf("write: %v", err)
	}
	id, _ := req["id"].(int)
	return float64(id)
}

func (c *wsClient) sendRaw(data string) {
	c.t.Helper()
	if err := c.conn.WriteMessage(websocket.TextMessage, []byte(data)); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

// next returns the next frame, failing after d. Cursor frames (the start
// cursor of a subscription made before its topic existed) are skipped:
// tests that care read them with nextRaw.
func (c *wsClient) next(d time.Duration) map[string]any {
	c.t.Helper()
	for {
		m := c.nextRaw(d)
		if m["op"] != "cursor" {
			return m
		}
	}
}

// nextRaw returns the next frame, whatever it is, failing after d.
func (c *wsClient) nextRaw(d time.Duration) map[string]any {
	c.t.Helper()
	select {
	case m := <-c.frames:
		return m
	case <-c.closed:
		select {
		case m := <-c.frames:
			return m
		default:
		}
		c.t.Fatalf("connection closed: %v", c.err)
	case <-time.After(d):
		c.t.Fatalf("no frame within %v", d)
	}
	return nil
}

// expect returns the next frame and checks its op (and id when non-zero).
func (c *wsClient) expect(op string, id float64) map[string]any {
	c.t.Helper()
	m := c.next(10 * time.Second)
	if m["op"] != op || (id != 0 && m["id"] != id) {
		c.t.Fatalf("want op %q id %v, got %v", op, id, m)
	}
	return m
}

// ackAndMessage reads the ack of publish id and the message with payload
// coming back from Kafka, which a subscriber of the subject gets in either
// order: the producer's answer and the consumer's fetch race.
func (c *wsClient) ackAndMessage(id float64, payload string) (ack, msg map[string]any) {
	c.t.Helper()
	for ack == nil || msg == nil {
		m := c.next(10 * time.Second)
		switch {
		case ack == nil && m["op"] == "ack" && m["id"] == id:
			ack = m
		case msg == nil && m["op"] == "message" && m["payload"] == payload:
			msg = m
		default:
			c.t.Fatalf("want the ack of publish %v and message %q, got %v", id, payload, m)
		}
	}
	return ack, msg
}

// quiet asserts no frame arrives within d.
func (c *wsClient) quiet(d time.Duration) {
	c.t.Helper()
	select {
	case m := <-c.frames:
		c.t.Fatalf("unexpected frame %v", m)
	case <-time.After(d):
	}
}

// subscribe subscribes and waits for the ack.
func (c *wsClient) subscribe(subjects ...string) {
	c.t.Helper()
	id := c.send(map[string]any{"op": "subscribe", "subjects": subjects})
	c.expect("ack", id)
}

// closeCode waits for the server to close the connection and returns the code.
func (c *wsClient) closeCode(d time.Duration) int {
	c.t.Helper()
	select {
	case <-c.closed:
	case <-time.After(d):
		c.t.Fatalf("connection not closed within %v", d)
	}
	var ce *websocket.CloseError
	if errors.As(c.err, &ce) {
		return ce.Code
	}
	c.t.Fatalf("closed without a close frame: %v", c.err)
	return 0
}
