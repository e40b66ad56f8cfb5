package auth

import (
	"net/http/httptest"
	"testing"
)

func TestOrigins(t *testing.T) {
	cases := []struct {
		list         []string
		origin, host string
		want         bool
	}{
		{nil, "https://evil.example", "kedge.example", true}, // empty list: any (development default)
		{[]string{"*"}, "https://evil.example", "kedge.example", true},
		{[]string{"https://app.example"}, "https://app.example", "kedge.example", true},
		{[]string{"https://app.example/"}, "HTTPS://APP.example", "kedge.example", true},
		{[]string{"https://app.example"}, "https://evil.example", "kedge.example", false},
		{[]string{"https://app.example"}, "http://app.example", "kedge.example", false}, // scheme matters
		{[]string{"https://app.example"}, "https://app.example:8443", "kedge.example", false},
		{[]string{"https://app.example"}, "", "kedge.example", true},                               // not a browser page
		{[]string{"https://app.example"}, "http://kedge.example:8080", "kedge.example:8080", true}, // kedge's own pages
		{[]string{"https://app.example"}, "null", "kedge.example", false},
	}
	for _, c := range cases {
		if got := NewOrigins(c.list).Allowed(c.origin, c.host); got != c.want {
			t.Errorf("%v: origin %q host %q: %v, want %v", c.list, c.origin, c.host, got, c.want)
		}
	}
	var none *Origins
	if !none.Allowed("https://x", "y") || !none.Any() {
		t.Error("a nil Origins refuses")
	}
	r := httptest.NewRequest("GET", "http://kedge.example/v1/ws", nil)
	r.Header.Set("Origin", "https://evil.example")
	if NewOrigins([]string{"https://app.example"}).AllowedRequest(r) {
		t.Error("AllowedRequest allowed another origin")
	}
}
