package console

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func get(t *testing.T, h http.Handler, method, path string) (*http.Response, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(method, path, nil))
	resp := rec.Result()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// The page, its script and its style come from the binary, with the
// WebSocket path written into the page; nothing is loaded from elsewhere.
func TestConsole(t *testing.T) {
	h := Handler("/custom/ws")
	resp, body := get(t, h, "GET", "/")
	if resp.StatusCode != 200 || !strings.Contains(resp.Header.Get("Content-Type"), "text/html") ||
		!strings.Contains(body, `content="/custom/ws"`) || strings.Contains(body, "{{") {
		t.Fatalf("index: %d %s\n%s", resp.StatusCode, resp.Header, body)
	}
	if !strings.Contains(resp.Header.Get("Content-Security-Policy"), "default-src 'self'") {
		t.Fatalf("CSP %q", resp.Header.Get("Content-Security-Policy"))
	}
	for path, ctype := range map[string]string{"/console.js": "javascript", "/console.css": "text/css"} {
		resp, body := get(t, h, "GET", path)
		if resp.StatusCode != 200 || !strings.Contains(resp.Header.Get("Content-Type"), ctype) || len(body) < 500 {
			t.Errorf("%s: %d %q, %d bytes", path, resp.StatusCode, resp.Header.Get("Content-Type"), len(body))
		}
	}
	for _, page := range []string{body, mustGet(t, h, "/console.js"), mustGet(t, h, "/console.css")} {
		if strings.Contains(page, "http://") || strings.Contains(page, "https://") || strings.Contains(page, "//cdn") {
			t.Errorf("the console refers to another site:\n%s", page)
		}
	}
	if resp, _ := get(t, h, "GET", "/nope.js"); resp.StatusCode != 404 {
		t.Errorf("unknown file: %d", resp.StatusCode)
	}
	if resp, _ := get(t, h, "GET", "/static/"); resp.StatusCode != 404 {
		t.Errorf("directory: %d", resp.StatusCode)
	}
	if resp, _ := get(t, h, "POST", "/"); resp.StatusCode != 405 {
		t.Errorf("POST: %d", resp.StatusCode)
	}
}

func mustGet(t *testing.T, h http.Handler, path string) string {
	_, body := get(t, h, "GET", path)
	return body
}
