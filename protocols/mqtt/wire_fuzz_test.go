package mqtt

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/kedgehq/kedge/core"
)

// encode encodes one packet as a client of version v writes it.
func encode(v byte, pk packets.Packet) []byte {
	pk.ProtocolVersion = v
	var b bytes.Buffer
	switch pk.FixedHeader.Type {
	case packets.Connect:
		_ = pk.ConnectEncode(&b)
	case packets.Publish:
		_ = pk.PublishEncode(&b)
	case packets.Subscribe:
		_ = pk.SubscribeEncode(&b)
	case packets.Unsubscribe:
		_ = pk.UnsubscribeEncode(&b)
	case packets.Pingreq:
		_ = pk.PingreqEncode(&b)
	case packets.Disconnect:
		_ = pk.DisconnectEncode(&b)
	}
	return b.Bytes()
}

// mqttSeeds are client byte streams: valid sessions of both versions, and
// truncated, oversized and malformed packets.
func mqttSeeds() [][]byte {
	connect := func(v byte, id string) []byte {
		return encode(v, packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connect},
			Connect: packets.ConnectParams{ProtocolName: []byte("MQTT"), ClientIdentifier: id, Clean: true, Keepalive: 30}})
	}
	sub := func(v byte, f string) []byte {
		return encode(v, packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Subscribe, Qos: 1}, PacketID: 1,
			Filters: packets.Subscriptions{{Filter: f, Qos: 1}}})
	}
	pub := func(v byte, topic string, qos byte) []byte {
		return encode(v, packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: qos}, PacketID: 7,
			TopicName: topic, Payload: []byte("hello")})
	}
	cat := func(bs ...[]byte) []byte { return bytes.Join(bs, nil) }
	v5 := connect(5, "f5")
	return [][]byte{
		cat(connect(4, "f4"), sub(4, "demo/+"), pub(4, "demo/k1", 1), encode(4, packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Pingreq}})),
		cat(v5, sub(5, "demo/#"), pub(5, "demo/k1", 2), encode(5, packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Disconnect}})),
		cat(connect(4, "x"), pub(4, "$SYS/x", 1), pub(4, "demo//bad", 1), sub(4, "#"), sub(4, "$share/g/demo/+")),
		v5[:len(v5)/2],                                            // truncated CONNECT
		pub(4, "demo/k1", 0),                                      // PUBLISH before CONNECT
		{0x10, 0xff, 0xff, 0xff, 0xff, 0x7f},                      // a remaining length over four bytes
		{0x10, 0xff, 0xff, 0xff, 0x7f},                            // a CONNECT of 256 MiB
		{0x10, 0x02, 0x00, 0x00},                                  // CONNECT without a protocol name
		{0x10, 0x0c, 0, 4, 'M', 'Q', 'T', 'T', 9, 2, 0, 30, 0, 0}, // unknown protocol version
		{0xf0, 0x00},                                              // reserved packet type
		{0x16, 0x03, 0x01, 0x02, 0x00, 0x01},                      // a TLS ClientHello on the plain port
		[]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"),               // HTTP on the MQTT port
		{}, // nothing
	}
}

// FuzzWireMQTT feeds raw byte streams to the MQTT listener — mochi's packet
// decoding and kedge's hook together — then the client goes away. Whatever
// the bytes, the server must not crash, must close the connection once the
// client has gone, and must end with no connection or session left behind.
func FuzzWireMQTT(f *testing.F) {
	for _, s := range mqttSeeds() {
		f.Add(s)
	}
	hub := core.NewHub(core.CacheConfig{})
	k := &fakeKafka{hub: hub, offsets: map[string]int64{}}
	exp, _ := core.NewExposure([]string{"demo"}, "")
	srv, err := NewServer(&core.Node{Hub: hub, Publisher: k, Exposure: exp},
		Config{Listen: "127.0.0.1:0", ConnectTimeout: 2 * time.Second, MaxPacketSize: 4096})
	if err != nil {
		f.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	})
	addr := srv.Addr().String()
	f.Fuzz(func(t *testing.T, data []byte) {
		nc, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = nc.Close() }()
		_, _ = nc.Write(data)
		_ = nc.(*net.TCPConn).CloseWrite()
		_ = nc.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, err = io.Copy(io.Discard, nc)
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatalf("the server kept the connection open after the client left (input %q)", data)
		}
		deadline := time.Now().Add(5 * time.Second)
		for srv.Stats().Connections != 0 {
			if time.Now().After(deadline) {
				t.Fatalf("%d connections still counted after the client left", srv.Stats().Connections)
			}
			time.Sleep(time.Millisecond)
		}
	})
}
