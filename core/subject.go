package core

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// MaxTopicLength is Kafka's limit on a topic name.
const MaxTopicLength = 249

// Subject errors. Each names one way a subject or pattern can be malformed; the
// error returned by ParseSubject and ParsePattern wraps exactly one of them and
// adds the offending text.
var (
	ErrEmptySubject    = errors.New("subject is empty")
	ErrNoLeadingSlash  = errors.New("subject must start with '/'")
	ErrEmptySegment    = errors.New("subject has an empty segment (\"//\" or a trailing '/')")
	ErrInvalidUTF8     = errors.New("subject is not valid UTF-8")
	ErrTopicTooLong    = errors.New("topic segment is longer than 249 characters")
	ErrTopicChars      = errors.New("topic segment may only contain [a-zA-Z0-9._-]")
	ErrTopicDots       = errors.New("topic segment may not be '.' or '..'")
	ErrWildcardPublish = errors.New("wildcards '+' and '#' are only allowed in subscriptions")
	ErrWildcardTopic   = errors.New("wildcards are not allowed in the topic segment")
	ErrWildcardMixed   = errors.New("a wildcard must be a whole segment: '+' or '#'")
	ErrHashNotLast     = errors.New("'#' must be the last segment")
)

// SubjectError reports an invalid subject or pattern. Err is one of the Err*
// sentinels above, so callers can test it with errors.Is.
type SubjectError struct {
	Subject string
	Err     error
}

func (e *SubjectError) Error() string {
	s := e.Subject
	if len(s) > 64 {
		cut := 64
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut-- // never split a character
		}
		s = s[:cut] + "…"
	}
	return fmt.Sprintf("invalid subject %q: %v", s, e.Err)
}

func (e *SubjectError) Unwrap() error { return e.Err }

// Subject is a parsed, valid subject: a Kafka topic plus an optional key.
// "/vehicles/1/speed" is topic "vehicles", key "1/speed"; "/vehicles" is
// topic "vehicles" with a null key.
type Subject struct {
	// Name is the canonical text, e.g. "/vehicles/1/speed".
	Name string
	// Topic is the Kafka topic, the first segment.
	Topic string
	// Key is the Kafka key; meaningful only when HasKey.
	Key string
	// HasKey is false for a single-segment subject, whose Kafka key is null.
	HasKey bool
}

// KafkaKey returns the record key: nil for a null key.
func (s Subject) KafkaKey() []byte {
	if !s.HasKey {
		return nil
	}
	return []byte(s.Key)
}

// ParseSubject validates a concrete subject (no wildcards), as used in a publish.
func ParseSubject(name string) (Subject, error) {
	topic, key, hasKey, err := split(name)
	if err != nil {
		return Subject{}, &SubjectError{name, err}
	}
	if hasKey {
		if err := checkKey(key, false); err != nil {
			return Subject{}, &SubjectError{name, err}
		}
	}
	return Subject{Name: name, Topic: topic, Key: key, HasKey: hasKey}, nil
}

// SubjectFor returns the subject of a Kafka record, or false when the record's
// key cannot be written as a subject (an empty key, a key with an empty
// segment, a wildcard character, or invalid UTF-8). Such records stay in Kafka but no subject reaches them.
func SubjectFor(topic string, key []byte) (string, bool) {
	if key == nil {
		return "/" + topic, true
	}
	name := "/" + topic + "/" + string(key)
	if len(key) == 0 || !utf8.Valid(key) || checkKey(name[len(topic)+2:], false) != nil {
		return "", false
	}
	return name, true
}

// split checks the parts common to subjects and patterns and returns the topic
// and the key text after it.
func split(name string) (topic, key string, hasKey bool, err error) {
	switch {
	case name == "":
		return "", "", false, ErrEmptySubject
	case name[0] != '/':
		return "", "", false, ErrNoLeadingSlash
	case !utf8.ValidString(name):
		return "", "", false, ErrInvalidUTF8
	}
	rest := name[1:]
	topic, key, hasKey = strings.Cut(rest, "/")
	if err := checkTopic(topic); err != nil {
		return "", "", false, err
	}
	if hasKey && key == "" {
		return "", "", false, ErrEmptySegment
	}
	return topic, key, hasKey, nil
}

func checkTopic(topic string) error {
	switch {
	case topic == "":
		return ErrEmptySegment
	case topic == "+" || topic == "#":
		return ErrWildcardTopic
	case len(topic) > MaxTopicLength:
		return ErrTopicTooLong
	case topic == "." || topic == "..":
		return ErrTopicDots
	}
	for i := 0; i < len(topic); i++ {
		if !topicChar(topic[i]) {
			return ErrTopicChars
		}
	}
	return nil
}

func topicChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
		c == '.' || c == '_' || c == '-'
}

// checkKey validates the key segments; wildcards are allowed only in patterns.
func checkKey(key string, pattern bool) error {
	for i := 0; ; {
		j := strings.IndexByte(key[i:], '/')
		last := j < 0
		seg := key[i:]
		if !last {
			seg = key[i : i+j]
		}
		if err := checkSegment(seg, pattern, last); err != nil {
			return err
		}
		if last {
			return nil
		}
		i += j + 1
	}
}

func checkSegment(seg string, pattern, last bool) error {
	if seg == "" {
		return ErrEmptySegment
	}
	if !strings.ContainsAny(seg, "+#") {
		return nil
	}
	switch {
	case !pattern:
		return ErrWildcardPublish
	case seg != "+" && seg != "#":
		return ErrWildcardMixed
	case seg == "#" && !last:
		return ErrHashNotLast
	}
	return nil
}
