package kafka

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kedgehq/kedge/auth"
	"github.com/kedgehq/kedge/core"
)

// Epochs tells the producer a topic's current epoch; Source is one.
type Epochs interface {
	Epoch(topic string) (uint32, bool)
	Refresh(ctx context.Context) error
}

// Producer produces client publishes with acks=all and the idempotent
// producer. It implements core.Publisher. Records of one topic and key always
// go through the same client, so one client's publishes on a key keep their order.
type Producer struct {
	clients []*kgo.Client
	epochs  Epochs
	timeout time.Duration
}

// NewProducer creates n producer clients (min 1).
func NewProducer(opts Options, n int, epochs Epochs) (*Producer, error) {
	if n < 1 {
		n = 1
	}
	p := &Producer{epochs: epochs, timeout: opts.DeliveryTimeout}
	base := []kgo.Opt{
		kgo.SeedBrokers(opts.Brokers...),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.RecordDeliveryTimeout(opts.DeliveryTimeout),
		kgo.ProduceRequestTimeout(min(opts.DeliveryTimeout, 10*time.Second)),
		kgo.AllowAutoTopicCreation(),
	}
	for range n {
		all := append(append(append([]kgo.Opt{}, base...), opts.Common...), opts.Producer...)
		cl, err := kgo.NewClient(all...)
		if err != nil {
			_ = p.Close(context.Background())
			return nil, fmt.Errorf("kafka producer: %w", err)
		}
		p.clients = append(p.clients, cl)
	}
	return p, nil
}

// Publish hands pub to a producer client at once (never blocking: a full
// buffer fails with core.ErrBusy) and calls done with Kafka's answer.
func (p *Producer) Publish(ctx context.Context, pub core.Publication, done func(core.Position, error)) {
	r := &kgo.Record{Topic: pub.Subject.Topic, Key: pub.Subject.KafkaKey(), Value: pub.Payload}
	for _, h := range pub.Headers {
		r.Headers = append(r.Headers, kgo.RecordHeader{Key: h.Key, Value: h.Value})
	}
	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	// franz-go enforces its delivery timeout only when that is safe for the
	// idempotent producer's sequence numbers: a record in flight when the
	// broker vanished waits for it to return. The client gets its answer by
	// the deadline regardless: an error saying the outcome is unknown. The
	// promise, when it comes, is then ignored; an ack is sent only from it.
	var once sync.Once
	reply := done
	answer := func(pos core.Position, err error) { once.Do(func() { reply(pos, err) }) }
	deadline := time.AfterFunc(p.timeout+time.Second, func() {
		answer(core.Position{}, fmt.Errorf("%w: no answer from Kafka within %v; the message may still be stored", core.ErrTimeout, p.timeout))
	})
	done = answer
	p.client(r).TryProduce(ctx, r, func(r *kgo.Record, err error) {
		cancel()
		deadline.Stop()
		if err != nil {
			done(core.Position{}, classify(err))
			return
		}
		pos := core.Position{Partition: r.Partition, Offset: r.Offset}
		if e, ok := p.knownEpoch(r.Topic); ok {
			pos.Epoch = e
			done(pos, nil)
			return
		}
		// The publish created the topic: learn its epoch off the promise goroutine.
		go func() {
			pos.Epoch = p.epoch(r.Topic)
			done(pos, nil)
		}()
	})
}

func (p *Producer) knownEpoch(topic string) (uint32, bool) {
	if p.epochs == nil {
		return 0, true
	}
	return p.epochs.Epoch(topic)
}

func (p *Producer) client(r *kgo.Record) *kgo.Client {
	if len(p.clients) == 1 {
		return p.clients[0]
	}
	h := fnv.New32a()
	h.Write([]byte(r.Topic))
	h.Write(r.Key)
	return p.clients[h.Sum32()%uint32(len(p.clients))]
}

// epoch returns the topic's epoch, refreshing metadata once for a topic the
// publish just created.
func (p *Producer) epoch(topic string) uint32 {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = p.epochs.Refresh(ctx)
	e, _ := p.epochs.Epoch(topic)
	return e
}

// classify wraps a produce error in the core error clients are told.
func classify(err error) error {
	var ke *kerr.Error
	switch {
	case errors.Is(err, kgo.ErrMaxBuffered):
		return fmt.Errorf("%w: %v", core.ErrBusy, err)
	case errors.Is(err, kgo.ErrClientClosed):
		return fmt.Errorf("%w: %v", core.ErrShuttingDown, err)
	case errors.Is(err, kgo.ErrRecordTimeout), errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("%w: %v", core.ErrTimeout, err)
	case errors.Is(err, kerr.UnknownTopicOrPartition):
		return fmt.Errorf("%w: topic does not exist and the broker does not create it: %v", core.ErrRejected, err)
	case errors.As(err, &ke) && !ke.Retriable:
		return fmt.Errorf("%w: %v", core.ErrRejected, err)
	}
	return fmt.Errorf("%w: %v", core.ErrUnavailable, err)
}

// Flush waits until every buffered publish got Kafka's answer, or ctx ends.
func (p *Producer) Flush(ctx context.Context) error {
	var errs []error
	for _, cl := range p.clients {
		errs = append(errs, cl.Flush(ctx))
	}
	return errors.Join(errs...)
}

// Close flushes (bounded by ctx) and closes the clients.
func (p *Producer) Close(ctx context.Context) error {
	err := p.Flush(ctx)
	for _, cl := range p.clients {
		cl.Close()
	}
	return err
}

// AuditProducer adapts the producer for the auth package's Kafka audit sink
// (auth.Producer), which must not import franz-go.
type AuditProducer struct{ P *Producer }

// Produce writes the records and waits for Kafka's acknowledgement.
func (a AuditProducer) Produce(ctx context.Context, records []auth.AuditRecord) error {
	rs := make([]*kgo.Record, len(records))
	for i, r := range records {
		rs[i] = &kgo.Record{Topic: r.Topic, Key: r.Key, Value: r.Value}
	}
	return a.P.clients[0].ProduceSync(ctx, rs...).FirstErr()
}
