package core

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kedgehq/kedge/auth"
)

func TestAdmitTotalAndPerIP(t *testing.T) {
	l := NewLimits(LimitsConfig{MaxConnections: 5, MaxConnectionsPerIP: 2})
	var releases []func()
	admit := func(proto auth.Protocol, remote string) error {
		t.Helper()
		rel, err := l.Admit(proto, remote)
		if err == nil {
			releases = append(releases, rel)
		} else if rel != nil {
			t.Fatal("a refusal returned a release function")
		}
		return err
	}
	for _, r := range []string{"10.0.0.1:1", "10.0.0.1:2"} {
		if err := admit(auth.ProtocolWS, r); err != nil {
			t.Fatal(err)
		}
	}
	err := admit(auth.ProtocolMQTT, "10.0.0.1:3") // another protocol, the same address
	if !errors.Is(err, ErrTooManyConnections) || Code(err) != "too_many_connections" ||
		!strings.Contains(err.Error(), "10.0.0.1 holds 2 (limits.max.connections.per.ip)") {
		t.Fatalf("third connection from one address: %v (code %s)", err, Code(err))
	}
	if l.Hits(LimitConnectionsPerIP, auth.ProtocolMQTT) != 1 || l.Hits(LimitConnectionsPerIP, auth.ProtocolWS) != 0 {
		t.Fatal("the per-IP refusal is not counted for MQTT")
	}
	for _, r := range []string{"10.0.0.2:1", "10.0.0.3:1", "[::1]:5"} {
		if err := admit(auth.ProtocolSSE, r); err != nil {
			t.Fatal(err)
		}
	}
	if err := admit(auth.ProtocolHTTP, "10.0.0.9:1"); !errors.Is(err, ErrServerFull) || Code(err) != "server_full" {
		t.Fatalf("sixth connection: %v", err)
	}
	if l.Hits(LimitConnections, auth.ProtocolHTTP) != 1 || l.Open() != 5 {
		t.Fatalf("hits %d open %d", l.Hits(LimitConnections, auth.ProtocolHTTP), l.Open())
	}
	releases[0]()
	releases[0]() // a second release changes nothing
	if l.Open() != 4 {
		t.Fatalf("open %d after one release, want 4", l.Open())
	}
	if err := admit(auth.ProtocolWS, "10.0.0.1:4"); err != nil {
		t.Fatalf("after a release the address may connect again: %v", err)
	}
	for _, rel := range releases {
		rel()
	}
	if l.Open() != 0 || len(l.perIP) != 0 {
		t.Fatalf("open %d, addresses %d after releasing everything", l.Open(), len(l.perIP))
	}
}

func TestAdmitUnboundedAndNil(t *testing.T) {
	var none *Limits
	rel, err := none.Admit(auth.ProtocolWS, "x")
	if err != nil {
		t.Fatal(err)
	}
	rel()
	none.Limited(LimitOrigin, auth.ProtocolWS)
	if none.NewBucket() != nil || none.Hits(LimitOrigin, auth.ProtocolWS) != 0 {
		t.Fatal("nil Limits limit something")
	}
	l := NewLimits(LimitsConfig{})
	for i := range 1000 {
		if _, err := l.Admit(auth.ProtocolWS, "10.0.0.1:1"); err != nil {
			t.Fatalf("connection %d refused without limits: %v", i, err)
		}
	}
}

func TestAdmitConcurrent(t *testing.T) {
	l := NewLimits(LimitsConfig{MaxConnections: 50, MaxConnectionsPerIP: 10})
	var wg sync.WaitGroup
	var mu sync.Mutex
	admitted := map[string]int{}
	for i := range 400 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ip := fmt.Sprintf("10.0.0.%d", i%8)
			if _, err := l.Admit(auth.ProtocolWS, ip+":1"); err == nil {
				mu.Lock()
				admitted[ip]++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	total := 0
	for ip, n := range admitted {
		if n > 10 {
			t.Errorf("%s got %d connections, limit 10", ip, n)
		}
		total += n
	}
	if total != 50 || l.Open() != 50 {
		t.Fatalf("admitted %d, open %d, want 50 (8 addresses × 10 > 50)", total, l.Open())
	}
}

func TestBucket(t *testing.T) {
	t0 := time.Unix(1000, 0)
	b := newBucket(10, 3, t0)
	for i := range 3 {
		if w := b.take(t0); w != 0 {
			t.Fatalf("burst publish %d refused (wait %v)", i, w)
		}
	}
	if w := b.take(t0); w < 99*time.Millisecond || w > 101*time.Millisecond {
		t.Fatalf("fourth publish at once: wait %v, want 100ms", w)
	}
	if w := b.take(t0.Add(50 * time.Millisecond)); w == 0 {
		t.Fatal("half a token allowed a publish")
	}
	if w := b.take(t0.Add(100 * time.Millisecond)); w != 0 {
		t.Fatalf("a refilled token refused: wait %v", w)
	}
	if b.full(t0.Add(200*time.Millisecond)) || !b.full(t0.Add(time.Second)) {
		t.Fatal("full is wrong")
	}
	// A long pause refills only up to the burst.
	later := t0.Add(time.Hour)
	for range 3 {
		if b.take(later) != 0 {
			t.Fatal("refused within the burst after a pause")
		}
	}
	if b.take(later) == 0 {
		t.Fatal("the burst grew past its bound during a pause")
	}
	var none *Bucket
	if none.take(t0) != 0 {
		t.Fatal("a nil bucket refused")
	}
}

func TestThrottle(t *testing.T) {
	t0 := time.Unix(1000, 0)
	b := newBucket(10, 2, t0)
	for i := range 2 {
		if w := b.reserve(t0); w != 0 {
			t.Fatalf("burst publish %d waits %v", i, w)
		}
	}
	if w := b.reserve(t0); w < 99*time.Millisecond || w > 101*time.Millisecond {
		t.Fatalf("third publish waits %v, want 100ms", w)
	}
	// Having waited, the next one waits a full interval again.
	if w := b.reserve(t0.Add(100 * time.Millisecond)); w < 99*time.Millisecond || w > 101*time.Millisecond {
		t.Fatalf("fourth publish waits %v, want 100ms", w)
	}
	l := NewLimits(LimitsConfig{PublishRate: 1000, PublishBurst: 1})
	lb := l.NewBucket()
	if l.Throttle(lb, auth.ProtocolMQTT) != 0 || l.Throttle(lb, auth.ProtocolMQTT) == 0 {
		t.Fatal("throttle: the burst is not 1")
	}
	if l.Hits(LimitPublishRate, auth.ProtocolMQTT) != 1 {
		t.Fatal("the throttled publish is not counted")
	}
	if l.Throttle(nil, auth.ProtocolMQTT) != 0 {
		t.Fatal("a nil bucket throttles")
	}
}

func TestTakeAndAllowPublish(t *testing.T) {
	l := NewLimits(LimitsConfig{PublishRate: 2})
	if l.Config().PublishBurst != 2 {
		t.Fatalf("default burst %d, want the rate (2)", l.Config().PublishBurst)
	}
	b := l.NewBucket()
	for range 2 {
		if _, err := l.Take(b, auth.ProtocolWS); err != nil {
			t.Fatal(err)
		}
	}
	wait, err := l.Take(b, auth.ProtocolWS)
	if !errors.Is(err, ErrRateLimited) || Code(err) != "rate_limited" || wait <= 0 ||
		!strings.Contains(err.Error(), "at most 2 publishes per second (burst 2)") {
		t.Fatalf("third publish: %v wait %v", err, wait)
	}
	if l.Hits(LimitPublishRate, auth.ProtocolWS) != 1 {
		t.Fatal("the refusal is not counted")
	}
	// HTTP publishes share a bucket per address, not per port.
	for range 2 {
		if _, err := l.AllowPublish(auth.ProtocolHTTP, "10.0.0.1:5"); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := l.AllowPublish(auth.ProtocolHTTP, "10.0.0.1:6"); !errors.Is(err, ErrRateLimited) {
		t.Fatalf("third HTTP publish of one address: %v", err)
	}
	if _, err := l.AllowPublish(auth.ProtocolHTTP, "10.0.0.2:6"); err != nil {
		t.Fatalf("another address: %v", err)
	}
}

func TestRateEntriesBounded(t *testing.T) {
	l := NewLimits(LimitsConfig{PublishRate: 1000, PublishBurst: 1})
	for i := range maxRateEntries + 10 {
		if _, err := l.AllowPublish(auth.ProtocolHTTP, fmt.Sprintf("10.%d.%d.%d:1", i>>16, i>>8&255, i&255)); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(l.rates); n > maxRateEntries {
		t.Fatalf("%d addresses remembered, bound %d", n, maxRateEntries)
	}
}

func TestLimitNames(t *testing.T) {
	seen := map[string]bool{}
	for _, l := range AllLimits() {
		if l.String() == "" || seen[l.String()] {
			t.Fatalf("limit %d has no unique name", l)
		}
		seen[l.String()] = true
	}
}
