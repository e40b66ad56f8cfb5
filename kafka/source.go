package kafka

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kedgehq/kedge/core"
)

// Dispatcher receives every consumed record as a message; core.Hub is one.
type Dispatcher interface {
	// BeginAll announces that from offset firsts[p] on every record of
	// each partition p will be dispatched, under the topic's epoch; all of
	// a topic's partitions announced at once are seen together.
	BeginAll(topic string, epoch uint32, firsts map[int32]int64)
	// Forget says a topic was deleted.
	Forget(topic string)
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
	purge   []string               // topics to forget in the clients, likewise
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
	progress      sync.Map // topicPartition → *progress
}

// progress is how far a partition has been dispatched.
type progress struct {
	next atomic.Int64 // the offset after the last one dispatched
	lag  atomic.Int64 // high watermark minus next, at the last fetch
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
		cl, err := kgo.NewClient(cfg.Options.consumerOpts()...)
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
		var waiting []chan error
		select {
		case <-ctx.Done():
			return
		case <-retry.C:
		case <-s.wake:
		case done := <-s.refresh:
			waiting = append(waiting, done)
		}
		// Many unknown topics asked for at once cost one request: wait out
		// the minimum interval, then answer every Refresh waiting by then.
		if wait := minDiscoveryInterval - time.Since(last); wait > 0 {
			select {
			case <-time.After(wait):
			case <-ctx.Done():
				return
			}
		}
		waiting = s.drainRefreshes(waiting)
		last = time.Now()
		err := s.discoverOnce(ctx)
		for _, done := range waiting {
			done <- err
		}
		retry.Reset(s.cfg.Options.MetadataMaxAge)
	}
}

// minDiscoveryInterval spaces metadata requests triggered by clients.
const minDiscoveryInterval = 100 * time.Millisecond

func (s *Source) drainRefreshes(waiting []chan error) []chan error {
	for {
		select {
		case done := <-s.refresh:
			waiting = append(waiting, done)
		case <-s.wake:
		default:
			return waiting
		}
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
		s.since = time.Now().Add(-s.cfg.RecoverFor)
	}
	s.apply(ctx, topics, first)
	return nil
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

// poll dispatches one client's fetches, each partition in order.
func (s *Source) poll(ctx context.Context, cl *kgo.Client) {
	var scratch []*core.Message
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
				s.dispatch(ft.Topic, epoch, fp, &scratch)
			}
		})
	}
}

// BatchDispatcher is a Dispatcher that takes a partition's records of a
// fetch at once, in order (core.Hub.DispatchBatch): the Source then hands
// over each fetch's records of a partition with one call.
type BatchDispatcher interface {
	Dispatcher
	DispatchBatch(ms []*core.Message)
}

func (s *Source) dispatch(topic string, epoch uint32, fp kgo.FetchPartition, scratch *[]*core.Message) {
	if len(fp.Records) == 0 {
		return
	}
	batch, _ := s.out.(BatchDispatcher)
	ms := (*scratch)[:0]
	for _, r := range fp.Records {
		m, ok := toMessage(r, epoch)
		if !ok {
			s.unaddressable.Add(1)
			continue
		}
		if batch == nil {
			s.out.Dispatch(m)
			continue
		}
		ms = append(ms, m)
	}
	if batch != nil && len(ms) > 0 {
		batch.DispatchBatch(ms)
	}
	clear(ms) // the messages live on in the Hub's cache, not here
	*scratch = ms[:0]
	s.records.Add(int64(len(fp.Records)))
	last := fp.Records[len(fp.Records)-1].Offset
	tp := topicPartition{topic, fp.Partition}
	if s.recovery.consumed(tp, last, len(fp.Records)) {
		s.log.Info("recover on start: caught up", "records", s.recovery.records, "took", time.Since(s.recovery.started))
	}
	if v, ok := s.progress.Load(tp); ok {
		pr := v.(*progress)
		pr.next.Store(last + 1)
		pr.lag.Store(max(0, fp.HighWatermark-last-1))
	}
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
	Partitions    int64 // partitions consumed
}

// Stats returns the Source's counters.
func (s *Source) Stats() SourceStats {
	st := SourceStats{Records: s.records.Load(), Unaddressable: s.unaddressable.Load(), FetchErrors: s.fetchErrors.Load()}
	s.progress.Range(func(_, v any) bool {
		st.Lag += v.(*progress).lag.Load()
		st.Partitions++
		return true
	})
	return st
}
