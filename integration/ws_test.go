package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// A record from an outside producer reaches exact and pattern subscribers;
// a record on another key reaches only the pattern subscriber.
func TestOutsideRecordReachesExactAndPatternSubscribers(t *testing.T) {
	n := startKedge(t)
	exact, pattern := dialWS(t, n.WS()), dialWS(t, n.WS())
	exact.subscribe("/demo/k1")
	pattern.subscribe("/demo/+")

	producer := kafkaClient(t, n.Kafka)
	produce(t, producer, &kgo.Record{Topic: "demo", Key: []byte("k1"), Value: []byte("one")})
	for _, c := range []*wsClient{exact, pattern} {
		m := c.expect("message", 0)
		if m["subject"] != "/demo/k1" || m["payload"] != "one" || m["snapshot"] != false {
			t.Fatalf("got %v", m)
		}
		if _, ok := m["position"].(string); !ok {
			t.Fatalf("message without position: %v", m)
		}
	}
	produce(t, producer, &kgo.Record{Topic: "demo", Key: []byte("k2"), Value: []byte("two")})
	if m := pattern.expect("message", 0); m["subject"] != "/demo/k2" || m["payload"] != "two" {
		t.Fatalf("pattern got %v", m)
	}
	exact.quiet(500 * time.Millisecond)
}

// A new subscriber first gets the latest cached message as a snapshot.
func TestSnapshotThenLive(t *testing.T) {
	n := startKedge(t)
	producer := kafkaClient(t, n.Kafka)
	first := dialWS(t, n.WS())
	first.subscribe("/demo/k1")
	produce(t, producer, &kgo.Record{Topic: "demo", Key: []byte("k1"), Value: []byte("v1")},
		&kgo.Record{Topic: "demo", Key: []byte("k1"), Value: []byte("v2")})
	first.expect("message", 0)
	first.expect("message", 0) // v2 is cached now

	late := dialWS(t, n.WS())
	late.subscribe("/demo/k1")
	if m := late.expect("message", 0); m["payload"] != "v2" || m["snapshot"] != true {
		t.Fatalf("want snapshot v2, got %v", m)
	}
	produce(t, producer, &kgo.Record{Topic: "demo", Key: []byte("k1"), Value: []byte("v3")})
	if m := late.expect("message", 0); m["payload"] != "v3" || m["snapshot"] != false {
		t.Fatalf("want live v3, got %v", m)
	}
}

// WebSocket publishes land in Kafka with the subject's topic and key.
func TestPublishLandsInKafka(t *testing.T) {
	n := startKedge(t)
	c := dialWS(t, n.WS())
	cases := []struct {
		subject, topic string
		key            []byte
	}{
		{"/demo/k1", "demo", []byte("k1")},
		{"/demo", "demo", nil},
		{"/vehicles/1/speed", "vehicles", []byte("1/speed")},
	}
	for i, tc := range cases {
		payload := fmt.Sprintf("p%d", i)
		id := c.send(map[string]any{"op": "publish", "subject": tc.subject, "payload": payload, "headers": map[string]string{"h": "v"}})
		ack := c.expect("ack", id)
		if _, ok := ack["position"].(string); !ok {
			t.Fatalf("ack without position: %v", ack)
		}
	}
	got := append(consumeAll(t, n.Kafka, "demo", 2), consumeAll(t, n.Kafka, "vehicles", 1)...)
	for i, tc := range cases {
		r := findRecord(got, tc.topic, fmt.Sprintf("p%d", i))
		if r == nil {
			t.Fatalf("%s: no record in Kafka", tc.subject)
		}
		if (tc.key == nil) != (r.Key == nil) || string(r.Key) != string(tc.key) {
			t.Fatalf("%s: key %q (nil=%v), want %q (nil=%v)", tc.subject, r.Key, r.Key == nil, tc.key, tc.key == nil)
		}
		if len(r.Headers) != 1 || r.Headers[0].Key != "h" || string(r.Headers[0].Value) != "v" {
			t.Fatalf("%s: headers %v", tc.subject, r.Headers)
		}
	}
}

func findRecord(rs []*kgo.Record, topic, value string) *kgo.Record {
	for _, r := range rs {
		if r.Topic == topic && string(r.Value) == value {
			return r
		}
	}
	return nil
}

// The ack of a publish comes only after Kafka acknowledged the record: the
// broker holds its produce response, and no ack arrives until it lets go.
func TestPublishAckWaitsForKafka(t *testing.T) {
	broker := startBroker(t)
	addr := broker.ListenAddrs()[0]
	produce(t, kafkaClient(t, addr), &kgo.Record{Topic: "demo", Value: []byte("create")})
	n := startKedge(t, "kafka.bootstrap.servers="+addr)
	c := dialWS(t, n.WS())

	held := make(chan struct{})
	release := make(chan struct{})
	var once sync.Once
	broker.ControlKey(int16(kmsg.Produce), func(kmsg.Request) (kmsg.Response, error, bool) {
		broker.KeepControl()
		once.Do(func() {
			close(held)
			// Hold this produce request (kedge's only one) until the test lets
			// go; SleepControl keeps the rest of the broker running.
			broker.SleepControl(func() { <-release })
		})
		return nil, nil, false
	})
	id := c.send(map[string]any{"op": "publish", "subject": "/demo/k1", "payload": "held"})
	select {
	case <-held:
	case <-time.After(10 * time.Second):
		t.Fatal("produce request never reached the broker")
	}
	c.quiet(300 * time.Millisecond) // Kafka has not answered: no ack
	close(release)
	ack := c.expect("ack", id)
	pos := ack["position"].(string)
	// The record is in Kafka at the acknowledged position.
	parts := strings.Split(pos, "-")
	off, _ := strconv.ParseInt(parts[2], 10, 64)
	rs := consumeAll(t, addr, "demo", 2)
	if r := findRecord(rs, "demo", "held"); r == nil || r.Offset != off || strconv.Itoa(int(r.Partition)) != parts[1] {
		t.Fatalf("ack position %s does not match the record in Kafka %+v", pos, r)
	}
}

// 10,000 messages over 100 keys reach 50 subscribers with no loss and in
// per-key order.
func TestFanoutNoLossPerKeyOrder(t *testing.T) {
	const keys, perKey, subscribers = 100, 100, 50
	n := startKedge(t, "embedded.partitions=4")
	clients := make([]*wsClient, subscribers)
	for i := range clients {
		clients[i] = dialWS(t, n.WS())
		clients[i].subscribe("/load/+")
	}
	producer := kafkaClient(t, n.Kafka, kgo.ProducerLinger(5*time.Millisecond))
	var wg sync.WaitGroup
	var produceErr error
	var mu sync.Mutex
	for seq := range perKey {
		for k := range keys {
			wg.Add(1)
			producer.Produce(context.Background(), &kgo.Record{Topic: "load", Key: []byte("k" + strconv.Itoa(k)), Value: []byte(strconv.Itoa(seq))},
				func(_ *kgo.Record, err error) {
					if err != nil {
						mu.Lock()
						produceErr = err
						mu.Unlock()
					}
					wg.Done()
				})
		}
	}
	wg.Wait()
	if produceErr != nil {
		t.Fatal(produceErr)
	}
	for i, c := range clients {
		next := map[string]int{}
		for range keys * perKey {
			m := c.next(30 * time.Second)
			subj := m["subject"].(string)
			seq, _ := strconv.Atoi(m["payload"].(string))
			if seq != next[subj] {
				t.Fatalf("subscriber %d, %s: got seq %d, want %d", i, subj, seq, next[subj])
			}
			next[subj]++
		}
		if len(next) != keys {
			t.Fatalf("subscriber %d saw %d keys", i, len(next))
		}
	}
}

// Every bad request gets its specific error frame, and the connection keeps
// working afterwards.
func TestBadRequestsGetErrorsAndConnectionSurvives(t *testing.T) {
	n := startKedge(t, "kafka.topics=demo", "ws.max.message.size=1KiB")
	c := dialWS(t, n.WS())
	big := strings.Repeat("x", 2048)
	cases := []struct {
		name, frame, code string
	}{
		{"no leading slash", `{"op":"subscribe","id":1,"subjects":["demo/k1"]}`, "invalid_subject"},
		{"empty segment", `{"op":"subscribe","id":1,"subjects":["/demo//k1"]}`, "invalid_subject"},
		{"bad topic chars", `{"op":"publish","id":1,"subject":"/de mo/k1","payload":"x"}`, "invalid_subject"},
		{"wildcard publish", `{"op":"publish","id":1,"subject":"/demo/+","payload":"x"}`, "invalid_pattern"},
		{"unexposed topic", `{"op":"subscribe","id":1,"subjects":["/secret/k1"]}`, "not_exposed"},
		{"unexposed publish", `{"op":"publish","id":1,"subject":"/secret/k1","payload":"x"}`, "not_exposed"},
		{"malformed json", `{"op":"subscribe",`, "invalid_json"},
		{"not an object", `[1,2,3]`, "invalid_json"},
		{"unknown op", `{"op":"explode","id":1}`, "unknown_op"},
		{"missing subjects", `{"op":"subscribe","id":1}`, "missing_field"},
		{"oversized payload", `{"op":"publish","id":1,"subject":"/demo/k1","payload":"` + big + `"}`, "payload_too_large"},
	}
	for i, tc := range cases {
		c.sendRaw(tc.frame)
		m := c.expect("error", 0)
		if m["code"] != tc.code {
			t.Fatalf("%s: code %v, want %s (%v)", tc.name, m["code"], tc.code, m)
		}
		if msg, _ := m["message"].(string); msg == "" {
			t.Fatalf("%s: error without a message: %v", tc.name, m)
		}
		// The connection still works.
		id := c.send(map[string]any{"op": "ping", "id": 1000 + i})
		c.expect("pong", id)
	}
	c.subscribe("/demo/k1")
	id := c.send(map[string]any{"op": "publish", "subject": "/demo/k1", "payload": "still here"})
	c.ackAndMessage(id, "still here")
}

// A node started after records were produced serves their snapshots.
func TestRecoverOnStartServesSnapshots(t *testing.T) {
	broker := startBroker(t)
	addr := broker.ListenAddrs()[0]
	produce(t, kafkaClient(t, addr), &kgo.Record{Topic: "sensors", Key: []byte("s1"), Value: []byte("21.5")},
		&kgo.Record{Topic: "sensors", Key: []byte("s1"), Value: []byte("22.0")})
	n := startKedge(t, "kafka.bootstrap.servers="+addr, "kafka.recover.on.start=true")
	c := dialWS(t, n.WS())
	// startKedge waited for /readyz, which waits for the read-back.
	c.subscribe("/sensors/s1")
	if m := c.expect("message", 0); m["payload"] != "22.0" || m["snapshot"] != true {
		t.Fatalf("want snapshot 22.0, got %v", m)
	}

	// Without recover-on-start the same node has nothing to show.
	cold := startKedge(t, "kafka.bootstrap.servers="+addr, "kafka.recover.on.start=false")
	cc := dialWS(t, cold.WS())
	cc.subscribe("/sensors/s1")
	cc.quiet(time.Second)
}

// The embedded broker keeps its data across a restart of kedge.
func TestEmbeddedBrokerSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	first := startKedge(t, "embedded.data.dir="+dir)
	c := dialWS(t, first.WS())
	id := c.send(map[string]any{"op": "publish", "subject": "/demo/k1", "payload": "durable"})
	c.expect("ack", id)
	first.stop()

	second := startKedge(t, "embedded.data.dir="+dir)
	rs := consumeAll(t, second.Kafka, "demo", 1)
	if string(rs[0].Value) != "durable" || string(rs[0].Key) != "k1" {
		t.Fatalf("after restart got %q/%q", rs[0].Key, rs[0].Value)
	}
	c2 := dialWS(t, second.WS())
	c2.subscribe("/demo/k1")
	if m := c2.expect("message", 0); m["payload"] != "durable" || m["snapshot"] != true {
		t.Fatalf("want snapshot durable after restart, got %v", m)
	}
}

// SIGTERM closes clients with the shutdown reason and exits cleanly.
func TestGracefulShutdownClosesClientsWithReason(t *testing.T) {
	n := startKedge(t)
	c := dialWS(t, n.WS())
	c.subscribe("/demo/k1")
	n.stop()
	if code := c.closeCode(10 * time.Second); code != 4000 {
		t.Fatalf("close code %d, want 4000 (shutting down)", code)
	}
}

// While Kafka does not answer, readiness says so and publishes fail with a
// clear error instead of an ack.
func TestKafkaUnreachable(t *testing.T) {
	broker := startBroker(t)
	addr := broker.ListenAddrs()[0]
	produce(t, kafkaClient(t, addr), &kgo.Record{Topic: "demo", Value: []byte("create")})
	n := startKedge(t, "kafka.bootstrap.servers="+addr, "kafka.delivery.timeout.ms=1500", "kafka.metadata.max.age.ms=300")
	c := dialWS(t, n.WS())
	broker.Close()
	waitFor(t, 20*time.Second, "/readyz to report not ready", func() bool {
		code, body := httpGet("http://" + n.HTTP + "/readyz")
		return code == 503 && strings.Contains(body, "unreachable")
	})
	if code, _ := httpGet("http://" + n.HTTP + "/healthz"); code != 200 {
		t.Fatalf("/healthz %d while Kafka is down, want 200", code)
	}
	id := c.send(map[string]any{"op": "publish", "subject": "/demo/k1", "payload": "lost?"})
	m := c.next(20 * time.Second)
	if m["op"] != "error" || m["id"] != id || !strings.HasPrefix(m["code"].(string), "kafka_") {
		t.Fatalf("want a kafka_* error for the publish, got %v", m)
	}
	// The subscriber side stays connected.
	id = c.send(map[string]any{"op": "ping"})
	c.expect("pong", id)
	_ = kfake.Opt(nil)
}

// /metrics serves the documented Prometheus series.
func TestMetrics(t *testing.T) {
	n := startKedge(t)
	c := dialWS(t, n.WS())
	c.subscribe("/demo/k1")
	id := c.send(map[string]any{"op": "publish", "subject": "/demo/k1", "payload": "m"})
	c.ackAndMessage(id, "m")
	code, body := httpGet("http://" + n.HTTP + "/metrics")
	if code != 200 {
		t.Fatalf("/metrics %d", code)
	}
	for _, want := range []string{"kedge_ws_connections 1", "kedge_ws_subscriptions 1", "kedge_messages_in_total 1",
		"kedge_messages_out_total 1", "kedge_publishes_total 1", "kedge_kafka_consumer_lag 0", "kedge_kafka_ready 1"} {
		if !strings.Contains(body, want+"\n") {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	_ = json.Valid
}

// With kafka.topics.regex, a matching topic created after start is picked up
// (a subscriber waiting on it gets its records); others stay unexposed.
func TestTopicsRegexPicksUpNewTopics(t *testing.T) {
	n := startKedge(t, "kafka.topics.regex=fleet-.*", "kafka.metadata.max.age.ms=500")
	c := dialWS(t, n.WS())
	c.subscribe("/fleet-new/v1") // the topic does not exist yet
	produce(t, kafkaClient(t, n.Kafka), &kgo.Record{Topic: "fleet-new", Key: []byte("v1"), Value: []byte("created later")})
	if m := c.expect("message", 0); m["subject"] != "/fleet-new/v1" || m["payload"] != "created later" {
		t.Fatalf("got %v", m)
	}
	id := c.send(map[string]any{"op": "subscribe", "subjects": []string{"/other/v1"}})
	if m := c.expect("error", id); m["code"] != "not_exposed" {
		t.Fatalf("got %v", m)
	}
}
