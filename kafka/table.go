package kafka

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kedgehq/kedge/core"
)

// Record headers that carry a table record's version and expiry.
const (
	headerGen     = "kedge-gen"
	headerNode    = "kedge-node"
	headerExpires = "kedge-expires" // Unix milliseconds
)

// TableConfig configures a Table.
type TableConfig struct {
	// Topic is the compacted topic; it is created (cleanup.policy=compact,
	// the broker's default partitions and replication) when missing.
	Topic string
	// Node is this node's name in versions (core.Version.Node): a record
	// of a lower version than one this node wrote is answered by writing
	// this node's again, so that compaction keeps the newest version.
	Node string
	// MaxMemory bounds the index (keys, values and a fixed overhead per
	// entry); past it the entries updated longest ago are evicted.
	MaxMemory int64
	Logger    *slog.Logger
}

// Table is a core.Table on a compacted Kafka topic: every node consumes
// the whole topic, from its start and then as it grows, into a bounded
// in-memory index of each key's newest record; writes go through one
// producer client (acks=all, idempotent), so one node's writes of a key
// keep their order.
type Table struct {
	cfg  TableConfig
	log  *slog.Logger
	cons *kgo.Client
	prod *kgo.Client
	adm  *kadm.Client

	watch func(core.TableRecord)
	putMu sync.Mutex // writes are handed to franz-go in order

	mu      sync.Mutex
	entries map[string]*list.Element // of *tableEntry, in lru
	lru     list.List                // least recently updated first
	bytes   int64
	next    map[int32]int64 // per partition, the offset after the last record read
	moved   chan struct{}   // closed (and replaced) whenever next moves

	// Listing end offsets: callers that arrive while one request is under
	// way wait for the next, so every CatchUp compares with offsets listed
	// after it began; one request at a time.
	endsMu      sync.Mutex
	endsWaiting *endsFlight
	endsRunning bool

	ready atomic.Bool // the topic has been read up to its end as of start
	stats struct {
		read, written, writeErrors, evicted, expired, reasserted, stale atomic.Int64
	}
	bg sync.WaitGroup
}

type tableEntry struct {
	rec  core.TableRecord
	size int64
}

type endsFlight struct {
	done chan struct{}
	ends map[int32]int64
	err  error
}

// tableFetchWait bounds how long the broker holds a fetch of the table's
// topic with nothing new.
const tableFetchWait = 500 * time.Millisecond

// tableEntryOverhead approximates an index entry's memory beside its key,
// value and node name.
const tableEntryOverhead = 160

// NewTable creates the table's clients; Start creates the topic if needed,
// Run reads it.
func NewTable(opts Options, cfg TableConfig) (*Table, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	t := &Table{cfg: cfg, log: cfg.Logger, entries: make(map[string]*list.Element),
		next: make(map[int32]int64), moved: make(chan struct{})}
	// A short fetch wait: franz-go may send a fetch before it knows where
	// to start a partition, and the broker holds that request for the whole
	// wait; a catch-up (bounded by seconds) must not sit behind it.
	cons := opts.consumerOpts(kgo.ConsumeTopics(cfg.Topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchMaxWait(tableFetchWait))
	var err error
	if t.cons, err = kgo.NewClient(cons...); err != nil {
		return nil, fmt.Errorf("kafka table %s: %w", cfg.Topic, err)
	}
	prod := opts.producerOpts(kgo.RequiredAcks(kgo.AllISRAcks()), kgo.RecordDeliveryTimeout(opts.DeliveryTimeout),
		kgo.ProduceRequestTimeout(min(opts.DeliveryTimeout, 10*time.Second)))
	if t.prod, err = kgo.NewClient(prod...); err != nil {
		t.cons.Close()
		return nil, fmt.Errorf("kafka table %s: %w", cfg.Topic, err)
	}
	t.adm = kadm.NewClient(t.prod)
	return t, nil
}

// Watch implements core.Table.
func (t *Table) Watch(f func(core.TableRecord)) { t.watch = f }

// Start creates the topic, compacted, when it does not exist; an existing
// topic that is not compacted is used, with a warning.
func (t *Table) Start(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	compact := "compact"
	_, err := t.adm.CreateTopic(ctx, -1, -1, map[string]*string{"cleanup.policy": &compact}, t.cfg.Topic)
	switch {
	case err == nil:
		t.log.Info("created the compacted topic", "topic", t.cfg.Topic)
		return nil
	case !errors.Is(err, kerr.TopicAlreadyExists):
		return fmt.Errorf("creating topic %s: %w", t.cfg.Topic, err)
	}
	rcs, err := t.adm.DescribeTopicConfigs(ctx, t.cfg.Topic)
	if err != nil {
		return fmt.Errorf("describing topic %s: %w", t.cfg.Topic, err)
	}
	rc, err := rcs.On(t.cfg.Topic, nil)
	if err != nil {
		return fmt.Errorf("describing topic %s: %w", t.cfg.Topic, err)
	}
	for _, c := range rc.Configs {
		if c.Key == "cleanup.policy" && (c.Value == nil || !strings.Contains(*c.Value, "compact")) {
			t.log.Warn("the topic is not compacted (cleanup.policy); Kafka will not keep each key's latest record",
				"topic", t.cfg.Topic, "cleanup.policy", c.MaybeValue())
		}
	}
	return nil
}

// Run reads the topic until ctx ends, then closes the consumer. The table
// is Ready once it has read up to the end offsets listed at start.
func (t *Table) Run(ctx context.Context) {
	t.bg.Go(func() { t.catchUpAtStart(ctx) })
	t.bg.Go(func() { t.sweep(ctx) })
	for {
		fs := t.cons.PollFetches(ctx)
		if fs.IsClientClosed() || ctx.Err() != nil {
			break
		}
		fs.EachError(func(_ string, p int32, err error) {
			if !errors.Is(err, context.Canceled) {
				t.log.Debug("kafka table fetch error", "topic", t.cfg.Topic, "partition", p, "err", err)
			}
		})
		fs.EachPartition(func(fp kgo.FetchTopicPartition) {
			if len(fp.Records) == 0 {
				return
			}
			for _, r := range fp.Records {
				t.apply(r)
			}
			t.mu.Lock()
			t.next[fp.Partition] = fp.Records[len(fp.Records)-1].Offset + 1
			close(t.moved)
			t.moved = make(chan struct{})
			t.mu.Unlock()
		})
	}
	t.cons.Close()
	t.bg.Wait()
}

func (t *Table) catchUpAtStart(ctx context.Context) {
	for ctx.Err() == nil {
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err := t.CatchUp(cctx)
		cancel()
		if err == nil {
			t.ready.Store(true)
			t.log.Info("kafka table read", "topic", t.cfg.Topic, "entries", t.Stats().Entries)
			return
		}
		if ctx.Err() == nil {
			t.log.Warn("kafka table: not read to its end yet", "topic", t.cfg.Topic, "err", err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}

// Ready reports whether the table has been read up to the end it had when
// the node started.
func (t *Table) Ready() bool { return t.ready.Load() }

// sweep turns expired entries into markers (their values freed) once a minute.
func (t *Table) sweep(ctx context.Context) {
	tick := time.NewTicker(time.Minute)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			t.mu.Lock()
			for e := t.lru.Front(); e != nil; e = e.Next() {
				te := e.Value.(*tableEntry)
				if te.rec.Value != nil && !te.rec.Expires.IsZero() && te.rec.Expires.Before(now) {
					te.rec.Value = nil
					t.resize(te)
					t.stats.expired.Add(1)
				}
			}
			t.mu.Unlock()
		}
	}
}

// recordOf reads a Kafka record's table record; records written by others
// than kedge have version zero.
func recordOf(r *kgo.Record) core.TableRecord {
	rec := core.TableRecord{Key: string(r.Key), Value: r.Value}
	for _, h := range r.Headers {
		switch h.Key {
		case headerGen:
			rec.Version.Gen, _ = strconv.ParseUint(string(h.Value), 10, 64)
		case headerNode:
			rec.Version.Node = string(h.Value)
		case headerExpires:
			if ms, err := strconv.ParseInt(string(h.Value), 10, 64); err == nil {
				rec.Expires = time.UnixMilli(ms)
			}
		}
	}
	return rec
}

// apply puts a record read into the index, unless it is older than what
// the index holds for its key.
func (t *Table) apply(r *kgo.Record) {
	t.stats.read.Add(1)
	rec := recordOf(r)
	if rec.Value != nil && !rec.Expires.IsZero() && rec.Expires.Before(time.Now()) {
		rec.Value = nil // expired: only its version matters
		t.stats.expired.Add(1)
	}
	t.mu.Lock()
	el, ok := t.entries[rec.Key]
	if ok {
		te := el.Value.(*tableEntry)
		if rec.Version.Less(te.rec.Version) {
			// Written by a node that had not read the newer record yet.
			// Compaction keeps a key's last record: when the newer one is
			// this node's, write it again.
			t.stats.stale.Add(1)
			again := te.rec
			t.mu.Unlock()
			if again.Version.Node == t.cfg.Node && again.Version.Node != "" {
				t.stats.reasserted.Add(1)
				t.Put([]core.TableRecord{again}, func(error) {})
			}
			return
		}
		te.rec = rec
		t.resize(te)
		t.lru.MoveToBack(el)
	} else {
		te := &tableEntry{rec: rec}
		t.entries[rec.Key] = t.lru.PushBack(te)
		t.resize(te)
	}
	for t.bytes > t.cfg.MaxMemory && t.lru.Len() > 0 {
		old := t.lru.Remove(t.lru.Front()).(*tableEntry)
		delete(t.entries, old.rec.Key)
		t.bytes -= old.size
		t.stats.evicted.Add(1)
	}
	t.mu.Unlock()
	if t.watch != nil {
		t.watch(rec)
	}
}

// resize accounts for an entry's new size. t.mu is held.
func (t *Table) resize(te *tableEntry) {
	n := int64(len(te.rec.Key) + len(te.rec.Value) + len(te.rec.Version.Node) + tableEntryOverhead)
	t.bytes += n - te.size
	te.size = n
}

// Get implements core.Table.
func (t *Table) Get(key string) (core.TableRecord, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	el, ok := t.entries[key]
	if !ok {
		return core.TableRecord{}, false
	}
	return el.Value.(*tableEntry).rec, true
}

// CatchUp implements core.Table.
func (t *Table) CatchUp(ctx context.Context) error {
	ends, err := t.endOffsets(ctx)
	if err != nil {
		return err
	}
	for {
		t.mu.Lock()
		behind := false
		for p, end := range ends {
			if end > 0 && t.next[p] < end {
				behind = true
				break
			}
		}
		moved := t.moved
		t.mu.Unlock()
		if !behind {
			return nil
		}
		select {
		case <-moved:
		case <-ctx.Done():
			return fmt.Errorf("reading %s up to its end: %w", t.cfg.Topic, ctx.Err())
		}
	}
}

// endOffsets lists the topic's end offsets with a request sent after the
// call began, shared with the callers that arrived meanwhile.
func (t *Table) endOffsets(ctx context.Context) (map[int32]int64, error) {
	t.endsMu.Lock()
	f := t.endsWaiting
	if f == nil {
		f = &endsFlight{done: make(chan struct{})}
		t.endsWaiting = f
	}
	if !t.endsRunning {
		t.endsRunning = true
		go t.listEnds()
	}
	t.endsMu.Unlock()
	select {
	case <-f.done:
		return f.ends, f.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// listEnds answers the waiting callers, one request at a time, until none wait.
func (t *Table) listEnds() {
	for {
		t.endsMu.Lock()
		f := t.endsWaiting
		t.endsWaiting = nil
		if f == nil {
			t.endsRunning = false
			t.endsMu.Unlock()
			return
		}
		t.endsMu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		listed, err := t.adm.ListEndOffsets(ctx, t.cfg.Topic)
		cancel()
		f.ends = make(map[int32]int64)
		if err == nil {
			listed.Each(func(o kadm.ListedOffset) {
				if o.Err != nil && err == nil {
					err = o.Err
				}
				f.ends[o.Partition] = o.Offset
			})
		}
		f.err = err
		close(f.done)
	}
}

// Put implements core.Table.
func (t *Table) Put(recs []core.TableRecord, done func(error)) {
	if len(recs) == 0 {
		done(nil)
		return
	}
	var left atomic.Int64
	left.Store(int64(len(recs)))
	var first atomic.Pointer[error]
	answer := func(_ *kgo.Record, err error) {
		if err != nil {
			t.stats.writeErrors.Add(1)
			first.CompareAndSwap(nil, &err)
		} else {
			t.stats.written.Add(1)
		}
		if left.Add(-1) == 0 {
			var e error
			if p := first.Load(); p != nil {
				e = *p
			}
			done(e)
		}
	}
	t.putMu.Lock()
	defer t.putMu.Unlock()
	for _, rec := range recs {
		r := &kgo.Record{Topic: t.cfg.Topic, Key: []byte(rec.Key), Value: rec.Value, Headers: []kgo.RecordHeader{
			{Key: headerGen, Value: strconv.AppendUint(nil, rec.Version.Gen, 10)},
			{Key: headerNode, Value: []byte(rec.Version.Node)},
		}}
		if !rec.Expires.IsZero() {
			r.Headers = append(r.Headers, kgo.RecordHeader{Key: headerExpires, Value: strconv.AppendInt(nil, rec.Expires.UnixMilli(), 10)})
		}
		t.prod.TryProduce(context.Background(), r, answer)
	}
}

// TableStats are a Table's counters for metrics.
type TableStats struct {
	Entries     int64 // keys in the index, tombstones and expired markers included
	Bytes       int64 // the index's memory (estimate)
	Read        int64 // records read
	Written     int64 // records Kafka acknowledged
	WriteErrors int64 // records Kafka did not take
	Evicted     int64 // index entries evicted (table.max.memory)
	Expired     int64 // records dropped from the index on expiry
	Stale       int64 // records older than the index's, ignored
	Reasserted  int64 // this node's records written again after a stale one
}

// Stats returns the table's counters.
func (t *Table) Stats() TableStats {
	t.mu.Lock()
	entries, bytes := int64(t.lru.Len()), t.bytes
	t.mu.Unlock()
	s := &t.stats
	return TableStats{Entries: entries, Bytes: bytes, Read: s.read.Load(), Written: s.written.Load(),
		WriteErrors: s.writeErrors.Load(), Evicted: s.evicted.Load(), Expired: s.expired.Load(),
		Stale: s.stale.Load(), Reasserted: s.reasserted.Load()}
}

// Close waits (bounded by ctx) for the writes handed over, then closes the
// producer. Run's consumer closes when its context ends.
func (t *Table) Close(ctx context.Context) error {
	err := t.prod.Flush(ctx)
	t.prod.Close()
	return err
}
