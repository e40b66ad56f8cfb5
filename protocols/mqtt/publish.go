package mqtt

import (
	"context"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/kedgehq/kedge/auth"
	"github.com/kedgehq/kedge/core"
)

// publish hands a client's PUBLISH to Kafka, in the order the client sent
// them. QoS 1 is acknowledged (PUBACK) and QoS 2 received (PUBREC) only
// after Kafka acknowledged the record. When Kafka fails, an MQTT 5 client
// gets the failure's reason code; an MQTT 3.1.1 client, which has no way to
// hear of a failure, is disconnected without an acknowledgement, so it
// sends the message again.
func (c *conn) publish(pk packets.Packet) {
	srv := c.srv
	srv.stats.received.Add(1)
	subj, terr := parseTopic(srv.node, pk.TopicName)
	if terr == nil && pk.Properties.PayloadFormatFlag && pk.Properties.PayloadFormat == 1 && !utf8.Valid(pk.Payload) {
		terr = &topicError{packets.ErrPayloadFormatInvalid, errors.New("the payload format indicator says UTF-8, and the payload is not")}
	}
	if terr != nil {
		c.refusePublish(pk, terr.code, terr.Error())
		return
	}
	if refused := c.authorize(auth.Publish, subj.Name); refused != nil {
		c.refusePublish(pk, *refused, refused.Reason)
		return
	}
	if !c.v5 {
		// MQTT 3.1.1 cannot refuse a publish without disconnecting (and the
		// client would send it again): past the rate, the connection is not
		// read until the publish is within it.
		if wait := srv.node.Limits.Throttle(c.rate, auth.ProtocolMQTT); wait > 0 {
			time.Sleep(wait)
		}
	} else if _, err := srv.node.Limits.Take(c.rate, auth.ProtocolMQTT); err != nil {
		code := codeFor(err)
		c.refusePublish(pk, code, code.Reason)
		return
	}
	if refused := c.pub.begin(c, pk); refused != nil {
		if *refused != (packets.Code{}) {
			c.refusePublish(pk, *refused, refused.Reason)
		}
		return
	}
	srv.stats.published.Add(1)
	qos, id := pk.FixedHeader.Qos, pk.PacketID
	p := core.Publication{Subject: subj, Payload: pk.Payload, Headers: headersOf(&pk.Properties)}
	srv.node.PublishAsync(context.Background(), p, func(_ core.Position, err error) {
		if err == nil {
			c.auth.Published(p.Subject.Name)
		}
		c.answered(qos, id, err)
	})
}

// begin admits a publish: at most MaxInflight of a connection wait for
// Kafka. Past that an MQTT 5 client that exceeds its Receive Maximum is
// disconnected (0x93); otherwise reading waits, which slows the client
// down. It returns nil when admitted; otherwise a code to refuse with, or
// the zero code when the publish is to be ignored (a QoS 1 or 2 publish
// sent again while the first is still with Kafka: one answer comes).
func (p *publishes) begin(c *conn, pk packets.Packet) *packets.Code {
	qos, id := pk.FixedHeader.Qos, pk.PacketID
	p.mu.Lock()
	if p.slots == nil {
		p.slots = make(chan struct{}, c.srv.cfg.MaxInflight)
		p.ids = make(map[uint16]struct{})
	}
	if p.draining {
		p.mu.Unlock()
		code := packets.ErrUnspecifiedError // 0x8B is no PUBACK reason code
		code.Reason = "shutting_down: " + core.ErrShuttingDown.Error()
		return &code
	}
	if _, dup := p.ids[id]; qos > 0 && dup {
		p.mu.Unlock()
		return &packets.Code{}
	}
	if qos > 0 && c.v5 && p.qos >= c.srv.cfg.MaxInflight {
		p.mu.Unlock()
		c.abort(packets.ErrReceiveMaximum)
		return &packets.Code{}
	}
	if qos > 0 {
		p.ids[id] = struct{}{}
		p.qos++
	}
	p.wg.Add(1)
	p.mu.Unlock()
	p.slots <- struct{}{} // Kafka's answers free slots within its delivery timeout
	return nil
}

// drain refuses publishes from now on.
func (p *publishes) drain() {
	p.mu.Lock()
	p.draining = true
	p.mu.Unlock()
}

// answered acknowledges a publish after Kafka's answer. It runs in the
// producer's goroutine and does not block.
func (c *conn) answered(qos byte, id uint16, err error) {
	p := &c.pub
	defer p.wg.Done() // after the acknowledgement is queued: Shutdown waits for it
	p.mu.Lock()
	if qos > 0 {
		delete(p.ids, id)
		p.qos--
	}
	p.mu.Unlock()
	<-p.slots
	if err != nil {
		c.srv.stats.publishErrors.Add(1)
		c.srv.log.Debug("mqtt publish failed", "client", c.cl.ID, "err", err)
	}
	if qos == 0 {
		return
	}
	if err != nil {
		if c.v5 {
			c.send(ackFor(qos, id, true, codeFor(err), c.problem))
		} else {
			c.abort(codeFor(err)) // MQTT 3.1.1: closed without a word
		}
		return
	}
	if qos == 2 {
		// mochi answers the client's PUBREL from its inflight store.
		now := time.Now().Unix()
		c.cl.State.Inflight.Set(packets.Packet{
			FixedHeader: packets.FixedHeader{Type: packets.Pubrec},
			PacketID:    id, Created: now,
			Expiry: now + c.srv.broker.Options.Capabilities.MaximumMessageExpiryInterval,
		})
	}
	c.send(ackFor(qos, id, c.v5, packets.CodeSuccess, false))
}

// refusePublish answers a publish kedge does not take: MQTT 5 gets the
// reason code (QoS 1 and 2), MQTT 3.1.1 is disconnected (QoS 1 and 2: it
// has no negative acknowledgement), and QoS 0 is dropped and counted.
func (c *conn) refusePublish(pk packets.Packet, code packets.Code, reason string) {
	c.srv.stats.refused.Add(1)
	c.srv.log.Debug("mqtt publish refused", "client", c.cl.ID, "topic", clip(pk.TopicName), "reason", reason)
	qos := pk.FixedHeader.Qos
	switch {
	case qos == 0:
	case c.v5:
		code.Reason = reason
		c.send(ackFor(qos, pk.PacketID, true, code, c.problem))
	default:
		c.abort(code)
	}
}

// codeFor maps a publish error onto an MQTT 5 PUBACK/PUBREC reason code;
// the reason string starts with kedge's error code (docs/protocol-ws.md).
func codeFor(err error) packets.Code {
	code := packets.ErrUnspecifiedError
	switch {
	case errors.Is(err, core.ErrBusy), errors.Is(err, core.ErrPayloadTooLarge):
		code = packets.ErrQuotaExceeded
	case errors.Is(err, core.ErrNotExposed):
		code = packets.ErrNotAuthorized
	case errors.Is(err, core.ErrRateLimited):
		code = packets.ErrMessageRateTooHigh
	}
	code.Reason = clipReason(core.Code(err) + ": " + err.Error())
	return code
}

// clipReason bounds a reason string.
func clipReason(s string) string {
	const max = 256
	if len(s) <= max {
		return s
	}
	cut := max
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut]
}

// will is a client's will message, which kedge publishes to Kafka.
type will struct {
	p     core.Publication
	delay time.Duration
}

// parseWill checks a CONNECT's will.
func parseWill(node *core.Node, cl *mochi.Client, pk packets.Packet) (*will, *topicError) {
	w := cl.Properties.Will
	subj, terr := parseTopic(node, w.TopicName)
	if terr != nil {
		return nil, terr
	}
	props := pk.Connect.WillProperties
	if props.PayloadFormatFlag && props.PayloadFormat == 1 && !utf8.Valid(w.Payload) {
		return nil, &topicError{packets.ErrPayloadFormatInvalid, fmt.Errorf("will: the payload format indicator says UTF-8, and the payload is not")}
	}
	return &will{
		p:     core.Publication{Subject: subj, Payload: w.Payload, Headers: headersOf(&props)},
		delay: time.Duration(w.WillDelayInterval) * time.Second,
	}, nil
}

// publishWill hands a will message to Kafka.
func (s *Server) publishWill(w *will) {
	s.stats.wills.Add(1)
	s.node.PublishAsync(context.Background(), w.p, func(_ core.Position, err error) {
		if err != nil {
			s.stats.publishErrors.Add(1)
			s.log.Warn("mqtt will message not published", "subject", w.p.Subject.Name, "err", err)
		}
	})
}
