package ws

import (
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/kedgehq/kedge/core"
)

// 20 clients each subscribe to 10 of 20 subjects; 5 goroutines dispatch
// 1000 messages concurrently, each goroutine owning 4 subjects (as the kafka
// package dispatches each partition from one goroutine). Every client gets
// every message of its subjects, once, in per-subject order.
func TestConcurrentFanoutPerSubjectOrder(t *testing.T) {
	const (
		clients        = 20
		subjects       = 20
		perClient      = 10
		msgsPerSubject = 50
		dispatchers    = 5
	)
	h := newHarness(t, Config{})
	name := func(s int) string { return fmt.Sprintf("/conc/s%02d", s) }

	type result struct {
		client int
		got    map[string][]int64
		err    error
	}
	results := make(chan result, clients)
	for i := 0; i < clients; i++ {
		c := h.dial()
		var subs []string
		for j := 0; j < perClient; j++ {
			subs = append(subs, name((i+j)%subjects))
		}
		id := c.send(map[string]any{"op": "subscribe", "subjects": subs, "snapshot": false})
		c.expect("ack", id)
		c.waitSubscribed(subs...)
		go func() {
			r := result{client: i, got: make(map[string][]int64)}
			defer func() { results <- r }()
			_ = c.ws.SetReadDeadline(time.Now().Add(4 * waitFor))
			for n := 0; n < perClient*msgsPerSubject; n++ {
				_, data, err := c.ws.ReadMessage()
				if err != nil {
					r.err = fmt.Errorf("after %d messages: %w", n, err)
					return
				}
				var f struct {
					Op, Subject, Payload, Position string
				}
				if err := json.Unmarshal(data, &f); err != nil || f.Op != "message" {
					r.err = fmt.Errorf("frame %s (%v)", data, err)
					return
				}
				var off int64
				if _, err := fmt.Sscanf(f.Position, "1-0-%d", &off); err != nil || f.Payload != fmt.Sprintf("%s#%d", f.Subject, off) {
					r.err = fmt.Errorf("frame %s", data)
					return
				}
				r.got[f.Subject] = append(r.got[f.Subject], off)
			}
		}()
	}

	// Messages are built here: msg may call t.Fatal.
	msgs := make([][]*core.Message, subjects)
	for s := range msgs {
		for k := 0; k < msgsPerSubject; k++ {
			msgs[s] = append(msgs[s], msg(t, name(s), int64(k), fmt.Sprintf("%s#%d", name(s), k)))
		}
	}
	var wg sync.WaitGroup
	for g := 0; g < dispatchers; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := 0; k < msgsPerSubject; k++ {
				for s := g; s < subjects; s += dispatchers {
					h.hub.Dispatch(msgs[s][k])
				}
			}
		}()
	}
	wg.Wait()

	for range clients {
		r := <-results
		if r.err != nil {
			t.Errorf("client %d: %v", r.client, r.err)
			continue
		}
		for j := 0; j < perClient; j++ {
			subj := name((r.client + j) % subjects)
			offs := r.got[subj]
			if len(offs) != msgsPerSubject {
				t.Errorf("client %d, %s: %d messages, want %d", r.client, subj, len(offs), msgsPerSubject)
				continue
			}
			for k, off := range offs {
				if off != int64(k) {
					t.Errorf("client %d, %s: message %d has offset %d: out of order", r.client, subj, k, off)
					break
				}
			}
		}
		if len(r.got) != perClient {
			t.Errorf("client %d got messages of %d subjects, want %d", r.client, len(r.got), perClient)
		}
	}
	st := h.srv.Stats()
	if want := int64(clients * perClient * msgsPerSubject); st.Delivered != want || st.Dropped != 0 || st.SlowClosed != 0 {
		t.Fatalf("Stats %+v: want %d delivered, none dropped", st, want)
	}
}
