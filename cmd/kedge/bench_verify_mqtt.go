package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"
	"github.com/eclipse/paho.golang/paho/session"
	"github.com/eclipse/paho.golang/paho/session/state"
)

// mqttSessionExpiry is what the MQTT subscribers ask their sessions to be
// kept for while they are away (seconds).
const mqttSessionExpiry = 600

// runMQTTSubscriber is the MQTT driver: paho.golang (MQTT 5), a QoS 1
// subscription in a persistent session, disconnecting at every churn and
// coming back with clean start 0.
//
// Like the WebSocket and SSE drivers, it comes back to the next node each
// time: kedge keeps MQTT persistent sessions in Kafka
// (docs/protocol-mqtt.md, Sessions on every node), so the session moves
// with the client and resumes from the positions it acknowledged. A
// CONNACK with session present 0 on a reconnect (the session was reset)
// and a kedge-reset user property count as resets.
//
// Exactness: a message counts as delivered when its PUBACK is written, a
// churn stops taking messages before the DISCONNECT, and the connection is
// closed gracefully (gracefulConn), so every message the subscriber
// counted was acknowledged to kedge before it left; a message sent again
// (DUP) after that is counted as a duplicate.
func runMQTTSubscriber(ctx context.Context, id int, nodes []*benchNode, topic string, t *tally, churn func() time.Duration) error {
	if nodes[0].MQTT == "" {
		return errors.New("the nodes serve no MQTT")
	}
	clientID := fmt.Sprintf("kedge-verify-%d-sub-%d", os.Getpid(), id)
	for round := 0; ctx.Err() == nil; round++ {
		node := nodes[(id+round)%len(nodes)]
		err := mqttSubscriberSession(ctx, node.MQTT, clientID, round == 0, topic, t, churn())
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			if round == 0 {
				return err
			}
			select { // the node refused or dropped it: again after a moment
			case <-ctx.Done():
				return nil
			case <-time.After(50 * time.Millisecond):
			}
		}
		t.reconnects.Add(1)
	}
	return nil
}

// mqttSubscriberSession runs one connection of a subscriber for at most d.
func mqttSubscriberSession(ctx context.Context, addr, clientID string, first bool, topic string, t *tally, d time.Duration) error {
	nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return err
	}
	gate := &ackGate{SessionManager: state.NewInMemory(), t: t}
	defer func() { _ = gate.Close() }()
	c := paho.NewClient(paho.ClientConfig{
		Conn:    &gracefulConn{TCPConn: nc.(*net.TCPConn)},
		Session: gate,
		// Messages are counted in ackGate.Ack, when their PUBACK is written.
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(paho.PublishReceived) (bool, error) { return true, nil }},
	})
	expiry := uint32(mqttSessionExpiry)
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	ca, err := c.Connect(cctx, &paho.Connect{ClientID: clientID, KeepAlive: 30, CleanStart: first,
		Properties: &paho.ConnectProperties{SessionExpiryInterval: &expiry}})
	cancel()
	if err != nil {
		return fmt.Errorf("MQTT connect: %w", err)
	}
	if !first && !ca.SessionPresent {
		t.resets.Add(1) // the session was reset: what it held is gone
	}
	if first || !ca.SessionPresent {
		sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		sa, err := c.Subscribe(sctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{
			{Topic: topic + "/+", QoS: 1, RetainHandling: 2}}}) // 2: no retained message (snapshot)
		cancel()
		if err == nil && (len(sa.Reasons) != 1 || sa.Reasons[0] != 1) {
			err = fmt.Errorf("SUBACK %v", sa.Reasons)
		}
		if err != nil {
			_ = c.Disconnect(&paho.Disconnect{})
			return fmt.Errorf("MQTT subscribe: %w", err)
		}
	}
	t.subscribed()
	select {
	case <-ctx.Done():
	case <-time.After(d):
	case <-c.Done(): // the server ended the connection
	}
	gate.stop()
	_ = c.Disconnect(&paho.Disconnect{})
	return nil
}

// gracefulConn closes a subscriber's connection as a careful client does:
// it ends its side after what it wrote (FIN) and reads on until kedge
// closes, instead of closing a socket with deliveries still unread. The
// kernel resets such a socket and may drop what was written last but not
// yet sent - the final PUBACKs and the DISCONNECT - and kedge then, rightly,
// sends those messages again (DUP) on the next connection: MQTT's
// at-least-once, which this driver would count as duplicates.
type gracefulConn struct {
	*net.TCPConn
	once sync.Once
	err  error
}

func (c *gracefulConn) Close() error {
	c.once.Do(func() {
		_ = c.CloseWrite()
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, _ = io.Copy(io.Discard, c.TCPConn)
		c.err = c.TCPConn.Close()
	})
	return c.err
}

// ackGate wraps paho's session state: a QoS 1 message is counted in the
// tally and its PUBACK written under one lock, which stop takes before the
// connection sends DISCONNECT; from then on messages are neither counted
// nor acknowledged, and kedge sends them again on the next connection.
type ackGate struct {
	session.SessionManager
	t       *tally
	mu      sync.Mutex
	stopped bool
}

func (g *ackGate) Ack(pb *packets.Publish) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.stopped {
		return nil
	}
	if pb.Properties != nil {
		for _, u := range pb.Properties.User {
			if u.Key == "kedge-reset" {
				g.t.resets.Add(1)
			}
		}
	}
	g.t.record("/"+pb.Topic, string(pb.Payload))
	return g.SessionManager.Ack(pb)
}

func (g *ackGate) stop() {
	g.mu.Lock()
	g.stopped = true
	g.mu.Unlock()
}

// mqttPublisher publishes with QoS 1, each publish waiting for its PUBACK
// (which kedge sends after Kafka's ack).
type mqttPublisher struct{ c *paho.Client }

func dialMQTTPublisher(ctx context.Context, node *benchNode, id int) (publisher, error) {
	if node.MQTT == "" {
		return nil, errors.New("the nodes serve no MQTT")
	}
	nc, err := net.DialTimeout("tcp", node.MQTT, 5*time.Second)
	if err != nil {
		return nil, err
	}
	c := paho.NewClient(paho.ClientConfig{Conn: nc})
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := c.Connect(cctx, &paho.Connect{ClientID: fmt.Sprintf("kedge-verify-%d-pub-%d", os.Getpid(), id),
		KeepAlive: 30, CleanStart: true}); err != nil {
		return nil, fmt.Errorf("MQTT connect: %w", err)
	}
	return &mqttPublisher{c}, nil
}

func (p *mqttPublisher) publish(ctx context.Context, subject string, payload []byte) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	resp, err := p.c.Publish(ctx, &paho.Publish{Topic: strings.TrimPrefix(subject, "/"), QoS: 1, Payload: payload})
	if err != nil {
		return err
	}
	if resp.ReasonCode >= 0x80 {
		reason := ""
		if resp.Properties != nil {
			reason = resp.Properties.ReasonString
		}
		return fmt.Errorf("PUBACK %#x %s", resp.ReasonCode, reason)
	}
	return nil
}

func (p *mqttPublisher) close() { _ = p.c.Disconnect(&paho.Disconnect{}) }
