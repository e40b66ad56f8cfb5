package mqtt

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"
)

// Idle connections must be cheap (design: well under 10 KB each). This test
// measures what an idle MQTT client — connected, subscribed to one subject,
// silent — costs the server: Go heap and goroutine stacks after a GC,
// before and after the clients connect, divided by their number. The
// clients run in a child process (this test binary again), so that their
// own memory and file descriptors are not counted: one process here may
// hold about 19,900 files, and 10,000 clients need 10,000 on each side.
//
//	KEDGE_MQTT_IDLE_CONNS=10000 go test -run TestIdleConnectionMemory -v ./protocols/mqtt
//
// measures 10,000 (the default is 1,000, to stay quick). The bound checked
// is generous under the race detector, which makes allocations larger.
func TestIdleConnectionMemory(t *testing.T) {
	n := 1000
	if s := os.Getenv("KEDGE_MQTT_IDLE_CONNS"); s != "" {
		var err error
		if n, err = strconv.Atoi(s); err != nil || n <= 0 {
			t.Fatalf("KEDGE_MQTT_IDLE_CONNS=%q", s)
		}
	}
	h := newHarness(t, Config{})
	heap0, stack0 := memInUse()
	goroutines := runtime.NumGoroutine()

	child := exec.Command(os.Args[0], "-test.run=^TestIdleClients$", "-test.timeout=10m")
	child.Env = append(os.Environ(), "KEDGE_MQTT_IDLE_CHILD="+h.addr+","+strconv.Itoa(n))
	child.Stderr = os.Stderr
	stdin, err := child.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := child.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = stdin.Close() // the child exits, closing its clients
		_ = child.Wait()
		waitFor(t, time.Minute, "the clients to go", func() bool { return h.srv.Stats().Connections == 0 })
	}()
	ready := make(chan error, 1)
	go func() {
		line, err := bufio.NewReader(stdout).ReadString('\n')
		if err == nil && !strings.HasPrefix(line, "ready") {
			err = fmt.Errorf("child said %q", line)
		}
		ready <- err
		_, _ = io.Copy(io.Discard, stdout)
	}()
	select {
	case err := <-ready:
		if err != nil {
			t.Fatalf("client process: %v", err)
		}
	case <-time.After(5 * time.Minute):
		t.Fatal("client process not ready in 5 minutes")
	}
	waitFor(t, time.Minute, "the clients to be counted", func() bool {
		st := h.srv.Stats()
		return st.Connections == int64(n) && st.Subscriptions == int64(n)
	})
	heap1, stack1 := memInUse()
	heap, stack := float64(heap1-heap0)/float64(n), float64(stack1-stack0)/float64(n)
	perG := float64(runtime.NumGoroutine()-goroutines) / float64(n)
	t.Logf("%d idle MQTT clients: %.0f bytes each: %.0f heap, %.0f goroutine stacks (%.1f goroutines each)",
		n, heap+stack, heap, stack, perG)
	// The stacks are mochi's: its read loop and write loop per client hold
	// its 800-byte packets by value, so the read loop keeps a 16 KiB stack
	// and the write loop 4 KiB (see the package doc).
	heapLimit, stackLimit := 8<<10, 22<<10
	if raceEnabled {
		heapLimit, stackLimit = 24<<10, 48<<10
	}
	if heap > float64(heapLimit) || stack > float64(stackLimit) {
		t.Errorf("an idle MQTT client costs %.0f bytes of heap and %.0f of stacks, more than %d and %d",
			heap, stack, heapLimit, stackLimit)
	}
}

// memInUse is the heap and goroutine stack memory in use after full GCs
// (which also shrink idle goroutines' stacks).
func memInUse() (heap, stack uint64) {
	var ms runtime.MemStats
	for range 4 {
		runtime.GC()
	}
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse, ms.StackInuse
}

// TestIdleClients is the child process of TestIdleConnectionMemory: it
// connects the clients, says "ready", and keeps them until stdin closes.
func TestIdleClients(t *testing.T) {
	spec := os.Getenv("KEDGE_MQTT_IDLE_CHILD")
	if spec == "" {
		t.Skip("the client process of TestIdleConnectionMemory")
	}
	addr, count, _ := strings.Cut(spec, ",")
	n, _ := strconv.Atoi(count)
	for i := range n {
		c := dial(t, addr, 4)
		c.mustConnect(fmt.Sprintf("idle-%d", i), true, func(pk *packets.Packet) { pk.Connect.Keepalive = 600 })
		c.subscribe(1, sub(fmt.Sprintf("idle/%d", i), 1))
	}
	fmt.Println("ready")
	_, _ = io.Copy(io.Discard, os.Stdin)
}
