package sse

import (
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"slices"

	"github.com/kedgehq/kedge/core"
)

// The event id: one token that says how far the client has read every
// subscription of its connection, so that the Last-Event-ID an EventSource
// sends on reconnect resumes all of them. See docs/protocol-sse.md.
//
// The token is unpadded base64url of:
//
//	version        1 byte, idVersion
//	fingerprint    4 bytes, big-endian FNV-1a of the subscription names joined by "\n"
//	count          uvarint, the number of subscriptions
//	count entries, in the order of the names:
//	  head         uvarint: partitions<<1 | 1 when an epoch follows
//	  epoch        uvarint, present for the first entry and when it differs from the entry before
//	  per partition, ascending:
//	    partition  uvarint: partition − previous partition − 1 (the first: the partition itself)
//	    offset     zigzag varint: offset − the same partition's offset in the entry before (−1 when absent)
//
// Offsets are relative to the previous entry because the subscriptions of
// one connection usually share a topic and their offsets are close: ten
// keys of one partition take about seventy characters.
const (
	idVersion = 1
	// maxIDLen bounds a Last-Event-ID the server parses, in characters.
	maxIDLen = 16384
	// maxConnectIDLen bounds the id of a new connection, leaving room for
	// the id to grow (a topic's partitions added later).
	maxConnectIDLen = 4096
	// maxIDPartitions bounds the partitions of one parsed entry.
	maxIDPartitions = 10000
)

// partOffset is the last offset a client has of one partition (-1: none).
type partOffset struct {
	partition int32
	offset    int64
}

// cursor is one subscription's core.Cursor kept as a slice sorted by
// partition, so that encoding an id per event allocates nothing. An empty
// cursor (no partitions) means the topic's partitions were unknown.
type cursor struct {
	epoch uint32
	parts []partOffset
}

// cursorFrom copies a core.Cursor.
func cursorFrom(c core.Cursor) cursor {
	out := cursor{epoch: c.Epoch, parts: make([]partOffset, 0, len(c.Offsets))}
	for p, off := range c.Offsets {
		out.parts = append(out.parts, partOffset{p, off})
	}
	slices.SortFunc(out.parts, func(a, b partOffset) int { return int(a.partition) - int(b.partition) })
	return out
}

// fromStart returns a cursor of c's epoch and partitions that has nothing
// of them (offset -1 each).
func fromStart(c cursor) cursor {
	out := cursor{epoch: c.epoch, parts: make([]partOffset, len(c.parts))}
	for i, p := range c.parts {
		out.parts[i] = partOffset{p.partition, -1}
	}
	return out
}

// core returns the cursor as core.Cursor.
func (c cursor) core() core.Cursor {
	out := core.Cursor{Epoch: c.epoch, Offsets: make(map[int32]int64, len(c.parts))}
	for _, p := range c.parts {
		out.Offsets[p.partition] = p.offset
	}
	return out
}

// advance records that the client now has the message at pos. Like
// core.Cursor.Advance, a position of another epoch starts the cursor anew.
func (c *cursor) advance(pos core.Position) {
	if len(c.parts) == 0 || c.epoch != pos.Epoch {
		c.epoch = pos.Epoch
		c.parts = append(c.parts[:0], partOffset{pos.Partition, pos.Offset})
		return
	}
	i, found := slices.BinarySearchFunc(c.parts, pos.Partition, func(p partOffset, t int32) int {
		return int(p.partition) - int(t)
	})
	switch {
	case !found:
		c.parts = slices.Insert(c.parts, i, partOffset{pos.Partition, pos.Offset})
	case pos.Offset > c.parts[i].offset:
		c.parts[i].offset = pos.Offset
	}
}

// has reports whether the cursor covers pos: same epoch, and an offset at
// or beyond pos's on its partition.
func (c *cursor) has(pos core.Position) bool {
	if len(c.parts) == 0 || c.epoch != pos.Epoch {
		return false
	}
	i, found := slices.BinarySearchFunc(c.parts, pos.Partition, func(p partOffset, t int32) int {
		return int(p.partition) - int(t)
	})
	return found && c.parts[i].offset >= pos.Offset
}

// fingerprint identifies the list of subscriptions an id was made for.
func fingerprint(names []string) uint32 {
	h := fnv.New32a()
	for i, n := range names {
		if i > 0 {
			h.Write([]byte{'\n'})
		}
		h.Write([]byte(n))
	}
	return h.Sum32()
}

// appendIDBinary appends the binary form of the id to b.
func appendIDBinary(b []byte, fp uint32, cs []cursor) []byte {
	b = append(b, idVersion)
	b = binary.BigEndian.AppendUint32(b, fp)
	b = binary.AppendUvarint(b, uint64(len(cs)))
	for i := range cs {
		c := &cs[i]
		var prev *cursor
		if i > 0 {
			prev = &cs[i-1]
		}
		newEpoch := prev == nil || prev.epoch != c.epoch
		head := uint64(len(c.parts)) << 1
		if newEpoch {
			head |= 1
		}
		b = binary.AppendUvarint(b, head)
		if newEpoch {
			b = binary.AppendUvarint(b, uint64(c.epoch))
		}
		lastPart := int64(-1)
		j := 0 // walks prev.parts alongside
		for _, p := range c.parts {
			b = binary.AppendUvarint(b, uint64(int64(p.partition)-lastPart-1))
			lastPart = int64(p.partition)
			ref := int64(-1)
			if prev != nil {
				for j < len(prev.parts) && prev.parts[j].partition < p.partition {
					j++
				}
				if j < len(prev.parts) && prev.parts[j].partition == p.partition {
					ref = prev.parts[j].offset
				}
			}
			b = binary.AppendVarint(b, p.offset-ref)
		}
	}
	return b
}

// appendID appends the id token; scratch is reused for the binary form and
// returned for the next call.
func appendID(b, scratch []byte, fp uint32, cs []cursor) (out, scratchOut []byte) {
	scratch = appendIDBinary(scratch[:0], fp, cs)
	return base64.RawURLEncoding.AppendEncode(b, scratch), scratch
}

// formatID returns the id token of the cursors.
func formatID(fp uint32, cs []cursor) string {
	b, _ := appendID(nil, nil, fp, cs)
	return string(b)
}

// parseID parses a Last-Event-ID made for the subscriptions names. Every
// error wraps core.ErrBadPosition.
func parseID(tok string, names []string) ([]cursor, error) {
	if len(tok) > maxIDLen {
		return nil, fmt.Errorf("%w: the id is longer than %d characters", core.ErrBadPosition, maxIDLen)
	}
	b, err := base64.RawURLEncoding.Strict().DecodeString(tok)
	if err != nil {
		return nil, fmt.Errorf("%w: the id is not an id this server sent (not base64url)", core.ErrBadPosition)
	}
	if len(b) < 5 || b[0] != idVersion {
		return nil, fmt.Errorf("%w: the id is not an id this server sent (version)", core.ErrBadPosition)
	}
	if binary.BigEndian.Uint32(b[1:5]) != fingerprint(names) {
		return nil, fmt.Errorf("%w: the id was made for other subjects than this request's", core.ErrBadPosition)
	}
	r := idReader{b: b[5:]}
	n := r.uvarint()
	if r.err == nil && n != uint64(len(names)) {
		return nil, fmt.Errorf("%w: the id holds %d subscriptions, the request has %d", core.ErrBadPosition, n, len(names))
	}
	cs := make([]cursor, 0, len(names))
	for i := 0; i < len(names) && r.err == nil; i++ {
		cs = append(cs, r.entry(cs))
	}
	if r.err == nil && len(r.b) > 0 {
		r.fail("bytes after the last subscription")
	}
	if r.err != nil {
		return nil, r.err
	}
	return cs, nil
}

// idReader decodes the binary id, remembering the first error.
type idReader struct {
	b   []byte
	err error
}

func (r *idReader) fail(what string) {
	if r.err == nil {
		r.err = fmt.Errorf("%w: malformed id: %s", core.ErrBadPosition, what)
	}
}

func (r *idReader) uvarint() uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.fail("truncated or overlong number")
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *idReader) varint() int64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Varint(r.b)
	if n <= 0 {
		r.fail("truncated or overlong number")
		return 0
	}
	r.b = r.b[n:]
	return v
}

// entry decodes one subscription's cursor; before holds the ones decoded.
func (r *idReader) entry(before []cursor) cursor {
	head := r.uvarint()
	nparts := head >> 1
	var prev *cursor
	if len(before) > 0 {
		prev = &before[len(before)-1]
	}
	var c cursor
	switch {
	case head&1 == 1:
		e := r.uvarint()
		if e > 1<<32-1 {
			r.fail("epoch out of range")
		}
		c.epoch = uint32(e)
	case prev == nil:
		r.fail("the first subscription has no epoch")
	default:
		c.epoch = prev.epoch
	}
	if nparts > maxIDPartitions || nparts > uint64(len(r.b)) {
		r.fail("too many partitions")
		return cursor{}
	}
	c.parts = make([]partOffset, 0, nparts)
	lastPart, j := int64(-1), 0
	for range nparts {
		delta := r.uvarint()
		if delta > 1<<31-1 || lastPart+1+int64(delta) > 1<<31-1 {
			r.fail("partition out of range")
			return cursor{}
		}
		part := lastPart + 1 + int64(delta)
		lastPart = part
		ref := int64(-1)
		if prev != nil {
			for j < len(prev.parts) && int64(prev.parts[j].partition) < part {
				j++
			}
			if j < len(prev.parts) && int64(prev.parts[j].partition) == part {
				ref = prev.parts[j].offset
			}
		}
		d := r.varint()
		off := ref + d
		if (d > 0 && off < ref) || (d < 0 && off > ref) || off < -1 {
			r.fail("offset out of range")
		}
		if r.err != nil {
			return cursor{}
		}
		c.parts = append(c.parts, partOffset{int32(part), off})
	}
	return c
}
