package integration

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/goleak"
)

// kedgeBin is the binary under test, built by TestMain.
var kedgeBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "kedge-integration-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	kedgeBin = filepath.Join(dir, "kedge")
	build := exec.Command("go", "build", "-race", "-o", kedgeBin, "../cmd/kedge")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building kedge:", err)
		os.Exit(1)
	}
	before := goleak.IgnoreCurrent()
	code := m.Run()
	_ = os.RemoveAll(dir)
	// Every client goroutine a test started (readers, SSE and MQTT clients,
	// process log readers) must be gone once its test has cleaned up.
	if code == 0 {
		if err := goleak.Find(before); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// node is one running kedge process.
type node struct {
	t     *testing.T
	cmd   *exec.Cmd
	HTTP  string // host:port
	Kafka string // bootstrap address it uses
	MQTT  string // host:port of MQTT over TCP
	logs  *logBuffer
	done  chan struct{}
	err   error
}

// WS is the node's WebSocket URL.
func (n *node) WS() string { return "ws://" + n.HTTP + "/v1/ws" }

// logBuffer keeps a process's log lines for failure reports.
type logBuffer struct {
	mu    sync.Mutex
	lines []string
}

func (l *logBuffer) add(s string) {
	l.mu.Lock()
	l.lines = append(l.lines, s)
	l.mu.Unlock()
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}

// contains reports whether a log line contains s.
func (l *logBuffer) contains(s string) bool {
	return strings.Contains(l.String(), s)
}

// startKedge runs `kedge serve` with the given --set overrides on random
// loopback ports. With no kafka.bootstrap.servers it starts the embedded
// broker, with its data in a temporary directory unless one is given.
func startKedge(t *testing.T, sets ...string) *node {
	t.Helper()
	return startKedgeWith(t, nil, sets...)
}

// startKedgeWith is startKedge with another readiness check (nil: GET
// /readyz over plain HTTP).
func startKedgeWith(t *testing.T, isReady func(*node) bool, sets ...string) *node {
	t.Helper()
	args := []string{"serve", "--log.format", "json", "--log.level", "debug",
		"--http.listen", "127.0.0.1:0", "--embedded.listen", "127.0.0.1:0", "--mqtt.listen", "127.0.0.1:0"}
	hasDir := false
	for _, s := range sets {
		args = append(args, "--set", s)
		hasDir = hasDir || strings.HasPrefix(s, "embedded.data.dir=")
	}
	if !hasDir {
		args = append(args, "--set", "embedded.data.dir="+t.TempDir())
	}
	n := &node{t: t, logs: &logBuffer{}, done: make(chan struct{})}
	n.cmd = exec.Command(kedgeBin, args...)
	n.cmd.Env = append(os.Environ(), "GORACE=halt_on_error=1")
	stderr, err := n.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := n.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ready := make(chan map[string]any, 1)
	go n.readLogs(stderr, ready)
	go func() { n.err = n.cmd.Wait(); close(n.done) }()
	select {
	case r := <-ready:
		n.HTTP, n.Kafka = r["http"].(string), r["kafka"].(string)
		n.MQTT, _ = r["mqtt"].(string)
	case <-n.done:
		t.Fatalf("kedge exited before ready: %v\n%s", n.err, n.logs)
	case <-time.After(30 * time.Second):
		n.kill()
		t.Fatalf("kedge not ready in 30s\n%s", n.logs)
	}
	t.Cleanup(func() {
		n.stop()
		if t.Failed() {
			t.Logf("kedge log (%s):\n%s", n.HTTP, n.logs)
		}
	})
	if isReady == nil {
		n.waitReady()
	} else {
		waitFor(t, 30*time.Second, "kedge ready", func() bool { return isReady(n) })
	}
	return n
}

func (n *node) readLogs(r io.Reader, ready chan<- map[string]any) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		n.logs.add(line)
		if strings.Contains(line, "DATA RACE") {
			n.logs.add("!!! data race reported by kedge")
		}
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) == nil && m["msg"] == "kedge ready" {
			select {
			case ready <- m:
			default:
			}
		}
	}
}

// waitReady polls /readyz until Kafka is reachable.
func (n *node) waitReady() {
	n.t.Helper()
	waitFor(n.t, 30*time.Second, "kedge /readyz", func() bool {
		code, _ := httpGet("http://" + n.HTTP + "/readyz")
		return code == 200
	})
}

// stop sends SIGTERM and waits; a kedge that does not exit cleanly fails the test.
func (n *node) stop() {
	select {
	case <-n.done:
		return
	default:
	}
	_ = n.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-n.done:
		if n.err != nil {
			n.t.Errorf("kedge exited with %v", n.err)
		}
	case <-time.After(30 * time.Second):
		n.kill()
		n.t.Errorf("kedge did not stop within 30s of SIGTERM")
	}
	if n.logs.contains("DATA RACE") {
		n.t.Errorf("kedge reported a data race:\n%s", n.logs)
	}
}

func (n *node) kill() {
	_ = n.cmd.Process.Kill()
	<-n.done
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// startBroker runs a kfake broker inside the test, for fault injection.
func startBroker(t *testing.T, opts ...kfake.Opt) *kfake.Cluster {
	t.Helper()
	opts = append([]kfake.Opt{kfake.NumBrokers(1), kfake.AllowAutoTopicCreation(), kfake.DefaultNumPartitions(3)}, opts...)
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// kafkaClient is a franz-go client playing the outside Kafka world.
func kafkaClient(t *testing.T, addr string, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(addr), kgo.AllowAutoTopicCreation()}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

// produce writes records synchronously.
func produce(t *testing.T, cl *kgo.Client, rs ...*kgo.Record) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := cl.ProduceSync(ctx, rs...).FirstErr(); err != nil {
		t.Fatalf("produce: %v", err)
	}
}

// consumeAll reads every record of topic until n are read.
func consumeAll(t *testing.T, addr, topic string, n int) []*kgo.Record {
	t.Helper()
	cl := kafkaClient(t, addr, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out []*kgo.Record
	for len(out) < n {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("consumed %d of %d records of %s", len(out), n, topic)
		}
		out = append(out, fs.Records()...)
	}
	return out
}

func httpGet(url string) (int, string) {
	resp, err := httpClient.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer func() { _ = resp.Body.Close() }()
	var b bytes.Buffer
	_, _ = b.ReadFrom(resp.Body)
	return resp.StatusCode, b.String()
}
