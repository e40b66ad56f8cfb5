package core

import (
	"fmt"
	"testing"
	"time"
)

// stallingRecorder blocks in Deliver of the message at offset at (with the
// Hub's locks held, as a dispatch in progress holds them) until released.
type stallingRecorder struct {
	recorder
	at      int64
	stalled chan struct{}
	release chan struct{}
}

func (r *stallingRecorder) Deliver(sub *Subscription, m *Message, snapshot bool) {
	if m.Pos.Offset == r.at {
		close(r.stalled)
		<-r.release
	}
	r.recorder.Deliver(sub, m, snapshot)
}

// A recovery may read the frontier while a dispatch has advanced it but not
// yet delivered the message to every subscription (Dispatch advances it
// before delivering; DispatchBatch, for a whole chunk). The recovery
// delivers that message from history; the dispatch, going on, hands it to
// the subscription too: it must not be delivered twice, whether the
// recovery has ended by then or not. (DispatchBatch showed it as TestDispatchBatchResumeNoGapNoDuplicate
// failing under load with up to 40 duplicates.)
func TestResumeFrontierAheadOfDelivery(t *testing.T) {
	for _, batch := range []bool{false, true} {
		t.Run(fmt.Sprintf("batch=%v", batch), func(t *testing.T) {
			// The recovery must read the frontier while the dispatch is
			// stalled; it polls for an unknown topic every 50ms, so a try
			// where it read it earlier (and had nothing to recover) is
			// made again.
			for range 5 {
				if got, arranged := frontierAheadOfDelivery(t, batch); arranged {
					if got != "[0 1 2 3 4]" {
						t.Fatalf("resumed subscription got %s, want [0 1 2 3 4]", got)
					}
					return
				}
			}
			t.Fatal("the recovery never read the frontier during the stalled dispatch")
		})
	}
}

func frontierAheadOfDelivery(t *testing.T, batch bool) (got string, arranged bool) {
	h := NewHub(CacheConfig{})
	hist := &fakeHistory{}
	h.EnableRecovery(hist, RecoveryConfig{})
	stall := &stallingRecorder{at: 3, stalled: make(chan struct{}), release: make(chan struct{})}
	f, err := ParseFilter("/t/a")
	if err != nil {
		t.Fatal(err)
	}
	h.Subscribe(stall, f, SubscribeOptions{}) // registered first: delivered to first
	r := &recorder{}
	// The topic is unknown: the recovery waits for its partitions.
	resume(t, h, r, "/t/a", Cursor{Epoch: 1, Offsets: map[int32]int64{0: -1}}, false)
	time.Sleep(10 * time.Millisecond) // it has looked once; the next look is 50ms later
	h.Begin("t", 1, 0, 0)
	h.parts.get("t", 0).first = 1 // history from Kafka: the recovery takes no shard lock
	var ms []*Message
	for i := range int64(5) {
		ms = append(ms, kmsg("/t/a", i))
	}
	hist.mu.Lock()
	hist.log = append(hist.log, ms...)
	hist.mu.Unlock()
	done := make(chan struct{})
	go func() {
		defer close(done)
		if batch {
			h.DispatchBatch(ms)
			return
		}
		for _, m := range ms {
			h.Dispatch(m)
		}
	}()
	select {
	case <-stall.stalled: // the frontier is at 3 (batch: 4); 3 is not delivered to r yet
	case <-time.After(5 * time.Second):
		t.Fatal("the dispatch did not reach the first subscriber")
	}
	// The recovery reads the frontier, then its history (up to it) and,
	// with the dispatch still under way, must not end before the dispatch
	// has handed on the rest of its messages.
	deadline := time.Now().Add(5 * time.Second)
	for {
		hist.mu.Lock()
		asked := len(hist.queries) > 0
		hist.mu.Unlock()
		if asked {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the recovery did not read its history")
		}
		time.Sleep(time.Millisecond)
	}
	time.Sleep(20 * time.Millisecond) // an unfixed recovery ends now, before the dispatch goes on
	close(stall.release)
	<-done
	recovered := make(chan struct{})
	go func() { h.Wait(); close(recovered) }()
	select {
	case <-recovered:
	case <-time.After(5 * time.Second):
		t.Fatal("the recovery did not end")
	}
	hist.mu.Lock()
	arranged = len(hist.queries) == 1 && hist.queries[0].To >= 3
	hist.mu.Unlock()
	return fmt.Sprint(offsetsOf(r.take(), "/t/a")), arranged
}
