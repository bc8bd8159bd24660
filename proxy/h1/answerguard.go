package h1

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"sync/atomic"
	"syscall"
)

// The standard path's defence against a backend's unsolicited bytes.
//
// The fast path checks an idle connection for unread bytes when it takes it
// (Pool, clean). http.Transport, which carries everything else to a plain
// http:// backend (bodies, upgrades, CANARY_FAST_PATH=off), has a weaker
// check: its connection's read loop peeks while the connection is idle and
// drops the connection if bytes come, but when a request takes the
// connection between the answer's end and that peek, bytes already waiting
// in the socket (a body on a HEAD answer, an answer after the answer) are
// read as the new request's answer: one client gets another's bytes.
//
// GuardDial wraps each connection the Transport dials, and GuardAnswers
// tells it, through httptrace's PutIdleConn (called by the read loop itself,
// just before its idle peek), when the connection went back to the idle
// pool. While it is idle, the read loop's read waits for the socket to
// turn readable without taking anything (MSG_PEEK): the backend's close
// ends it as before (io.EOF, the Transport drops the connection), bytes
// fail it and spoil the connection. The first write of the next request
// first looks into the socket, as the fast path does, and fails, nothing
// written, if anything is there; only then does the read take bytes, as
// the answer. Nothing is consumed before that look, so the two cannot
// race. A failed write lets the Transport send the request again on
// another connection if it can (no body, or a GetBody: the proxy sets one
// for a body read whole), and fail it otherwise, with a 502. Bytes that arrive
// after the look are read as the answer, on either path: HTTP/1.1 cannot
// tell them apart.
//
// Bytes that come in the same read as the end of an answer stay in the
// Transport's buffer, beyond this guard; the Transport's own idle check
// drops the connection for them, unless a request takes it within the
// microsecond before that check.
//
// Only plaintext HTTP/1.1 connections are guarded: under TLS the socket
// carries records the TLS layer reads when it likes (session tickets), and
// HTTP/2 frames its own streams.

// errUnsolicited is a read of bytes nobody asked for, or a write on a
// connection that had some waiting.
var errUnsolicited = errors.New("backend sent bytes no request asked for")

// Phases of an answerConn. Its state is the phase and, above it, the
// number of the request that holds the connection (claim), so that a
// request's late return to the idle pool (PutIdleConn runs just after the
// Transport hands the connection on) does not end the next one's.
const (
	answerIdle    uint64 = iota // in the idle pool (or new): no answer awaited
	answerClaimed               // a request took it and has not written yet
	answerAwaited               // a request was written; its answer is read
	answerSpoilt                // unsolicited bytes came: never used again

	phaseBits = 2
	phaseMask = 1<<phaseBits - 1
)

// answerConn is a guarded backend connection of http.Transport.
type answerConn struct {
	net.Conn
	rc      syscall.RawConn // for the look into the socket; nil: cannot look
	state   atomic.Uint64   // request number << phaseBits | phase
	peekBuf [1]byte
}

func (c *answerConn) phase() uint64 { return c.state.Load() & phaseMask }

// spoil marks the connection unusable.
func (c *answerConn) spoil() {
	for {
		st := c.state.Load()
		if c.state.CompareAndSwap(st, st&^phaseMask|answerSpoilt) {
			return
		}
	}
}

// claim notes that a new request took the connection (httptrace's GotConn)
// and returns its number.
func (c *answerConn) claim() uint64 {
	for {
		st := c.state.Load()
		if st&phaseMask == answerSpoilt {
			return st >> phaseBits
		}
		n := st>>phaseBits + 1
		if c.state.CompareAndSwap(st, n<<phaseBits|answerClaimed) {
			return n
		}
	}
}

// idle notes that request n's answer is done and the connection went back
// to the idle pool (httptrace's PutIdleConn); a no-op if another request
// holds it already.
func (c *answerConn) idle(n uint64) {
	c.state.CompareAndSwap(n<<phaseBits|answerAwaited, n<<phaseBits) // answerIdle is 0
}

// GuardDial returns dial with every connection it makes guarded against
// unsolicited bytes, for an http.Transport of plain http:// backends whose
// requests go through GuardAnswers (see above).
func GuardDial(dial func(ctx context.Context, network, addr string) (net.Conn, error)) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		g := &answerConn{Conn: c}
		if sc, ok := c.(syscall.Conn); ok && canPeek {
			g.rc, _ = sc.SyscallConn()
		}
		return g, nil
	}
}

// Read reads an awaited answer. While none is awaited it waits, taking
// nothing, for a request's write or for something to come: the backend's
// close (io.EOF) or bytes nobody asked for (refused).
func (c *answerConn) Read(p []byte) (int, error) {
	for c.rc != nil && c.phase() != answerAwaited {
		if c.phase() == answerSpoilt {
			return 0, errUnsolicited
		}
		var (
			n    int
			perr error
		)
		err := c.rc.Read(func(fd uintptr) bool {
			n, perr = peekSocket(fd, c.peekBuf[:])
			return !nothingYet(perr)
		})
		switch {
		case err != nil:
			return 0, err
		case c.phase() == answerAwaited:
			// A request was written meanwhile, after its write found the
			// socket empty: what came is its answer.
		case perr != nil:
			return 0, perr
		case n == 0:
			return 0, io.EOF // the backend closed the idle connection
		default:
			c.spoil() // bytes before any request was sent
		}
	}
	n, err := c.Conn.Read(p)
	if n > 0 && c.phase() != answerAwaited { // only without rc
		c.spoil()
		return 0, errUnsolicited
	}
	return n, err
}

// Write sends a request's bytes; the first write of a request on an idle
// connection first makes sure nothing is waiting in the socket.
func (c *answerConn) Write(p []byte) (int, error) {
	if st := c.state.Load(); st&phaseMask != answerAwaited {
		if st&phaseMask == answerSpoilt || c.waiting() {
			c.spoil()
			return 0, errUnsolicited
		}
		if !c.state.CompareAndSwap(st, st&^phaseMask|answerAwaited) {
			return 0, errUnsolicited // spoilt by the read side meanwhile
		}
	}
	return c.Conn.Write(p)
}

// waiting reports whether bytes (or the backend's close) wait in the
// socket.
func (c *answerConn) waiting() bool {
	if c.rc == nil {
		return false // cannot look: the read side still refuses them
	}
	var waiting bool
	if err := c.rc.Control(func(fd uintptr) { waiting = peekWaiting(fd, c.peekBuf[:]) }); err != nil {
		return true
	}
	return waiting
}

// answerGuard returns the guard of a connection dialed through GuardDial
// (and the Limiter's DialContext), or nil.
func answerGuard(c net.Conn) *answerConn {
	if sc, ok := c.(*slotConn); ok {
		c = sc.Conn
	}
	g, _ := c.(*answerConn)
	return g
}

// GuardAnswers returns rt, an http.Transport dialing through GuardDial,
// telling each connection when it goes back to the idle pool (see above).
// A request's connection is learned from httptrace's GotConn, and its
// return from PutIdleConn.
func GuardAnswers(rt http.RoundTripper) http.RoundTripper { return answerTransport{rt} }

type answerTransport struct{ rt http.RoundTripper }

func (t answerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	var (
		conn atomic.Pointer[answerConn]
		num  atomic.Uint64
	)
	trace := &httptrace.ClientTrace{
		GotConn: func(info httptrace.GotConnInfo) {
			if g := answerGuard(info.Conn); g != nil {
				num.Store(g.claim())
				conn.Store(g)
			}
		},
		PutIdleConn: func(err error) {
			if g := conn.Load(); err == nil && g != nil {
				g.idle(num.Load())
			}
		},
	}
	return t.rt.RoundTrip(r.WithContext(httptrace.WithClientTrace(r.Context(), trace)))
}
