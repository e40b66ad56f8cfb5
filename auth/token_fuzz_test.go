package auth

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// FuzzTokenFromRequest feeds arbitrary Authorization headers and query
// strings to the token extraction every HTTP protocol uses. It must never
// panic; a token comes from a Bearer header (trimmed), or else from the
// query parameter (when one is named), and from nowhere else.
func FuzzTokenFromRequest(f *testing.F) {
	for _, s := range [][2]string{
		{"Bearer abc", ""}, {"bearer  abc ", ""}, {"Basic dXNlcjpwYXNz", "token=q"}, {"Bearer", "token=q"},
		{"", "token=a&token=b"}, {"", "token=%zz"}, {"Bearer \x00\xff", ""}, {" Bearer x", ""}, {"", ";;;=&"},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, header, query string) {
		r := &http.Request{Header: http.Header{}, URL: &url.URL{RawQuery: query}}
		if header != "" {
			r.Header.Set("Authorization", header)
		}
		got := TokenFromRequest(r, "token")
		scheme, tok, ok := strings.Cut(header, " ")
		fromHeader := ok && strings.EqualFold(scheme, "Bearer")
		switch {
		case fromHeader && got != strings.TrimSpace(tok):
			t.Fatalf("Bearer header %q gave %q", header, got)
		case !fromHeader && got != r.URL.Query().Get("token"):
			t.Fatalf("no Bearer header (%q): got %q, want the query parameter %q", header, got, r.URL.Query().Get("token"))
		}
		if none := TokenFromRequest(r, ""); !fromHeader && none != "" {
			t.Fatalf("query tokens off, got %q", none)
		}
	})
}
