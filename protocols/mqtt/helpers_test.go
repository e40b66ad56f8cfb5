package mqtt

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/kedgehq/kedge/auth"
	"github.com/kedgehq/kedge/core"
)

// fakeKafka is the Publisher of the tests: it answers publishes as told
// and, once acknowledged, dispatches them to the Hub as Kafka would.
type fakeKafka struct {
	hub *core.Hub
	mu  sync.Mutex
	log []core.Publication
	// hold keeps the answers until release; fail answers with the error.
	hold    bool
	fail    error
	held    []func()
	offsets map[string]int64
}

func (k *fakeKafka) Publish(_ context.Context, p core.Publication, done func(core.Position, error)) {
	k.mu.Lock()
	k.log = append(k.log, p)
	if k.fail != nil {
		err := k.fail
		k.mu.Unlock()
		done(core.Position{}, err)
		return
	}
	answer := func() {
		k.mu.Lock()
		off := k.offsets[p.Subject.Topic]
		k.offsets[p.Subject.Topic]++
		k.mu.Unlock()
		pos := core.Position{Epoch: 1, Partition: 0, Offset: off}
		done(pos, nil)
		k.hub.Dispatch(&core.Message{Subject: p.Subject.Name, Topic: p.Subject.Topic, Key: p.Subject.Key,
			HasKey: p.Subject.HasKey, Payload: p.Payload, Headers: p.Headers, Time: time.Now(), Pos: pos})
	}
	if k.hold {
		k.held = append(k.held, answer)
		k.mu.Unlock()
		return
	}
	k.mu.Unlock()
	answer()
}

// release answers every held publish, in order.
func (k *fakeKafka) release() {
	k.mu.Lock()
	held := k.held
	k.held, k.hold = nil, false
	k.mu.Unlock()
	for _, f := range held {
		f()
	}
}

func (k *fakeKafka) published() []core.Publication {
	k.mu.Lock()
	defer k.mu.Unlock()
	return append([]core.Publication(nil), k.log...)
}

func (k *fakeKafka) heldCount() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return len(k.held)
}

// dispatch plays a record produced by the outside world.
func (k *fakeKafka) dispatch(subject, payload string, headers ...core.Header) {
	subj, err := core.ParseSubject(subject)
	if err != nil {
		panic(err)
	}
	k.mu.Lock()
	off := k.offsets[subj.Topic]
	k.offsets[subj.Topic]++
	k.mu.Unlock()
	k.hub.Dispatch(&core.Message{Subject: subj.Name, Topic: subj.Topic, Key: subj.Key, HasKey: subj.HasKey,
		Payload: []byte(payload), Headers: headers, Time: time.Now(), Pos: core.Position{Epoch: 1, Offset: off}})
}

// harness is a running Server over a fake Kafka, on a loopback port.
type harness struct {
	t     *testing.T
	srv   *Server
	kafka *fakeKafka
	addr  string
}

func newHarness(t *testing.T, cfg Config, topics ...string) *harness {
	t.Helper()
	return newAuthHarness(t, cfg, nil, topics...)
}

// newAuthHarness is a harness whose node authenticates with a.
func newAuthHarness(t *testing.T, cfg Config, a *auth.Auth, topics ...string) *harness {
	t.Helper()
	exp, err := core.NewExposure(topics, "")
	if err != nil {
		t.Fatal(err)
	}
	return startHarness(t, cfg, &core.Node{Hub: core.NewHub(core.CacheConfig{}), Exposure: exp, Auth: a})
}

// startHarness serves node (its Publisher a fakeKafka on its Hub) with cfg,
// on a random loopback port unless cfg says otherwise, until the test ends.
func startHarness(t *testing.T, cfg Config, node *core.Node) *harness {
	t.Helper()
	k := &fakeKafka{hub: node.Hub, offsets: map[string]int64{}}
	node.Publisher = k
	if cfg.Listen == "" {
		cfg.Listen = "127.0.0.1:0"
	}
	srv, err := NewServer(node, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, srv: srv, kafka: k, addr: srv.Addr().String()}
	t.Cleanup(h.stop)
	return h
}

func (h *harness) stop() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	h.srv.Shutdown(ctx)
}

// client is a raw MQTT client: it writes packets and reads them back with
// mochi's codec, so tests see exactly what is on the wire.
type client struct {
	t  testing.TB
	nc net.Conn
	br *bufio.Reader
	v  byte
}

func dial(t testing.TB, addr string, v byte) *client {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = nc.Close() })
	return &client{t: t, nc: nc, br: bufio.NewReader(nc), v: v}
}

func (c *client) write(pk packets.Packet) {
	c.t.Helper()
	pk.ProtocolVersion = c.v
	var buf bytes.Buffer
	var err error
	switch pk.FixedHeader.Type {
	case packets.Connect:
		err = pk.ConnectEncode(&buf)
	case packets.Publish:
		err = pk.PublishEncode(&buf)
	case packets.Puback:
		err = pk.PubackEncode(&buf)
	case packets.Pubrel:
		err = pk.PubrelEncode(&buf)
	case packets.Subscribe:
		err = pk.SubscribeEncode(&buf)
	case packets.Unsubscribe:
		err = pk.UnsubscribeEncode(&buf)
	case packets.Disconnect:
		err = pk.DisconnectEncode(&buf)
	case packets.Pingreq:
		err = pk.PingreqEncode(&buf)
	default:
		c.t.Fatalf("test client cannot write packet type %d", pk.FixedHeader.Type)
	}
	if err != nil {
		c.t.Fatal(err)
	}
	if _, err := c.nc.Write(buf.Bytes()); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

// next reads a packet, or returns an error (io.EOF when closed).
func (c *client) next(d time.Duration) (packets.Packet, error) {
	_ = c.nc.SetReadDeadline(time.Now().Add(d))
	var pk packets.Packet
	b, err := c.br.ReadByte()
	if err != nil {
		return pk, err
	}
	if err := pk.FixedHeader.Decode(b); err != nil {
		return pk, err
	}
	n, _, err := packets.DecodeLength(c.br)
	if err != nil {
		return pk, err
	}
	pk.FixedHeader.Remaining = n
	body := make([]byte, n)
	if _, err := io.ReadFull(c.br, body); err != nil {
		return pk, err
	}
	pk.ProtocolVersion = c.v
	switch pk.FixedHeader.Type {
	case packets.Connack:
		err = pk.ConnackDecode(body)
	case packets.Publish:
		err = pk.PublishDecode(body)
	case packets.Puback:
		err = pk.PubackDecode(body)
	case packets.Pubrec:
		err = pk.PubrecDecode(body)
	case packets.Pubcomp:
		err = pk.PubcompDecode(body)
	case packets.Suback:
		err = pk.SubackDecode(body)
	case packets.Unsuback:
		err = pk.UnsubackDecode(body)
	case packets.Disconnect:
		err = pk.DisconnectDecode(body)
	case packets.Pingresp:
	default:
		err = fmt.Errorf("unexpected packet type %d", pk.FixedHeader.Type)
	}
	return pk, err
}

// expect reads the next packet and checks its type.
func (c *client) expect(typ byte) packets.Packet {
	c.t.Helper()
	pk, err := c.next(10 * time.Second)
	if err != nil {
		c.t.Fatalf("waiting for packet type %d: %v", typ, err)
	}
	if pk.FixedHeader.Type != typ {
		c.t.Fatalf("got packet type %d (%+v), want %d", pk.FixedHeader.Type, pk, typ)
	}
	return pk
}

// quiet asserts that nothing arrives within d.
func (c *client) quiet(d time.Duration) {
	c.t.Helper()
	pk, err := c.next(d)
	if err == nil {
		c.t.Fatalf("unexpected packet %+v", pk)
	}
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		c.t.Fatalf("connection failed while expecting quiet: %v", err)
	}
}

// closed waits for the server to close the connection and returns the
// packets that came before.
func (c *client) closed(d time.Duration) []packets.Packet {
	c.t.Helper()
	var got []packets.Packet
	deadline := time.Now().Add(d)
	for {
		pk, err := c.next(time.Until(deadline))
		if err == nil {
			got = append(got, pk)
			continue
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			c.t.Fatalf("connection still open after %v (got %d packets)", d, len(got))
		}
		return got
	}
}

type connectOpt func(*packets.Packet)

func (c *client) connect(id string, clean bool, opts ...connectOpt) packets.Packet {
	c.t.Helper()
	pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connect},
		Connect: packets.ConnectParams{ProtocolName: []byte("MQTT"), ClientIdentifier: id, Clean: clean, Keepalive: 60}}
	for _, o := range opts {
		o(&pk)
	}
	c.write(pk)
	return c.expect(packets.Connack)
}

func (c *client) mustConnect(id string, clean bool, opts ...connectOpt) packets.Packet {
	c.t.Helper()
	ack := c.connect(id, clean, opts...)
	if ack.ReasonCode != 0 {
		c.t.Fatalf("CONNACK %#x (%s)", ack.ReasonCode, ack.Properties.ReasonString)
	}
	return ack
}

func withExpiry(seconds uint32) connectOpt {
	return func(pk *packets.Packet) {
		pk.Properties.SessionExpiryInterval, pk.Properties.SessionExpiryIntervalFlag = seconds, true
	}
}

func withPassword(user, password string) connectOpt {
	return func(pk *packets.Packet) {
		pk.Connect.UsernameFlag, pk.Connect.Username = true, []byte(user)
		pk.Connect.PasswordFlag, pk.Connect.Password = true, []byte(password)
	}
}

func withWill(topic, payload string, delay uint32) connectOpt {
	return func(pk *packets.Packet) {
		pk.Connect.WillFlag, pk.Connect.WillTopic, pk.Connect.WillPayload = true, topic, []byte(payload)
		pk.Connect.WillProperties.WillDelayInterval = delay
	}
}

func (c *client) subscribe(id uint16, subs ...packets.Subscription) packets.Packet {
	c.t.Helper()
	c.write(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Subscribe, Qos: 1}, PacketID: id, Filters: subs})
	ack := c.expect(packets.Suback)
	if ack.PacketID != id || len(ack.ReasonCodes) != len(subs) {
		c.t.Fatalf("SUBACK %+v for SUBSCRIBE %d of %d filters", ack, id, len(subs))
	}
	return ack
}

func sub(filter string, qos byte) packets.Subscription {
	return packets.Subscription{Filter: filter, Qos: qos}
}

func (c *client) publish(topic, payload string, qos byte, id uint16) {
	c.t.Helper()
	c.write(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: qos},
		TopicName: topic, Payload: []byte(payload), PacketID: id})
}

func (c *client) puback(id uint16) {
	c.t.Helper()
	c.write(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Puback}, PacketID: id})
}

// message reads the next PUBLISH and checks its topic and payload.
func (c *client) message(topic, payload string) packets.Packet {
	c.t.Helper()
	pk := c.expect(packets.Publish)
	if pk.TopicName != topic || string(pk.Payload) != payload {
		c.t.Fatalf("got PUBLISH %q %q, want %q %q", pk.TopicName, pk.Payload, topic, payload)
	}
	return pk
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
