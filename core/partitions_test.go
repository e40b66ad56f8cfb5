package core

import (
	"sync"
	"sync/atomic"
	"testing"
)

// A topic's partitions announced together are seen together: a Frontier
// read at any moment names all of them or says the topic is unknown. One
// that named some would be the start cursor of a subscription made then,
// and a client resuming from it on another node would miss the first
// messages of the others.
func TestBeginAllIsSeenWhole(t *testing.T) {
	const partitions = 16
	for round := range 200 {
		h := NewHub(CacheConfig{})
		topic := "t"
		firsts := make(map[int32]int64, partitions)
		for p := range int32(partitions) {
			firsts[p] = int64(round)
		}
		var stop atomic.Bool
		var wg sync.WaitGroup
		partial := make(chan int, 1)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				if c, ok := h.Frontier(topic); ok && len(c.Offsets) != partitions {
					select {
					case partial <- len(c.Offsets):
					default:
					}
					return
				}
			}
		}()
		h.BeginAll(topic, 1, firsts)
		stop.Store(true)
		wg.Wait()
		select {
		case n := <-partial:
			t.Fatalf("round %d: Frontier named %d of %d partitions", round, n, partitions)
		default:
		}
		c, ok := h.Frontier(topic)
		if !ok || len(c.Offsets) != partitions || c.Offsets[3] != int64(round)-1 {
			t.Fatalf("round %d: Frontier after BeginAll %v %v", round, c, ok)
		}
	}
}
