package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/kedgehq/kedge/configs"
)

// workerProc is one `kedge bench worker` process seen from the coordinator.
type workerProc struct {
	cmd     *exec.Cmd
	stdin   io.WriteCloser
	replies chan workerEvent // ready, mark, snap, error
	done    chan struct{}

	mu   sync.Mutex
	last workerEvent // the latest tick
}

// maxPerWorker bounds the clients of one worker process: one process here
// may hold at most about 19,900 files.
const maxPerWorker = 19000

// startWorkers starts enough workers for spec.Count clients (at least
// minWorkers, at most perWorker clients each) and waits until every client
// is connected and subscribed.
func startWorkers(ctx context.Context, spec workerSpec, minWorkers, perWorker int) ([]*workerProc, error) {
	perWorker = min(max(perWorker, 1), maxPerWorker)
	n := max(minWorkers, (spec.Count+perWorker-1)/perWorker, 1)
	n = min(n, max(spec.Count, 1))
	var ws []*workerProc
	first := spec.First
	for i := range n {
		s := spec
		s.First = first
		s.Count = spec.Count/n + boolInt(i < spec.Count%n)
		first += s.Count
		w, err := startWorker(s)
		if err != nil {
			stopWorkers(ws)
			return nil, err
		}
		ws = append(ws, w)
	}
	for _, w := range ws {
		if _, err := w.await(ctx, "ready", 10*time.Minute); err != nil {
			stopWorkers(ws)
			return nil, fmt.Errorf("%s clients: %w", spec.Kind, err)
		}
	}
	return ws, nil
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

func startWorker(spec workerSpec) (*workerProc, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(self, "bench", "worker")
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	w := &workerProc{cmd: cmd, stdin: stdin, replies: make(chan workerEvent, 16), done: make(chan struct{})}
	go w.read(stdout)
	line, _ := json.Marshal(spec)
	if _, err := stdin.Write(append(line, '\n')); err != nil {
		w.stop()
		return nil, err
	}
	return w, nil
}

func (w *workerProc) read(r io.Reader) {
	defer close(w.done)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for sc.Scan() {
		var e workerEvent
		if json.Unmarshal(sc.Bytes(), &e) != nil {
			continue
		}
		if e.Ev == "tick" {
			w.mu.Lock()
			w.last = e
			w.mu.Unlock()
			continue
		}
		w.replies <- e
	}
	_ = w.cmd.Wait()
}

// await waits for the worker's next reply, which must be of kind ev.
func (w *workerProc) await(ctx context.Context, ev string, d time.Duration) (workerEvent, error) {
	select {
	case e := <-w.replies:
		if e.Ev == "error" {
			return e, fmt.Errorf("worker: %s", e.Msg)
		}
		if e.Ev != ev {
			return e, fmt.Errorf("worker said %q, want %q", e.Ev, ev)
		}
		return e, nil
	case <-w.done:
		return workerEvent{}, fmt.Errorf("worker exited (%v)", w.cmd.ProcessState)
	case <-time.After(d):
		return workerEvent{}, fmt.Errorf("worker: no %q in %v", ev, d)
	case <-ctx.Done():
		return workerEvent{}, ctx.Err()
	}
}

func (w *workerProc) send(cmd string) error {
	_, err := io.WriteString(w.stdin, cmd+"\n")
	return err
}

func (w *workerProc) tick() workerEvent {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.last
}

func (w *workerProc) stop() {
	_ = w.send("quit")
	_ = w.stdin.Close()
	select {
	case <-w.done:
	case <-time.After(10 * time.Second):
		_ = w.cmd.Process.Kill()
		<-w.done
	}
}

func stopWorkers(ws []*workerProc) {
	var wg sync.WaitGroup
	for _, w := range ws {
		wg.Go(w.stop)
	}
	wg.Wait()
}

// group is the workers of one role in a run.
type group []*workerProc

// progress sums the latest ticks: messages in all, the fewest any live
// client has, and the clients that died.
func (g group) progress() (total, least int64, dead int) {
	least = -1
	for _, w := range g {
		e := w.tick()
		total += e.Total
		dead += e.Dead
		if least < 0 || e.Min < least {
			least = e.Min
		}
	}
	return total, max(least, 0), dead
}

// command sends cmd to every worker and gathers their replies.
func (g group) command(ctx context.Context, cmd string) (total int64, dead int, errs int64, h *latencyHist, err error) {
	h = &latencyHist{}
	for _, w := range g {
		if err := w.send(cmd); err != nil {
			return 0, 0, 0, nil, err
		}
	}
	for _, w := range g {
		e, err := w.await(ctx, cmd, time.Minute)
		if err != nil {
			return 0, 0, 0, nil, err
		}
		total += e.Total
		dead += e.Dead
		errs += e.Errors
		h.merge(histFromSparse(e.Hist))
	}
	return total, dead, errs, h, nil
}

func (g group) broadcast(cmd string) {
	for _, w := range g {
		_ = w.send(cmd)
	}
}

// cpu sums the workers' CPU time.
func (g group) cpu() time.Duration {
	var d time.Duration
	for _, w := range g {
		if st, err := readProc(w.cmd.Process.Pid); err == nil {
			d += st.CPU
		}
	}
	return d
}

// --- servers under test ---

// target is one server a load runs against: kedge or a peer.
type target struct {
	name  string
	pid   int
	pprof string // kedge: its profiling endpoint
	ws    string // host:port of kedge's HTTP listener or nats-server's WebSocket
	mqtt  string // host:port
	kafka string // the bootstrap server kedge consumes
	stop  func()
}

// startKedge starts one kedge node on the bench broker, with its profiling
// endpoint on a free loopback port.
func startKedge(ctx context.Context, bootstrap string, sets []string) (*target, error) {
	pprofAddr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	// The node inherits the environment: set the variable for it alone.
	if err := os.Setenv(pprofEnv, pprofAddr); err != nil {
		return nil, err
	}
	nodes, err := startBenchNodes(ctx, 1, bootstrap, append(benchLimits(), sets...))
	_ = os.Unsetenv(pprofEnv)
	if err != nil {
		return nil, err
	}
	n := nodes[0]
	return &target{name: "kedge", pid: n.cmd.Process.Pid, pprof: pprofAddr, ws: n.HTTP, mqtt: n.MQTT,
		kafka: bootstrap, stop: func() { stopBenchNodes(nodes) }}, nil
}

// benchLimits lifts the limits meant for the Internet that a load from one
// address would hit: every bench client connects from 127.0.0.1, and a
// publisher publishes as fast as it can. Only keys this build knows are set.
func benchLimits() []string {
	var sets []string
	names := configs.Names()
	for _, kv := range []string{"limits.max.connections=0", "limits.max.connections.per.ip=0", "limits.publish.rate=0"} {
		key, _, _ := strings.Cut(kv, "=")
		if slices.Contains(names, key) {
			sets = append(sets, kv)
		}
	}
	return sets
}

// freeAddr returns a loopback address with a port free right now.
func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer func() { _ = ln.Close() }()
	return ln.Addr().String(), nil
}

// startPeer runs a peer server (mosquitto or nats-server) from a generated
// configuration file on free loopback ports.
func startPeer(ctx context.Context, name string) (*target, error) {
	dir, err := os.MkdirTemp("", "kedge-bench-"+name)
	if err != nil {
		return nil, err
	}
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	t := &target{name: name}
	var bin, conf string
	var args []string
	switch name {
	case "mosquitto":
		_, port, _ := net.SplitHostPort(addr)
		t.mqtt = addr
		bin = "mosquitto"
		conf = "listener " + port + " 127.0.0.1\nallow_anonymous true\npersistence false\n" +
			"log_dest stderr\nlog_type error\nmax_connections -1\n"
		args = []string{"-c", filepath.Join(dir, "peer.conf")}
	case "nats":
		wsAddr, err := freeAddr()
		if err != nil {
			return nil, err
		}
		t.ws = wsAddr
		bin = "nats-server"
		conf = fmt.Sprintf("listen: %q\nwebsocket {\n  listen: %q\n  no_tls: true\n}\nmax_connections: 100000\n", addr, wsAddr)
		args = []string{"-c", filepath.Join(dir, "peer.conf")}
		addr = wsAddr
	default:
		return nil, fmt.Errorf("unknown peer %q", name)
	}
	path, err := exec.LookPath(bin)
	if err != nil {
		if p := "/usr/sbin/" + bin; fileExists(p) {
			path = p
		} else {
			return nil, fmt.Errorf("peer %s: %s not installed (Debian package %s; make bench-deps)", name, bin, peerPackage(name))
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "peer.conf"), []byte(conf), 0o644); err != nil {
		return nil, err
	}
	cmd := exec.Command(path, args...)
	if name == "mosquitto" { // logs errors only; nats-server logs every start and stop
		cmd.Stderr = os.Stderr
	}
	cmd.Dir = dir
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.pid = cmd.Process.Pid
	t.stop = func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		_ = os.RemoveAll(dir)
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			_ = c.Close()
			return t, nil
		}
		select {
		case <-done:
			t.stop()
			return nil, fmt.Errorf("peer %s exited at start", name)
		case <-ctx.Done():
			t.stop()
			return nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.stop()
			return nil, fmt.Errorf("peer %s not listening on %s in 15s", name, addr)
		}
	}
}

func peerPackage(name string) string {
	if name == "nats" {
		return "nats-server"
	}
	return name
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// usage reads a target's CPU time and resident set.
func (t *target) usage() procStat {
	st, _ := readProc(t.pid)
	return st
}

func (t *target) String() string { return t.name + "[" + strconv.Itoa(t.pid) + "]" }
