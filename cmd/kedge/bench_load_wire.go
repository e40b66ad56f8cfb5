package main

// The load generator's clients speak each protocol at the byte level, so
// that 1,000 subscribers receiving a million messages a second cost their
// process as little as possible: no JSON decoding, no per-message
// allocation, one read system call for many messages. Only what a load
// needs is implemented: subscribe, receive, publish, answer pings.

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// stampMark starts the publish timestamp inside every bench payload: "@@"
// and 19 digits of Unix nanoseconds, then padding to the payload size.
const stampMark = "@@"

// minPayload is the smallest payload that holds a timestamp.
const minPayload = len(stampMark) + 19 + 1

// appendPayload appends a bench payload of size bytes (at least minPayload)
// stamped with t.
func appendPayload(b []byte, size int, t time.Time) []byte {
	start := len(b)
	b = append(b, stampMark...)
	b = strconv.AppendInt(b, t.UnixNano(), 10)
	b = append(b, '|')
	for len(b)-start < size {
		b = append(b, 'x')
	}
	return b
}

// stampOf finds the timestamp in a delivered message (whatever the
// protocol's envelope around the payload) and returns it in Unix
// nanoseconds, or 0 when there is none.
func stampOf(msg []byte) int64 {
	i := bytes.Index(msg, []byte(stampMark))
	if i < 0 || len(msg) < i+2+19 {
		return 0
	}
	var n int64
	for _, c := range msg[i+2 : i+2+19] {
		if c < '0' || c > '9' {
			return 0
		}
		n = n*10 + int64(c-'0')
	}
	return n
}

// --- WebSocket (RFC 6455), client side ---

// wsDial opens a WebSocket connection with a plain HTTP/1.1 upgrade and
// returns it with the bytes read past the handshake response.
func wsDial(addr, path string, timeout time.Duration, header string) (net.Conn, []byte, error) {
	nc, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return nil, nil, err
	}
	_ = nc.SetDeadline(time.Now().Add(timeout))
	req := "GET " + path + " HTTP/1.1\r\nHost: " + addr + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n" + header + "\r\n"
	if _, err := io.WriteString(nc, req); err != nil {
		_ = nc.Close()
		return nil, nil, err
	}
	buf := make([]byte, 0, 1024)
	for {
		if i := bytes.Index(buf, []byte("\r\n\r\n")); i >= 0 {
			if !bytes.HasPrefix(buf, []byte("HTTP/1.1 101")) {
				_ = nc.Close()
				line, _, _ := strings.Cut(string(buf), "\r\n")
				return nil, nil, fmt.Errorf("websocket upgrade refused: %s", line)
			}
			_ = nc.SetDeadline(time.Time{})
			return nc, append([]byte(nil), buf[i+4:]...), nil
		}
		if len(buf) == cap(buf) {
			_ = nc.Close()
			return nil, nil, errors.New("websocket handshake response too long")
		}
		n, err := nc.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err != nil {
			_ = nc.Close()
			return nil, nil, err
		}
	}
}

// WebSocket opcodes the clients meet.
const (
	wsText   = 0x1
	wsBinary = 0x2
	wsClose  = 0x8
	wsPing   = 0x9
	wsPong   = 0xA
)

// appendClientFrame appends a masked, final client frame.
func appendClientFrame(b []byte, op byte, payload []byte) []byte {
	b = append(b, 0x80|op)
	n := len(payload)
	switch {
	case n < 126:
		b = append(b, 0x80|byte(n))
	case n <= 0xFFFF:
		b = binary.BigEndian.AppendUint16(append(b, 0x80|126), uint16(n))
	default:
		b = binary.BigEndian.AppendUint64(append(b, 0x80|127), uint64(n))
	}
	var key [4]byte
	binary.LittleEndian.PutUint32(key[:], rand.Uint32())
	b = append(b, key[:]...)
	start := len(b)
	b = append(b, payload...)
	for i := range payload {
		b[start+i] ^= key[i&3]
	}
	return b
}

// frameReader reads server frames (unmasked) from a connection with large
// reads; a returned payload is valid until the next call.
type frameReader struct {
	r    io.Reader
	buf  []byte
	head int // start of unread bytes
	tail int // end of read bytes
	// at is when the last read returned (Unix nanoseconds): the arrival
	// time of the messages it brought, read once per read, not per message.
	at int64
}

func newFrameReader(r io.Reader, leftover []byte, size int) *frameReader {
	fr := &frameReader{r: r, buf: make([]byte, max(size, len(leftover)))}
	fr.tail = copy(fr.buf, leftover)
	return fr
}

// fill makes at least n unread bytes available.
func (fr *frameReader) fill(n int) error {
	for fr.tail-fr.head < n {
		if fr.head > 0 && len(fr.buf)-fr.head < n {
			fr.tail = copy(fr.buf, fr.buf[fr.head:fr.tail])
			fr.head = 0
		}
		if len(fr.buf)-fr.head < n {
			nb := make([]byte, 2*n)
			fr.tail = copy(nb, fr.buf[fr.head:fr.tail])
			fr.buf, fr.head = nb, 0
		}
		m, err := fr.r.Read(fr.buf[fr.tail:])
		if m > 0 {
			fr.at = time.Now().UnixNano()
		}
		fr.tail += m
		if err != nil && fr.tail-fr.head < n {
			return err
		}
	}
	return nil
}

// next returns the next frame's opcode and payload.
func (fr *frameReader) next() (byte, []byte, error) {
	if err := fr.fill(2); err != nil {
		return 0, nil, err
	}
	b0, b1 := fr.buf[fr.head], fr.buf[fr.head+1]
	hdr, n := 2, int(b1&0x7F)
	switch n {
	case 126:
		hdr = 4
	case 127:
		hdr = 10
	}
	if b1&0x80 != 0 {
		return 0, nil, errors.New("masked server frame")
	}
	if err := fr.fill(hdr); err != nil {
		return 0, nil, err
	}
	switch hdr {
	case 4:
		n = int(binary.BigEndian.Uint16(fr.buf[fr.head+2:]))
	case 10:
		n = int(binary.BigEndian.Uint64(fr.buf[fr.head+2:]))
	}
	if n > 64<<20 {
		return 0, nil, fmt.Errorf("frame of %d bytes", n)
	}
	if err := fr.fill(hdr + n); err != nil {
		return 0, nil, err
	}
	p := fr.buf[fr.head+hdr : fr.head+hdr+n]
	fr.head += hdr + n
	return b0 & 0x0F, p, nil
}

// --- kedge's WebSocket protocol ---

// kedgeSubscribe is a subscribe request without snapshot.
func kedgeSubscribe(subject string) []byte {
	return []byte(`{"op":"subscribe","id":1,"snapshot":false,"subjects":[` + strconv.Quote(subject) + `]}`)
}

// appendKedgePublish appends a publish request (payload is ASCII).
func appendKedgePublish(b []byte, id int64, subject string, payload []byte) []byte {
	b = append(b, `{"op":"publish","id":`...)
	b = strconv.AppendInt(b, id, 10)
	b = append(b, `,"subject":`...)
	b = strconv.AppendQuote(b, subject)
	b = append(b, `,"payload":"`...)
	b = append(b, payload...)
	return append(b, `"}`...)
}

var (
	kedgeMessage = []byte(`{"op":"message"`)
	kedgeAck     = []byte(`{"op":"ack"`)
	kedgeError   = []byte(`{"op":"error"`)
)

// --- MQTT 3.1.1 ---

// MQTT packet types (high nibble of the first byte).
const (
	mqttConnect    = 1
	mqttConnack    = 2
	mqttPublish    = 3
	mqttPuback     = 4
	mqttSubscribe  = 8
	mqttSuback     = 9
	mqttPingreq    = 12
	mqttPingresp   = 13
	mqttDisconnect = 14
)

func appendVarintMQTT(b []byte, n int) []byte {
	for {
		c := byte(n & 0x7F)
		n >>= 7
		if n > 0 {
			c |= 0x80
		}
		b = append(b, c)
		if n == 0 {
			return b
		}
	}
}

func appendStr16(b []byte, s string) []byte {
	return append(binary.BigEndian.AppendUint16(b, uint16(len(s))), s...)
}

// mqttConnectPacket is an MQTT 3.1.1 CONNECT with a clean session.
func mqttConnectPacket(clientID string, keepalive uint16) []byte {
	var body []byte
	body = appendStr16(body, "MQTT")
	body = append(body, 4, 0x02) // level 4, clean session
	body = binary.BigEndian.AppendUint16(body, keepalive)
	body = appendStr16(body, clientID)
	return append(appendVarintMQTT([]byte{mqttConnect << 4}, len(body)), body...)
}

func mqttSubscribePacket(id uint16, topic string, qos byte) []byte {
	body := binary.BigEndian.AppendUint16(nil, id)
	body = append(appendStr16(body, topic), qos)
	return append(appendVarintMQTT([]byte{mqttSubscribe<<4 | 0x02}, len(body)), body...)
}

// appendMQTTPublish appends a PUBLISH; id is used at QoS 1.
func appendMQTTPublish(b []byte, topic string, payload []byte, qos byte, id uint16) []byte {
	rem := 2 + len(topic) + len(payload)
	if qos > 0 {
		rem += 2
	}
	b = appendVarintMQTT(append(b, mqttPublish<<4|qos<<1), rem)
	b = appendStr16(b, topic)
	if qos > 0 {
		b = binary.BigEndian.AppendUint16(b, id)
	}
	return append(b, payload...)
}

// packetReader reads MQTT packets with large reads; a returned body is valid
// until the next call.
type packetReader struct{ frameReader }

func newPacketReader(r io.Reader, size int) *packetReader {
	return &packetReader{frameReader{r: r, buf: make([]byte, size)}}
}

// next returns the packet's first byte and its body (after the remaining length).
func (pr *packetReader) next() (byte, []byte, error) {
	fr := &pr.frameReader
	n, shift, hdr := 0, 0, 1
	for {
		if err := fr.fill(hdr + 1); err != nil {
			return 0, nil, err
		}
		c := fr.buf[fr.head+hdr]
		n |= int(c&0x7F) << shift
		hdr++
		if c&0x80 == 0 {
			break
		}
		if shift += 7; shift > 21 {
			return 0, nil, errors.New("malformed remaining length")
		}
	}
	if err := fr.fill(hdr + n); err != nil {
		return 0, nil, err
	}
	first := fr.buf[fr.head]
	body := fr.buf[fr.head+hdr : fr.head+hdr+n]
	fr.head += hdr + n
	return first, body, nil
}

// --- NATS client protocol (over WebSocket) ---

// natsParser splits the byte stream of a NATS server into MSG payloads,
// PINGs and errors, across frame boundaries.
type natsParser struct {
	pend []byte
}

// feed parses data; onMsg gets each message's payload, onPing each PING.
func (np *natsParser) feed(data []byte, onMsg func([]byte), onPing func()) error {
	buf := data
	if len(np.pend) > 0 {
		np.pend = append(np.pend, data...)
		buf = np.pend
	}
	rest, err := np.parse(buf, onMsg, onPing)
	if err != nil {
		return err
	}
	np.pend = append(np.pend[:0], rest...)
	return nil
}

func (np *natsParser) parse(buf []byte, onMsg func([]byte), onPing func()) ([]byte, error) {
	for len(buf) > 0 {
		eol := bytes.Index(buf, []byte("\r\n"))
		if eol < 0 {
			return buf, nil
		}
		line := buf[:eol]
		switch {
		case bytes.HasPrefix(line, []byte("MSG ")):
			sp := bytes.LastIndexByte(line, ' ')
			n, err := strconv.Atoi(string(line[sp+1:]))
			if err != nil {
				return nil, fmt.Errorf("bad MSG line %q", line)
			}
			if len(buf) < eol+2+n+2 {
				return buf, nil
			}
			onMsg(buf[eol+2 : eol+2+n])
			buf = buf[eol+2+n+2:]
			continue
		case bytes.Equal(line, []byte("PING")):
			onPing()
		case bytes.HasPrefix(line, []byte("-ERR")):
			return nil, fmt.Errorf("nats: %s", line)
		}
		buf = buf[eol+2:]
	}
	return buf, nil
}

// --- Server-Sent Events ---

// sseDial opens an event stream and returns a reader of its body (chunked
// transfer decoded by net/http).
func sseDial(addr, path string, timeout time.Duration) (net.Conn, *bufio.Reader, error) {
	nc, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return nil, nil, err
	}
	_ = nc.SetDeadline(time.Now().Add(timeout))
	req := "GET " + path + " HTTP/1.1\r\nHost: " + addr + "\r\nAccept: text/event-stream\r\n\r\n"
	if _, err := io.WriteString(nc, req); err != nil {
		_ = nc.Close()
		return nil, nil, err
	}
	br := bufio.NewReaderSize(nc, 4096)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		_ = nc.Close()
		return nil, nil, err
	}
	if resp.StatusCode != http.StatusOK {
		_ = nc.Close()
		return nil, nil, fmt.Errorf("event stream refused: %s", resp.Status)
	}
	_ = nc.SetDeadline(time.Time{})
	return nc, bufio.NewReaderSize(resp.Body, 32<<10), nil
}
