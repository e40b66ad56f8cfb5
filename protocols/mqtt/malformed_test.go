package mqtt

import (
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"
)

// An MQTT 5 SUBSCRIBE whose last filter lacks its options byte panics in
// mochi's decoder (v2.7.9); found by FuzzWireMQTT. It ends that connection
// only: the server and its other clients go on.
func TestMalformedSubscribeEndsOnlyItsConnection(t *testing.T) {
	h := newHarness(t, Config{})
	healthy := dial(t, h.addr, 5)
	healthy.mustConnect("healthy", true)
	healthy.subscribe(1, sub("demo/k1", 1))

	bad := dial(t, h.addr, 5)
	bad.mustConnect("bad", true)
	// SUBSCRIBE, packet id 1, no properties, filter "de" and no options byte.
	if _, err := bad.nc.Write([]byte{0x82, 0x07, 0x00, 0x01, 0x00, 0x00, 0x02, 'd', 'e'}); err != nil {
		t.Fatal(err)
	}
	bad.closed(5 * time.Second)
	waitFor(t, 5*time.Second, "the malformed connection to end", func() bool {
		st := h.srv.Stats()
		return st.Malformed == 1 && st.Connections == 1
	})
	h.kafka.dispatch("/demo/k1", "still served")
	if pk := healthy.message("demo/k1", "still served"); pk.FixedHeader.Type != packets.Publish {
		t.Fatalf("got %+v", pk)
	}
	// The same client identifier connects again.
	again := dial(t, h.addr, 5)
	again.mustConnect("bad", true)
}
