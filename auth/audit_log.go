package auth

import (
	"context"
	"log/slog"
	"time"
)

// LogSink writes audit events to a structured logger (log/slog) as records
// with the message "audit" and one attribute per non-empty Event field.
// Denials are logged at least at slog.LevelWarn.
type LogSink struct {
	logger *slog.Logger
	level  slog.Level
}

// NewLogSink returns a sink logging to logger (nil means slog.Default()) at
// level.
func NewLogSink(logger *slog.Logger, level slog.Level) *LogSink {
	if logger == nil {
		logger = slog.Default()
	}
	return &LogSink{logger: logger, level: level}
}

// Record implements Sink.
func (s *LogSink) Record(ev Event) {
	level := s.level
	if ev.Action == EventDeny {
		level = max(level, slog.LevelWarn)
	}
	ctx := context.Background()
	if !s.logger.Enabled(ctx, level) {
		return
	}
	attrs := make([]slog.Attr, 0, 9)
	attrs = append(attrs, slog.String("action", string(ev.Action)))
	add := func(key, v string) {
		if v != "" {
			attrs = append(attrs, slog.String(key, v))
		}
	}
	add("denied", string(ev.Denied))
	add("protocol", string(ev.Protocol))
	add("remote", ev.Remote)
	add("identity", ev.Identity)
	add("subject", ev.Subject)
	add("reason", ev.Reason)
	add("node", ev.Node)
	if !ev.Time.IsZero() {
		attrs = append(attrs, slog.Time("at", ev.Time.UTC().Truncate(time.Microsecond)))
	}
	s.logger.LogAttrs(ctx, level, "audit", attrs...)
}
