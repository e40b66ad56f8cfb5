package main

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"text/tabwriter"
	"time"

	"github.com/spf13/pflag"
)

// idleConfig is `kedge bench idle`: many connections, each subscribed to
// one subject, doing nothing.
type idleConfig struct {
	protocols   []string
	connections int
	perWorker   int
	settle      time.Duration
	peers       bool
	sets        []string
	profile     string
}

// idleResult is what idle connections cost one server.
type idleResult struct {
	target, protocol string
	conns            int
	rss              int64 // resident set growth
	goHeap, goStack  int64 // kedge: Go heap and stacks in use after a GC, growth
	hasGo            bool
}

func (r idleResult) perConn() float64 { return float64(r.rss) / float64(r.conns) }

func benchIdle(args []string, stdout, stderr io.Writer) int {
	fs := pflag.NewFlagSet("bench idle", pflag.ContinueOnError)
	fs.SetOutput(stderr)
	var c idleConfig
	fs.StringSliceVar(&c.protocols, "protocols", []string{"ws", "mqtt", "sse"}, "protocols to measure, one kedge node each")
	fs.IntVar(&c.connections, "connections", 19000, "idle connections per protocol")
	fs.IntVar(&c.perWorker, "per-worker", 9500, "connections per worker process (at most 19000)")
	fs.DurationVar(&c.settle, "settle", 5*time.Second, "wait after connecting before measuring")
	fs.BoolVar(&c.peers, "peers", true, "also measure nats-server (ws) and mosquitto (mqtt)")
	fs.StringSliceVar(&c.sets, "set", nil, "kedge configuration key=value (repeatable)")
	fs.StringVar(&c.profile, "profile", "", "directory to save kedge's heap profile (with the connections) in")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	rs, err := runIdle(context.Background(), c, stderr)
	if err != nil {
		_, _ = fmt.Fprintf(stderr, "kedge bench idle: %v\n", err)
		return 1
	}
	printIdle(stdout, rs)
	return 0
}

func runIdle(ctx context.Context, c idleConfig, log io.Writer) ([]idleResult, error) {
	env, err := newBenchEnv()
	if err != nil {
		return nil, err
	}
	defer env.close()
	if err := env.createTopic(ctx, "idle", 4); err != nil {
		return nil, err
	}
	var rs []idleResult
	for _, p := range c.protocols {
		k, err := startKedge(ctx, env.bootstrap, c.sets)
		if err != nil {
			return nil, err
		}
		_, _ = fmt.Fprintf(log, "idle: %d %s connections to kedge %s\n", c.connections, p, k)
		r, err := measureIdle(ctx, c, k, p)
		k.stop()
		if err != nil {
			return nil, fmt.Errorf("kedge %s: %w", p, err)
		}
		rs = append(rs, r)
		peer := map[string]string{"ws": "nats", "mqtt": "mosquitto"}[p]
		if !c.peers || peer == "" {
			continue
		}
		t, err := startPeer(ctx, peer)
		if err != nil {
			return nil, err
		}
		_, _ = fmt.Fprintf(log, "idle: %d %s connections to %s\n", c.connections, p, t)
		r, err = measureIdle(ctx, c, t, p)
		t.stop()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", peer, err)
		}
		rs = append(rs, r)
	}
	return rs, nil
}

// measureIdle connects the clients, each subscribed to its own subject, and
// reads the server's memory before and after.
func measureIdle(ctx context.Context, c idleConfig, t *target, protocol string) (idleResult, error) {
	r := idleResult{target: t.name, protocol: protocol, conns: c.connections}
	fc := fanoutConfig{protocol: protocol, subscribers: c.connections, subjects: c.connections, topic: "idle"}
	spec, err := subscriberSpec(fc, t)
	if err != nil {
		return r, err
	}
	spec.Tick, spec.Buffer = time.Second, 4096
	time.Sleep(c.settle / 2)
	before := t.usage()
	var mem0 goMem
	if t.pprof != "" {
		if mem0, err = readGoMem(t.pprof); err == nil {
			r.hasGo = true
		}
	}
	ws, err := startWorkers(ctx, spec, 1, c.perWorker)
	if err != nil {
		return r, err
	}
	defer stopWorkers(ws)
	time.Sleep(c.settle)
	if t.pprof != "" {
		// A long-idle server has been through several collections (Go's
		// runtime forces one every two minutes), each of which halves the
		// stacks of idle goroutines that use little of theirs: a few
		// collections now stand for that, then the scavenger gets time to
		// return the freed pages.
		for range 4 {
			if _, err := readGoMem(t.pprof); err != nil {
				return r, err
			}
		}
		time.Sleep(c.settle)
	}
	if _, _, dead := group(ws).progress(); dead > 0 {
		return r, fmt.Errorf("%d connections closed while idle", dead)
	}
	after := t.usage()
	r.rss = after.RSS - before.RSS
	if r.hasGo {
		mem1, err := readGoMem(t.pprof)
		if err != nil {
			return r, err
		}
		r.goHeap, r.goStack = mem1.HeapInuse-mem0.HeapInuse, mem1.StackInuse-mem0.StackInuse
		if c.profile != "" {
			if err := fetchHeap(t.pprof, filepath.Join(c.profile, "kedge-idle-"+protocol+".heap")); err != nil {
				return r, err
			}
		}
	}
	return r, nil
}

func printIdle(w io.Writer, rs []idleResult) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	_, _ = fmt.Fprintln(tw, "server\tprotocol\tconnections\tRSS growth\tper connection\tGo heap/conn\tGo stacks/conn\t")
	for _, r := range rs {
		heap, stack := "-", "-"
		if r.hasGo {
			heap = fmt.Sprintf("%.0f B", float64(r.goHeap)/float64(r.conns))
			stack = fmt.Sprintf("%.0f B", float64(r.goStack)/float64(r.conns))
		}
		_, _ = fmt.Fprintf(tw, "%s\t%s\t%d\t%.1f MiB\t%.0f B\t%s\t%s\t\n", r.target, r.protocol, r.conns,
			float64(r.rss)/(1<<20), r.perConn(), heap, stack)
	}
	_ = tw.Flush()
	_, _ = fmt.Fprintln(w, "(idle: every connection subscribed to its own subject, silent; RSS read from /proc, Go memory after a GC from the node's pprof endpoint)")
}
