package core

import (
	"context"
	"time"
)

// Table is a key-value log that every node reads in full: a compacted
// Kafka topic (kafka.Table implements it). An adapter keeps there what
// must outlive the node that made it — MQTT persistent sessions — so that
// any node can take it over.
//
// Every record carries a Version. A node's view (Get) holds, for each key,
// the record of the highest version it has read, and of equal versions the
// one read last; a record of a lower version than the view's (a write of a
// node that has not yet seen that another took the key over) is ignored.
type Table interface {
	// Put hands records to Kafka, in order and after every earlier Put's,
	// without waiting, and calls done once, with the first error or nil
	// when Kafka acknowledged them all. done must not block.
	Put(recs []TableRecord, done func(error))
	// Get returns the newest record of key this node has read; ok is false
	// when there is none. A tombstone (Value nil) is returned too: the
	// key's end, with its version.
	Get(key string) (rec TableRecord, ok bool)
	// CatchUp returns once this node has read every record written before
	// the call (up to Kafka's end offsets as listed after the call
	// began), or with ctx's error.
	CatchUp(ctx context.Context) error
	// Watch has f called with every record that becomes its key's newest
	// (this node's own writes included), in the order read, after Get
	// shows it and before CatchUp counts it read. Set once, before the
	// table is read; f must not block for long.
	Watch(f func(TableRecord))
}

// TableRecord is one record of a Table.
type TableRecord struct {
	Key     string
	Value   []byte // nil: a tombstone
	Version Version
	// Expires, when set, is when the record stops meaning anything: a
	// node's view may drop it from then on.
	Expires time.Time
}

// Version orders the records of one key: by generation, then by the name
// of the node that wrote it (so that two nodes that took the same key over
// at once end up agreeing which one has it).
type Version struct {
	Gen  uint64
	Node string
}

// Less reports whether v is older than w.
func (v Version) Less(w Version) bool {
	if v.Gen != w.Gen {
		return v.Gen < w.Gen
	}
	return v.Node < w.Node
}
