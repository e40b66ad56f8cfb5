package main

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// loadPublisher is the coordinator's publisher in a fan-out: add buffers one
// message, flush sends what is buffered (one write where it can).
type loadPublisher interface {
	add(subject int, payload []byte)
	flush() error
	errors() int64
	close()
}

// subjectNames are a run's subjects in one protocol's form.
func subjectNames(style, topic string, n int) []string {
	out := make([]string, n)
	for i := range out {
		switch style {
		case "kedge": // WebSocket and SSE subjects
			out[i] = "/" + topic + "/s" + strconv.Itoa(i)
		case "mqtt":
			out[i] = topic + "/s" + strconv.Itoa(i)
		case "nats":
			out[i] = topic + ".s" + strconv.Itoa(i)
		case "kafka": // keys
			out[i] = "s" + strconv.Itoa(i)
		}
	}
	return out
}

// kafkaPub produces straight to the broker with franz-go (acks=all,
// idempotent: kedge's own producer settings).
type kafkaPub struct {
	cl    *kgo.Client
	topic string
	keys  [][]byte
	errs  atomic.Int64
}

func newKafkaPub(bootstrap, topic string, subjects int) (*kafkaPub, error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(bootstrap), kgo.RequiredAcks(kgo.AllISRAcks()))
	if err != nil {
		return nil, err
	}
	p := &kafkaPub{cl: cl, topic: topic}
	for _, k := range subjectNames("kafka", topic, subjects) {
		p.keys = append(p.keys, []byte(k))
	}
	return p, nil
}

func (p *kafkaPub) add(subject int, payload []byte) {
	r := &kgo.Record{Topic: p.topic, Key: p.keys[subject], Value: append([]byte(nil), payload...)}
	p.cl.Produce(context.Background(), r, func(_ *kgo.Record, err error) {
		if err != nil {
			p.errs.Add(1)
		}
	})
}

func (p *kafkaPub) flush() error  { return nil }
func (p *kafkaPub) errors() int64 { return p.errs.Load() }
func (p *kafkaPub) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = p.cl.Flush(ctx)
	p.cl.Close()
}

// streamPub is a publisher on one connection (kedge WebSocket, MQTT QoS 0,
// NATS over WebSocket): add appends the protocol's publish to a buffer, and
// a reader goroutine takes the server's answers.
type streamPub struct {
	nc       net.Conn
	subjects []string
	encode   func(b []byte, subject string, payload []byte) []byte
	wmu      sync.Mutex
	buf      []byte
	errs     atomic.Int64
	done     chan struct{}
}

func (p *streamPub) add(subject int, payload []byte) {
	p.wmu.Lock()
	p.buf = p.encode(p.buf, p.subjects[subject], payload)
	p.wmu.Unlock()
}

func (p *streamPub) flush() error {
	p.wmu.Lock()
	defer p.wmu.Unlock()
	if len(p.buf) == 0 {
		return nil
	}
	_, err := p.nc.Write(p.buf)
	p.buf = p.buf[:0]
	return err
}

// write sends b at once (a pong), in order with the publishes.
func (p *streamPub) write(b []byte) {
	p.wmu.Lock()
	defer p.wmu.Unlock()
	_, _ = p.nc.Write(b)
}

func (p *streamPub) errors() int64 { return p.errs.Load() }
func (p *streamPub) close() {
	_ = p.nc.Close()
	<-p.done
}

func newKedgeWSPub(addr, topic string, subjects int) (*streamPub, error) {
	nc, left, err := wsDial(addr, "/v1/ws", 10*time.Second, "")
	if err != nil {
		return nil, err
	}
	var id int64
	var req []byte
	p := &streamPub{nc: nc, subjects: subjectNames("kedge", topic, subjects), done: make(chan struct{}),
		encode: func(b []byte, subject string, payload []byte) []byte {
			id++
			req = appendKedgePublish(req[:0], id, subject, payload)
			return appendClientFrame(b, wsText, req)
		}}
	go func() {
		defer close(p.done)
		fr := newFrameReader(nc, left, 64<<10)
		for {
			op, f, err := fr.next()
			if err != nil {
				return
			}
			switch {
			case op == wsPing:
				p.write(appendClientFrame(nil, wsPong, f))
			case op == wsText && len(f) > 12 && string(f[:12]) == `{"op":"error`:
				p.errs.Add(1)
			}
		}
	}()
	return p, nil
}

func newMQTTPub(addr, topic string, subjects int) (*streamPub, error) {
	nc, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return nil, err
	}
	if _, err := nc.Write(mqttConnectPacket("bench-publisher-"+strconv.FormatInt(time.Now().UnixNano(), 36), 0)); err != nil {
		_ = nc.Close()
		return nil, err
	}
	pr := newPacketReader(nc, 4096)
	_ = nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	if first, body, err := pr.next(); err != nil || first>>4 != mqttConnack || len(body) < 2 || body[1] != 0 {
		_ = nc.Close()
		return nil, fmt.Errorf("mqtt publisher: no CONNACK (%v)", err)
	}
	_ = nc.SetReadDeadline(time.Time{})
	p := &streamPub{nc: nc, subjects: subjectNames("mqtt", topic, subjects), done: make(chan struct{}),
		encode: func(b []byte, subject string, payload []byte) []byte {
			return appendMQTTPublish(b, subject, payload, 0, 0)
		}}
	go func() {
		defer close(p.done)
		for {
			first, _, err := pr.next()
			if err != nil {
				return
			}
			if first>>4 == mqttDisconnect {
				p.errs.Add(1)
			}
		}
	}()
	return p, nil
}

func newNATSPub(addr, topic string, subjects int) (*streamPub, error) {
	nc, left, err := wsDial(addr, "/", 10*time.Second, "")
	if err != nil {
		return nil, err
	}
	hello := "CONNECT {\"verbose\":false,\"pedantic\":false,\"protocol\":1}\r\n"
	if _, err := nc.Write(appendClientFrame(nil, wsBinary, []byte(hello))); err != nil {
		_ = nc.Close()
		return nil, err
	}
	var msg []byte
	p := &streamPub{nc: nc, subjects: subjectNames("nats", topic, subjects), done: make(chan struct{}),
		encode: func(b []byte, subject string, payload []byte) []byte {
			msg = append(msg[:0], "PUB "...)
			msg = append(msg, subject...)
			msg = append(msg, ' ')
			msg = strconv.AppendInt(msg, int64(len(payload)), 10)
			msg = append(msg, "\r\n"...)
			msg = append(msg, payload...)
			msg = append(msg, "\r\n"...)
			return appendClientFrame(b, wsBinary, msg)
		}}
	go func() {
		defer close(p.done)
		fr := newFrameReader(nc, left, 64<<10)
		var np natsParser
		pong := appendClientFrame(nil, wsBinary, []byte("PONG\r\n"))
		for {
			op, f, err := fr.next()
			if err != nil {
				return
			}
			if op == wsPing {
				p.write(appendClientFrame(nil, wsPong, f))
				continue
			}
			if err := np.feed(f, func([]byte) {}, func() { p.write(pong) }); err != nil {
				p.errs.Add(1)
			}
		}
	}()
	return p, nil
}
