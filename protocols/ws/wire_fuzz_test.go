package ws

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// maskedFrame builds one client frame, masked, with the given first byte.
func maskedFrame(first byte, payload []byte) []byte {
	var b bytes.Buffer
	_ = writeMaskedFrame(&b, 0, payload)
	out := b.Bytes()
	out[0] = first
	return out
}

// wireSeeds are raw client byte streams after the handshake: valid frames,
// and every way a frame can be wrong.
func wireSeeds() [][]byte {
	text := func(s string) []byte { return maskedFrame(0x81, []byte(s)) }
	cat := func(fs ...[]byte) []byte { return bytes.Join(fs, nil) }
	huge := []byte{0x81, 0xFF}
	huge = binary.BigEndian.AppendUint64(huge, 1<<62)
	return [][]byte{
		text(`{"op":"ping","id":1}`),
		text(`{"op":"subscribe","id":1,"subjects":["/demo/k1","/demo/+"]}`),
		text(`{"op":"publish","id":2,"subject":"/demo/k1","payload":"x"}`),
		cat(maskedFrame(0x01, []byte(`{"op":"pi`)), maskedFrame(0x80, []byte(`ng"}`))), // fragmented text
		maskedFrame(0x80, []byte("continuation without a start")),
		maskedFrame(0x82, []byte{0, 1, 2, 0xff}),             // binary
		maskedFrame(0x81, []byte{0xff, 0xfe, 0xfd}),          // invalid UTF-8
		maskedFrame(0x89, []byte("ping")),                    // control ping
		maskedFrame(0x09, []byte("fragmented control")),      // control without FIN
		maskedFrame(0x89, bytes.Repeat([]byte("x"), 126)),    // control too long
		maskedFrame(0x88, []byte{0x03, 0xe8, 'b', 'y', 'e'}), // close 1000
		maskedFrame(0x88, []byte{0x00}),                      // close with a one-byte body
		maskedFrame(0x88, []byte{0x03, 0xe8, 0xff}),          // close reason not UTF-8
		maskedFrame(0xC1, []byte(`{"op":"ping"}`)),           // reserved bit (no extension)
		maskedFrame(0x83, []byte("reserved opcode")),         // opcode 3
		[]byte{0x81, 0x05, 'h', 'e', 'l', 'l', 'o'},          // unmasked client frame
		huge,               // a length no one can send
		{0x81, 0xFE, 0x00}, // truncated extended length
		{0x81},             // truncated header
		{},                 // nothing at all
		text(`{"op":"auth","token":"` + string(bytes.Repeat([]byte("a"), 300)) + `"}`), // an auth frame
		[]byte("GET / HTTP/1.1\r\n\r\n"),                                               // garbage
	}
}

// FuzzWireFrames feeds raw byte streams to a live connection after the
// WebSocket handshake — gorilla's frame decoding and kedge's request
// handling together — then the client goes away. Whatever the bytes, the
// server must not crash, every frame it sends must be a valid server
// frame (unmasked; a close frame with a defined code), and it must end the
// connection once the client has gone.
func FuzzWireFrames(f *testing.F) {
	for _, s := range wireSeeds() {
		f.Add(s)
	}
	h := newHarness(f, Config{MaxPayload: 1024, PingInterval: time.Hour})
	f.Fuzz(func(t *testing.T, data []byte) {
		nc, br := handshake(t, h.ts.Listener.Addr().String())
		defer func() { _ = nc.Close() }()
		// The server may close while we still write: that is fine.
		_, _ = nc.Write(data)
		_ = nc.(*net.TCPConn).CloseWrite()
		_ = nc.SetReadDeadline(time.Now().Add(5 * time.Second))
		for {
			op, payload, err := readRawFrame(br)
			if err != nil {
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					t.Fatalf("the server kept the connection open after the client left (input %q)", data)
				}
				if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, net.ErrClosed) &&
					!isReset(err) {
					t.Fatalf("reading the server's frames: %v", err)
				}
				return
			}
			switch op {
			case websocket.TextMessage, websocket.PongMessage, websocket.PingMessage:
			case websocket.CloseMessage:
				if len(payload) >= 2 {
					code := int(binary.BigEndian.Uint16(payload))
					if !validCloseCode(code) {
						t.Fatalf("close frame with code %d", code)
					}
				}
			default:
				t.Fatalf("server frame with opcode %d", op)
			}
		}
	})
}

// validCloseCode reports whether RFC 6455 lets an endpoint send code:
// the defined codes but 1004–1006 and 1015, and 3000–4999.
func validCloseCode(code int) bool {
	switch {
	case code >= 1000 && code <= 1003, code >= 1007 && code <= 1014, code >= 3000 && code <= 4999:
		return true
	}
	return false
}

// handshake upgrades a TCP connection to addr by hand.
func handshake(t *testing.T, addr string) (net.Conn, *bufio.Reader) {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = fmt.Fprintf(nc, "GET /v1/ws HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n", addr)
	br := bufio.NewReader(nc)
	_ = nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		_ = nc.Close()
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		_ = nc.Close()
		t.Fatalf("handshake: %s", resp.Status)
	}
	return nc, br
}

// isReset reports a connection reset or similar network error: the server
// may close while unread client bytes are pending.
func isReset(err error) bool {
	var oe *net.OpError
	return errors.As(err, &oe)
}
