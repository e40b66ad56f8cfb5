package integration

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/twmb/franz-go/pkg/kgo"
)

// metricValue returns a series' value on a node's /metrics (-1 when absent).
func metricValue(t testing.TB, n *node, series string) int {
	t.Helper()
	_, body := httpGet("http://" + n.HTTP + "/metrics")
	for _, l := range strings.Split(body, "\n") {
		if v, ok := strings.CutPrefix(l, series+" "); ok {
			x, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("%s: %q", series, l)
			}
			return int(x)
		}
	}
	return -1
}

// collectSeqs reads n messages of an MQTT 3.1.1 client (passing over the
// topic's creation record) into per-subject sequences.
func collectSeqs(t *testing.T, m *mqtt3, n int) *seqs {
	t.Helper()
	got := newSeqs()
	for got.count() < n {
		msg := m.next(15 * time.Second)
		if msg.payload == "create" {
			continue
		}
		got.add(t, "/"+msg.topic, msg.payload)
	}
	return got
}

// A QoS 1 persistent session made on node 1 moves to node 2: the client
// comes back there with clean session 0, finds its session (session
// present 1, no SUBSCRIBE) and gets every message published while it was
// away exactly once, in per-key order. Node 1 lets the session go, and
// when the client comes back to node 1 the session moves back, with
// nothing delivered twice.
func TestClusterMQTTSessionMoves(t *testing.T) {
	const keys, perKey = 10, 20
	nodes := startCluster(t, 2, "demo")
	n1, n2 := nodes[0], nodes[1]
	producer := kafkaClient(t, n1.Kafka)

	dev := dialMQTT3(t, n1.mqttURL(), "mover", false)
	if dev.present {
		t.Fatal("a new session present")
	}
	dev.subscribe("demo/#", 1)
	if m := dev.expect("demo", "create"); !m.retained { // the topic's creation record, its latest
		t.Fatalf("%+v", m)
	}
	dev.c.Disconnect(100)
	waitFor(t, 10*time.Second, "the session offline on node 1", func() bool {
		return metricValue(t, n1, "kedge_mqtt_sessions_offline") == 1
	})

	var rs []*kgo.Record
	for i := range perKey {
		for k := range keys {
			rs = append(rs, &kgo.Record{Topic: "demo", Key: []byte(fmt.Sprintf("k%d", k)), Value: []byte(strconv.Itoa(i))})
		}
	}
	produce(t, producer, rs...)

	back := dialMQTT3(t, n2.mqttURL(), "mover", false)
	if !back.present {
		t.Fatal("session not present on node 2")
	}
	got := collectSeqs(t, back, keys*perKey)
	back.quiet(500 * time.Millisecond)
	got.exact(t, "the session on node 2", clusterSubjects("demo", keys), perKey)

	waitFor(t, 10*time.Second, "node 1 to let the session go", func() bool {
		return metricValue(t, n1, "kedge_mqtt_sessions") == 0 && metricValue(t, n1, "kedge_mqtt_sessions_moved_total") == 1
	})
	if v := metricValue(t, n2, "kedge_mqtt_sessions_taken_over_total"); v != 1 {
		t.Fatalf("node 2 took %d sessions over", v)
	}
	// A message now is queued on node 2 only: node 1 holds nothing.
	produce(t, producer, &kgo.Record{Topic: "demo", Key: []byte("k0"), Value: []byte("live")})
	back.expect("demo/k0", "live")
	if v := metricValue(t, n1, "kedge_mqtt_subscriptions"); v != 0 {
		t.Fatalf("node 1 still holds %d subscriptions", v)
	}

	// Back to node 1: session present, nothing again, then live messages.
	back.c.Disconnect(100)
	waitFor(t, 10*time.Second, "the session offline on node 2", func() bool {
		return metricValue(t, n2, "kedge_mqtt_sessions_offline") == 1
	})
	again := dialMQTT3(t, n1.mqttURL(), "mover", false)
	if !again.present {
		t.Fatal("session not present back on node 1")
	}
	again.quiet(500 * time.Millisecond)
	produce(t, producer, &kgo.Record{Topic: "demo", Key: []byte("k1"), Value: []byte("home")})
	again.expect("demo/k1", "home")
	again.quiet(300 * time.Millisecond)
	waitFor(t, 10*time.Second, "node 2 to let the session go", func() bool {
		return metricValue(t, n2, "kedge_mqtt_sessions") == 0
	})
}

// A session is taken over only by the identity that made it: with another
// identity, the same client identifier on another node starts a new
// session (session present 0) and gets nothing of the old one.
func TestClusterMQTTSessionOtherOwner(t *testing.T) {
	broker := startBroker(t)
	addr := broker.ListenAddrs()[0]
	producer := kafkaClient(t, addr)
	produce(t, producer, &kgo.Record{Topic: "demo", Value: []byte("create")})
	n1 := startJWTKedge(t, "kafka.bootstrap.servers="+addr)
	n2 := startJWTKedge(t, "kafka.bootstrap.servers="+addr)
	expiry := uint32(600)
	connect := func(n *node, who string, clean bool) *mqtt5 {
		tok := mint(t, who, time.Now().Add(time.Hour), []string{"/demo/#"}, nil)
		return dialMQTT5(t, n.MQTT, "shared-id", &paho.Connect{CleanStart: clean, PasswordFlag: true, Password: []byte(tok),
			Properties: &paho.ConnectProperties{SessionExpiryInterval: &expiry}})
	}
	alice := connect(n1, "alice", true)
	alice.subscribe("demo/#", 1)
	_ = alice.c.Disconnect(&paho.Disconnect{})
	waitFor(t, 10*time.Second, "alice's session offline", func() bool {
		return metricValue(t, n1, "kedge_mqtt_sessions_offline") == 1
	})
	produce(t, producer, &kgo.Record{Topic: "demo", Key: []byte("k1"), Value: []byte("for alice")})

	bob := connect(n2, "bob", false)
	if bob.connack.SessionPresent {
		t.Fatal("bob resumed alice's session")
	}
	select {
	case m := <-bob.msgs:
		t.Fatalf("bob got %+v", m)
	case <-time.After(time.Second):
	}
	if v := metricValue(t, n2, "kedge_mqtt_sessions_taken_over_total"); v != 0 {
		t.Fatalf("node 2 took %d sessions over", v)
	}
	// Bob's new session supersedes alice's, which ends on node 1.
	waitFor(t, 10*time.Second, "node 1 to end alice's session", func() bool {
		return metricValue(t, n1, "kedge_mqtt_sessions") == 0
	})
}
