package kafka

import (
	"context"
	"errors"
	"fmt"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kedgehq/kedge/core"
)

// History reads partitions back from Kafka for resuming subscriptions. It
// implements core.History. Each read uses a short-lived franz-go client
// consuming exactly one partition from an exact offset; at most `concurrent`
// reads run at once, so a storm of reconnecting clients cannot open an
// unbounded number of Kafka connections.
type History struct {
	opts Options
	sem  chan struct{}
}

// NewHistory returns a History with at most concurrent reads at once.
func NewHistory(opts Options, concurrent int) *History {
	return &History{opts: opts, sem: make(chan struct{}, max(concurrent, 1))}
}

// Read implements core.History.
func (h *History) Read(ctx context.Context, q core.HistoryQuery) ([]*core.Message, error) {
	if q.To < q.From {
		return nil, nil
	}
	select {
	case h.sem <- struct{}{}:
		defer func() { <-h.sem }()
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	opts := h.opts.consumerOpts(
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{q.Topic: {q.Partition: kgo.NewOffset().At(q.From)}}),
		// Out of range means retention removed the start: report it, do not skip.
		kgo.ConsumeResetOffset(kgo.NoResetOffset()),
	)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	return readRange(ctx, cl, q)
}

func readRange(ctx context.Context, cl *kgo.Client, q core.HistoryQuery) ([]*core.Message, error) {
	var out []*core.Message
	for {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("reading %s[%d] from %d: %w", q.Topic, q.Partition, q.From, err)
		}
		var fetchErr error
		fs.EachError(func(_ string, _ int32, err error) {
			if errors.Is(err, kerr.OffsetOutOfRange) {
				fetchErr = fmt.Errorf("%w: %s[%d] offset %d", core.ErrHistoryGone, q.Topic, q.Partition, q.From)
			}
		})
		if fetchErr != nil {
			return nil, fetchErr
		}
		done := false
		fs.EachRecord(func(r *kgo.Record) {
			if done || r.Offset > q.To {
				done = true
				return
			}
			if m, ok := toMessage(r, q.Epoch); ok && (q.Keep == nil || q.Keep(m)) {
				out = append(out, m)
			}
			done = r.Offset == q.To || len(out) > q.Max
		})
		if done {
			return out, nil
		}
	}
}
