package mqtt

import (
	"bytes"
	"io"
	"slices"
	"strings"
	"testing"

	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/kedgehq/kedge/core"
)

// decode reads one packet from b with mochi's codec.
func decode(t testing.TB, b []byte, v byte) packets.Packet {
	t.Helper()
	r := bytes.NewReader(b)
	var pk packets.Packet
	first, _ := r.ReadByte()
	if err := pk.FixedHeader.Decode(first); err != nil {
		t.Fatal(err)
	}
	n, _, err := packets.DecodeLength(r)
	if err != nil {
		t.Fatal(err)
	}
	if n != r.Len() {
		t.Fatalf("remaining length %d, %d bytes follow", n, r.Len())
	}
	pk.FixedHeader.Remaining = n
	body, _ := io.ReadAll(r)
	pk.ProtocolVersion = v
	switch pk.FixedHeader.Type {
	case packets.Publish:
		err = pk.PublishDecode(body)
	case packets.Puback:
		err = pk.PubackDecode(body)
	case packets.Pubrec:
		err = pk.PubrecDecode(body)
	case packets.Disconnect:
		err = pk.DisconnectDecode(body)
	default:
		t.Fatalf("packet type %d", pk.FixedHeader.Type)
	}
	if err != nil {
		t.Fatalf("mochi cannot decode % x: %v", b, err)
	}
	return pk
}

// delivered assembles a delivery the way the writer does.
func delivered(enc []byte, qos byte, id uint16, dup, retain bool) []byte {
	_, part, rest := appendPublishHead([]byte("junk"), enc, qos, id, dup, retain)
	return append(slices.Clone(part), rest...)
}

func TestPublishEncoding(t *testing.T) {
	m := &core.Message{Subject: "/demo/k1", Topic: "demo", Key: "k1", HasKey: true, Payload: []byte("hello"),
		Headers: []core.Header{
			{Key: "h", Value: []byte("v")},
			{Key: HeaderContentType, Value: []byte("text/plain")},
			{Key: HeaderPayloadFormat, Value: []byte("1")},
			{Key: "bin", Value: []byte{0xff}},            // not UTF-8: left out
			{Key: HeaderContentType, Value: []byte("2")}, // a second one is a user property
			{Key: "nul", Value: []byte("a\x00")},         // U+0000: left out
		}}
	for _, v5 := range []bool{false, true} {
		v := byte(4)
		if v5 {
			v = 5
		}
		enc := encodePublish(m, v5, "")
		for _, tc := range []struct {
			qos         byte
			id          uint16
			dup, retain bool
		}{{0, 0, false, false}, {1, 513, false, true}, {1, 65535, true, false}, {0, 0, false, true}} {
			b := delivered(enc, tc.qos, tc.id, tc.dup, tc.retain)
			if len(b) != publishSize(enc, tc.qos) {
				t.Fatalf("publishSize %d, packet %d bytes", publishSize(enc, tc.qos), len(b))
			}
			pk := decode(t, b, v)
			fh := pk.FixedHeader
			if pk.TopicName != "demo/k1" || string(pk.Payload) != "hello" || fh.Qos != tc.qos || fh.Dup != tc.dup ||
				fh.Retain != tc.retain || pk.PacketID != tc.id {
				t.Fatalf("v%d %+v: decoded %+v", v, tc, pk)
			}
			if !v5 {
				continue
			}
			p := pk.Properties
			want := []packets.UserProperty{{Key: "h", Val: "v"}, {Key: HeaderContentType, Val: "2"}}
			if p.ContentType != "text/plain" || !p.PayloadFormatFlag || p.PayloadFormat != 1 || !slices.Equal(p.User, want) {
				t.Fatalf("properties %+v", p)
			}
			// And back: the headers a v5 publish of these properties gives.
			hs := headersOf(&p)
			if len(hs) != 4 || hs[0].Key != HeaderContentType || hs[1].Key != HeaderPayloadFormat || string(hs[1].Value) != "1" {
				t.Fatalf("headers %+v", hs)
			}
		}
	}
	reset := decode(t, delivered(encodePublish(m, true, "gone"), 1, 1, false, false), 5)
	if u := reset.Properties.User; len(u) != 3 || u[2] != (packets.UserProperty{Key: PropertyReset, Val: "gone"}) {
		t.Fatalf("reset: %+v", u)
	}
}

func TestPublishEncodingLimits(t *testing.T) {
	if encodePublish(&core.Message{Subject: "/demo/a\x00"}, false, "") != nil {
		t.Error("a topic with U+0000 was encoded")
	}
	// Lengths that need 1 to 3 bytes of remaining length.
	for _, n := range []int{0, 100, 130, 16380, 20000, 2100000} {
		m := &core.Message{Subject: "/t/k", Payload: bytes.Repeat([]byte{'x'}, n)}
		for _, qos := range []byte{0, 1} {
			pk := decode(t, delivered(encodePublish(m, true, ""), qos, 7, false, false), 5)
			if len(pk.Payload) != n {
				t.Fatalf("payload %d: decoded %d", n, len(pk.Payload))
			}
		}
	}
}

func TestAckEncoding(t *testing.T) {
	for _, v := range []byte{4, 5} {
		pk := decode(t, ackFor(1, 300, v == 5, packets.CodeSuccess, true), v)
		if pk.FixedHeader.Type != packets.Puback || pk.PacketID != 300 || pk.ReasonCode != 0 {
			t.Fatalf("v%d PUBACK %+v", v, pk)
		}
	}
	code := packets.ErrUnspecifiedError
	code.Reason = "kafka_timeout: no answer"
	pk := decode(t, ackFor(2, 9, true, code, true), 5)
	if pk.FixedHeader.Type != packets.Pubrec || pk.PacketID != 9 || pk.ReasonCode != 0x80 || pk.Properties.ReasonString != code.Reason {
		t.Fatalf("PUBREC %+v", pk)
	}
	if pk := decode(t, ackFor(1, 9, true, code, false), 5); pk.ReasonCode != 0x80 || pk.Properties.ReasonString != "" {
		t.Fatalf("a client that asked for no problem information got %+v", pk)
	}
	if pk := decode(t, ackFor(1, 9, false, code, true), 4); pk.ReasonCode != 0 || pk.FixedHeader.Remaining != 2 {
		t.Fatalf("MQTT 3.1.1 PUBACK %+v", pk)
	}
	d := decode(t, disconnectPacket(reasonFor(core.DisconnectShutdown), true), 5)
	if d.ReasonCode != 0x8B || d.Properties.ReasonString != core.DisconnectShutdown.Reason {
		t.Fatalf("DISCONNECT %+v", d)
	}
	long := strings.Repeat("é", 400)
	if got := clipReason(long); len(got) > 256 || !strings.HasPrefix(long, got) {
		t.Fatalf("clipReason split a character or kept too much")
	}
}

func FuzzPublishEncoding(f *testing.F) {
	f.Add("k1", []byte("hello"), "h", []byte("v"), byte(1), uint16(5), true)
	f.Add("a/b/c", []byte{}, HeaderContentType, []byte("x/y"), byte(0), uint16(0), false)
	f.Add("ü", bytes.Repeat([]byte{'x'}, 300), HeaderPayloadFormat, []byte("1"), byte(1), uint16(65535), true)
	f.Fuzz(func(t *testing.T, key string, payload []byte, hk string, hv []byte, qos byte, id uint16, retain bool) {
		qos %= 2
		if qos == 0 {
			id = 0
		} else if id == 0 {
			id = 1
		}
		name, ok := core.SubjectFor("demo", []byte(key))
		if !ok {
			return
		}
		m := &core.Message{Subject: name, Payload: payload, Headers: []core.Header{{Key: hk, Value: hv}}}
		for _, v := range []byte{4, 5} {
			enc := encodePublish(m, v == 5, "")
			topic, ok := TopicOf(name)
			if enc == nil {
				if ok {
					t.Fatalf("%q not encoded", name)
				}
				continue
			}
			pk := decode(t, delivered(enc, qos, id, false, retain), v)
			if pk.TopicName != topic || !bytes.Equal(pk.Payload, payload) || pk.PacketID != id || pk.FixedHeader.Retain != retain {
				t.Fatalf("v%d: decoded %+v", v, pk)
			}
			if v == 5 && validString([]byte(hk)) && validString(hv) {
				hs := headersOf(&pk.Properties)
				if len(hs) != 1 || hs[0].Key != hk || !bytes.Equal(hs[0].Value, hv) {
					t.Fatalf("header %q=%q came back as %+v", hk, hv, hs)
				}
			}
		}
	})
}
