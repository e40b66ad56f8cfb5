package integration

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kedgehq/kedge/protocols/ws/client"
)

// seqs collects, per subject, the sequence numbers a subscriber received.
type seqs struct {
	mu  sync.Mutex
	got map[string][]int
	n   int
}

func newSeqs() *seqs { return &seqs{got: map[string][]int{}} }

func (s *seqs) add(t testing.TB, subject, payload string) {
	v, err := strconv.Atoi(payload)
	if err != nil {
		t.Errorf("%s: payload %q", subject, payload)
		return
	}
	s.mu.Lock()
	s.got[subject] = append(s.got[subject], v)
	s.n++
	s.mu.Unlock()
}

func (s *seqs) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.n
}

// exact checks that every subject got 0..perKey-1, each once and in order.
func (s *seqs) exact(t testing.TB, who string, subjects []string, perKey int) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	want := seqString(0, perKey-1)
	for _, subj := range subjects {
		if got := intsString(s.got[subj]); got != want {
			t.Errorf("%s: %s got %s, want %s", who, subj, got, want)
		}
	}
	if s.n != perKey*len(subjects) {
		t.Errorf("%s: %d messages, want %d", who, s.n, perKey*len(subjects))
	}
}

func intsString(v []int) string {
	s := make([]string, len(v))
	for i, x := range v {
		s[i] = strconv.Itoa(x)
	}
	return strings.Join(s, " ")
}

func seqString(from, to int) string {
	var v []int
	for i := from; i <= to; i++ {
		v = append(v, i)
	}
	return intsString(v)
}

// clusterSubjects are the subjects /TOPIC/k0 … of keys keys.
func clusterSubjects(topic string, keys int) []string {
	var out []string
	for k := range keys {
		out = append(out, fmt.Sprintf("/%s/k%d", topic, k))
	}
	return out
}

// startCluster starts a broker and n kedge nodes on it, with the topic
// created (by a null-key record, which no /topic/+ subscription matches).
func startCluster(t *testing.T, n int, topic string) []*node {
	t.Helper()
	broker := startBroker(t)
	addr := broker.ListenAddrs()[0]
	produce(t, kafkaClient(t, addr), &kgo.Record{Topic: topic, Value: []byte("create")})
	var nodes []*node
	for range n {
		nodes = append(nodes, startKedge(t, "kafka.bootstrap.servers="+addr))
	}
	return nodes
}

// Three nodes, one Kafka: an MQTT publish on node 1 reaches a WebSocket
// subscriber (the Go SDK) on node 3 and an SSE subscriber on node 2, every
// message once and in per-key order.
func TestClusterMQTTPublishReachesWSAndSSE(t *testing.T) {
	const keys, perKey = 3, 20
	nodes := startCluster(t, 3, "cluster")
	subjects := clusterSubjects("cluster", keys)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	wsGot := newSeqs()
	c, err := client.Connect(ctx, nodes[2].WS(), client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Close() }()
	if _, err := c.Subscribe(ctx, "/cluster/+", func(m client.Message) { wsGot.add(t, m.Subject, string(m.Payload)) },
		client.SubscribeOptions{NoSnapshot: true, OnReset: func(r string) { t.Errorf("WebSocket reset: %s", r) }}); err != nil {
		t.Fatal(err)
	}
	sse := dialSSE(t, sseURL(nodes[1], []string{"/cluster/+"}, "&snapshot=false"))
	if typ, _ := sse.next(); typ != "ready" {
		t.Fatalf("first SSE event %s", typ)
	}

	pub := dialMQTT5(t, nodes[0].MQTT, "cluster-publisher", nil)
	for i := range perKey {
		for k := range keys {
			resp, err := pub.publish(fmt.Sprintf("cluster/k%d", k), 1, strconv.Itoa(i), nil)
			if err != nil || resp.ReasonCode != 0 {
				t.Fatalf("MQTT publish k%d/%d: %v %+v", k, i, err, resp)
			}
		}
	}

	sseGot := newSeqs()
	for sseGot.count() < keys*perKey {
		typ, d := sse.next()
		if typ != "message" {
			t.Fatalf("SSE %s event %v", typ, d)
		}
		sseGot.add(t, d["subject"].(string), d["payload"].(string))
	}
	waitFor(t, 20*time.Second, "the WebSocket subscriber's messages", func() bool { return wsGot.count() >= keys*perKey })
	time.Sleep(300 * time.Millisecond) // and nothing more
	sseGot.exact(t, "SSE on node 2", subjects, perKey)
	wsGot.exact(t, "WebSocket on node 3", subjects, perKey)
	select {
	case ev := <-sse.events:
		t.Fatalf("an SSE event more: %s %s", ev.Event, ev.Data)
	default:
	}
}

// balancer is a TCP load balancer in front of kedge nodes: each new
// connection goes to the first backend that is in service and accepts it.
type balancer struct {
	ln       net.Listener
	mu       sync.Mutex
	backends []string
	conns    map[net.Conn]struct{}
	wg       sync.WaitGroup
}

func startBalancer(t *testing.T, backends ...string) *balancer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &balancer{ln: ln, backends: backends, conns: map[net.Conn]struct{}{}}
	b.wg.Go(b.serve)
	t.Cleanup(func() {
		_ = ln.Close()
		b.mu.Lock()
		for c := range b.conns {
			_ = c.Close()
		}
		b.mu.Unlock()
		b.wg.Wait()
	})
	return b
}

func (b *balancer) addr() string { return b.ln.Addr().String() }

// remove takes a backend out of service (its health check failed): new
// connections go elsewhere; open ones stay until their node closes them.
func (b *balancer) remove(backend string) {
	b.mu.Lock()
	b.backends = slices.DeleteFunc(b.backends, func(s string) bool { return s == backend })
	b.mu.Unlock()
}

func (b *balancer) serve() {
	for {
		c, err := b.ln.Accept()
		if err != nil {
			return
		}
		b.wg.Go(func() { b.pipe(c) })
	}
}

func (b *balancer) track(c net.Conn, on bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if on {
		b.conns[c] = struct{}{}
	} else {
		delete(b.conns, c)
	}
}

func (b *balancer) pipe(c net.Conn) {
	b.track(c, true)
	defer b.track(c, false)
	defer func() { _ = c.Close() }()
	b.mu.Lock()
	backends := slices.Clone(b.backends)
	b.mu.Unlock()
	var up net.Conn
	for _, a := range backends {
		var err error
		if up, err = net.DialTimeout("tcp", a, time.Second); err == nil {
			break
		}
	}
	if up == nil {
		return
	}
	b.track(up, true)
	defer b.track(up, false)
	defer func() { _ = up.Close() }()
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(up, c); done <- struct{}{} }()
	go func() { _, _ = io.Copy(c, up); done <- struct{}{} }()
	<-done // either side ended: end both
	_ = c.Close()
	_ = up.Close()
	<-done
}

// A node stopped mid-stream (SIGTERM, or kill -9): its clients, which
// reach the cluster through a load balancer, reconnect to another node.
// The WebSocket (Go SDK) and SSE clients end with every message exactly
// once and in order. MQTT sessions live in their node
// (docs/protocol-mqtt.md): the MQTT client's persistent session does not
// survive the move, and the new node says so (CONNACK session present 0);
// after subscribing again it gets each key's latest message (retained),
// then every later one, once and in order — what was published between
// its node's end and its new subscription, but the latest, is missed.
func TestClusterNodeStopped(t *testing.T) {
	for _, kill := range []bool{false, true} {
		name := "SIGTERM"
		if kill {
			name = "kill -9"
		}
		t.Run(name, func(t *testing.T) { testNodeStopped(t, kill) })
	}
}

func testNodeStopped(t *testing.T, kill bool) {
	const keys, perKey = 3, 100
	nodes := startCluster(t, 3, "stream")
	subjects := clusterSubjects("stream", keys)
	httpLB := startBalancer(t, nodes[0].HTTP, nodes[1].HTTP) // node 1 first: every client lands there
	mqttLB := startBalancer(t, nodes[0].MQTT, nodes[1].MQTT)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()

	// The WebSocket client: the Go SDK, which reconnects and resumes by itself.
	wsGot := newSeqs()
	var wsConnects atomic.Int32
	wsc, err := client.Connect(ctx, "ws://"+httpLB.addr()+"/v1/ws", client.Options{MinBackoff: 20 * time.Millisecond,
		MaxBackoff: 200 * time.Millisecond, OnConnect: func() { wsConnects.Add(1) }})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = wsc.Close() }()
	if _, err := wsc.Subscribe(ctx, "/stream/+", func(m client.Message) { wsGot.add(t, m.Subject, string(m.Payload)) },
		client.SubscribeOptions{NoSnapshot: true, OnReset: func(r string) { t.Errorf("WebSocket reset: %s", r) }}); err != nil {
		t.Fatal(err)
	}
	// The SSE client: reconnects by itself with Last-Event-ID, like EventSource.
	sse := openEventSource(t, "http://"+httpLB.addr()+"/v1/sse?snapshot=false&subject="+url.QueryEscape("/stream/+"))
	if typ, _ := sse.next(); typ != "ready" {
		t.Fatalf("first SSE event %s", typ)
	}
	// The MQTT client: QoS 1 in a persistent session.
	expiry := uint32(600)
	session := &paho.ConnectProperties{SessionExpiryInterval: &expiry}
	m1 := dialMQTT5(t, mqttLB.addr(), "device-1", &paho.Connect{CleanStart: true, Properties: session})
	if ack := m1.subscribe("stream/+", 1); ack == nil || len(ack.Reasons) != 1 || ack.Reasons[0] != 1 {
		t.Fatalf("SUBACK %+v", ack)
	}

	// Publish from node 3 while node 1 goes away.
	pub, err := client.Connect(ctx, nodes[2].WS(), client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = pub.Close() }()
	third := make(chan struct{})
	published := make(chan error, 1)
	go func() {
		for i := range perKey {
			if i == perKey/3 {
				close(third)
			}
			for k := range keys {
				if _, err := pub.Publish(ctx, fmt.Sprintf("/stream/k%d", k), []byte(strconv.Itoa(i)), nil); err != nil {
					published <- fmt.Errorf("publish k%d/%d: %w", k, i, err)
					return
				}
			}
			time.Sleep(3 * time.Millisecond)
		}
		published <- nil
	}()
	<-third
	httpLB.remove(nodes[0].HTTP) // its health check fails
	mqttLB.remove(nodes[0].MQTT)
	if kill {
		nodes[0].kill()
	} else {
		nodes[0].stop()
	}

	// MQTT: the connection ends; the client comes back (through the
	// balancer, to node 2) asking for its session.
	select {
	case <-m1.c.Done():
	case <-time.After(15 * time.Second):
		t.Fatal("the MQTT connection outlived its node")
	}
	if !kill {
		select {
		case d := <-m1.disconnected:
			if d.ReasonCode != 0x8B {
				t.Errorf("MQTT DISCONNECT %#x, want 0x8B server shutting down", d.ReasonCode)
			}
		case <-time.After(5 * time.Second):
			t.Error("no MQTT DISCONNECT from the stopping node")
		}
	}
	m2 := dialMQTT5(t, mqttLB.addr(), "device-1", &paho.Connect{CleanStart: false, Properties: session})
	if !m2.connack.SessionPresent {
		t.Fatal("session not present on node 2: the session did not move")
	}

	if err := <-published; err != nil {
		t.Fatal(err)
	}
	total := keys * perKey
	sseGot := newSeqs()
	for sseGot.count() < total {
		typ, d := sse.next()
		switch typ {
		case "message":
			sseGot.add(t, d["subject"].(string), d["payload"].(string))
		case "error": // shutting_down from node 1; the client reconnects
		case "ready":
			if d["resumed"] != true {
				t.Fatalf("SSE stream not resumed: %v", d)
			}
		default:
			t.Fatalf("SSE %s event %v", typ, d)
		}
	}
	waitFor(t, 30*time.Second, "the WebSocket subscriber's messages", func() bool { return wsGot.count() >= total })
	time.Sleep(300 * time.Millisecond) // and nothing more
	wsGot.exact(t, "WebSocket (Go SDK)", subjects, perKey)
	if n := wsConnects.Load(); n < 2 {
		t.Errorf("the WebSocket client connected %d times: want a reconnection", n)
	}
	sseGot.exact(t, "SSE", subjects, perKey)
	if reqs := sse.requests(); len(reqs) < 2 || reqs[len(reqs)-1] == "" {
		t.Errorf("SSE requests' Last-Event-IDs %q: want a resume", reqs)
	}

	// MQTT: every message from the first node, once, in order; then, from
	// the second, what the session had not acknowledged on the first and
	// everything after it. After SIGTERM the positions are exact: nothing
	// twice. After kill -9 they are the last checkpoint's (at most about a
	// second old): what came after it is delivered again, in order (QoS 1
	// is at least once).
	before := map[string][]int{}
	for len(m1.msgs) > 0 {
		m := <-m1.msgs
		if m.retained {
			t.Errorf("retained message %+v on a new subscription without one", m)
		}
		v, _ := strconv.Atoi(m.payload)
		before["/"+m.topic] = append(before["/"+m.topic], v)
	}
	after := map[string][]int{}
	waitFor(t, 20*time.Second, "the MQTT client's last messages", func() bool {
		for len(m2.msgs) > 0 {
			m := <-m2.msgs
			if m.retained {
				t.Errorf("retained message %+v in a resumed session", m)
			}
			v, _ := strconv.Atoi(m.payload)
			after["/"+m.topic] = append(after["/"+m.topic], v)
		}
		for _, s := range subjects {
			if a := after[s]; len(a) == 0 || a[len(a)-1] != perKey-1 {
				return false
			}
		}
		return true
	})
	time.Sleep(300 * time.Millisecond)
	for len(m2.msgs) > 0 {
		m := <-m2.msgs
		t.Errorf("MQTT: more after the last message: %+v", m)
	}
	again := 0
	for _, s := range subjects {
		b, a := before[s], after[s]
		if got, want := intsString(b), seqString(0, len(b)-1); got != want {
			t.Errorf("MQTT %s before the move: %s, want 0 … in order", s, got)
		}
		first := len(b)
		if kill && len(a) > 0 && a[0] < len(b) {
			first = a[0]
			again += len(b) - a[0]
		}
		if got, want := intsString(a), seqString(first, perKey-1); got != want {
			t.Errorf("MQTT %s after the move (%d before it): %s, want %s", s, len(b), got, want)
		}
	}
	t.Logf("MQTT: %d messages before the move, session present 1 on node 2, %d delivered again",
		len(before[subjects[0]])+len(before[subjects[1]])+len(before[subjects[2]]), again)
}

// eventSource is an SSE client that behaves like a browser's EventSource:
// whenever the stream ends or breaks it reconnects to the same URL with
// the id of the last complete event as Last-Event-ID.
type eventSource struct {
	t      *testing.T
	events chan sseEvent
	mu     sync.Mutex
	ids    []string // Last-Event-ID of each request
}

type sseEvent struct {
	typ  string
	data map[string]any
}

func openEventSource(t *testing.T, rawURL string) *eventSource {
	t.Helper()
	es := &eventSource{t: t, events: make(chan sseEvent, 100000)}
	ctx, cancel := context.WithCancel(context.Background())
	tr := &http.Transport{}
	var wg sync.WaitGroup
	wg.Go(func() {
		last := ""
		for ctx.Err() == nil {
			es.stream(ctx, tr, rawURL, &last)
			select {
			case <-ctx.Done():
			case <-time.After(50 * time.Millisecond):
			}
		}
	})
	t.Cleanup(func() {
		cancel()
		wg.Wait()
		tr.CloseIdleConnections()
	})
	return es
}

// stream reads one response; only complete events count.
func (es *eventSource) stream(ctx context.Context, tr *http.Transport, rawURL string, last *string) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, rawURL, nil)
	if err != nil {
		return
	}
	if *last != "" {
		req.Header.Set("Last-Event-ID", *last)
	}
	es.mu.Lock()
	es.ids = append(es.ids, *last)
	es.mu.Unlock()
	resp, err := tr.RoundTrip(req)
	if err != nil {
		return
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		return
	}
	r := bufio.NewReaderSize(resp.Body, 64<<10)
	var id, typ, data string
	hasID := false
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return // an incomplete event is dropped
		}
		line = strings.TrimSuffix(line, "\n")
		field, value, _ := strings.Cut(line, ":")
		value = strings.TrimPrefix(value, " ")
		switch {
		case line == "":
			if typ != "" {
				var d map[string]any
				if err := json.Unmarshal([]byte(data), &d); err != nil {
					es.t.Errorf("SSE %s event data %q: %v", typ, data, err)
				}
				es.events <- sseEvent{typ, d}
			}
			if hasID {
				*last = id
			}
			id, typ, data, hasID = "", "", "", false
		case field == "id":
			id, hasID = value, true
		case field == "event":
			typ = value
		case field == "data":
			data = value
		}
	}
}

func (es *eventSource) next() (string, map[string]any) {
	es.t.Helper()
	select {
	case ev := <-es.events:
		return ev.typ, ev.data
	case <-time.After(20 * time.Second):
		es.t.Fatal("no SSE event within 20s")
	}
	return "", nil
}

func (es *eventSource) requests() []string {
	es.mu.Lock()
	defer es.mu.Unlock()
	return slices.Clone(es.ids)
}
