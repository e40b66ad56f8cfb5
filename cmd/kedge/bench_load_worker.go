package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// A load is spread over worker processes — this binary again, run as the
// hidden `kedge bench worker` — so that no process holds more than about
// 19,000 files and the clients' CPU time is apart from the coordinator's.
// The coordinator writes a workerSpec as the first line of the worker's
// stdin and commands after it; the worker answers with one JSON object per
// line on stdout.

// workerSpec is what one worker runs.
type workerSpec struct {
	// Kind is the client: "ws" (kedge's WebSocket protocol), "sse", "mqtt"
	// (3.1.1, QoS 0), "nats" (NATS over WebSocket), "kafka" (a direct
	// consumer of Subjects[0], a topic); or a publisher: "pub-kafka",
	// "pub-ws", "pub-mqtt", which publish as fast as their window allows.
	Kind string `json:"kind"`
	Addr string `json:"addr"` // host:port
	Path string `json:"path,omitempty"`
	// Subjects in the protocol's own form; client i (counting from First)
	// uses Subjects[i % len(Subjects)].
	Subjects []string      `json:"subjects"`
	First    int           `json:"first"`
	Count    int           `json:"count"`
	Tick     time.Duration `json:"tick"`
	Buffer   int           `json:"buffer"`           // read buffer per client
	Size     int           `json:"size,omitempty"`   // publishers: payload bytes
	Window   int           `json:"window,omitempty"` // publishers: unacknowledged publishes per connection
}

// workerEvent is one line a worker writes.
type workerEvent struct {
	Ev     string      `json:"ev"` // ready, tick, mark, snap, error
	Conns  int         `json:"conns,omitempty"`
	Total  int64       `json:"total"`          // messages received (publishers: acknowledged) since start
	Min    int64       `json:"min"`            // the fewest any live client received
	Dead   int         `json:"dead"`           // clients whose connection ended
	Errors int64       `json:"errors"`         // error replies (publishers) and failed connects
	Hist   [][2]uint64 `json:"hist,omitempty"` // snap: latencies since mark
	Msg    string      `json:"msg,omitempty"`
}

// benchWorker is the worker process's main.
func benchWorker(stdin io.Reader, stdout io.Writer) int {
	in := bufio.NewScanner(stdin)
	in.Buffer(make([]byte, 64<<10), 64<<20) // a spec lists every subject
	if !in.Scan() {
		return 2
	}
	var spec workerSpec
	if err := json.Unmarshal(in.Bytes(), &spec); err != nil {
		fmt.Fprintf(os.Stderr, "bench worker: %v\n", err)
		return 2
	}
	w := &worker{spec: spec, enc: json.NewEncoder(stdout)}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := w.start(ctx); err != nil {
		w.emit(workerEvent{Ev: "error", Msg: err.Error()})
		return 1
	}
	w.emit(workerEvent{Ev: "ready", Conns: len(w.clients)})
	go w.ticker(ctx)
	for in.Scan() {
		switch in.Text() {
		case "mark":
			w.emit(w.mark())
		case "snap":
			w.emit(w.snap())
		case "go":
			close(w.goCh)
		case "quit":
			return 0
		}
	}
	return 0
}

type worker struct {
	spec    workerSpec
	clients []*loadClient
	errors  atomic.Int64
	goCh    chan struct{} // publishers start when it closes

	outMu sync.Mutex
	enc   *json.Encoder
}

// loadClient is one connection's tally.
type loadClient struct {
	mu    sync.Mutex
	count int64
	hist  *latencyHist // allocated on the first timed message
	dead  atomic.Bool
}

func (c *loadClient) got(msg []byte, now int64) {
	ts := stampOf(msg)
	c.mu.Lock()
	c.count++
	if ts > 0 {
		if c.hist == nil {
			c.hist = &latencyHist{}
		}
		c.hist.record(now - ts)
	}
	c.mu.Unlock()
}

func (c *loadClient) acked(n int64) {
	c.mu.Lock()
	c.count += n
	c.mu.Unlock()
}

func (w *worker) emit(e workerEvent) {
	w.outMu.Lock()
	defer w.outMu.Unlock()
	_ = w.enc.Encode(e)
}

func (w *worker) totals() workerEvent {
	e := workerEvent{Min: -1, Errors: w.errors.Load()}
	for _, c := range w.clients {
		c.mu.Lock()
		n := c.count
		c.mu.Unlock()
		e.Total += n
		if c.dead.Load() {
			e.Dead++
			continue
		}
		if e.Min < 0 || n < e.Min {
			e.Min = n
		}
	}
	e.Min = max(e.Min, 0)
	return e
}

func (w *worker) ticker(ctx context.Context) {
	t := time.NewTicker(w.spec.Tick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			e := w.totals()
			e.Ev = "tick"
			w.emit(e)
		}
	}
}

// mark starts a measurement: the latencies recorded so far are dropped.
func (w *worker) mark() workerEvent {
	for _, c := range w.clients {
		c.mu.Lock()
		if c.hist != nil {
			*c.hist = latencyHist{}
		}
		c.mu.Unlock()
	}
	e := w.totals()
	e.Ev = "mark"
	return e
}

// snap ends a measurement with the latencies recorded since mark.
func (w *worker) snap() workerEvent {
	var h latencyHist
	for _, c := range w.clients {
		c.mu.Lock()
		if c.hist != nil {
			h.merge(c.hist)
		}
		c.mu.Unlock()
	}
	e := w.totals()
	e.Ev, e.Hist = "snap", h.sparse()
	return e
}

// start connects every client (64 at a time), each subscribed (or, for
// publishers, ready) before it returns.
func (w *worker) start(ctx context.Context) error {
	s := w.spec
	if s.Tick <= 0 {
		s.Tick = 50 * time.Millisecond
	}
	if s.Buffer <= 0 {
		s.Buffer = 32 << 10
	}
	w.spec = s
	w.goCh = make(chan struct{})
	run, ok := clientKinds[s.Kind]
	if !ok {
		return fmt.Errorf("unknown client kind %q", s.Kind)
	}
	w.clients = make([]*loadClient, s.Count)
	sem := make(chan struct{}, 64)
	errs := make(chan error, s.Count)
	var ready sync.WaitGroup
	for i := range s.Count {
		c := &loadClient{}
		w.clients[i] = c
		ready.Add(1)
		sem <- struct{}{}
		go func() {
			var once sync.Once
			up := func() { once.Do(func() { <-sem; ready.Done() }) }
			err := w.retry(ctx, func() error { return run(ctx, w, s.First+i, c, up) })
			c.dead.Store(true)
			if err != nil && ctx.Err() == nil {
				errs <- fmt.Errorf("client %d: %w", s.First+i, err)
			}
			up()
		}()
	}
	ready.Wait()
	select {
	case err := <-errs:
		if n := w.totals().Dead; n > 0 {
			return fmt.Errorf("%d of %d clients failed; first: %w", n, s.Count, err)
		}
		go func() { // a client that ended after its start: the tally counts it dead
			for range errs {
			}
		}()
		errs <- err
	default:
	}
	return nil
}

// retry runs a client, starting it again a few times when it fails before
// it got anywhere (a loopback connect refused under a burst of dials).
func (w *worker) retry(ctx context.Context, f func() error) error {
	var err error
	for attempt := range 5 {
		if err = f(); !errors.Is(err, errConnect) || ctx.Err() != nil {
			return err
		}
		w.errors.Add(1)
		time.Sleep(time.Duration(attempt+1) * 100 * time.Millisecond)
	}
	return err
}

// errConnect wraps failures before a client was subscribed.
var errConnect = errors.New("connect")

func connectErr(err error) error { return fmt.Errorf("%w: %w", errConnect, err) }

// clientRun runs client i until its connection ends; it calls up once
// subscribed.
type clientRun func(ctx context.Context, w *worker, i int, c *loadClient, up func()) error

var clientKinds = map[string]clientRun{
	"ws": runWSClient, "sse": runSSEClient, "mqtt": runMQTTClient, "nats": runNATSClient, "kafka": runKafkaClient,
	"pub-ws": runWSPublisher, "pub-mqtt": runMQTTPublisher, "pub-kafka": runKafkaPublisher,
}

func (w *worker) subject(i int) string { return w.spec.Subjects[i%len(w.spec.Subjects)] }

// closeOnDone closes nc when ctx ends, to stop a blocked read.
func closeOnDone(ctx context.Context, nc net.Conn) func() bool {
	return context.AfterFunc(ctx, func() { _ = nc.Close() })
}

func runWSClient(ctx context.Context, w *worker, i int, c *loadClient, up func()) error {
	nc, left, err := wsDial(w.spec.Addr, w.spec.Path, 30*time.Second, "")
	if err != nil {
		return connectErr(err)
	}
	defer func() { _ = nc.Close() }()
	defer closeOnDone(ctx, nc)()
	if _, err := nc.Write(appendClientFrame(nil, wsText, kedgeSubscribe(w.subject(i)))); err != nil {
		return connectErr(err)
	}
	fr := newFrameReader(nc, left, w.spec.Buffer)
	subscribed := false
	var wmu sync.Mutex
	for {
		op, p, err := fr.next()
		if err != nil {
			if !subscribed {
				return connectErr(err)
			}
			return err
		}
		switch op {
		case wsText:
			switch {
			case bytes.HasPrefix(p, kedgeMessage):
				c.got(p, fr.at)
			case bytes.HasPrefix(p, kedgeAck):
				subscribed = true
				up()
			case bytes.HasPrefix(p, kedgeError):
				return fmt.Errorf("kedge: %s", p)
			}
		case wsPing:
			wmu.Lock()
			_, err = nc.Write(appendClientFrame(nil, wsPong, p))
			wmu.Unlock()
			if err != nil {
				return err
			}
		case wsClose:
			return fmt.Errorf("closed by the server: %q", p)
		}
	}
}

func runNATSClient(ctx context.Context, w *worker, i int, c *loadClient, up func()) error {
	nc, left, err := wsDial(w.spec.Addr, "/", 30*time.Second, "")
	if err != nil {
		return connectErr(err)
	}
	defer func() { _ = nc.Close() }()
	defer closeOnDone(ctx, nc)()
	hello := "CONNECT {\"verbose\":false,\"pedantic\":false,\"protocol\":1,\"echo\":false}\r\nSUB " +
		w.subject(i) + " 1\r\nPING\r\n"
	if _, err := nc.Write(appendClientFrame(nil, wsBinary, []byte(hello))); err != nil {
		return connectErr(err)
	}
	var np natsParser
	subscribed := false
	var werr error
	pong := appendClientFrame(nil, wsBinary, []byte("PONG\r\n"))
	onPing := func() { _, werr = nc.Write(pong) }
	fr := newFrameReader(nc, left, w.spec.Buffer)
	onMsg := func(p []byte) { c.got(p, fr.at) }
	for {
		op, p, err := fr.next()
		if err != nil {
			if !subscribed {
				return connectErr(err)
			}
			return err
		}
		switch op {
		case wsText, wsBinary, 0:
			if !subscribed && bytes.Contains(p, []byte("PONG\r\n")) {
				subscribed = true // the server has handled SUB before answering the PING
				up()
				continue
			}
			if err := np.feed(p, onMsg, onPing); err != nil {
				return err
			}
			if werr != nil {
				return werr
			}
		case wsPing:
			if _, err := nc.Write(appendClientFrame(nil, wsPong, p)); err != nil {
				return err
			}
		case wsClose:
			return fmt.Errorf("closed by the server: %q", p)
		}
	}
}

func runMQTTClient(ctx context.Context, w *worker, i int, c *loadClient, up func()) error {
	nc, err := net.DialTimeout("tcp", w.spec.Addr, 30*time.Second)
	if err != nil {
		return connectErr(err)
	}
	defer func() { _ = nc.Close() }()
	defer closeOnDone(ctx, nc)()
	hello := append(mqttConnectPacket(fmt.Sprintf("bench-%d-%d", os.Getpid(), i), 0), mqttSubscribePacket(1, w.subject(i), 0)...)
	if _, err := nc.Write(hello); err != nil {
		return connectErr(err)
	}
	pr := newPacketReader(nc, w.spec.Buffer)
	subscribed := false
	for {
		first, body, err := pr.next()
		if err != nil {
			if !subscribed {
				return connectErr(err)
			}
			return err
		}
		switch first >> 4 {
		case mqttPublish:
			c.got(body, pr.at)
		case mqttConnack:
			if len(body) < 2 || body[1] != 0 {
				return connectErr(fmt.Errorf("CONNACK refused: % x", body))
			}
		case mqttSuback:
			if len(body) < 3 || body[2] > 2 {
				return connectErr(fmt.Errorf("SUBACK refused: % x", body))
			}
			subscribed = true
			up()
		case mqttDisconnect:
			return fmt.Errorf("DISCONNECT from the server: % x", body)
		}
	}
}

func runSSEClient(ctx context.Context, w *worker, i int, c *loadClient, up func()) error {
	path := w.spec.Path + "?subject=" + url.QueryEscape(w.subject(i))
	nc, br, err := sseDial(w.spec.Addr, path, 30*time.Second)
	if err != nil {
		return connectErr(err)
	}
	defer func() { _ = nc.Close() }()
	defer closeOnDone(ctx, nc)()
	subscribed, message := false, false
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			if !subscribed {
				return connectErr(err)
			}
			return err
		}
		switch {
		case bytes.HasPrefix(line, []byte("event: ")):
			ev := bytes.TrimSpace(line[len("event: "):])
			message = bytes.Equal(ev, []byte("message"))
			if bytes.Equal(ev, []byte("ready")) && !subscribed {
				subscribed = true
				up()
			}
			if bytes.Equal(ev, []byte("error")) {
				return errors.New("error event from the server")
			}
		case bytes.HasPrefix(line, []byte("data: ")) && message:
			c.got(line, time.Now().UnixNano())
		case len(line) <= 2: // the blank line ending an event
			message = false
		}
	}
}

func runKafkaClient(ctx context.Context, w *worker, _ int, c *loadClient, up func()) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(w.spec.Addr), kgo.ConsumeTopics(w.spec.Subjects[0]),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtEnd()))
	if err != nil {
		return err
	}
	defer cl.Close()
	// The coordinator warms up until every client got a message, so a
	// record produced before the end offset was listed does not count.
	up()
	for ctx.Err() == nil {
		fs := cl.PollFetches(ctx)
		now := time.Now().UnixNano()
		fs.EachRecord(func(r *kgo.Record) { c.got(r.Value, now) })
	}
	return nil
}

func runKafkaPublisher(ctx context.Context, w *worker, i int, c *loadClient, up func()) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(w.spec.Addr), kgo.RequiredAcks(kgo.AllISRAcks()))
	if err != nil {
		return err
	}
	defer cl.Close()
	topic := w.spec.Subjects[0]
	if err := cl.ProduceSync(ctx, &kgo.Record{Topic: topic, Value: []byte("warm-up")}).FirstErr(); err != nil {
		return connectErr(err)
	}
	up()
	<-w.goCh
	keys := w.spec.Subjects[1:]
	for n := 0; ctx.Err() == nil; n++ {
		r := &kgo.Record{Topic: topic, Key: []byte(keys[n%len(keys)]), Value: appendPayload(nil, w.spec.Size, time.Now())}
		cl.Produce(ctx, r, func(_ *kgo.Record, err error) {
			if err != nil {
				w.errors.Add(1)
				return
			}
			c.acked(1)
		})
	}
	return nil
}

func runWSPublisher(ctx context.Context, w *worker, i int, c *loadClient, up func()) error {
	nc, left, err := wsDial(w.spec.Addr, w.spec.Path, 30*time.Second, "")
	if err != nil {
		return connectErr(err)
	}
	defer func() { _ = nc.Close() }()
	defer closeOnDone(ctx, nc)()
	up()
	<-w.goCh
	fr := newFrameReader(nc, left, w.spec.Buffer)
	subject := w.subject(i)
	var id int64
	var buf, req []byte
	inflight := 0
	for ctx.Err() == nil {
		if inflight <= w.spec.Window/2 {
			buf = buf[:0]
			for ; inflight < w.spec.Window; inflight++ {
				id++
				req = appendKedgePublish(req[:0], id, subject, appendPayload(nil, w.spec.Size, time.Now()))
				buf = appendClientFrame(buf, wsText, req)
			}
			if _, err := nc.Write(buf); err != nil {
				return err
			}
		}
		op, p, err := fr.next()
		if err != nil {
			return err
		}
		if op != wsText {
			continue
		}
		switch {
		case bytes.HasPrefix(p, kedgeAck):
			inflight--
			c.acked(1)
		case bytes.HasPrefix(p, kedgeError):
			inflight--
			w.errors.Add(1)
		}
	}
	return nil
}

func runMQTTPublisher(ctx context.Context, w *worker, i int, c *loadClient, up func()) error {
	nc, err := net.DialTimeout("tcp", w.spec.Addr, 30*time.Second)
	if err != nil {
		return connectErr(err)
	}
	defer func() { _ = nc.Close() }()
	defer closeOnDone(ctx, nc)()
	if _, err := nc.Write(mqttConnectPacket(fmt.Sprintf("benchpub-%d-%d", os.Getpid(), i), 0)); err != nil {
		return connectErr(err)
	}
	pr := newPacketReader(nc, w.spec.Buffer)
	if first, body, err := pr.next(); err != nil || first>>4 != mqttConnack || len(body) < 2 || body[1] != 0 {
		return connectErr(fmt.Errorf("no CONNACK: %v % x", err, body))
	}
	up()
	<-w.goCh
	topic := w.subject(i)
	var id uint16
	var buf []byte
	inflight := 0
	for ctx.Err() == nil {
		if inflight <= w.spec.Window/2 {
			buf = buf[:0]
			for ; inflight < w.spec.Window; inflight++ {
				if id++; id == 0 {
					id = 1
				}
				buf = appendMQTTPublish(buf, topic, appendPayload(nil, w.spec.Size, time.Now()), 1, id)
			}
			if _, err := nc.Write(buf); err != nil {
				return err
			}
		}
		first, body, err := pr.next()
		if err != nil {
			return err
		}
		if first>>4 == mqttPuback {
			inflight--
			if len(body) >= 3 && body[2] >= 0x80 {
				w.errors.Add(1)
			} else {
				c.acked(1)
			}
		}
	}
	return nil
}
