package h1

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"sync"
	"time"
)

// TLSListener terminates TLS itself, so that the framing guard sees the
// plaintext of HTTP/1.1 over TLS too.
//
// net/http must be handed a *tls.Conn to negotiate HTTP/2 and to fill in
// Request.TLS, and a guarded connection is not one. So the listener does
// the handshake (on a goroutine per connection, off the Accept loop, bounded
// by the handshake timeout, as net/http would), then returns a connection
// that negotiated "h2" by ALPN as the *tls.Conn itself (HTTP/2 frames its
// messages and has none of HTTP/1.1's ambiguities), and any other guarded.
// net/http serves the guarded ones as plain HTTP/1.1; ConnContext carries
// their TLS state to the handler (TLSState), which sets Request.TLS from it.
//
// The server must be run with Serve (not ServeTLS) on this listener, with a
// TLSConfig whose NextProtos include "h2" so that it configures HTTP/2.
type tlsListener struct {
	inner   net.Listener
	config  *tls.Config
	timeout time.Duration
	guard   GuardConfig

	ready  chan net.Conn      // handshaken connections for Accept
	ctx    context.Context    // ended by Close: handshakes in flight give up
	cancel context.CancelFunc //
	done   chan struct{}      // closed when the accept loop has ended
	err    error              // why it ended; read only after done
	wg     sync.WaitGroup     // the accept loop and the handshakes
	once   sync.Once
}

// TLSListener returns a listener terminating TLS on ln with config (whose
// NextProtos it sets to h2 and http/1.1), guarding the HTTP/1.1
// connections. A handshake must finish within handshakeTimeout (zero means
// 10s). Close stops the handshakes in flight.
func TLSListener(ln net.Listener, config *tls.Config, handshakeTimeout time.Duration, g GuardConfig) net.Listener {
	if handshakeTimeout <= 0 {
		handshakeTimeout = 10 * time.Second
	}
	config = config.Clone()
	config.NextProtos = []string{"h2", "http/1.1"}
	ctx, cancel := context.WithCancel(context.Background())
	l := &tlsListener{
		inner: ln, config: config, timeout: handshakeTimeout, guard: g,
		ready: make(chan net.Conn), ctx: ctx, cancel: cancel, done: make(chan struct{}),
	}
	l.wg.Go(l.acceptLoop)
	return l
}

// acceptLoop accepts raw connections until the listener fails or closes,
// retrying transient failures (too many open files) with net/http's
// backoff.
func (l *tlsListener) acceptLoop() {
	defer close(l.done)
	var delay time.Duration
	for {
		raw, err := l.inner.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) || l.ctx.Err() != nil {
				l.err = err
				return
			}
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			select {
			case <-time.After(delay):
				continue
			case <-l.ctx.Done():
				l.err = net.ErrClosed
				return
			}
		}
		delay = 0
		l.wg.Go(func() { l.handshake(raw) })
	}
}

// handshake completes the TLS handshake of raw and hands the connection to
// Accept.
func (l *tlsListener) handshake(raw net.Conn) {
	ctx, cancel := context.WithTimeout(l.ctx, l.timeout)
	defer cancel()
	tc := tls.Server(raw, l.config)
	if err := tc.HandshakeContext(ctx); err != nil {
		// Plain HTTP on the TLS port gets the answer net/http gives it.
		var re tls.RecordHeaderError
		if errors.As(err, &re) && re.Conn != nil && looksLikeHTTP(re.RecordHeader) {
			_ = re.Conn.SetWriteDeadline(time.Now().Add(time.Second))
			_, _ = io.WriteString(re.Conn, "HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n")
		}
		_ = raw.Close()
		return
	}
	var c net.Conn = tc
	if st := tc.ConnectionState(); st.NegotiatedProtocol != "h2" {
		c = newGuardConn(tc, &l.guard, &st)
	}
	select {
	case l.ready <- c:
	case <-l.ctx.Done():
		_ = c.Close()
	}
}

func (l *tlsListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ready:
		return c, nil
	case <-l.done:
		return nil, l.err
	}
}

// Close stops accepting, aborts the handshakes in flight and waits for
// them.
func (l *tlsListener) Close() error {
	var err error
	l.once.Do(func() {
		l.cancel()
		err = l.inner.Close()
		l.wg.Wait()
	})
	return err
}

func (l *tlsListener) Addr() net.Addr { return l.inner.Addr() }

// tlsStateKey is the context key of a guarded connection's TLS state.
type tlsStateKey struct{}

// ConnContext is http.Server.ConnContext for a server on a TLSListener: it
// keeps the TLS state of an HTTP/1.1 connection, which net/http cannot see
// through the guard, in the connection's context.
func ConnContext(ctx context.Context, c net.Conn) context.Context {
	if g, ok := c.(*guardConn); ok && g.tls != nil {
		return context.WithValue(ctx, tlsStateKey{}, g.tls)
	}
	return ctx
}

// TLSState returns the TLS state ConnContext kept for a request's
// connection, or nil.
func TLSState(ctx context.Context) *tls.ConnectionState {
	st, _ := ctx.Value(tlsStateKey{}).(*tls.ConnectionState)
	return st
}
