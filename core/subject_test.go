package core

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// subjectCase is one row shared by the subject and filter tables and used to
// seed the fuzz tests.
type subjectCase struct {
	name   string
	err    error // expected sentinel; nil means valid
	topic  string
	key    string
	hasKey bool
}

var (
	topic249 = strings.Repeat("t", MaxTopicLength)
	topic250 = strings.Repeat("t", MaxTopicLength+1)
)

// subjectCases are the design §2 rules for concrete (publish) subjects.
var subjectCases = []subjectCase{
	// valid
	{name: "/vehicles", topic: "vehicles"},
	{name: "/vehicles/1", topic: "vehicles", key: "1", hasKey: true},
	{name: "/vehicles/1/speed", topic: "vehicles", key: "1/speed", hasKey: true},
	{name: "/a.b", topic: "a.b"},
	{name: "/...", topic: "..."},
	{name: "/.a", topic: ".a"},
	{name: "/a_B-9.z/k", topic: "a_B-9.z", key: "k", hasKey: true},
	{name: "/" + topic249, topic: topic249},
	{name: "/" + topic249 + "/k", topic: topic249, key: "k", hasKey: true},
	{name: "/t/hello world/ünïcödé/日本", topic: "t", key: "hello world/ünïcödé/日本", hasKey: true},
	{name: "/t/./..", topic: "t", key: "./..", hasKey: true}, // dots are only special in the topic
	{name: "/t/$SYS", topic: "t", key: "$SYS", hasKey: true},
	{name: "/t/a\x00b", topic: "t", key: "a\x00b", hasKey: true},

	// empty, no leading slash
	{name: "", err: ErrEmptySubject},
	{name: "vehicles", err: ErrNoLeadingSlash},
	{name: "vehicles/1", err: ErrNoLeadingSlash},
	{name: " /vehicles", err: ErrNoLeadingSlash},
	{name: "\xff/a", err: ErrNoLeadingSlash},

	// empty segments
	{name: "/", err: ErrEmptySegment},
	{name: "//", err: ErrEmptySegment},
	{name: "//a", err: ErrEmptySegment},
	{name: "/a/", err: ErrEmptySegment},
	{name: "/a//b", err: ErrEmptySegment},
	{name: "/a/b/", err: ErrEmptySegment},
	{name: "/a/b//", err: ErrEmptySegment},

	// invalid UTF-8
	{name: "/\xff", err: ErrInvalidUTF8},
	{name: "/a/\xff", err: ErrInvalidUTF8},
	{name: "/a/b\xc3", err: ErrInvalidUTF8},
	{name: "/a/\xed\xa0\x80", err: ErrInvalidUTF8}, // UTF-16 surrogate half

	// topic rules
	{name: "/" + topic250, err: ErrTopicTooLong},
	{name: "/" + topic250 + "/k", err: ErrTopicTooLong},
	{name: "/.", err: ErrTopicDots},
	{name: "/..", err: ErrTopicDots},
	{name: "/./k", err: ErrTopicDots},
	{name: "/../k", err: ErrTopicDots},
	{name: "/a b", err: ErrTopicChars},
	{name: "/a:b/k", err: ErrTopicChars},
	{name: "/vé", err: ErrTopicChars},
	{name: "/a$", err: ErrTopicChars},
	{name: "/$SYS/x", err: ErrTopicChars},
	{name: "/a+", err: ErrTopicChars},
	{name: "/a#/b", err: ErrTopicChars},

	// wildcards: never in a publish
	{name: "/+", err: ErrWildcardTopic},
	{name: "/#", err: ErrWildcardTopic},
	{name: "/+/k", err: ErrWildcardTopic},
	{name: "/a/+", err: ErrWildcardPublish},
	{name: "/a/#", err: ErrWildcardPublish},
	{name: "/a/+/speed", err: ErrWildcardPublish},
	{name: "/a/b+", err: ErrWildcardPublish},
	{name: "/a/b#c", err: ErrWildcardPublish},
	{name: "/a/#/b", err: ErrWildcardPublish},
}

// filterCases are the rows where ParseFilter differs from ParseSubject.
var filterCases = []subjectCase{
	{name: "/a/+", topic: "a"},
	{name: "/a/#", topic: "a"},
	{name: "/a/+/speed", topic: "a"},
	{name: "/a/+/+", topic: "a"},
	{name: "/a/+/#", topic: "a"},
	{name: "/a/b/#", topic: "a"},
	{name: "/a/b+", err: ErrWildcardMixed},
	{name: "/a/+b", err: ErrWildcardMixed},
	{name: "/a/b#c", err: ErrWildcardMixed},
	{name: "/a/##", err: ErrWildcardMixed},
	{name: "/a/++", err: ErrWildcardMixed},
	{name: "/a/#/b", err: ErrHashNotLast},
	{name: "/a/#/#", err: ErrHashNotLast},
	{name: "/a/#/+", err: ErrHashNotLast},
	{name: "/+", err: ErrWildcardTopic},
	{name: "/#", err: ErrWildcardTopic},
	{name: "/#/a", err: ErrWildcardTopic},
	{name: "/+/a", err: ErrWildcardTopic},
	{name: "/a+/b", err: ErrTopicChars},
	{name: "/a/+//", err: ErrEmptySegment},
	{name: "/a/+/\xff", err: ErrInvalidUTF8},
}

// checkSubjectErr asserts that err is a *SubjectError wrapping want whose text
// names the subject.
func checkSubjectErr(t *testing.T, name string, err, want error) {
	t.Helper()
	if err == nil {
		t.Fatalf("%q: no error, want %v", name, want)
	}
	if !errors.Is(err, want) {
		t.Fatalf("%q: error %q does not wrap %q", name, err, want)
	}
	var se *SubjectError
	if !errors.As(err, &se) {
		t.Fatalf("%q: error %T is not a *SubjectError", name, err)
	}
	if se.Subject != name || se.Err != want {
		t.Fatalf("%q: SubjectError{%q, %v}, want {%q, %v}", name, se.Subject, se.Err, name, want)
	}
	msg := err.Error()
	named := name
	if len(named) > 64 {
		named = named[:64]
	}
	if utf8Printable(named) && !strings.Contains(msg, named) {
		t.Fatalf("%q: error text %q does not name the subject", name, msg)
	}
	if len(name) <= 64 && !strings.Contains(msg, strconv.Quote(name)) {
		t.Fatalf("%q: error text %q does not quote the subject", name, msg)
	}
	if !strings.Contains(msg, want.Error()) {
		t.Fatalf("%q: error text %q does not say %q", name, msg, want)
	}
}

func utf8Printable(s string) bool {
	return strconv.Quote(s) == `"`+s+`"`
}

func TestParseSubject(t *testing.T) {
	for _, tc := range subjectCases {
		t.Run(fmt.Sprintf("%.40q", tc.name), func(t *testing.T) {
			s, err := ParseSubject(tc.name)
			if tc.err != nil {
				checkSubjectErr(t, tc.name, err, tc.err)
				if s != (Subject{}) {
					t.Fatalf("invalid subject returned non-zero Subject %+v", s)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseSubject(%q): %v", tc.name, err)
			}
			want := Subject{Name: tc.name, Topic: tc.topic, Key: tc.key, HasKey: tc.hasKey}
			if s != want {
				t.Fatalf("ParseSubject(%q) = %+v, want %+v", tc.name, s, want)
			}
			if k := s.KafkaKey(); tc.hasKey != (k != nil) || string(k) != tc.key {
				t.Fatalf("KafkaKey() = %q (nil %v), want %q (hasKey %v)", k, k == nil, tc.key, tc.hasKey)
			}
		})
	}
}

func TestParseSubjectNullKey(t *testing.T) {
	s, err := ParseSubject("/vehicles")
	if err != nil {
		t.Fatal(err)
	}
	if s.Topic != "vehicles" || s.HasKey || s.Key != "" || s.KafkaKey() != nil {
		t.Fatalf("got %+v, KafkaKey %v; want topic vehicles with a null key", s, s.KafkaKey())
	}
	s, err = ParseSubject("/vehicles/1/speed")
	if err != nil {
		t.Fatal(err)
	}
	if s.Topic != "vehicles" || !s.HasKey || s.Key != "1/speed" || string(s.KafkaKey()) != "1/speed" {
		t.Fatalf("got %+v; want topic vehicles, key 1/speed", s)
	}
}

func TestTopicLengthBoundary(t *testing.T) {
	if _, err := ParseSubject("/" + topic249); err != nil {
		t.Fatalf("249-character topic: %v", err)
	}
	_, err := ParseSubject("/" + topic250)
	if !errors.Is(err, ErrTopicTooLong) {
		t.Fatalf("250-character topic: err %v, want ErrTopicTooLong", err)
	}
	// The error text is bounded but still names the start of the subject.
	if len(err.Error()) > 200 || !strings.Contains(err.Error(), "/ttttttttt") {
		t.Fatalf("error text %q", err)
	}
	if _, err := ParseFilter("/" + topic250 + "/#"); !errors.Is(err, ErrTopicTooLong) {
		t.Fatalf("ParseFilter 250-character topic: %v", err)
	}
}

func TestParseFilter(t *testing.T) {
	// Every valid subject is a valid, non-wildcard filter naming the same
	// subject, and every invalid subject other than for wildcards is an
	// equally invalid filter.
	for _, tc := range subjectCases {
		f, err := ParseFilter(tc.name)
		switch tc.err {
		case nil:
			if err != nil {
				t.Errorf("ParseFilter(%q): %v", tc.name, err)
				continue
			}
			want := Subject{Name: tc.name, Topic: tc.topic, Key: tc.key, HasKey: tc.hasKey}
			if f.Wildcard || f.Name != tc.name || f.Topic != tc.topic || f.Subject != want {
				t.Errorf("ParseFilter(%q) = %+v, want concrete %+v", tc.name, f, want)
			}
		case ErrWildcardPublish:
			// allowed or rejected for another reason; covered by filterCases
		default:
			if err == nil {
				t.Errorf("ParseFilter(%q): no error, want %v", tc.name, tc.err)
				continue
			}
			checkSubjectErr(t, tc.name, err, tc.err)
		}
	}
	for _, tc := range filterCases {
		f, err := ParseFilter(tc.name)
		if tc.err != nil {
			if err == nil {
				t.Errorf("ParseFilter(%q): no error, want %v", tc.name, tc.err)
				continue
			}
			checkSubjectErr(t, tc.name, err, tc.err)
			continue
		}
		if err != nil {
			t.Errorf("ParseFilter(%q): %v", tc.name, err)
			continue
		}
		if !f.Wildcard || f.Name != tc.name || f.Topic != tc.topic || f.Subject != (Subject{}) {
			t.Errorf("ParseFilter(%q) = %+v, want a wildcard filter of topic %q", tc.name, f, tc.topic)
		}
		// The same text is never a valid publish subject.
		if _, err := ParseSubject(tc.name); !errors.Is(err, ErrWildcardPublish) {
			t.Errorf("ParseSubject(%q): %v, want ErrWildcardPublish", tc.name, err)
		}
	}
}

func TestSubjectFor(t *testing.T) {
	tests := []struct {
		topic string
		key   []byte
		want  string
		ok    bool
	}{
		{"vehicles", nil, "/vehicles", true},
		{"vehicles", []byte("1"), "/vehicles/1", true},
		{"vehicles", []byte("1/speed"), "/vehicles/1/speed", true},
		{"t", []byte("ünï/日本"), "/t/ünï/日本", true},
		{"t", []byte("a b"), "/t/a b", true},
		{"t", []byte{}, "", false},        // empty (not null) key
		{"t", []byte("/a"), "", false},    // empty first segment
		{"t", []byte("a/"), "", false},    // trailing '/'
		{"t", []byte("a//b"), "", false},  // empty segment
		{"t", []byte("/"), "", false},     // only a slash
		{"t", []byte("+"), "", false},     // wildcard
		{"t", []byte("a/#"), "", false},   // wildcard
		{"t", []byte("a+b"), "", false},   // wildcard character inside a segment
		{"t", []byte("\xff"), "", false},  // invalid UTF-8
		{"t", []byte("a\xc3"), "", false}, // truncated UTF-8
	}
	for _, tc := range tests {
		got, ok := SubjectFor(tc.topic, tc.key)
		if got != tc.want || ok != tc.ok {
			t.Errorf("SubjectFor(%q, %q) = %q, %v; want %q, %v", tc.topic, tc.key, got, ok, tc.want, tc.ok)
		}
		if !ok {
			continue
		}
		s, err := ParseSubject(got)
		if err != nil {
			t.Errorf("ParseSubject(SubjectFor(%q, %q) = %q): %v", tc.topic, tc.key, got, err)
			continue
		}
		if s.Topic != tc.topic || s.HasKey != (tc.key != nil) || s.Key != string(tc.key) {
			t.Errorf("SubjectFor(%q, %q) round trip gave %+v", tc.topic, tc.key, s)
		}
	}
	// Every valid subject of the table comes back from its topic and key.
	for _, tc := range subjectCases {
		if tc.err != nil {
			continue
		}
		var key []byte
		if tc.hasKey {
			key = []byte(tc.key)
		}
		if got, ok := SubjectFor(tc.topic, key); !ok || got != tc.name {
			t.Errorf("SubjectFor(%q, %q) = %q, %v; want %q", tc.topic, key, got, ok, tc.name)
		}
	}
}

func TestCode(t *testing.T) {
	subjErr := func(name string) error {
		_, err := ParseSubject(name)
		return err
	}
	filterErr := func(name string) error {
		_, err := ParseFilter(name)
		return err
	}
	_, posErr := ParsePosition("nope")
	tests := []struct {
		err  error
		want string
	}{
		{subjErr(""), "invalid_subject"},
		{subjErr("a"), "invalid_subject"},
		{subjErr("/a//b"), "invalid_subject"},
		{subjErr("/\xff"), "invalid_subject"},
		{subjErr("/" + topic250), "invalid_subject"},
		{subjErr("/a b"), "invalid_subject"},
		{subjErr("/.."), "invalid_subject"},
		{subjErr("/a/+"), "invalid_pattern"},
		{filterErr("/+/a"), "invalid_pattern"},
		{filterErr("/a/b+"), "invalid_pattern"},
		{filterErr("/a/#/b"), "invalid_pattern"},
		{fmt.Errorf("wrapped: %w", subjErr("/a//b")), "invalid_subject"},
		{fmt.Errorf("%w: %q", ErrNotExposed, "t"), "not_exposed"},
		{fmt.Errorf("%w: 5 > 4 bytes", ErrPayloadTooLarge), "payload_too_large"},
		{fmt.Errorf("produce: %w", ErrTimeout), "kafka_timeout"},
		{ErrBusy, "kafka_busy"},
		{ErrRejected, "kafka_rejected"},
		{ErrUnavailable, "kafka_unavailable"},
		{ErrShuttingDown, "shutting_down"},
		{posErr, "invalid_position"},
		{errors.New("something else"), "internal"},
		{nil, "internal"},
	}
	for _, tc := range tests {
		if got := Code(tc.err); got != tc.want {
			t.Errorf("Code(%v) = %q, want %q", tc.err, got, tc.want)
		}
	}
}

func TestDisconnect(t *testing.T) {
	all := []Disconnect{DisconnectShutdown, DisconnectSlow, DisconnectWriteError, DisconnectNoPong,
		DisconnectInsufficient, DisconnectBadRequest, DisconnectMessageTooBig, DisconnectUnauthorized}
	seen := map[int]bool{}
	for _, d := range all {
		if d.Code < 4000 || d.Code > 4999 || seen[d.Code] || d.Reason == "" {
			t.Errorf("bad or duplicate disconnect %+v", d)
		}
		seen[d.Code] = true
		if d.Reconnect() != (d.Code < 4500) {
			t.Errorf("%+v: Reconnect() = %v", d, d.Reconnect())
		}
		var err error = d
		if !strings.Contains(err.Error(), strconv.Itoa(d.Code)) || !strings.Contains(err.Error(), d.Reason) {
			t.Errorf("Error() = %q", err.Error())
		}
	}
	if !DisconnectSlow.Reconnect() || DisconnectUnauthorized.Reconnect() {
		t.Error("slow consumers must reconnect; unauthorized clients must not")
	}
	if Guaranteed.String() != "guaranteed" || Standard.String() != "standard" {
		t.Errorf("Mode strings %q %q", Guaranteed, Standard)
	}
}
