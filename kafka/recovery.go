package kafka

import (
	"context"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
)

// recovery tracks the read-back of recover-on-start: the node is not ready
// until every partition has been consumed up to the end offset it had when
// the node started, so that a client sent here by a load balancer gets its
// snapshots from the first second.
type recovery struct {
	mu      sync.Mutex
	pending map[topicPartition]int64 // last offset still to reach
	done    bool
	started time.Time
	records int
}

// begin lists the end offsets of the topics being read back; partitions
// whose resolved start is already at the end are done at once.
func (r *recovery) begin(ctx context.Context, adm *kadm.Client, topics []string, starts map[topicPartition]int64) error {
	r.mu.Lock()
	r.started = time.Now()
	r.mu.Unlock()
	if len(topics) == 0 {
		r.finish()
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	ends, err := adm.ListEndOffsets(ctx, topics...)
	if err != nil {
		return err
	}
	pending := map[topicPartition]int64{}
	ends.Each(func(o kadm.ListedOffset) {
		tp := topicPartition{o.Topic, o.Partition}
		if start, ok := starts[tp]; ok && o.Err == nil && start < o.Offset {
			pending[tp] = o.Offset - 1
		}
	})
	r.mu.Lock()
	r.pending = pending
	r.mu.Unlock()
	if len(pending) == 0 {
		r.finish()
	}
	return nil
}

// consumed notes that a partition reached offset; it reports whether the
// whole read-back has just completed.
func (r *recovery) consumed(tp topicPartition, offset int64, n int) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.done || r.pending == nil {
		return false
	}
	r.records += n
	if target, ok := r.pending[tp]; ok && offset >= target {
		delete(r.pending, tp)
	}
	if len(r.pending) == 0 {
		r.done = true
		return true
	}
	return false
}

func (r *recovery) finish() {
	r.mu.Lock()
	r.done = true
	r.mu.Unlock()
}

func (r *recovery) isDone() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.done
}

// forget drops a partition that is no longer consumed (its topic was deleted).
func (r *recovery) forget(tp topicPartition) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.done || r.pending == nil {
		return
	}
	delete(r.pending, tp)
	if len(r.pending) == 0 {
		r.done = true
	}
}
