package mqtt

import (
	"context"
	"strings"
	"sync/atomic"
	"time"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/kedgehq/kedge/auth"
)

// hook bridges mochi to core. mochi keeps the MQTT protocol (CONNECT,
// keepalive, SUBSCRIBE and UNSUBSCRIBE parsing and their acks, QoS 2's
// PUBREL/PUBCOMP, $SYS topics); the hook makes every publish go to Kafka,
// every subscription a core subscription, and every session kedge's.
type hook struct {
	mochi.HookBase
	srv *Server
}

func (h *hook) ID() string { return "kedge" }

func (h *hook) Provides(b byte) bool {
	switch b {
	case mochi.OnConnectAuthenticate, mochi.OnACLCheck, mochi.OnConnect,
		mochi.OnSessionEstablish, mochi.OnSessionEstablished, mochi.OnDisconnect,
		mochi.OnPacketRead, mochi.OnPacketEncode, mochi.OnPacketProcessed,
		mochi.OnSubscribe, mochi.OnUnsubscribe, mochi.OnPublish:
		return true
	}
	return false
}

// OnConnectAuthenticate accepts every client: kedge has no authentication yet.
func (h *hook) OnConnectAuthenticate(*mochi.Client, packets.Packet) bool { return true }

// OnACLCheck lets every publish through to OnPublish, and lets mochi's
// topic index hold only the server's own filters ($SYS/…): kedge delivers
// everything else itself, from the Hub.
func (h *hook) OnACLCheck(_ *mochi.Client, topic string, write bool) bool {
	return write || isLocal(topic) && !isShared(topic)
}

// OnConnect checks a connecting client: not while shutting down, and its
// will must name an exposed subject. It clamps the keepalive and takes the
// will over from mochi (kedge publishes it to Kafka).
func (h *hook) OnConnect(cl *mochi.Client, pk packets.Packet) error {
	c := connOf(cl)
	if c == nil {
		return packets.ErrServerUnavailable // not from kedge's listeners
	}
	srv := h.srv
	c.cl = cl
	p := &cl.Properties.Props
	c.v5 = cl.Properties.ProtocolVersion == 5
	c.problem = !p.RequestProblemInfoFlag || p.RequestProblemInfo != 0
	c.maxOut = int(p.MaximumPacketSize)
	c.window = srv.cfg.MaxInflight
	if c.v5 && p.ReceiveMaximum > 0 {
		c.window = min(c.window, int(p.ReceiveMaximum))
	}
	srv.mu.Lock()
	draining := srv.draining
	srv.mu.Unlock()
	if draining {
		return h.refuse(cl, packets.ErrServerShuttingDown)
	}
	if c.refused != nil {
		return h.refuse(cl, limitCode(c.refused))
	}
	if refused := c.authenticate(cl, pk); refused != nil {
		return h.refuse(cl, *refused)
	}
	if atomic.LoadUint32(&cl.Properties.Will.Flag) == 1 {
		w, terr := parseWill(srv.node, cl, pk)
		if terr != nil {
			code := terr.code
			code.Reason = terr.Error()
			return h.refuse(cl, code)
		}
		if refused := c.authorize(auth.Publish, w.p.Subject.Name); refused != nil {
			return h.refuse(cl, *refused)
		}
		c.will = w
		atomic.StoreUint32(&cl.Properties.Will.Flag, 0) // mochi must not send it
	}
	if ka := srv.cfg.keepalive(); cl.State.Keepalive == 0 || cl.State.Keepalive > ka {
		cl.State.Keepalive = ka
		cl.State.ServerKeepalive = true // MQTT 5: CONNACK tells the client
	}
	return nil
}

// refuse answers CONNECT with a failure and ends the connection.
func (h *hook) refuse(cl *mochi.Client, code packets.Code) error {
	_ = h.srv.broker.SendConnack(cl, code, false, nil)
	return code
}

// OnSessionEstablish attaches the connection to its session before mochi
// sends CONNACK.
func (h *hook) OnSessionEstablish(cl *mochi.Client, pk packets.Packet) {
	c := connOf(cl)
	h.srv.beginEstablish(c, cl.ID)
	h.srv.awaitPrevious(cl.ID)
	clean := pk.Connect.Clean
	// The sessions table is read before, and written after, attaching,
	// within one connect timeout.
	ctx, cancel := context.WithTimeout(context.Background(), h.srv.cfg.ConnectTimeout)
	defer cancel()
	rec, sr := h.srv.lookup(ctx, cl.ID, !clean)
	ss, _ := h.srv.attach(c, cl.ID, clean, rec, sr)
	h.srv.durable(ctx, ss)
	if c.present {
		c.recheck()
	}
}

// OnSessionEstablished runs after CONNACK: deliveries may go out now.
func (h *hook) OnSessionEstablished(cl *mochi.Client, _ packets.Packet) {
	if c := connOf(cl); c != nil && c.sess != nil {
		h.srv.endEstablish(c)
		c.release()
	}
}

// OnDisconnect detaches the connection from its session, which ends or
// waits for the client's return, and publishes the will when the
// connection ended without a DISCONNECT from the client.
func (h *hook) OnDisconnect(cl *mochi.Client, err error, expire bool) {
	c := connOf(cl)
	if c == nil || c.sess == nil {
		return
	}
	h.srv.disconnected(c, err != nil, expire, h.srv.sessionExpiry(cl))
}

// OnPacketRead sees every packet first: PUBACKs of kedge's deliveries, and
// QoS 1 and 2 publishes to $SYS topics, which mochi would drop without an
// answer.
func (h *hook) OnPacketRead(cl *mochi.Client, pk packets.Packet) (packets.Packet, error) {
	c := connOf(cl)
	if c == nil || c.sess == nil {
		return pk, nil
	}
	switch pk.FixedHeader.Type {
	case packets.Puback:
		c.sess.acked(c, pk.PacketID)
	case packets.Publish:
		if pk.FixedHeader.Qos > 0 && pk.PacketID != 0 && len(pk.TopicName) >= 4 &&
			strings.EqualFold(pk.TopicName[:4], "$SYS") {
			terr := &topicError{packets.ErrNotAuthorized, errLocalTopic}
			c.refusePublish(pk, terr.code, "topic \""+clip(pk.TopicName)+"\": "+terr.Error())
		}
	}
	return pk, nil
}

// OnPublish hands every publish to Kafka (see publish.go). Returning
// ErrRejectPacket keeps mochi from acknowledging it or delivering it
// locally: the acknowledgement follows Kafka's, and delivery comes back
// from Kafka through the Hub.
func (h *hook) OnPublish(cl *mochi.Client, pk packets.Packet) (packets.Packet, error) {
	if c := connOf(cl); c != nil && c.sess != nil {
		c.publish(pk)
	}
	return pk, packets.ErrRejectPacket
}

// OnSubscribe makes core subscriptions of the packet's filters, holding
// deliveries until mochi has written the SUBACK. $SYS filters stay with
// mochi, at QoS 0 (its packet identifiers must not meet kedge's).
func (h *hook) OnSubscribe(cl *mochi.Client, pk packets.Packet) packets.Packet {
	c := connOf(cl)
	if c == nil || c.sess == nil {
		return pk
	}
	a := &ackCodes{id: pk.PacketID, codes: make([]byte, len(pk.Filters))}
	for i := range pk.Filters {
		f := &pk.Filters[i]
		switch {
		case f.Identifier > 0:
			a.refuse(i, packets.ErrSubscriptionIdentifiersNotSupported)
		case isShared(f.Filter):
			a.refuse(i, packets.ErrSharedSubscriptionsNotSupported)
		case isLocal(f.Filter):
			a.codes[i] = keepCode
			f.Qos = 0
		default:
			if !c.subscribing {
				c.subscribing = true
				c.hold()
			}
			code, reason := c.subscribe(*f)
			a.codes[i] = code
			if a.reason == "" {
				a.reason = reason
			}
		}
	}
	c.suback = a
	return pk
}

// OnUnsubscribe ends the core subscriptions of the packet's filters.
func (h *hook) OnUnsubscribe(cl *mochi.Client, pk packets.Packet) packets.Packet {
	c := connOf(cl)
	if c == nil || c.sess == nil {
		return pk
	}
	a := &ackCodes{id: pk.PacketID, codes: make([]byte, len(pk.Filters))}
	for i, f := range pk.Filters {
		if isLocal(f.Filter) {
			a.codes[i] = keepCode
			continue
		}
		a.codes[i] = c.unsubscribe(f.Filter)
	}
	c.unsuback = a
	return pk
}

// OnPacketProcessed releases the deliveries a SUBSCRIBE held: its SUBACK
// has been written.
func (h *hook) OnPacketProcessed(cl *mochi.Client, pk packets.Packet, _ error) {
	if pk.FixedHeader.Type != packets.Subscribe {
		return
	}
	if c := connOf(cl); c != nil && c.subscribing {
		c.subscribing = false
		c.release()
	}
}

// OnPacketEncode puts kedge's decisions into the packets mochi writes:
// CONNACK's session present flag and MQTT 5 capabilities, SUBACK and
// UNSUBACK reason codes, and MQTT 3.1.1 CONNACK return codes.
func (h *hook) OnPacketEncode(cl *mochi.Client, pk packets.Packet) packets.Packet {
	c := connOf(cl)
	if c == nil {
		return pk
	}
	v5 := cl.Properties.ProtocolVersion == 5
	switch pk.FixedHeader.Type {
	case packets.Connack:
		switch {
		case pk.ReasonCode == 0:
			pk.SessionPresent = c.present
			if v5 {
				h.capabilities(&pk.Properties)
			}
		case !v5:
			pk.ReasonCode = v3ConnackCode(pk.ReasonCode)
		}
	case packets.Suback:
		if a := c.suback; a != nil && a.id == pk.PacketID {
			c.suback = nil
			a.apply(&pk, v5)
		}
	case packets.Unsuback:
		if a := c.unsuback; a != nil && a.id == pk.PacketID {
			c.unsuback = nil
			a.apply(&pk, v5)
		}
	}
	return pk
}

// capabilities adds what kedge does not offer, and its limits, to CONNACK.
func (h *hook) capabilities(p *packets.Properties) {
	p.SubIDAvailable, p.SubIDAvailableFlag = 0, true
	p.SharedSubAvailable, p.SharedSubAvailableFlag = 0, true
	p.TopicAliasMaximum = topicAliasMaximum
	p.MaximumPacketSize = uint32(h.srv.cfg.MaxPacketSize)
}

// refuse records a failure code for filter i.
func (a *ackCodes) refuse(i int, code packets.Code) {
	a.codes[i] = code.Code
	if a.reason == "" {
		a.reason = code.Reason
	}
}

// apply puts the codes into mochi's SUBACK or UNSUBACK. MQTT 3.1.1 knows
// one failure code, 0x80.
func (a *ackCodes) apply(pk *packets.Packet, v5 bool) {
	if len(pk.ReasonCodes) != len(a.codes) {
		return
	}
	for i, code := range a.codes {
		switch {
		case code == keepCode:
		case !v5 && code >= 0x80:
			pk.ReasonCodes[i] = 0x80
		default:
			pk.ReasonCodes[i] = code
		}
	}
	if v5 && a.reason != "" {
		pk.Properties.ReasonString = a.reason
	}
}

// v3ConnackCode maps a refusal onto MQTT 3.1.1's CONNACK return codes.
func v3ConnackCode(code byte) byte {
	switch code {
	case 0x01, 0x02, 0x03, 0x04, 0x05:
		return code
	case packets.ErrUnspecifiedError.Code, packets.ErrClientIdentifierNotValid.Code:
		return 0x02 // mochi: a persistent session without a client identifier
	case packets.ErrUnsupportedProtocolVersion.Code:
		return 0x01
	case packets.ErrBadUsernameOrPassword.Code:
		return 0x04
	case packets.ErrNotAuthorized.Code, packets.ErrTopicNameInvalid.Code:
		return 0x05 // kedge: a will on an invalid or unexposed topic
	}
	return 0x03 // server unavailable: shutting down, busy, …
}

// sessionExpiry is how long a session is kept while its client is away.
func (s *Server) sessionExpiry(cl *mochi.Client) time.Duration {
	if cl.Properties.ProtocolVersion < 5 {
		return s.cfg.MaxSessionExpiry
	}
	sei := cl.Properties.Props.SessionExpiryInterval
	return min(time.Duration(sei)*time.Second, s.cfg.MaxSessionExpiry)
}
