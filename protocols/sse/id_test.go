package sse

import (
	"encoding/base64"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/kedgehq/kedge/core"
)

var idCases = []struct {
	name    string
	names   []string
	cursors []cursor
}{
	{"one exact subject", []string{"/demo/k1"}, []cursor{{epoch: 3070022373, parts: []partOffset{{0, 41}}}}},
	{"unknown topic", []string{"/new/k"}, []cursor{{}}},
	{"nothing yet", []string{"/a"}, []cursor{{epoch: 1, parts: []partOffset{{0, -1}, {1, -1}}}}},
	{"mixed", []string{"/a/1", "/a/+", "/b", "/c/#"}, []cursor{
		{epoch: 7, parts: []partOffset{{2, 100}}},
		{epoch: 7, parts: []partOffset{{0, 5}, {1, -1}, {2, 99}}},
		{epoch: 9, parts: []partOffset{{5, 1 << 40}}},
		{},
	}},
	{"large partitions", []string{"/x/#"}, []cursor{{epoch: 0, parts: []partOffset{{0, 0}, {1<<31 - 1, 1<<63 - 2}}}}},
}

func TestIDRoundTrip(t *testing.T) {
	for _, tc := range idCases {
		tok := formatID(fingerprint(tc.names), tc.cursors)
		for _, c := range tok {
			if !strings.ContainsRune("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_", c) {
				t.Fatalf("%s: id %q has %q, not URL-safe", tc.name, tok, c)
			}
		}
		got, err := parseID(tok, tc.names)
		if err != nil {
			t.Fatalf("%s: parseID(%q): %v", tc.name, tok, err)
		}
		for i := range got {
			if len(got[i].parts) == 0 && len(tc.cursors[i].parts) == 0 {
				continue
			}
			if !reflect.DeepEqual(got[i], tc.cursors[i]) {
				t.Fatalf("%s: entry %d = %+v, want %+v", tc.name, i, got[i], tc.cursors[i])
			}
		}
	}
}

// Ten keys of one partition — the integration test's stream — stay short.
func TestIDCompact(t *testing.T) {
	var names []string
	var cs []cursor
	for k := range 10 {
		names = append(names, "/demo/k"+string(rune('0'+k)))
		cs = append(cs, cursor{epoch: 3070022373, parts: []partOffset{{0, int64(123456 + 17*k)}}})
	}
	tok := formatID(fingerprint(names), cs)
	if len(tok) > 70 {
		t.Fatalf("id of ten keys is %d characters: %s", len(tok), tok)
	}
}

func TestIDErrors(t *testing.T) {
	names := []string{"/a/1", "/a/2"}
	good := appendIDBinary(nil, fingerprint(names), []cursor{{epoch: 1, parts: []partOffset{{0, 5}}}, {epoch: 1, parts: []partOffset{{0, 6}}}})
	enc := base64.RawURLEncoding.EncodeToString
	mutate := func(f func(b []byte) []byte) string { return enc(f(append([]byte(nil), good...))) }
	cases := map[string]string{
		"empty":            "",
		"not base64":       "a+b/",
		"padded":           enc(good) + "=",
		"too long":         strings.Repeat("A", maxIDLen+1),
		"version":          mutate(func(b []byte) []byte { b[0] = 2; return b }),
		"other subjects":   mutate(func(b []byte) []byte { b[1] ^= 1; return b }),
		"count":            mutate(func(b []byte) []byte { b[5] = 3; return b }),
		"truncated":        mutate(func(b []byte) []byte { return b[:len(b)-1] }),
		"trailing bytes":   mutate(func(b []byte) []byte { return append(b, 0) }),
		"short":            enc([]byte{1, 2}),
		"offset below -1":  enc(appendIDBinary(nil, fingerprint(names), []cursor{{epoch: 1, parts: []partOffset{{0, -2}}}, {epoch: 1}})),
		"no epoch first":   mutate(func(b []byte) []byte { b[6] &^= 1; return b }),
		"many partitions":  mutate(func(b []byte) []byte { return append(append(b[:6], 0xff, 0xff, 0x03), b[7:]...) }),
		"huge partition":   enc(append(append([]byte{1}, good[1:5]...), 1, 3, 1, 0xff, 0xff, 0xff, 0xff, 0x0f, 0)),
		"overlong varint":  enc(append(append([]byte{1}, good[1:5]...), 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01)),
		"epoch over range": enc(append(append([]byte{1}, good[1:5]...), 1, 1, 0x80, 0x80, 0x80, 0x80, 0x10)),
	}
	for name, tok := range cases {
		_, err := parseID(tok, names)
		if err == nil || !errors.Is(err, core.ErrBadPosition) || core.Code(err) != "invalid_position" {
			t.Errorf("%s: parseID(%q) = %v, want an invalid_position error", name, tok, err)
		}
	}
}

func TestCursorAdvance(t *testing.T) {
	var c cursor
	c.advance(core.Position{Epoch: 1, Partition: 2, Offset: 5})
	c.advance(core.Position{Epoch: 1, Partition: 0, Offset: 9})
	c.advance(core.Position{Epoch: 1, Partition: 2, Offset: 3}) // older: kept at 5
	c.advance(core.Position{Epoch: 1, Partition: 1, Offset: 1})
	want := []partOffset{{0, 9}, {1, 1}, {2, 5}}
	if !reflect.DeepEqual(c.parts, want) {
		t.Fatalf("parts %v, want %v", c.parts, want)
	}
	if got := c.core().String(); got != "1-0-9,1-1-1,1-2-5" {
		t.Fatalf("core cursor %s", got)
	}
	if back := cursorFrom(c.core()); !reflect.DeepEqual(back, c) {
		t.Fatalf("cursorFrom(core()) = %+v", back)
	}
	c.advance(core.Position{Epoch: 2, Partition: 1, Offset: 0}) // a new epoch starts over
	if c.epoch != 2 || !reflect.DeepEqual(c.parts, []partOffset{{1, 0}}) {
		t.Fatalf("after a new epoch %+v", c)
	}
}

// The id codec is fed anything: it never panics, every error is
// invalid_position, and what it accepts encodes back to the same cursors.
func FuzzParseID(f *testing.F) {
	for _, tc := range idCases {
		f.Add(formatID(fingerprint(tc.names), tc.cursors), strings.Join(tc.names, " "))
	}
	f.Add("AQAAAAAB", "/a")
	f.Add("", "/a /b")
	f.Fuzz(func(t *testing.T, tok, joined string) {
		names := strings.Fields(joined)
		cs, err := parseID(tok, names)
		if err != nil {
			if core.Code(err) != "invalid_position" {
				t.Fatalf("error %v has code %s", err, core.Code(err))
			}
			return
		}
		if len(cs) != len(names) {
			t.Fatalf("%d cursors for %d names", len(cs), len(names))
		}
		for _, c := range cs {
			for i, p := range c.parts {
				if p.offset < -1 || p.partition < 0 || (i > 0 && p.partition <= c.parts[i-1].partition) {
					t.Fatalf("bad cursor %+v", c)
				}
			}
		}
		again, err := parseID(formatID(fingerprint(names), cs), names)
		if err != nil {
			t.Fatalf("re-encoded id does not parse: %v", err)
		}
		for i := range cs {
			if len(cs[i].parts) == 0 && len(again[i].parts) == 0 {
				continue
			}
			if !reflect.DeepEqual(cs[i], again[i]) {
				t.Fatalf("round trip changed entry %d: %+v → %+v", i, cs[i], again[i])
			}
		}
	})
}
