package integration

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// collect reads n message frames and returns their payloads and the last position.
func collectMessages(t *testing.T, c *wsClient, n int) ([]string, string) {
	t.Helper()
	var payloads []string
	last := ""
	for range n {
		m := c.expect("message", 0)
		payloads = append(payloads, m["payload"].(string))
		last = m["position"].(string)
	}
	return payloads, last
}

func seq(from, to int) string {
	var s []string
	for i := from; i <= to; i++ {
		s = append(s, strconv.Itoa(i))
	}
	return strings.Join(s, " ")
}

func produceSeq(t *testing.T, cl *kgo.Client, topic, key string, from, to int) {
	t.Helper()
	var rs []*kgo.Record
	for i := from; i <= to; i++ {
		rs = append(rs, &kgo.Record{Topic: topic, Key: []byte(key), Value: []byte(strconv.Itoa(i))})
	}
	produce(t, cl, rs...)
}

// A client that reconnects with the position of its last message gets every
// message it missed, exactly once and in order, then live ones: from the
// cache, from Kafka when the cache no longer holds them, and on another node.
func TestResumeAfterReconnect(t *testing.T) {
	broker := startBroker(t)
	addr := broker.ListenAddrs()[0]
	cl := kafkaClient(t, addr)
	produceSeq(t, cl, "orders", "k1", 0, 0) // create the topic
	cases := []struct {
		name string
		sets []string
		node int // resume on node 0 or 1
	}{
		{"from the cache", nil, 0},
		{"from Kafka (tiny cache)", []string{"cache.size=2"}, 0},
		{"on another node", nil, 1},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			key := fmt.Sprintf("r%d", i)
			sets := append([]string{"kafka.bootstrap.servers=" + addr}, tc.sets...)
			nodes := []*node{startKedge(t, sets...), startKedge(t, sets...)}
			c := dialWS(t, nodes[0].WS())
			c.subscribe("/orders/" + key)
			produceSeq(t, cl, "orders", key, 1, 5)
			got, pos := collectMessages(t, c, 5)
			if strings.Join(got, " ") != seq(1, 5) {
				t.Fatalf("before disconnect: %v", got)
			}
			if err := c.conn.Close(); err != nil {
				t.Fatal(err)
			}
			produceSeq(t, cl, "orders", key, 6, 30) // missed while away

			r := dialWS(t, nodes[tc.node].WS())
			id := r.send(map[string]any{"op": "subscribe", "subjects": []string{"/orders/" + key},
				"positions": map[string]string{"/orders/" + key: pos}})
			r.expect("ack", id)
			got, _ = collectMessages(t, r, 25)
			produceSeq(t, cl, "orders", key, 31, 31)
			live, _ := collectMessages(t, r, 1)
			if strings.Join(append(got, live...), " ") != seq(6, 31) {
				t.Fatalf("after resume got %v then %v, want %s", got, live, seq(6, 31))
			}
			r.quiet(300 * time.Millisecond) // and no duplicate after
		})
	}
}

// A pattern subscription resumes from the cursor of its subscribe ack,
// advanced by the positions of the messages received.
func TestResumePatternFromAckCursor(t *testing.T) {
	n := startKedge(t, "embedded.partitions=3")
	cl := kafkaClient(t, n.Kafka)
	// Create the topic with a null-key record, which /fleet/+ does not match.
	produce(t, cl, &kgo.Record{Topic: "fleet", Value: []byte("created")})
	c := dialWS(t, n.WS())
	id := c.send(map[string]any{"op": "subscribe", "subjects": []string{"/fleet/+"}, "snapshot": false})
	ack := c.expect("ack", id)
	cursor := ack["cursors"].(map[string]any)["/fleet/+"].(string)
	parts := map[string]string{} // partition → position token
	for _, p := range strings.Split(cursor, ",") {
		parts[strings.Split(p, "-")[1]] = p
	}
	for k := range 6 {
		produceSeq(t, cl, "fleet", fmt.Sprintf("v%d", k), 1, 2)
	}
	for range 12 {
		m := c.expect("message", 0)
		pos := m["position"].(string)
		parts[strings.Split(pos, "-")[1]] = pos
	}
	if err := c.conn.Close(); err != nil {
		t.Fatal(err)
	}
	for k := range 6 {
		produceSeq(t, cl, "fleet", fmt.Sprintf("v%d", k), 3, 4) // missed
	}
	var toks []string
	for _, p := range parts {
		toks = append(toks, p)
	}
	r := dialWS(t, n.WS())
	id = r.send(map[string]any{"op": "subscribe", "subjects": []string{"/fleet/+"},
		"positions": map[string]string{"/fleet/+": strings.Join(toks, ",")}})
	r.expect("ack", id)
	perKey := map[string][]string{}
	for range 12 {
		m := r.expect("message", 0)
		perKey[m["subject"].(string)] = append(perKey[m["subject"].(string)], m["payload"].(string))
	}
	for k := range 6 {
		if got := strings.Join(perKey[fmt.Sprintf("/fleet/v%d", k)], " "); got != "3 4" {
			t.Fatalf("/fleet/v%d resumed with %q, want \"3 4\" (all: %v; cursor %s)", k, got, perKey, strings.Join(toks, ","))
		}
	}
	r.quiet(300 * time.Millisecond)
}

// A client away for longer than Kafka keeps its messages is told so (a
// reset), then gets the snapshot and live messages.
func TestResumePastRetentionResets(t *testing.T) {
	broker := startBroker(t)
	addr := broker.ListenAddrs()[0]
	cl := kafkaClient(t, addr)
	produceSeq(t, cl, "metrics", "m1", 0, 0)
	n := startKedge(t, "kafka.bootstrap.servers="+addr, "cache.size=1")
	c := dialWS(t, n.WS())
	c.subscribe("/metrics/m1")
	produceSeq(t, cl, "metrics", "m1", 1, 3)
	_, pos := collectMessages(t, c, 4) // snapshot 0, then 1..3
	if err := c.conn.Close(); err != nil {
		t.Fatal(err)
	}
	produceSeq(t, cl, "metrics", "m1", 4, 9)
	// Retention removes everything before the last record.
	rs := consumeAll(t, addr, "metrics", 10)
	last := rs[len(rs)-1]
	if err := broker.DeleteRecords("metrics", last.Partition, last.Offset); err != nil {
		t.Fatal(err)
	}
	r := dialWS(t, n.WS())
	id := r.send(map[string]any{"op": "subscribe", "subjects": []string{"/metrics/m1"},
		"positions": map[string]string{"/metrics/m1": pos}})
	r.expect("ack", id)
	reset := r.expect("reset", 0)
	if reset["subject"] != "/metrics/m1" || !strings.Contains(reset["reason"].(string), "retention") {
		t.Fatalf("reset %v", reset)
	}
	if m := r.expect("message", 0); m["payload"] != "9" || m["snapshot"] != true {
		t.Fatalf("after the reset want the snapshot 9, got %v", m)
	}
}

// A bad position token gets a clear error and subscribes nothing.
func TestResumeBadPosition(t *testing.T) {
	n := startKedge(t)
	c := dialWS(t, n.WS())
	id := c.send(map[string]any{"op": "subscribe", "subjects": []string{"/demo/k1"}, "positions": map[string]string{"/demo/k1": "nonsense"}})
	if m := c.expect("error", id); m["code"] != "invalid_position" {
		t.Fatalf("got %v", m)
	}
	id = c.send(map[string]any{"op": "subscribe", "subjects": []string{"/demo/k1"}, "positions": map[string]string{"/demo/k2": "1-0-1"}})
	if m := c.expect("error", id); m["code"] != "invalid_field" {
		t.Fatalf("got %v", m)
	}
}
