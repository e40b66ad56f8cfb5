package client

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/gorilla/websocket"
)

// Message is one message received on a subscription.
type Message struct {
	Subject string
	// Payload holds the value whether kedge sent it as text or base64.
	Payload  []byte
	Position string
	// Snapshot marks the latest cached message sent on subscribe.
	Snapshot bool
	Time     time.Time
	Headers  map[string]string
	// HeadersB64 holds headers whose values are not UTF-8, base64 encoded.
	HeadersB64 map[string]string
}

// frame is any server frame.
type frame struct {
	Op         string            `json:"op"`
	ID         json.RawMessage   `json:"id"`
	Position   string            `json:"position"`
	Cursors    map[string]string `json:"cursors"`
	Cursor     string            `json:"cursor"`
	Reason     string            `json:"reason"`
	Code       string            `json:"code"`
	Message    string            `json:"message"`
	Subject    string            `json:"subject"`
	Payload    *string           `json:"payload"`
	PayloadB64 string            `json:"payload_b64"`
	Snapshot   bool              `json:"snapshot"`
	Time       time.Time         `json:"time"`
	Headers    map[string]string `json:"headers"`
	HeadersB64 map[string]string `json:"headers_b64"`
}

func (f *frame) message() (Message, error) {
	m := Message{Subject: f.Subject, Position: f.Position, Snapshot: f.Snapshot, Time: f.Time,
		Headers: f.Headers, HeadersB64: f.HeadersB64}
	if f.Payload != nil {
		m.Payload = []byte(*f.Payload)
		return m, nil
	}
	p, err := base64.StdEncoding.DecodeString(f.PayloadB64)
	m.Payload = p
	return m, err
}

func (f *frame) err() *Error { return &Error{Code: f.Code, Subject: f.Subject, Message: f.Message} }

// readLoop reads frames until the connection ends, and says why.
func (c *Client) readLoop(conn *websocket.Conn) error {
	for {
		_, data, err := conn.ReadMessage()
		if err != nil {
			var ce *websocket.CloseError
			if errors.As(err, &ce) {
				return &CloseError{Code: ce.Code, Reason: ce.Text}
			}
			return err
		}
		var f frame
		if err := json.Unmarshal(data, &f); err != nil {
			c.opts.Logger.Warn("kedge client: unreadable frame", "err", err)
			continue
		}
		c.route(&f)
	}
}

// route hands a frame to whoever waits for it.
func (c *Client) route(f *frame) {
	switch f.Op {
	case "message":
		c.onMessage(f)
	case "reset":
		c.onReset(f)
	case "cursor":
		c.onCursor(f)
	case "ack", "error", "pong":
		id, err := strconv.ParseInt(string(f.ID), 10, 64)
		if err != nil {
			return
		}
		c.mu.Lock()
		cl := c.pending[id]
		delete(c.pending, id)
		c.mu.Unlock()
		if cl != nil {
			cl.reply <- *f
		}
	}
}

// send writes a request and registers it for its reply; while disconnected
// a publish is queued (bounded) and sent on the next connection.
func (c *Client) send(cl *call) error {
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		return c.err
	}
	conn := c.conn
	if conn == nil {
		defer c.mu.Unlock()
		if cl.req["op"] != "publish" {
			return ErrNotConnected
		}
		if len(c.queue) >= c.opts.MaxQueue {
			return ErrQueueFull
		}
		c.queue = append(c.queue, cl)
		return nil
	}
	c.nextID++
	id := c.nextID
	c.pending[id] = cl
	c.mu.Unlock()
	cl.req["id"] = id
	b, err := json.Marshal(cl.req)
	if err != nil {
		return err
	}
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	_ = conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if err := conn.WriteMessage(websocket.TextMessage, b); err != nil {
		// The read loop sees the broken connection too and fails the call.
		c.opts.Logger.Debug("kedge client: write failed", "err", err)
	}
	return nil
}

func newCall(req map[string]any) *call {
	return &call{req: req, reply: make(chan frame, 1)}
}

// payloadFields sets "payload" for UTF-8 text and "payload_b64" otherwise.
func payloadFields(req map[string]any, payload []byte) {
	if utf8.Valid(payload) {
		req["payload"] = string(payload)
	} else {
		req["payload_b64"] = base64.StdEncoding.EncodeToString(payload)
	}
}
