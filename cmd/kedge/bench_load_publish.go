package main

import (
	"context"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/spf13/pflag"
)

// publishConfig is `kedge bench publish`: publishing into Kafka through
// kedge (WebSocket or MQTT QoS 1, each publish acknowledged after Kafka's
// ack) against a direct franz-go producer of the same Kafka.
type publishConfig struct {
	via         []string
	connections int
	window      int
	size        int
	keys        int
	duration    time.Duration
	sets        []string
}

type publishResult struct {
	via       string
	acked     int64
	elapsed   time.Duration
	errors    int64
	serverCPU time.Duration // kedge's; the direct producer has no server but the broker
	clientCPU time.Duration
}

func (r publishResult) rate() float64 { return float64(r.acked) / r.elapsed.Seconds() }

func benchPublish(args []string, stdout, stderr io.Writer) int {
	fs := pflag.NewFlagSet("bench publish", pflag.ContinueOnError)
	fs.SetOutput(stderr)
	var c publishConfig
	c.flags(fs)
	if err := fs.Parse(args); err != nil {
		return 2
	}
	rs, err := runPublish(context.Background(), c, stderr)
	if err != nil {
		_, _ = fmt.Fprintf(stderr, "kedge bench publish: %v\n", err)
		return 1
	}
	printPublish(stdout, c, rs)
	return 0
}

func (c *publishConfig) flags(fs *pflag.FlagSet) {
	fs.StringSliceVar(&c.via, "via", []string{"ws", "mqtt"}, "protocols to publish through kedge (ws, mqtt)")
	fs.IntVar(&c.connections, "connections", 8, "publishing connections through kedge")
	fs.IntVar(&c.window, "window", 64, "publishes awaiting their ack per connection (kedge's ws.max.inflight and mqtt.max.inflight default)")
	fs.IntVar(&c.size, "size", 64, "payload bytes")
	fs.IntVar(&c.keys, "keys", 100, "keys (subjects) published to")
	fs.DurationVar(&c.duration, "duration", 10*time.Second, "measurement time")
	fs.StringSliceVar(&c.sets, "set", nil, "kedge configuration key=value (repeatable)")
}

func runPublish(ctx context.Context, c publishConfig, log io.Writer) ([]publishResult, error) {
	c.size = max(c.size, minPayload)
	env, err := newBenchEnv()
	if err != nil {
		return nil, err
	}
	defer env.close()
	topic := "pub"
	if err := env.createTopic(ctx, topic, 4); err != nil {
		return nil, err
	}
	keys := subjectNames("kafka", topic, c.keys)
	_, _ = fmt.Fprintf(log, "publish: a direct franz-go producer (acks=all, idempotent), %d B payloads over %d keys\n", c.size, c.keys)
	direct, err := measurePublish(ctx, workerSpec{Kind: "pub-kafka", Addr: env.bootstrap, Count: 1,
		Subjects: append([]string{topic}, keys...), Size: c.size}, c.duration, nil)
	if err != nil {
		return nil, fmt.Errorf("direct producer: %w", err)
	}
	direct.via = "direct franz-go producer"
	rs := []publishResult{direct}
	for _, via := range c.via {
		k, err := startKedge(ctx, env.bootstrap, c.sets)
		if err != nil {
			return nil, err
		}
		spec := workerSpec{Count: c.connections, Size: c.size, Window: c.window}
		switch via {
		case "ws":
			spec.Kind, spec.Addr, spec.Path, spec.Subjects = "pub-ws", k.ws, "/v1/ws", subjectNames("kedge", topic, c.keys)
		case "mqtt":
			spec.Kind, spec.Addr, spec.Subjects = "pub-mqtt", k.mqtt, subjectNames("mqtt", topic, c.keys)
		default:
			k.stop()
			return nil, fmt.Errorf("--via %q: want ws or mqtt", via)
		}
		_, _ = fmt.Fprintf(log, "publish: %d %s connections through kedge %s, %d publishes awaiting ack each\n", c.connections, via, k, c.window)
		r, err := measurePublish(ctx, spec, c.duration, k)
		k.stop()
		if err != nil {
			return nil, fmt.Errorf("kedge %s: %w", via, err)
		}
		r.via = "kedge " + via
		rs = append(rs, r)
	}
	return rs, nil
}

// measurePublish runs publishers in a worker for a warm-up second and then
// the measurement.
func measurePublish(ctx context.Context, spec workerSpec, d time.Duration, k *target) (publishResult, error) {
	var r publishResult
	spec.Tick = 100 * time.Millisecond
	ws, err := startWorkers(ctx, spec, 1, maxPerWorker)
	if err != nil {
		return r, err
	}
	g := group(ws)
	defer stopWorkers(ws)
	g.broadcast("go")
	time.Sleep(time.Second)
	start0, _, _, _, err := g.command(ctx, "mark")
	if err != nil {
		return r, err
	}
	var cpu0 time.Duration
	if k != nil {
		cpu0 = k.usage().CPU
	}
	client0, t0 := g.cpu(), time.Now()
	time.Sleep(d)
	end, dead, errs, _, err := g.command(ctx, "snap")
	if err != nil {
		return r, err
	}
	r.elapsed, r.acked, r.errors, r.clientCPU = time.Since(t0), end-start0, errs, g.cpu()-client0
	if k != nil {
		r.serverCPU = k.usage().CPU - cpu0
	}
	if dead > 0 {
		return r, fmt.Errorf("%d publishing connections ended", dead)
	}
	return r, nil
}

func printPublish(w io.Writer, c publishConfig, rs []publishResult) {
	_, _ = fmt.Fprintf(w, "publish into Kafka: %d B payloads over %d keys, %v\n", max(c.size, minPayload), c.keys, c.duration)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	_, _ = fmt.Fprintln(tw, "publisher\tacked/s\tvs direct\terrors\tkedge CPU\tclients CPU\t")
	for _, r := range rs {
		_, _ = fmt.Fprintf(tw, "%s\t%s\t%.2f×\t%d\t%.2f cores\t%.2f cores\t\n", r.via, human(r.rate()), safeDiv(r.rate(), rs[0].rate()),
			r.errors, r.serverCPU.Seconds()/r.elapsed.Seconds(), r.clientCPU.Seconds()/r.elapsed.Seconds())
	}
	_ = tw.Flush()
}
