package mqtt

import (
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
)

// netConn is the net.Conn mochi reads a client from and writes its own
// packets to (CONNACK, SUBACK, PINGRESP, …), and the one kedge writes
// deliveries and acks to in batches. Every write, mochi's or kedge's, is
// one call under wmu with its own write deadline, so packets never
// interleave on the wire. Deadlines set by mochi (keepalive) apply to
// reads only.
//
// For MQTT over WebSocket, raw is the hijacked connection and ws reads
// binary messages; writes are complete server frames built here (one frame
// per batch), so gorilla never writes except for a protocol error.
type netConn struct {
	raw     net.Conn
	tcp     bool            // raw is a *net.TCPConn: batches go out with writev
	ws      *websocket.Conn // MQTT over WebSocket
	rd      io.Reader       // the WebSocket message being read
	timeout time.Duration
	conn    *conn
	header  *upgradeAuth // MQTT over WebSocket: the upgrade request's credentials

	readLimit atomic.Int64 // unix nanoseconds: reads end by then (writeFailed); 0: none

	wmu  sync.Mutex
	iov  [][]byte // kept for its capacity; guarded by wmu
	flat []byte   // batches of non-TCP connections are copied here
}

func newNetConn(raw net.Conn, timeout time.Duration) *netConn {
	_, tcp := raw.(*net.TCPConn)
	return &netConn{raw: raw, tcp: tcp, timeout: timeout}
}

// errTextFrame ends a WebSocket connection that sent a text frame.
var errTextFrame = errors.New("MQTT over WebSocket needs binary frames")

// Read reads the byte stream of MQTT packets.
func (c *netConn) Read(p []byte) (int, error) {
	if c.ws == nil {
		return c.raw.Read(p)
	}
	for {
		if c.rd == nil {
			typ, r, err := c.ws.NextReader()
			if err != nil {
				return 0, err
			}
			if typ != websocket.BinaryMessage {
				return 0, errTextFrame
			}
			c.rd = r
		}
		n, err := c.rd.Read(p)
		if errors.Is(err, io.EOF) {
			c.rd = nil
			err = nil
		}
		if n > 0 || err != nil {
			return n, err
		}
	}
}

// Write writes one packet (mochi writes each packet with one call). When
// the client is gone (a write failed, not for a timeout), it reports
// success: mochi ends its read loop on a failed write of its own (a
// PINGRESP, a SUBACK), which would discard what the client sent before it
// left (see writeFailed); the read loop ends at the connection's end
// instead.
func (c *netConn) Write(p []byte) (int, error) {
	if err := c.writeBatch([][]byte{p}); err != nil {
		c.writeFailed(err)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return 0, err
		}
		return len(p), nil
	}
	return len(p), nil
}

// writeBatch writes packets with one system call where it can: writev on
// TCP, one copy and one write otherwise (TLS would make a record of each
// part). Over WebSocket the batch is one binary frame.
func (c *netConn) writeBatch(bufs [][]byte) error {
	var hdr [10]byte
	var frame []byte
	if c.ws != nil {
		n := 0
		for _, b := range bufs {
			n += len(b)
		}
		frame = wsFrameHeader(hdr[:0], 0x2, n)
	}
	return c.write(frame, bufs)
}

// writeControl writes a WebSocket control frame.
func (c *netConn) writeControl(op byte, payload []byte) error {
	var hdr [10]byte
	return c.write(wsFrameHeader(hdr[:0], op, len(payload)), [][]byte{payload})
}

func (c *netConn) write(first []byte, bufs [][]byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if err := c.raw.SetWriteDeadline(time.Now().Add(c.timeout)); err != nil {
		return err
	}
	if c.tcp {
		c.iov = c.iov[:0]
		if len(first) > 0 {
			c.iov = append(c.iov, first)
		}
		c.iov = append(c.iov, bufs...)
		nb := net.Buffers(c.iov) // WriteTo consumes nb, not c.iov
		_, err := nb.WriteTo(c.raw)
		clear(c.iov)
		return err
	}
	c.flat = append(c.flat[:0], first...)
	for _, b := range bufs {
		c.flat = append(c.flat, b...)
	}
	_, err := c.raw.Write(c.flat)
	if cap(c.flat) > 64<<10 {
		c.flat = nil // do not keep a large buffer for an idle client
	}
	return err
}

// wsFrameHeader appends an unmasked, final WebSocket frame header.
func wsFrameHeader(b []byte, op byte, n int) []byte {
	b = append(b, 0x80|op)
	switch {
	case n < 126:
		return append(b, byte(n))
	case n <= 0xFFFF:
		return binary.BigEndian.AppendUint16(append(b, 126), uint16(n))
	}
	return binary.BigEndian.AppendUint64(append(b, 127), uint64(n))
}

// Close closes the connection.
func (c *netConn) Close() error { return c.raw.Close() }

// brokenReadGrace bounds how long the read loop may go on reading a
// connection whose writes failed.
const brokenReadGrace = time.Second

// writeFailed ends the connection after a failed write. A write that timed
// out leaves a client that does not read: the connection is closed. Any
// other failure means the client is gone (it reset or closed the
// connection); what it sent before — acknowledgements, its DISCONNECT —
// may still wait in the socket, and closing now would discard it: a
// delivery it acknowledged would be sent again, and a client that said
// DISCONNECT would have its will published. So the read loop reads on to
// the connection's end, within brokenReadGrace.
func (c *netConn) writeFailed(err error) {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		_ = c.raw.Close()
		return
	}
	limit := time.Now().Add(brokenReadGrace)
	c.readLimit.Store(limit.UnixNano())
	if c.raw.SetReadDeadline(limit) != nil {
		_ = c.raw.Close()
	}
}

// clampRead keeps a read deadline within the grace of a broken connection.
func (c *netConn) clampRead(t time.Time) time.Time {
	if n := c.readLimit.Load(); n != 0 && (t.IsZero() || t.UnixNano() > n) {
		return time.Unix(0, n)
	}
	return t
}

// LocalAddr returns the local address.
func (c *netConn) LocalAddr() net.Addr { return c.raw.LocalAddr() }

// RemoteAddr returns the client's address.
func (c *netConn) RemoteAddr() net.Addr { return c.raw.RemoteAddr() }

// SetDeadline sets the read deadline only: mochi uses it for keepalive,
// and every write sets its own deadline.
func (c *netConn) SetDeadline(t time.Time) error { return c.raw.SetReadDeadline(c.clampRead(t)) }

// SetReadDeadline sets the read deadline.
func (c *netConn) SetReadDeadline(t time.Time) error { return c.raw.SetReadDeadline(c.clampRead(t)) }

// SetWriteDeadline does nothing: every write sets its own deadline.
func (c *netConn) SetWriteDeadline(time.Time) error { return nil }
