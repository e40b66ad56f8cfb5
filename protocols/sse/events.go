package sse

import (
	"encoding/base64"
	"strconv"
	"unicode/utf8"

	"github.com/kedgehq/kedge/core"
)

// Event types (the "event:" field).
const (
	evReady    = "ready"
	evMessage  = "message"
	evSnapshot = "snapshot"
	evReset    = "reset"
	evError    = "error"
)

// messageEncoder encodes the part of a live message event that every SSE
// connection shares — "event: message\ndata: {…}\n\n" — once per message.
// Each connection puts its own "id: …\n" before it.
type messageEncoder struct{}

var (
	slot    = core.NewEncodingSlot()
	encoder messageEncoder
)

func (messageEncoder) Encode(m *core.Message) []byte { return messageEvent(m, false) }

// messageEvent encodes a message event without its id line.
func messageEvent(m *core.Message, snapshot bool) []byte {
	b := make([]byte, 0, 96+len(m.Subject)+len(m.Payload))
	if snapshot {
		b = append(b, "event: "+evSnapshot+"\ndata: "...)
	} else {
		b = append(b, "event: "+evMessage+"\ndata: "...)
	}
	b = appendMessageJSON(b, m, snapshot)
	return append(b, '\n', '\n')
}

// appendMessageJSON writes the message object: the fields of the WebSocket
// "message" frame (docs/protocol-ws.md) without "op". It never contains a
// raw newline, so it is one "data:" line.
func appendMessageJSON(b []byte, m *core.Message, snapshot bool) []byte {
	b = append(b, `{"subject":`...)
	b = appendString(b, m.Subject)
	b = appendPayload(b, m.Payload)
	b = append(b, `,"position":"`...)
	b = m.Pos.AppendTo(b)
	b = append(b, `","snapshot":`...)
	b = strconv.AppendBool(b, snapshot)
	if !m.Time.IsZero() {
		b = append(b, `,"time":"`...)
		b = m.Time.UTC().AppendFormat(b, "2006-01-02T15:04:05.000Z07:00")
		b = append(b, '"')
	}
	b = appendHeaders(b, m.Headers)
	return append(b, '}')
}

// simpleEvent encodes an event of the given type whose data is one JSON
// object, without an id line.
func simpleEvent(typ string, data []byte) []byte {
	b := make([]byte, 0, len(typ)+len(data)+16)
	b = append(b, "event: "...)
	b = append(b, typ...)
	b = append(b, "\ndata: "...)
	b = append(b, data...)
	return append(b, '\n', '\n')
}

// readyData is the data of the first event of a stream.
func readyData(names []string, resumed bool) []byte {
	b := []byte(`{"subjects":[`)
	for i, n := range names {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, n)
	}
	b = append(b, `],"resumed":`...)
	b = strconv.AppendBool(b, resumed)
	return append(b, '}')
}

func resetData(subject, reason string) []byte {
	b := []byte(`{"subject":`)
	b = appendString(b, subject)
	b = append(b, `,"reason":`...)
	b = appendString(b, validUTF8(reason))
	return append(b, '}')
}

// errorEventData describes why the server ends a stream.
func errorEventData(d core.Disconnect) []byte {
	b := []byte(`{"code":`)
	b = appendString(b, disconnectCode(d))
	b = append(b, `,"message":`...)
	b = appendString(b, validUTF8(d.Reason))
	b = append(b, `,"reconnect":`...)
	b = strconv.AppendBool(b, d.Reconnect())
	return append(b, '}')
}

// disconnectCode names a disconnect reason in an error event.
func disconnectCode(d core.Disconnect) string {
	switch d.Code {
	case core.DisconnectShutdown.Code:
		return "shutting_down"
	case core.DisconnectSlow.Code:
		return "slow_consumer"
	case core.DisconnectInsufficient.Code:
		return "insufficient_state"
	case core.DisconnectUnauthorized.Code:
		return "unauthorized"
	case core.DisconnectBadRequest.Code:
		return "bad_request"
	}
	return "internal"
}

// appendPayload writes "payload" for UTF-8 text and "payload_b64" otherwise.
func appendPayload(b, p []byte) []byte {
	if utf8.Valid(p) {
		b = append(b, `,"payload":`...)
		return appendString(b, string(p))
	}
	b = append(b, `,"payload_b64":"`...)
	b = base64.StdEncoding.AppendEncode(b, p)
	return append(b, '"')
}

// appendHeaders writes UTF-8 headers in "headers" and the others, values
// base64 encoded, in "headers_b64", as the WebSocket protocol does. A
// repeated name keeps its last value.
func appendHeaders(b []byte, hs []core.Header) []byte {
	var sawBinary bool
	b = appendHeaderObject(b, hs, `,"headers":{`, true, &sawBinary)
	if sawBinary {
		b = appendHeaderObject(b, hs, `,"headers_b64":{`, false, nil)
	}
	return b
}

func appendHeaderObject(b []byte, hs []core.Header, open string, text bool, sawBinary *bool) []byte {
	first := true
	for _, h := range hs {
		isText := utf8.Valid(h.Value) && utf8.ValidString(h.Key)
		if !isText && sawBinary != nil {
			*sawBinary = true
		}
		if isText != text || (!text && !utf8.ValidString(h.Key)) {
			continue
		}
		if first {
			b = append(b, open...)
			first = false
		} else {
			b = append(b, ',')
		}
		b = appendString(b, h.Key)
		b = append(b, ':')
		if text {
			b = appendString(b, string(h.Value))
		} else {
			b = append(b, '"')
			b = base64.StdEncoding.AppendEncode(b, h.Value)
			b = append(b, '"')
		}
	}
	if !first {
		b = append(b, '}')
	}
	return b
}

const hexDigits = "0123456789abcdef"

// appendString appends s, valid UTF-8, as a JSON string. U+2028 and U+2029
// are escaped too, so the data is also valid JavaScript.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' && c != 0xE2 {
			continue
		}
		if c == 0xE2 { // U+2028 and U+2029 are E2 80 A8 / E2 80 A9
			if i+2 < len(s) && s[i+1] == 0x80 && (s[i+2] == 0xA8 || s[i+2] == 0xA9) {
				b = append(b, s[start:i]...)
				b = append(b, `\u202`...)
				b = append(b, hexDigits[s[i+2]-0xA0])
				i += 2
				start = i + 1
			}
			continue
		}
		b = append(b, s[start:i]...)
		switch c {
		case '"', '\\':
			b = append(b, '\\', c)
		case '\n':
			b = append(b, '\\', 'n')
		case '\r':
			b = append(b, '\\', 'r')
		case '\t':
			b = append(b, '\\', 't')
		default:
			b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
		}
		start = i + 1
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// validUTF8 returns s, or s quoted in ASCII when it is not valid UTF-8.
func validUTF8(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	return strconv.QuoteToASCII(s)
}
