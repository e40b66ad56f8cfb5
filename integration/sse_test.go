package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	r3 "github.com/r3labs/sse/v2"
	"github.com/twmb/franz-go/pkg/kgo"
	"gopkg.in/cenkalti/backoff.v1"
)

// sseClient is r3labs' SSE client on a transport whose connections the
// test can cut, and which records the Last-Event-ID of every request.
type sseClient struct {
	t      *testing.T
	cl     *r3.Client
	events chan *r3.Event
	cancel context.CancelFunc
	done   chan struct{} // closed when the client has stopped
	err    error

	mu       sync.Mutex
	conns    []net.Conn
	lastIDs  []string // Last-Event-ID header of each request ("" for none)
	lastGood []byte
}

type recordingTransport struct {
	c    *sseClient
	base http.RoundTripper
}

func (rt recordingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	rt.c.mu.Lock()
	rt.c.lastIDs = append(rt.c.lastIDs, r.Header.Get("Last-Event-ID"))
	rt.c.mu.Unlock()
	return rt.base.RoundTrip(r)
}

func dialSSE(t *testing.T, rawURL string) *sseClient { return dialSSEFrom(t, rawURL, "") }

// dialSSEFrom starts the client as if it had received lastID before (an
// EventSource reconnecting elsewhere, or an app that kept the id).
func dialSSEFrom(t *testing.T, rawURL, lastID string) *sseClient {
	t.Helper()
	c := &sseClient{t: t, events: make(chan *r3.Event, 10000), done: make(chan struct{})}
	dialer := &net.Dialer{}
	tr := &http.Transport{DialContext: func(ctx context.Context, nw, addr string) (net.Conn, error) {
		conn, err := dialer.DialContext(ctx, nw, addr)
		if err == nil {
			c.mu.Lock()
			c.conns = append(c.conns, conn)
			c.mu.Unlock()
		}
		return conn, err
	}}
	ctx, cancel := context.WithCancel(context.Background())
	c.cancel = cancel
	c.cl = r3.NewClient(rawURL)
	c.cl.Connection = &http.Client{Transport: recordingTransport{c, tr}}
	c.cl.ReconnectStrategy = backoff.WithContext(backoff.NewConstantBackOff(50*time.Millisecond), ctx)
	if lastID != "" {
		c.cl.LastEventID.Store([]byte(lastID))
		c.lastGood = []byte(lastID)
	}
	go func() {
		c.err = c.cl.SubscribeRawWithContext(ctx, c.handle)
		close(c.done)
	}()
	t.Cleanup(func() {
		cancel()
		c.cut()
		select {
		case <-c.done:
		case <-time.After(10 * time.Second):
			t.Errorf("the SSE client did not stop")
		}
		tr.CloseIdleConnections()
	})
	return c
}

// handle passes complete events on. r3labs hands on the incomplete last
// event of a broken connection (a browser discards it); kedge writes the
// id line first, so such an event has incomplete data: it is dropped and
// the client resumes from the last complete event's id.
func (c *sseClient) handle(ev *r3.Event) {
	if !json.Valid(ev.Data) {
		c.cl.LastEventID.Store(c.lastGood)
		return
	}
	c.lastGood = append([]byte(nil), ev.ID...)
	c.events <- &r3.Event{ID: c.lastGood, Event: append([]byte(nil), ev.Event...), Data: append([]byte(nil), ev.Data...)}
}

// cut closes every connection the client has opened.
func (c *sseClient) cut() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, conn := range c.conns {
		_ = conn.Close()
	}
}

func (c *sseClient) requests() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.lastIDs...)
}

// next returns the next event and its data decoded.
func (c *sseClient) next() (string, map[string]any) {
	c.t.Helper()
	select {
	case ev := <-c.events:
		var m map[string]any
		if err := json.Unmarshal(ev.Data, &m); err != nil {
			c.t.Fatalf("event %s data %q: %v", ev.Event, ev.Data, err)
		}
		return string(ev.Event), m
	case <-c.done:
		c.t.Fatalf("the SSE client stopped: %v", c.err)
	case <-time.After(20 * time.Second):
		c.t.Fatalf("no SSE event within 20s")
	}
	return "", nil
}

func sseURL(n *node, subjects []string, extra string) string {
	q := url.Values{"subject": subjects}
	return "http://" + n.HTTP + "/v1/sse?" + q.Encode() + extra
}

// An SSE client gets snapshots, then 1,000 live messages over 10 keys in
// order; its connection is cut mid-stream; it reconnects with
// Last-Event-ID and ends with every message exactly once, in order.
func TestSSEResumeAfterCut(t *testing.T) {
	n := startKedge(t)
	producer := kafkaClient(t, n.Kafka)
	const keys, perKey = 10, 100
	var subjects []string
	for k := range keys {
		subjects = append(subjects, fmt.Sprintf("/feed/k%d", k))
		produce(t, producer, &kgo.Record{Topic: "feed", Key: []byte(fmt.Sprintf("k%d", k)), Value: []byte("0")})
	}
	waitCached(t, n, subjects...)
	c := dialSSE(t, sseURL(n, subjects, ""))
	if typ, d := c.next(); typ != "ready" || d["resumed"] != false {
		t.Fatalf("first event %s %v", typ, d)
	}
	got := map[string][]int{}
	record := func(typ string, d map[string]any) {
		subj := d["subject"].(string)
		v, err := strconv.Atoi(d["payload"].(string))
		if err != nil {
			t.Fatalf("payload %v", d)
		}
		if (typ == "snapshot") != (v == 0) {
			t.Fatalf("%s event with payload %d: %v", typ, v, d)
		}
		got[subj] = append(got[subj], v)
	}
	for range keys {
		typ, d := c.next()
		if typ != "snapshot" {
			t.Fatalf("want the %d snapshots first, got %s %v", keys, typ, d)
		}
		record(typ, d)
	}

	// Produce the 1,000 messages while reading them.
	produced := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		for i := 1; i <= perKey; i++ {
			var rs []*kgo.Record
			for k := range keys {
				rs = append(rs, &kgo.Record{Topic: "feed", Key: []byte(fmt.Sprintf("k%d", k)), Value: []byte(strconv.Itoa(i))})
			}
			if err := producer.ProduceSync(ctx, rs...).FirstErr(); err != nil {
				produced <- err
				return
			}
		}
		produced <- nil
	}()
	total := keys
	for ; total < keys+300; total++ {
		record(c.next())
	}
	c.cut() // mid-stream
	for ; total < keys*(perKey+1); total++ {
		typ, d := c.next()
		if typ == "ready" {
			if d["resumed"] != true {
				t.Fatalf("the reconnection did not resume: %v", d)
			}
			total--
			continue
		}
		record(typ, d)
	}
	if err := <-produced; err != nil {
		t.Fatal(err)
	}
	for _, s := range subjects {
		want := make([]int, perKey+1)
		for i := range want {
			want[i] = i
		}
		if fmt.Sprint(got[s]) != fmt.Sprint(want) {
			t.Fatalf("%s got %v, want 0..%d once each, in order", s, got[s], perKey)
		}
	}
	select { // and nothing more: no duplicate after the last one
	case ev := <-c.events:
		if string(ev.Event) != "ready" {
			t.Fatalf("extra event %s %s", ev.Event, ev.Data)
		}
	case <-time.After(500 * time.Millisecond):
	}
	reqs := c.requests()
	if len(reqs) < 2 || reqs[0] != "" || reqs[len(reqs)-1] == "" {
		t.Fatalf("requests' Last-Event-IDs %q: want a first without and a reconnection with one", reqs)
	}
	_, metrics := httpGet("http://" + n.HTTP + "/metrics")
	if !strings.Contains(metrics, fmt.Sprintf("kedge_sse_resumes_total %d", keys)) {
		t.Fatalf("want %d resumed subscriptions in the metrics:\n%s", keys, sseLines(metrics, "kedge_sse"))
	}
}

// waitCached waits until the node has consumed (and cached) a message of
// every subject, so that a subscription made now gets it as its snapshot.
func waitCached(t *testing.T, n *node, subjects ...string) {
	t.Helper()
	for _, s := range subjects {
		waitFor(t, 20*time.Second, "a cached message of "+s, func() bool {
			code, _ := httpGet("http://" + n.HTTP + "/v1/snapshot?subject=" + url.QueryEscape(s))
			return code == 200
		})
	}
}

func sseLines(s, substr string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, substr) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

func postJSON(t *testing.T, rawURL, body string) (int, map[string]any) {
	t.Helper()
	return postJSONAuth(t, rawURL, "", body)
}

// postJSONAuth POSTs a JSON body, with a bearer token unless tok is empty,
// and returns the status and the JSON answer.
func postJSONAuth(t *testing.T, rawURL, tok, body string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequest("POST", rawURL, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	b, _ := io.ReadAll(resp.Body)
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("POST %s: %d %q is not JSON", rawURL, resp.StatusCode, b)
	}
	return resp.StatusCode, m
}

// POST /v1/publish answers with the position once Kafka has the record;
// the record is in Kafka with its key and headers; GET /v1/snapshot serves
// it; bad requests get clear JSON errors and the server keeps serving.
func TestHTTPPublishAndSnapshot(t *testing.T) {
	n := startKedge(t, "http.publish.max.payload=1KiB")
	base := "http://" + n.HTTP
	status, body := postJSON(t, base+"/v1/publish", `{"subject":"/orders/o1","payload":"first","headers":{"source":"http"}}`)
	if status != 200 || body["subject"] != "/orders/o1" || body["position"] == nil {
		t.Fatalf("publish: %d %v", status, body)
	}
	pos := body["position"].(string)
	rs := consumeAll(t, n.Kafka, "orders", 1)
	r := rs[0]
	if string(r.Key) != "o1" || string(r.Value) != "first" || len(r.Headers) != 1 || r.Headers[0].Key != "source" {
		t.Fatalf("record in Kafka: %+v", r)
	}
	if want := fmt.Sprintf("-%d-%d", r.Partition, r.Offset); !strings.HasSuffix(pos, want) {
		t.Fatalf("position %s, record at partition %d offset %d", pos, r.Partition, r.Offset)
	}
	waitFor(t, 10*time.Second, "the snapshot", func() bool {
		code, _ := httpGet(base + "/v1/snapshot?subject=/orders/o1")
		return code == 200
	})
	_, snap := httpGet(base + "/v1/snapshot?subject=/orders/o1")
	var m map[string]any
	if err := json.Unmarshal([]byte(snap), &m); err != nil || m["payload"] != "first" || m["position"] != pos || m["snapshot"] != true {
		t.Fatalf("snapshot %s (%v)", snap, err)
	}

	for _, tc := range []struct{ body, want string }{
		{`{"subject":"orders/o1","payload":"x"}`, "400 invalid_subject"},
		{`{"subject":"/orders/+","payload":"x"}`, "400 invalid_pattern"},
		{`{"subject":"/orders/o1"}`, "400 missing_field"},
		{`{"subject":"/orders/o1","payload":` + strconv.Quote(strings.Repeat("x", 2000)) + `}`, "413 payload_too_large"},
		{`not json`, "400 invalid_json"},
	} {
		status, body := postJSON(t, base+"/v1/publish", tc.body)
		if got := fmt.Sprint(status, " ", body["code"]); got != tc.want || body["message"] == "" {
			t.Errorf("publish %.40s: %s %v, want %s", tc.body, got, body, tc.want)
		}
	}
	if code, body := httpGet(base + "/v1/snapshot?subject=/orders/none"); code != 404 || !strings.Contains(body, `"not_found"`) {
		t.Fatalf("missing snapshot: %d %s", code, body)
	}
	if status, _ := postJSON(t, base+"/v1/publish", `{"subject":"/orders/o2","payload":"second"}`); status != 200 {
		t.Fatalf("after the errors a publish got %d", status)
	}
}

// The README's curl command shows the stream.
func TestSSECurl(t *testing.T) {
	curl := requireTool(t, "curl")
	n := startKedge(t)
	producer := kafkaClient(t, n.Kafka)
	produce(t, producer, &kgo.Record{Topic: "demo", Key: []byte("k1"), Value: []byte("hello from kafka")})
	waitCached(t, n, "/demo/k1")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cmd := exec.CommandContext(ctx, curl, "-sN", "http://"+n.HTTP+"/v1/sse?subject=/demo/k1")
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cancel(); _ = cmd.Wait() }()
	lines := readLines(out)
	lines.expect(t, "event: ready")
	lines.expect(t, "event: snapshot")
	if l := lines.expect(t, "data: "); !strings.Contains(l, `"payload":"hello from kafka"`) {
		t.Fatalf("snapshot data %q", l)
	}
	produce(t, producer, &kgo.Record{Topic: "demo", Key: []byte("k1"), Value: []byte("live")})
	lines.expect(t, "event: message")
	if l := lines.expect(t, "data: "); !strings.Contains(l, `"payload":"live"`) {
		t.Fatalf("message data %q", l)
	}
}

// The id of an event means the same on every node: a stream of a pattern
// over three partitions and an exact subject of another topic, read on one
// node, resumes on another with every missed message once, in order.
func TestSSEResumeOnAnotherNode(t *testing.T) {
	broker := startBroker(t)
	addr := broker.ListenAddrs()[0]
	producer := kafkaClient(t, addr)
	produceKeys := func(topic string, keys []string, from, to int) {
		var rs []*kgo.Record
		for i := from; i <= to; i++ {
			for _, k := range keys {
				rs = append(rs, &kgo.Record{Topic: topic, Key: []byte(k), Value: []byte(strconv.Itoa(i))})
			}
		}
		produce(t, producer, rs...)
	}
	fleet := []string{"v0", "v1", "v2", "v3", "v4"}
	produceKeys("fleet", fleet, 0, 0)
	produceKeys("solo", []string{"k"}, 0, 0)
	a := startKedge(t, "kafka.bootstrap.servers="+addr)
	b := startKedge(t, "kafka.bootstrap.servers="+addr)
	waitCached(t, a, "/solo/k", "/fleet/v0", "/fleet/v4")
	subjects := []string{"/fleet/+", "/solo/k"}

	got := map[string][]int{}
	record := func(d map[string]any) {
		v, _ := strconv.Atoi(d["payload"].(string))
		got[d["subject"].(string)] = append(got[d["subject"].(string)], v)
	}
	c := dialSSE(t, sseURL(a, subjects, "&snapshot=false"))
	if typ, _ := c.next(); typ != "ready" {
		t.Fatalf("first event %s", typ)
	}
	produceKeys("fleet", fleet, 1, 10)
	produceKeys("solo", []string{"k"}, 1, 10)
	for range 60 {
		typ, d := c.next()
		if typ != "message" {
			t.Fatalf("got %s %v", typ, d)
		}
		record(d)
	}
	c.cancel()
	c.cut()
	<-c.done
	last := string(c.lastGood)
	produceKeys("fleet", fleet, 11, 20) // missed
	produceKeys("solo", []string{"k"}, 11, 20)

	r := dialSSEFrom(t, sseURL(b, subjects, "&snapshot=false"), last)
	if typ, d := r.next(); typ != "ready" || d["resumed"] != true {
		t.Fatalf("on the other node: %s %v", typ, d)
	}
	for range 60 {
		typ, d := r.next()
		if typ != "message" {
			t.Fatalf("got %s %v", typ, d)
		}
		record(d)
	}
	want := fmt.Sprint(seqInts(1, 20))
	for _, s := range []string{"/fleet/v0", "/fleet/v1", "/fleet/v2", "/fleet/v3", "/fleet/v4", "/solo/k"} {
		if fmt.Sprint(got[s]) != want {
			t.Fatalf("%s got %v, want %s (once each, in order)", s, got[s], want)
		}
	}
}

func seqInts(from, to int) []int {
	var out []int
	for i := from; i <= to; i++ {
		out = append(out, i)
	}
	return out
}
