package mqtt

import (
	"strings"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/kedgehq/kedge/auth"
)

// staticAuth accepts "alice" (demo subjects), "alice" again with narrower
// permissions, "bob" and "short" (which expires soon).
func staticAuth(t *testing.T, shortExpiry time.Time) *auth.Auth {
	t.Helper()
	a, err := auth.New(auth.Config{Mode: []string{"static"}, Static: auth.StaticConfig{Tokens: []auth.StaticToken{
		{Name: "alice", Token: "alice-token", Subscribe: []string{"/demo/#"}, Publish: []string{"/demo/+"}},
		{Name: "alice", Token: "alice-narrow", Subscribe: []string{"/demo/k1"}, Publish: []string{"/demo/k1"}},
		{Name: "bob", Token: "bob-token", Subscribe: []string{"/demo/#"}},
		{Name: "short", Token: "short-token", Subscribe: []string{"/#"}, Expires: shortExpiry},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// CONNECT's password is the token; MQTT 5 gets 0x86 with kedge's code,
// MQTT 3.1.1 return code 4.
func TestAuthConnect(t *testing.T) {
	h := newAuthHarness(t, Config{}, staticAuth(t, time.Now().Add(time.Hour)))
	for _, tc := range []struct {
		v    byte
		opts []connectOpt
		code byte
	}{
		{5, nil, packets.ErrBadUsernameOrPassword.Code},
		{5, []connectOpt{withPassword("alice", "wrong")}, packets.ErrBadUsernameOrPassword.Code},
		{4, []connectOpt{withPassword("alice", "wrong")}, 0x04},
		{5, []connectOpt{withPassword("alice", "alice-token")}, 0},
		{4, []connectOpt{withPassword("", "alice-token")}, 0},
	} {
		c := dial(t, h.addr, tc.v)
		ack := c.connect("dev", true, tc.opts...)
		if ack.ReasonCode != tc.code {
			t.Fatalf("v%d: CONNACK %#x, want %#x", tc.v, ack.ReasonCode, tc.code)
		}
		if tc.v == 5 && tc.code != 0 && !strings.HasPrefix(ack.Properties.ReasonString, "unauthorized") {
			t.Fatalf("reason %q", ack.Properties.ReasonString)
		}
	}
	c := dial(t, h.addr, 5)
	if ack := c.connect("dev", true, withPassword("", "alice-token"), withWill("other/status", "x", 0)); ack.ReasonCode != packets.ErrNotAuthorized.Code {
		t.Fatalf("a will outside the permissions: CONNACK %#x", ack.ReasonCode)
	}
}

// Subscriptions and publishes are authorized for the connection's identity.
func TestAuthPermissions(t *testing.T) {
	h := newAuthHarness(t, Config{}, staticAuth(t, time.Now().Add(time.Hour)))
	c := dial(t, h.addr, 5)
	c.mustConnect("alice", true, withPassword("", "alice-token"))
	ack := c.subscribe(1, sub("demo/#", 1), sub("other/x", 1))
	if ack.ReasonCodes[0] != 1 || ack.ReasonCodes[1] != packets.ErrNotAuthorized.Code ||
		!strings.HasPrefix(ack.Properties.ReasonString, "forbidden") {
		t.Fatalf("SUBACK %v %q", ack.ReasonCodes, ack.Properties.ReasonString)
	}
	c.publish("demo/a/b", "x", 1, 2) // alice publishes on /demo/+ only
	if ack := c.expect(packets.Puback); ack.ReasonCode != packets.ErrNotAuthorized.Code {
		t.Fatalf("PUBACK %#x", ack.ReasonCode)
	}
	c.publish("demo/k1", "ok", 1, 3)
	for seen := map[byte]bool{}; len(seen) < 2; { // the PUBACK and the message, in either order
		pk, err := c.next(5 * time.Second)
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case pk.FixedHeader.Type == packets.Puback && pk.PacketID == 3 && pk.ReasonCode == 0:
		case pk.FixedHeader.Type == packets.Publish && pk.TopicName == "demo/k1" && string(pk.Payload) == "ok":
			c.puback(pk.PacketID)
		default:
			t.Fatalf("got %+v", pk)
		}
		seen[pk.FixedHeader.Type] = true
	}
	if n := len(h.kafka.published()); n != 1 {
		t.Fatalf("%d records in Kafka, want 1", n)
	}
	if st := h.srv.Stats(); st.Denied != 2 {
		t.Fatalf("Denied = %d", st.Denied)
	}
}

// A client whose credentials expire is disconnected (MQTT 5: 0x87).
func TestAuthExpiry(t *testing.T) {
	h := newAuthHarness(t, Config{}, staticAuth(t, time.Now().Add(300*time.Millisecond)))
	c := dial(t, h.addr, 5)
	c.mustConnect("short", true, withPassword("", "short-token"))
	got := c.closed(5 * time.Second)
	if len(got) != 1 || got[0].FixedHeader.Type != packets.Disconnect || got[0].ReasonCode != packets.ErrNotAuthorized.Code ||
		!strings.HasPrefix(got[0].Properties.ReasonString, "token_expired") {
		t.Fatalf("got %+v", got)
	}
}

// A session belongs to its identity: another one starts afresh; the same
// one with narrower permissions keeps only what it may still subscribe to,
// and none of the messages queued for the rest.
func TestAuthSessionOwner(t *testing.T) {
	h := newAuthHarness(t, Config{}, staticAuth(t, time.Now().Add(time.Hour)))
	c := dial(t, h.addr, 5)
	c.mustConnect("dev", false, withExpiry(60), withPassword("", "alice-token"))
	c.subscribe(1, sub("demo/+", 1), sub("demo/k1", 1))
	_ = c.nc.Close()
	waitFor(t, 5*time.Second, "the session to go offline", func() bool { return h.srv.Stats().OfflineSessions == 1 })
	h.kafka.dispatch("/demo/k2", "for demo/+")
	h.kafka.dispatch("/demo/k1", "for both")

	c = dial(t, h.addr, 5)
	if ack := c.mustConnect("dev", false, withExpiry(60), withPassword("", "alice-narrow")); !ack.SessionPresent {
		t.Fatal("alice's session not present")
	}
	m := c.message("demo/k1", "for both") // from demo/k1; demo/+ and its messages are gone
	c.puback(m.PacketID)
	c.quiet(200 * time.Millisecond)
	if n := h.srv.Stats().Subscriptions; n != 1 {
		t.Fatalf("%d subscriptions, want 1", n)
	}
	c.write(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Disconnect}})
	c.closed(5 * time.Second)

	bob := dial(t, h.addr, 5)
	if ack := bob.mustConnect("dev", false, withExpiry(60), withPassword("", "bob-token")); ack.SessionPresent {
		t.Fatal("bob resumed alice's session")
	}
	h.kafka.dispatch("/demo/k1", "not for bob")
	bob.quiet(200 * time.Millisecond)
}
