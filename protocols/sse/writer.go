package sse

import (
	"errors"
	"net/http"
	"sync"
	"time"
)

// writer is a stream's outgoing queue, bounded in bytes and drained by at
// most one goroutine at a time, which writes everything queued and flushes
// once. The goroutine exists only while there is something to write.
//
// Callers lock mu around push, pushID and the cursor updates that go with
// them, so that an event's id always describes exactly the events queued
// before it.
type writer struct {
	w       http.ResponseWriter
	rc      *http.ResponseController
	limit   int
	timeout time.Duration
	onError func(error) // called once when a write fails

	mu      sync.Mutex
	queue   [][]byte
	spare   [][]byte
	arena   []byte // the ids of queued events, appended, reset when idle
	bytes   int    // queued and being written
	writing bool
	closed  bool          // no more events accepted
	done    chan struct{} // closed once closed and nothing is being written
	ended   bool          // done is closed
}

func newWriter(w http.ResponseWriter, limit int, timeout time.Duration, onError func(error)) *writer {
	return &writer{w: w, rc: http.NewResponseController(w), limit: limit, timeout: timeout,
		onError: onError, done: make(chan struct{})}
}

// fits reports whether n more bytes stay within the limit. An event larger
// than the whole limit fits an empty queue, or it could never be sent.
// Callers hold mu.
func (w *writer) fits(n int) bool { return w.bytes+n <= w.limit || w.bytes == 0 }

// push queues data. Callers hold mu and have checked fits (or push
// something small that must go out regardless, such as a final event).
func (w *writer) push(data ...[]byte) {
	if w.closed {
		return
	}
	for _, d := range data {
		w.bytes += len(d)
		w.queue = append(w.queue, d)
	}
	w.start()
}

// putID copies an event's id line into the arena and returns the copy.
// Callers hold mu. The ids of queued events share one array, so queuing an
// event allocates only when the arena fills; old arrays live on while queued
// ids point into them.
func (w *writer) putID(id []byte) []byte {
	if cap(w.arena)-len(w.arena) < len(id) {
		w.arena = make([]byte, 0, max(arenaSize, 2*len(id)))
	}
	start := len(w.arena)
	w.arena = append(w.arena, id...)
	return w.arena[start:len(w.arena):len(w.arena)]
}

// arenaSize is the arena's usual capacity; an idle stream keeps one arena
// at most this large.
const arenaSize = 2048

// start runs the writer goroutine unless it is running. Callers hold mu.
func (w *writer) start() {
	if !w.writing {
		w.writing = true
		go w.run()
	}
}

// finish queues a last event (nil for none), refuses anything after it, and
// closes done once it is written. Callers hold mu.
func (w *writer) finish(last []byte) {
	if w.closed {
		return
	}
	if last != nil {
		w.bytes += len(last)
		w.queue = append(w.queue, last)
	}
	w.closed = true
	if len(w.queue) > 0 {
		w.start()
		return
	}
	if !w.writing {
		w.end()
	}
}

func (w *writer) end() {
	if !w.ended {
		w.ended = true
		close(w.done)
	}
}

// discard drops what is queued, for a slow consumer whose backlog is moot.
// Callers hold mu.
func (w *writer) discard() {
	for i := range w.queue {
		w.bytes -= len(w.queue[i])
		w.queue[i] = nil
	}
	w.queue = w.queue[:0]
}

func (w *writer) run() {
	for {
		w.mu.Lock()
		if len(w.queue) == 0 {
			w.writing = false
			// Nothing queued points into the arena any more.
			if cap(w.arena) > arenaSize {
				w.arena = nil
			} else {
				w.arena = w.arena[:0]
			}
			if w.closed {
				w.end()
			}
			w.mu.Unlock()
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
			w.closed = true
			w.bytes = 0
			clear(w.queue)
			w.queue = w.queue[:0]
			w.writing = false
			w.end()
			w.mu.Unlock()
			w.onError(err)
			return
		}
		w.mu.Unlock()
	}
}

// write sends a batch through the HTTP response: the writes fill the
// response's buffer, which goes out in large chunks, and one flush sends the
// rest.
func (w *writer) write(batch [][]byte) (int, error) {
	n := 0
	for _, b := range batch {
		n += len(b)
	}
	// A ResponseWriter wrapped without Unwrap cannot set deadlines; the
	// stream still works, without the bound.
	if err := w.rc.SetWriteDeadline(time.Now().Add(w.timeout)); err != nil && !errors.Is(err, http.ErrNotSupported) {
		return n, err
	}
	for _, b := range batch {
		if _, err := w.w.Write(b); err != nil {
			return n, err
		}
	}
	return n, w.rc.Flush()
}
