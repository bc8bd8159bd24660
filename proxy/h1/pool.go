package h1

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"syscall"
	"time"
)

// PoolConfig configures the pool of one endpoint. Zero values mean the
// documented defaults.
type PoolConfig struct {
	// Addr is the endpoint's host:port. Required.
	Addr string
	// DialTimeout bounds a dial (zero: 5s); KeepAlive is the TCP
	// keep-alive period (zero: 30s).
	DialTimeout, KeepAlive time.Duration
	// MaxIdle caps the idle connections kept (zero: 512); IdleTimeout
	// closes one idle for longer (zero: 90s).
	MaxIdle     int
	IdleTimeout time.Duration
	// ResponseHeaderTimeout bounds the wait for an answer's head, from the
	// start of the exchange until its last byte (zero: 60s).
	ResponseHeaderTimeout time.Duration
	// MaxResponseHeaderBytes bounds an answer's head (zero: 64 KiB); a
	// larger one is ErrResponseHeaderTooLarge.
	MaxResponseHeaderBytes int
	// Buffers lends the buffers for copying bodies. Nil: 32 KiB buffers
	// from an internal sync.Pool.
	Buffers BufferPool
}

// BufferPool lends byte slices for copying bodies (httputil.BufferPool's
// method set).
type BufferPool interface {
	Get() []byte
	Put([]byte)
}

// Defaults for the zero values of PoolConfig.
const (
	DefaultDialTimeout            = 5 * time.Second
	DefaultKeepAlive              = 30 * time.Second
	DefaultMaxIdle                = 512
	DefaultIdleTimeout            = 90 * time.Second
	DefaultResponseHeaderTimeout  = 60 * time.Second
	DefaultMaxResponseHeaderBytes = 64 << 10
)

// connBufferSize is each connection's read buffer: a common answer's head
// and small body fit; a larger head gets a larger buffer for its exchange.
const connBufferSize = 4 << 10

// Pool holds the keep-alive connections to one endpoint (one address) and
// exchanges requests over them. Its connections count against its Limiter,
// which may be shared with other pools and a Transport. Create it with
// NewPool; it is safe for concurrent use.
type Pool struct {
	lim    *Limiter
	cfg    PoolConfig
	dialer net.Dialer
	yield  *yielder // before reading an answer

	// Under lim.mu:
	idle   []*conn // LIFO: the most recently used on top, the oldest at 0
	closed bool    // Close was called: connections close after their exchange
}

// NewPool returns the pool of cfg.Addr, drawing slots from lim.
func NewPool(lim *Limiter, cfg PoolConfig) *Pool {
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = DefaultDialTimeout
	}
	if cfg.KeepAlive == 0 {
		cfg.KeepAlive = DefaultKeepAlive
	}
	if cfg.MaxIdle <= 0 {
		cfg.MaxIdle = DefaultMaxIdle
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = DefaultIdleTimeout
	}
	if cfg.ResponseHeaderTimeout <= 0 {
		cfg.ResponseHeaderTimeout = DefaultResponseHeaderTimeout
	}
	if cfg.MaxResponseHeaderBytes <= 0 {
		cfg.MaxResponseHeaderBytes = DefaultMaxResponseHeaderBytes
	}
	if cfg.Buffers == nil {
		cfg.Buffers = new(Buffers)
	}
	p := &Pool{lim: lim, cfg: cfg, yield: newYielder(), dialer: net.Dialer{Timeout: cfg.DialTimeout, KeepAlive: cfg.KeepAlive}}
	lim.mu.Lock()
	lim.pools = append(lim.pools, p)
	lim.mu.Unlock()
	return p
}

// Close closes the idle connections and makes the busy ones close when
// their exchange ends. The pool stays usable (it dials anew).
func (p *Pool) Close() {
	l := p.lim
	l.mu.Lock()
	p.closed = true
	idle := p.idle
	p.idle = nil
	for range idle {
		l.releaseLocked()
	}
	l.mu.Unlock()
	for _, c := range idle {
		c.closeSocket()
	}
}

// Retire takes the pool out of service for good: an endpoint that left its
// backend (a DNS answer without its address). Its idle connections close,
// its busy ones close when their exchange ends, and the limiter forgets it,
// so that a backend whose addresses change keeps no pool of a gone one. An
// exchange already waiting for a slot of this pool still completes.
func (p *Pool) Retire() {
	p.Close()
	l := p.lim
	l.mu.Lock()
	for i, q := range l.pools {
		if q == p {
			l.pools = append(l.pools[:i], l.pools[i+1:]...)
			break
		}
	}
	l.mu.Unlock()
}

// conn is one keep-alive connection to the endpoint, owned by one exchange
// at a time or by the idle stack.
type conn struct {
	pool  *Pool
	nc    net.Conn
	rc    syscall.RawConn // for the unread-bytes check; nil if the platform has none
	br    *bufio.Reader   // reads the connection; larger than small during an exchange with a large head
	small *bufio.Reader

	fields    []field   // the answer's header being parsed, reused
	prev      []field   // the previous answer's fields: their strings are reused when equal
	idleSince time.Time // when it went back on the idle stack
	deadline  time.Time // the read deadline last set
	reused    bool      // it carried an exchange before this one
	abort     func()    // interrupts a blocked read; bound once for context.AfterFunc

	peekBuf  [1]byte
	peekFn   func(fd uintptr) // bound once: RawConn.Control's argument
	readable bool             // peekFn's result
}

// get returns a connection for an exchange: an idle one that passes the
// unread-bytes check, or a new one (always when fresh), waiting for a slot
// when the limiter has none (see Limiter).
func (p *Pool) get(ctx context.Context, fresh bool, now time.Time) (*conn, error) {
	l := p.lim
	for {
		var (
			c, victim *conn
			expired   []*conn
		)
		l.mu.Lock()
		if !fresh {
			c, expired = p.popIdleLocked(now)
		}
		if c == nil && l.open < l.max {
			l.open++
		} else if c == nil {
			if victim = l.stealLocked(); victim == nil {
				return p.await(ctx, fresh, expired)
			}
		}
		l.mu.Unlock()
		closeSockets(expired)
		if c == nil {
			if victim != nil {
				victim.closeSocket() // its slot is ours now
			}
			return p.dial(ctx)
		}
		if c.clean() {
			c.reused = true
			return c, nil
		}
		c.close()
	}
}

// await waits in the limiter's queue (entered with l.mu held, which it
// releases) and returns the connection it is granted, or a new one dialed
// with the slot it is granted.
func (p *Pool) await(ctx context.Context, fresh bool, expired []*conn) (*conn, error) {
	l := p.lim
	var w *want
	if fresh {
		w = l.enqueueLocked(nil) // a retry needs a new connection
	} else {
		w = l.enqueueLocked(p)
	}
	l.mu.Unlock()
	closeSockets(expired)
	got, err := l.wait(ctx, w)
	if err != nil {
		return nil, fmt.Errorf("wait for a connection to %s: %w", p.cfg.Addr, err)
	}
	if got != nil {
		if got.clean() {
			got.reused = true
			return got, nil
		}
		got.closeSocket() // its slot stays ours
	}
	return p.dial(ctx)
}

// popIdleLocked takes the most recently used idle connection. Connections
// idle longer than IdleTimeout are expired: when the top one is, so is
// everything below it; their slots are released and their sockets left to
// the caller to close.
func (p *Pool) popIdleLocked(now time.Time) (c *conn, expired []*conn) {
	n := len(p.idle)
	if n == 0 {
		return nil, nil
	}
	c = p.idle[n-1]
	if now.Sub(c.idleSince) > p.cfg.IdleTimeout {
		expired = p.idle
		p.idle = nil
		for range expired {
			p.lim.releaseLocked()
		}
		return nil, expired
	}
	p.idle[n-1] = nil
	p.idle = p.idle[:n-1]
	return c, nil
}

// put takes back a connection whose exchange ended cleanly: it goes to the
// first waiter, or to the idle stack.
func (p *Pool) put(c *conn) {
	now := p.yield.at(p.yield.now()) // one clock read, not time.Now's two
	l := p.lim
	var evict *conn
	l.mu.Lock()
	switch {
	case p.closed:
		l.releaseLocked()
		evict = c
	case len(l.queue) > 0:
		// Someone waits: a waiter of this pool gets the connection;
		// another gets its slot (the connection closes).
		if w := l.queue[0]; w.pool == p {
			l.grantLocked(w, c)
		} else {
			l.grantLocked(w, nil)
			evict = c
		}
	default:
		c.idleSince = now
		if len(p.idle) >= p.cfg.MaxIdle || len(p.idle) > 0 && now.Sub(p.idle[0].idleSince) > p.cfg.IdleTimeout {
			evict = p.idle[0]
			copy(p.idle, p.idle[1:])
			p.idle[len(p.idle)-1] = nil
			p.idle = p.idle[:len(p.idle)-1]
			l.releaseLocked()
		}
		p.idle = append(p.idle, c)
	}
	l.mu.Unlock()
	if evict != nil {
		evict.closeSocket()
	}
}

// dial opens a connection with a slot the caller holds, releasing the slot
// if the dial fails.
func (p *Pool) dial(ctx context.Context) (*conn, error) {
	nc, err := p.dialer.DialContext(ctx, "tcp", p.cfg.Addr)
	if err != nil {
		p.lim.release()
		return nil, err
	}
	c := &conn{pool: p, nc: nc}
	c.small = bufio.NewReaderSize(nc, connBufferSize)
	c.br = c.small
	c.abort = func() { _ = c.nc.SetReadDeadline(aLongTimeAgo) }
	c.peekFn = c.peek
	if sc, ok := nc.(syscall.Conn); ok {
		c.rc, _ = sc.SyscallConn()
	}
	return c, nil
}

// clean reports whether an idle connection can carry a request: nothing
// arrived on it since its last answer, neither a byte nor the backend's
// close. It is checked at every reuse, at the moment of reuse: bytes that
// no request asked for (a body on a HEAD answer, bytes after a complete
// answer) would otherwise be read as the next, unrelated request's answer.
func (c *conn) clean() bool {
	return c.br.Buffered() == 0 && !c.unread()
}

// close closes the connection and frees its slot.
func (c *conn) close() {
	c.closeSocket()
	c.pool.lim.release()
}

// closeSocket closes the connection whose slot has been passed on.
func (c *conn) closeSocket() { _ = c.nc.Close() }

func closeSockets(cs []*conn) {
	for _, c := range cs {
		c.closeSocket()
	}
}

// setDeadline sets the connection's read deadline.
func (c *conn) setDeadline(t time.Time) error {
	c.deadline = t
	return c.nc.SetReadDeadline(t)
}
