package sse

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/kedgehq/kedge/auth"
)

func staticAuth(t *testing.T, shortExpiry time.Time) *auth.Auth {
	t.Helper()
	a, err := auth.New(auth.Config{Mode: []string{"static"}, Static: auth.StaticConfig{Tokens: []auth.StaticToken{
		{Name: "alice", Token: "alice-token", Subscribe: []string{"/demo/#"}, Publish: []string{"/demo/+"}},
		{Name: "short", Token: "short-token", Subscribe: []string{"/#"}, Expires: shortExpiry},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func do(t *testing.T, method, url, token, body string) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.Header.Get("Content-Type") == "text/event-stream" {
		return resp.StatusCode, nil
	}
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, decode(t, string(b))
}

// With authentication on, every endpoint wants a token and checks the
// subjects against its permissions; EventSource can pass the token as a
// query parameter.
func TestAuth(t *testing.T) {
	e := newEnv(t, Config{TokenParam: "access_token"}, 1)
	e.srv.node.Auth = staticAuth(t, time.Now().Add(time.Hour))
	cases := []struct {
		method, path, token, body string
		want                      string
	}{
		{"GET", "/v1/sse?subject=/demo/k", "", "", "401 unauthorized"},
		{"GET", "/v1/sse?subject=/demo/k", "wrong", "", "401 unauthorized"},
		{"GET", "/v1/sse?subject=/demo/k&subject=/other/x", "alice-token", "", "403 forbidden /other/x"},
		{"POST", "/v1/publish", "", `{"subject":"/demo/k","payload":"x"}`, "401 unauthorized"},
		{"POST", "/v1/publish", "alice-token", `{"subject":"/demo/a/b","payload":"x"}`, "403 forbidden /demo/a/b"},
		{"GET", "/v1/snapshot?subject=/other/x", "alice-token", "", "403 forbidden /other/x"},
		{"GET", "/v1/snapshot?subject=/demo/k", "", "", "401 unauthorized"},
		{"POST", "/v1/publish", "alice-token", `{"subject":"/demo/k","payload":"x"}`, "200"},
		{"GET", "/v1/snapshot?subject=/demo/k", "alice-token", "", "200"},
	}
	for _, tc := range cases {
		status, body := do(t, tc.method, e.http.URL+tc.path, tc.token, tc.body)
		got := strings.TrimSpace(fmt.Sprintf("%d %s %s", status, str(body["code"]), str(body["subject"])))
		if status == 200 {
			got = "200"
		}
		if got != tc.want {
			t.Errorf("%s %s (token %q): %s %v, want %s", tc.method, tc.path, tc.token, got, body, tc.want)
		}
	}
	if len(e.pub.published()) != 1 {
		t.Fatalf("published %d, want only the allowed one", len(e.pub.published()))
	}
	r := e.openStream("subject=/demo/%2B&access_token=alice-token", "")
	r.expect("ready")
	if s := e.srv.Stats(); s.Denied != 7 {
		t.Fatalf("denied %d, want 7", s.Denied)
	}
}

// A stream ends with an unauthorized error event when its token expires.
func TestAuthExpiry(t *testing.T) {
	e := newEnv(t, Config{TokenParam: "access_token"}, 1)
	e.srv.node.Auth = staticAuth(t, time.Now().Add(300*time.Millisecond))
	r := e.openStream("subject=/demo/k&access_token=short-token", "")
	r.expect("ready")
	ev := r.expect("error")
	if d := decode(t, ev.data); d["code"] != "unauthorized" || d["reconnect"] != false {
		t.Fatalf("error event %v", d)
	}
	r.ended()
	if e.srv.Stats().Expired != 1 {
		t.Fatalf("expired %d", e.srv.Stats().Expired)
	}
}

func str(v any) string {
	s, _ := v.(string)
	return s
}
