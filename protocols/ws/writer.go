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
	bytes   int // queued and being written
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
	if bounded && w.bytes+len(f) > w.limit {
		return false
	}
	w.queue = append(w.queue, f)
	w.bytes += len(f)
	w.start()
	return true
}

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

// discard drops what is queued, for a slow consumer whose backlog is moot.
func (w *writer) discard() {
	w.mu.Lock()
	for i := range w.queue {
		w.bytes -= len(w.queue[i])
		w.queue[i] = nil
	}
	w.queue = w.queue[:0]
	w.mu.Unlock()
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
				w.nc.Close()
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
			w.nc.Close()
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
	bufs := net.Buffers(batch)
	_, err := bufs.WriteTo(w.nc)
	return n, err
}

// queued returns the bytes queued or being written.
func (w *writer) queued() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.bytes
}
