package ws

import "github.com/kedgehq/kedge/core"

// deliverChunk bounds the frames DeliverBatch gathers on its stack before
// queuing them.
const deliverChunk = 64

// DeliverBatch implements core.BatchSubscriber: the shared frames of a
// Kafka batch's messages are queued under one lock, waking the writer once,
// instead of once per message. A frame that does not fit the queue is
// handled as Deliver handles it: dropped (standard) or a slow-consumer
// disconnect (guaranteed).
func (c *conn) DeliverBatch(sub *core.Subscription, msgs []*core.Message) {
	var buf [deliverChunk][]byte
	for len(msgs) > 0 {
		frames := buf[:0]
		for _, m := range msgs[:min(len(msgs), deliverChunk)] {
			frames = append(frames, m.Encoded(slot, encoder))
		}
		msgs = msgs[len(frames):]
		for len(frames) > 0 {
			n := c.out.pushMany(frames)
			c.srv.stats.delivered.Add(int64(n))
			if n == len(frames) {
				break
			}
			if sub.Mode != core.Standard {
				c.srv.stats.slow.Add(1)
				c.Close(core.DisconnectSlow)
				return
			}
			c.srv.stats.dropped.Add(1) // the frame that did not fit; the next may
			frames = frames[n+1:]
		}
	}
}

// pushMany queues frames in order under one lock, as push would one by one
// with bounded set, and returns how many it queued: fewer than len(frames)
// when the next one would take the queue past its limit (a frame larger
// than the whole limit still goes into an empty queue).
func (w *writer) pushMany(frames [][]byte) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return len(frames)
	}
	n := 0
	for _, f := range frames {
		if w.bytes+len(f) > w.limit && w.bytes > 0 {
			break
		}
		w.bytes += len(f)
		if w.holding {
			w.held = append(w.held, f)
		} else {
			w.queue = append(w.queue, f)
		}
		n++
	}
	if n > 0 && !w.holding {
		w.start()
	}
	return n
}
