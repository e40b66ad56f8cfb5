package mqtt

import (
	"encoding/binary"
	"unicode/utf8"

	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/kedgehq/kedge/core"
)

// Kafka header names with a meaning in MQTT 5 (see docs/protocol-mqtt.md).
const (
	// HeaderContentType carries MQTT 5's Content Type property.
	HeaderContentType = "content-type"
	// HeaderPayloadFormat carries MQTT 5's Payload Format Indicator: "1"
	// (UTF-8 text) or "0" (unspecified bytes).
	HeaderPayloadFormat = "mqtt-payload-format"
	// PropertyReset is the user property that marks the first message after
	// a subscription's history could not be recovered; its value is the reason.
	PropertyReset = "kedge-reset"
)

// MQTT packet types (first byte, high nibble) and property identifiers.
const (
	typePublish    = 0x30
	typePuback     = 0x40
	typePubrec     = 0x50
	typeDisconnect = 0xE0

	propPayloadFormat = 0x01
	propContentType   = 0x03
	propReasonString  = 0x1F
	propUser          = 0x26

	// maxRemaining is the largest remaining length a packet can declare.
	maxRemaining = 268_435_455
)

// Every message is encoded once per MQTT generation (3.1/3.1.1 and 5) and
// the bytes are shared by all subscribers of that generation. The shared
// encoding is a complete PUBLISH in QoS 1 layout with packet identifier 0;
// each delivery writes its own first byte (QoS, DUP, RETAIN), remaining
// length and packet identifier and takes the rest from the shared bytes.
var (
	slot3 = core.NewEncodingSlot()
	slot5 = core.NewEncodingSlot()
)

type encoder3 struct{}
type encoder5 struct{}

func (encoder3) Encode(m *core.Message) []byte { return encodePublish(m, false, "") }
func (encoder5) Encode(m *core.Message) []byte { return encodePublish(m, true, "") }

// shared returns m's shared encoding for the client generation, or nil when
// m cannot be an MQTT message (its subject is no MQTT topic name, or it is
// larger than an MQTT packet can be).
func shared(m *core.Message, v5 bool) []byte {
	if v5 {
		return m.Encoded(slot5, encoder5{})
	}
	return m.Encoded(slot3, encoder3{})
}

// encodePublish encodes m in the shared layout; reset, when set, adds the
// kedge-reset user property (MQTT 5 only).
func encodePublish(m *core.Message, v5 bool, reset string) []byte {
	topic, ok := TopicOf(m.Subject)
	if !ok {
		return nil
	}
	props := 0
	if v5 {
		props = propertiesLen(m.Headers, reset)
	}
	rem := 2 + len(topic) + 2 + len(m.Payload)
	if v5 {
		rem += varintLen(props) + props
	}
	if rem > maxRemaining {
		return nil
	}
	b := make([]byte, 0, 1+varintLen(rem)+rem)
	b = append(b, typePublish|1<<1)
	b = appendVarint(b, rem)
	b = appendString(b, topic)
	b = append(b, 0, 0) // packet identifier, written per delivery
	if v5 {
		b = appendVarint(b, props)
		b = appendProperties(b, m.Headers, reset)
	}
	return append(b, m.Payload...)
}

// Headers become MQTT 5 properties: the first content-type header whose
// value is a non-empty MQTT string becomes the Content Type, the first
// mqtt-payload-format header of "0" or "1" the Payload Format Indicator, and
// every other header with a valid name and value a user property, in order.
// Headers that are no valid MQTT strings are left out.

func propertiesLen(hs []core.Header, reset string) int {
	n := 0
	walkProperties(hs, func(id byte, k string, v []byte) {
		switch id {
		case propPayloadFormat:
			n += 2
		case propContentType:
			n += 3 + len(v)
		default:
			n += 5 + len(k) + len(v)
		}
	})
	if reset != "" {
		n += 5 + len(PropertyReset) + len(reset)
	}
	return n
}

func appendProperties(b []byte, hs []core.Header, reset string) []byte {
	walkProperties(hs, func(id byte, k string, v []byte) {
		switch id {
		case propPayloadFormat:
			b = append(b, propPayloadFormat, v[0]-'0')
		case propContentType:
			b = appendBytes(append(b, propContentType), v)
		default:
			b = appendBytes(appendString(append(b, propUser), k), v)
		}
	})
	if reset != "" {
		b = appendString(appendString(append(b, propUser), PropertyReset), reset)
	}
	return b
}

// walkProperties calls f for each header that becomes a property.
func walkProperties(hs []core.Header, f func(id byte, k string, v []byte)) {
	ct, pf := false, false
	for _, h := range hs {
		if !validString(h.Value) || !validString([]byte(h.Key)) {
			continue
		}
		switch {
		case !ct && h.Key == HeaderContentType && len(h.Value) > 0:
			ct = true
			f(propContentType, "", h.Value)
		case !pf && h.Key == HeaderPayloadFormat && len(h.Value) == 1 && (h.Value[0] == '0' || h.Value[0] == '1'):
			pf = true
			f(propPayloadFormat, "", h.Value)
		default:
			f(propUser, h.Key, h.Value)
		}
	}
}

// validString reports whether b may be an MQTT UTF-8 string.
func validString(b []byte) bool {
	if len(b) > maxTopicLen || !utf8.Valid(b) {
		return false
	}
	for _, c := range b {
		if c == 0 {
			return false
		}
	}
	return true
}

// headersOf turns an MQTT 5 publish's properties into Kafka headers: the
// Content Type and Payload Format Indicator first, then user properties.
func headersOf(p *packets.Properties) []core.Header {
	n := len(p.User)
	if p.ContentType != "" {
		n++
	}
	if p.PayloadFormatFlag {
		n++
	}
	if n == 0 {
		return nil
	}
	hs := make([]core.Header, 0, n)
	if p.ContentType != "" {
		hs = append(hs, core.Header{Key: HeaderContentType, Value: []byte(p.ContentType)})
	}
	if p.PayloadFormatFlag {
		hs = append(hs, core.Header{Key: HeaderPayloadFormat, Value: []byte{'0' + p.PayloadFormat&1}})
	}
	for _, u := range p.User {
		hs = append(hs, core.Header{Key: u.Key, Value: []byte(u.Val)})
	}
	return hs
}

// publishLayout returns where the shared encoding's fixed header ends and
// where its packet identifier sits.
func publishLayout(enc []byte) (hdrLen, pidOff int) {
	hdrLen = 2
	for enc[hdrLen-1]&0x80 != 0 {
		hdrLen++
	}
	topicLen := int(binary.BigEndian.Uint16(enc[hdrLen:]))
	return hdrLen, hdrLen + 2 + topicLen
}

// publishSize is the size on the wire of a delivery of enc at qos.
func publishSize(enc []byte, qos byte) int {
	hdrLen, _ := publishLayout(enc)
	rem := len(enc) - hdrLen
	if qos == 0 {
		rem -= 2
	}
	return 1 + varintLen(rem) + rem
}

// appendPublishHead appends a delivery's own bytes to head: its first byte
// (QoS, DUP, RETAIN), remaining length, topic and, at QoS 1, packet
// identifier. It returns the grown head, the part of it just appended, and
// the shared rest of the packet (properties and payload), which must not be
// modified. Earlier parts of head stay valid when it grows.
func appendPublishHead(head, enc []byte, qos byte, id uint16, dup, retain bool) (grown, part, rest []byte) {
	hdrLen, pidOff := publishLayout(enc)
	rem := len(enc) - hdrLen
	first := byte(typePublish) | qos<<1
	if dup {
		first |= 0x08
	}
	if retain {
		first |= 0x01
	}
	if qos == 0 {
		rem -= 2
	}
	start := len(head)
	head = appendVarint(append(head, first), rem)
	head = append(head, enc[hdrLen:pidOff]...)
	if qos > 0 {
		head = binary.BigEndian.AppendUint16(head, id)
	}
	return head, head[start:], enc[pidOff+2:]
}

// ackPacket encodes a PUBACK or PUBREC. MQTT 5 clients get a failure's
// reason code and, unless they asked not to, its reason string.
func ackPacket(typ byte, id uint16, v5 bool, code packets.Code, reason bool) []byte {
	if !v5 || code.Code == 0 {
		return []byte{typ, 2, byte(id >> 8), byte(id)}
	}
	props := reasonProps(code.Reason, reason)
	b := make([]byte, 0, 5+len(props)+4)
	b = appendVarint(append(b, typ), 3+varintLen(len(props))+len(props))
	b = append(b, byte(id>>8), byte(id), code.Code)
	b = appendVarint(b, len(props))
	return append(b, props...)
}

// disconnectPacket encodes an MQTT 5 DISCONNECT with a reason.
func disconnectPacket(code packets.Code, reason bool) []byte {
	props := reasonProps(code.Reason, reason)
	b := make([]byte, 0, 4+len(props)+4)
	b = appendVarint(append(b, typeDisconnect), 1+varintLen(len(props))+len(props))
	b = append(b, code.Code)
	b = appendVarint(b, len(props))
	return append(b, props...)
}

// reasonProps is a properties block holding one reason string (or nothing).
func reasonProps(reason string, allowed bool) []byte {
	if !allowed || reason == "" || !validString([]byte(reason)) {
		return nil
	}
	return appendString([]byte{propReasonString}, reason)
}

func appendVarint(b []byte, n int) []byte {
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

func varintLen(n int) int {
	switch {
	case n < 128:
		return 1
	case n < 16384:
		return 2
	case n < 2097152:
		return 3
	}
	return 4
}

func appendString(b []byte, s string) []byte {
	b = binary.BigEndian.AppendUint16(b, uint16(len(s)))
	return append(b, s...)
}

func appendBytes(b, s []byte) []byte {
	b = binary.BigEndian.AppendUint16(b, uint16(len(s)))
	return append(b, s...)
}
