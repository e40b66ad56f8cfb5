package core

import "time"

// CacheConfig bounds the per-subject cache. The zero value of a field means
// its default.
type CacheConfig struct {
	// Size is how many recent messages each subject keeps (default 1000).
	Size int
	// ExpireTime is how long a message stays cached (default 180s).
	ExpireTime time.Duration
	// MaxMemory bounds the bytes all cached messages hold together (default
	// 256 MiB). Each of the Hub's shards gets an equal part; past it, the
	// shard's oldest messages are evicted first.
	MaxMemory int64
}

func (c CacheConfig) withDefaults() CacheConfig {
	if c.Size <= 0 {
		c.Size = 1000
	}
	if c.ExpireTime <= 0 {
		c.ExpireTime = 180 * time.Second
	}
	if c.MaxMemory <= 0 {
		c.MaxMemory = 256 << 20
	}
	return c
}

// entry is one cached message, linked twice: into its subject's list (oldest
// to newest) and into its shard's arrival list, which drives expiry and the
// memory bound. Both links make every eviction O(1).
type entry struct {
	msg          *Message
	st           *subjectState
	added        int64 // arrival, unix nanoseconds, for expiry
	sPrev, sNext *entry
	fPrev, fNext *entry
}

// subjectState is one subject in a shard: its subscribers and its cache.
type subjectState struct {
	name   string
	topic  string
	key    string
	hasKey bool
	subs   []*Subscription
	// batchIdx is, while a DispatchBatch chunk holds the shard, 1 + the
	// index of the subject's messages in the chunk (0: none yet).
	batchIdx int32

	oldest, newest *entry
	count          int
}

func (st *subjectState) empty() bool { return len(st.subs) == 0 && st.count == 0 }

// latest returns the newest cached message, or nil.
func (st *subjectState) latest() *Message {
	if st.newest == nil {
		return nil
	}
	return st.newest.msg
}

// fifo is a shard's list of cache entries in arrival order.
type fifo struct {
	head, tail *entry
	bytes      int64
}

func (f *fifo) push(e *entry) {
	e.fPrev = f.tail
	if f.tail != nil {
		f.tail.fNext = e
	} else {
		f.head = e
	}
	f.tail = e
	f.bytes += int64(e.msg.Size())
}

func (f *fifo) unlink(e *entry) {
	if e.fPrev != nil {
		e.fPrev.fNext = e.fNext
	} else {
		f.head = e.fNext
	}
	if e.fNext != nil {
		e.fNext.fPrev = e.fPrev
	} else {
		f.tail = e.fPrev
	}
	e.fPrev, e.fNext = nil, nil
	f.bytes -= int64(e.msg.Size())
}

// appendMsg adds msg as the newest of st and links it into the shard fifo.
func (sh *shard) appendMsg(st *subjectState, msg *Message, now int64) {
	// Arrival time keeps the fifo in expiry order; a message read back from
	// Kafka that is older than it looks is hidden by Hub.fresh when served.
	e := &entry{msg: msg, st: st, added: now, sPrev: st.newest}
	if st.newest != nil {
		st.newest.sNext = e
	} else {
		st.oldest = e
	}
	st.newest = e
	st.count++
	sh.fifo.push(e)
	sh.stats.cached++
}

// evict removes e from its subject and the shard, dropping the subject when
// nothing is left in it.
func (sh *shard) evict(e *entry) {
	st := e.st
	if e.sPrev != nil {
		e.sPrev.sNext = e.sNext
	} else {
		st.oldest = e.sNext
	}
	if e.sNext != nil {
		e.sNext.sPrev = e.sPrev
	} else {
		st.newest = e.sPrev
	}
	st.count--
	sh.fifo.unlink(e)
	sh.stats.evicted++
	tp := topicPartition{st.topic, e.msg.Pos.Partition}
	if off, ok := sh.evictedTo[tp]; !ok || e.msg.Pos.Offset > off {
		sh.evictedTo[tp] = e.msg.Pos.Offset
	}
	if st.empty() {
		sh.remove(st)
	}
}

// trim enforces the per-subject size, expiry and the shard's memory share.
func (sh *shard) trim(st *subjectState, cfg *CacheConfig, memShare int64, now int64) {
	for st != nil && st.count > cfg.Size {
		sh.evict(st.oldest)
	}
	sh.expire(cfg, now)
	for sh.fifo.bytes > memShare && sh.fifo.head != nil {
		sh.evict(sh.fifo.head)
	}
}

// expire drops entries older than the expiry time from the front of the fifo.
func (sh *shard) expire(cfg *CacheConfig, now int64) {
	cutoff := now - int64(cfg.ExpireTime)
	for e := sh.fifo.head; e != nil && e.added < cutoff; e = sh.fifo.head {
		sh.evict(e)
	}
}
