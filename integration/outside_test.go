package integration

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// requireTool fails (not skips) when an outside client is missing: `make
// test` installs them (.ci/deps), so a missing one is a setup error.
func requireTool(t *testing.T, path string) string {
	t.Helper()
	p, err := exec.LookPath(path)
	if err != nil {
		t.Fatalf("%s is not installed: run `make deps` (or make test, which runs it)", path)
	}
	return p
}

// lineReader collects a process's output lines.
type lineReader struct{ lines chan string }

func readLines(r io.Reader) *lineReader {
	lr := &lineReader{lines: make(chan string, 1000)}
	go func() {
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			lr.lines <- sc.Text()
		}
		close(lr.lines)
	}()
	return lr
}

func (lr *lineReader) expect(t *testing.T, contains string) string {
	t.Helper()
	deadline := time.After(20 * time.Second)
	for {
		select {
		case l, ok := <-lr.lines:
			if !ok {
				t.Fatalf("output ended before a line containing %q", contains)
			}
			if strings.Contains(l, contains) {
				return l
			}
		case <-deadline:
			t.Fatalf("no output line containing %q within 20s", contains)
		}
	}
}

// The README's quick start: kcat produces to kedge's embedded broker and
// `kedge sub` prints the message; `kedge pub` prints Kafka's ack; kcat and
// Debian's python3-kafka read what kedge published.
func TestOutsideClientsAndCLI(t *testing.T) {
	kcat := requireTool(t, "kcat")
	n := startKedge(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	sub := exec.CommandContext(ctx, kedgeBin, "sub", "--url", n.WS(), "/demo/k1")
	out, _ := sub.StdoutPipe()
	var subErr bytes.Buffer
	sub.Stderr = &subErr
	if err := sub.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cancel(); _ = sub.Wait() }()
	lines := readLines(out)
	// kedge sub prints nothing until subscribed; wait for the subscription
	// to register before producing.
	waitFor(t, 10*time.Second, "kedge sub subscribed", func() bool {
		_, body := httpGet("http://" + n.HTTP + "/metrics")
		return strings.Contains(body, "kedge_ws_subscriptions 1\n")
	})

	produce := exec.Command(kcat, "-b", n.Kafka, "-t", "demo", "-k", "k1", "-P")
	produce.Stdin = strings.NewReader("hello from kcat\n")
	if b, err := produce.CombinedOutput(); err != nil {
		t.Fatalf("kcat -P: %v\n%s", err, b)
	}
	if l := lines.expect(t, "hello from kcat"); !strings.HasPrefix(l, "/demo/k1 ") {
		t.Fatalf("kedge sub printed %q", l)
	}

	ack, err := exec.Command(kedgeBin, "pub", "--url", n.WS(), "/demo/k2", "from kedge pub").CombinedOutput()
	if err != nil || !strings.HasPrefix(string(ack), "ack /demo/k2 ") {
		t.Fatalf("kedge pub: %v: %s", err, ack)
	}

	consumed, err := exec.Command(kcat, "-b", n.Kafka, "-t", "demo", "-C", "-o", "beginning", "-e", "-f", "%k=%s\n").CombinedOutput()
	if err != nil || !strings.Contains(string(consumed), "k2=from kedge pub") || !strings.Contains(string(consumed), "k1=hello from kcat") {
		t.Fatalf("kcat -C: %v\n%s", err, consumed)
	}

	py := requireTool(t, "/usr/bin/python3")
	script := `
import sys
from kafka import KafkaConsumer
c = KafkaConsumer("demo", bootstrap_servers=sys.argv[1], auto_offset_reset="earliest",
                  consumer_timeout_ms=10000, api_version=(2, 5, 0))
for m in c:
    print("%s=%s" % (m.key.decode(), m.value.decode()))
    if m.key == b"k2":
        break
`
	pyOut, err := exec.Command(py, "-c", script, n.Kafka).CombinedOutput()
	if err != nil || !strings.Contains(string(pyOut), "k2=from kedge pub") {
		t.Fatalf("python3-kafka consumer: %v\n%s", err, pyOut)
	}
}
