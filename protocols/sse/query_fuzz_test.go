package sse

import (
	"net/http"
	"net/url"
	"testing"

	"github.com/kedgehq/kedge/core"
)

// FuzzStreamRequest feeds arbitrary query strings and Last-Event-ID headers
// to the parsing of GET /v1/sse. It must never panic; a refusal is a 4xx
// with a code and a message; an accepted request names 1 to
// MaxSubscriptions distinct valid subjects, and its resume cursors (if
// any) are one per subject.
func FuzzStreamRequest(f *testing.F) {
	for _, s := range [][2]string{
		{"subject=/demo/k1&subject=/demo/%2B", ""},
		{"subject=/demo/k1&mode=standard&snapshot=false", ""},
		{"subject=/demo/k1", "AY_VLcQCAQAA"},
		{"subject=/demo/k1&last_event_id=AY_VLcQCAQAA", ""},
		{"subject=demo", ""}, {"subject=/a//b", ""}, {"subject=/demo/%23/x", ""}, {"mode=fast&subject=/a", ""},
		{"subject=/a&subject=/a&subject=/b&subject=/c", ""}, {"subject=%ff", ""}, {"", "!!"}, {"subject=/a", "AQ"},
	} {
		f.Add(s[0], s[1])
	}
	srv := NewServer(&core.Node{Hub: core.NewHub(core.CacheConfig{})}, Config{MaxSubscriptions: 3})
	f.Fuzz(func(t *testing.T, query, lastID string) {
		r := &http.Request{Method: "GET", URL: &url.URL{Path: "/v1/sse", RawQuery: query}, Header: http.Header{}}
		if lastID != "" {
			r.Header.Set("Last-Event-ID", lastID)
		}
		req, aerr := srv.parseStreamRequest(r)
		if aerr != nil {
			if aerr.status < 400 || aerr.status >= 500 || aerr.code == "" || aerr.message == "" {
				t.Fatalf("refusal %d %q %q", aerr.status, aerr.code, aerr.message)
			}
			return
		}
		if n := len(req.names); n == 0 || n > 3 || len(req.filters) != n {
			t.Fatalf("accepted %d subjects, %d filters", n, len(req.filters))
		}
		seen := map[string]bool{}
		for i, name := range req.names {
			if seen[name] || req.filters[i].Name != name {
				t.Fatalf("subjects %q, filters %v", req.names, req.filters)
			}
			seen[name] = true
		}
		if req.since != nil && len(req.since) != len(req.names) {
			t.Fatalf("%d cursors for %d subjects", len(req.since), len(req.names))
		}
	})
}
