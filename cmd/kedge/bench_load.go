package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/pflag"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// fanoutConfig is one fan-out load: subscribers of one protocol over some
// subjects, and one publisher.
type fanoutConfig struct {
	protocol    string // ws, sse, mqtt
	subscribers int
	subjects    int
	publisher   string  // kafka, ws, mqtt ("" picks the protocol's own)
	rate        float64 // messages per second in all; 0 saturates
	size        int
	duration    time.Duration
	window      int // saturating: messages per subject ahead of the slowest subscriber
	perWorker   int
	workers     int
	direct      bool // also measure a direct Kafka consumer's latency
	peer        string
	profile     string // directory for kedge's CPU profile
	sets        []string
	topic       string
}

func (c *fanoutConfig) flags(fs *pflag.FlagSet) {
	fs.StringVar(&c.protocol, "protocol", "ws", "subscribers' protocol: ws, sse or mqtt")
	fs.IntVar(&c.subscribers, "subscribers", 1000, "subscribers in all")
	fs.IntVar(&c.subjects, "subjects", 1, "subjects the subscribers are spread over (one each)")
	fs.StringVar(&c.publisher, "publisher", "", "how messages are published: kafka (franz-go straight to the broker), ws or mqtt (default: the protocol's own; kafka for sse)")
	fs.Float64Var(&c.rate, "rate", 0, "messages per second in all (0: as fast as the slowest subscriber keeps up)")
	fs.IntVar(&c.size, "size", 64, "payload bytes (at least 22: a timestamp)")
	fs.DurationVar(&c.duration, "duration", 10*time.Second, "measurement time")
	fs.IntVar(&c.window, "window", 500, "saturating: messages per subject published ahead of the slowest subscriber")
	fs.IntVar(&c.perWorker, "per-worker", 5000, "clients per worker process (at most 19000)")
	fs.IntVar(&c.workers, "workers", 2, "worker processes at least")
	fs.BoolVar(&c.direct, "direct", false, "also measure a direct franz-go consumer's latency (publisher kafka): kedge's added latency")
	fs.StringVar(&c.peer, "peer", "auto", "peer server to run the same load against: mosquitto (mqtt), nats (ws), none, or auto")
	fs.StringVar(&c.profile, "profile", "", "directory to save kedge's CPU profile of the measurement in")
	fs.StringSliceVar(&c.sets, "set", nil, "kedge configuration key=value for the node (repeatable)")
	fs.StringVar(&c.topic, "topic", "bench", "Kafka topic (and first subject segment)")
}

func (c *fanoutConfig) check() error {
	switch c.protocol {
	case "ws", "sse", "mqtt":
	default:
		return fmt.Errorf("--protocol %q: want ws, sse or mqtt", c.protocol)
	}
	if c.publisher == "" {
		c.publisher = map[string]string{"ws": "ws", "mqtt": "mqtt", "sse": "kafka"}[c.protocol]
	}
	switch c.publisher {
	case "kafka", "ws", "mqtt":
	default:
		return fmt.Errorf("--publisher %q: want kafka, ws or mqtt", c.publisher)
	}
	if c.peer == "auto" {
		c.peer = map[string]string{"ws": "nats", "mqtt": "mosquitto", "sse": "none"}[c.protocol]
	}
	if c.subscribers < 1 || c.subjects < 1 || c.subjects > c.subscribers {
		return errors.New("need at least one subscriber per subject")
	}
	if c.direct && c.publisher != "kafka" {
		return errors.New("--direct compares with a Kafka consumer: use --publisher kafka")
	}
	c.size = max(c.size, minPayload)
	return nil
}

// fanoutResult is one target's measurement.
type fanoutResult struct {
	target     string
	publisher  string
	published  int64 // during the measurement
	deliveries int64 // during the measurement
	elapsed    time.Duration
	serverCPU  time.Duration
	clientCPU  time.Duration
	benchCPU   time.Duration // the coordinator: publisher and, for kedge, the Kafka broker
	otherCPU   time.Duration // the rest of the machine: other processes' load skews a result
	latency    *latencyHist
	direct     *latencyHist // a direct Kafka consumer's, when measured
	expected   int64        // deliveries owed for what was published after warm-up
	received   int64        // deliveries of those, after draining
	dead       int
	pubErrors  int64
}

func (r *fanoutResult) rate() float64 { return float64(r.deliveries) / r.elapsed.Seconds() }
func (r *fanoutResult) perCPU() float64 {
	if r.serverCPU <= 0 {
		return 0
	}
	return float64(r.deliveries) / r.serverCPU.Seconds()
}
func (r *fanoutResult) lost() int64 { return max(r.expected-r.received, 0) }

// benchFanout is `kedge bench fanout`.
func benchFanout(args []string, stdout, stderr io.Writer) int {
	fs := pflag.NewFlagSet("bench fanout", pflag.ContinueOnError)
	fs.SetOutput(stderr)
	var c fanoutConfig
	c.flags(fs)
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if err := c.check(); err != nil {
		_, _ = fmt.Fprintf(stderr, "kedge bench fanout: %v\n", err)
		return 2
	}
	ctx := context.Background()
	rs, err := runFanoutPair(ctx, c, stderr)
	if err != nil {
		_, _ = fmt.Fprintf(stderr, "kedge bench fanout: %v\n", err)
		return 1
	}
	printFanout(stdout, c, rs)
	return 0
}

// benchEnv is the Kafka a bench's kedge nodes consume: kfake in this process.
type benchEnv struct {
	broker    *kfake.Cluster
	bootstrap string
}

func newBenchEnv() (*benchEnv, error) {
	b, err := startBenchBroker(4)
	if err != nil {
		return nil, err
	}
	return &benchEnv{broker: b, bootstrap: b.ListenAddrs()[0]}, nil
}

func (e *benchEnv) close() { e.broker.Close() }

// createTopic creates a topic before kedge starts, so that its first
// subscribers find it known.
func (e *benchEnv) createTopic(ctx context.Context, topic string, partitions int) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(e.bootstrap))
	if err != nil {
		return err
	}
	defer cl.Close()
	resp, err := kadm.NewClient(cl).CreateTopic(ctx, int32(partitions), 1, nil, topic)
	if err != nil {
		return err
	}
	if resp.Err != nil && !strings.Contains(resp.Err.Error(), "TOPIC_ALREADY_EXISTS") {
		return resp.Err
	}
	return nil
}

// runFanoutPair runs the load against kedge, then against the peer.
func runFanoutPair(ctx context.Context, c fanoutConfig, log io.Writer) ([]*fanoutResult, error) {
	env, err := newBenchEnv()
	if err != nil {
		return nil, err
	}
	defer env.close()
	if err := env.createTopic(ctx, c.topic, 4); err != nil {
		return nil, err
	}
	k, err := startKedge(ctx, env.bootstrap, c.sets)
	if err != nil {
		return nil, err
	}
	_, _ = fmt.Fprintf(log, "fanout: kedge %s, %s\n", k, describeFanout(c))
	r, err := runFanout(ctx, c, k, env)
	k.stop()
	if err != nil {
		return nil, fmt.Errorf("kedge: %w", err)
	}
	rs := []*fanoutResult{r}
	if c.peer == "" || c.peer == "none" {
		return rs, nil
	}
	p, err := startPeer(ctx, c.peer)
	if err != nil {
		return nil, err
	}
	_, _ = fmt.Fprintf(log, "fanout: %s, the same load\n", p)
	pr, err := runFanout(ctx, c, p, nil)
	p.stop()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", c.peer, err)
	}
	return append(rs, pr), nil
}

func describeFanout(c fanoutConfig) string {
	rate := "saturating"
	if c.rate > 0 {
		rate = fmt.Sprintf("%.0f msg/s", c.rate)
	}
	return fmt.Sprintf("%s publisher → %d %s subscribers over %d subject(s), %d B payloads, %s, %v",
		c.publisher, c.subscribers, c.protocol, c.subjects, c.size, rate, c.duration)
}

// subscriberSpec is the worker spec of c's subscribers on target t.
func subscriberSpec(c fanoutConfig, t *target) (workerSpec, error) {
	s := workerSpec{Count: c.subscribers, Tick: 20 * time.Millisecond}
	switch {
	case t.name == "nats" && c.protocol == "ws":
		s.Kind, s.Addr, s.Subjects = "nats", t.ws, subjectNames("nats", c.topic, c.subjects)
	case t.name == "kedge" && c.protocol == "ws":
		s.Kind, s.Addr, s.Path, s.Subjects = "ws", t.ws, "/v1/ws", subjectNames("kedge", c.topic, c.subjects)
	case t.name == "kedge" && c.protocol == "sse":
		s.Kind, s.Addr, s.Path, s.Subjects = "sse", t.ws, "/v1/sse", subjectNames("kedge", c.topic, c.subjects)
	case c.protocol == "mqtt" && t.mqtt != "":
		s.Kind, s.Addr, s.Subjects = "mqtt", t.mqtt, subjectNames("mqtt", c.topic, c.subjects)
	default:
		return s, fmt.Errorf("%s does not serve %s subscribers here", t.name, c.protocol)
	}
	return s, nil
}

// newPublisherFor connects c's publisher to target t (env is kedge's Kafka).
func newPublisherFor(c fanoutConfig, t *target, env *benchEnv) (loadPublisher, string, error) {
	switch {
	case t.name == "nats":
		p, err := newNATSPub(t.ws, c.topic, c.subjects)
		return p, "nats", err
	case t.name == "mosquitto":
		p, err := newMQTTPub(t.mqtt, c.topic, c.subjects)
		return p, "mqtt", err
	case c.publisher == "kafka":
		p, err := newKafkaPub(env.bootstrap, c.topic, c.subjects)
		return p, "kafka", err
	case c.publisher == "ws":
		p, err := newKedgeWSPub(t.ws, c.topic, c.subjects)
		return p, "ws", err
	case c.publisher == "mqtt" && t.mqtt != "":
		p, err := newMQTTPub(t.mqtt, c.topic, c.subjects)
		return p, "mqtt", err
	}
	return nil, "", fmt.Errorf("no %s publisher for %s", c.publisher, t.name)
}

// runFanout runs c against target t: subscribers in worker processes, the
// publisher here, a warm-up until every subscriber got a message, then the
// measurement, then a drain to count what was lost.
func runFanout(ctx context.Context, c fanoutConfig, t *target, env *benchEnv) (*fanoutResult, error) {
	spec, err := subscriberSpec(c, t)
	if err != nil {
		return nil, err
	}
	subs, err := startWorkers(ctx, spec, c.workers, c.perWorker)
	if err != nil {
		return nil, err
	}
	defer stopWorkers(subs)
	var direct group
	if c.direct && t.name == "kedge" {
		direct, err = startWorkers(ctx, workerSpec{Kind: "kafka", Addr: env.bootstrap, Subjects: []string{c.topic},
			Count: 1, Tick: 20 * time.Millisecond}, 1, 1)
		if err != nil {
			return nil, err
		}
		defer stopWorkers(direct)
	}
	pub, pubName, err := newPublisherFor(c, t, env)
	if err != nil {
		return nil, err
	}
	defer pub.close()
	l := &loadRun{c: c, pub: pub, subs: group(subs), direct: direct, perSubject: make([]int64, c.subjects)}
	if err := l.warmUp(ctx); err != nil {
		return nil, err
	}
	r, err := l.measure(ctx, t)
	if err != nil {
		return nil, err
	}
	r.publisher = pubName
	return r, nil
}

// loadRun is one fan-out in progress.
type loadRun struct {
	c          fanoutConfig
	pub        loadPublisher
	subs       group
	direct     group
	published  int64
	perSubject []int64
	buf        []byte
}

// send publishes n messages, round-robin over the subjects, stamped now.
func (l *loadRun) send(n int) error {
	now := time.Now()
	for range n {
		s := int(l.published % int64(l.c.subjects))
		l.buf = appendPayload(l.buf[:0], l.c.size, now)
		l.pub.add(s, l.buf)
		l.perSubject[s]++
		l.published++
	}
	return l.pub.flush()
}

// warmUp publishes a message per subject every 50ms until every subscriber
// (and the direct consumer) got one, then lets the last ones arrive.
func (l *loadRun) warmUp(ctx context.Context) error {
	deadline := time.Now().Add(60 * time.Second)
	for {
		if err := l.send(l.c.subjects); err != nil {
			return err
		}
		time.Sleep(50 * time.Millisecond)
		_, least, dead := l.subs.progress()
		_, dleast, _ := l.direct.progress()
		if dead > 0 {
			return fmt.Errorf("%d subscribers disconnected during the warm-up", dead)
		}
		if least > 0 && (l.direct == nil || dleast > 0) {
			break
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("warm-up: some subscribers got nothing in 60s")
		}
	}
	time.Sleep(500 * time.Millisecond)
	return nil
}

func (l *loadRun) measure(ctx context.Context, t *target) (*fanoutResult, error) {
	c := l.c
	start0, _, _, _, err := l.subs.command(ctx, "mark")
	if err != nil {
		return nil, err
	}
	if l.direct != nil {
		if _, _, _, _, err := l.direct.command(ctx, "mark"); err != nil {
			return nil, err
		}
	}
	subjOwed := l.owedFrom()
	pub0 := l.published
	cpu0, client0, bench0, busy0 := t.usage().CPU, l.subs.cpu(), selfCPU(), machineBusy()
	profDone := make(chan error, 1)
	if c.profile != "" && t.pprof != "" {
		go func() {
			path := filepath.Join(c.profile, fmt.Sprintf("%s-%s-%dsubs-%dsubjects-%.0fps.pprof", t.name, c.protocol,
				c.subscribers, c.subjects, c.rate))
			profDone <- fetchProfile(t.pprof, c.duration, path)
		}()
	} else {
		profDone <- nil
	}
	start := time.Now()
	if err := l.publishFor(ctx, start); err != nil {
		return nil, err
	}
	elapsed := time.Since(start)
	cpu1, client1, bench1, busy1 := t.usage().CPU, l.subs.cpu(), selfCPU(), machineBusy()
	end, _, _, hist, err := l.subs.command(ctx, "snap")
	if err != nil {
		return nil, err
	}
	r := &fanoutResult{target: t.name, published: l.published - pub0, deliveries: end - start0, elapsed: elapsed,
		serverCPU: cpu1 - cpu0, clientCPU: client1 - client0, benchCPU: bench1 - bench0, latency: hist,
		pubErrors: l.pub.errors()}
	r.otherCPU = max(busy1-busy0-r.serverCPU-r.clientCPU-r.benchCPU, 0)
	if l.direct != nil {
		_, _, _, dh, err := l.direct.command(ctx, "snap")
		if err != nil {
			return nil, err
		}
		r.direct = dh
	}
	r.expected = l.owedFrom() - subjOwed
	final, dead := l.drain(start0 + r.expected)
	r.received, r.dead = final-start0, dead
	if err := <-profDone; err != nil {
		fmt.Fprintf(os.Stderr, "profile: %v\n", err)
	}
	return r, nil
}

// owedFrom is the deliveries owed for everything published so far: each
// subject's messages times its subscribers.
func (l *loadRun) owedFrom() int64 {
	var n int64
	for s, p := range l.perSubject {
		subs := int64(l.c.subscribers / l.c.subjects)
		if s < l.c.subscribers%l.c.subjects {
			subs++
		}
		n += p * subs
	}
	return n
}

// publishFor publishes for the configured duration: at the configured rate,
// or, saturating, as fast as the slowest subscriber allows (at most window
// messages per subject ahead of it).
func (l *loadRun) publishFor(ctx context.Context, start time.Time) error {
	c := l.c
	base := l.published
	for {
		now := time.Now()
		el := now.Sub(start)
		if el >= c.duration || ctx.Err() != nil {
			return nil
		}
		var allowed int64
		if c.rate > 0 {
			allowed = base + int64(c.rate*el.Seconds())
		} else {
			_, least, _ := l.subs.progress()
			allowed = (least + int64(c.window)) * int64(c.subjects)
		}
		n := min(allowed-l.published, 256)
		if n <= 0 {
			time.Sleep(200 * time.Microsecond)
			continue
		}
		if err := l.send(int(n)); err != nil {
			return err
		}
	}
}

// drain waits until the subscribers have want messages, or their total
// stops growing for a second (what is missing then is lost).
func (l *loadRun) drain(want int64) (int64, int) {
	last, stable := int64(-1), time.Now()
	deadline := time.Now().Add(60 * time.Second)
	for {
		total, _, dead := l.subs.progress()
		if total >= want || time.Now().After(deadline) {
			return total, dead
		}
		if total != last {
			last, stable = total, time.Now()
		} else if time.Since(stable) > time.Second {
			return total, dead
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// selfCPU is this process's CPU time.
func selfCPU() time.Duration {
	st, _ := readProc(os.Getpid())
	return st.CPU
}

func printFanout(w io.Writer, c fanoutConfig, rs []*fanoutResult) {
	_, _ = fmt.Fprintf(w, "fan-out: %s\n", describeFanout(c))
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	_, _ = fmt.Fprintln(tw, "server\tvia\tdeliveries/s\tmsgs/s\tserver CPU\tdeliveries/CPU-s\tp50\tp99\tp99.9\tlost\tdead\tclients CPU\tbench CPU\tother CPU\t")
	cores := func(r *fanoutResult, d time.Duration) string {
		return fmt.Sprintf("%.2f", d.Seconds()/r.elapsed.Seconds())
	}
	for _, r := range rs {
		_, _ = fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%v\t%v\t%v\t%d\t%d\t%s\t%s\t%s\t\n",
			r.target, r.publisher, human(r.rate()), human(float64(r.published)/r.elapsed.Seconds()),
			cores(r, r.serverCPU), human(r.perCPU()),
			r.latency.quantile(0.5), r.latency.quantile(0.99), r.latency.quantile(0.999), r.lost(), r.dead,
			cores(r, r.clientCPU), cores(r, r.benchCPU), cores(r, r.otherCPU))
	}
	_ = tw.Flush()
	_, _ = fmt.Fprintln(w, "(CPU in cores: server = the server process; clients = the worker processes; bench = this process, with the publisher and, for kedge, the Kafka broker; other = the rest of the machine, which skews a result when high)")
	for _, r := range rs {
		if r.direct != nil {
			_, _ = fmt.Fprintf(w, "direct Kafka consumer latency: p50 %v, p99 %v, p99.9 %v; kedge adds p50 %v, p99 %v, p99.9 %v\n",
				r.direct.quantile(0.5), r.direct.quantile(0.99), r.direct.quantile(0.999),
				r.latency.quantile(0.5)-r.direct.quantile(0.5), r.latency.quantile(0.99)-r.direct.quantile(0.99),
				r.latency.quantile(0.999)-r.direct.quantile(0.999))
		}
	}
	if len(rs) == 2 && rs[1].rate() > 0 {
		_, _ = fmt.Fprintf(w, "kedge/%s: %.2f× deliveries/s, %.2f× deliveries per server CPU-second\n",
			rs[1].target, rs[0].rate()/rs[1].rate(), safeDiv(rs[0].perCPU(), rs[1].perCPU()))
	}
}

func safeDiv(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}

// human prints a rate with thousands separators.
func human(v float64) string {
	s := fmt.Sprintf("%.0f", v)
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 && s[i-1] != '-' {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

// benchLoadCommands are the load subcommands of `kedge bench`; "worker" is
// the hidden client process they start.
var benchLoadCommands = map[string]func(args []string, stdout, stderr io.Writer) int{
	"fanout":  benchFanout,
	"idle":    benchIdle,
	"publish": benchPublish,
	"targets": benchTargets,
	"worker":  func(_ []string, stdout, _ io.Writer) int { return benchWorker(os.Stdin, stdout) },
}
