package h1

import (
	"context"
	"net"
	"sync"
	"sync/atomic"
)

// Limiter caps the connections open to one backend, across every way of
// reaching it: the pools of its endpoints (the fast path) and the dialer
// of the standard path's http.Transport (DialContext). Each open
// connection, or dial in progress, holds one slot; closing it frees the
// slot.
//
// # Who waits for what
//
// A request that needs a connection and finds no idle one of its pool
// takes a free slot and dials. With every slot taken, it first closes an
// idle connection of another pool (or, for a retry that needs a fresh
// connection, of its own) and dials with that slot. Only when no pool holds
// an idle connection does it wait, in one FIFO queue shared with the
// Transport's dials (a want, like net/http's wantConn). A waiter is served,
// in queue order, by whichever comes first:
//   - a connection of its own pool finishing an exchange (Pool.put hands
//     it over, slot and all, instead of keeping it idle);
//   - any other connection closing or finishing (its slot is handed over:
//     a pool's connection is closed rather than kept idle, see put);
//   - its context ending (cancel).
//
// These race: a grant and a cancellation can happen at once. Both are
// decided under mu (want.done), so exactly one wins; a waiter that loses to
// a grant gives the connection or slot back. Hence, under mu, the
// invariant: while anyone waits, every slot is taken and no pool holds an
// idle connection.
//
// The standard path's idle connections are the Transport's and invisible
// here. The limiter asks for them to be closed (the closeIdle function,
// http.Transport.CloseIdleConnections) when a wait begins, and again each
// time the owner reports that a standard-path exchange ended (Reclaim),
// which is when a Transport connection can have gone idle: the Transport
// puts a connection back before the response body's final Read returns,
// hence before ReverseProxy returns. A Reclaim racing with a wait that
// begins is covered either way: the waiter's own closeIdle call comes after
// the connection went idle, or Reclaim sees the waiter. No polling.
//
// Create a Limiter with NewLimiter (the zero value allows no connection);
// it is safe for concurrent use.
type Limiter struct {
	max       int
	closeIdle func() // closes the standard path's idle connections; nil: none

	waiting atomic.Int32 // len(queue), for Reclaim without the lock

	mu    sync.Mutex // protects open, queue and every pool's idle stack
	open  int        // slots taken
	queue []*want    // FIFO, none done
	pools []*Pool
}

// want is one request waiting for a slot.
type want struct {
	pool  *Pool         // an idle connection of this pool also serves; nil: a slot only
	ready chan struct{} // closed when granted
	conn  *conn         // the connection granted with its slot; nil: a bare slot
	done  bool          // granted or canceled; under Limiter.mu
}

// NewLimiter returns a limiter of n open connections (at least 1).
// closeIdle, if not nil, closes idle connections the limiter does not
// manage itself (the standard path's Transport's).
func NewLimiter(n int, closeIdle func()) *Limiter {
	return &Limiter{max: max(n, 1), closeIdle: closeIdle}
}

// DialContext wraps dial (for http.Transport.DialContext) so that every
// connection it opens holds a slot until it is closed.
func (l *Limiter) DialContext(dial func(ctx context.Context, network, addr string) (net.Conn, error)) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		if err := l.acquire(ctx); err != nil {
			return nil, err
		}
		c, err := dial(ctx, network, addr)
		if err != nil {
			l.release()
			return nil, err
		}
		return &slotConn{Conn: c, l: l}, nil
	}
}

// Reclaim tells the limiter that an exchange over a connection it does not
// manage ended: if anyone waits for a slot, the idle connections of
// closeIdle are closed. It costs one atomic load otherwise.
func (l *Limiter) Reclaim() {
	if l.waiting.Load() > 0 && l.closeIdle != nil {
		l.closeIdle()
	}
}

// acquire takes a slot for a dial, waiting if need be.
func (l *Limiter) acquire(ctx context.Context) error {
	l.mu.Lock()
	if l.open < l.max {
		l.open++
		l.mu.Unlock()
		return nil
	}
	if victim := l.stealLocked(); victim != nil {
		l.mu.Unlock()
		victim.closeSocket()
		return nil
	}
	w := l.enqueueLocked(nil)
	l.mu.Unlock()
	_, err := l.wait(ctx, w)
	return err
}

// wait waits for w to be granted; a granted connection (of w.pool) is
// returned, or nil for a bare slot.
func (l *Limiter) wait(ctx context.Context, w *want) (*conn, error) {
	if l.closeIdle != nil {
		l.closeIdle()
	}
	select {
	case <-w.ready:
		return w.conn, nil
	case <-ctx.Done():
	}
	l.mu.Lock()
	if !w.done {
		w.done = true
		l.removeLocked(w)
		l.mu.Unlock()
		return nil, ctx.Err()
	}
	l.mu.Unlock()
	// Granted while giving up: give it back.
	if w.conn != nil {
		w.pool.put(w.conn)
	} else {
		l.release()
	}
	return nil, ctx.Err()
}

// release frees a slot: it goes to the first waiter, if any.
func (l *Limiter) release() {
	l.mu.Lock()
	l.releaseLocked()
	l.mu.Unlock()
}

func (l *Limiter) releaseLocked() {
	if len(l.queue) > 0 {
		l.grantLocked(l.queue[0], nil)
		return
	}
	l.open--
}

// grantLocked serves w, the first waiter, with c (nil: a bare slot).
func (l *Limiter) grantLocked(w *want, c *conn) {
	l.queue[0] = nil
	l.queue = l.queue[1:]
	l.waiting.Add(-1)
	w.done, w.conn = true, c
	close(w.ready)
}

func (l *Limiter) enqueueLocked(p *Pool) *want {
	w := &want{pool: p, ready: make(chan struct{})}
	l.queue = append(l.queue, w)
	l.waiting.Add(1)
	return w
}

func (l *Limiter) removeLocked(w *want) {
	for i, q := range l.queue {
		if q == w {
			copy(l.queue[i:], l.queue[i+1:])
			l.queue[len(l.queue)-1] = nil
			l.queue = l.queue[:len(l.queue)-1]
			l.waiting.Add(-1)
			return
		}
	}
}

// stealLocked takes the least recently used idle connection of the first
// pool that has one; its slot passes to the caller, who closes its socket.
func (l *Limiter) stealLocked() *conn {
	for _, p := range l.pools {
		if len(p.idle) > 0 {
			c := p.idle[0]
			copy(p.idle, p.idle[1:])
			p.idle[len(p.idle)-1] = nil
			p.idle = p.idle[:len(p.idle)-1]
			return c
		}
	}
	return nil
}

// slotConn is a standard-path connection: closing it frees its slot, once.
type slotConn struct {
	net.Conn
	l    *Limiter
	once sync.Once
}

func (c *slotConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.l.release)
	return err
}
