package core

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/kedgehq/kedge/auth"
)

// Errors a publish or subscribe can fail with, beyond SubjectError. Each maps
// to a stable protocol error code (see Code).
var (
	ErrNotExposed      = errors.New("topic is not exposed by this server")
	ErrPayloadTooLarge = errors.New("payload exceeds the maximum size")
	ErrUnavailable     = errors.New("kafka is unavailable")
	ErrTimeout         = errors.New("kafka did not acknowledge in time")
	ErrBusy            = errors.New("too many publishes waiting for kafka")
	ErrRejected        = errors.New("kafka rejected the message")
	ErrShuttingDown    = errors.New("server is shutting down")
)

// Code returns the stable error code clients see for err, on every protocol.
func Code(err error) string {
	if code, ok := authCode(err); ok {
		return code
	}
	var se *SubjectError
	switch {
	case errors.As(err, &se):
		switch se.Err {
		case ErrWildcardPublish, ErrWildcardTopic, ErrWildcardMixed, ErrHashNotLast:
			return "invalid_pattern"
		}
		return "invalid_subject"
	case errors.Is(err, ErrNotExposed):
		return "not_exposed"
	case errors.Is(err, ErrPayloadTooLarge):
		return "payload_too_large"
	case errors.Is(err, ErrTimeout):
		return "kafka_timeout"
	case errors.Is(err, ErrBusy):
		return "kafka_busy"
	case errors.Is(err, ErrRejected):
		return "kafka_rejected"
	case errors.Is(err, ErrUnavailable):
		return "kafka_unavailable"
	case errors.Is(err, ErrShuttingDown):
		return "shutting_down"
	case errors.Is(err, ErrBadPosition):
		return "invalid_position"
	case errors.Is(err, ErrServerFull):
		return "server_full"
	case errors.Is(err, ErrTooManyConnections):
		return "too_many_connections"
	case errors.Is(err, ErrRateLimited):
		return "rate_limited"
	}
	return "internal"
}

// Publication is a message a client asks kedge to produce.
type Publication struct {
	Subject Subject
	Payload []byte
	Headers []Header
}

// Publisher produces to Kafka. Publish hands p over without waiting and calls
// done exactly once: with the record's position after Kafka acknowledged it
// (acks=all), or with an error wrapping one of ErrUnavailable, ErrTimeout,
// ErrBusy, ErrRejected or ErrShuttingDown. Publications handed over in order
// by one goroutine are produced in that order. done must not block.
type Publisher interface {
	Publish(ctx context.Context, p Publication, done func(Position, error))
}

// Source is the consuming side of Kafka as adapters need it.
type Source interface {
	// Watch tells the source a client is interested in topic, so that a
	// topic created after start is picked up without waiting for the next
	// metadata refresh.
	Watch(topic string)
	// Refresh rediscovers topics now and waits for it (or ctx).
	Refresh(ctx context.Context) error
}

// topicWait bounds how long a subscribe waits for an unknown topic to be
// discovered.
const topicWait = 2 * time.Second

// Prepare makes sure the Hub knows topic's partitions before a subscription
// is made, when Kafka has the topic: a topic created a moment ago is
// discovered now, so the subscription gets a full start cursor. It waits
// at most two seconds; a topic that does not exist (yet) is no error.
func (n *Node) Prepare(ctx context.Context, topic string) {
	if n.Source == nil {
		return
	}
	if _, ok := n.Hub.Frontier(topic); ok {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, topicWait)
	defer cancel()
	_ = n.Source.Refresh(ctx)
}

// Exposure decides which Kafka topics clients may reach.
type Exposure struct {
	names  map[string]struct{}
	re     *regexp.Regexp
	hidden map[string]struct{} // kedge's own topics (Hide)
}

// NewExposure exposes the listed topics and those matching regex (anchored at
// both ends). With neither, every topic is exposed. Kafka's internal topics,
// whose names begin with "__", are never exposed.
func NewExposure(topics []string, regex string) (*Exposure, error) {
	e := &Exposure{}
	if len(topics) > 0 {
		e.names = make(map[string]struct{}, len(topics))
		for _, t := range topics {
			if err := checkTopic(t); err != nil {
				return nil, fmt.Errorf("topic %q: %w", t, err)
			}
			e.names[t] = struct{}{}
		}
	}
	if regex != "" {
		re, err := regexp.Compile("^(?:" + regex + ")$")
		if err != nil {
			return nil, fmt.Errorf("topics regex: %w", err)
		}
		e.re = re
	}
	return e, nil
}

// Hide keeps topics from clients whatever the list and regex say: kedge's
// own topics (MQTT sessions, audit), whose records a client could read or
// forge. Naming one in the exposed list is an error; a regex or "every
// topic" matching one is not (it is only hidden). Call it before use.
func (e *Exposure) Hide(topics ...string) error {
	for _, t := range topics {
		if t == "" {
			continue
		}
		if _, listed := e.names[t]; listed {
			return fmt.Errorf("topic %q is kedge's own and cannot be exposed to clients", t)
		}
		if e.hidden == nil {
			e.hidden = make(map[string]struct{}, len(topics))
		}
		e.hidden[t] = struct{}{}
	}
	return nil
}

// All reports whether every topic is exposed.
func (e *Exposure) All() bool { return e.names == nil && e.re == nil }

// Exposed reports whether clients may use topic. A nil Exposure exposes
// every topic but Kafka's internal ones.
func (e *Exposure) Exposed(topic string) bool {
	if strings.HasPrefix(topic, "__") {
		return false
	}
	if e != nil {
		if _, hidden := e.hidden[topic]; hidden {
			return false
		}
	}
	if e == nil || e.All() {
		return true
	}
	if _, ok := e.names[topic]; ok {
		return true
	}
	return e.re != nil && e.re.MatchString(topic)
}

// Node is what protocol adapters use: subject validation, exposure checks,
// the Hub and the Publisher behind one small API.
type Node struct {
	Hub       *Hub
	Publisher Publisher
	Source    Source
	Exposure  *Exposure
	// Auth authenticates connections and authorizes their subscribes and
	// publishes; nil allows everyone everything.
	Auth *auth.Auth
	// Audit records connects, disconnects, subscribes, publishes and denials;
	// nil records nothing.
	Audit *auth.Audit
	// MaxPayload bounds a published payload in bytes; 0 means no bound here
	// (the adapters' frame limits still apply).
	MaxPayload int
	// Limits bounds connections (in total and per client IP, across
	// protocols) and publish rates, and counts every limit's refusals;
	// nil bounds nothing.
	Limits *Limits
}

// Admit counts a connection of proto from remote against Limits; see
// Limits.Admit.
func (n *Node) Admit(proto auth.Protocol, remote string) (release func(), err error) {
	return n.Limits.Admit(proto, remote)
}

// Limited counts a refusal by one of the limits; see Limits.Limited.
func (n *Node) Limited(limit Limit, proto auth.Protocol) { n.Limits.Limited(limit, proto) }

// ParseFilter validates a subscription filter, including its topic's exposure.
func (n *Node) ParseFilter(filter string) (Filter, error) {
	f, err := ParseFilter(filter)
	if err != nil {
		return Filter{}, err
	}
	if !n.Exposure.Exposed(f.Topic) {
		return Filter{}, fmt.Errorf("%w: %q", ErrNotExposed, f.Topic)
	}
	return f, nil
}

// Subscribe registers s for a filter checked by ParseFilter.
func (n *Node) Subscribe(s Subscriber, f Filter, opts SubscribeOptions) *Subscription {
	if n.Source != nil {
		n.Source.Watch(f.Topic)
	}
	return n.Hub.Subscribe(s, f, opts)
}

// ParseSubject validates a publish subject, including its topic's exposure.
func (n *Node) ParseSubject(subject string) (Subject, error) {
	subj, err := ParseSubject(subject)
	if err != nil {
		return Subject{}, err
	}
	if !n.Exposure.Exposed(subj.Topic) {
		return Subject{}, fmt.Errorf("%w: %q", ErrNotExposed, subj.Topic)
	}
	return subj, nil
}

// PublishAsync validates p's payload size and hands it to the Publisher;
// done is called exactly once, after Kafka's answer.
func (n *Node) PublishAsync(ctx context.Context, p Publication, done func(Position, error)) {
	if n.MaxPayload > 0 && len(p.Payload) > n.MaxPayload {
		done(Position{}, fmt.Errorf("%w: %d > %d bytes", ErrPayloadTooLarge, len(p.Payload), n.MaxPayload))
		return
	}
	n.Publisher.Publish(ctx, p, func(pos Position, err error) {
		if err == nil && n.Source != nil {
			n.Source.Watch(p.Subject.Topic) // a publish may have created the topic
		}
		done(pos, err)
	})
}

// Publish validates and produces a message and waits for Kafka's answer.
func (n *Node) Publish(ctx context.Context, subject string, payload []byte, headers []Header) (Position, error) {
	subj, err := n.ParseSubject(subject)
	if err != nil {
		return Position{}, err
	}
	type result struct {
		pos Position
		err error
	}
	ch := make(chan result, 1)
	n.PublishAsync(ctx, Publication{Subject: subj, Payload: payload, Headers: headers}, func(pos Position, err error) {
		ch <- result{pos, err}
	})
	r := <-ch
	return r.pos, r.err
}

// Origin returns, for every known partition of topic, the offset before the
// first one this node dispatched (what Hub.Begin was given, minus one). A
// subscription registered before the topic's partitions were known has been
// handed every matching message this node dispatched since, so Origin,
// advanced by what the subscription was handed, is a cursor it can resume
// from without a gap; adapters take it when such a subscription gets its
// first message, or the first of a new epoch. ok is false while the
// partitions are unknown or of mixed epochs. Deliver may call it.
func (n *Node) Origin(topic string) (c Cursor, ok bool) {
	return n.Hub.parts.cursor(topic, func(st *partitionState) int64 { return st.first - 1 })
}
