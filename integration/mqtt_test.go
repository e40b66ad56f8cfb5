package integration

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	paho3 "github.com/eclipse/paho.mqtt.golang"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// An MQTT publish on demo/k1 lands in Kafka as topic demo, key k1 (read
// back by a franz-go consumer), and reaches a WebSocket subscriber of
// /demo/k1 — from MQTT 3.1.1 and from MQTT 5 with its properties.
func TestMQTTPublishToKafkaAndWebSocket(t *testing.T) {
	n := startKedge(t)
	ws := dialWS(t, n.WS())
	ws.subscribe("/demo/k1")

	pub3 := dialMQTT3(t, n.mqttURL(), "pub3", true)
	pub3.publish("demo/k1", 1, "from 3.1.1")
	pub5 := dialMQTT5(t, n.MQTT, "pub5", nil)
	pf := byte(1)
	resp, err := pub5.publish("demo/k1", 1, "from 5", &paho.PublishProperties{ContentType: "text/plain", PayloadFormat: &pf,
		User: paho.UserProperties{{Key: "trace", Value: "abc"}}})
	if err != nil || resp.ReasonCode != 0 {
		t.Fatalf("MQTT 5 publish: %+v %v", resp, err)
	}

	for _, want := range []string{"from 3.1.1", "from 5"} {
		m := wsMessage(ws)
		if m["subject"] != "/demo/k1" || m["payload"] != want {
			t.Fatalf("WebSocket subscriber got %v, want %q", m, want)
		}
	}
	rs := consumeAll(t, n.Kafka, "demo", 2)
	for i, want := range []string{"from 3.1.1", "from 5"} {
		if string(rs[i].Key) != "k1" || string(rs[i].Value) != want {
			t.Fatalf("record %d: key %q value %q, want k1 %q", i, rs[i].Key, rs[i].Value, want)
		}
	}
	h := map[string]string{}
	for _, hd := range rs[1].Headers {
		h[hd.Key] = string(hd.Value)
	}
	if h["content-type"] != "text/plain" || h["mqtt-payload-format"] != "1" || h["trace"] != "abc" {
		t.Fatalf("MQTT 5 properties as Kafka headers: %v", h)
	}
}

// A record produced to Kafka reaches MQTT subscribers of demo/k1, demo/+
// and demo/#, and not one of demo/k2; Kafka headers reach MQTT 5 as
// properties.
func TestKafkaRecordReachesMQTTSubscribers(t *testing.T) {
	n := startKedge(t)
	subs := map[string]*mqtt3{}
	for _, f := range []string{"demo/k1", "demo/+", "demo/#", "demo/k2"} {
		subs[f] = dialMQTT3(t, n.mqttURL(), "sub-"+strings.NewReplacer("/", "_", "+", "plus", "#", "hash").Replace(f), true)
		subs[f].subscribe(f, 1)
	}
	v5 := dialMQTT5(t, n.MQTT, "sub5", nil)
	v5.subscribe("demo/+", 1)
	produce(t, kafkaClient(t, n.Kafka), &kgo.Record{Topic: "demo", Key: []byte("k1"), Value: []byte("from kafka"),
		Headers: []kgo.RecordHeader{{Key: "content-type", Value: []byte("application/json")}, {Key: "h", Value: []byte("v")}}})
	for _, f := range []string{"demo/k1", "demo/+", "demo/#"} {
		if m := subs[f].expect("demo/k1", "from kafka"); m.qos != 1 || m.retained {
			t.Fatalf("%s: %+v", f, m)
		}
	}
	if m := v5.expect("demo/k1", "from kafka"); m.ctype != "application/json" || m.user["h"] != "v" {
		t.Fatalf("MQTT 5 subscriber got %+v", m)
	}
	subs["demo/k2"].quiet(500 * time.Millisecond)
}

// 10,000 QoS 1 messages over 100 keys, published by MQTT clients, reach 20
// MQTT subscribers with no loss and in per-key order.
func TestMQTTFanoutNoLossPerKeyOrder(t *testing.T) {
	const keys, perKey, subscribers, publishers = 100, 100, 20, 4
	n := startKedge(t, "embedded.partitions=4")
	clients := make([]*mqtt3, subscribers)
	for i := range clients {
		clients[i] = dialMQTT3(t, n.mqttURL(), fmt.Sprint("sub", i), true)
		clients[i].subscribe("load/+", 1)
	}
	// Each publisher owns a quarter of the keys, so every key has one
	// publisher and one order.
	var wg sync.WaitGroup
	errs := make(chan error, publishers)
	for p := range publishers {
		pub := dialMQTT3(t, n.mqttURL(), fmt.Sprint("pub", p), true)
		wg.Add(1)
		go func() {
			defer wg.Done()
			var toks []paho3.Token
			for seq := range perKey {
				for k := p; k < keys; k += publishers {
					toks = append(toks, pub.c.Publish("load/k"+strconv.Itoa(k), 1, false, strconv.Itoa(seq)))
				}
			}
			for _, tok := range toks {
				if !tok.WaitTimeout(60*time.Second) || tok.Error() != nil {
					errs <- fmt.Errorf("publisher %d: %v", p, tok.Error())
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for i, c := range clients {
		next := map[string]int{}
		for range keys * perKey {
			m := c.next(60 * time.Second)
			seq, _ := strconv.Atoi(m.payload)
			if seq != next[m.topic] {
				t.Fatalf("subscriber %d, %s: got seq %d, want %d", i, m.topic, seq, next[m.topic])
			}
			next[m.topic]++
		}
		if len(next) != keys {
			t.Fatalf("subscriber %d saw %d keys", i, len(next))
		}
	}
	code, body := httpGet("http://" + n.HTTP + "/metrics")
	if code != 200 || !strings.Contains(body, "kedge_mqtt_messages_dropped_total 0\n") ||
		!strings.Contains(body, fmt.Sprintf("kedge_mqtt_publishes_total %d\n", keys*perKey)) {
		t.Fatalf("/metrics: %d\n%s", code, mqttMetricLines(body))
	}
}

// wsMessage returns a WebSocket client's next message frame, passing over
// cursor frames (a subscription to a topic that did not exist yet gets
// one before its first message; see docs/protocol-ws.md).
func wsMessage(c *wsClient) map[string]any {
	c.t.Helper()
	for {
		m := c.next(10 * time.Second)
		if m["op"] == "cursor" {
			continue
		}
		if m["op"] != "message" {
			c.t.Fatalf("want a message, got %v", m)
		}
		return m
	}
}

// mqttMetricLines returns the kedge_mqtt_ series of a /metrics body.
func mqttMetricLines(body string) string {
	var out []string
	for _, l := range strings.Split(body, "\n") {
		if strings.HasPrefix(l, "kedge_mqtt_") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// On subscribe, the subject's latest message arrives as the retained
// message; then live ones, not retained.
func TestMQTTRetainedSnapshot(t *testing.T) {
	n := startKedge(t)
	pub := dialMQTT3(t, n.mqttURL(), "pub", true)
	pub.publish("sensors/s1", 1, "21.5")
	pub.publish("sensors/s1", 1, "22.0")
	// Wait until kedge has consumed both (a WebSocket subscriber sees them).
	ws := dialWS(t, n.WS())
	ws.subscribe("/sensors/s1")
	if m := wsMessage(ws); m["payload"] != "22.0" || m["snapshot"] != true {
		t.Fatalf("snapshot %v", m)
	}
	late := dialMQTT3(t, n.mqttURL(), "late", true)
	late.subscribe("sensors/+", 1)
	if m := late.expect("sensors/s1", "22.0"); !m.retained {
		t.Fatal("snapshot without the retain flag")
	}
	pub.publish("sensors/s1", 1, "22.5")
	if m := late.expect("sensors/s1", "22.5"); m.retained {
		t.Fatal("live message with the retain flag")
	}
}

// A persistent session (MQTT 3.1.1 clean session false; MQTT 5 session
// expiry) catches up after a disconnect with what it missed, in order.
func TestMQTTPersistentSessionCatchesUp(t *testing.T) {
	n := startKedge(t)
	producer := kafkaClient(t, n.Kafka)

	dev := dialMQTT3(t, n.mqttURL(), "device-1", false)
	dev.subscribe("fleet/#", 1)
	dev.c.Disconnect(100)
	expiry := uint32(300)
	dev5 := dialMQTT5(t, n.MQTT, "device-5", &paho.Connect{CleanStart: true,
		Properties: &paho.ConnectProperties{SessionExpiryInterval: &expiry}})
	dev5.subscribe("fleet/+", 1)
	_ = dev5.c.Disconnect(&paho.Disconnect{})
	waitFor(t, 10*time.Second, "both sessions offline", func() bool {
		_, body := httpGet("http://" + n.HTTP + "/metrics")
		return strings.Contains(body, "kedge_mqtt_sessions_offline 2\n")
	})

	for i := range 5 {
		produce(t, producer, &kgo.Record{Topic: "fleet", Key: []byte("v1"), Value: []byte(fmt.Sprint("while away ", i))})
	}
	back := dialMQTT3(t, n.mqttURL(), "device-1", false)
	back5 := dialMQTT5(t, n.MQTT, "device-5", &paho.Connect{CleanStart: false,
		Properties: &paho.ConnectProperties{SessionExpiryInterval: &expiry}})
	if !back5.connack.SessionPresent {
		t.Fatal("MQTT 5 session not present")
	}
	for i := range 5 {
		back.expect("fleet/v1", fmt.Sprint("while away ", i))
		back5.expect("fleet/v1", fmt.Sprint("while away ", i))
	}
	produce(t, producer, &kgo.Record{Topic: "fleet", Key: []byte("v1"), Value: []byte("live again")})
	back.expect("fleet/v1", "live again")
	back5.expect("fleet/v1", "live again")
}

// While Kafka rejects writes (kfake's fault injection), a QoS 1 publish is
// never acknowledged: MQTT 5 gets a failure reason code, MQTT 3.1.1 is
// disconnected. Once Kafka takes writes again, publishing works.
func TestMQTTPublishNeverAcknowledgedWhenKafkaRejects(t *testing.T) {
	broker := startBroker(t)
	addr := broker.ListenAddrs()[0]
	produce(t, kafkaClient(t, addr), &kgo.Record{Topic: "demo", Value: []byte("create")})
	n := startKedge(t, "kafka.bootstrap.servers="+addr)
	v5 := dialMQTT5(t, n.MQTT, "v5", nil)
	v3 := dialMQTT3(t, n.mqttURL(), "v3", true)

	var mu sync.Mutex
	rejecting := true
	broker.ControlKey(int16(kmsg.Produce), func(req kmsg.Request) (kmsg.Response, error, bool) {
		broker.KeepControl()
		mu.Lock()
		defer mu.Unlock()
		if !rejecting {
			return nil, nil, false
		}
		return rejectProduce(req.(*kmsg.ProduceRequest)), nil, true
	})

	resp, err := v5.publish("demo/k1", 1, "rejected", nil)
	if err == nil || resp == nil || resp.ReasonCode < 0x80 || !strings.HasPrefix(resp.Properties.ReasonString, "kafka_rejected") {
		t.Fatalf("MQTT 5 publish while Kafka rejects: %+v %v", resp, err)
	}
	tok := v3.c.Publish("demo/k1", 1, false, "rejected too")
	select {
	case lostErr := <-v3.lost:
		t.Logf("MQTT 3.1.1 client disconnected: %v", lostErr)
	case <-time.After(20 * time.Second):
		t.Fatal("MQTT 3.1.1 client not disconnected")
	}
	if tok.WaitTimeout(5*time.Second) && tok.Error() == nil {
		t.Fatal("MQTT 3.1.1 publish acknowledged")
	}

	mu.Lock()
	rejecting = false
	mu.Unlock()
	if resp, err := v5.publish("demo/k1", 1, "accepted", nil); err != nil || resp.ReasonCode != 0 {
		t.Fatalf("publish after Kafka recovered: %+v %v", resp, err)
	}
	for _, r := range consumeAll(t, addr, "demo", 2) {
		if v := string(r.Value); v != "create" && v != "accepted" {
			t.Fatalf("a rejected publish is in Kafka: %q", v)
		}
	}
}

// rejectProduce answers a produce request with INVALID_RECORD for every
// partition, an error franz-go does not retry.
func rejectProduce(req *kmsg.ProduceRequest) *kmsg.ProduceResponse {
	resp := req.ResponseKind().(*kmsg.ProduceResponse)
	for _, t := range req.Topics {
		rt := kmsg.NewProduceResponseTopic()
		rt.Topic, rt.TopicID = t.Topic, t.TopicID
		for _, p := range t.Partitions {
			rp := kmsg.NewProduceResponseTopicPartition()
			rp.Partition, rp.ErrorCode = p.Partition, kerr.InvalidRecord.Code
			rt.Partitions = append(rt.Partitions, rp)
		}
		resp.Topics = append(resp.Topics, rt)
	}
	return resp
}

// MQTT and WebSocket clients share subjects and Kafka's order: an MQTT
// subscriber sees WebSocket publishes and a WebSocket subscriber sees MQTT
// publishes, interleaved in the same order.
func TestMQTTAndWebSocketShareOrder(t *testing.T) {
	n := startKedge(t)
	wsSub := dialWS(t, n.WS())
	wsSub.subscribe("/chat/room1")
	mqttSub := dialMQTT3(t, n.mqttURL(), "listener", true)
	mqttSub.subscribe("chat/room1", 1)

	wsPub := dialWS(t, n.WS())
	mqttPub := dialMQTT3(t, n.mqttURL(), "talker", true)
	var want []string
	for i := range 20 {
		msg := fmt.Sprint("m", i)
		want = append(want, msg)
		if i%2 == 0 {
			id := wsPub.send(map[string]any{"op": "publish", "subject": "/chat/room1", "payload": msg})
			wsPub.expect("ack", id)
		} else {
			mqttPub.publish("chat/room1", 1, msg)
		}
	}
	for _, w := range want {
		if m := wsMessage(wsSub); m["payload"] != w {
			t.Fatalf("WebSocket subscriber got %v, want %s", m["payload"], w)
		}
		mqttSub.expect("chat/room1", w)
	}
}

// MQTT over WebSocket at /mqtt on the HTTP listener.
func TestMQTTOverWebSocket(t *testing.T) {
	n := startKedge(t)
	c := dialMQTT3(t, n.mqttWSURL(), "browser", true)
	c.subscribe("demo/ws", 1)
	c.publish("demo/ws", 1, "round trip")
	c.expect("demo/ws", "round trip")
}

// Bad input gets reason codes and the connection (and server) go on.
func TestMQTTBadInput(t *testing.T) {
	n := startKedge(t, "kafka.topics=demo")
	c := dialMQTT5(t, n.MQTT, "bad", nil)
	ack := c.subscribe("secret/+", 1)
	if len(ack.Reasons) != 1 || ack.Reasons[0] != 0x87 {
		t.Fatalf("SUBACK for an unexposed topic: %+v", ack)
	}
	if ack := c.subscribe("demo//x", 1); ack.Reasons[0] != 0x8F {
		t.Fatalf("SUBACK for an invalid filter: %+v", ack)
	}
	if resp, err := c.publish("secret/k1", 1, "x", nil); err == nil || resp.ReasonCode != 0x87 {
		t.Fatalf("publish to an unexposed topic: %+v %v", resp, err)
	}
	if resp, err := c.publish("demo/", 1, "x", nil); err == nil || resp.ReasonCode != 0x90 {
		t.Fatalf("publish to an invalid topic: %+v %v", resp, err)
	}
	c.subscribe("demo/ok", 1)
	if resp, err := c.publish("demo/ok", 1, "still here", nil); err != nil || resp.ReasonCode != 0 {
		t.Fatalf("publish: %+v %v", resp, err)
	}
	c.expect("demo/ok", "still here")
}

// SIGTERM: an MQTT 5 client gets DISCONNECT "server shutting down" (0x8B).
func TestMQTTShutdownDisconnect(t *testing.T) {
	n := startKedge(t)
	c := dialMQTT5(t, n.MQTT, "v5", nil)
	c.subscribe("demo/k1", 1)
	n.stop()
	select {
	case d := <-c.disconnected:
		if d.ReasonCode != 0x8B {
			t.Fatalf("DISCONNECT reason %#x, want 0x8B", d.ReasonCode)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no DISCONNECT from the server")
	}
}

// mosquitto_pub and mosquitto_sub (Debian's mosquitto-clients), the
// commands README.md shows, work against kedge, on MQTT 3.1.1 and 5.
func TestMosquittoClients(t *testing.T) {
	sub, pub := requireTool(t, "mosquitto_sub"), requireTool(t, "mosquitto_pub")
	n := startKedge(t, "kafka.topics.regex=demo.*")
	host, port, _ := strings.Cut(n.MQTT, ":")
	for _, v := range []string{"mqttv311", "mqttv5"} {
		topic := "demo-" + v + "/k1" // its own topic: no retained message from the round before
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		cmd := exec.CommandContext(ctx, sub, "-h", host, "-p", port, "-V", v, "-q", "1", "-v",
			"-t", topic, "-t", "demo-"+v+"/#", "-C", "2", "-i", "sub-"+v)
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stderr = cmd.Stdout
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// Publish until the subscriber (which needs a moment to subscribe)
		// has printed two messages.
		lines := make(chan string, 10)
		go func() {
			sc := bufio.NewScanner(out)
			for sc.Scan() {
				lines <- sc.Text()
			}
			close(lines)
		}()
		var got []string
		deadline := time.After(20 * time.Second)
		for len(got) < 2 {
			payload := "hello " + v
			if b, err := exec.Command(pub, "-h", host, "-p", port, "-V", v, "-q", "1", "-t", topic, "-m", payload).CombinedOutput(); err != nil {
				t.Fatalf("mosquitto_pub: %v\n%s", err, b)
			}
			select {
			case l, ok := <-lines:
				if !ok {
					t.Fatalf("mosquitto_sub ended: %v", cmd.Wait())
				}
				if l != topic+" "+payload {
					t.Fatalf("mosquitto_sub printed %q", l)
				}
				got = append(got, l)
			case <-time.After(300 * time.Millisecond):
			case <-deadline:
				t.Fatalf("mosquitto_sub printed %v in 20s", got)
			}
		}
		if err := cmd.Wait(); err != nil {
			t.Fatalf("mosquitto_sub: %v", err)
		}
		cancel()
	}
	// An unexposed topic: mosquitto_pub (MQTT 5) reports the refusal.
	b, _ := exec.Command(pub, "-h", host, "-p", port, "-V", "mqttv5", "-q", "1", "-t", "secret/k1", "-m", "x").CombinedOutput()
	if !strings.Contains(strings.ToLower(string(b)), "not authorized") {
		t.Fatalf("mosquitto_pub to an unexposed topic said %q", b)
	}
}

// With authentication on, MQTT clients authenticate with a token as their
// password (mosquitto -P, paho), and are held to its permissions.
func TestMQTTAuthentication(t *testing.T) {
	file := filepath.Join(t.TempDir(), "tokens.json")
	tokens := `[{"name":"device","token":"device-secret","subscribe":["/demo/#"],"publish":["/demo/+"]}]`
	if err := os.WriteFile(file, []byte(tokens), 0o600); err != nil {
		t.Fatal(err)
	}
	n := startKedge(t, "auth.mode=static", "auth.static.file="+file)
	host, port, _ := strings.Cut(n.MQTT, ":")
	pub := requireTool(t, "mosquitto_pub")
	b, err := exec.Command(pub, "-h", host, "-p", port, "-V", "mqttv5", "-t", "demo/k1", "-m", "x").CombinedOutput()
	if err == nil || !strings.Contains(strings.ToLower(string(b)), "bad user name or password") {
		t.Fatalf("mosquitto_pub without a token: %v %s", err, b)
	}
	if b, err := exec.Command(pub, "-h", host, "-p", port, "-V", "mqttv5", "-q", "1", "-u", "device", "-P", "device-secret",
		"-t", "demo/k1", "-m", "authenticated").CombinedOutput(); err != nil {
		t.Fatalf("mosquitto_pub with the token: %v %s", err, b)
	}
	if rs := consumeAll(t, n.Kafka, "demo", 1); string(rs[0].Value) != "authenticated" {
		t.Fatalf("record %q", rs[0].Value)
	}

	c := dialMQTT5(t, n.MQTT, "dev", &paho.Connect{CleanStart: true, PasswordFlag: true, Password: []byte("device-secret")})
	if ack := c.subscribe("other/+", 1); ack.Reasons[0] != 0x87 {
		t.Fatalf("SUBACK outside the permissions: %+v", ack)
	}
	if resp, err := c.publish("demo/a/b", 1, "x", nil); err == nil || resp.ReasonCode != 0x87 {
		t.Fatalf("publish outside the permissions: %+v %v", resp, err)
	}
	c.subscribe("demo/#", 1)
	if m := c.expect("demo/k1", "authenticated"); !m.retained {
		t.Fatal("the snapshot is not retained")
	}
	if resp, err := c.publish("demo/k2", 1, "allowed", nil); err != nil || resp.ReasonCode != 0 {
		t.Fatalf("publish: %+v %v", resp, err)
	}
	c.expect("demo/k2", "allowed")
}
