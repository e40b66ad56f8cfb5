package auth

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"
)

func TestValidatePermission(t *testing.T) {
	for _, tc := range []struct {
		p       string
		wantErr error
	}{
		{"/vehicles", nil},
		{"/vehicles/1/speed", nil},
		{"/vehicles/+/speed", nil},
		{"/vehicles/#", nil},
		{"/#", nil},
		{"/+", nil},
		{"/+/status", nil},
		{"/+/+/#", nil},
		{"", errNoSlash},
		{"vehicles/#", errNoSlash},
		{"/", errEmptySeg},
		{"/a//b", errEmptySeg},
		{"/a/", errEmptySeg},
		{"/a/#/b", errHashNotLast},
		{"/#/a", errHashNotLast},
		{"/a/b+", errMixedWildcard},
		{"/a/#b", errMixedWildcard},
		{"/a+/b", errMixedWildcard},
	} {
		err := ValidatePermission(tc.p)
		if !errors.Is(err, tc.wantErr) || (tc.wantErr == nil) != (err == nil) {
			t.Errorf("ValidatePermission(%q) = %v, want %v", tc.p, err, tc.wantErr)
		}
		if err != nil && !strings.Contains(err.Error(), fmt.Sprintf("%q", tc.p)) {
			t.Errorf("error %q does not name the pattern %q", err, tc.p)
		}
	}
	if err := ValidatePermissions([]string{"/a/#", "/b/+", "/c/#/d"}); !errors.Is(err, errHashNotLast) {
		t.Errorf("ValidatePermissions with one bad pattern = %v", err)
	}
}

func TestMatch(t *testing.T) {
	for _, tc := range []struct {
		perm string
		yes  []string
		no   []string
	}{
		{"/vehicles/#", []string{"/vehicles", "/vehicles/1", "/vehicles/1/speed"},
			[]string{"/vehiclesX", "/other", "/other/vehicles", "/vehicle"}},
		{"/vehicles/+/speed", []string{"/vehicles/1/speed", "/vehicles/speed/speed"},
			[]string{"/vehicles/1", "/vehicles/1/speed/x", "/vehicles/speed", "/vehicles", "/vehicles/1/2/speed"}},
		{"/vehicles/1", []string{"/vehicles/1"}, []string{"/vehicles", "/vehicles/1/x", "/vehicles/10", "/vehicles/+"}},
		{"/vehicles", []string{"/vehicles"}, []string{"/vehicles/1", "/vehicle"}},
		{"/#", []string{"/a", "/a/b", "/a/b/c"}, []string{"/", "", "a", "/a//b", "/a/"}},
		{"/+", []string{"/a", "/b"}, []string{"/a/b"}},
		{"/+/status", []string{"/x/status", "/y/status"}, []string{"/x", "/x/status/1", "/x/y/status"}},
		{"/a/+/#", []string{"/a/x", "/a/x/y", "/a/x/y/z"}, []string{"/a", "/b/x"}},
		// Malformed permissions grant nothing.
		{"/a/#/b", nil, []string{"/a/x/b", "/a/#/b", "/a/b"}},
		{"/a+", nil, []string{"/a+", "/a"}},
		{"a/b", nil, []string{"a/b", "/a/b"}},
		{"", nil, []string{"", "/"}},
		// Malformed subjects, or subjects with wildcards, are granted by nothing.
		{"/a/#", []string{"/a/b"}, []string{"/a/", "/a//b", "/a/+", "/a/#", "a/b"}},
	} {
		for _, s := range tc.yes {
			if !Match(tc.perm, s) {
				t.Errorf("Match(%q, %q) = false, want true", tc.perm, s)
			}
		}
		for _, s := range tc.no {
			if Match(tc.perm, s) {
				t.Errorf("Match(%q, %q) = true, want false", tc.perm, s)
			}
		}
	}
}

func TestMatchDoesNotAllocate(t *testing.T) {
	n := testing.AllocsPerRun(100, func() {
		if !Match("/vehicles/+/speed/#", "/vehicles/17/speed/now") {
			t.Fatal("no match")
		}
	})
	if n != 0 {
		t.Errorf("Match allocates %v times per call", n)
	}
}

func TestCovered(t *testing.T) {
	for _, tc := range []struct {
		perms   []string
		pattern string
		want    bool
	}{
		// The examples.
		{[]string{"/vehicles/#"}, "/vehicles/+/speed", true},
		{[]string{"/vehicles/+/speed"}, "/vehicles/#", false},
		{[]string{"/vehicles/#"}, "/vehicles/#", true},
		{[]string{"/vehicles/#"}, "/vehicles", true},
		{[]string{"/vehicles/#"}, "/vehicles/1/speed", true},
		{[]string{"/vehicles/+/speed"}, "/vehicles/+/speed", true},
		{[]string{"/vehicles/+/speed"}, "/vehicles/1/speed", true},
		{[]string{"/vehicles/+/speed"}, "/vehicles/+/+", false},
		{[]string{"/vehicles/+/speed"}, "/vehicles/1/+", false},
		{[]string{"/vehicles/1/speed"}, "/vehicles/+/speed", false},
		// A union covers what no single permission does.
		{[]string{"/v", "/v/+/#"}, "/v/#", true},
		{[]string{"/v/+/#"}, "/v/#", false}, // misses "/v" itself
		{[]string{"/v"}, "/v/#", false},
		{[]string{"/v/a/#", "/v/+/x"}, "/v/+/x", true},
		{[]string{"/v/a/#", "/v/+/x"}, "/v/+/#", false},
		{[]string{"/v/a", "/v/+"}, "/v/+", true},
		{[]string{"/v/a/#", "/v/b/#"}, "/v/+/#", false},
		{[]string{"/v/a/#", "/v/b/#"}, "/v/a/+", true},
		{[]string{"/v/+/+", "/v/+", "/v/+/+/#"}, "/v/+/#", true},
		{[]string{"/v/+/+", "/v/+/+/#"}, "/v/+/#", false}, // misses "/v/x"
		{[]string{"/a/+/+"}, "/a/+/#", false},
		{[]string{"/a/x/#", "/a/+/y", "/a/+"}, "/a/+/y", true},
		{[]string{"/a/x/#", "/a/+/y", "/a/+"}, "/a/+/z", false},
		{[]string{"/a/x/#", "/a/+"}, "/a/x/+", true},
		// Wildcard topics in permissions.
		{[]string{"/#"}, "/anything/+/#", true},
		{[]string{"/#"}, "/#", true},
		{[]string{"/+/#"}, "/#", true}, // every subject has a topic
		{[]string{"/+"}, "/#", false},
		{[]string{"/+"}, "/a/#", false},
		{[]string{"/+/status"}, "/x/status", true},
		{[]string{"/+/status"}, "/x/+", false},
		{[]string{"/+/status", "/x/#"}, "/x/+", true},
		{[]string{"/a/#"}, "/b/#", false},
		{nil, "/a", false},
		{nil, "/a/#", false},
		// Malformed permissions grant nothing and spoil nothing.
		{[]string{"/a/#/b", "/a/b"}, "/a/b", true},
		{[]string{"/a/#/b", "/a/b"}, "/a/#", false},
		{[]string{"/a/b+", "/a/#"}, "/a/+", true},
	} {
		got, err := Covered(tc.perms, tc.pattern)
		if err != nil || got != tc.want {
			t.Errorf("Covered(%q, %q) = %v, %v; want %v", tc.perms, tc.pattern, got, err, tc.want)
		}
		if len(tc.perms) == 1 && Covers(tc.perms[0], tc.pattern) != tc.want {
			t.Errorf("Covers(%q, %q) != %v", tc.perms[0], tc.pattern, tc.want)
		}
		// The brute-force reference agrees with every table row.
		if ref := bruteCovered(tc.perms, tc.pattern); ref != tc.want {
			t.Errorf("bruteCovered(%q, %q) = %v; the table says %v", tc.perms, tc.pattern, ref, tc.want)
		}
	}
}

func TestCoveredMalformedPattern(t *testing.T) {
	for _, p := range []string{"", "a", "/", "/a//b", "/a/#/b", "/a/b+", "/a/"} {
		if ok, err := Covered([]string{"/#"}, p); ok || err == nil {
			t.Errorf("Covered(/#, %q) = %v, %v; want an error", p, ok, err)
		}
	}
}

// TestCoveredTooComplex: a permission set built to make the exact search
// explode is refused, not searched for ever.
func TestCoveredTooComplex(t *testing.T) {
	const depth = 12
	perms := []string{"/t" + strings.Repeat("/+", depth)} // grants everything of this depth
	for pos := range depth {
		for _, lit := range []string{"a", "b", "c"} {
			segs := slices.Repeat([]string{"+"}, depth)
			segs[pos] = lit
			perms = append(perms, "/t/"+strings.Join(segs, "/"))
		}
	}
	pattern := "/t" + strings.Repeat("/+", depth)
	ok, err := Covered(perms, pattern)
	if ok || !errors.Is(err, errTooComplex) {
		t.Fatalf("Covered = %v, %v; want errTooComplex", ok, err)
	}
	p := &Permissions{}
	err = p.Authorize(t.Context(), &Identity{Name: "x", Subscribe: perms}, Subscribe, pattern)
	if !errors.Is(err, ErrForbidden) || !strings.Contains(err.Error(), "too complex") {
		t.Fatalf("Authorize = %v; want a forbidden error saying why", err)
	}
	// A concrete subject never needs the search.
	if err := p.Authorize(t.Context(), &Identity{Name: "x", Subscribe: perms}, Subscribe,
		"/t"+strings.Repeat("/a", depth)); err != nil {
		t.Fatalf("concrete subject: %v", err)
	}
}

// refMatch is the reference matcher: MQTT filter semantics on segment lists,
// written as plainly as possible.
func refMatch(p, w []string) bool {
	switch {
	case len(p) == 0:
		return len(w) == 0
	case p[0] == "#":
		return true
	case len(w) == 0:
		return false
	}
	return (p[0] == "+" || p[0] == w[0]) && refMatch(p[1:], w[1:])
}

// refValid is the reference validator of a permission pattern.
func refValid(p string) bool {
	if !strings.HasPrefix(p, "/") {
		return false
	}
	segs := strings.Split(p[1:], "/")
	for i, s := range segs {
		if s == "" || (strings.ContainsAny(s, "+#") && s != "+" && s != "#") || (s == "#" && i != len(segs)-1) {
			return false
		}
	}
	return true
}

// bruteCovered decides coverage by enumerating every word (list of
// segments) that could tell the answer apart: segments drawn from the
// literals of the patterns plus two values no pattern names, lengths from 1
// to one more than the longest pattern (beyond that only '#' matches, alike
// for every length).
func bruteCovered(perms []string, pattern string) bool {
	req, ps, alphabet, maxLen := bruteSetup(perms, pattern)
	covered := true
	forWords(alphabet, maxLen+1, func(w []string) bool {
		if !refMatch(req, w) {
			return true
		}
		for _, p := range ps {
			if refMatch(p, w) {
				return true
			}
		}
		covered = false
		return false
	})
	return covered
}

// bruteSetup splits the pattern and the valid permissions into segments and
// picks the alphabet the brute force enumerates words over: every literal
// named, plus two no permission names.
func bruteSetup(perms []string, pattern string) (req []string, ps [][]string, alphabet []string, maxLen int) {
	req = strings.Split(pattern[1:], "/")
	for _, p := range perms {
		if refValid(p) {
			ps = append(ps, strings.Split(p[1:], "/"))
		}
	}
	alphabet = []string{"fresh1", "fresh2"}
	for _, segs := range append([][]string{req}, ps...) {
		maxLen = max(maxLen, len(segs))
		for _, s := range segs {
			if s != "+" && s != "#" && !slices.Contains(alphabet, s) {
				alphabet = append(alphabet, s)
			}
		}
	}
	return req, ps, alphabet, maxLen
}

// bruteTooLarge reports whether the brute force would enumerate more than
// about a million words (len(alphabet)^(maxLen+1)): the fuzzer's inputs can
// ask for billions, which hangs its worker.
func bruteTooLarge(perms []string, pattern string) bool {
	_, _, alphabet, maxLen := bruteSetup(perms, pattern)
	return math.Pow(float64(len(alphabet)), float64(maxLen+1)) > 1e6
}

// forWords calls f with every word over alphabet of length 1..maxLen, until
// f returns false.
func forWords(alphabet []string, maxLen int, f func([]string) bool) bool {
	var rec func(w []string) bool
	rec = func(w []string) bool {
		if len(w) > 0 && !f(w) {
			return false
		}
		if len(w) == maxLen {
			return true
		}
		for _, a := range alphabet {
			if !rec(append(w, a)) {
				return false
			}
		}
		return true
	}
	return rec(nil)
}

// keepPatternChars keeps the fuzzer's strings to a small alphabet, so that
// the patterns it builds share literals and the brute force stays small.
func keepPatternChars(s string, max int) string {
	var b strings.Builder
	for _, c := range []byte(s) {
		if strings.IndexByte("abc+#/,", c) >= 0 && b.Len() < max {
			b.WriteByte(c)
		}
	}
	return b.String()
}

// FuzzCovered checks Covered, Covers, Match and ValidatePermission against the
// brute-force references.
func FuzzCovered(f *testing.F) {
	f.Add("/vehicles/+/speed", "/vehicles/#")
	f.Add("/a/#", "/a/+/b")
	f.Add("/a/#", "/a,/a/+/#")
	f.Add("/a/+/c", "/a/b/#,/a/+/c")
	f.Add("/#", "/+/#")
	f.Add("/a/+/+", "/a/+,/a/b/+,/a/+/c")
	f.Add("/a/b", "/a/#/b,/a/b")
	f.Add("/+/+/#", "/a/#,/b/#,/+/c/#,/+/+/+")
	f.Fuzz(func(t *testing.T, pattern, permList string) {
		pattern = keepPatternChars(pattern, 12)
		permList = keepPatternChars(permList, 40)
		pattern = strings.ReplaceAll(pattern, ",", "")
		perms := strings.Split(permList, ",")
		if len(perms) > 5 {
			perms = perms[:5]
		}
		for _, p := range perms {
			if (ValidatePermission(p) == nil) != refValid(p) {
				t.Fatalf("ValidatePermission(%q) disagrees with refValid", p)
			}
		}
		got, err := Covered(perms, pattern)
		if !refValid(pattern) {
			if err == nil || got {
				t.Fatalf("Covered(%q, %q) = %v, %v; want an error for the malformed pattern", perms, pattern, got, err)
			}
			return
		}
		if errors.Is(err, errTooComplex) {
			t.Skip("too complex")
		}
		if bruteTooLarge(perms, pattern) {
			t.Skip("too large for the brute-force reference")
		}
		if want := bruteCovered(perms, pattern); err != nil || got != want {
			t.Fatalf("Covered(%q, %q) = %v, %v; brute force says %v", perms, pattern, got, err, want)
		}
		if len(perms) > 0 && Covers(perms[0], pattern) != bruteCovered(perms[:1], pattern) {
			t.Fatalf("Covers(%q, %q) disagrees with brute force", perms[0], pattern)
		}
		if strings.ContainsAny(pattern, "+#") {
			return
		}
		w := strings.Split(pattern[1:], "/")
		for _, p := range perms {
			want := refValid(p) && refMatch(strings.Split(p[1:], "/"), w)
			if Match(p, pattern) != want {
				t.Fatalf("Match(%q, %q) = %v, want %v", p, pattern, !want, want)
			}
		}
	})
}
