package auth

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// Producer writes audit records to Kafka. The caller supplies it (kedge's
// kafka package wraps its franz-go client), so auth imports no Kafka library.
// Produce returns when Kafka has acknowledged every record, or with an error;
// it must give up when ctx is done.
type Producer interface {
	Produce(ctx context.Context, records []AuditRecord) error
}

// AuditRecord is one Kafka record of the audit topic.
type AuditRecord struct {
	Topic string
	// Key is the identity's name (the remote address before authentication),
	// so one identity's events stay in order in one partition.
	Key []byte
	// Value is the Event as JSON.
	Value []byte
}

// KafkaSinkConfig configures the Kafka audit sink.
type KafkaSinkConfig struct {
	// Topic receives the events. Empty means no Kafka sink.
	Topic string
	// QueueSize bounds the events waiting to be produced; zero means 10000.
	// When the queue is full, new events are dropped and counted.
	QueueSize int
	// BatchSize is the most events produced in one call; zero means 500.
	BatchSize int
	// Timeout bounds one Produce call; zero means 10s. A batch that fails is
	// counted as failed and not retried.
	Timeout time.Duration
}

// AuditStats are the Kafka sink's counters, for metrics.
type AuditStats struct {
	Sent    uint64 // events Kafka acknowledged
	Dropped uint64 // events dropped because the queue was full or the sink closed
	Failed  uint64 // events whose Produce failed
}

// KafkaSink records events to a Kafka topic through a bounded queue drained
// by one goroutine. Record never blocks. Close it to flush and stop.
type KafkaSink struct {
	p       Producer
	topic   string
	batch   int
	timeout time.Duration
	logger  *slog.Logger

	mu     sync.RWMutex // Record holds it shared; Close exclusively, to close
	closed bool
	queue  chan Event

	ctx     context.Context // cancelled when Close gives up waiting
	cancel  context.CancelFunc
	stop    chan struct{}
	stopped chan struct{}

	sent, dropped, failed atomic.Uint64
	failing               bool // the last Produce failed; only run uses it
}

// NewKafkaSink starts a sink producing through p.
func NewKafkaSink(p Producer, cfg KafkaSinkConfig, opts ...Option) (*KafkaSink, error) {
	if p == nil || cfg.Topic == "" {
		return nil, errors.New("audit.kafka: a topic and a producer are required")
	}
	o := buildOptions(opts)
	k := &KafkaSink{p: p, topic: cfg.Topic, batch: cfg.BatchSize, timeout: cfg.Timeout, logger: o.logger,
		stop: make(chan struct{}), stopped: make(chan struct{})}
	queue := cfg.QueueSize
	if queue <= 0 {
		queue = 10000
	}
	if k.batch <= 0 {
		k.batch = 500
	}
	if k.timeout <= 0 {
		k.timeout = 10 * time.Second
	}
	k.queue = make(chan Event, queue)
	k.ctx, k.cancel = context.WithCancel(context.Background())
	go k.run()
	return k, nil
}

// Record implements Sink: it queues ev, or drops and counts it when the queue
// is full or the sink is closed.
func (k *KafkaSink) Record(ev Event) {
	k.mu.RLock()
	defer k.mu.RUnlock()
	if k.closed {
		k.dropped.Add(1)
		return
	}
	select {
	case k.queue <- ev:
	default:
		k.dropped.Add(1)
	}
}

// Stats returns the counters.
func (k *KafkaSink) Stats() AuditStats {
	return AuditStats{Sent: k.sent.Load(), Dropped: k.dropped.Load(), Failed: k.failed.Load()}
}

// Close stops accepting events, produces those queued, and stops. When ctx is
// done first, the batch in flight is abandoned, the rest are counted as
// dropped, and Close returns ctx's error.
func (k *KafkaSink) Close(ctx context.Context) error {
	k.mu.Lock()
	already := k.closed
	k.closed = true
	k.mu.Unlock()
	if !already {
		close(k.stop)
	}
	select {
	case <-k.stopped:
		return nil
	case <-ctx.Done():
		k.cancel()
		<-k.stopped
		return ctx.Err()
	}
}

func (k *KafkaSink) run() {
	defer close(k.stopped)
	defer k.cancel()
	batch := make([]Event, 0, k.batch)
	for {
		select {
		case ev := <-k.queue:
			batch = k.fill(append(batch[:0], ev))
			if k.ctx.Err() != nil { // Close gave up waiting
				k.dropped.Add(uint64(len(batch) + len(k.queue)))
				return
			}
			k.produce(batch)
		case <-k.stop:
			// No Record can add to the queue any more: drain it.
			for len(k.queue) > 0 {
				if k.ctx.Err() != nil {
					k.dropped.Add(uint64(len(k.queue)))
					return
				}
				k.produce(k.fill(batch[:0]))
			}
			return
		}
	}
}

// fill adds queued events to batch, without waiting, up to the batch size.
func (k *KafkaSink) fill(batch []Event) []Event {
	for len(batch) < k.batch {
		select {
		case ev := <-k.queue:
			batch = append(batch, ev)
		default:
			return batch
		}
	}
	return batch
}

func (k *KafkaSink) produce(batch []Event) {
	records := make([]AuditRecord, 0, len(batch))
	for _, ev := range batch {
		value, err := json.Marshal(ev)
		if err != nil { // not for this type; counted, not silently lost
			k.failed.Add(1)
			continue
		}
		key := ev.Identity
		if key == "" {
			key = ev.Remote
		}
		records = append(records, AuditRecord{Topic: k.topic, Key: []byte(key), Value: value})
	}
	ctx, cancel := context.WithTimeout(k.ctx, k.timeout)
	err := k.p.Produce(ctx, records)
	cancel()
	if err != nil {
		k.failed.Add(uint64(len(records)))
		if !k.failing { // log the change, not every batch of an outage
			k.failing = true
			k.logger.Warn("auth: audit events not written to Kafka; counting failures until it works again",
				"topic", k.topic, "events", len(records), "error", err)
		}
		return
	}
	k.sent.Add(uint64(len(records)))
	if k.failing {
		k.failing = false
		k.logger.Info("auth: audit events written to Kafka again", "topic", k.topic,
			"failed_so_far", k.failed.Load())
	}
}
