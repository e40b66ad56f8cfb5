package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
)

// benchNode is one kedge process started by a bench command.
type benchNode struct {
	cmd  *exec.Cmd
	HTTP string // host:port
	MQTT string // host:port, when the node serves MQTT
	done chan struct{}
}

func (n *benchNode) WS() string { return "ws://" + n.HTTP + "/v1/ws" }

// startBenchBroker runs a Kafka-protocol broker in this process (kfake), so
// a bench needs nothing but the kedge binary.
func startBenchBroker(partitions int) (*kfake.Cluster, error) {
	return kfake.NewCluster(kfake.NumBrokers(1), kfake.AllowAutoTopicCreation(), kfake.DefaultNumPartitions(partitions))
}

// startBenchNodes starts n `kedge serve` processes of this binary on random
// loopback ports, all on the Kafka at bootstrap.
func startBenchNodes(ctx context.Context, n int, bootstrap string, sets []string) ([]*benchNode, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	var nodes []*benchNode
	for i := range n {
		node, err := startBenchNode(ctx, self, i, bootstrap, sets)
		if err != nil {
			stopBenchNodes(nodes)
			return nil, err
		}
		nodes = append(nodes, node)
	}
	return nodes, nil
}

func startBenchNode(ctx context.Context, self string, i int, bootstrap string, sets []string) (*benchNode, error) {
	args := []string{"serve", "--log.format", "json", "--log.level", "info", "--http.listen", "127.0.0.1:0",
		"--set", "kafka.bootstrap.servers=" + bootstrap, "--set", fmt.Sprintf("node.name=bench-%d", i),
		// Every bench client comes from 127.0.0.1, thousands at once, publishing
		// as fast as it can: the limits meant for Internet clients are off.
		"--set", "limits.max.connections=0", "--set", "limits.max.connections.per.ip=0", "--set", "limits.publish.rate=0"}
	if hasMQTT() {
		args = append(args, "--set", "mqtt.listen=127.0.0.1:0")
	}
	for _, s := range sets {
		args = append(args, "--set", s)
	}
	cmd := exec.Command(self, args...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	node := &benchNode{cmd: cmd, done: make(chan struct{})}
	ready := make(chan map[string]any, 1)
	go scanReady(stderr, ready)
	go func() { _ = cmd.Wait(); close(node.done) }()
	select {
	case r := <-ready:
		node.HTTP, _ = r["http"].(string)
		node.MQTT, _ = r["mqtt"].(string)
	case <-node.done:
		return nil, fmt.Errorf("bench node %d exited before it was ready", i)
	case <-time.After(30 * time.Second):
		stopBenchNodes([]*benchNode{node})
		return nil, fmt.Errorf("bench node %d not ready in 30s", i)
	case <-ctx.Done():
		stopBenchNodes([]*benchNode{node})
		return nil, ctx.Err()
	}
	return node, waitReadyz(ctx, node.HTTP)
}

// scanReady finds the "kedge ready" log line and passes the nodes' errors
// through.
func scanReady(r io.Reader, ready chan<- map[string]any) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var m map[string]any
		if json.Unmarshal(sc.Bytes(), &m) == nil && m["msg"] == "kedge ready" {
			select {
			case ready <- m:
			default:
			}
			continue
		}
		if strings.Contains(sc.Text(), `"level":"ERROR"`) {
			fmt.Fprintln(os.Stderr, sc.Text())
		}
	}
}

func waitReadyz(ctx context.Context, host string) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		if resp, err := benchHTTP.Get("http://" + host + "/readyz"); err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == 200 {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("node %s not ready in 30s", host)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func stopBenchNodes(nodes []*benchNode) {
	for _, n := range nodes {
		_ = n.cmd.Process.Signal(syscall.SIGTERM)
	}
	for _, n := range nodes {
		select {
		case <-n.done:
		case <-time.After(20 * time.Second):
			_ = n.cmd.Process.Kill()
			<-n.done
		}
	}
}
