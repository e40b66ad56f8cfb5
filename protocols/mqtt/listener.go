package mqtt

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/mochi-mqtt/server/v2/listeners"

	"github.com/kedgehq/kedge/auth"
)

// tcpListener is mochi's listener for MQTT over TCP (or TLS). It replaces
// mochi's own to wrap every connection in a netConn, give it a connect
// timeout, survive accept errors such as running out of file descriptors,
// and let Shutdown stop accepting before mochi closes anything.
type tcpListener struct {
	srv  *Server
	addr string
	ln   net.Listener

	mu      sync.Mutex
	stopped bool
	done    chan struct{} // closed when Serve returns
}

func (l *tcpListener) ID() string       { return listenerTCP }
func (l *tcpListener) Address() string  { return l.ln.Addr().String() }
func (l *tcpListener) Protocol() string { return "tcp" }

// Init opens the listening socket.
func (l *tcpListener) Init(*slog.Logger) error {
	ln, err := net.Listen("tcp", l.addr)
	if err != nil {
		return err
	}
	l.ln, l.done = ln, make(chan struct{})
	return nil
}

// Serve accepts connections until the listener is stopped.
func (l *tcpListener) Serve(listeners.EstablishFn) {
	defer close(l.done)
	var backoff time.Duration
	for {
		raw, err := l.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of file descriptors and the like: wait and try again.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			l.srv.log.Warn("mqtt accept failed", "err", err, "retry_in", backoff)
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		if !l.srv.track() {
			_ = raw.Close()
			continue
		}
		go l.serve(raw)
	}
}

func (l *tcpListener) serve(raw net.Conn) {
	defer l.srv.accepts.Done()
	release, refused := l.srv.node.Admit(auth.ProtocolMQTT, raw.RemoteAddr().String())
	if refused != nil {
		// The refusal is answered in CONNACK (OnConnect), which needs the
		// client's CONNECT; a bounded number of refused connections wait
		// for theirs, the rest are closed at once.
		if l.srv.refusing.Add(1) > maxRefusing {
			l.srv.refusing.Add(-1)
			_ = raw.Close()
			return
		}
		defer l.srv.refusing.Add(-1)
	} else {
		defer release()
	}
	if t := l.srv.tls; t != nil {
		tc := tls.Server(raw, t)
		_ = raw.SetDeadline(time.Now().Add(l.srv.cfg.ConnectTimeout))
		ctx, cancel := context.WithTimeout(context.Background(), l.srv.cfg.ConnectTimeout)
		err := tc.HandshakeContext(ctx)
		cancel()
		if err != nil {
			l.srv.log.Debug("mqtt TLS handshake failed", "remote", raw.RemoteAddr().String(), "err", err)
			_ = raw.Close()
			return
		}
		raw = tc
	}
	l.srv.serveConn(listenerTCP, newNetConn(raw, l.srv.cfg.WriteTimeout), refused)
}

// maxRefusing bounds the connections refused by a connection limit that
// wait (at most mqtt.connect.timeout) for their CONNECT to be answered.
const maxRefusing = 256

// stop closes the listening socket and waits for the accept loop to end.
func (l *tcpListener) stop() {
	if l.ln == nil {
		return
	}
	l.mu.Lock()
	first := !l.stopped
	l.stopped = true
	l.mu.Unlock()
	if first {
		_ = l.ln.Close()
	}
	<-l.done
}

// Close is mochi's: stop accepting and close what is left of its clients.
func (l *tcpListener) Close(closeClients listeners.CloseFn) {
	l.stop()
	closeClients(l.ID())
}

// wsListener stands for MQTT over WebSocket in mochi: the connections come
// from Server.ServeHTTP on kedge's HTTP listener.
type wsListener struct{}

func (wsListener) ID() string                      { return listenerWS }
func (wsListener) Address() string                 { return "" }
func (wsListener) Protocol() string                { return "ws" }
func (wsListener) Init(*slog.Logger) error         { return nil }
func (wsListener) Serve(listeners.EstablishFn)     {}
func (wsListener) Close(closeFn listeners.CloseFn) { closeFn(listenerWS) }

// quietHandler passes on mochi's errors and turns the rest of its log,
// most of which is about single clients (a bad packet, a dropped
// connection), into debug lines.
type quietHandler struct{ h slog.Handler }

func (q quietHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return l > slog.LevelDebug && q.h.Enabled(ctx, quieter(l))
}

func (q quietHandler) Handle(ctx context.Context, r slog.Record) error {
	r.Level = quieter(r.Level)
	return q.h.Handle(ctx, r)
}

func (q quietHandler) WithAttrs(as []slog.Attr) slog.Handler { return quietHandler{q.h.WithAttrs(as)} }
func (q quietHandler) WithGroup(n string) slog.Handler       { return quietHandler{q.h.WithGroup(n)} }

func quieter(l slog.Level) slog.Level {
	if l >= slog.LevelError {
		return l
	}
	return slog.LevelDebug
}
