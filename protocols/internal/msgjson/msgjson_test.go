package msgjson

import (
	"encoding/json"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/kedgehq/kedge/core"
)

// FuzzAppendString: whatever valid UTF-8 goes in comes back out of
// encoding/json unchanged, as a string and as bytes, with no raw newline.
func FuzzAppendString(f *testing.F) {
	for _, s := range []string{"", "plain", `quo"te\`, "line\nbreak\r\t", "\x00\x1f", "ünï ✓ 🚀", "\u2028\u2029", "\xe2\x80"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if !utf8.ValidString(s) {
			return
		}
		for _, out := range [][]byte{AppendString(nil, s), AppendString(nil, []byte(s))} {
			var back string
			if err := json.Unmarshal(out, &back); err != nil || back != s {
				t.Fatalf("%q → %s → %q, %v", s, out, back, err)
			}
			for _, c := range out {
				if c == '\n' || c == '\r' {
					t.Fatalf("%q → %s has a raw line break", s, out)
				}
			}
		}
	})
}

func TestAppendMessage(t *testing.T) {
	m := &core.Message{Subject: "/d/k", Payload: []byte{0xff, 0}, Pos: core.Position{Epoch: 1, Partition: 2, Offset: 3},
		Time:    time.Date(2026, 11, 21, 20, 41, 11, 123e6, time.UTC),
		Headers: []core.Header{{Key: "h", Value: []byte("v")}, {Key: "b", Value: []byte{0xff}}}}
	got := string(AppendMessage(nil, `{"op":"message",`, m, true))
	want := `{"op":"message","subject":"/d/k","payload_b64":"/wA=","position":"1-2-3","snapshot":true,` +
		`"time":"2026-11-21T20:41:11.123Z","headers":{"h":"v"},"headers_b64":{"b":"/w=="}}`
	if got != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
	if !json.Valid([]byte(got)) {
		t.Fatal("not JSON")
	}
}
