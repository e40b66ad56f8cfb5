package core

import (
	"fmt"
	"maps"
	"slices"
	"strings"
)

// Cursor is how far a client has read one subscription: for each partition
// of the subscription's topic, the offset of the last message it has (or of
// the last one dispatched when it subscribed). Every node reads the same
// Kafka log, so a cursor means the same on every node.
//
// Its token is the comma-joined position tokens of its partitions, all of
// one epoch: "3070022373-0-41,3070022373-1-17"; offset -1 ("…-1--1") means
// nothing of that partition yet. A message's position token
// is therefore a one-partition cursor, which is all an exact keyed subject
// (whose messages live in one partition) ever needs.
type Cursor struct {
	Epoch   uint32
	Offsets map[int32]int64
	// New marks the cursor of a subscription made before its topic existed:
	// everything the topic ever holds comes after it. Its token is "new".
	New bool
}

// NewTopicCursor is the cursor of a subscription whose topic did not exist.
var NewTopicCursor = Cursor{New: true}

// CursorOf returns the one-partition cursor of a position.
func CursorOf(p Position) Cursor {
	return Cursor{Epoch: p.Epoch, Offsets: map[int32]int64{p.Partition: p.Offset}}
}

// String returns the cursor's token, partitions in ascending order.
func (c Cursor) String() string {
	if c.New {
		return "new"
	}
	parts := slices.Sorted(maps.Keys(c.Offsets))
	b := make([]byte, 0, 24*len(parts))
	for i, p := range parts {
		if i > 0 {
			b = append(b, ',')
		}
		b = Position{Epoch: c.Epoch, Partition: p, Offset: c.Offsets[p]}.AppendTo(b)
	}
	return string(b)
}

// FromStart returns the cursor of c's epoch and partitions that has nothing
// of them yet (offset -1 each): the resume point of a subscription made
// before its topic existed, once the topic is known (c its frontier).
func (c Cursor) FromStart() Cursor {
	s := Cursor{Epoch: c.Epoch, Offsets: make(map[int32]int64, len(c.Offsets))}
	for p := range c.Offsets {
		s.Offsets[p] = -1
	}
	return s
}

// Advance records that the client now has m (a later message of its topic).
func (c *Cursor) Advance(p Position) {
	if c.Offsets == nil || c.Epoch != p.Epoch {
		c.Epoch, c.Offsets, c.New = p.Epoch, make(map[int32]int64), false
	}
	if off, ok := c.Offsets[p.Partition]; !ok || p.Offset > off {
		c.Offsets[p.Partition] = p.Offset
	}
}

// maxCursorPartitions bounds a parsed cursor (Kafka topics rarely pass a few
// thousand partitions).
const maxCursorPartitions = 10000

// ParseCursor parses a cursor token: one or more position tokens of one epoch.
func ParseCursor(tok string) (Cursor, error) {
	if tok == "" {
		return Cursor{}, fmt.Errorf("%w: empty cursor", ErrBadPosition)
	}
	if tok == "new" {
		return NewTopicCursor, nil
	}
	n := strings.Count(tok, ",") + 1
	if n > maxCursorPartitions {
		return Cursor{}, fmt.Errorf("%w: more than %d partitions", ErrBadPosition, maxCursorPartitions)
	}
	c := Cursor{Offsets: make(map[int32]int64, n)}
	for i, part := range strings.Split(tok, ",") {
		p, err := parseCursorPart(part)
		if err != nil {
			return Cursor{}, err
		}
		if i > 0 && p.Epoch != c.Epoch {
			return Cursor{}, fmt.Errorf("%w: positions of different epochs in %q", ErrBadPosition, tok)
		}
		if _, dup := c.Offsets[p.Partition]; dup {
			return Cursor{}, fmt.Errorf("%w: partition %d twice in %q", ErrBadPosition, p.Partition, tok)
		}
		c.Epoch = p.Epoch
		c.Offsets[p.Partition] = p.Offset
	}
	return c, nil
}

// parseCursorPart parses one position of a cursor, where offset -1 (nothing
// of that partition yet) is allowed too.
func parseCursorPart(part string) (Position, error) {
	if head, ok := strings.CutSuffix(part, "--1"); ok {
		p, err := ParsePosition(head + "-0")
		p.Offset = -1
		return p, err
	}
	return ParsePosition(part)
}
