package auth

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"
)

// EventAction is what an audit Event records.
type EventAction string

// The audited actions.
const (
	EventConnect     EventAction = "connect"
	EventDisconnect  EventAction = "disconnect"
	EventSubscribe   EventAction = "subscribe"
	EventUnsubscribe EventAction = "unsubscribe"
	EventPublish     EventAction = "publish"
	// EventDeny is any refusal; Event.Denied says of what.
	EventDeny EventAction = "deny"
)

// eventActions lists every EventAction, for configuration checks.
var eventActions = []EventAction{EventConnect, EventDisconnect, EventSubscribe,
	EventUnsubscribe, EventPublish, EventDeny}

// Event is one audit record. Its JSON form is what the Kafka sink writes.
type Event struct {
	Time   time.Time   `json:"time"`
	Action EventAction `json:"action"`
	// Denied, for an EventDeny, is what was refused: connect, subscribe or
	// publish.
	Denied   EventAction `json:"denied,omitempty"`
	Protocol Protocol    `json:"protocol,omitempty"`
	// Remote is the client's address, "host:port".
	Remote string `json:"remote,omitempty"`
	// Identity is the Identity's name; empty before authentication.
	Identity string `json:"identity,omitempty"`
	// Subject is the subject or pattern of a subscribe, unsubscribe, publish
	// or their denial.
	Subject string `json:"subject,omitempty"`
	// Reason says why: a denial's reason, a disconnect's cause.
	Reason string `json:"reason,omitempty"`
	// Node is the kedge node that recorded the event.
	Node string `json:"node,omitempty"`
}

// DenyEvent describes a denial (an error from an Authenticator or
// Authorizer, ideally an *Error) as an EventDeny at the current time.
func DenyEvent(protocol Protocol, remote string, err error) Event {
	ev := Event{Time: time.Now(), Action: EventDeny, Denied: EventConnect, Protocol: protocol, Remote: remote}
	var e *Error
	if !errors.As(err, &e) {
		if err != nil {
			ev.Reason = err.Error()
		}
		return ev
	}
	ev.Identity, ev.Subject = e.User, e.Subject
	ev.Reason = strings.TrimPrefix(e.Error(), e.Kind.Error()+": ")
	switch e.Action {
	case Subscribe:
		ev.Denied = EventSubscribe
	case Publish:
		ev.Denied = EventPublish
	}
	return ev
}

// Sink receives audit events. Record must not block (it is called on
// connection and publish paths) and must be safe for concurrent use; a sink
// that cannot keep up drops events and counts them.
type Sink interface {
	Record(ev Event)
}

// MultiSink records every event in each of its sinks.
type MultiSink []Sink

// Record implements Sink.
func (m MultiSink) Record(ev Event) {
	for _, s := range m {
		s.Record(ev)
	}
}

// AuditConfig configures the audit trail: a structured log, a Kafka topic, or
// both.
type AuditConfig struct {
	// Log is the level at which events go to the structured log: "debug",
	// "info" or "off"; empty means "info". Denials are logged at "warn"
	// unless Log is "off".
	Log string
	// Events lists the actions recorded (connect, disconnect, subscribe,
	// unsubscribe, publish, deny); empty means all.
	Events []string
	// Kafka configures the Kafka sink.
	Kafka KafkaSinkConfig
}

// Audit is the audit trail New and NewAudit build: it filters events by
// action and records them in the configured sinks.
type Audit struct {
	actions map[EventAction]bool
	sink    MultiSink
	kafka   *KafkaSink
	node    string
}

// NewAudit builds the audit trail of cfg. p writes to Kafka; it is required
// only when cfg.Kafka.Topic is set. node is stamped on events that have none.
func NewAudit(cfg AuditConfig, p Producer, node string, opts ...Option) (*Audit, error) {
	o := buildOptions(opts)
	a := &Audit{actions: map[EventAction]bool{}, node: node}
	for _, name := range cfg.Events {
		act := EventAction(strings.ToLower(strings.TrimSpace(name)))
		if !slices.Contains(eventActions, act) {
			return nil, fmt.Errorf("audit.events: unknown event %q (known: %s)", name, joinActions())
		}
		a.actions[act] = true
	}
	if len(a.actions) == 0 {
		for _, act := range eventActions {
			a.actions[act] = true
		}
	}
	switch strings.ToLower(cfg.Log) {
	case "", "info":
		a.sink = append(a.sink, NewLogSink(o.logger, slog.LevelInfo))
	case "debug":
		a.sink = append(a.sink, NewLogSink(o.logger, slog.LevelDebug))
	case "off":
	default:
		return nil, fmt.Errorf("audit.log: %q is not one of debug, info, off", cfg.Log)
	}
	if cfg.Kafka.Topic != "" {
		if p == nil {
			return nil, errors.New("audit.kafka.topic is set but no Kafka producer was given")
		}
		k, err := NewKafkaSink(p, cfg.Kafka, opts...)
		if err != nil {
			return nil, err
		}
		a.kafka = k
		a.sink = append(a.sink, k)
	}
	return a, nil
}

func joinActions() string {
	names := make([]string, len(eventActions))
	for i, a := range eventActions {
		names[i] = string(a)
	}
	return strings.Join(names, ", ")
}

// Record implements Sink.
func (a *Audit) Record(ev Event) {
	if !a.actions[ev.Action] || len(a.sink) == 0 {
		return
	}
	if ev.Time.IsZero() {
		ev.Time = time.Now()
	}
	if ev.Node == "" {
		ev.Node = a.node
	}
	a.sink.Record(ev)
}

// Enabled reports whether events of action are recorded anywhere, so that a
// caller can skip building them (per-publish events are not free).
func (a *Audit) Enabled(action EventAction) bool {
	return a.actions[action] && len(a.sink) > 0
}

// Stats returns the Kafka sink's counters (zero without one).
func (a *Audit) Stats() AuditStats {
	if a.kafka == nil {
		return AuditStats{}
	}
	return a.kafka.Stats()
}

// Close flushes and stops the Kafka sink, waiting at most until ctx is done.
func (a *Audit) Close(ctx context.Context) error {
	if a.kafka == nil {
		return nil
	}
	return a.kafka.Close(ctx)
}
