package mqtt

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/kedgehq/kedge/core"
)

// MQTT topic names and filters map onto kedge subjects by a leading slash:
// topic "vehicles/1/speed" is subject "/vehicles/1/speed" (Kafka topic
// "vehicles", key "1/speed"), topic "vehicles" is subject "/vehicles" (a null
// key), and filter "vehicles/+/speed" is the pattern "/vehicles/+/speed".
// Topics that begin with '$' are the server's own and never map to Kafka.

// maxTopicLen is the longest MQTT UTF-8 string, and so the longest topic name.
const maxTopicLen = 0xFFFF

// SubjectOf returns the subject of an MQTT topic name or filter.
func SubjectOf(topic string) string { return "/" + topic }

// TopicOf returns the MQTT topic name of a valid subject, or false when the
// subject cannot be an MQTT topic name: longer than 65,535 bytes, or holding
// U+0000, which MQTT strings may not contain.
func TopicOf(subject string) (string, bool) {
	topic := strings.TrimPrefix(subject, "/")
	if len(topic) > maxTopicLen || strings.IndexByte(topic, 0) >= 0 {
		return "", false
	}
	return topic, true
}

// isLocal reports whether a topic or filter is the server's own ($SYS/…,
// $share/…, anything beginning with '$').
func isLocal(topic string) bool { return strings.HasPrefix(topic, "$") }

// isShared reports whether a filter is a shared subscription ($share/…),
// compared without regard to case as mochi does.
func isShared(filter string) bool {
	return len(filter) >= 7 && strings.EqualFold(filter[:7], "$share/")
}

// topicError is why a topic or filter was refused, with the MQTT 5 reason
// code that says so.
type topicError struct {
	code packets.Code
	err  error
}

func (e *topicError) Error() string { return e.err.Error() }
func (e *topicError) Unwrap() error { return e.err }

// errLocalTopic refuses a publish to a topic beginning with '$'.
var errLocalTopic = errors.New("topics beginning with '$' are the server's own and do not reach Kafka")

// parseTopic maps a publish topic name to a subject of an exposed topic.
func parseTopic(node *core.Node, topic string) (core.Subject, *topicError) {
	if isLocal(topic) {
		return core.Subject{}, &topicError{packets.ErrNotAuthorized, fmt.Errorf("topic %q: %w", clip(topic), errLocalTopic)}
	}
	subj, err := node.ParseSubject(SubjectOf(topic))
	if err != nil {
		return core.Subject{}, refusal(topic, err, packets.ErrTopicNameInvalid)
	}
	return subj, nil
}

// parseFilter maps a subscription filter to a subject or pattern of an
// exposed topic. Local ('$') filters are not for it.
func parseFilter(node *core.Node, filter string) (core.Filter, *topicError) {
	f, err := node.ParseFilter(SubjectOf(filter))
	if err != nil {
		return core.Filter{}, refusal(filter, err, packets.ErrTopicFilterInvalid)
	}
	return f, nil
}

// refusal words a core error for an MQTT client: which topic, and why.
func refusal(topic string, err error, invalid packets.Code) *topicError {
	if errors.Is(err, core.ErrNotExposed) {
		return &topicError{packets.ErrNotAuthorized, fmt.Errorf("topic %q: %w", clip(topic), err)}
	}
	var se *core.SubjectError
	if errors.As(err, &se) {
		err = se.Err
	}
	return &topicError{invalid, fmt.Errorf("topic %q (subject %q): %w", clip(topic), clip(SubjectOf(topic)), err)}
}

// clip shortens text quoted in a reason string, never splitting a character.
func clip(s string) string {
	const max = 64
	if len(s) <= max {
		return s
	}
	cut := max
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}
