package auth

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeProducer records what it is given; block, when set, holds every call
// until it is closed or the call's context ends.
type fakeProducer struct {
	mu      sync.Mutex
	records []AuditRecord
	calls   int
	fail    error
	block   chan struct{}
}

func (p *fakeProducer) Produce(ctx context.Context, records []AuditRecord) error {
	p.mu.Lock()
	p.calls++
	block, fail := p.block, p.fail
	p.mu.Unlock()
	if block != nil {
		select {
		case <-block:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if fail != nil {
		return fail
	}
	p.mu.Lock()
	p.records = append(p.records, records...)
	p.mu.Unlock()
	return nil
}

func (p *fakeProducer) got() []AuditRecord {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]AuditRecord(nil), p.records...)
}

func mustUnmarshal(t *testing.T, data []byte, v any) {
	t.Helper()
	if err := json.Unmarshal(data, v); err != nil {
		t.Fatalf("%s: %v", data, err)
	}
}

func TestKafkaSink(t *testing.T) {
	p := &fakeProducer{}
	k, err := NewKafkaSink(p, KafkaSinkConfig{Topic: "audit", BatchSize: 3})
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 11, 21, 20, 41, 11, 0, time.UTC)
	k.Record(Event{Time: at, Action: EventConnect, Protocol: ProtocolWS, Remote: "192.0.2.1:1", Identity: "alice"})
	k.Record(Event{Time: at, Action: EventDeny, Denied: EventConnect, Remote: "192.0.2.2:2", Reason: "unknown token"})
	for i := range 5 {
		k.Record(Event{Time: at, Action: EventPublish, Identity: "alice", Subject: "/a/" + string(rune('0'+i))})
	}
	if err := k.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	recs := p.got()
	if len(recs) != 7 {
		t.Fatalf("%d records, want 7", len(recs))
	}
	if r := recs[0]; r.Topic != "audit" || string(r.Key) != "alice" ||
		string(r.Value) != `{"time":"2026-11-21T20:41:11Z","action":"connect","protocol":"ws","remote":"192.0.2.1:1","identity":"alice"}` {
		t.Fatalf("record 0: %s %s %s", r.Topic, r.Key, r.Value)
	}
	if r := recs[1]; string(r.Key) != "192.0.2.2:2" { // no identity: keyed by address
		t.Fatalf("record 1 key %q", r.Key)
	}
	var ev Event
	if err := json.Unmarshal(recs[6].Value, &ev); err != nil || ev.Subject != "/a/4" {
		t.Fatalf("last record %s: %v", recs[6].Value, err)
	}
	if s := k.Stats(); s != (AuditStats{Sent: 7}) {
		t.Fatalf("stats %+v", s)
	}
	p.mu.Lock()
	calls := p.calls
	p.mu.Unlock()
	if calls < 3 { // 7 events in batches of at most 3
		t.Fatalf("%d Produce calls for 7 events in batches of 3", calls)
	}
	// After Close, events are dropped and counted; Close again is harmless.
	k.Record(Event{Action: EventConnect})
	if s := k.Stats(); s.Dropped != 1 {
		t.Fatalf("after close: %+v", s)
	}
	if err := k.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
}

func TestKafkaSinkFullQueueDrops(t *testing.T) {
	p := &fakeProducer{block: make(chan struct{})}
	k, err := NewKafkaSink(p, KafkaSinkConfig{Topic: "audit", QueueSize: 4, BatchSize: 1})
	if err != nil {
		t.Fatal(err)
	}
	k.Record(Event{Action: EventPublish, Subject: "/first"})
	waitFor(t, "the first batch in flight", func() bool { p.mu.Lock(); defer p.mu.Unlock(); return p.calls == 1 })
	done := make(chan struct{})
	go func() { // Record never blocks, even with the producer stuck
		for range 10 {
			k.Record(Event{Action: EventPublish})
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Record blocked on a full queue")
	}
	if s := k.Stats(); s.Dropped != 6 {
		t.Fatalf("stats %+v; want 6 dropped (queue of 4)", s)
	}
	close(p.block)
	if err := k.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	if s := k.Stats(); s != (AuditStats{Sent: 5, Dropped: 6}) {
		t.Fatalf("stats %+v", s)
	}
}

func TestKafkaSinkFailures(t *testing.T) {
	var logs bytes.Buffer
	var mu sync.Mutex
	logger := slog.New(slog.NewTextHandler(lockedWriter{&logs, &mu}, nil))
	p := &fakeProducer{fail: errors.New("broker down")}
	k, err := NewKafkaSink(p, KafkaSinkConfig{Topic: "audit", BatchSize: 1}, WithLogger(logger))
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		k.Record(Event{Action: EventConnect})
	}
	waitFor(t, "3 failures", func() bool { return k.Stats().Failed == 3 })
	p.mu.Lock()
	p.fail = nil
	p.mu.Unlock()
	k.Record(Event{Action: EventConnect})
	if err := k.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	if s := k.Stats(); s != (AuditStats{Sent: 1, Failed: 3}) {
		t.Fatalf("stats %+v", s)
	}
	mu.Lock()
	defer mu.Unlock()
	if n := strings.Count(logs.String(), "broker down"); n != 1 {
		t.Errorf("an outage logged %d times, want once:\n%s", n, logs.String())
	}
	if !strings.Contains(logs.String(), "written to Kafka again") {
		t.Errorf("recovery not logged:\n%s", logs.String())
	}
}

func TestKafkaSinkCloseGivesUp(t *testing.T) {
	p := &fakeProducer{block: make(chan struct{})} // never released
	k, err := NewKafkaSink(p, KafkaSinkConfig{Topic: "audit", BatchSize: 1, Timeout: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		k.Record(Event{Action: EventConnect})
	}
	waitFor(t, "a batch in flight", func() bool { p.mu.Lock(); defer p.mu.Unlock(); return p.calls == 1 })
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
	defer cancel()
	if err := k.Close(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Close = %v", err)
	}
	if s := k.Stats(); s != (AuditStats{Failed: 1, Dropped: 2}) {
		t.Fatalf("stats %+v: the batch in flight failed, the queued two dropped", s)
	}
}

func TestKafkaSinkConfig(t *testing.T) {
	if _, err := NewKafkaSink(nil, KafkaSinkConfig{Topic: "a"}); err == nil {
		t.Error("no producer accepted")
	}
	if _, err := NewKafkaSink(&fakeProducer{}, KafkaSinkConfig{}); err == nil {
		t.Error("no topic accepted")
	}
}

func TestLogSink(t *testing.T) {
	var buf bytes.Buffer
	logger := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo}))
	s := NewLogSink(logger, slog.LevelInfo)
	at := time.Date(2026, 11, 21, 20, 41, 11, 123456789, time.UTC)
	s.Record(Event{Time: at, Action: EventSubscribe, Protocol: ProtocolMQTT, Remote: "192.0.2.1:1", Identity: "alice", Subject: "/a/#"})
	s.Record(Event{Action: EventDeny, Denied: EventPublish, Identity: "bob", Subject: "/b", Reason: "no"})
	NewLogSink(logger, slog.LevelDebug).Record(Event{Action: EventPublish}) // below the handler's level
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("%d lines:\n%s", len(lines), buf.String())
	}
	var first, second map[string]any
	mustUnmarshal(t, []byte(lines[0]), &first)
	mustUnmarshal(t, []byte(lines[1]), &second)
	want := map[string]any{"level": "INFO", "msg": "audit", "action": "subscribe", "protocol": "mqtt",
		"remote": "192.0.2.1:1", "identity": "alice", "subject": "/a/#", "at": "2026-11-21T20:41:11.123456Z"}
	delete(first, "time")
	if b, _ := json.Marshal(first); !jsonEqual(b, want) {
		t.Errorf("line 1: %s", b)
	}
	if second["level"] != "WARN" || second["denied"] != "publish" || second["reason"] != "no" || second["remote"] != nil {
		t.Errorf("line 2: %v", second)
	}
}

func TestAudit(t *testing.T) {
	var buf bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	p := &fakeProducer{}
	a, err := NewAudit(AuditConfig{Log: "debug", Events: []string{"connect", " Deny "},
		Kafka: KafkaSinkConfig{Topic: "audit"}}, p, "edge-1", WithLogger(logger))
	if err != nil {
		t.Fatal(err)
	}
	if !a.Enabled(EventConnect) || !a.Enabled(EventDeny) || a.Enabled(EventPublish) {
		t.Fatal("Enabled does not follow Events")
	}
	a.Record(Event{Action: EventConnect, Identity: "alice"})
	a.Record(Event{Action: EventPublish, Identity: "alice"}) // filtered out
	a.Record(Event{Action: EventDeny, Denied: EventConnect, Node: "other"})
	if err := a.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	recs := p.got()
	if len(recs) != 2 || a.Stats().Sent != 2 {
		t.Fatalf("%d records, stats %+v", len(recs), a.Stats())
	}
	var ev Event
	mustUnmarshal(t, recs[0].Value, &ev)
	if ev.Node != "edge-1" || ev.Time.IsZero() || ev.Action != EventConnect {
		t.Fatalf("event not stamped: %+v", ev)
	}
	mustUnmarshal(t, recs[1].Value, &ev)
	if ev.Node != "other" {
		t.Fatalf("a given node was overwritten: %+v", ev)
	}
	if strings.Count(buf.String(), "msg=audit") != 2 || !strings.Contains(buf.String(), "level=DEBUG msg=audit action=connect") {
		t.Fatalf("log:\n%s", buf.String())
	}

	// Defaults: every event, logged at info, no Kafka.
	buf.Reset()
	a, err = NewAudit(AuditConfig{}, nil, "", WithLogger(logger))
	if err != nil {
		t.Fatal(err)
	}
	for _, act := range eventActions {
		if !a.Enabled(act) {
			t.Errorf("%s not enabled by default", act)
		}
		a.Record(Event{Action: act})
	}
	if strings.Count(buf.String(), "level=INFO msg=audit") != len(eventActions)-1 || a.Stats() != (AuditStats{}) ||
		a.Close(t.Context()) != nil {
		t.Fatalf("defaults: log\n%s", buf.String())
	}
	// Off: nothing enabled.
	a, _ = NewAudit(AuditConfig{Log: "off"}, nil, "")
	if a.Enabled(EventDeny) {
		t.Fatal("log off and no Kafka, yet enabled")
	}

	for _, tc := range []struct {
		cfg  AuditConfig
		p    Producer
		want string
	}{
		{AuditConfig{Log: "loud"}, nil, `audit.log: "loud"`},
		{AuditConfig{Events: []string{"connect", "kick"}}, nil, `unknown event "kick"`},
		{AuditConfig{Kafka: KafkaSinkConfig{Topic: "a"}}, nil, "no Kafka producer"},
	} {
		if _, err := NewAudit(tc.cfg, tc.p, ""); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("NewAudit(%+v) = %v, want %q", tc.cfg, err, tc.want)
		}
	}
}

func TestDenyEvent(t *testing.T) {
	p := &Permissions{}
	err := p.Authorize(t.Context(), &Identity{Name: "alice"}, Publish, "/a/b")
	ev := DenyEvent(ProtocolWS, "192.0.2.1:1", err)
	if ev.Action != EventDeny || ev.Denied != EventPublish || ev.Identity != "alice" || ev.Subject != "/a/b" ||
		ev.Protocol != ProtocolWS || ev.Remote != "192.0.2.1:1" || ev.Time.IsZero() ||
		ev.Reason != `"alice" may not publish on "/a/b": no publish permission grants it` {
		t.Fatalf("publish denial: %+v", ev)
	}
	ev = DenyEvent(ProtocolMQTT, "", &Error{Kind: ErrExpired, User: "bob", Reason: "token expired"})
	if ev.Denied != EventConnect || ev.Identity != "bob" || ev.Reason != `"bob" may not connect: token expired` {
		t.Fatalf("connect denial: %+v", ev)
	}
	ev = DenyEvent(ProtocolSSE, "", errors.New("plain"))
	if ev.Denied != EventConnect || ev.Reason != "plain" {
		t.Fatalf("plain error: %+v", ev)
	}
	err = (&Permissions{}).Authorize(t.Context(), &Identity{Name: "c"}, Subscribe, "/x/#")
	if ev = DenyEvent(ProtocolSSE, "", err); ev.Denied != EventSubscribe || ev.Subject != "/x/#" {
		t.Fatalf("subscribe denial: %+v", ev)
	}
	var m MultiSink = []Sink{NewLogSink(slog.New(slog.DiscardHandler), 0)}
	m.Record(ev) // must not panic
}
