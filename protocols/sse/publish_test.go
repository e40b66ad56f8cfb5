package sse

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/kedgehq/kedge/core"
)

func post(t *testing.T, e *env, body string) (int, map[string]any) {
	t.Helper()
	resp, err := http.Post(e.http.URL+"/v1/publish", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	b, _ := io.ReadAll(resp.Body)
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("Content-Type %q for %s", ct, b)
	}
	return resp.StatusCode, decode(t, string(b))
}

// A publish is answered with its position after the publisher's ack, and
// reaches a stream subscriber like any record; the snapshot endpoint then
// serves it.
func TestPublishAndSnapshot(t *testing.T) {
	e := newEnv(t, Config{}, 1)
	r := e.openStream("subject=/demo/k1", "")
	r.expect("ready")
	status, body := post(t, e, `{"subject":"/demo/k1","payload":"hello","headers":{"b":"2","a":"1"}}`)
	if status != 200 || body["position"] != "1-0-0" || body["subject"] != "/demo/k1" {
		t.Fatalf("publish: %d %v", status, body)
	}
	ev := r.expect("message")
	if d := decode(t, ev.data); d["payload"] != "hello" || fmt.Sprint(d["headers"]) != "map[a:1 b:2]" {
		t.Fatalf("delivered %v", d)
	}
	status, body = post(t, e, `{"subject":"/demo/k1","payload_b64":"/wA="}`)
	if status != 200 || body["position"] != "1-0-1" {
		t.Fatalf("binary publish: %d %v", status, body)
	}
	if p := e.pub.published(); len(p) != 2 || string(p[1].Payload) != "\xff\x00" || p[0].Headers[0].Key != "a" {
		t.Fatalf("published %+v", p)
	}

	resp, err := http.Get(e.http.URL + "/v1/snapshot?subject=/demo/k1")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if d := decode(t, string(b)); resp.StatusCode != 200 || d["payload_b64"] != "/wA=" || d["position"] != "1-0-1" || d["snapshot"] != true {
		t.Fatalf("snapshot: %d %s", resp.StatusCode, b)
	}
	for query, want := range map[string]string{
		"subject=/demo/none":              "404 not_found",
		"subject=/demo/%2B":               "400 invalid_pattern",
		"":                                "400 missing_field",
		"subject=/demo/a&subject=/demo/b": "400 missing_field",
		"subject=/__x":                    "403 not_exposed",
	} {
		resp, err := http.Get(e.http.URL + "/v1/snapshot?" + query)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if got := fmt.Sprint(resp.StatusCode, " ", decode(t, string(b))["code"]); got != want {
			t.Errorf("snapshot %q: %s (%s), want %s", query, got, b, want)
		}
	}
}

// Every bad publish gets its status and code, and nothing reaches Kafka.
func TestPublishErrors(t *testing.T) {
	e := newEnv(t, Config{MaxPayload: 8}, 1)
	cases := []struct {
		body   string
		status int
		code   string
	}{
		{``, 400, "invalid_json"},
		{`nope`, 400, "invalid_json"},
		{`{"subject":"/demo/k","payload":"a"} {}`, 400, "invalid_json"},
		{"{\"subject\":\"/demo/k\",\"payload\":\"\xff\"}", 400, "invalid_json"},
		{`{"subject":5}`, 400, "invalid_json"},
		{`{"payload":"a"}`, 400, "missing_field"},
		{`{"subject":"/demo/k"}`, 400, "missing_field"},
		{`{"subject":"/demo/k","payload":"a","payload_b64":"YQ=="}`, 400, "invalid_field"},
		{`{"subject":"/demo/k","payload_b64":"!!"}`, 400, "invalid_field"},
		{`{"subject":"demo/k","payload":"a"}`, 400, "invalid_subject"},
		{`{"subject":"/demo/+","payload":"a"}`, 400, "invalid_pattern"},
		{`{"subject":"/__consumer_offsets/k","payload":"a"}`, 403, "not_exposed"},
		{`{"subject":"/demo/k","payload":"123456789"}`, 413, "payload_too_large"},
		{`{"subject":"/demo/k","payload":"` + strings.Repeat("a", 200<<10) + `"}`, 413, "payload_too_large"},
	}
	for _, tc := range cases {
		status, body := post(t, e, tc.body)
		if status != tc.status || body["code"] != tc.code || body["message"] == "" {
			short := tc.body
			if len(short) > 60 {
				short = short[:60]
			}
			t.Errorf("%q: %d %v, want %d %s", short, status, body, tc.status, tc.code)
		}
	}
	if p := e.pub.published(); len(p) != 0 {
		t.Fatalf("bad publishes reached the publisher: %+v", p)
	}
	resp, err := http.Get(e.http.URL + "/v1/publish")
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != 405 || resp.Header.Get("Allow") != "POST" {
		t.Fatalf("GET /v1/publish: %d Allow %q", resp.StatusCode, resp.Header.Get("Allow"))
	}
}

// Kafka's refusals map to their codes and statuses.
func TestPublishKafkaErrors(t *testing.T) {
	e := newEnv(t, Config{}, 1)
	errs := map[string]error{
		"unavailable": fmt.Errorf("produce: %w", core.ErrUnavailable),
		"timeout":     core.ErrTimeout,
		"busy":        core.ErrBusy,
		"rejected":    core.ErrRejected,
		"shutdown":    core.ErrShuttingDown,
		"bug":         fmt.Errorf("something else"),
	}
	e.pub.mu.Lock()
	e.pub.errFor = func(p core.Publication) error { return errs[p.Subject.Key] }
	e.pub.mu.Unlock()
	want := map[string]string{
		"unavailable": "503 kafka_unavailable", "timeout": "504 kafka_timeout", "busy": "503 kafka_busy",
		"rejected": "502 kafka_rejected", "shutdown": "503 shutting_down", "bug": "500 internal",
	}
	for key, w := range want {
		status, body := post(t, e, `{"subject":"/demo/`+key+`","payload":"x"}`)
		if got := fmt.Sprint(status, " ", body["code"]); got != w || body["subject"] != "/demo/"+key {
			t.Errorf("%s: %s %v, want %s", key, got, body, w)
		}
	}
	if s := e.srv.Stats(); s.PublishErrors != 6 || s.Published != 0 {
		t.Fatalf("stats %+v", s)
	}
}

// The publish body decoder is fed anything: it never panics, and either
// returns a subject with a payload within the limit or an error with a
// documented code.
func FuzzDecodePublish(f *testing.F) {
	for _, s := range []string{
		`{"subject":"/demo/k","payload":"hello","headers":{"h":"v"}}`,
		`{"subject":"/demo/k","payload_b64":"AAE="}`,
		`{"subject":"/demo/k","payload":"a","payload_b64":"YQ=="}`,
		`{"subject":"/demo/k"}`, `{}`, `[]`, `null`, `{"subject":"/a","payload":"\u0000"} x`,
	} {
		f.Add([]byte(s))
	}
	codes := map[string]bool{codeInvalidJSON: true, codeMissingField: true, codeInvalidField: true, codePayloadTooLarge: true}
	f.Fuzz(func(t *testing.T, body []byte) {
		subject, payload, headers, aerr := decodePublish(body, 64)
		if aerr != nil {
			if !codes[aerr.code] || aerr.status < 400 || aerr.status > 499 || aerr.message == "" {
				t.Fatalf("error %+v", aerr)
			}
			return
		}
		if subject == "" || payload == nil || len(payload) > 64 {
			t.Fatalf("accepted subject %q payload %q", subject, payload)
		}
		for i := 1; i < len(headers); i++ {
			if headers[i-1].Key >= headers[i].Key {
				t.Fatalf("headers not sorted or repeated: %+v", headers)
			}
		}
	})
}
