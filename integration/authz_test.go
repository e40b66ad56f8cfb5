package integration

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	paho3 "github.com/eclipse/paho.mqtt.golang"
	"github.com/golang-jwt/jwt/v5"
	"github.com/gorilla/websocket"
	"github.com/twmb/franz-go/pkg/kgo"
)

// jwtSecret is the HS256 secret of the kedges these tests start.
const jwtSecret = "integration-test-secret-of-32-bytes-or-more"

// mint signs an HS256 token for sub with kedge's permission claim.
func mint(t testing.TB, sub string, exp time.Time, subscribe, publish []string) string {
	t.Helper()
	claims := jwt.MapClaims{"sub": sub, "exp": exp.Unix(), "iat": time.Now().Unix(),
		"kedge": map[string]any{"subscribe": subscribe, "publish": publish}}
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString([]byte(jwtSecret))
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// startJWTKedge runs kedge authenticating with HS256 JWTs, without clock
// leeway (an identity expires at its token's exp).
func startJWTKedge(t *testing.T, sets ...string) *node {
	t.Helper()
	return startKedge(t, append([]string{"auth.mode=jwt", "auth.jwt.secret=" + jwtSecret, "auth.jwt.leeway=-1ms"}, sets...)...)
}

func dialWSHeader(t testing.TB, url string, h http.Header) *wsClient {
	t.Helper()
	conn, resp, err := websocket.DefaultDialer.Dial(url, h)
	if err != nil {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		t.Fatalf("dial %s: %v (HTTP %d)", url, err, status)
	}
	c := &wsClient{t: t, conn: conn, frames: make(chan map[string]any, 100000), closed: make(chan struct{})}
	go c.read()
	t.Cleanup(func() { _ = conn.Close() })
	return c
}

func bearer(tok string) http.Header { return http.Header{"Authorization": {"Bearer " + tok}} }

// sseStream is a raw SSE client: the response's status and JSON body when
// refused, or its events.
type sseStream struct {
	t      testing.TB
	status int
	body   map[string]any
	events chan authSSEEvent
	done   chan struct{}
	cancel context.CancelFunc
}

type authSSEEvent struct {
	typ  string
	data map[string]any
}

func openSSE(t testing.TB, rawURL string, h http.Header) *sseStream {
	t.Helper()
	return openSSEClient(t, http.DefaultClient, rawURL, h)
}

// openSSEClient opens a stream with the client hc.
func openSSEClient(t testing.TB, hc *http.Client, rawURL string, h http.Header) *sseStream {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", rawURL, nil)
	for k, v := range h {
		req.Header[k] = v
	}
	resp, err := hc.Do(req)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	s := &sseStream{t: t, status: resp.StatusCode, events: make(chan authSSEEvent, 10000), done: make(chan struct{}), cancel: cancel}
	t.Cleanup(func() { cancel(); <-s.done })
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		_ = json.Unmarshal(b, &s.body)
		close(s.done)
		return s
	}
	go func() {
		defer close(s.done)
		defer func() { _ = resp.Body.Close() }()
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 4096), 1<<20)
		var ev authSSEEvent
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "" && ev.typ != "":
				s.events <- ev
				ev = authSSEEvent{}
			case strings.HasPrefix(line, "event: "):
				ev.typ = line[7:]
			case strings.HasPrefix(line, "data: "):
				_ = json.Unmarshal([]byte(line[6:]), &ev.data)
			}
		}
	}()
	return s
}

// next returns the next event other than ready, failing after d.
func (s *sseStream) next(d time.Duration) authSSEEvent {
	s.t.Helper()
	timeout := time.After(d)
	for {
		select {
		case ev := <-s.events:
			if ev.typ != "ready" {
				return ev
			}
		case <-s.done:
			s.t.Fatal("the SSE stream ended")
		case <-timeout:
			s.t.Fatalf("no SSE event within %v", d)
		}
	}
}

// The authorization matrix: {WebSocket, SSE, MQTT, HTTP publish} ×
// {allowed, denied} × {subscribe, publish} × {exact subject, pattern}, with
// HS256 JWTs carrying the permissions. Allowed actions work; denied ones
// get each protocol's refusal, and never deliver or produce anything:
// after the denied attempts, the outside world produces to every subject
// involved, then a fence message; each subscriber's stream holds exactly
// the allowed messages before the fence, and each topic in Kafka exactly
// the allowed publishes before its fence.
func TestAuthorizationMatrix(t *testing.T) {
	n := startJWTKedge(t)
	// One identity, the same permissions on every protocol's topic:
	//   subscribe: exact /T/ok, pattern /T/okp/#
	//   publish:   exact /T/pub, pattern /T/pubp/+
	tok := mint(t, "matrix", time.Now().Add(time.Hour), []string{"/+/ok", "/+/okp/#"}, []string{"/+/pub", "/+/pubp/+"})
	type action struct {
		subject string
		allowed bool
	}
	subscribes := map[string]action{ // by the matrix's "exact" / "pattern"
		"allowed exact": {"/ok", true}, "allowed pattern": {"/okp/+", true},
		"denied exact": {"/no", false}, "denied pattern": {"/+", false},
	}
	publishes := map[string]action{ // exact: granted by an exact permission; pattern: by a pattern
		"allowed exact": {"/pub", true}, "allowed pattern": {"/pubp/a", true},
		"denied exact": {"/nopub", false}, "denied pattern": {"/pubp/a/b", false},
	}
	outside := kafkaClient(t, n.Kafka)

	// ---- subscribe: WebSocket, SSE, MQTT ----
	ws := dialWSHeader(t, n.WS(), bearer(tok))
	for name, a := range subscribes {
		id := ws.send(map[string]any{"op": "subscribe", "subjects": []string{"/mxws" + a.subject}})
		m := ws.next(10 * time.Second)
		if a.allowed && (m["op"] != "ack" || m["id"] != id) {
			t.Fatalf("WebSocket %s subscribe: %v", name, m)
		}
		if !a.allowed && (m["op"] != "error" || m["code"] != "forbidden" || m["subject"] != "/mxws"+a.subject) {
			t.Fatalf("WebSocket %s subscribe: %v, want forbidden", name, m)
		}
	}
	var sse []*sseStream
	for name, a := range subscribes {
		s := openSSE(t, sseURL(n, []string{"/mxsse" + a.subject}, "&snapshot=false"), bearer(tok))
		if a.allowed {
			if s.status != 200 {
				t.Fatalf("SSE %s subscribe: %d %v", name, s.status, s.body)
			}
			sse = append(sse, s)
		} else if s.status != 403 || s.body["code"] != "forbidden" || s.body["subject"] != "/mxsse"+a.subject {
			t.Fatalf("SSE %s subscribe: %d %v, want 403 forbidden", name, s.status, s.body)
		}
	}
	mq := dialMQTT5(t, n.MQTT, "matrix", &paho.Connect{CleanStart: true, PasswordFlag: true, Password: []byte(tok)})
	for name, a := range subscribes {
		ack := mq.subscribe("mxmqtt"+a.subject, 1)
		if a.allowed != (ack.Reasons[0] < 0x80) || !a.allowed && ack.Reasons[0] != 0x87 {
			t.Fatalf("MQTT %s subscribe: SUBACK %#x", name, ack.Reasons[0])
		}
	}
	// The outside world produces to every subject the attempts named, then a
	// fence to each allowed subscription: messages of one subscription
	// arrive in order (one partition), those of different subscriptions
	// need not, so a stream is complete once both fences arrived, and a
	// quiet moment after them shows nothing else was on its way.
	for _, topic := range []string{"mxws", "mxsse", "mxmqtt"} {
		for _, key := range []string{"ok", "okp/x", "no", "other", "ok", "okp/fence"} {
			produce(t, outside, &kgo.Record{Topic: topic, Key: []byte(key), Value: []byte(key)})
		}
	}
	want := "[/T/ok=ok /T/ok=ok /T/okp/fence=okp/fence /T/okp/x=okp/x]"
	check := func(proto, topic string, next func() (subject, payload string), quiet func()) {
		t.Helper()
		var got []string
		oks, fence := 0, false
		for oks < 2 || !fence {
			subject, payload := next()
			got = append(got, strings.Replace(subject, "/"+topic+"/", "/T/", 1)+"="+payload)
			oks += strings.Count(subject, "/"+topic+"/ok") - strings.Count(subject, "/"+topic+"/okp")
			fence = fence || subject == "/"+topic+"/okp/fence"
		}
		quiet()
		if fmt.Sprint(sorted(got)) != want {
			t.Fatalf("%s received %q, want %s", proto, sorted(got), want)
		}
	}
	check("WebSocket", "mxws", func() (string, string) {
		m := wsMessage(ws)
		return m["subject"].(string), m["payload"].(string)
	}, func() { ws.quiet(500 * time.Millisecond) })
	events := make(chan authSSEEvent, 100)
	for _, s := range sse {
		go func() {
			for {
				select {
				case ev := <-s.events:
					select {
					case events <- ev:
					case <-s.done:
						return
					}
				case <-s.done:
					return
				}
			}
		}()
	}
	check("SSE", "mxsse", func() (string, string) {
		select {
		case ev := <-events:
			for ev.typ == "ready" {
				ev = <-events
			}
			if ev.typ != "message" {
				t.Fatalf("SSE event %s %v", ev.typ, ev.data)
			}
			return ev.data["subject"].(string), ev.data["payload"].(string)
		case <-time.After(10 * time.Second):
			t.Fatal("no SSE event in 10s")
		}
		return "", ""
	}, func() {
		select {
		case ev := <-events:
			t.Fatalf("unexpected SSE event %s %v", ev.typ, ev.data)
		case <-time.After(500 * time.Millisecond):
		}
	})
	check("MQTT", "mxmqtt", func() (string, string) {
		m := nextMsg(t, mq.msgs, 10*time.Second)
		return "/" + m.topic, m.payload
	}, func() { quietMsgs(t, mq.msgs, 500*time.Millisecond) })

	// ---- publish: WebSocket, MQTT, HTTP ----
	for name, a := range publishes {
		id := ws.send(map[string]any{"op": "publish", "subject": "/mxpws" + a.subject, "payload": name})
		m := ws.next(20 * time.Second)
		if a.allowed && (m["op"] != "ack" || m["id"] != id) {
			t.Fatalf("WebSocket %s publish: %v", name, m)
		}
		if !a.allowed && (m["op"] != "error" || m["code"] != "forbidden") {
			t.Fatalf("WebSocket %s publish: %v, want forbidden", name, m)
		}
		resp, err := mq.publish("mxpmqtt"+a.subject, 1, name, nil)
		switch {
		case a.allowed && (err != nil || resp.ReasonCode != 0):
			t.Fatalf("MQTT %s publish: %+v %v", name, resp, err)
		case !a.allowed && (resp == nil || resp.ReasonCode != 0x87 || !strings.HasPrefix(resp.Properties.ReasonString, "forbidden")):
			t.Fatalf("MQTT %s publish: %+v %v, want 0x87 forbidden", name, resp, err)
		}
		status, body := postJSONAuth(t, "http://"+n.HTTP+"/v1/publish", tok, `{"subject":"/mxphttp`+a.subject+`","payload":"`+name+`"}`)
		if a.allowed && status != 200 || !a.allowed && (status != 403 || body["code"] != "forbidden") {
			t.Fatalf("HTTP %s publish: %d %v", name, status, body)
		}
	}
	// Kafka holds exactly the allowed publishes of each topic.
	for _, topic := range []string{"mxpws", "mxpmqtt", "mxphttp"} {
		produce(t, outside, &kgo.Record{Topic: topic, Key: []byte("pub"), Value: []byte("fence")})
		var values []string
		for _, r := range consumeAll(t, n.Kafka, topic, 3) {
			values = append(values, string(r.Key)+"="+string(r.Value))
		}
		if w := []string{"pub=allowed exact", "pubp/a=allowed pattern", "pub=fence"}; fmt.Sprint(sorted(values)) != fmt.Sprint(sorted(w)) {
			t.Fatalf("Kafka topic %s holds %q, want %q", topic, values, w)
		}
	}
	// A publish outside the permissions over MQTT 3.1.1 (no negative
	// acknowledgement): disconnected, and nothing produced.
	v3 := dialMQTT3Auth(t, n.mqttURL(), "matrix3", tok)
	tk := v3.c.Publish("mxpmqtt3/nopub", 1, false, "denied")
	tk.WaitTimeout(5 * time.Second)
	select {
	case <-v3.lost:
	case <-time.After(10 * time.Second):
		t.Fatal("the MQTT 3.1.1 client publishing outside its permissions was not disconnected")
	}
	produce(t, outside, &kgo.Record{Topic: "mxpmqtt3", Key: []byte("pub"), Value: []byte("fence")})
	if rs := consumeAll(t, n.Kafka, "mxpmqtt3", 1); len(rs) != 1 || string(rs[0].Value) != "fence" {
		t.Fatalf("mxpmqtt3 holds %d records, first %q", len(rs), rs[0].Value)
	}
}

func sorted(s []string) []string {
	out := append([]string(nil), s...)
	for i := range out {
		for j := i + 1; j < len(out); j++ {
			if out[j] < out[i] {
				out[i], out[j] = out[j], out[i]
			}
		}
	}
	return out
}

// An expired token disconnects its connection within a second of expiry on
// every protocol that holds connections: WebSocket (close 4502), SSE (an
// error event, unauthorized), MQTT 5 (DISCONNECT 0x87) and MQTT 3.1.1
// (closed); a connection with a longer-lived token stays.
func TestExpiredTokenDisconnectsWithinASecond(t *testing.T) {
	n := startJWTKedge(t)
	perms := []string{"/exp/#"}
	// Whole seconds: exp is a number of seconds.
	exp := time.Now().Add(4 * time.Second).Truncate(time.Second)
	short := mint(t, "short", exp, perms, perms)
	long := mint(t, "long", time.Now().Add(time.Hour), perms, perms)

	ws := dialWSHeader(t, n.WS(), bearer(short))
	ws.subscribe("/exp/a")
	wsLong := dialWSHeader(t, n.WS(), bearer(long))
	wsLong.subscribe("/exp/a")
	sse := openSSE(t, sseURL(n, []string{"/exp/a"}, "&token="+url.QueryEscape(short)), nil)
	if sse.status != 200 {
		t.Fatalf("SSE: %d %v", sse.status, sse.body)
	}
	mq5 := dialMQTT5(t, n.MQTT, "exp5", &paho.Connect{CleanStart: true, PasswordFlag: true, Password: []byte(short)})
	mq5.subscribe("exp/a", 1)
	mq3 := dialMQTT3Auth(t, n.mqttURL(), "exp3", short)

	type ended struct {
		what string
		at   time.Time
		how  string
	}
	results := make(chan ended, 4)
	go func() {
		code := ws.closeCode(30 * time.Second)
		results <- ended{"WebSocket", time.Now(), fmt.Sprintf("close %d", code)}
	}()
	go func() {
		for {
			select {
			case ev := <-sse.events:
				if ev.typ == "error" {
					results <- ended{"SSE", time.Now(), fmt.Sprintf("error %v reconnect=%v", ev.data["code"], ev.data["reconnect"])}
					return
				}
			case <-sse.done:
				results <- ended{"SSE", time.Now(), "ended without an error event"}
				return
			}
		}
	}()
	go func() {
		select {
		case d := <-mq5.disconnected:
			results <- ended{"MQTT 5", time.Now(), fmt.Sprintf("DISCONNECT %#x %s", d.ReasonCode, d.Properties.ReasonString)}
		case <-time.After(30 * time.Second):
			results <- ended{"MQTT 5", time.Now(), "not disconnected"}
		}
	}()
	go func() {
		select {
		case <-mq3.lost:
			results <- ended{"MQTT 3.1.1", time.Now(), "closed"}
		case <-time.After(30 * time.Second):
			results <- ended{"MQTT 3.1.1", time.Now(), "not disconnected"}
		}
	}()
	want := map[string]string{"WebSocket": "close 4502", "SSE": "error unauthorized reconnect=false",
		"MQTT 5": "DISCONNECT 0x87 token_expired: credentials expired", "MQTT 3.1.1": "closed"}
	for range 4 {
		r := <-results
		late := r.at.Sub(exp)
		t.Logf("%s: %s, %v after expiry", r.what, r.how, late.Round(time.Millisecond))
		if r.how != want[r.what] {
			t.Errorf("%s: %s, want %s", r.what, r.how, want[r.what])
		}
		if late < -50*time.Millisecond || late > time.Second {
			t.Errorf("%s disconnected %v after expiry, want within a second", r.what, late)
		}
	}
	// The long-lived token's connection is still served.
	produce(t, kafkaClient(t, n.Kafka), &kgo.Record{Topic: "exp", Key: []byte("a"), Value: []byte("after")})
	if m := wsMessage(wsLong); m["payload"] != "after" {
		t.Fatalf("long-lived connection got %v", m)
	}
}

// dialMQTT3Auth connects an MQTT 3.1.1 client with tok as its password.
func dialMQTT3Auth(t testing.TB, broker, id, tok string) *mqtt3 {
	t.Helper()
	m := &mqtt3{t: t, msgs: make(chan mqttMsg, 1000), lost: make(chan error, 1)}
	opts := paho3.NewClientOptions().AddBroker(broker).SetClientID(id).SetCleanSession(true).
		SetAutoReconnect(false).SetKeepAlive(30 * time.Second).SetUsername("device").SetPassword(tok).
		SetConnectionLostHandler(func(_ paho3.Client, err error) { m.lost <- err })
	m.c = paho3.NewClient(opts)
	if tk := m.c.Connect(); !tk.WaitTimeout(10*time.Second) || tk.Error() != nil {
		t.Fatalf("MQTT 3.1.1 connect: %v", tk.Error())
	}
	t.Cleanup(func() { m.c.Disconnect(0) })
	return m
}
