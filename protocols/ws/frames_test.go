package ws

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/gorilla/websocket"

	"github.com/kedgehq/kedge/core"
	"github.com/kedgehq/kedge/protocols/internal/msgjson"
)

var frameSizes = []int{0, 1, 125, 126, 127, 65535, 65536, 70000}

func TestAppendFrameHeaderBytes(t *testing.T) {
	for _, n := range frameSizes {
		h := appendFrameHeader([]byte("prefix"), opText, n)
		if !bytes.HasPrefix(h, []byte("prefix")) {
			t.Fatalf("n=%d: prefix lost: %x", n, h)
		}
		h = h[len("prefix"):]
		if h[0] != 0x81 {
			t.Fatalf("n=%d: first byte %#x, want FIN|text 0x81", n, h[0])
		}
		if h[1]&0x80 != 0 {
			t.Fatalf("n=%d: server frame must not be masked", n)
		}
		var got uint64
		var want int
		switch {
		case n < 126:
			want, got = 2, uint64(h[1])
		case n <= 0xFFFF:
			want = 4
			if h[1] != 126 {
				t.Fatalf("n=%d: length byte %d, want 126", n, h[1])
			}
			got = uint64(binary.BigEndian.Uint16(h[2:]))
		default:
			want = 10
			if h[1] != 127 {
				t.Fatalf("n=%d: length byte %d, want 127", n, h[1])
			}
			got = binary.BigEndian.Uint64(h[2:])
		}
		if len(h) != want || got != uint64(n) {
			t.Fatalf("n=%d: header %x: %d bytes encoding length %d; want %d bytes", n, h, len(h), got, want)
		}
		if len(h) > maxHeader {
			t.Fatalf("n=%d: header longer than maxHeader", n)
		}
	}
}

// frameServer upgrades with gorilla and then writes the given raw frames
// itself, as the writer does; it returns the URL to dial.
func frameServer(t *testing.T, frames ...[]byte) string {
	t.Helper()
	done := make(chan struct{})
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer close(done)
		up := websocket.Upgrader{}
		ws, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer func() { _ = ws.Close() }()
		for _, f := range frames {
			if _, err := ws.NetConn().Write(f); err != nil {
				return
			}
		}
		// Wait for the client to finish reading and go away.
		_ = ws.SetReadDeadline(time.Now().Add(waitFor))
		for {
			if _, _, err := ws.ReadMessage(); err != nil {
				return
			}
		}
	}))
	t.Cleanup(func() {
		<-done
		ts.Close()
	})
	return "ws" + strings.TrimPrefix(ts.URL, "http")
}

func textOf(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = 'a' + byte(i%26)
	}
	return b
}

// Frames built both ways (appendFrameHeader + payload, and frame()) are read
// back by gorilla's client with the right length and content.
func TestFramesReadByGorilla(t *testing.T) {
	var frames [][]byte
	for _, n := range frameSizes {
		p := textOf(n)
		frames = append(frames, append(appendFrameHeader(nil, opText, n), p...))
		frames = append(frames, frame(opText, func(b []byte) []byte { return append(b, p...) }))
	}
	frames = append(frames,
		controlFrame(opPing, []byte("are you there")),
		controlFrame(opPong, []byte("unsolicited")),
		closeFrame(core.DisconnectSlow))
	url := frameServer(t, frames...)

	ws, resp, err := websocket.DefaultDialer.Dial(url, nil)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	defer func() { _ = ws.Close() }()
	var pings []string
	ws.SetPingHandler(func(d string) error { pings = append(pings, d); return nil })
	_ = ws.SetReadDeadline(time.Now().Add(waitFor))
	for i, n := range frameSizes {
		for _, how := range []string{"appendFrameHeader", "frame"} {
			typ, data, err := ws.ReadMessage()
			if err != nil {
				t.Fatalf("size %d via %s: %v", n, how, err)
			}
			if typ != websocket.TextMessage || !bytes.Equal(data, textOf(n)) {
				t.Fatalf("size %d via %s (#%d): got type %d, %d bytes", n, how, i, typ, len(data))
			}
		}
	}
	_, _, err = ws.ReadMessage()
	var ce *websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != core.DisconnectSlow.Code || ce.Text != core.DisconnectSlow.Reason {
		t.Fatalf("got %v, want close %v", err, core.DisconnectSlow)
	}
	if len(pings) != 1 || pings[0] != "are you there" {
		t.Fatalf("ping handler saw %q", pings)
	}
}

func TestCloseFrameLayout(t *testing.T) {
	op, p := parseFrame(t, closeFrame(core.DisconnectShutdown))
	if op != opClose || binary.BigEndian.Uint16(p) != 4000 || string(p[2:]) != core.DisconnectShutdown.Reason {
		t.Fatalf("close frame op %d payload %q", op, p)
	}
	op, p = parseFrame(t, closeFrame(core.Disconnect{Code: 4000, Reason: strings.Repeat("r", 300)}))
	if op != opClose || len(p) > 125 {
		t.Fatalf("close frame payload is %d bytes; control frames carry at most 125", len(p))
	}
}

// Regression, fixed: once closeFrame cuts a long reason at 120 bytes even inside a multi-byte
// character; RFC 6455 requires the reason to be UTF-8, and gorilla's client
// rejects the frame ("invalid utf8 payload in close frame").
func TestCloseFrameReasonStaysUTF8(t *testing.T) {
	_, p := parseFrame(t, closeFrame(core.Disconnect{Code: 4000, Reason: "a" + strings.Repeat("é", 100)}))
	if !utf8.Valid(p[2:]) {
		t.Fatalf("truncated close reason is not valid UTF-8: %q", p[2:])
	}
}

// decodeJSONFrame parses a complete text frame into a generic map.
func decodeJSONFrame(t *testing.T, f []byte) map[string]any {
	t.Helper()
	op, body := parseFrame(t, f)
	if op != opText {
		t.Fatalf("op %d, want text", op)
	}
	if !utf8.Valid(body) || !json.Valid(body) {
		t.Fatalf("frame body is not valid UTF-8 JSON: %q", body)
	}
	var m map[string]any
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if err := dec.Decode(&m); err != nil {
		t.Fatalf("%q: %v", body, err)
	}
	if dec.More() {
		t.Fatalf("%q: more than one value", body)
	}
	return m
}

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

func TestMessageFrameJSON(t *testing.T) {
	at := time.Date(2026, 11, 21, 20, 41, 11, 123456789, time.UTC)
	pos := core.Position{Epoch: 3, Partition: 2, Offset: 41}
	tricky := "quote\" backslash\\ nl\n cr\r tab\t nul\x00 unit\x1f del\x7f é ✓ 😀 \u2028\u2029 </script>"
	cases := []struct {
		name     string
		m        *core.Message
		snapshot bool
		want     map[string]any
	}{{
		name: "plain",
		m:    &core.Message{Subject: "/demo/k1", Payload: []byte("hello"), Pos: pos, Time: at},
		want: map[string]any{"op": "message", "subject": "/demo/k1", "payload": "hello", "position": "3-2-41",
			"snapshot": false, "time": "2026-11-21T20:41:11.123Z"},
	}, {
		name:     "snapshot",
		m:        &core.Message{Subject: "/demo/k1", Payload: []byte("hello"), Pos: pos, Time: at},
		snapshot: true,
		want: map[string]any{"op": "message", "subject": "/demo/k1", "payload": "hello", "position": "3-2-41",
			"snapshot": true, "time": "2026-11-21T20:41:11.123Z"},
	}, {
		name: "no time, empty payload, null key",
		m:    &core.Message{Subject: "/demo", Payload: nil, Pos: core.Position{}},
		want: map[string]any{"op": "message", "subject": "/demo", "payload": "", "position": "0-0-0", "snapshot": false},
	}, {
		name: "time in another zone is sent in UTC",
		m:    &core.Message{Subject: "/demo/k", Payload: []byte("x"), Pos: pos, Time: at.In(time.FixedZone("X", 5*3600))},
		want: map[string]any{"op": "message", "subject": "/demo/k", "payload": "x", "position": "3-2-41",
			"snapshot": false, "time": "2026-11-21T20:41:11.123Z"},
	}, {
		name: "text headers",
		m: &core.Message{Subject: "/demo/k1", Payload: []byte("p"), Pos: pos,
			Headers: []core.Header{{Key: "h", Value: []byte("v")}, {Key: "uni ✓", Value: []byte("é\"\n")}, {Key: "empty", Value: nil}}},
		want: map[string]any{"op": "message", "subject": "/demo/k1", "payload": "p", "position": "3-2-41", "snapshot": false,
			"headers": map[string]any{"h": "v", "uni ✓": "é\"\n", "empty": ""}},
	}, {
		name: "binary payload",
		m:    &core.Message{Subject: "/demo/k1", Payload: []byte{0xff, 0x00, 0xfe, 'a'}, Pos: pos},
		want: map[string]any{"op": "message", "subject": "/demo/k1", "payload_b64": b64([]byte{0xff, 0x00, 0xfe, 'a'}),
			"position": "3-2-41", "snapshot": false},
	}, {
		name: "binary header values",
		m: &core.Message{Subject: "/demo/k1", Payload: []byte("p"), Pos: pos,
			Headers: []core.Header{{Key: "txt", Value: []byte("v")}, {Key: "bin", Value: []byte{0xc3, 0x28}}, {Key: "bin2", Value: []byte{0xff}}}},
		want: map[string]any{"op": "message", "subject": "/demo/k1", "payload": "p", "position": "3-2-41", "snapshot": false,
			"headers":     map[string]any{"txt": "v"},
			"headers_b64": map[string]any{"bin": b64([]byte{0xc3, 0x28}), "bin2": b64([]byte{0xff})}},
	}, {
		name: "only binary headers",
		m: &core.Message{Subject: "/demo/k1", Payload: []byte("p"), Pos: pos,
			Headers: []core.Header{{Key: "bin", Value: []byte{0xff}}}},
		want: map[string]any{"op": "message", "subject": "/demo/k1", "payload": "p", "position": "3-2-41", "snapshot": false,
			"headers_b64": map[string]any{"bin": b64([]byte{0xff})}},
	}, {
		name: "control characters, quotes and unicode everywhere",
		m: &core.Message{Subject: "/demo/" + tricky, Payload: []byte(tricky), Pos: pos,
			Headers: []core.Header{{Key: tricky, Value: []byte(tricky)}}},
		want: map[string]any{"op": "message", "subject": "/demo/" + tricky, "payload": tricky, "position": "3-2-41",
			"snapshot": false, "headers": map[string]any{tricky: tricky}},
	}}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var f []byte
			if tc.snapshot {
				f = snapshotFrame(tc.m)
			} else {
				f = tc.m.Encoded(slot, encoder)
				if again := tc.m.Encoded(slot, encoder); &again[0] != &f[0] {
					t.Fatal("a message is encoded more than once")
				}
			}
			got := decodeJSONFrame(t, f)
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("frame %s\n got %#v\nwant %#v", f, got, tc.want)
			}
		})
	}
}

func TestReplyFramesJSON(t *testing.T) {
	pos := core.Position{Epoch: 1, Partition: 4, Offset: 99}
	cases := []struct {
		name string
		f    []byte
		want map[string]any
	}{
		{"ack with position", ackFrame([]byte("7"), &pos), map[string]any{"op": "ack", "id": json.Number("7"), "position": "1-4-99"}},
		{"ack without position", ackFrame([]byte("7"), nil), map[string]any{"op": "ack", "id": json.Number("7")}},
		{"ack without id", ackFrame(nil, nil), map[string]any{"op": "ack"}},
		{"ack string id", ackFrame([]byte(`"a\"b"`), nil), map[string]any{"op": "ack", "id": `a"b`}},
		{"error", errorFrame([]byte("3"), "invalid_subject", "/x\"y", "bad \"thing\"\n\x01"),
			map[string]any{"op": "error", "id": json.Number("3"), "code": "invalid_subject", "subject": "/x\"y", "message": "bad \"thing\"\n\x01"}},
		{"error without subject or id", errorFrame(nil, "invalid_json", "", "nope"),
			map[string]any{"op": "error", "code": "invalid_json", "message": "nope"}},
		{"error with invalid UTF-8", errorFrame([]byte("-1.5e3"), "invalid_subject", "/a\xff", "bad \xfe"),
			map[string]any{"op": "error", "id": json.Number("-1.5e3"), "code": "invalid_subject",
				"subject": `"/a\xff"`, "message": `"bad \xfe"`}},
		{"pong", pongFrame([]byte("4")), map[string]any{"op": "pong", "id": json.Number("4")}},
		{"pong without id", pongFrame(nil), map[string]any{"op": "pong"}},
	}
	for _, tc := range cases {
		got := decodeJSONFrame(t, tc.f)
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: frame %q\n got %#v\nwant %#v", tc.name, tc.f, got, tc.want)
		}
	}
}

// A message frame larger than 64 KiB gets the 8-byte length form and still
// decodes.
func TestLargeMessageFrame(t *testing.T) {
	p := bytes.Repeat([]byte("\"é\x01"), 40000)
	m := &core.Message{Subject: "/demo/big", Payload: p}
	got := decodeJSONFrame(t, encoder.Encode(m))
	if got["payload"] != string(p) {
		t.Fatal("large payload does not round-trip")
	}
}

func checkAppendString(t *testing.T, s string) {
	for _, how := range []string{"appendString", "appendStringBytes"} {
		var out []byte
		if how == "appendString" {
			out = appendString([]byte("x"), s)
		} else {
			out = msgjson.AppendString([]byte("x"), []byte(s))
		}
		if out[0] != 'x' {
			t.Fatalf("%s: prefix overwritten", how)
		}
		out = out[1:]
		if !json.Valid(out) {
			t.Fatalf("%s(%q) = %q: not valid JSON", how, s, out)
		}
		var got string
		if err := json.Unmarshal(out, &got); err != nil {
			t.Fatalf("%s(%q) = %q: %v", how, s, out, err)
		}
		if got != s {
			t.Fatalf("%s(%q) = %q decodes to %q", how, s, out, got)
		}
	}
}

func FuzzAppendString(f *testing.F) {
	for _, s := range []string{"", "plain", `"`, `\`, "\x00\x01\x1f\x7f", "\n\r\t\b\f", "é✓😀", "\u2028\u2029",
		"</script>&<>", `{"op":"x"}`, "\\u0000", "a\"b\\c\nd"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if !utf8.ValidString(s) {
			t.Skip("appendString requires valid UTF-8")
		}
		checkAppendString(t, s)
	})
}

// Every single byte below 0x80 (and so every control character) round-trips.
func TestAppendStringAllASCII(t *testing.T) {
	var all []byte
	for c := 0; c < 0x80; c++ {
		checkAppendString(t, string(rune(c)))
		all = append(all, byte(c))
	}
	checkAppendString(t, string(all))
}
