package ws

import (
	"testing"
	"time"

	"github.com/kedgehq/kedge/core"
)

// A subscription resumed from cursor "new" on a node that knows the topic
// gets everything the topic holds, and first a cursor frame with the cursor
// it resumes from (every partition at -1): without it the client, whose
// cursor says "new", would keep only the partitions of the messages it got,
// and a second resume before it had one of every partition would miss the
// others (the verifier lost a WebSocket subscriber's first messages so).
func TestResumeFromNewGetsItsCursor(t *testing.T) {
	h := newHarness(t, Config{})
	h.hub.Begin("later", 5, 0, 0)
	h.hub.Begin("later", 5, 1, 0)
	for p := range int32(2) {
		h.hub.Dispatch(&core.Message{Subject: "/later/a", Topic: "later", Key: "a", HasKey: true,
			Payload: []byte("x"), Pos: core.Position{Epoch: 5, Partition: p, Offset: 0}, Time: time.Now()})
	}
	c := h.dial()
	id := c.send(map[string]any{"op": "subscribe", "subjects": []string{"/later/+"}, "snapshot": false,
		"positions": map[string]string{"/later/+": "new"}})
	c.expect("ack", id)
	f := c.next()
	if f.Op != "cursor" || f.Subject != "/later/+" || f.Cursor != "5-0--1,5-1--1" {
		t.Fatalf("want the cursor frame 5-0--1,5-1--1 before the resumed messages, got %s", f)
	}
	got := map[string]bool{}
	for range 2 {
		got[c.expect("message", 0).Position] = true
	}
	if !got["5-0-0"] || !got["5-1-0"] {
		t.Fatalf("resumed %v, want 5-0-0 and 5-1-0", got)
	}
}
