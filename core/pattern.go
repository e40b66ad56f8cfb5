package core

import "strings"

// Filter is what a subscription names: a concrete subject or a pattern with
// MQTT-style wildcards in the key segments. "/vehicles/+/speed" matches one
// segment in place of '+'; a final "#" matches any number of segments,
// including none: "/vehicles/#" matches "/vehicles" and "/vehicles/1/speed".
type Filter struct {
	// Name is the canonical text of the filter.
	Name string
	// Topic is the literal Kafka topic; wildcards are not allowed there.
	Topic string
	// segs are the key segments; nil for a null-key subject. Only set for patterns.
	segs []string
	// Wildcard is true when the filter contains '+' or '#'.
	Wildcard bool
	// Subject is the parsed subject when the filter is not a wildcard.
	Subject Subject
}

// ParseFilter validates a subscription filter: a subject or a pattern.
func ParseFilter(name string) (Filter, error) {
	topic, key, hasKey, err := split(name)
	if err != nil {
		return Filter{}, &SubjectError{name, err}
	}
	if hasKey {
		if err := checkKey(key, true); err != nil {
			return Filter{}, &SubjectError{name, err}
		}
	}
	f := Filter{Name: name, Topic: topic}
	if !hasKey || !strings.ContainsAny(key, "+#") {
		f.Subject = Subject{Name: name, Topic: topic, Key: key, HasKey: hasKey}
		return f, nil
	}
	f.Wildcard = true
	f.segs = strings.Split(key, "/")
	return f, nil
}

// Matches reports whether the subject of the filter's topic with the given key
// (hasKey false for a null key) is matched by the filter.
func (f Filter) Matches(key string, hasKey bool) bool {
	if !f.Wildcard {
		return hasKey == f.Subject.HasKey && key == f.Subject.Key
	}
	if !hasKey {
		// Only "/topic/#" matches the null-key subject "/topic".
		return len(f.segs) == 1 && f.segs[0] == "#"
	}
	return matchSegments(f.segs, key)
}

// matchSegments matches key segment by segment without allocating.
func matchSegments(segs []string, key string) bool {
	for i, seg := range segs {
		if seg == "#" {
			return true
		}
		part, rest, more := strings.Cut(key, "/")
		if seg != "+" && seg != part {
			return false
		}
		if !more {
			return i == len(segs)-1 || (i == len(segs)-2 && segs[i+1] == "#")
		}
		key = rest
	}
	return false
}
