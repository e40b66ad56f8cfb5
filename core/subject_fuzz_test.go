package core

import (
	"errors"
	"strings"
	"testing"
)

var subjectSentinels = []error{
	ErrEmptySubject, ErrNoLeadingSlash, ErrEmptySegment, ErrInvalidUTF8, ErrTopicTooLong,
	ErrTopicChars, ErrTopicDots, ErrWildcardPublish, ErrWildcardTopic, ErrWildcardMixed, ErrHashNotLast,
}

func seedSubjects(f *testing.F) {
	for _, tc := range subjectCases {
		f.Add(tc.name)
	}
	for _, tc := range filterCases {
		f.Add(tc.name)
	}
	for _, s := range []string{"/t/a/b/c", "/t/+/#", "/t/#", "/t/a/+/c", "/t/\u00e9/+", "/t//", "/t/a/"} {
		f.Add(s)
	}
}

// checkInvalid asserts the shape every parse error has.
func checkInvalid(t *testing.T, name string, err error) {
	t.Helper()
	var se *SubjectError
	if !errors.As(err, &se) {
		t.Fatalf("%q: error %T %v is not a *SubjectError", name, err, err)
	}
	if se.Subject != name {
		t.Fatalf("%q: SubjectError names %q", name, se.Subject)
	}
	known := false
	for _, s := range subjectSentinels {
		if se.Err == s {
			known = true
		}
	}
	if !known {
		t.Fatalf("%q: SubjectError wraps unknown %v", name, se.Err)
	}
	if c := Code(err); c != "invalid_subject" && c != "invalid_pattern" {
		t.Fatalf("%q: Code = %q", name, c)
	}
	if !strings.Contains(err.Error(), se.Err.Error()) {
		t.Fatalf("%q: error text %q", name, err.Error())
	}
}

func validTopic(topic string) bool {
	if len(topic) < 1 || len(topic) > MaxTopicLength || topic == "." || topic == ".." {
		return false
	}
	for i := 0; i < len(topic); i++ {
		if !topicChar(topic[i]) {
			return false
		}
	}
	return true
}

func FuzzParseSubject(f *testing.F) {
	seedSubjects(f)
	f.Fuzz(func(t *testing.T, name string) {
		s, err := ParseSubject(name)
		if err != nil {
			checkInvalid(t, name, err)
			if errors.Is(err, ErrWildcardPublish) {
				if !strings.ContainsAny(name, "+#") {
					t.Fatalf("%q: ErrWildcardPublish without a wildcard", name)
				}
			}
		} else {
			if s.Name != name {
				t.Fatalf("Name %q != input %q", s.Name, name)
			}
			back := "/" + s.Topic
			if s.HasKey {
				back += "/" + s.Key
			}
			if back != name {
				t.Fatalf("%q: rebuilt as %q from %+v", name, back, s)
			}
			if !validTopic(s.Topic) || strings.ContainsAny(s.Key, "+#") ||
				(s.HasKey && (s.Key == "" || strings.Contains("/"+s.Key+"/", "//"))) {
				t.Fatalf("%q: accepted invalid parts %+v", name, s)
			}
			var key []byte
			if s.HasKey {
				key = []byte(s.Key)
			}
			if got, ok := SubjectFor(s.Topic, key); !ok || got != name {
				t.Fatalf("SubjectFor(%q, %q) = %q, %v; want %q", s.Topic, key, got, ok, name)
			}
			fl, err := ParseFilter(name)
			if err != nil {
				t.Fatalf("ParseSubject(%q) succeeded but ParseFilter failed: %v", name, err)
			}
			if fl.Wildcard || fl.Subject != s || fl.Topic != s.Topic {
				t.Fatalf("%q: filter %+v differs from subject %+v", name, fl, s)
			}
			if !fl.Matches(s.Key, s.HasKey) {
				t.Fatalf("filter %q does not match its own key", name)
			}
			if fl.Matches(s.Key, !s.HasKey) {
				t.Fatalf("filter %q matches with the opposite null-key flag", name)
			}
		}

		// The input as a Kafka key: SubjectFor accepts it exactly when the
		// subject it would make is valid, and that subject carries the key.
		got, ok := SubjectFor("t", []byte(name))
		ps, perr := ParseSubject("/t/" + name)
		if ok != (perr == nil) {
			t.Fatalf("SubjectFor(t, %q) ok=%v but ParseSubject(%q) err=%v", name, ok, "/t/"+name, perr)
		}
		if ok && (got != "/t/"+name || ps.Topic != "t" || !ps.HasKey || ps.Key != name) {
			t.Fatalf("SubjectFor(t, %q) = %q, parsed back as %+v", name, got, ps)
		}
	})
}

func FuzzParseFilter(f *testing.F) {
	seedSubjects(f)
	f.Fuzz(func(t *testing.T, name string) {
		fl, err := ParseFilter(name)
		_, serr := ParseSubject(name)
		if err != nil {
			checkInvalid(t, name, err)
			if serr == nil {
				t.Fatalf("ParseSubject(%q) succeeded but ParseFilter failed: %v", name, err)
			}
			return
		}
		if fl.Name != name || !validTopic(fl.Topic) {
			t.Fatalf("%q: filter %+v", name, fl)
		}
		if !fl.Wildcard {
			if serr != nil {
				t.Fatalf("concrete filter %q is not a valid subject: %v", name, serr)
			}
			if !fl.Matches(fl.Subject.Key, fl.Subject.HasKey) {
				t.Fatalf("concrete filter %q does not match its own key", name)
			}
			return
		}
		if !errors.Is(serr, ErrWildcardPublish) {
			t.Fatalf("wildcard filter %q: ParseSubject err %v, want ErrWildcardPublish", name, serr)
		}
		if got := "/" + fl.Topic + "/" + strings.Join(fl.segs, "/"); got != name {
			t.Fatalf("%q: rebuilt as %q", name, got)
		}
		for i, seg := range fl.segs {
			if seg == "" || (seg == "#" && i != len(fl.segs)-1) ||
				(strings.ContainsAny(seg, "+#") && seg != "+" && seg != "#") {
				t.Fatalf("%q: bad segment %q in %q", name, seg, fl.segs)
			}
		}

		// Instances of the pattern match it: '+' by any one segment, '#' by
		// none, one or two segments.
		for _, hashFill := range [][]string{nil, {"x"}, {"x", "y"}} {
			var parts []string
			for _, seg := range fl.segs {
				switch seg {
				case "+":
					parts = append(parts, "p")
				case "#":
					parts = append(parts, hashFill...)
				default:
					parts = append(parts, seg)
				}
			}
			key, hasKey := strings.Join(parts, "/"), len(parts) > 0
			if !fl.Matches(key, hasKey) {
				t.Fatalf("%q does not match its instance key %q (hasKey %v)", name, key, hasKey)
			}
			// The trie agrees with Matches, and removal prunes it back to empty.
			tp := &topicPatterns{}
			sub := &Subscription{Filter: fl}
			tp.insert(sub)
			n := 0
			tp.match(key, hasKey, func(s *Subscription) {
				if s != sub {
					t.Fatalf("trie returned a foreign subscription")
				}
				n++
			})
			if n != 1 {
				t.Fatalf("trie matched %q against key %q %d times, want 1", name, key, n)
			}
			tp.remove(sub)
			if !tp.root.isEmpty() {
				t.Fatalf("trie not empty after removing %q", name)
			}
		}
		// A key one segment longer than a pattern without '#' never matches.
		if fl.segs[len(fl.segs)-1] != "#" {
			key := strings.Repeat("z/", len(fl.segs)) + "z"
			if fl.Matches(key, true) {
				t.Fatalf("%q matches the longer key %q", name, key)
			}
		}
	})
}

// FuzzParseCursor: cursor tokens never panic the parser, and a valid one
// round-trips through Cursor.String.
func FuzzParseCursor(f *testing.F) {
	for _, s := range []string{"1-0-5", "7-0-12,7-1--1", "1-0-1,1-0-2", "", "-", "1--1", "4294967295-2147483647-9223372036854775807", "1-0-01"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, tok string) {
		c, err := ParseCursor(tok)
		if err != nil {
			return
		}
		back, err := ParseCursor(c.String())
		if err != nil || back.Epoch != c.Epoch || len(back.Offsets) != len(c.Offsets) {
			t.Fatalf("%q → %v → %q → %v, %v", tok, c, c.String(), back, err)
		}
		for p, o := range c.Offsets {
			if back.Offsets[p] != o {
				t.Fatalf("%q: partition %d offset %d became %d", tok, p, o, back.Offsets[p])
			}
		}
	})
}
