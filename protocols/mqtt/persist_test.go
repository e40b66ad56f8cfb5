package mqtt

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/kedgehq/kedge/auth"
	"github.com/kedgehq/kedge/core"
)

// memStore is a core.Table shared by the nodes of a test: every write is
// read at once by every node (memView), lower versions ignored, as
// kafka.Table does.
type memStore struct {
	mu       sync.Mutex
	recs     map[string]core.TableRecord
	watchers []func(core.TableRecord)
	puts     int
	// lag, when set, makes writes land that long after Put, in order.
	lag    time.Duration
	queue  chan func()
	direct bool
}

func newMemStore() *memStore { return &memStore{recs: make(map[string]core.TableRecord)} }

// slow makes the store's writes land lag after Put.
func (st *memStore) slow(t *testing.T, lag time.Duration) {
	st.lag, st.queue = lag, make(chan func(), 1000)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case f := <-st.queue:
				time.Sleep(lag)
				f()
			case <-stop:
				return
			}
		}
	})
	t.Cleanup(func() { // from now on writes land at once (the servers shut down after)
		st.mu.Lock()
		st.direct = true
		st.mu.Unlock()
		close(stop)
		wg.Wait()
		for {
			select {
			case f := <-st.queue:
				f()
			default:
				return
			}
		}
	})
}

type memView struct{ st *memStore }

func (v memView) Put(recs []core.TableRecord, done func(error)) {
	v.st.mu.Lock()
	if v.st.queue != nil && !v.st.direct {
		v.st.queue <- func() { v.apply(recs, done) }
		v.st.mu.Unlock()
		return
	}
	v.st.mu.Unlock()
	v.apply(recs, done)
}

func (v memView) apply(recs []core.TableRecord, done func(error)) {
	st := v.st
	for _, r := range recs {
		st.mu.Lock()
		st.puts++
		if old, ok := st.recs[r.Key]; ok && r.Version.Less(old.Version) {
			st.mu.Unlock()
			continue
		}
		st.recs[r.Key] = r
		ws := append([]func(core.TableRecord){}, st.watchers...)
		st.mu.Unlock()
		for _, w := range ws {
			w(r)
		}
	}
	done(nil)
}

func (v memView) Get(key string) (core.TableRecord, bool) {
	v.st.mu.Lock()
	defer v.st.mu.Unlock()
	r, ok := v.st.recs[key]
	return r, ok
}

func (v memView) CatchUp(context.Context) error { return nil }

func (v memView) Watch(f func(core.TableRecord)) {
	v.st.mu.Lock()
	v.st.watchers = append(v.st.watchers, f)
	v.st.mu.Unlock()
}

// record returns the store's session record of id; nil for none or a tombstone.
func (st *memStore) record(t *testing.T, id string) *sessionRecord {
	t.Helper()
	st.mu.Lock()
	r, ok := st.recs[id]
	st.mu.Unlock()
	if !ok || r.Value == nil {
		return nil
	}
	var sr sessionRecord
	if err := json.Unmarshal(r.Value, &sr); err != nil {
		t.Fatal(err)
	}
	return &sr
}

func (st *memStore) version(id string) core.Version {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.recs[id].Version
}

// twoNodes are two MQTT servers over two Hubs that see the same Kafka
// (topic demo, one partition, epoch 1) and share a sessions table.
type twoNodes struct {
	store *memStore
	nodes [2]*harness
	mu    sync.Mutex
	off   int64
}

func newTwoNodes(t *testing.T, a *auth.Auth) *twoNodes {
	t.Helper()
	tn := &twoNodes{store: newMemStore()}
	for i := range tn.nodes {
		hub := core.NewHub(core.CacheConfig{})
		hub.Begin("demo", 1, 0, 0)
		exp, err := core.NewExposure(nil, "")
		if err != nil {
			t.Fatal(err)
		}
		tn.nodes[i] = startHarness(t, Config{Sessions: memView{tn.store}, NodeName: fmt.Sprint("node", i+1)},
			&core.Node{Hub: hub, Exposure: exp, Auth: a})
	}
	return tn
}

// dispatch plays a record of subject on both nodes, at the same position.
func (tn *twoNodes) dispatch(subject, payload string) {
	subj, err := core.ParseSubject(subject)
	if err != nil {
		panic(err)
	}
	tn.mu.Lock()
	pos := core.Position{Epoch: 1, Offset: tn.off}
	tn.off++
	tn.mu.Unlock()
	for _, h := range tn.nodes {
		h.srv.node.Hub.Dispatch(&core.Message{Subject: subj.Name, Topic: subj.Topic, Key: subj.Key, HasKey: subj.HasKey,
			Payload: []byte(payload), Time: time.Now(), Pos: pos})
	}
}

// A persistent session moves to another node: its subscriptions come
// along, it gets exactly what it had not acknowledged and what it missed,
// in order, and the first node lets go of it.
func TestSessionMovesToAnotherNode(t *testing.T) {
	for _, v := range []byte{4, 5} {
		t.Run(fmt.Sprintf("v%d", v), func(t *testing.T) {
			tn := newTwoNodes(t, nil)
			n1, n2 := tn.nodes[0], tn.nodes[1]
			var opts []connectOpt
			if v == 5 {
				opts = append(opts, withExpiry(60))
			}
			c := dial(t, n1.addr, v)
			c.mustConnect("dev", false, opts...)
			c.subscribe(1, sub("demo/#", 1))
			for i := range 3 {
				tn.dispatch("/demo/k1", fmt.Sprint("acked", i))
				c.puback(c.message("demo/k1", fmt.Sprint("acked", i)).PacketID)
			}
			tn.dispatch("/demo/k2", "unacked")
			c.message("demo/k2", "unacked") // no PUBACK
			_ = c.nc.Close()
			waitFor(t, 5*time.Second, "the session to go offline", func() bool { return n1.srv.Stats().OfflineSessions == 1 })
			waitFor(t, 5*time.Second, "the final record", func() bool {
				r := tn.store.record(t, "dev")
				return r != nil && !r.Online && len(r.Subs) == 1 && r.Subs[0].Cursor == "1-0-2"
			})
			for i := range 5 {
				tn.dispatch(fmt.Sprint("/demo/k", i%2), fmt.Sprint("missed", i))
			}
			c = dial(t, n2.addr, v)
			if ack := c.mustConnect("dev", false, opts...); !ack.SessionPresent {
				t.Fatal("session not present on the other node")
			}
			c.puback(c.message("demo/k2", "unacked").PacketID)
			for i := range 5 {
				c.puback(c.message(fmt.Sprint("demo/k", i%2), fmt.Sprint("missed", i)).PacketID)
			}
			c.quiet(100 * time.Millisecond)
			waitFor(t, 5*time.Second, "node 1 to let go", func() bool {
				st := n1.srv.Stats()
				return st.Sessions == 0 && st.MovedAway == 1 && st.Subscriptions == 0
			})
			if st := n2.srv.Stats(); st.TakenOver != 1 || st.Subscriptions != 1 {
				t.Fatalf("node 2: %+v", st)
			}
			if ver := tn.store.version("dev"); ver.Node != "node2" || ver.Gen != 2 {
				t.Fatalf("record version %+v", ver)
			}
			tn.dispatch("/demo/k1", "live")
			c.puback(c.message("demo/k1", "live").PacketID)
			// Back to node 1: it takes the session over again, with nothing old.
			_ = c.nc.Close()
			waitFor(t, 5*time.Second, "node 2's final record", func() bool {
				r := tn.store.record(t, "dev")
				return r != nil && !r.Online && r.Subs[0].Cursor == "1-0-9"
			})
			c = dial(t, n1.addr, v)
			if ack := c.mustConnect("dev", false, opts...); !ack.SessionPresent {
				t.Fatal("session not present back on node 1")
			}
			c.quiet(100 * time.Millisecond)
			tn.dispatch("/demo/k1", "again")
			c.message("demo/k1", "again")
			waitFor(t, 5*time.Second, "node 2 to let go", func() bool { return n2.srv.Stats().Sessions == 0 })
		})
	}
}

// The same client identifier connected to two nodes: the first node's
// connection is disconnected with "session taken over".
func TestSessionTakeoverAcrossNodes(t *testing.T) {
	tn := newTwoNodes(t, nil)
	first := dial(t, tn.nodes[0].addr, 5)
	first.mustConnect("dev", false, withExpiry(60))
	first.subscribe(1, sub("demo/k1", 1))
	waitFor(t, 5*time.Second, "the record", func() bool { r := tn.store.record(t, "dev"); return r != nil && len(r.Subs) == 1 })
	second := dial(t, tn.nodes[1].addr, 5)
	if ack := second.mustConnect("dev", false, withExpiry(60)); !ack.SessionPresent {
		t.Fatal("session not present")
	}
	got := first.closed(5 * time.Second)
	if len(got) != 1 || got[0].FixedHeader.Type != packets.Disconnect || got[0].ReasonCode != packets.ErrSessionTakenOver.Code {
		t.Fatalf("first connection got %+v", got)
	}
	tn.dispatch("/demo/k1", "to the second")
	second.message("demo/k1", "to the second")
}

// A record of another identity is not taken over: the client starts a new
// session, and the old one ends on its node.
func TestSessionOfAnotherOwnerNotTakenOver(t *testing.T) {
	tn := newTwoNodes(t, staticAuth(t, time.Now().Add(time.Hour)))
	c := dial(t, tn.nodes[0].addr, 5)
	c.mustConnect("dev", false, withExpiry(60), withPassword("", "alice-token"))
	c.subscribe(1, sub("demo/#", 1))
	_ = c.nc.Close()
	waitFor(t, 5*time.Second, "the final record", func() bool { r := tn.store.record(t, "dev"); return r != nil && !r.Online })
	tn.dispatch("/demo/k1", "for alice")
	b := dial(t, tn.nodes[1].addr, 5)
	if ack := b.mustConnect("dev", false, withExpiry(60), withPassword("", "bob-token")); ack.SessionPresent {
		t.Fatal("bob got alice's session")
	}
	b.quiet(200 * time.Millisecond)
	if st := tn.nodes[1].srv.Stats(); st.TakenOver != 0 || st.Subscriptions != 0 {
		t.Fatalf("node 2: %+v", st)
	}
	waitFor(t, 5*time.Second, "bob's record", func() bool { r := tn.store.record(t, "dev"); return r != nil && r.Owner == "bob" })
	waitFor(t, 5*time.Second, "node 1 to end alice's session", func() bool { return tn.nodes[0].srv.Stats().Sessions == 0 })
	// Alice comes back: her session is gone (bob's is not hers).
	_ = b.nc.Close()
	c = dial(t, tn.nodes[0].addr, 5)
	if ack := c.mustConnect("dev", false, withExpiry(60), withPassword("", "alice-token")); ack.SessionPresent {
		t.Fatal("alice's session present after bob took the identifier")
	}
}

// A clean start ends the session everywhere: its record is deleted.
func TestCleanStartDeletesRecord(t *testing.T) {
	tn := newTwoNodes(t, nil)
	c := dial(t, tn.nodes[0].addr, 4)
	c.mustConnect("dev", false)
	c.subscribe(1, sub("demo/#", 1))
	_ = c.nc.Close()
	waitFor(t, 5*time.Second, "the final record", func() bool { r := tn.store.record(t, "dev"); return r != nil && !r.Online })
	c = dial(t, tn.nodes[1].addr, 4)
	if ack := c.mustConnect("dev", true); ack.SessionPresent {
		t.Fatal("clean session present")
	}
	waitFor(t, 5*time.Second, "the tombstone", func() bool {
		tn.store.mu.Lock()
		r, ok := tn.store.recs["dev"]
		tn.store.mu.Unlock()
		return ok && r.Value == nil && r.Version.Node == "node2"
	})
	waitFor(t, 5*time.Second, "node 1 to end it", func() bool { return tn.nodes[0].srv.Stats().Sessions == 0 })
	_ = c.nc.Close()
	c = dial(t, tn.nodes[0].addr, 4)
	if ack := c.mustConnect("dev", false); ack.SessionPresent {
		t.Fatal("session present after a clean start")
	}
}

// Positions are checkpointed at most every second while they move, not
// once per message.
func TestCheckpointsCoalesce(t *testing.T) {
	tn := newTwoNodes(t, nil)
	c := dial(t, tn.nodes[0].addr, 4)
	c.mustConnect("dev", false)
	c.subscribe(1, sub("demo/k1", 1), sub("demo/k2", 0))
	waitFor(t, 5*time.Second, "the record", func() bool { r := tn.store.record(t, "dev"); return r != nil && len(r.Subs) == 2 })
	tn.store.mu.Lock()
	before := tn.store.puts
	tn.store.mu.Unlock()
	start := time.Now()
	for i := range 200 {
		tn.dispatch("/demo/k1", fmt.Sprint(i))
		c.puback(c.message("demo/k1", fmt.Sprint(i)).PacketID)
		tn.dispatch("/demo/k2", fmt.Sprint(i))
		c.message("demo/k2", fmt.Sprint(i))
	}
	waitFor(t, 5*time.Second, "the positions", func() bool {
		r := tn.store.record(t, "dev")
		return r != nil && r.Subs[0].Cursor == "1-0-398" && r.Subs[1].Cursor == "1-0-399"
	})
	tn.store.mu.Lock()
	writes := tn.store.puts - before
	tn.store.mu.Unlock()
	if limit := int(time.Since(start)/checkpointInterval) + 2; writes > limit {
		t.Fatalf("%d writes in %v", writes, time.Since(start))
	}
}

// Shutdown waits for the acknowledgements of what is in flight and leaves
// the exact positions behind: the client resumes on the other node with
// nothing twice.
func TestShutdownLeavesSession(t *testing.T) {
	tn := newTwoNodes(t, nil)
	n1, n2 := tn.nodes[0], tn.nodes[1]
	c := dial(t, n1.addr, 5)
	c.mustConnect("dev", false, withExpiry(60))
	c.subscribe(1, sub("demo/k1", 1))
	tn.dispatch("/demo/k1", "m0")
	pk := c.message("demo/k1", "m0")
	done := make(chan struct{})
	go func() {
		defer close(done)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		n1.srv.Shutdown(ctx)
	}()
	time.Sleep(100 * time.Millisecond) // shutdown waits for the PUBACK
	tn.dispatch("/demo/k1", "m1")      // not written any more
	c.puback(pk.PacketID)
	got := c.closed(5 * time.Second)
	if len(got) != 1 || got[0].FixedHeader.Type != packets.Disconnect || got[0].ReasonCode != packets.ErrServerShuttingDown.Code {
		t.Fatalf("got %+v", got)
	}
	<-done
	if r := tn.store.record(t, "dev"); r == nil || r.Online || r.Subs[0].Cursor != "1-0-0" {
		t.Fatalf("record after shutdown: %+v", r)
	}
	c = dial(t, n2.addr, 5)
	if ack := c.mustConnect("dev", false, withExpiry(60)); !ack.SessionPresent {
		t.Fatal("session not present")
	}
	c.message("demo/k1", "m1")
	c.quiet(100 * time.Millisecond)
}

// A session taken over is in the table before CONNACK: a client that
// leaves the new node at once for a third is resumed from it, not from
// the older record, even when writes take a while to land.
func TestTakeoverWrittenBeforeConnack(t *testing.T) {
	tn := newTwoNodes(t, nil)
	n1, n2 := tn.nodes[0], tn.nodes[1]
	c := dial(t, n1.addr, 5)
	c.mustConnect("dev", false, withExpiry(60))
	c.subscribe(1, sub("demo/k1", 1))
	_ = c.nc.Close()
	waitFor(t, 5*time.Second, "the final record", func() bool { r := tn.store.record(t, "dev"); return r != nil && !r.Online })
	tn.store.slow(t, 100*time.Millisecond)
	tn.dispatch("/demo/k1", "m0")
	c = dial(t, n2.addr, 5)
	if ack := c.mustConnect("dev", false, withExpiry(60)); !ack.SessionPresent {
		t.Fatal("session not present")
	}
	if ver := tn.store.version("dev"); ver.Node != "node2" {
		t.Fatalf("CONNACK before the takeover's record was written: version %+v", ver)
	}
	c.puback(c.message("demo/k1", "m0").PacketID)
	c.write(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Disconnect}})
	c.closed(5 * time.Second)
	c = dial(t, n1.addr, 5)
	if ack := c.mustConnect("dev", false, withExpiry(60)); !ack.SessionPresent {
		t.Fatal("session not present back on node 1")
	}
	c.quiet(300 * time.Millisecond) // m0 was acknowledged on node 2
}

// A record that has expired, or of another MQTT version, is not taken over.
func TestExpiredOrOtherVersionNotTakenOver(t *testing.T) {
	tn := newTwoNodes(t, nil)
	c := dial(t, tn.nodes[0].addr, 4)
	c.mustConnect("dev", false)
	c.subscribe(1, sub("demo/#", 1))
	_ = c.nc.Close()
	waitFor(t, 5*time.Second, "the final record", func() bool { r := tn.store.record(t, "dev"); return r != nil && !r.Online })
	// MQTT 5 does not resume an MQTT 3.1.1 session.
	c5 := dial(t, tn.nodes[1].addr, 5)
	if ack := c5.mustConnect("dev", false, withExpiry(60)); ack.SessionPresent {
		t.Fatal("an MQTT 3.1.1 session resumed by MQTT 5")
	}
	_ = c5.nc.Close()
	waitFor(t, 5*time.Second, "node 2's record", func() bool {
		r := tn.store.record(t, "dev")
		return r != nil && r.V5 && !r.Online
	})
	// Expired: the record is there, but past its time.
	tn.store.mu.Lock()
	r := tn.store.recs["dev"]
	r.Expires = time.Now().Add(-time.Second)
	tn.store.recs["dev"] = r
	tn.store.mu.Unlock()
	c5 = dial(t, tn.nodes[0].addr, 5)
	if ack := c5.mustConnect("dev", false, withExpiry(60)); ack.SessionPresent {
		t.Fatal("an expired session resumed")
	}
}
