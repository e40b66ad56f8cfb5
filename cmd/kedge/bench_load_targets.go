package main

import (
	"context"
	"fmt"
	"io"
	"os/exec"
	"text/tabwriter"
	"time"

	"github.com/spf13/pflag"
)

// benchTargets is `kedge bench targets`: the loads kedge's performance
// targets are stated for (docs/benchmarks.md), each against its peer in the
// same run, and a table of what was reached. --short runs each briefly and
// small, as a smoke test of the whole harness.
func benchTargets(args []string, stdout, stderr io.Writer) int {
	fs := pflag.NewFlagSet("bench targets", pflag.ContinueOnError)
	fs.SetOutput(stderr)
	short := fs.Bool("short", false, "small and brief: a smoke test, not a measurement")
	peers := fs.Bool("peers", true, "run the peers (mosquitto, nats-server) where installed")
	profile := fs.String("profile", "", "directory to save kedge's CPU and heap profiles in")
	duration := fs.Duration("duration", 10*time.Second, "measurement time of each load")
	only := fs.StringSlice("only", nil, "run only these: mqtt, ws, latency, idle, publish")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	tr := &targetRun{short: *short, peers: *peers, profile: *profile, duration: *duration, log: stderr, out: stdout}
	if tr.short {
		tr.duration = 2 * time.Second
	}
	want := func(name string) bool {
		if len(*only) == 0 {
			return true
		}
		for _, o := range *only {
			if o == name {
				return true
			}
		}
		return false
	}
	ctx := context.Background()
	steps := []struct {
		name string
		run  func(context.Context) error
	}{
		{"mqtt", tr.mqttFanout}, {"ws", tr.wsFanout}, {"latency", tr.latency}, {"idle", tr.idle}, {"publish", tr.publish},
	}
	failed := false
	for _, s := range steps {
		if !want(s.name) {
			continue
		}
		if err := s.run(ctx); err != nil {
			_, _ = fmt.Fprintf(stderr, "kedge bench targets: %s: %v\n", s.name, err)
			failed = true
		}
	}
	tr.print()
	if failed {
		return 1
	}
	return 0
}

type targetRun struct {
	short, peers bool
	profile      string
	duration     time.Duration
	log, out     io.Writer
	rows         []targetRow
}

type targetRow struct {
	what, goal, got string
	met             bool
	skipped         bool
}

func (tr *targetRun) add(what, goal, got string, met bool) {
	tr.rows = append(tr.rows, targetRow{what: what, goal: goal, got: got, met: met})
}

func (tr *targetRun) skip(what, goal, why string) {
	tr.rows = append(tr.rows, targetRow{what: what, goal: goal, got: why, skipped: true})
}

func (tr *targetRun) print() {
	_, _ = fmt.Fprintln(tr.out, "\ntargets (2-core machine; see docs/benchmarks.md):")
	tw := tabwriter.NewWriter(tr.out, 0, 4, 2, ' ', 0)
	_, _ = fmt.Fprintln(tw, "load\tgoal\treached\t\t")
	for _, r := range tr.rows {
		mark := "met"
		switch {
		case r.skipped:
			mark = "skipped"
		case !r.met:
			mark = "MISSED"
		}
		_, _ = fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t\n", r.what, r.goal, r.got, mark)
	}
	_ = tw.Flush()
	if tr.short {
		_, _ = fmt.Fprintln(tr.out, "(--short: a smoke test of the harness; the numbers are not the targets' loads)")
	}
}

func (tr *targetRun) peer(name string) bool {
	if !tr.peers {
		return false
	}
	_, err := exec.LookPath(map[string]string{"nats": "nats-server", "mosquitto": "mosquitto"}[name])
	return err == nil || fileExists("/usr/sbin/"+map[string]string{"nats": "nats-server", "mosquitto": "mosquitto"}[name])
}

func (tr *targetRun) fanout(protocol, publisher, peer string) fanoutConfig {
	c := fanoutConfig{protocol: protocol, subscribers: 1000, subjects: 1, publisher: publisher, size: 64,
		duration: tr.duration, window: 500, perWorker: 5000, workers: 2, peer: peer, profile: tr.profile, topic: "bench"}
	if tr.short {
		c.subscribers = 100
	}
	if !tr.peer(peer) {
		c.peer = "none"
	}
	return c
}

func (tr *targetRun) runFanout(ctx context.Context, c fanoutConfig) ([]*fanoutResult, error) {
	if err := c.check(); err != nil {
		return nil, err
	}
	rs, err := runFanoutPair(ctx, c, tr.log)
	if err != nil {
		return nil, err
	}
	printFanout(tr.out, c, rs)
	_, _ = fmt.Fprintln(tr.out)
	return rs, nil
}

func (tr *targetRun) mqttFanout(ctx context.Context) error {
	what := fmt.Sprintf("MQTT fan-out 1→%d, 64 B, QoS 0", tr.fanout("mqtt", "mqtt", "mosquitto").subscribers)
	rs, err := tr.runFanout(ctx, tr.fanout("mqtt", "mqtt", "mosquitto"))
	if err != nil {
		return err
	}
	if len(rs) < 2 {
		tr.skip(what, "≥ 4× mosquitto deliveries/s", fmt.Sprintf("%s deliveries/s; mosquitto not run", human(rs[0].rate())))
		return nil
	}
	ratio := rs[0].rate() / rs[1].rate()
	tr.add(what, "≥ 4× mosquitto deliveries/s", fmt.Sprintf("%.1f× (%s vs %s deliveries/s)", ratio, human(rs[0].rate()), human(rs[1].rate())), ratio >= 4)
	return nil
}

func (tr *targetRun) wsFanout(ctx context.Context) error {
	c := tr.fanout("ws", "kafka", "nats")
	what := fmt.Sprintf("WebSocket fan-out 1→%d, 64 B", c.subscribers)
	rs, err := tr.runFanout(ctx, c)
	if err != nil {
		return err
	}
	tr.add(what, "≥ 1,000,000 deliveries/s", human(rs[0].rate())+" deliveries/s", rs[0].rate() >= 1e6)
	if len(rs) < 2 {
		tr.skip(what, "≥ nats-server's deliveries/s", "nats-server not run")
		return nil
	}
	ratio := rs[0].rate() / rs[1].rate()
	tr.add(what, "≥ nats-server's deliveries/s", fmt.Sprintf("%.2f× (%s vs %s)", ratio, human(rs[0].rate()), human(rs[1].rate())), ratio >= 1)
	return nil
}

// latency measures kedge's added latency at 100,000 deliveries/s in two
// shapes: 100 WebSocket subscribers of one subject at 1,000 msg/s (each
// connection written to once per Kafka batch), and 1,000 subscribers over
// 10 subjects at 1,000 msg/s (each connection gets 100 msg/s, so every
// delivery is its own write and its client's own wake-up: on 2 cores the
// kernel's loopback work for server and clients fills the machine).
func (tr *targetRun) latency(ctx context.Context) error {
	for _, shape := range []struct{ subs, subjects int }{{100, 1}, {1000, 10}} {
		c := tr.fanout("ws", "kafka", "none")
		c.subscribers, c.subjects, c.rate, c.direct = shape.subs, shape.subjects, 1000, true
		if tr.short {
			c.subscribers, c.rate = shape.subs/10, 100
		}
		rs, err := tr.runFanout(ctx, c)
		if err != nil {
			return err
		}
		r := rs[0]
		p50 := r.latency.quantile(0.5) - r.direct.quantile(0.5)
		p99 := r.latency.quantile(0.99) - r.direct.quantile(0.99)
		what := fmt.Sprintf("added latency, %s deliveries/s to %d subscribers", human(r.rate()), c.subscribers)
		tr.add(what, "p50 ≤ 1ms", fmt.Sprintf("%v (kedge %v, direct %v)", p50, r.latency.quantile(0.5), r.direct.quantile(0.5)), p50 <= time.Millisecond)
		tr.add(what, "p99 ≤ 5ms", fmt.Sprintf("%v (kedge %v, direct %v)", p99, r.latency.quantile(0.99), r.direct.quantile(0.99)), p99 <= 5*time.Millisecond)
	}
	return nil
}

func (tr *targetRun) idle(ctx context.Context) error {
	c := idleConfig{protocols: []string{"ws", "mqtt", "sse"}, connections: 19000, perWorker: 9500,
		settle: 5 * time.Second, peers: tr.peers && tr.peer("nats") && tr.peer("mosquitto"), profile: tr.profile}
	if tr.short {
		c.connections, c.settle = 500, time.Second
	}
	rs, err := runIdle(ctx, c, tr.log)
	if err != nil {
		return err
	}
	printIdle(tr.out, rs)
	_, _ = fmt.Fprintln(tr.out)
	goals := map[string]float64{"ws": 8000, "mqtt": 6000}
	for _, r := range rs {
		goal, ok := goals[r.protocol]
		if r.target != "kedge" || !ok {
			continue
		}
		tr.add(fmt.Sprintf("idle %s connection at %d", r.protocol, r.conns), fmt.Sprintf("≤ %.0f KB", goal/1000),
			fmt.Sprintf("%.1f KB RSS", r.perConn()/1000), r.perConn() <= goal)
	}
	return nil
}

func (tr *targetRun) publish(ctx context.Context) error {
	c := publishConfig{via: []string{"ws", "mqtt"}, connections: 64, window: 64, size: 64, keys: 100, duration: tr.duration}
	if tr.short {
		c.connections = 8
	}
	rs, err := runPublish(ctx, c, tr.log)
	if err != nil {
		return err
	}
	printPublish(tr.out, c, rs)
	_, _ = fmt.Fprintln(tr.out)
	for _, r := range rs[1:] {
		ratio := safeDiv(r.rate(), rs[0].rate())
		tr.add("publishing into Kafka through "+r.via, "≥ 0.7× a direct franz-go producer",
			fmt.Sprintf("%.2f× (%s vs %s acked/s)", ratio, human(r.rate()), human(rs[0].rate())), ratio >= 0.7)
	}
	return nil
}
