package mqtt

import (
	"net"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"
)

// laggingReader connects a persistent MQTT 3.1.1 session "dev" with a will,
// delivers it m1 (returned, not acknowledged), and leaves its read loop
// waiting for Kafka: three QoS 1 publishes with a window of two, Kafka
// holding its answers (h.kafka.release lets go). What the client sends
// next waits unread.
func laggingReader(t *testing.T) (*harness, *client, packets.Packet) {
	t.Helper()
	h := newHarness(t, Config{MaxInflight: 2})
	c := dial(t, h.addr, 4)
	c.mustConnect("dev", false, withWill("demo/status", "gone", 0))
	c.subscribe(1, sub("demo/+", 1))
	h.kafka.dispatch("/demo/k1", "m1")
	m1 := c.message("demo/k1", "m1")

	h.kafka.mu.Lock()
	h.kafka.hold = true
	h.kafka.mu.Unlock()
	for i, p := range []string{"p1", "p2", "p3"} { // the third waits for a slot: reading stops
		c.publish("other/x", p, 1, uint16(100+i))
	}
	waitFor(t, 5*time.Second, "the read loop to wait for Kafka", func() bool {
		return h.srv.Stats().Received == 3
	})
	return h, c, m1
}

// A client that acknowledges a delivery, sends DISCONNECT and closes its
// connection with data still unread (which resets the connection) has
// acknowledged and disconnected, even when kedge's writer meets the reset
// before the read loop has read those packets: the PUBACK is not lost (the
// message is not sent again on the next connection) and the disconnect is
// a normal one (no will). The read loop is made to lag behind by a publish
// waiting for Kafka (an MQTT 3.1.1 client's publishes past
// mqtt.max.inflight stop reading).
func TestPacketsBeforeResetAreRead(t *testing.T) {
	h, c, m1 := laggingReader(t)
	c.puback(m1.PacketID)
	c.write(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Disconnect}})
	_ = c.nc.(*net.TCPConn).SetLinger(0)
	_ = c.nc.Close() // a reset, as when a client closes with unread data
	time.Sleep(50 * time.Millisecond)
	h.kafka.dispatch("/demo/k1", "m2") // its write meets the reset
	waitFor(t, 5*time.Second, "a failed write", func() bool { return h.srv.Stats().WriteErrors > 0 })
	h.kafka.release()
	waitFor(t, 5*time.Second, "the session to go offline", func() bool { return h.srv.Stats().OfflineSessions == 1 })
	time.Sleep(100 * time.Millisecond) // a will would be published by now
	for _, p := range h.kafka.published() {
		if p.Subject.Name == "/demo/status" {
			t.Fatal("the will was published: the client's DISCONNECT was not read")
		}
	}

	c = dial(t, h.addr, 4)
	if ack := c.mustConnect("dev", false); !ack.SessionPresent {
		t.Fatal("session not present")
	}
	// m2 was written to the broken connection and never acknowledged: it
	// comes again. m1 was acknowledged: it must not.
	if m := c.expect(packets.Publish); string(m.Payload) != "m2" {
		t.Fatalf("first message after reconnecting %q (dup %v), want m2: the PUBACK of m1 was lost", m.Payload, m.FixedHeader.Dup)
	}
}

// A client that acknowledges a delivery, sends DISCONNECT, closes the
// connection and connects again at once may have its new CONNECT handled
// before the old connection's last packets are read (each connection has
// its own read loop). Those packets count: the acknowledged message is not
// sent again, and the will is not published. The old connection's read
// loop is made to lag behind by a publish waiting for Kafka.
func TestTakeoverReadsTheOldConnectionFirst(t *testing.T) {
	h, c, m1 := laggingReader(t)
	c.puback(m1.PacketID)
	c.write(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Disconnect}})
	_ = c.nc.Close()

	go func() {
		time.Sleep(50 * time.Millisecond) // the old read loop goes on a moment later
		h.kafka.release()
	}()
	c = dial(t, h.addr, 4)
	if ack := c.mustConnect("dev", false); !ack.SessionPresent {
		t.Fatal("session not present")
	}
	h.kafka.dispatch("/demo/k1", "m2")
	if m := c.expect(packets.Publish); string(m.Payload) != "m2" {
		t.Fatalf("first message on the new connection %q (dup %v), want m2: the PUBACK of m1 was lost", m.Payload, m.FixedHeader.Dup)
	}
	for _, p := range h.kafka.published() {
		if p.Subject.Name == "/demo/status" {
			t.Fatal("the will was published: the old connection's DISCONNECT was not read")
		}
	}
}

// The same when the write that meets the reset is mochi's own (the
// PINGRESP of a PINGREQ the client sent before its PUBACK): mochi ends its
// read loop on a failed write, which must not discard the packets after it.
func TestPacketsAfterFailedPingrespAreRead(t *testing.T) {
	h, c, m1 := laggingReader(t)
	c.write(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Pingreq}})
	c.puback(m1.PacketID)
	c.write(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Disconnect}})
	_ = c.nc.(*net.TCPConn).SetLinger(0)
	_ = c.nc.Close() // a reset
	time.Sleep(50 * time.Millisecond)
	h.kafka.release() // reading goes on: the PINGRESP meets the reset
	waitFor(t, 5*time.Second, "the session to go offline", func() bool { return h.srv.Stats().OfflineSessions == 1 })
	time.Sleep(100 * time.Millisecond) // a will would be published by now
	for _, p := range h.kafka.published() {
		if p.Subject.Name == "/demo/status" {
			t.Fatal("the will was published: the client's DISCONNECT was not read")
		}
	}
	c = dial(t, h.addr, 4)
	if ack := c.mustConnect("dev", false); !ack.SessionPresent {
		t.Fatal("session not present")
	}
	h.kafka.dispatch("/demo/k1", "m2")
	if m := c.expect(packets.Publish); string(m.Payload) != "m2" {
		t.Fatalf("first message after reconnecting %q (dup %v), want m2: the PUBACK of m1 was lost", m.Payload, m.FixedHeader.Dup)
	}
}
