package core

import (
	"errors"
	"fmt"
	"math"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kedgehq/kedge/auth"
)

// Errors of the limits every protocol applies alike; each maps to a stable
// error code (see Code).
var (
	// ErrServerFull: the node holds limits.max.connections connections.
	ErrServerFull = errors.New("the server holds its maximum number of connections")
	// ErrTooManyConnections: the client's IP address holds
	// limits.max.connections.per.ip connections.
	ErrTooManyConnections = errors.New("too many connections from this address")
	// ErrRateLimited: a connection published faster than limits.publish.rate.
	ErrRateLimited = errors.New("publish rate limit exceeded")
)

// Limit names one of the bounds kedge applies to clients; Limits counts
// every refusal by limit and protocol, for metrics.
type Limit int

// The limits refusals are counted by.
const (
	LimitConnections      Limit = iota // limits.max.connections
	LimitConnectionsPerIP              // limits.max.connections.per.ip
	LimitPublishRate                   // limits.publish.rate
	LimitSubscriptions                 // ws/sse/mqtt.max.subscriptions
	LimitPayload                       // ws.max.message.size, http.publish.max.payload, mqtt.max.packet.size
	LimitOrigin                        // http.cors.allowed.origins
	LimitHandshake                     // http.handshake.timeout, ws.auth.timeout, mqtt.connect.timeout
	numLimits
)

var limitNames = [numLimits]string{"connections", "connections_per_ip", "publish_rate", "subscriptions",
	"payload", "origin", "handshake"}

func (l Limit) String() string { return limitNames[l] }

// AllLimits returns every Limit, in order.
func AllLimits() []Limit {
	ls := make([]Limit, numLimits)
	for i := range ls {
		ls[i] = Limit(i)
	}
	return ls
}

// Protocols are the protocols refusals are counted for, in order.
var Protocols = []auth.Protocol{auth.ProtocolWS, auth.ProtocolSSE, auth.ProtocolMQTT, auth.ProtocolHTTP}

func protocolIndex(p auth.Protocol) int {
	for i, q := range Protocols {
		if q == p {
			return i
		}
	}
	return len(Protocols) - 1 // unknown protocols count as HTTP
}

// LimitsConfig are the bounds shared by every protocol. Zero means no bound.
type LimitsConfig struct {
	// MaxConnections bounds the open connections of the node: WebSocket
	// connections, SSE streams, HTTP publishes in flight and MQTT
	// connections, together.
	MaxConnections int
	// MaxConnectionsPerIP bounds the open connections of one client IP
	// address, counted the same way.
	MaxConnectionsPerIP int
	// PublishRate bounds the publishes per second of one connection (of
	// one client IP address for HTTP publishes).
	PublishRate float64
	// PublishBurst is how many publishes a connection may make at once
	// above the rate (default: the rate, at least 1).
	PublishBurst int
}

// maxRateEntries bounds the client addresses whose HTTP publish rates are
// remembered; past it, addresses whose bucket has refilled are forgotten,
// and when none has, every one is.
const maxRateEntries = 65536

// Limits applies the bounds of LimitsConfig, across protocols, in one place:
// adapters ask Node.Admit before serving a connection and take a Bucket
// per connection for its publishes. It counts every refusal (Limited). A
// nil *Limits bounds nothing and counts nothing. Safe for concurrent use.
type Limits struct {
	cfg LimitsConfig

	mu    sync.Mutex
	total int
	perIP map[string]int
	rates map[string]*Bucket // HTTP publishes, by client address

	hits [numLimits][4]atomic.Int64
}

// NewLimits returns Limits applying cfg.
func NewLimits(cfg LimitsConfig) *Limits {
	if cfg.PublishRate > 0 && cfg.PublishBurst <= 0 {
		cfg.PublishBurst = max(1, int(math.Ceil(cfg.PublishRate)))
	}
	return &Limits{cfg: cfg, perIP: make(map[string]int), rates: make(map[string]*Bucket)}
}

// Config returns the bounds.
func (l *Limits) Config() LimitsConfig {
	if l == nil {
		return LimitsConfig{}
	}
	return l.cfg
}

// hostOf returns the IP address of a remote address ("host:port" or a bare
// host).
func hostOf(remote string) string {
	if h, _, err := net.SplitHostPort(remote); err == nil {
		return h
	}
	return remote
}

// Admit counts a new connection of proto from remote, or refuses it with an
// error wrapping ErrServerFull or ErrTooManyConnections (counted). release
// ends the count; calling it again does nothing.
func (l *Limits) Admit(proto auth.Protocol, remote string) (release func(), err error) {
	if l == nil {
		return func() {}, nil
	}
	ip := hostOf(remote)
	l.mu.Lock()
	switch {
	case l.cfg.MaxConnections > 0 && l.total >= l.cfg.MaxConnections:
		l.mu.Unlock()
		l.Limited(LimitConnections, proto)
		return nil, fmt.Errorf("%w (limits.max.connections: %d)", ErrServerFull, l.cfg.MaxConnections)
	case l.cfg.MaxConnectionsPerIP > 0 && l.perIP[ip] >= l.cfg.MaxConnectionsPerIP:
		l.mu.Unlock()
		l.Limited(LimitConnectionsPerIP, proto)
		return nil, fmt.Errorf("%w: %s holds %d (limits.max.connections.per.ip)", ErrTooManyConnections, ip, l.cfg.MaxConnectionsPerIP)
	}
	l.total++
	l.perIP[ip]++
	l.mu.Unlock()
	var once sync.Once
	return func() { once.Do(func() { l.release(ip) }) }, nil
}

func (l *Limits) release(ip string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.total--
	if n := l.perIP[ip] - 1; n > 0 {
		l.perIP[ip] = n
	} else {
		delete(l.perIP, ip)
	}
}

// Open returns the connections counted now.
func (l *Limits) Open() int {
	if l == nil {
		return 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.total
}

// Limited counts one refusal by limit of a proto client.
func (l *Limits) Limited(limit Limit, proto auth.Protocol) {
	if l != nil {
		l.hits[limit][protocolIndex(proto)].Add(1)
	}
}

// Hits returns how many refusals limit made for proto clients.
func (l *Limits) Hits(limit Limit, proto auth.Protocol) int64 {
	if l == nil {
		return 0
	}
	return l.hits[limit][protocolIndex(proto)].Load()
}

// NewBucket returns the publish rate bucket of a new connection; nil (which
// allows everything) when publishes are not rate limited.
func (l *Limits) NewBucket() *Bucket {
	if l == nil || l.cfg.PublishRate <= 0 {
		return nil
	}
	return newBucket(l.cfg.PublishRate, l.cfg.PublishBurst, time.Now())
}

// AllowPublish takes one publish from the bucket of remote's IP address
// (HTTP publishes, which have no connection of their own). It returns nil,
// or an error wrapping ErrRateLimited (counted) and how long until a
// publish would be allowed.
func (l *Limits) AllowPublish(proto auth.Protocol, remote string) (time.Duration, error) {
	if l == nil || l.cfg.PublishRate <= 0 {
		return 0, nil
	}
	ip := hostOf(remote)
	now := time.Now()
	l.mu.Lock()
	b := l.rates[ip]
	if b == nil {
		if len(l.rates) >= maxRateEntries {
			l.pruneRates(now)
		}
		b = newBucket(l.cfg.PublishRate, l.cfg.PublishBurst, now)
		l.rates[ip] = b
	}
	l.mu.Unlock()
	return l.Take(b, proto)
}

// pruneRates forgets the addresses whose bucket has refilled (they are as
// if new), and every address if none has. Callers hold l.mu.
func (l *Limits) pruneRates(now time.Time) {
	for ip, b := range l.rates {
		if b.full(now) {
			delete(l.rates, ip)
		}
	}
	if len(l.rates) >= maxRateEntries {
		clear(l.rates)
	}
}

// Take takes one publish from b (a connection's bucket): nil when allowed,
// else an error wrapping ErrRateLimited (counted) and how long until a
// publish would be allowed.
func (l *Limits) Take(b *Bucket, proto auth.Protocol) (time.Duration, error) {
	wait := b.take(time.Now())
	if wait == 0 {
		return 0, nil
	}
	l.Limited(LimitPublishRate, proto)
	return wait, fmt.Errorf("%w: at most %g publishes per second (burst %d) per connection (limits.publish.rate); the next is allowed in %v",
		ErrRateLimited, l.cfg.PublishRate, l.cfg.PublishBurst, max(wait, time.Millisecond).Round(time.Millisecond))
}

// Throttle takes one publish from b like Take, but instead of refusing
// when the bucket is empty it reserves the next token and returns how long
// the caller must wait before going on (counted as a refusal, once). For
// protocols that cannot refuse a publish (MQTT 3.1.1 has no negative
// acknowledgement): the connection is not read meanwhile, which slows its
// client down. Calls for one bucket must not overlap.
func (l *Limits) Throttle(b *Bucket, proto auth.Protocol) time.Duration {
	wait := b.reserve(time.Now())
	if wait > 0 {
		l.Limited(LimitPublishRate, proto)
	}
	return wait
}

// Bucket is a token bucket: it holds up to burst publishes and refills at
// rate per second. A nil *Bucket allows everything.
type Bucket struct {
	mu     sync.Mutex
	rate   float64
	burst  float64
	tokens float64
	last   time.Time
}

func newBucket(rate float64, burst int, now time.Time) *Bucket {
	return &Bucket{rate: rate, burst: float64(burst), tokens: float64(burst), last: now}
}

// refill adds the tokens earned since the last call, up to the burst.
// b.mu is held.
func (b *Bucket) refill(now time.Time) {
	if dt := now.Sub(b.last); dt > 0 {
		b.tokens = min(b.burst, b.tokens+dt.Seconds()*b.rate)
		b.last = now
	}
}

// take takes a token at now: 0 when one was there, else the time until
// one will be (never 0).
func (b *Bucket) take(now time.Time) time.Duration {
	if b == nil {
		return 0
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.refill(now)
	if b.tokens >= 1 {
		b.tokens--
		return 0
	}
	wait := time.Duration((1 - b.tokens) / b.rate * float64(time.Second))
	return max(wait, time.Nanosecond)
}

// reserve takes a token at now, going into debt when there is none: it
// returns how long until the debt is paid (0 when a token was there).
func (b *Bucket) reserve(now time.Time) time.Duration {
	if b == nil {
		return 0
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.refill(now)
	b.tokens--
	if b.tokens >= 0 {
		return 0
	}
	return time.Duration(-b.tokens / b.rate * float64(time.Second))
}

// full reports whether the bucket has refilled by now.
func (b *Bucket) full(now time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.tokens+now.Sub(b.last).Seconds()*b.rate >= b.burst
}
