package kafka

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
)

// EmbeddedConfig configures the development broker.
type EmbeddedConfig struct {
	// Listen is the address, e.g. "127.0.0.1:9092"; port 0 picks one.
	Listen string
	// DataDir keeps the log across restarts; empty keeps it in memory.
	DataDir        string
	Partitions     int
	RetentionTime  time.Duration
	RetentionBytes int64
	Logger         *slog.Logger
}

// Embedded is a single-node Kafka-protocol broker (franz-go's kfake) for
// development and tests. Any Kafka client can produce to it and consume from
// it. It is not a replacement for a Kafka cluster.
type Embedded struct {
	cluster *kfake.Cluster
	addr    string
	stop    context.CancelFunc
	done    chan struct{}
}

// StartEmbedded starts the broker and its retention ticker.
func StartEmbedded(cfg EmbeddedConfig) (*Embedded, error) {
	if cfg.Partitions < 1 {
		cfg.Partitions = 1
	}
	if cfg.DataDir != "" {
		if err := os.MkdirAll(cfg.DataDir, 0o750); err != nil {
			return nil, fmt.Errorf("embedded kafka data dir: %w", err)
		}
	}
	listen := func(network, _ string) (net.Listener, error) { return net.Listen(network, cfg.Listen) }
	opts := []kfake.Opt{
		kfake.NumBrokers(1),
		kfake.ListenFn(listen),
		kfake.ClusterID("kedge-embedded"),
		kfake.AllowAutoTopicCreation(),
		kfake.DefaultNumPartitions(cfg.Partitions),
		kfake.BrokerConfigs(map[string]string{
			"log.retention.ms":    strconv.FormatInt(cfg.RetentionTime.Milliseconds(), 10),
			"log.retention.bytes": strconv.FormatInt(cfg.RetentionBytes, 10),
		}),
	}
	if cfg.DataDir != "" {
		opts = append(opts, kfake.DataDir(cfg.DataDir))
	}
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		return nil, fmt.Errorf("embedded kafka on %s: %w", cfg.Listen, err)
	}
	ctx, stop := context.WithCancel(context.Background())
	e := &Embedded{cluster: c, addr: c.ListenAddrs()[0], stop: stop, done: make(chan struct{})}
	go e.retain(ctx)
	return e, nil
}

// retain applies the broker-wide retention bounds once a minute: kfake runs
// its own retention timer only for topics with topic-level retention configs.
func (e *Embedded) retain(ctx context.Context) {
	defer close(e.done)
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			e.cluster.ApplyRetention()
		}
	}
}

// Addr is the broker's host:port, for bootstrap.servers.
func (e *Embedded) Addr() string { return e.addr }

// Cluster exposes kfake for tests (fault injection with ControlKey).
func (e *Embedded) Cluster() *kfake.Cluster { return e.cluster }

// Close stops the broker, writing its state to the data directory.
func (e *Embedded) Close() {
	e.stop()
	<-e.done
	e.cluster.Close()
}
