package sse

import (
	"strconv"

	"github.com/kedgehq/kedge/core"
	"github.com/kedgehq/kedge/protocols/internal/msgjson"
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
	return msgjson.AppendMessage(b, "{", m, snapshot)
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

// appendString appends a valid UTF-8 string as a JSON string.
func appendString(b []byte, s string) []byte { return msgjson.AppendString(b, s) }

// validUTF8 returns s, or s quoted in ASCII when it is not valid UTF-8.
func validUTF8(s string) string { return msgjson.ValidUTF8(s) }
