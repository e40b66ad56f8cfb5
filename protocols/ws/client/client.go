// Package client is the Go SDK for kedge's WebSocket protocol
// (docs/protocol-ws.md). A Client keeps one connection open: when it drops,
// the Client reconnects with exponential backoff and jitter, resubscribes
// every subscription from the cursor of the last message it handed to the
// application, and the server sends what was missed, exactly once and in
// order. The application sees its handlers called and, only when history
// could not be recovered, a reset callback.
//
// Publish returns after kedge acknowledged the message, which kedge does only
// after Kafka did. Publishes made while disconnected wait in a bounded queue
// and are sent after reconnecting. A publish that was sent but not yet
// acknowledged when the connection dropped fails with ErrConnectionLost: it
// may or may not be in Kafka, and only the application can decide whether
// to publish it again.
package client

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

// Options tune a Client. The zero value of a field means its default.
type Options struct {
	// Header is sent with every handshake.
	Header http.Header
	// Dialer defaults to websocket.DefaultDialer.
	Dialer *websocket.Dialer
	// Token, when set, is called before every connection attempt; its result
	// is sent as the "token" query parameter (refresh it here).
	Token func(ctx context.Context) (string, error)
	// MinBackoff and MaxBackoff bound the wait between reconnection
	// attempts (defaults 100ms and 10s); each wait is jittered.
	MinBackoff, MaxBackoff time.Duration
	// MaxQueue bounds the publishes waiting for a connection (default 1000).
	MaxQueue int
	// Store keeps each subscription's cursor, so positions can survive a
	// restart of the application (default: in memory).
	Store PositionStore
	// Buffer bounds the messages received but not yet handled (default
	// 1024); when it is full the Client stops reading, and kedge applies
	// its slow-consumer policy.
	Buffer int
	// OnConnect and OnDisconnect, when set, are called on every connection
	// made and lost (from the Client's own goroutine; they must not block).
	OnConnect    func()
	OnDisconnect func(err error)
	Logger       *slog.Logger
}

func (o Options) withDefaults() Options {
	if o.Dialer == nil {
		o.Dialer = websocket.DefaultDialer
	}
	if o.MinBackoff <= 0 {
		o.MinBackoff = 100 * time.Millisecond
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = 10 * time.Second
	}
	if o.MaxQueue <= 0 {
		o.MaxQueue = 1000
	}
	if o.Store == nil {
		o.Store = NewMemoryStore()
	}
	if o.Buffer <= 0 {
		o.Buffer = 1024
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o
}

// Client is a kedge WebSocket client. It is safe for concurrent use.
type Client struct {
	url  string
	opts Options

	ctx        context.Context // canceled by Close
	cancel     context.CancelFunc
	done       chan struct{}
	events     chan func() // handler calls, in order
	dispatched chan struct{}

	mu      sync.Mutex
	conn    *websocket.Conn // nil while disconnected
	writeMu sync.Mutex
	nextID  int64
	pending map[int64]*call
	subs    map[string]*Subscription
	queue   []*call // publishes waiting for a connection
	err     error   // why the Client stopped, once it has
	ready   chan struct{}
}

// call is a request waiting for its ack or error; reply is closed when
// the connection it was sent on drops.
type call struct {
	req   map[string]any
	reply chan frame
}

// Connect dials kedge (retrying with backoff until ctx ends) and returns a
// Client that stays connected until Close. url is like
// ws://127.0.0.1:8080/v1/ws.
func Connect(ctx context.Context, url string, opts Options) (*Client, error) {
	cctx, cancel := context.WithCancel(context.Background())
	c := &Client{
		url: url, opts: opts.withDefaults(), ctx: cctx, cancel: cancel,
		done:       make(chan struct{}),
		dispatched: make(chan struct{}),
		pending:    make(map[int64]*call),
		subs:       make(map[string]*Subscription),
		ready:      make(chan struct{}),
	}
	c.events = make(chan func(), c.opts.Buffer)
	conn, err := c.dialRetrying(ctx)
	if err != nil {
		cancel()
		return nil, err
	}
	go c.dispatch()
	go c.run(conn)
	return c, nil
}

// dialRetrying dials until it succeeds, ctx ends, or the server refuses
// for good (a 4xx answer to the handshake).
func (c *Client) dialRetrying(ctx context.Context) (*websocket.Conn, error) {
	for attempt := 0; ; attempt++ {
		conn, err := c.dial(ctx)
		if err == nil || errors.Is(err, errRefused) {
			return conn, err
		}
		c.opts.Logger.Debug("kedge client: connect failed", "url", c.url, "attempt", attempt, "err", err)
		select {
		case <-time.After(c.backoff(attempt)):
		case <-ctx.Done():
			return nil, fmt.Errorf("kedge client: connect %s: %w (last error: %v)", c.url, ctx.Err(), err)
		case <-c.ctx.Done():
			return nil, ErrClosed
		}
	}
}

var errRefused = errors.New("refused by the server")

func (c *Client) dial(ctx context.Context) (*websocket.Conn, error) {
	u := c.url
	if c.opts.Token != nil {
		tok, err := c.opts.Token(ctx)
		if err != nil {
			return nil, fmt.Errorf("kedge client: token: %w", err)
		}
		parsed, err := url.Parse(u)
		if err != nil {
			return nil, fmt.Errorf("%w: bad url %q: %v", errRefused, u, err)
		}
		q := parsed.Query()
		q.Set("token", tok)
		parsed.RawQuery = q.Encode()
		u = parsed.String()
	}
	conn, resp, err := c.opts.Dialer.DialContext(ctx, u, c.opts.Header)
	if err != nil {
		if resp != nil && resp.StatusCode >= 400 && resp.StatusCode < 500 && resp.StatusCode != http.StatusTooManyRequests {
			return nil, fmt.Errorf("kedge client: dial %s: %w (HTTP %s)", c.url, errRefused, resp.Status)
		}
		return nil, fmt.Errorf("kedge client: dial %s: %w", c.url, err)
	}
	return conn, nil
}

// backoff is the jittered wait before reconnection attempt n.
func (c *Client) backoff(n int) time.Duration {
	d := c.opts.MinBackoff << min(n, 20)
	if d <= 0 || d > c.opts.MaxBackoff {
		d = c.opts.MaxBackoff
	}
	return d/2 + rand.N(d/2+1)
}

// run keeps the Client connected: serve a connection until it drops, then
// reconnect, until Close or a disconnect that says not to come back.
func (c *Client) run(conn *websocket.Conn) {
	defer close(c.done)
	defer close(c.events)
	for {
		err := c.session(conn)
		if c.ctx.Err() != nil {
			c.stop(ErrClosed)
			return
		}
		if c.opts.OnDisconnect != nil {
			c.opts.OnDisconnect(err)
		}
		var ce *CloseError
		if errors.As(err, &ce) && !ce.Reconnect() {
			c.stop(err)
			return
		}
		c.opts.Logger.Info("kedge client: disconnected; reconnecting", "err", err)
		if conn, err = c.dialRetrying(c.ctx); err != nil {
			if c.ctx.Err() != nil {
				err = ErrClosed
			}
			c.stop(err)
			return
		}
	}
}

// stop ends the Client for good: every waiting call fails with err.
func (c *Client) stop(err error) {
	c.mu.Lock()
	c.err = err
	calls := c.queue
	c.queue = nil
	for _, s := range c.subs {
		s.fail(err)
	}
	c.mu.Unlock()
	for _, cl := range calls {
		close(cl.reply)
	}
}

// session serves one connection: resubscribe, flush queued publishes, read.
func (c *Client) session(conn *websocket.Conn) error {
	defer func() { _ = conn.Close() }()
	c.mu.Lock()
	c.conn = conn
	close(c.ready)
	subs := make([]*Subscription, 0, len(c.subs))
	for _, s := range c.subs {
		subs = append(subs, s)
	}
	queued := c.queue
	c.queue = nil
	c.mu.Unlock()
	if c.opts.OnConnect != nil {
		c.opts.OnConnect()
	}
	for _, s := range subs {
		c.resubscribe(s)
	}
	for _, cl := range queued {
		// Cannot fail: c.conn is conn and c.err is nil while the session runs.
		_ = c.send(cl)
	}
	stopClose := context.AfterFunc(c.ctx, func() { c.closeConn(conn) })
	defer stopClose()
	err := c.readLoop(conn)
	c.mu.Lock()
	c.conn = nil
	c.ready = make(chan struct{})
	pending := c.pending
	c.pending = make(map[int64]*call)
	c.mu.Unlock()
	for _, cl := range pending {
		close(cl.reply) // a publish in flight: ErrConnectionLost
	}
	return err
}

func (c *Client) closeConn(conn *websocket.Conn) {
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	_ = conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
	_ = conn.Close()
}

// dispatch runs handlers one at a time, in the order messages arrived, on
// its own goroutine: a handler may call the Client. After Close it runs no
// more of them.
func (c *Client) dispatch() {
	defer close(c.dispatched)
	for ev := range c.events {
		if c.ctx.Err() != nil {
			continue // drain without running: the application closed us
		}
		ev()
	}
}

// Close closes the connection and stops reconnecting. Calls waiting for a
// reply fail with ErrClosed. When it returns no handler runs any more, and
// the PositionStore holds the cursor of the last message handled, so a new
// Client with the same store resumes exactly after it. (Close must not be
// called from a handler.)
func (c *Client) Close() error {
	c.cancel()
	<-c.done
	<-c.dispatched
	return nil
}

// Err returns why the Client stopped (ErrClosed after Close, a *CloseError
// when kedge said not to reconnect), or nil while it runs.
func (c *Client) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// Done is closed when the Client has stopped.
func (c *Client) Done() <-chan struct{} { return c.done }
