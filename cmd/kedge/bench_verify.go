package main

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/spf13/pflag"

	"github.com/kedgehq/kedge/configs"
	"github.com/kedgehq/kedge/protocols/ws/client"
)

var benchHTTP = &http.Client{Timeout: 10 * time.Second}

func hasMQTT() bool { return slices.Contains(configs.Names(), "mqtt.listen") }

// verifyConfig is what `kedge bench verify` is asked to do.
type verifyConfig struct {
	nodes, keys, messages, perProtocol, publishers int
	disconnectEvery, drain                         time.Duration
	topic                                          string
	protocols, pubProtocols                        []string
	sets                                           []string // kedge configuration of the nodes
}

// benchVerify proves the delivery guarantee end to end: sequenced messages
// over many keys are published while subscribers, spread over several nodes,
// disconnect at random and resume on another node; every subscriber must end
// with every message exactly once and in per-key order.
func benchVerify(args []string, stdout, stderr io.Writer) int {
	fs := pflag.NewFlagSet("bench verify", pflag.ContinueOnError)
	fs.SetOutput(stderr)
	var c verifyConfig
	fs.IntVar(&c.nodes, "nodes", 3, "kedge nodes to start (sharing one Kafka)")
	fs.IntVar(&c.keys, "keys", 100, "keys (subjects) to publish on")
	fs.IntVar(&c.messages, "messages", 100000, "messages to publish in all")
	fs.IntVar(&c.perProtocol, "subscribers", 3, "guaranteed subscribers per protocol")
	fs.IntVar(&c.publishers, "publishers", 32, "concurrent publishing goroutines (each owns some keys)")
	fs.DurationVar(&c.disconnectEvery, "disconnect-every", 2*time.Second, "mean time between a subscriber's disconnects")
	fs.DurationVar(&c.drain, "drain", 60*time.Second, "how long to wait for the last messages after publishing")
	fs.StringVar(&c.topic, "topic", "verify", "topic to use (created by the broker)")
	fs.StringSliceVar(&c.protocols, "protocols", verifyProtocols(), "subscriber protocols")
	fs.StringSliceVar(&c.pubProtocols, "publish-protocols", publishProtocols(), "publisher protocols (publisher i uses the i-th, round robin)")
	fs.StringArrayVar(&c.sets, "set", nil, "configuration of the kedge nodes, KEY=VALUE (repeatable), e.g. recovery.max.messages=100000")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if c.keys <= 0 || c.messages%c.keys != 0 {
		_, _ = fmt.Fprintf(stderr, "kedge bench verify: --messages (%d) must be a multiple of --keys (%d)\n", c.messages, c.keys)
		return 2
	}
	if len(c.pubProtocols) == 0 || c.publishers < len(c.pubProtocols) {
		_, _ = fmt.Fprintf(stderr, "kedge bench verify: --publishers (%d) must be at least the number of publish protocols %v\n", c.publishers, c.pubProtocols)
		return 2
	}
	res, err := runVerify(context.Background(), c, stderr)
	if err != nil {
		_, _ = fmt.Fprintf(stderr, "kedge bench verify: %v\n", err)
		return 1
	}
	res.print(stdout)
	if !res.ok() {
		return 1
	}
	return 0
}

// verifyProtocols are the subscriber drivers built into this binary.
func verifyProtocols() []string {
	var names []string
	for _, d := range subscriberDrivers {
		if d.name != "mqtt" || hasMQTT() {
			names = append(names, d.name)
		}
	}
	return names
}

// publishProtocols are the publisher drivers built into this binary.
func publishProtocols() []string {
	var names []string
	for _, d := range publisherDrivers {
		if d.name != "mqtt" || hasMQTT() {
			names = append(names, d.name)
		}
	}
	return names
}

// subscriberDriver runs one subscriber of a protocol: it connects to nodes
// in turn (resuming where it left off), feeds every message to t, and
// disconnects at random until ctx ends.
type subscriberDriver struct {
	name string
	run  func(ctx context.Context, id int, nodes []*benchNode, topic string, t *tally, churn func() time.Duration) error
	// reconnects says where a reconnection goes and how it resumes.
	reconnects string
}

var subscriberDrivers = []subscriberDriver{
	{name: "ws", run: runWSSubscriber, reconnects: "to the next node, resuming from the Go SDK's cursors"},
	{name: "sse", run: runSSESubscriber, // bench_verify_sse.go
		reconnects: "to the next node, resuming from Last-Event-ID"},
	{name: "mqtt", run: runMQTTSubscriber, // bench_verify_mqtt.go
		reconnects: "to the next node, resuming its QoS 1 persistent session (kept in mqtt.sessions.topic)"},
}

// publisherDriver connects one publisher of a protocol to a node.
type publisherDriver struct {
	name string
	dial func(ctx context.Context, node *benchNode, id int) (publisher, error)
}

// publisher publishes one message and returns after kedge's ack of it
// (which kedge sends after Kafka's).
type publisher interface {
	publish(ctx context.Context, subject string, payload []byte) error
	close()
}

var publisherDrivers = []publisherDriver{
	{name: "ws", dial: dialWSPublisher},     // the Go SDK
	{name: "http", dial: dialHTTPPublisher}, // POST /v1/publish (bench_verify_sse.go)
	{name: "mqtt", dial: dialMQTTPublisher}, // QoS 1 (bench_verify_mqtt.go)
}

func runVerify(ctx context.Context, c verifyConfig, log io.Writer) (*verifyResult, error) {
	broker, err := startBenchBroker(4)
	if err != nil {
		return nil, err
	}
	defer broker.Close()
	nodes, err := startBenchNodes(ctx, c.nodes, broker.ListenAddrs()[0], c.sets)
	if err != nil {
		return nil, err
	}
	defer stopBenchNodes(nodes)
	_, _ = fmt.Fprintf(log, "verify: %d nodes on one Kafka, %d messages over %d keys, %d subscribers per protocol %v, publishing through %v\n",
		len(nodes), c.messages, c.keys, c.perProtocol, c.protocols, c.pubProtocols)
	for _, proto := range c.pubProtocols {
		if _, ok := pubDriver(proto); !ok {
			return nil, fmt.Errorf("unknown publish protocol %q (this build has %v)", proto, publishProtocols())
		}
	}

	subCtx, stopSubs := context.WithCancel(ctx)
	defer stopSubs()
	var tallies []*tally
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	churn := func() time.Duration { return time.Duration(rand.ExpFloat64() * float64(c.disconnectEvery)) }
	for _, proto := range c.protocols {
		d, ok := driver(proto)
		if !ok {
			return nil, fmt.Errorf("unknown protocol %q (this build has %v)", proto, verifyProtocols())
		}
		for i := range c.perProtocol {
			t := newTally(proto, c.keys)
			tallies = append(tallies, t)
			wg.Go(func() {
				if err := d.run(subCtx, i, nodes, c.topic, t, churn); err != nil && subCtx.Err() == nil {
					errs <- fmt.Errorf("%s subscriber %d: %w", proto, i, err)
				}
			})
		}
	}
	for _, t := range tallies {
		if err := t.waitSubscribed(ctx, 30*time.Second); err != nil {
			return nil, err
		}
	}
	start := time.Now()
	pubs, err := publishSequenced(ctx, nodes, c)
	if err != nil {
		return nil, err
	}
	var pubErrs int64
	for _, p := range pubs {
		pubErrs += p.failed.Load()
	}
	_, _ = fmt.Fprintf(log, "verify: published %d messages in %v (%d failed)\n", c.messages, time.Since(start).Round(time.Millisecond), pubErrs)
	deadline := time.Now().Add(c.drain)
	for time.Now().Before(deadline) && !allComplete(tallies, c.messages) {
		select {
		case err := <-errs:
			return nil, err
		case <-time.After(100 * time.Millisecond):
		}
	}
	stopSubs()
	wg.Wait()
	return &verifyResult{tallies: tallies, expected: c.messages, publishErrors: pubErrs, publishers: pubs}, nil
}

func driver(name string) (subscriberDriver, bool) {
	for _, d := range subscriberDrivers {
		if d.name == name {
			return d, true
		}
	}
	return subscriberDriver{}, false
}

func pubDriver(name string) (publisherDriver, bool) {
	for _, d := range publisherDrivers {
		if d.name == name {
			return d, true
		}
	}
	return publisherDriver{}, false
}

// publishStats is what the publishers of one protocol did.
type publishStats struct {
	proto             string
	publishers, keys  int
	published, failed atomic.Int64
	mu                sync.Mutex
	firstFailure      string
}

// publishSequenced publishes seq 0..n-1 per key, each key's messages in
// order: a key belongs to one publisher, which waits for each ack before
// the next message. Publisher p uses the protocol c.pubProtocols[p mod n]
// and node p mod nodes.
func publishSequenced(ctx context.Context, nodes []*benchNode, c verifyConfig) ([]*publishStats, error) {
	perKey := c.messages / c.keys
	stats := make([]*publishStats, len(c.pubProtocols))
	for i, proto := range c.pubProtocols {
		stats[i] = &publishStats{proto: proto}
	}
	var wg sync.WaitGroup
	var firstErr atomic.Value
	for p := range c.publishers {
		st := stats[p%len(stats)]
		d, _ := pubDriver(st.proto)
		st.publishers++
		for k := p; k < c.keys; k += c.publishers {
			st.keys++
		}
		wg.Go(func() {
			pub, err := d.dial(ctx, nodes[p%len(nodes)], p)
			if err != nil {
				firstErr.CompareAndSwap(nil, fmt.Errorf("%s publisher %d: %w", st.proto, p, err))
				return
			}
			defer pub.close()
			for seq := range perKey {
				for k := p; k < c.keys; k += c.publishers {
					subject := fmt.Sprintf("/%s/k%d", c.topic, k)
					if err := pub.publish(ctx, subject, []byte(strconv.Itoa(seq))); err != nil {
						st.failed.Add(1)
						st.mu.Lock()
						if st.firstFailure == "" {
							st.firstFailure = fmt.Sprintf("%s k%d/%d: %v", subject, k, seq, err)
						}
						st.mu.Unlock()
						continue
					}
					st.published.Add(1)
				}
			}
		})
	}
	wg.Wait()
	if e, ok := firstErr.Load().(error); ok {
		return nil, e
	}
	return stats, nil
}

// wsPublisher publishes with the Go SDK.
type wsPublisher struct{ c *client.Client }

func dialWSPublisher(ctx context.Context, node *benchNode, _ int) (publisher, error) {
	c, err := client.Connect(ctx, node.WS(), client.Options{})
	if err != nil {
		return nil, err
	}
	return wsPublisher{c}, nil
}

func (p wsPublisher) publish(ctx context.Context, subject string, payload []byte) error {
	_, err := p.c.Publish(ctx, subject, payload, nil)
	return err
}

func (p wsPublisher) close() { _ = p.c.Close() }

func allComplete(ts []*tally, expected int) bool {
	for _, t := range ts {
		if t.distinct() < expected {
			return false
		}
	}
	return true
}

// runWSSubscriber is the WebSocket driver: the Go SDK, a fresh client on
// another node at every churn, sharing one position store.
func runWSSubscriber(ctx context.Context, id int, nodes []*benchNode, topic string, t *tally, churn func() time.Duration) error {
	store := client.NewMemoryStore()
	for round := 0; ctx.Err() == nil; round++ {
		node := nodes[(id+round)%len(nodes)]
		c, err := client.Connect(ctx, node.WS(), client.Options{Store: store})
		if err != nil {
			return err
		}
		_, err = c.Subscribe(ctx, "/"+topic+"/+", func(m client.Message) {
			t.record(m.Subject, string(m.Payload))
		}, client.SubscribeOptions{NoSnapshot: true, OnReset: func(string) { t.resets.Add(1) }})
		if err != nil {
			_ = c.Close()
			return err
		}
		t.subscribed()
		select {
		case <-ctx.Done():
		case <-time.After(churn()):
			t.reconnects.Add(1)
		}
		_ = c.Close()
	}
	return nil
}

// tally checks one subscriber's messages: per key the sequence numbers
// must come exactly once and in order.
type tally struct {
	proto      string
	mu         sync.Mutex
	seen       []map[int]bool // per key
	max        []int          // per key, highest seq seen
	delivered  int
	duplicated int
	reordered  int
	malformed  int
	resets     atomic.Int64
	reconnects atomic.Int64
	ready      chan struct{}
	readyOnce  sync.Once
}

func newTally(proto string, keys int) *tally {
	t := &tally{proto: proto, seen: make([]map[int]bool, keys), max: make([]int, keys), ready: make(chan struct{})}
	for i := range t.seen {
		t.seen[i] = make(map[int]bool)
		t.max[i] = -1
	}
	return t
}

func (t *tally) subscribed() { t.readyOnce.Do(func() { close(t.ready) }) }

func (t *tally) waitSubscribed(ctx context.Context, d time.Duration) error {
	select {
	case <-t.ready:
		return nil
	case <-time.After(d):
		return fmt.Errorf("a %s subscriber did not subscribe within %v", t.proto, d)
	case <-ctx.Done():
		return ctx.Err()
	}
}

// record notes one message: subject ".../kN", payload the sequence number.
func (t *tally) record(subject, payload string) {
	i := strings.LastIndex(subject, "/k")
	key, err1 := strconv.Atoi(subject[i+2:])
	seq, err2 := strconv.Atoi(payload)
	t.mu.Lock()
	defer t.mu.Unlock()
	if i < 0 || err1 != nil || err2 != nil || key < 0 || key >= len(t.seen) {
		t.malformed++
		return
	}
	switch {
	case t.seen[key][seq]:
		t.duplicated++
		return
	case seq < t.max[key]:
		t.reordered++
	}
	t.seen[key][seq] = true
	t.max[key] = max(t.max[key], seq)
	t.delivered++
}

// missing lists up to n key/seq pairs never delivered.
func (t *tally) missing(expected, n int) []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	perKey := expected / len(t.seen)
	var out []string
	for k := range t.seen {
		for seq := range perKey {
			if !t.seen[k][seq] && len(out) < n {
				out = append(out, fmt.Sprintf("k%d/%d", k, seq))
			}
		}
	}
	return out
}

func (t *tally) distinct() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.delivered
}

type verifyResult struct {
	tallies       []*tally
	expected      int
	publishErrors int64
	publishers    []*publishStats
}

func (r *verifyResult) ok() bool {
	for _, t := range r.tallies {
		if t.delivered != r.expected || t.duplicated != 0 || t.reordered != 0 || t.malformed != 0 {
			return false
		}
	}
	return r.publishErrors == 0
}

// print writes one line per protocol, summed over its subscribers.
func (r *verifyResult) print(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	_, _ = fmt.Fprintln(tw, "protocol\tsubscribers\texpected\tdelivered\tlost\tduplicated\treordered\tresets\treconnects\t")
	byProto := map[string][]*tally{}
	var order []string
	for _, t := range r.tallies {
		if byProto[t.proto] == nil {
			order = append(order, t.proto)
		}
		byProto[t.proto] = append(byProto[t.proto], t)
	}
	for _, p := range order {
		var delivered, dup, reord, resets, reconn int
		for _, t := range byProto[p] {
			delivered += t.delivered
			dup += t.duplicated
			reord += t.reordered
			resets += int(t.resets.Load())
			reconn += int(t.reconnects.Load())
		}
		expected := r.expected * len(byProto[p])
		_, _ = fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t\n", p, len(byProto[p]), expected, delivered,
			expected-delivered, dup, reord, resets, reconn)
	}
	_ = tw.Flush()
	for _, p := range order {
		if d, ok := driver(p); ok {
			_, _ = fmt.Fprintf(w, "  %s reconnects %s\n", p, d.reconnects)
		}
	}
	for _, t := range r.tallies {
		if missing := t.missing(r.expected, 5); len(missing) > 0 {
			_, _ = fmt.Fprintf(w, "%s subscriber missing (first %d): %s\n", t.proto, len(missing), strings.Join(missing, " "))
		}
	}
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	_, _ = fmt.Fprintln(tw, "publisher\tclients\tkeys\tpublished\tfailed\t")
	for _, p := range r.publishers {
		_, _ = fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t\n", p.proto, p.publishers, p.keys, p.published.Load(), p.failed.Load())
	}
	_ = tw.Flush()
	for _, p := range r.publishers {
		if p.firstFailure != "" {
			_, _ = fmt.Fprintf(w, "%s publisher, first failure: %s\n", p.proto, p.firstFailure)
		}
	}
	_, _ = fmt.Fprintf(w, "publish errors: %d\n", r.publishErrors)
	if r.ok() {
		_, _ = fmt.Fprintln(w, "OK: every subscriber got every message exactly once, in per-key order")
	} else {
		_, _ = fmt.Fprintln(w, "FAILED")
	}
}
