package ws

import (
	"net"
	"sync"
	"time"
)

// writer is a connection's outgoing queue, bounded in bytes and drained by at
// most one goroutine at a time, which sends everything queued with one
// writev. The goroutine exists only while there is something to write.
type writer struct {
	nc      net.Conn
	limit   int
	timeout time.Duration
	onError func(error) // called once when a write fails

	mu      sync.Mutex
	queue   [][]byte
	spare   [][]byte
	held    [][]byte    // frames pushed while holding, sent by release
	iov     [][]byte    // the running writer's batch, kept for its capacity
	bufs    net.Buffers // what WriteTo consumes
	bytes   int         // queued, held and being written
	holding bool
	writing bool
	closed  bool // no more frames accepted
	closeNC bool // close nc once the queue is drained
}

// push queues a frame. It returns false, queuing nothing, when bounded is
// set and the frame would take the queue past its limit.
func (w *writer) push(f []byte, bounded bool) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return true
	}
	// One frame larger than the whole limit still goes into an empty queue,
	// or it could never be delivered.
	if bounded && w.bytes+len(f) > w.limit && w.bytes > 0 {
		return false
	}
	w.bytes += len(f)
	if w.holding {
		w.held = append(w.held, f)
		return true
	}
	w.queue = append(w.queue, f)
	w.start()
	return true
}

// hold makes later pushes wait until release, which sends its own frame
// first. A subscribe uses it so that its ack precedes the snapshots and live
// messages of the subscriptions it registers, yet no message can slip
// between the ack and the subscriptions becoming live.
func (w *writer) hold() {
	w.mu.Lock()
	w.holding = true
	w.mu.Unlock()
}

// release queues first and then everything pushed since hold.
func (w *writer) release(first []byte) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.holding = false
	held := w.held
	w.held = nil
	if w.closed {
		return
	}
	w.bytes += len(first)
	w.queue = append(append(w.queue, first), held...)
	w.start()
}

// start runs the writer goroutine unless it is running. Starting it costs
// one small allocation, once per wake-up from idle, not per delivery: a busy
// connection's writer drains many deliveries per wake-up.
func (w *writer) start() {
	if !w.writing {
		w.writing = true
		go w.run()
	}
}

// finish queues a last frame (the close frame), refuses anything after it,
// and closes the connection once it is written.
func (w *writer) finish(last []byte) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return
	}
	w.closed, w.closeNC = true, true
	if last != nil {
		w.queue = append(w.queue, last)
		w.bytes += len(last)
	}
	w.start()
}

func (w *writer) run() {
	for {
		w.mu.Lock()
		if len(w.queue) == 0 {
			w.writing = false
			closeNC := w.closeNC
			w.closeNC = false
			w.mu.Unlock()
			if closeNC {
				_ = w.nc.Close()
			}
			return
		}
		batch := w.queue
		w.queue, w.spare = w.spare[:0], nil
		w.mu.Unlock()

		n, err := w.write(batch)
		clear(batch)

		w.mu.Lock()
		w.bytes -= n
		w.spare = batch[:0]
		if err != nil {
			w.closed, w.closeNC = true, false
			w.bytes = 0
			clear(w.queue)
			w.queue = w.queue[:0]
			w.writing = false
			w.mu.Unlock()
			_ = w.nc.Close()
			w.onError(err)
			return
		}
		w.mu.Unlock()
	}
}

func (w *writer) write(batch [][]byte) (int, error) {
	n := 0
	for _, f := range batch {
		n += len(f)
	}
	if err := w.nc.SetWriteDeadline(time.Now().Add(w.timeout)); err != nil {
		return n, err
	}
	// Only the one running writer uses iov and bufs. WriteTo consumes bufs
	// (its slice header moves to the end), so iov keeps the capacity.
	w.iov = append(w.iov[:0], batch...)
	w.bufs = w.iov
	_, err := w.bufs.WriteTo(w.nc)
	clear(w.iov)
	return n, err
}

// queued returns the bytes queued or being written.
func (w *writer) queued() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.bytes
}
