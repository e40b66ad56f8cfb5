package mqtt

import (
	"fmt"
	"strings"

	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/kedgehq/kedge/auth"
	"github.com/kedgehq/kedge/core"
)

// subscribe makes one MQTT subscription a core subscription of the
// connection's session and returns the SUBACK reason code (the granted QoS,
// or a failure) and, for a failure, the reason.
//
// QoS 0 subscriptions are core.Standard (messages may be dropped under
// backpressure), QoS 1 and 2 are core.Guaranteed and granted QoS 1. The
// snapshot (the subject's latest cached message) is the retained message:
// sent on subscribe as MQTT 5's Retain Handling asks (0: always, 1: for a
// new subscription only, 2: never; MQTT 3.1.1: always). A subscription to a
// filter the session already holds replaces it; a message arriving at that
// moment may be delivered twice.
func (c *conn) subscribe(f packets.Subscription) (byte, string) {
	srv, s := c.srv, c.sess
	filter, terr := parseFilter(srv.node, f.Filter)
	if terr != nil {
		return terr.code.Code, terr.Error()
	}
	if refused := c.authorize(auth.Subscribe, filter.Name); refused != nil {
		return refused.Code, refused.Reason
	}
	s.mu.Lock()
	existed := s.subs[f.Filter] != nil
	full := !existed && len(s.subs) >= srv.cfg.MaxSubscriptions
	s.mu.Unlock()
	if full {
		srv.node.Limited(core.LimitSubscriptions, auth.ProtocolMQTT)
		return packets.ErrQuotaExceeded.Code, fmt.Sprintf("a session may hold %d subscriptions", srv.cfg.MaxSubscriptions)
	}
	qos := min(f.Qos, 1)
	mode := core.Guaranteed
	if qos == 0 {
		mode = core.Standard
	}
	t := &subscription{filter: strings.Clone(f.Filter), qos: qos, topic: filter.Topic}
	opts := core.SubscribeOptions{Mode: mode, Tag: t,
		Snapshot: f.RetainHandling == 0 || f.RetainHandling == 1 && !existed}
	t.sub = srv.node.Subscribe(s, filter, opts)
	s.mu.Lock()
	if s.ended {
		s.mu.Unlock()
		srv.node.Hub.Unsubscribe(t.sub)
		return packets.ErrUnspecifiedError.Code, "the session has ended"
	}
	if s.subs == nil {
		s.subs = make(map[string]*subscription)
	}
	prev := s.subs[t.filter]
	s.subs[t.filter] = t
	if srv.table != nil { // positions are kept for the sessions table only
		t.have = startOf(t.sub)
	}
	s.markLocked(true)
	s.mu.Unlock()
	if prev != nil {
		srv.node.Hub.Unsubscribe(prev.sub)
	} else {
		srv.stats.subscriptions.Add(1)
	}
	c.auth.Subscribed(filter.Name)
	return qos, ""
}

// unsubscribe ends one subscription and returns the UNSUBACK reason code.
// Messages already queued for the client are still delivered.
func (c *conn) unsubscribe(filter string) byte {
	s := c.sess
	s.mu.Lock()
	t := s.subs[filter]
	delete(s.subs, filter)
	if t != nil {
		s.markLocked(true)
	}
	s.mu.Unlock()
	if t == nil {
		return packets.CodeNoSubscriptionExisted.Code
	}
	c.srv.node.Hub.Unsubscribe(t.sub)
	c.srv.stats.subscriptions.Add(-1)
	c.auth.Unsubscribed(t.sub.Filter.Name)
	return packets.CodeSuccess.Code
}
