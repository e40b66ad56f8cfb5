package mqtt

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/kedgehq/kedge/core"
)

// A QoS 1 publish is acknowledged only once Kafka has answered, on both
// MQTT generations, and lands in Kafka under the subject's topic and key.
func TestPubackWaitsForKafka(t *testing.T) {
	for _, v := range []byte{4, 5} {
		t.Run(fmt.Sprintf("v%d", v), func(t *testing.T) {
			h := newHarness(t, Config{})
			h.kafka.hold = true
			c := dial(t, h.addr, v)
			c.mustConnect("pub", true)
			c.publish("demo/k1", "hello", 1, 7)
			waitFor(t, 5*time.Second, "the publish to reach Kafka", func() bool { return h.kafka.heldCount() == 1 })
			c.quiet(200 * time.Millisecond)
			h.kafka.release()
			ack := c.expect(packets.Puback)
			if ack.PacketID != 7 || ack.ReasonCode != 0 {
				t.Fatalf("PUBACK %+v", ack)
			}
			p := h.kafka.published()[0]
			if p.Subject.Topic != "demo" || p.Subject.Key != "k1" || !p.Subject.HasKey || string(p.Payload) != "hello" {
				t.Fatalf("published %+v", p)
			}
		})
	}
}

// When Kafka fails, an MQTT 5 client gets a failure reason code and an MQTT
// 3.1.1 client is disconnected: neither is ever acknowledged.
func TestKafkaFailureIsNeverAcknowledged(t *testing.T) {
	fail := fmt.Errorf("%w: broker said no", core.ErrRejected)
	t.Run("v5", func(t *testing.T) {
		h := newHarness(t, Config{})
		h.kafka.fail = fail
		c := dial(t, h.addr, 5)
		c.mustConnect("pub", true)
		c.publish("demo/k1", "lost?", 1, 3)
		ack := c.expect(packets.Puback)
		if ack.PacketID != 3 || ack.ReasonCode != packets.ErrUnspecifiedError.Code ||
			!strings.HasPrefix(ack.Properties.ReasonString, "kafka_rejected: ") {
			t.Fatalf("PUBACK %#x %q, want 0x80 kafka_rejected", ack.ReasonCode, ack.Properties.ReasonString)
		}
		c.publish("demo/k1", "qos2", 2, 4)
		if rec := c.expect(packets.Pubrec); rec.PacketID != 4 || rec.ReasonCode != 0x80 {
			t.Fatalf("PUBREC %+v", rec)
		}
	})
	t.Run("v3.1.1", func(t *testing.T) {
		h := newHarness(t, Config{})
		h.kafka.fail = fail
		c := dial(t, h.addr, 4)
		c.mustConnect("pub", true)
		c.publish("demo/k1", "lost?", 1, 3)
		if got := c.closed(5 * time.Second); len(got) != 0 {
			t.Fatalf("got %+v before the close, want nothing", got)
		}
	})
}

// QoS 2: PUBREC after Kafka, then mochi answers PUBREL with PUBCOMP.
func TestQoS2(t *testing.T) {
	h := newHarness(t, Config{})
	c := dial(t, h.addr, 5)
	c.mustConnect("pub", true)
	c.publish("demo/k1", "exactly", 2, 9)
	if rec := c.expect(packets.Pubrec); rec.PacketID != 9 || rec.ReasonCode != 0 {
		t.Fatalf("PUBREC %+v", rec)
	}
	c.write(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Pubrel, Qos: 1}, PacketID: 9})
	if comp := c.expect(packets.Pubcomp); comp.PacketID != 9 || comp.ReasonCode != 0 {
		t.Fatalf("PUBCOMP %+v", comp)
	}
	if n := len(h.kafka.published()); n != 1 {
		t.Fatalf("%d records in Kafka, want 1", n)
	}
}

// A publish comes back from Kafka to subscribers of the subject and of
// matching patterns, on both generations, and not to others.
func TestPublishComesBackFromKafka(t *testing.T) {
	h := newHarness(t, Config{})
	subs := map[string]*client{}
	for i, f := range []string{"demo/k1", "demo/+", "demo/#", "demo/k2"} {
		c := dial(t, h.addr, byte(4+i%2))
		c.mustConnect("sub"+f, true)
		if ack := c.subscribe(1, sub(f, 1)); ack.ReasonCodes[0] != 1 {
			t.Fatalf("SUBACK for %s: %v", f, ack.ReasonCodes)
		}
		subs[f] = c
	}
	pub := dial(t, h.addr, 4)
	pub.mustConnect("pub", true)
	pub.publish("demo/k1", "v1", 0, 0)
	for _, f := range []string{"demo/k1", "demo/+", "demo/#"} {
		m := subs[f].message("demo/k1", "v1")
		if m.FixedHeader.Qos != 1 || m.FixedHeader.Retain || m.FixedHeader.Dup {
			t.Fatalf("%s got %+v", f, m.FixedHeader)
		}
		subs[f].puback(m.PacketID)
	}
	subs["demo/k2"].quiet(200 * time.Millisecond)
}

// On subscribe, the latest message arrives as the retained message, after
// the SUBACK; live messages follow without the retain flag.
func TestSnapshotIsRetained(t *testing.T) {
	h := newHarness(t, Config{})
	h.kafka.dispatch("/demo/k1", "old")
	h.kafka.dispatch("/demo/k1", "latest")
	h.kafka.dispatch("/demo/empty", "")
	c := dial(t, h.addr, 5)
	c.mustConnect("sub", true)
	ack := c.subscribe(1, sub("demo/k1", 0), sub("demo/empty", 0)) // read first: the SUBACK precedes
	if ack.ReasonCodes[0] != 0 || ack.ReasonCodes[1] != 0 {
		t.Fatalf("SUBACK %v", ack.ReasonCodes)
	}
	m := c.message("demo/k1", "latest")
	if !m.FixedHeader.Retain || m.FixedHeader.Qos != 0 {
		t.Fatalf("snapshot %+v, want retained QoS 0", m.FixedHeader)
	}
	c.quiet(100 * time.Millisecond) // an empty latest message is no retained message
	h.kafka.dispatch("/demo/k1", "live")
	if m := c.message("demo/k1", "live"); m.FixedHeader.Retain {
		t.Fatal("live message with the retain flag")
	}
	// Retain handling 2: no retained message.
	c.subscribe(2, packets.Subscription{Filter: "demo/+", RetainHandling: 2})
	c.quiet(100 * time.Millisecond)
}

// Bad filters are refused with MQTT 5 reason codes (and 0x80 for MQTT
// 3.1.1); the others in the same SUBSCRIBE are granted.
func TestSubscribeRefusals(t *testing.T) {
	h := newHarness(t, Config{MaxSubscriptions: 3}, "demo")
	cases := []struct {
		sub  packets.Subscription
		code byte
	}{
		{sub("demo/k1", 2), 1}, // QoS 2 is granted as QoS 1
		{sub("secret/k1", 1), packets.ErrNotAuthorized.Code},
		{sub("demo//k1", 1), packets.ErrTopicFilterInvalid.Code},
		{sub("/demo/k1", 1), packets.ErrTopicFilterInvalid.Code},
		{sub("+/k1", 1), packets.ErrTopicFilterInvalid.Code},
		{sub("de mo/k1", 1), packets.ErrTopicFilterInvalid.Code},
		{sub("demo/a+", 1), packets.ErrTopicFilterInvalid.Code},
		{sub("$share/g/demo/k1", 1), packets.ErrSharedSubscriptionsNotSupported.Code},
		{sub("demo/+", 0), 0},
		{sub("demo/#", 1), 1},
		{sub("demo/k3", 1), packets.ErrQuotaExceeded.Code}, // a fourth subscription
	}
	for _, v := range []byte{5, 4} {
		c := dial(t, h.addr, v)
		c.mustConnect(fmt.Sprintf("sub%d", v), true)
		var filters []packets.Subscription
		for _, tc := range cases {
			filters = append(filters, tc.sub)
		}
		ack := c.subscribe(1, filters...)
		for i, tc := range cases {
			want := tc.code
			if v == 4 && want >= 0x80 {
				want = 0x80
			}
			if ack.ReasonCodes[i] != want {
				t.Errorf("v%d %s: code %#x, want %#x", v, tc.sub.Filter, ack.ReasonCodes[i], want)
			}
		}
		if v == 5 && !strings.Contains(ack.Properties.ReasonString, "not exposed") {
			t.Errorf("SUBACK reason %q does not say the first failure", ack.Properties.ReasonString)
		}
		// Subscription identifiers are not supported.
		c.write(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Subscribe, Qos: 1}, PacketID: 2,
			Filters: packets.Subscriptions{{Filter: "demo/k9"}}, Properties: packets.Properties{SubscriptionIdentifier: []int{5}}})
		if v == 5 {
			if ack := c.expect(packets.Suback); ack.ReasonCodes[0] != packets.ErrSubscriptionIdentifiersNotSupported.Code {
				t.Errorf("subscription identifier: %#x", ack.ReasonCodes[0])
			}
		}
	}
}

// $SYS topics are mochi's, delivered at QoS 0 after the SUBACK.
func TestSysTopics(t *testing.T) {
	h := newHarness(t, Config{})
	c := dial(t, h.addr, 5)
	c.mustConnect("sys", true)
	if ack := c.subscribe(1, sub("$SYS/broker/version", 1)); ack.ReasonCodes[0] != 0 {
		t.Fatalf("SUBACK %v", ack.ReasonCodes)
	}
	if m := c.expect(packets.Publish); m.TopicName != "$SYS/broker/version" || m.FixedHeader.Qos != 0 {
		t.Fatalf("got %+v", m)
	}
}

// Bad publishes get MQTT 5 reason codes, and the connection stays;
// an MQTT 3.1.1 client is disconnected instead of acknowledged.
func TestPublishRefusals(t *testing.T) {
	h := newHarness(t, Config{}, "demo")
	cases := []struct {
		topic string
		code  byte
		pfi   bool
	}{
		{"secret/k1", packets.ErrNotAuthorized.Code, false},
		{"demo//k1", packets.ErrTopicNameInvalid.Code, false},
		{"demo/", packets.ErrTopicNameInvalid.Code, false},
		{"$SYS/broker/x", packets.ErrNotAuthorized.Code, false},
		{"$kedge/x", packets.ErrNotAuthorized.Code, false},
		{"demo/k1", packets.ErrPayloadFormatInvalid.Code, true},
	}
	c := dial(t, h.addr, 5)
	c.mustConnect("pub", true)
	for i, tc := range cases {
		pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1},
			TopicName: tc.topic, Payload: []byte{0xff, 0xfe}, PacketID: uint16(i + 1)}
		if tc.pfi {
			pk.Properties.PayloadFormat, pk.Properties.PayloadFormatFlag = 1, true
		}
		c.write(pk)
		ack := c.expect(packets.Puback)
		if ack.PacketID != uint16(i+1) || ack.ReasonCode != tc.code || ack.Properties.ReasonString == "" {
			t.Errorf("%s: PUBACK %#x %q, want %#x with a reason", tc.topic, ack.ReasonCode, ack.Properties.ReasonString, tc.code)
		}
	}
	c.publish("demo/k1", "fine", 1, 99)
	if ack := c.expect(packets.Puback); ack.ReasonCode != 0 || ack.PacketID != 99 {
		t.Fatalf("PUBACK %+v", ack)
	}
	if n := len(h.kafka.published()); n != 1 {
		t.Fatalf("%d records in Kafka, want 1", n)
	}

	old := dial(t, h.addr, 4)
	old.mustConnect("old", true)
	old.publish("secret/k1", "x", 1, 1)
	if got := old.closed(5 * time.Second); len(got) != 0 {
		t.Fatalf("MQTT 3.1.1 got %+v, want a close", got)
	}
}

// Unsubscribing stops deliveries; UNSUBACK says which filters existed.
func TestUnsubscribe(t *testing.T) {
	h := newHarness(t, Config{})
	c := dial(t, h.addr, 5)
	c.mustConnect("sub", true)
	c.subscribe(1, sub("demo/k1", 0))
	c.write(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Unsubscribe, Qos: 1}, PacketID: 2,
		Filters: packets.Subscriptions{{Filter: "demo/k1"}, {Filter: "demo/k2"}}})
	ack := c.expect(packets.Unsuback)
	if ack.PacketID != 2 || len(ack.ReasonCodes) != 2 || ack.ReasonCodes[0] != 0 || ack.ReasonCodes[1] != 0x11 {
		t.Fatalf("UNSUBACK %+v", ack)
	}
	h.kafka.dispatch("/demo/k1", "gone")
	c.quiet(200 * time.Millisecond)
	if n := h.srv.Stats().Subscriptions; n != 0 {
		t.Fatalf("%d subscriptions left", n)
	}
}

// At most the inflight window of QoS 1 deliveries waits for PUBACK; acks
// let the rest through, in order.
func TestInflightWindow(t *testing.T) {
	h := newHarness(t, Config{MaxInflight: 3})
	c := dial(t, h.addr, 4)
	c.mustConnect("sub", true)
	c.subscribe(1, sub("demo/k1", 1))
	for i := range 10 {
		h.kafka.dispatch("/demo/k1", fmt.Sprint(i))
	}
	var ids []uint16
	for i := range 3 {
		ids = append(ids, c.message("demo/k1", fmt.Sprint(i)).PacketID)
	}
	c.quiet(200 * time.Millisecond)
	for i := 3; i < 10; i++ {
		c.puback(ids[0])
		ids = append(ids[1:], c.message("demo/k1", fmt.Sprint(i)).PacketID)
	}
}

// A persistent session keeps its subscriptions while the client is away
// and delivers what it missed when it comes back, unacknowledged messages
// first (again, with DUP).
func TestPersistentSessionCatchesUp(t *testing.T) {
	for _, v := range []byte{4, 5} {
		t.Run(fmt.Sprintf("v%d", v), func(t *testing.T) {
			h := newHarness(t, Config{})
			var opts []connectOpt
			if v == 5 {
				opts = append(opts, withExpiry(60))
			}
			c := dial(t, h.addr, v)
			if ack := c.mustConnect("dev", false, opts...); ack.SessionPresent {
				t.Fatal("new session present")
			}
			c.subscribe(1, sub("demo/+", 1))
			h.kafka.dispatch("/demo/k1", "unacked")
			c.message("demo/k1", "unacked") // no PUBACK
			_ = c.nc.Close()
			waitFor(t, 5*time.Second, "the session to go offline", func() bool { return h.srv.Stats().OfflineSessions == 1 })
			for i := range 5 {
				h.kafka.dispatch("/demo/k1", fmt.Sprint("missed", i))
			}
			c = dial(t, h.addr, v)
			if ack := c.mustConnect("dev", false, opts...); !ack.SessionPresent {
				t.Fatal("session not present")
			}
			if m := c.message("demo/k1", "unacked"); !m.FixedHeader.Dup {
				t.Fatal("re-sent message without DUP")
			}
			for i := range 5 {
				c.puback(c.message("demo/k1", fmt.Sprint("missed", i)).PacketID)
			}
			// A clean session drops it.
			_ = c.nc.Close()
			c = dial(t, h.addr, v)
			if ack := c.mustConnect("dev", true); ack.SessionPresent {
				t.Fatal("clean session present")
			}
			h.kafka.dispatch("/demo/k1", "after")
			c.quiet(200 * time.Millisecond)
		})
	}
}

// A session whose queue overflows while its client is away is reset: the
// client learns it from CONNACK (session present 0) and gets nothing old.
func TestOfflineOverflowResetsSession(t *testing.T) {
	h := newHarness(t, Config{SessionQueueSize: 2048})
	c := dial(t, h.addr, 4)
	c.mustConnect("dev", false)
	c.subscribe(1, sub("demo/k1", 1))
	_ = c.nc.Close()
	waitFor(t, 5*time.Second, "the session to go offline", func() bool { return h.srv.Stats().OfflineSessions == 1 })
	for i := range 50 {
		h.kafka.dispatch("/demo/k1", strings.Repeat("x", 100)+fmt.Sprint(i))
	}
	waitFor(t, 5*time.Second, "the session reset", func() bool { return h.srv.Stats().SessionResets == 1 })
	c = dial(t, h.addr, 4)
	if ack := c.mustConnect("dev", false); ack.SessionPresent {
		t.Fatal("reset session present")
	}
	c.quiet(200 * time.Millisecond)
	if n := h.srv.Stats().Subscriptions; n != 0 {
		t.Fatalf("%d subscriptions left in the Hub", n)
	}
}

// A session expires when its client stays away longer than its expiry.
func TestSessionExpiry(t *testing.T) {
	h := newHarness(t, Config{MaxSessionExpiry: time.Hour})
	c := dial(t, h.addr, 5)
	ack := c.mustConnect("dev", false, withExpiry(1))
	_ = ack
	c.subscribe(1, sub("demo/k1", 1))
	_ = c.nc.Close()
	waitFor(t, 5*time.Second, "the session to expire", func() bool { return h.srv.Stats().SessionsExpired == 1 })
	if st := h.srv.Stats(); st.Sessions != 0 || st.Subscriptions != 0 {
		t.Fatalf("after expiry: %+v", st)
	}
}

// Beyond MaxOfflineSessions, the longest-absent session is reset.
func TestOfflineSessionBound(t *testing.T) {
	h := newHarness(t, Config{MaxOfflineSessions: 2})
	for i := range 3 {
		c := dial(t, h.addr, 4)
		c.mustConnect(fmt.Sprint("dev", i), false)
		c.subscribe(1, sub("demo/k1", 1))
		_ = c.nc.Close()
		waitFor(t, 5*time.Second, "the session to go offline", func() bool { return h.srv.Stats().OfflineSessions == int64(min(i+1, 2)) })
	}
	waitFor(t, 5*time.Second, "the oldest session reset", func() bool { return h.srv.Stats().SessionResets == 1 })
	for i, present := range []bool{false, true, true} {
		c := dial(t, h.addr, 4)
		if ack := c.mustConnect(fmt.Sprint("dev", i), false); ack.SessionPresent != present {
			t.Fatalf("dev%d: session present %v, want %v", i, ack.SessionPresent, present)
		}
	}
}

// Graceful shutdown: publishes in flight are answered, new ones refused,
// then MQTT 5 clients get DISCONNECT "server shutting down" (0x8B) and
// MQTT 3.1.1 clients are closed.
func TestShutdownDisconnects(t *testing.T) {
	h := newHarness(t, Config{})
	v5, v3 := dial(t, h.addr, 5), dial(t, h.addr, 4)
	v5.mustConnect("v5", true)
	v3.mustConnect("v3", true)
	h.kafka.hold = true
	v5.publish("demo/k1", "in flight", 1, 5)
	waitFor(t, 5*time.Second, "the publish to reach Kafka", func() bool { return h.kafka.heldCount() == 1 })
	done := make(chan struct{})
	go func() { h.stop(); close(done) }()
	waitFor(t, 5*time.Second, "the server to drain", func() bool {
		h.srv.mu.Lock()
		defer h.srv.mu.Unlock()
		return h.srv.draining
	})
	v5.publish("demo/k1", "too late", 1, 6) // Shutdown is waiting for Kafka now
	if ack := v5.expect(packets.Puback); ack.PacketID != 6 || ack.ReasonCode != 0x80 ||
		!strings.HasPrefix(ack.Properties.ReasonString, "shutting_down") {
		t.Fatalf("publish while shutting down: %+v", ack)
	}
	h.kafka.release()
	got := v5.closed(10 * time.Second)
	if len(got) != 2 || got[0].FixedHeader.Type != packets.Puback || got[0].PacketID != 5 || got[0].ReasonCode != 0 ||
		got[1].FixedHeader.Type != packets.Disconnect || got[1].ReasonCode != packets.ErrServerShuttingDown.Code {
		t.Fatalf("MQTT 5 client got %+v, want PUBACK 5 then DISCONNECT 0x8B", got)
	}
	if got := v3.closed(10 * time.Second); len(got) != 0 {
		t.Fatalf("MQTT 3.1.1 client got %+v", got)
	}
	<-done
	if n := len(h.kafka.published()); n != 1 {
		t.Fatalf("%d records in Kafka, want 1", n)
	}
}

// A will is published to Kafka when the connection ends without DISCONNECT,
// not after a DISCONNECT; a will on an unexposed topic refuses the CONNECT.
func TestWill(t *testing.T) {
	h := newHarness(t, Config{}, "demo")
	c := dial(t, h.addr, 5)
	c.mustConnect("dev", true, withWill("demo/status", "offline", 0))
	c.write(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Disconnect}})
	c.closed(5 * time.Second)
	c = dial(t, h.addr, 4)
	c.mustConnect("dev2", true, withWill("demo/status", "gone", 0))
	_ = c.nc.Close()
	waitFor(t, 5*time.Second, "the will in Kafka", func() bool { return len(h.kafka.published()) == 1 })
	if p := h.kafka.published()[0]; p.Subject.Name != "/demo/status" || string(p.Payload) != "gone" {
		t.Fatalf("will %+v", p)
	}
	for _, v := range []byte{5, 4} {
		c = dial(t, h.addr, v)
		ack := c.connect("dev3", true, withWill("secret/status", "x", 0))
		want := packets.ErrNotAuthorized.Code
		if v == 4 {
			want = 0x05
		}
		if ack.ReasonCode != want {
			t.Fatalf("v%d CONNACK %#x, want %#x", v, ack.ReasonCode, want)
		}
	}
}

// A will with a delay is not published when the client is back in time.
func TestWillDelay(t *testing.T) {
	h := newHarness(t, Config{})
	c := dial(t, h.addr, 5)
	c.mustConnect("dev", false, withExpiry(60), withWill("demo/status", "offline", 60))
	_ = c.nc.Close()
	waitFor(t, 5*time.Second, "the session to go offline", func() bool { return h.srv.Stats().OfflineSessions == 1 })
	c = dial(t, h.addr, 5)
	c.mustConnect("dev", false, withExpiry(60))
	c.write(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Disconnect}})
	c.closed(5 * time.Second)
	if n := len(h.kafka.published()); n != 0 {
		t.Fatalf("%d wills published, want none", n)
	}
}

// MQTT 5 CONNACK says what kedge offers; keepalive is bounded.
func TestConnackCapabilities(t *testing.T) {
	h := newHarness(t, Config{MaxPacketSize: 4096, MaxInflight: 10, MaxKeepalive: 30 * time.Second})
	c := dial(t, h.addr, 5)
	ack := c.mustConnect("dev", true, func(pk *packets.Packet) { pk.Connect.Keepalive = 0 })
	p := ack.Properties
	if !p.SubIDAvailableFlag || p.SubIDAvailable != 0 || !p.SharedSubAvailableFlag || p.SharedSubAvailable != 0 ||
		p.MaximumPacketSize != 4096 || p.ReceiveMaximum != 10 || p.TopicAliasMaximum != topicAliasMaximum ||
		!p.ServerKeepAliveFlag || p.ServerKeepAlive != 30 {
		t.Fatalf("CONNACK properties %+v", p)
	}
}

// A packet over the maximum size closes the connection; others go on.
func TestMaxPacketSize(t *testing.T) {
	h := newHarness(t, Config{MaxPacketSize: 1024})
	c := dial(t, h.addr, 4)
	c.mustConnect("big", true)
	c.publish("demo/k1", strings.Repeat("x", 2000), 1, 1)
	c.closed(5 * time.Second)
	d := dial(t, h.addr, 4)
	d.mustConnect("small", true)
	d.publish("demo/k1", "fine", 1, 1)
	d.expect(packets.Puback)
}

// A connection that sends no CONNECT in time is closed.
func TestConnectTimeout(t *testing.T) {
	h := newHarness(t, Config{ConnectTimeout: 200 * time.Millisecond})
	c := dial(t, h.addr, 4)
	c.closed(5 * time.Second)
}

// A second connection with the same client identifier takes the session
// over: the first gets DISCONNECT 0x8E, subscriptions carry on.
func TestTakeover(t *testing.T) {
	h := newHarness(t, Config{})
	first := dial(t, h.addr, 5)
	first.mustConnect("dev", false, withExpiry(60))
	first.subscribe(1, sub("demo/k1", 1))
	second := dial(t, h.addr, 5)
	if ack := second.mustConnect("dev", false, withExpiry(60)); !ack.SessionPresent {
		t.Fatal("session not present on takeover")
	}
	got := first.closed(5 * time.Second)
	if len(got) != 1 || got[0].FixedHeader.Type != packets.Disconnect || got[0].ReasonCode != packets.ErrSessionTakenOver.Code {
		t.Fatalf("first connection got %+v", got)
	}
	h.kafka.dispatch("/demo/k1", "to the second")
	second.message("demo/k1", "to the second")
}

// Reset: an MQTT 5 client finds the reason on the next message.
func TestResetUserProperty(t *testing.T) {
	h := newHarness(t, Config{})
	c := dial(t, h.addr, 5)
	c.mustConnect("dev", true)
	c.subscribe(1, sub("demo/k1", 0))
	waitFor(t, time.Second, "the session", func() bool { return h.srv.Stats().Subscriptions == 1 })
	h.srv.mu.Lock()
	ss := h.srv.sessions["dev"]
	h.srv.mu.Unlock()
	ss.mu.Lock()
	t1 := ss.subs["demo/k1"]
	ss.mu.Unlock()
	ss.Reset(t1.sub, "retention")
	h.kafka.dispatch("/demo/k1", "after the gap")
	m := c.message("demo/k1", "after the gap")
	if len(m.Properties.User) != 1 || m.Properties.User[0].Key != PropertyReset || m.Properties.User[0].Val != "retention" {
		t.Fatalf("user properties %+v", m.Properties.User)
	}
	h.kafka.dispatch("/demo/k1", "next")
	if m := c.message("demo/k1", "next"); len(m.Properties.User) != 0 {
		t.Fatalf("reset told twice: %+v", m.Properties.User)
	}
}

var _ = errors.New

// Many CONNECTs with one client identifier at once: exactly one connection
// survives, and it is the one the session delivers to.
func TestConcurrentTakeover(t *testing.T) {
	h := newHarness(t, Config{})
	first := dial(t, h.addr, 5)
	first.mustConnect("dev", false, withExpiry(60))
	first.subscribe(1, sub("demo/k1", 0))
	_ = first.nc.Close()
	waitFor(t, 5*time.Second, "the session to go offline", func() bool { return h.srv.Stats().OfflineSessions == 1 })

	const n = 10
	clients := make([]*client, n)
	for i := range clients {
		clients[i] = dial(t, h.addr, 5)
	}
	errs := make(chan error, n)
	for _, c := range clients {
		go func() {
			c.write(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connect},
				Connect:    packets.ConnectParams{ProtocolName: []byte("MQTT"), ClientIdentifier: "dev", Keepalive: 60},
				Properties: packets.Properties{SessionExpiryInterval: 60, SessionExpiryIntervalFlag: true}})
			ack, err := c.next(10 * time.Second)
			if err == nil && (ack.FixedHeader.Type != packets.Connack || ack.ReasonCode != 0 || !ack.SessionPresent) {
				err = fmt.Errorf("CONNACK %+v", ack)
			}
			errs <- err
		}()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 10*time.Second, "one connection left", func() bool { return h.srv.Stats().Connections == 1 })
	h.kafka.dispatch("/demo/k1", "to the survivor")
	got := 0
	for _, c := range clients {
		for {
			pk, err := c.next(time.Second)
			if err != nil {
				break // closed (after DISCONNECT 0x8E), or the survivor has nothing more
			}
			if pk.FixedHeader.Type == packets.Publish && string(pk.Payload) == "to the survivor" {
				got++
			}
		}
	}
	if got != 1 {
		t.Fatalf("%d connections got the message, want 1", got)
	}
}

// A batch of live messages (core.BatchSubscriber) arrives whole and in order.
func TestDeliverBatch(t *testing.T) {
	h := newHarness(t, Config{})
	c := dial(t, h.addr, 4)
	c.mustConnect("dev", true)
	c.subscribe(1, sub("demo/+", 0))
	h.srv.mu.Lock()
	ss := h.srv.sessions["dev"]
	h.srv.mu.Unlock()
	ss.mu.Lock()
	t1 := ss.subs["demo/+"]
	ss.mu.Unlock()
	var msgs []*core.Message
	for i := range 3 {
		msgs = append(msgs, &core.Message{Subject: fmt.Sprint("/demo/k", i), Topic: "demo", Key: fmt.Sprint("k", i),
			HasKey: true, Payload: []byte(fmt.Sprint(i))})
	}
	ss.DeliverBatch(t1.sub, msgs)
	for i := range 3 {
		c.message(fmt.Sprint("demo/k", i), fmt.Sprint(i))
	}
}
