package integration

import (
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = ln.Close() }()
	return ln.Addr().(*net.TCPAddr).Port
}

// Kafka stopped for a while: publishes fail with a clear error (never a
// false ack), subscribers stay connected, /readyz says not ready; when Kafka
// is back, delivery resumes where it stopped and every acknowledged publish
// arrives exactly once, in order.
func TestKafkaOutage(t *testing.T) {
	dir, port := t.TempDir(), freePort(t)
	opts := []kfake.Opt{kfake.DataDir(dir), kfake.Ports(port), kfake.DefaultNumPartitions(1)}
	broker := startBroker(t, opts...)
	addr := broker.ListenAddrs()[0]
	produce(t, kafkaClient(t, addr), &kgo.Record{Topic: "out", Value: []byte("create")})
	n := startKedge(t, "kafka.bootstrap.servers="+addr, "kafka.delivery.timeout.ms=2000", "kafka.metadata.max.age.ms=300")
	sub, pub := dialWS(t, n.WS()), dialWS(t, n.WS())
	sub.subscribe("/out/k")

	var acked []string
	publish := func(v string) (string, bool) {
		id := pub.send(map[string]any{"op": "publish", "subject": "/out/k", "payload": v})
		m := pub.next(20 * time.Second)
		if m["id"] != id {
			t.Fatalf("reply %v for request %v", m, id)
		}
		if m["op"] == "ack" {
			acked = append(acked, v)
			return "", true
		}
		return m["code"].(string), false
	}
	for i := range 5 {
		if code, ok := publish(strconv.Itoa(i)); !ok {
			t.Fatalf("publish before the outage: %s", code)
		}
	}

	broker.Close()
	waitFor(t, 20*time.Second, "/readyz to say not ready", func() bool {
		code, _ := httpGet("http://" + n.HTTP + "/readyz")
		return code == 503
	})
	if code, ok := publish("during"); ok || !strings.HasPrefix(code, "kafka_") {
		t.Fatalf("publish during the outage: acked=%v code=%q, want a kafka_* error", ok, code)
	}
	id := sub.send(map[string]any{"op": "ping"})
	sub.expect("message", 0) // messages of before the outage are still arriving or arrived
	_ = id

	broker2, err := kfake.NewCluster(append([]kfake.Opt{kfake.NumBrokers(1), kfake.AllowAutoTopicCreation()}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(broker2.Close)
	n.waitReady()
	for i := 5; i < 10; i++ {
		v := strconv.Itoa(i)
		waitFor(t, 20*time.Second, "publish "+v+" to be acknowledged", func() bool {
			_, ok := publish(v)
			return ok
		})
	}

	// Every acknowledged message arrives once, in order; "during" (never
	// acknowledged) may or may not.
	var got []string
	deadline := time.Now().Add(20 * time.Second)
	for len(got) < len(acked) && time.Now().Before(deadline) {
		select {
		case m := <-sub.frames:
			if m["op"] == "message" && m["payload"] != "during" {
				got = append(got, m["payload"].(string))
			}
		case <-time.After(100 * time.Millisecond):
		}
	}
	// The first message was consumed by the expect above.
	want := strings.Join(acked[1:], " ")
	if strings.Join(got, " ") != want {
		t.Fatalf("subscriber got %v, want %s", got, want)
	}
}

// A topic deleted and re-created is a new epoch: a client resuming with a
// position of the old one gets a reset, never messages of the wrong topic.
func TestRecreatedTopicResets(t *testing.T) {
	broker := startBroker(t, kfake.DefaultNumPartitions(1))
	addr := broker.ListenAddrs()[0]
	cl := kafkaClient(t, addr)
	produce(t, cl, &kgo.Record{Topic: "phoenix", Key: []byte("k"), Value: []byte("old")})
	n := startKedge(t, "kafka.bootstrap.servers="+addr, "kafka.metadata.max.age.ms=200")
	c := dialWS(t, n.WS())
	c.subscribe("/phoenix/k")
	oldPos := c.expect("message", 0)["position"].(string)

	if err := broker.DeleteTopic("phoenix"); err != nil {
		t.Fatal(err)
	}
	if err := broker.CreateTopic("phoenix", 2, nil); err != nil {
		t.Fatal(err)
	}
	// A fresh client: the old one knows the old topic ID.
	produce(t, kafkaClient(t, addr), &kgo.Record{Topic: "phoenix", Key: []byte("k"), Value: []byte("new")})
	// The live subscriber gets the new topic's record once kedge has seen the re-creation.
	if m := c.expect("message", 0); m["payload"] != "new" || m["position"] == oldPos {
		t.Fatalf("after re-creation got %v", m)
	}
	// kedge's producer publishes to the new topic too.
	// (The ack and the message coming back from Kafka may arrive in either order.)
	id := c.send(map[string]any{"op": "publish", "subject": "/phoenix/k", "payload": "newer"})
	acked, echoed := false, false
	for range 2 {
		switch m := c.next(20 * time.Second); {
		case m["op"] == "ack" && m["id"] == id:
			acked = true
		case m["op"] == "message" && m["payload"] == "newer":
			echoed = true
		default:
			t.Fatalf("publish to the re-created topic: %v", m)
		}
	}
	if !acked || !echoed {
		t.Fatalf("acked=%v echoed=%v", acked, echoed)
	}
	r := dialWS(t, n.WS())
	id = r.send(map[string]any{"op": "subscribe", "subjects": []string{"/phoenix/k"},
		"positions": map[string]string{"/phoenix/k": oldPos}})
	r.expect("ack", id)
	if m := r.expect("reset", 0); !strings.Contains(m["reason"].(string), "re-created") {
		t.Fatalf("reset %v", m)
	}
	if m := r.expect("message", 0); m["payload"] != "newer" || m["snapshot"] != true {
		t.Fatalf("after the reset want the new topic's snapshot, got %v", m)
	}
}
