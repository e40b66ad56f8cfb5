// Package msgjson writes the JSON of kedge's message object, shared by the
// WebSocket "message" frame and the SSE message event (docs/protocol-ws.md):
// hand-written appends, so a message is encoded without reflection and
// without allocating beyond the buffer it grows.
package msgjson

import (
	"encoding/base64"
	"strconv"
	"unicode/utf8"

	"github.com/kedgehq/kedge/core"
)

// AppendMessage appends the message object. open starts it: `{` for SSE,
// `{"op":"message",` for WebSocket.
func AppendMessage(b []byte, open string, m *core.Message, snapshot bool) []byte {
	b = append(b, open...)
	b = append(b, `"subject":`...)
	b = AppendString(b, m.Subject)
	b = AppendPayload(b, m.Payload)
	b = append(b, `,"position":"`...)
	b = m.Pos.AppendTo(b)
	b = append(b, `","snapshot":`...)
	b = strconv.AppendBool(b, snapshot)
	if !m.Time.IsZero() {
		b = append(b, `,"time":"`...)
		b = m.Time.UTC().AppendFormat(b, "2006-01-02T15:04:05.000Z07:00")
		b = append(b, '"')
	}
	b = AppendHeaders(b, m.Headers)
	return append(b, '}')
}

// AppendPayload writes "payload" for UTF-8 text and "payload_b64" otherwise.
func AppendPayload(b, p []byte) []byte {
	if utf8.Valid(p) {
		b = append(b, `,"payload":`...)
		return AppendString(b, p)
	}
	b = append(b, `,"payload_b64":"`...)
	b = base64.StdEncoding.AppendEncode(b, p)
	return append(b, '"')
}

// AppendHeaders writes headers with UTF-8 names and values in "headers" and
// the others, values base64 encoded, in "headers_b64". A repeated name keeps
// its last value.
func AppendHeaders(b []byte, hs []core.Header) []byte {
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
		b = AppendString(b, h.Key)
		b = append(b, ':')
		if text {
			b = AppendString(b, h.Value)
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

// AppendString appends s, valid UTF-8, as a JSON string. U+2028 and U+2029
// are escaped too, so the result is also valid JavaScript, and no raw
// newline is ever written (an SSE data line stays one line).
func AppendString[T string | []byte](b []byte, s T) []byte {
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

// ValidUTF8 returns s, or s quoted in ASCII when it is not valid UTF-8.
func ValidUTF8(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	return strconv.QuoteToASCII(s)
}
