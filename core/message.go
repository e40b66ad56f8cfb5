package core

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// Position is where a message sits in Kafka. Offsets of one partition only grow
// within an Epoch; a new Epoch (topic re-created, partition count changed)
// means positions of the old one can no longer be compared.
type Position struct {
	Epoch     uint32
	Partition int32
	Offset    int64
}

// ErrBadPosition is wrapped by ParsePosition for any malformed token.
var ErrBadPosition = errors.New("malformed position token")

// String returns the position token sent to clients: "epoch-partition-offset".
// Clients must treat it as opaque.
func (p Position) String() string {
	b := make([]byte, 0, 32)
	return string(p.AppendTo(b))
}

// AppendTo appends the position token to b without allocating.
func (p Position) AppendTo(b []byte) []byte {
	b = strconv.AppendUint(b, uint64(p.Epoch), 10)
	b = append(b, '-')
	b = strconv.AppendInt(b, int64(p.Partition), 10)
	b = append(b, '-')
	return strconv.AppendInt(b, p.Offset, 10)
}

// ParsePosition parses a token made by Position.String.
func ParsePosition(tok string) (Position, error) {
	e, rest, ok1 := strings.Cut(tok, "-")
	p, o, ok2 := strings.Cut(rest, "-")
	if !ok1 || !ok2 || !canonicalNumber(e) || !canonicalNumber(p) || !canonicalNumber(o) {
		return Position{}, fmt.Errorf("%w %q", ErrBadPosition, tok)
	}
	epoch, err1 := strconv.ParseUint(e, 10, 32)
	part, err2 := strconv.ParseInt(p, 10, 32)
	off, err3 := strconv.ParseInt(o, 10, 64)
	if err := errors.Join(err1, err2, err3); err != nil || part < 0 || off < 0 {
		return Position{}, fmt.Errorf("%w %q", ErrBadPosition, tok)
	}
	return Position{Epoch: uint32(epoch), Partition: int32(part), Offset: off}, nil
}

// canonicalNumber accepts only the digits Position.String writes: no sign,
// no leading zero, so each position has exactly one token.
func canonicalNumber(s string) bool {
	if s == "" || len(s) > 1 && s[0] == '0' {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// Header is one Kafka record header.
type Header struct {
	Key   string
	Value []byte
}

// Message is one Kafka record as kedge serves it. A Message is immutable once
// dispatched and shared by every subscriber and the cache.
type Message struct {
	// Subject is the canonical subject, e.g. "/vehicles/1/speed".
	Subject string
	// Topic is the Kafka topic; Key the record key, meaningful when HasKey.
	Topic  string
	Key    string
	HasKey bool

	Payload []byte
	Headers []Header
	// Time is the Kafka record timestamp.
	Time time.Time
	Pos  Position

	encoded [maxEncodings]atomic.Pointer[[]byte]
}

// Size estimates the memory the message holds, for the cache's memory bound.
func (m *Message) Size() int {
	n := messageOverhead + len(m.Subject) + len(m.Payload)
	for _, h := range m.Headers {
		n += len(h.Key) + len(h.Value) + 40
	}
	return n
}

// messageOverhead approximates the struct itself and its cache bookkeeping.
const messageOverhead = 192

// maxEncodings bounds how many wire encodings one message can carry.
const maxEncodings = 6

// EncodingSlot names one wire encoding of messages (one per protocol frame kind).
type EncodingSlot int32

var nextSlot atomic.Int32

// NewEncodingSlot reserves a slot for a protocol's encoding. Call it once per
// encoding, at package initialisation; it panics past the fixed maximum.
func NewEncodingSlot() EncodingSlot {
	n := nextSlot.Add(1) - 1
	if n >= maxEncodings {
		panic("core: too many encoding slots")
	}
	return EncodingSlot(n)
}

// Encoder turns a message into the bytes of one protocol's frame.
type Encoder interface {
	Encode(m *Message) []byte
}

// Encoded returns the message encoded by enc, encoding it on first use, so
// one message is encoded once per protocol however many subscribers get it.
func (m *Message) Encoded(slot EncodingSlot, enc Encoder) []byte {
	if p := m.encoded[slot].Load(); p != nil {
		return *p
	}
	b := enc.Encode(m)
	if m.encoded[slot].CompareAndSwap(nil, &b) {
		return b
	}
	return *m.encoded[slot].Load()
}
