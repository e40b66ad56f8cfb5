package main

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/kedgehq/kedge/core"
	"github.com/kedgehq/kedge/internal/certfile"
	"github.com/kedgehq/kedge/protocols/mqtt"
	"github.com/kedgehq/kedge/protocols/sse"
)

// metricsHandler serves Prometheus metrics read from each part's Stats at
// scrape time, so the delivery path only bumps atomic counters.
func (s *server) metricsHandler() http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	gauge := func(name, help string, f func() float64) {
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, f))
	}
	counter := func(name, help string, f func() float64) {
		reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, f))
	}
	wsStat := func(f func() int64) func() float64 { return func() float64 { return float64(f()) } }
	w := s.ws
	gauge("kedge_ws_connections", "Open WebSocket connections.", wsStat(func() int64 { return w.Stats().Connections }))
	counter("kedge_ws_connections_accepted_total", "WebSocket connections accepted.", wsStat(func() int64 { return w.Stats().Accepted }))
	gauge("kedge_ws_subscriptions", "Subscriptions held by WebSocket connections.", wsStat(func() int64 { return w.Stats().Subscriptions }))
	counter("kedge_ws_frames_received_total", "Frames received from WebSocket clients.", wsStat(func() int64 { return w.Stats().Received }))
	counter("kedge_messages_out_total", "Messages queued to clients (deliveries).", wsStat(func() int64 { return w.Stats().Delivered }))
	counter("kedge_messages_dropped_total", "Messages dropped for standard-mode subscriptions under backpressure.", wsStat(func() int64 { return w.Stats().Dropped }))
	counter("kedge_slow_consumer_disconnects_total", "Connections closed because they read too slowly.", wsStat(func() int64 { return w.Stats().SlowClosed }))
	counter("kedge_publishes_total", "Client publishes handed to Kafka.", wsStat(func() int64 { return w.Stats().Published }))
	counter("kedge_publish_errors_total", "Client publishes that failed.", wsStat(func() int64 { return w.Stats().PublishErrors }))
	counter("kedge_ws_errors_total", "Error frames sent and connections failed.", wsStat(func() int64 { return w.Stats().Errors }))
	counter("kedge_ws_auth_denied_total", "WebSocket connections refused authentication.", wsStat(func() int64 { return w.Stats().Denied }))
	counter("kedge_ws_forbidden_total", "WebSocket subscribes and publishes refused authorization.", wsStat(func() int64 { return w.Stats().Forbidden }))
	counter("kedge_ws_token_expired_total", "WebSocket connections closed because their credentials expired.", wsStat(func() int64 { return w.Stats().Expired }))
	counter("kedge_ws_resumes_total", "WebSocket subscriptions resumed from a cursor.", wsStat(func() int64 { return w.Stats().Resumes }))
	counter("kedge_ws_resets_total", "WebSocket resumes whose history could not be recovered.", wsStat(func() int64 { return w.Stats().Resets }))
	if a := s.audit; a != nil {
		for _, r := range []struct {
			name, help string
			get        func() uint64
		}{
			{"kedge_audit_kafka_sent_total", "Audit events Kafka acknowledged.", func() uint64 { return a.Stats().Sent }},
			{"kedge_audit_kafka_dropped_total", "Audit events dropped (queue full or sink closed).", func() uint64 { return a.Stats().Dropped }},
			{"kedge_audit_kafka_failed_total", "Audit events whose produce failed.", func() uint64 { return a.Stats().Failed }},
		} {
			counter(r.name, r.help, func() float64 { return float64(r.get()) })
		}
	}

	sseStat := func(f func(sse.Stats) int64) func() float64 {
		return func() float64 { return float64(f(s.sse.Stats())) }
	}
	gauge("kedge_sse_connections", "Open Server-Sent Events streams.", sseStat(func(st sse.Stats) int64 { return st.Connections }))
	counter("kedge_sse_connections_accepted_total", "SSE streams accepted.", sseStat(func(st sse.Stats) int64 { return st.Accepted }))
	gauge("kedge_sse_subscriptions", "Subscriptions held by SSE streams.", sseStat(func(st sse.Stats) int64 { return st.Subscriptions }))
	counter("kedge_sse_messages_out_total", "Messages queued to SSE streams.", sseStat(func(st sse.Stats) int64 { return st.Delivered }))
	counter("kedge_sse_messages_dropped_total", "Messages dropped for standard-mode SSE streams under backpressure.", sseStat(func(st sse.Stats) int64 { return st.Dropped }))
	counter("kedge_sse_slow_consumer_disconnects_total", "SSE streams ended because they read too slowly.", sseStat(func(st sse.Stats) int64 { return st.SlowClosed }))
	counter("kedge_sse_resumes_total", "SSE subscriptions resumed from a Last-Event-ID.", sseStat(func(st sse.Stats) int64 { return st.Resumes }))
	counter("kedge_sse_resets_total", "SSE resumes whose history could not be recovered.", sseStat(func(st sse.Stats) int64 { return st.Resets }))
	counter("kedge_http_errors_total", "SSE, publish and snapshot requests refused, and failed SSE writes.", sseStat(func(st sse.Stats) int64 { return st.Errors }))
	counter("kedge_http_publishes_total", "HTTP publishes acknowledged by Kafka.", sseStat(func(st sse.Stats) int64 { return st.Published }))
	counter("kedge_http_publish_errors_total", "HTTP publishes that failed.", sseStat(func(st sse.Stats) int64 { return st.PublishErrors }))
	counter("kedge_http_snapshots_total", "GET /v1/snapshot requests served.", sseStat(func(st sse.Stats) int64 { return st.Snapshots }))
	counter("kedge_http_auth_denied_total", "SSE, publish and snapshot requests refused by authentication or authorization.", sseStat(func(st sse.Stats) int64 { return st.Denied }))
	counter("kedge_sse_expired_total", "SSE streams ended because their credentials expired.", sseStat(func(st sse.Stats) int64 { return st.Expired }))
	counter("kedge_sse_duplicates_skipped_total", "Messages a resumed SSE stream already had (its id came from a node ahead of this one), not sent again.", sseStat(func(st sse.Stats) int64 { return st.Duplicates }))

	mqttStat := func(f func(mqtt.Stats) int64) func() float64 {
		return func() float64 { return float64(f(s.mqtt.Stats())) }
	}
	gauge("kedge_mqtt_connections", "Open MQTT connections (TCP, TLS and WebSocket).", mqttStat(func(st mqtt.Stats) int64 { return st.Connections }))
	counter("kedge_mqtt_connections_accepted_total", "MQTT connections accepted.", mqttStat(func(st mqtt.Stats) int64 { return st.Accepted }))
	gauge("kedge_mqtt_sessions", "MQTT sessions, connected or waiting for their client.", mqttStat(func(st mqtt.Stats) int64 { return st.Sessions }))
	gauge("kedge_mqtt_sessions_offline", "Persistent MQTT sessions waiting for their client.", mqttStat(func(st mqtt.Stats) int64 { return st.OfflineSessions }))
	gauge("kedge_mqtt_subscriptions", "Subscriptions held by MQTT sessions.", mqttStat(func(st mqtt.Stats) int64 { return st.Subscriptions }))
	counter("kedge_mqtt_publish_packets_total", "PUBLISH packets received from MQTT clients.", mqttStat(func(st mqtt.Stats) int64 { return st.Received }))
	counter("kedge_mqtt_publishes_total", "MQTT publishes handed to Kafka.", mqttStat(func(st mqtt.Stats) int64 { return st.Published }))
	counter("kedge_mqtt_publish_errors_total", "MQTT publishes (and wills) Kafka did not take.", mqttStat(func(st mqtt.Stats) int64 { return st.PublishErrors }))
	counter("kedge_mqtt_publishes_refused_total", "MQTT publishes refused before Kafka (topic, exposure, payload format, shutdown).", mqttStat(func(st mqtt.Stats) int64 { return st.Refused }))
	counter("kedge_mqtt_messages_out_total", "Messages queued to MQTT clients.", mqttStat(func(st mqtt.Stats) int64 { return st.Delivered }))
	counter("kedge_mqtt_messages_dropped_total", "QoS 0 messages dropped for MQTT clients under backpressure.", mqttStat(func(st mqtt.Stats) int64 { return st.Dropped }))
	counter("kedge_mqtt_messages_undeliverable_total", "Messages no MQTT client can receive (topic not MQTT-valid, larger than the client's maximum).", mqttStat(func(st mqtt.Stats) int64 { return st.Undeliverable }))
	counter("kedge_mqtt_slow_consumer_disconnects_total", "MQTT clients disconnected because they read too slowly.", mqttStat(func(st mqtt.Stats) int64 { return st.SlowClosed }))
	counter("kedge_mqtt_session_resets_total", "MQTT sessions reset because their queue overflowed or too many were offline.", mqttStat(func(st mqtt.Stats) int64 { return st.SessionResets }))
	counter("kedge_mqtt_sessions_expired_total", "Persistent MQTT sessions that expired while their client was away.", mqttStat(func(st mqtt.Stats) int64 { return st.SessionsExpired }))
	counter("kedge_mqtt_resets_total", "MQTT subscriptions whose history could not be recovered.", mqttStat(func(st mqtt.Stats) int64 { return st.Resets }))
	counter("kedge_mqtt_wills_total", "MQTT will messages published.", mqttStat(func(st mqtt.Stats) int64 { return st.Wills }))
	counter("kedge_mqtt_write_errors_total", "Writes to MQTT clients that failed.", mqttStat(func(st mqtt.Stats) int64 { return st.WriteErrors }))
	counter("kedge_mqtt_denied_total", "MQTT connects, subscriptions and publishes refused by authentication or authorization.", mqttStat(func(st mqtt.Stats) int64 { return st.Denied }))
	counter("kedge_mqtt_malformed_total", "MQTT connections closed for a packet the decoder could not take.", mqttStat(func(st mqtt.Stats) int64 { return st.Malformed }))
	counter("kedge_mqtt_token_expired_total", "MQTT clients disconnected because their credentials expired.", mqttStat(func(st mqtt.Stats) int64 { return st.TokenExpired }))
	counter("kedge_mqtt_sessions_taken_over_total", "Persistent MQTT sessions resumed from the sessions topic (made on another node).", mqttStat(func(st mqtt.Stats) int64 { return st.TakenOver }))
	counter("kedge_mqtt_sessions_moved_total", "Persistent MQTT sessions ended on this node because another node took them over.", mqttStat(func(st mqtt.Stats) int64 { return st.MovedAway }))
	counter("kedge_mqtt_session_checkpoints_total", "MQTT session records written to the sessions topic.", mqttStat(func(st mqtt.Stats) int64 { return st.Checkpoints }))
	counter("kedge_mqtt_session_checkpoint_errors_total", "MQTT session records that could not be written to the sessions topic.", mqttStat(func(st mqtt.Stats) int64 { return st.CheckpointErrs }))

	src, hub := s.source, s.hub
	counter("kedge_messages_in_total", "Records consumed from Kafka.", wsStat(func() int64 { return src.Stats().Records }))
	counter("kedge_kafka_unaddressable_total", "Records whose key is no valid subject (not delivered).", wsStat(func() int64 { return src.Stats().Unaddressable }))
	counter("kedge_kafka_fetch_errors_total", "Kafka fetch errors.", wsStat(func() int64 { return src.Stats().FetchErrors }))
	gauge("kedge_kafka_consumer_lag", "Records behind the high watermark, summed over partitions.", wsStat(func() int64 { return src.Stats().Lag }))
	gauge("kedge_kafka_partitions", "Partitions consumed with a known lag.", wsStat(func() int64 { return src.Stats().Partitions }))
	gauge("kedge_kafka_ready", "1 while Kafka answers metadata requests.", func() float64 {
		if src.Ready() {
			return 1
		}
		return 0
	})
	gauge("kedge_subjects", "Subjects with subscribers or cached messages.", wsStat(func() int64 { return hub.Stats().Subjects }))
	gauge("kedge_cache_bytes", "Bytes held by the message cache (estimate).", wsStat(func() int64 { return hub.Stats().CachedBytes }))
	counter("kedge_cache_evictions_total", "Messages evicted from the cache.", wsStat(func() int64 { return hub.Stats().Evicted }))
	counter("kedge_dispatched_total", "Messages dispatched by the hub.", wsStat(func() int64 { return hub.Stats().Dispatched }))
	reg.MustRegister(limitsCollector{s.limits})
	gauge("kedge_connections", "Connections counted against limits.max.connections: WebSocket, SSE streams, HTTP publishes in flight, MQTT.",
		func() float64 { return float64(s.limits.Open()) })
	s.registerCertificate(reg, "http", s.cert)
	s.registerCertificate(reg, "mqtt", s.mqtt.Certificate())
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
}

// limitsCollector exports core.Limits' refusals by limit and protocol.
type limitsCollector struct{ l *core.Limits }

var limitRefusals = prometheus.NewDesc("kedge_limit_refusals_total",
	"Clients refused, disconnected or answered with an error by a limit (see docs/configuration.md#limits).",
	[]string{"limit", "protocol"}, nil)

func (c limitsCollector) Describe(ch chan<- *prometheus.Desc) { ch <- limitRefusals }

func (c limitsCollector) Collect(ch chan<- prometheus.Metric) {
	for _, l := range core.AllLimits() {
		for _, p := range core.Protocols {
			ch <- prometheus.MustNewConstMetric(limitRefusals, prometheus.CounterValue, float64(c.l.Hits(l, p)), l.String(), string(p))
		}
	}
}

// registerCertificate exports a TLS listener's certificate reloads and expiry.
func (s *server) registerCertificate(reg *prometheus.Registry, listener string, r *certfile.Reloader) {
	if r == nil {
		return
	}
	labels := prometheus.Labels{"listener": listener}
	reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "kedge_tls_certificate_reloads_total",
		Help: "New TLS certificates taken into use without a restart.", ConstLabels: labels},
		func() float64 { return float64(r.Stats().Reloads) }))
	reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "kedge_tls_certificate_reload_errors_total",
		Help: "Changed TLS certificate files that did not load (the previous certificate stays in use).", ConstLabels: labels},
		func() float64 { return float64(r.Stats().Failures) }))
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "kedge_tls_certificate_expiry_timestamp_seconds",
		Help: "When the TLS certificate in use expires (Unix time).", ConstLabels: labels},
		func() float64 { return float64(r.Stats().NotAfter.Unix()) }))
}
