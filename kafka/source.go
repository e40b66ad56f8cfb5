package kafka

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kedgehq/kedge/core"
)

// Dispatcher receives every consumed record as a message; core.Hub is one.
type Dispatcher interface {
	Dispatch(m *core.Message)
}

// SourceConfig configures a Source.
type SourceConfig struct {
	Options  Options
	Exposure *core.Exposure
	// Consumers is how many franz-go clients share the partitions (min 1).
	Consumers int
	// RecoverFor, when positive, starts the partitions found at start that
	// far back in time (offsets by timestamp) instead of at their end.
	RecoverFor time.Duration
	// NewTopicsFrom is how far back a partition discovered after start is
	// read; it bounds the read-back of a topic created while running.
	NewTopicsFrom time.Duration
	Logger        *slog.Logger
}

// Source consumes every partition of every exposed topic and dispatches its
// records in each partition's order. It implements core.Source.
type Source struct {
	cfg     SourceConfig
	log     *slog.Logger
	out     Dispatcher
	clients []*kgo.Client

	topics  map[string]*topicState // owned by the discovery loop
	epochs  sync.Map               // topic → uint32, for readers
	wake    chan struct{}
	refresh chan chan error
	started bool      // first successful discovery done
	since   time.Time // where recover-on-start reads back from

	ready         atomic.Bool
	recovery      recovery
	records       atomic.Int64
	unaddressable atomic.Int64
	fetchErrors   atomic.Int64
	lag           sync.Map // topicPartition → *atomic.Int64
}

// topicDetail is what discovery needs of one topic in a metadata response.
type topicDetail struct {
	id         [16]byte
	partitions int
	internal   bool
	err        error
}

type topicState struct {
	id         [16]byte
	partitions int
	epoch      uint32
}

type topicPartition struct {
	topic     string
	partition int32
}

// NewSource creates the consumer clients; Run starts consuming.
func NewSource(cfg SourceConfig, out Dispatcher) (*Source, error) {
	if cfg.Consumers < 1 {
		cfg.Consumers = 1
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	s := &Source{
		cfg: cfg, log: cfg.Logger, out: out,
		topics:  make(map[string]*topicState),
		wake:    make(chan struct{}, 1),
		refresh: make(chan chan error),
	}
	for range cfg.Consumers {
		opts := append(append([]kgo.Opt{kgo.SeedBrokers(cfg.Options.Brokers...)}, cfg.Options.Common...), cfg.Options.Consumer...)
		cl, err := kgo.NewClient(opts...)
		if err != nil {
			s.closeClients()
			return nil, fmt.Errorf("kafka consumer: %w", err)
		}
		s.clients = append(s.clients, cl)
	}
	return s, nil
}

func (s *Source) closeClients() {
	for _, cl := range s.clients {
		cl.Close()
	}
}

// Run consumes until ctx is done, then closes the clients.
func (s *Source) Run(ctx context.Context) {
	var wg sync.WaitGroup
	for _, cl := range s.clients {
		wg.Go(func() { s.poll(ctx, cl) })
	}
	s.discover(ctx)
	s.closeClients()
	wg.Wait()
}

// Watch asks for a prompt rediscovery when topic is not known yet.
func (s *Source) Watch(topic string) {
	if _, ok := s.epochs.Load(topic); ok {
		return
	}
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// Epoch returns the current epoch of topic, if the topic is known.
func (s *Source) Epoch(topic string) (uint32, bool) {
	e, ok := s.epochs.Load(topic)
	if !ok {
		return 0, false
	}
	return e.(uint32), true
}

// Refresh runs a discovery now and waits for it.
func (s *Source) Refresh(ctx context.Context) error {
	done := make(chan error, 1)
	select {
	case s.refresh <- done:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Ready reports whether the last metadata request to Kafka succeeded and
// the recover-on-start read-back, if any, has caught up.
func (s *Source) Ready() bool { return s.ready.Load() && s.recovery.isDone() }

// Recovered reports whether the recover-on-start read-back has caught up.
func (s *Source) Recovered() bool { return s.recovery.isDone() }

// discover is the discovery loop: metadata on a timer, on Watch and on Refresh.
func (s *Source) discover(ctx context.Context) {
	retry := time.NewTimer(0)
	defer retry.Stop()
	var last time.Time
	for {
		var done chan error
		select {
		case <-ctx.Done():
			return
		case <-retry.C:
		case <-s.wake:
			if wait := 250*time.Millisecond - time.Since(last); wait > 0 {
				// Many unknown topics asked for at once cost one request.
				select {
				case <-time.After(wait):
				case <-ctx.Done():
					return
				}
			}
		case done = <-s.refresh:
		}
		last = time.Now()
		err := s.discoverOnce(ctx)
		if done != nil {
			done <- err
		}
		retry.Reset(s.cfg.Options.MetadataMaxAge)
	}
}

func (s *Source) discoverOnce(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	topics, brokers, err := s.metadata(ctx)
	if err != nil {
		if s.ready.Swap(false) || !s.started {
			s.log.Error("kafka unreachable: metadata request failed", "err", err, "brokers", s.cfg.Options.Brokers)
		}
		return fmt.Errorf("%w: %v", core.ErrUnavailable, err)
	}
	if !s.ready.Swap(true) {
		s.log.Info("kafka reachable", "brokers", brokers, "topics", len(topics))
	}
	first := !s.started
	s.started = true
	if first {
		// Offsets are listed before any partition is consumed, so the
		// read-back cannot finish before its targets are known; apply then
		// starts the partitions from the same point in time.
		s.since = time.Now().Add(-s.cfg.RecoverFor)
		s.beginRecovery(ctx, s.exposed(topics))
	}
	s.apply(topics, first)
	return nil
}

// exposed lists the topics of a metadata response that clients may use.
func (s *Source) exposed(topics map[string]topicDetail) []string {
	var names []string
	for name, d := range topics {
		if d.err == nil && !d.internal && s.cfg.Exposure.Exposed(name) {
			names = append(names, name)
		}
	}
	return names
}

// beginRecovery starts tracking the recover-on-start read-back.
func (s *Source) beginRecovery(ctx context.Context, names []string) {
	if s.cfg.RecoverFor <= 0 {
		s.recovery.finish()
		return
	}
	since := s.since
	if err := s.recovery.begin(ctx, kadm.NewClient(s.clients[0]), names, since); err != nil {
		s.log.Warn("recover on start: could not list offsets; serving without waiting for the read-back", "err", err)
		s.recovery.finish()
		return
	}
	if s.recovery.isDone() {
		s.log.Info("recover on start: nothing to read back", "since", since)
	}
}

// metadata asks a broker for every topic. It bypasses franz-go's metadata
// cache (which kadm would use) so a topic created a moment ago is seen.
func (s *Source) metadata(ctx context.Context) (map[string]topicDetail, int, error) {
	req := kmsg.NewPtrMetadataRequest()
	resp, err := req.RequestWith(ctx, s.clients[0])
	if err != nil {
		return nil, 0, err
	}
	topics := make(map[string]topicDetail, len(resp.Topics))
	for _, t := range resp.Topics {
		if t.Topic == nil {
			continue
		}
		topics[*t.Topic] = topicDetail{id: t.TopicID, partitions: len(t.Partitions), internal: t.IsInternal,
			err: kerr.ErrorForCode(t.ErrorCode)}
	}
	return topics, len(resp.Brokers), nil
}

// apply reconciles the consumed partitions with the cluster's topics.
func (s *Source) apply(details map[string]topicDetail, first bool) {
	add := make([]map[string]map[int32]kgo.Offset, len(s.clients))
	remove := make([]map[string][]int32, len(s.clients))
	for i := range s.clients {
		add[i] = map[string]map[int32]kgo.Offset{}
		remove[i] = map[string][]int32{}
	}
	for name, d := range details {
		if d.err != nil || d.internal || !s.cfg.Exposure.Exposed(name) {
			continue
		}
		s.reconcile(name, d, first, add, remove)
	}
	for name, st := range s.topics {
		if _, ok := details[name]; !ok {
			s.log.Info("topic deleted; no longer consumed", "topic", name)
			s.drop(name, st.partitions, remove)
			delete(s.topics, name)
			s.epochs.Delete(name)
		}
	}
	for i, cl := range s.clients {
		if len(remove[i]) > 0 {
			cl.RemoveConsumePartitions(remove[i])
		}
		if len(add[i]) > 0 {
			cl.AddConsumePartitions(add[i])
		}
	}
}

func (s *Source) reconcile(name string, d topicDetail, first bool, add []map[string]map[int32]kgo.Offset, remove []map[string][]int32) {
	n := d.partitions
	epoch := epochOf(d.id, n)
	old := s.topics[name]
	from := 0
	switch {
	case old == nil:
	case old.id != d.id:
		s.log.Warn("topic re-created: positions of the old one are void", "topic", name)
		s.drop(name, old.partitions, remove)
	case old.partitions != n:
		s.log.Warn("partition count changed: positions of the topic are void", "topic", name, "from", old.partitions, "to", n)
		from = min(old.partitions, n)
	default:
		return
	}
	offset := s.startOffset(first && old == nil, old != nil)
	for p := from; p < n; p++ {
		i := s.owner(name, int32(p))
		if add[i][name] == nil {
			add[i][name] = map[int32]kgo.Offset{}
		}
		add[i][name][int32(p)] = offset
	}
	s.topics[name] = &topicState{id: d.id, partitions: n, epoch: epoch}
	s.epochs.Store(name, epoch)
}

// startOffset picks where a newly consumed partition starts: at start, the
// end or cache.expire.time back; a re-created topic or added partition from
// its beginning; a topic that appeared while running a bounded time back.
func (s *Source) startOffset(atStart, changed bool) kgo.Offset {
	switch {
	case changed:
		return kgo.NewOffset().AtStart()
	case atStart && s.cfg.RecoverFor <= 0:
		return kgo.NewOffset().AtEnd()
	case atStart:
		return kgo.NewOffset().AfterMilli(s.since.UnixMilli())
	}
	return kgo.NewOffset().AfterMilli(time.Now().Add(-s.cfg.NewTopicsFrom).UnixMilli())
}

func (s *Source) drop(name string, partitions int, remove []map[string][]int32) {
	for p := range partitions {
		i := s.owner(name, int32(p))
		remove[i][name] = append(remove[i][name], int32(p))
		s.lag.Delete(topicPartition{name, int32(p)})
		s.recovery.forget(topicPartition{name, int32(p)})
	}
}

// owner is the index of the client that consumes a partition.
func (s *Source) owner(topic string, p int32) int {
	h := fnv.New32a()
	h.Write([]byte(topic))
	return int((h.Sum32() + uint32(p)) % uint32(len(s.clients)))
}

// epochOf derives a topic's epoch from its ID and partition count: it changes
// exactly when positions stop being comparable.
func epochOf(id [16]byte, partitions int) uint32 {
	h := fnv.New32a()
	h.Write(id[:])
	h.Write([]byte{byte(partitions >> 24), byte(partitions >> 16), byte(partitions >> 8), byte(partitions)})
	return h.Sum32()
}

// poll dispatches one client's fetches, each partition in order.
func (s *Source) poll(ctx context.Context, cl *kgo.Client) {
	for {
		fs := cl.PollFetches(ctx)
		if fs.IsClientClosed() || ctx.Err() != nil {
			return
		}
		fs.EachError(func(t string, p int32, err error) {
			if errors.Is(err, context.Canceled) {
				return
			}
			s.fetchErrors.Add(1)
			s.log.Debug("kafka fetch error", "topic", t, "partition", p, "err", err)
		})
		fs.EachTopic(func(ft kgo.FetchTopic) {
			epoch, _ := s.Epoch(ft.Topic)
			for _, fp := range ft.Partitions {
				s.dispatch(ft.Topic, epoch, fp)
			}
		})
	}
}

func (s *Source) dispatch(topic string, epoch uint32, fp kgo.FetchPartition) {
	if len(fp.Records) == 0 {
		return
	}
	for _, r := range fp.Records {
		m, ok := toMessage(r, epoch)
		if !ok {
			s.unaddressable.Add(1)
			continue
		}
		s.out.Dispatch(m)
	}
	s.records.Add(int64(len(fp.Records)))
	last := fp.Records[len(fp.Records)-1].Offset
	if s.recovery.consumed(topicPartition{topic, fp.Partition}, last, len(fp.Records)) {
		s.log.Info("recover on start: caught up", "records", s.recovery.records, "took", time.Since(s.recovery.started))
	}
	v, _ := s.lag.LoadOrStore(topicPartition{topic, fp.Partition}, new(atomic.Int64))
	v.(*atomic.Int64).Store(max(0, fp.HighWatermark-last-1))
}

// toMessage turns a record into a message; false when its key cannot be a subject.
func toMessage(r *kgo.Record, epoch uint32) (*core.Message, bool) {
	subject, ok := core.SubjectFor(r.Topic, r.Key)
	if !ok {
		return nil, false
	}
	m := &core.Message{
		Subject: subject,
		Topic:   r.Topic,
		HasKey:  r.Key != nil,
		Payload: r.Value,
		Time:    r.Timestamp,
		Pos:     core.Position{Epoch: epoch, Partition: r.Partition, Offset: r.Offset},
	}
	if m.HasKey {
		m.Key = subject[len(r.Topic)+2:]
	}
	if len(r.Headers) > 0 {
		m.Headers = make([]core.Header, len(r.Headers))
		for i, h := range r.Headers {
			m.Headers[i] = core.Header{Key: h.Key, Value: h.Value}
		}
	}
	return m, true
}

// SourceStats are the Source's counters for metrics.
type SourceStats struct {
	Records       int64 // records consumed
	Unaddressable int64 // records whose key is no valid subject
	FetchErrors   int64
	Lag           int64 // sum over partitions of high watermark minus next offset
	Partitions    int64 // partitions with a known lag
}

// Stats returns the Source's counters.
func (s *Source) Stats() SourceStats {
	st := SourceStats{Records: s.records.Load(), Unaddressable: s.unaddressable.Load(), FetchErrors: s.fetchErrors.Load()}
	s.lag.Range(func(_, v any) bool {
		st.Lag += v.(*atomic.Int64).Load()
		st.Partitions++
		return true
	})
	return st
}
