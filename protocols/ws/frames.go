package ws

import (
	"encoding/binary"
	"maps"
	"slices"
	"unicode/utf8"

	"github.com/kedgehq/kedge/core"
	"github.com/kedgehq/kedge/protocols/internal/msgjson"
)

// WebSocket opcodes (RFC 6455 §5.2).
const (
	opText  = 0x1
	opClose = 0x8
	opPing  = 0x9
	opPong  = 0xA
)

// maxHeader is the longest server frame header: 2 bytes + 8 of length.
const maxHeader = 10

// appendFrameHeader appends an unmasked, final frame header.
func appendFrameHeader(b []byte, op byte, n int) []byte {
	b = append(b, 0x80|op)
	switch {
	case n < 126:
		return append(b, byte(n))
	case n <= 0xFFFF:
		return binary.BigEndian.AppendUint16(append(b, 126), uint16(n))
	}
	return binary.BigEndian.AppendUint64(append(b, 127), uint64(n))
}

// frame wraps a payload built after a reserved header space into a complete
// frame: build writes the body after maxHeader bytes, and frame moves the
// header into place so that the result is one contiguous slice.
func frame(op byte, build func([]byte) []byte) []byte {
	buf := build(make([]byte, maxHeader, 256))
	n := len(buf) - maxHeader
	hdr := appendFrameHeader(make([]byte, 0, maxHeader), op, n)
	start := maxHeader - len(hdr)
	copy(buf[start:], hdr)
	return buf[start:]
}

func controlFrame(op byte, payload []byte) []byte {
	return append(appendFrameHeader(nil, op, len(payload)), payload...)
}

func closeFrame(d core.Disconnect) []byte {
	reason := d.Reason
	if len(reason) > 120 { // a control frame's payload is at most 125 bytes
		cut := 120
		for cut > 0 && !utf8.RuneStart(reason[cut]) {
			cut-- // never split a character
		}
		reason = reason[:cut]
	}
	p := binary.BigEndian.AppendUint16(nil, uint16(d.Code))
	return controlFrame(opClose, append(p, reason...))
}

// messageEncoder encodes the live (non-snapshot) message frame, once per
// message, into the slot all WebSocket connections share.
type messageEncoder struct{}

var (
	slot    = core.NewEncodingSlot()
	encoder messageEncoder
)

func (messageEncoder) Encode(m *core.Message) []byte {
	return frame(opText, func(b []byte) []byte { return appendMessage(b, m, false) })
}

// snapshotFrame encodes a message marked as a snapshot (not shared: rare).
func snapshotFrame(m *core.Message) []byte {
	return frame(opText, func(b []byte) []byte { return appendMessage(b, m, true) })
}

// appendMessage writes the JSON "message" object of docs/protocol-ws.md.
func appendMessage(b []byte, m *core.Message, snapshot bool) []byte {
	return msgjson.AppendMessage(b, `{"op":"message",`, m, snapshot)
}

// appendString appends a valid UTF-8 string as a JSON string.
func appendString(b []byte, s string) []byte { return msgjson.AppendString(b, s) }

// ackFrame, errorFrame and pongFrame are the replies of
// docs/protocol-ws.md; id is the client's request id as raw JSON.
func ackFrame(id []byte, pos *core.Position) []byte {
	return frame(opText, func(b []byte) []byte {
		b = append(b, `{"op":"ack"`...)
		b = appendID(b, id)
		if pos != nil {
			b = append(b, `,"position":"`...)
			b = pos.AppendTo(b)
			b = append(b, '"')
		}
		return append(b, '}')
	})
}

// subscribeAckFrame is a subscribe's ack, with the cursor each new
// subscription starts from (for resuming it later).
func subscribeAckFrame(id []byte, cursors map[string]string) []byte {
	return frame(opText, func(b []byte) []byte {
		b = append(b, `{"op":"ack"`...)
		b = appendID(b, id)
		if len(cursors) > 0 {
			b = append(b, `,"cursors":{`...)
			for i, name := range slices.Sorted(maps.Keys(cursors)) {
				if i > 0 {
					b = append(b, ',')
				}
				b = appendString(b, name)
				b = append(b, ':')
				b = appendString(b, cursors[name])
			}
			b = append(b, '}')
		}
		return append(b, '}')
	})
}

// resetFrame tells the client a subscription's history could not be recovered.
// cursor, when known, is where the subscription continues from: the client
// replaces its cursor with it.
func resetFrame(subject, reason, cursor string) []byte {
	return frame(opText, func(b []byte) []byte {
		b = append(b, `{"op":"reset","subject":`...)
		b = appendString(b, subject)
		b = append(b, `,"reason":`...)
		b = appendString(b, msgjson.ValidUTF8(reason))
		if cursor != "" {
			b = append(b, `,"cursor":`...)
			b = appendString(b, cursor)
		}
		return append(b, '}')
	})
}

// cursorFrame gives a subscription the cursor it starts from, when its ack
// could not (its topic did not exist yet).
func cursorFrame(subject, cursor string) []byte {
	return frame(opText, func(b []byte) []byte {
		b = append(b, `{"op":"cursor","subject":`...)
		b = appendString(b, subject)
		b = append(b, `,"cursor":`...)
		b = appendString(b, cursor)
		return append(b, '}')
	})
}

func errorFrame(id []byte, code, subject, msg string) []byte {
	return frame(opText, func(b []byte) []byte {
		b = append(b, `{"op":"error"`...)
		b = appendID(b, id)
		b = append(b, `,"code":`...)
		b = appendString(b, code)
		if subject != "" {
			b = append(b, `,"subject":`...)
			b = appendString(b, msgjson.ValidUTF8(subject))
		}
		b = append(b, `,"message":`...)
		b = appendString(b, msgjson.ValidUTF8(msg))
		return append(b, '}')
	})
}

func pongFrame(id []byte) []byte {
	return frame(opText, func(b []byte) []byte {
		b = append(b, `{"op":"pong"`...)
		b = appendID(b, id)
		return append(b, '}')
	})
}

func appendID(b, id []byte) []byte {
	if len(id) == 0 {
		return b
	}
	b = append(b, `,"id":`...)
	return append(b, id...)
}
