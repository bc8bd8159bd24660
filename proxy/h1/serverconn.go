package h1

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// errHeadOverLimit is a request head over the server's limit (431), or a
// line of a body over the buffer's.
var errHeadOverLimit = errors.New("request head over the limit")

// Buffer sizes of a connection: net/http's.
const (
	readBufferSize = 4 << 10 // the read buffer; grown for a larger head, then let go
	outBufferSize  = 4 << 10 // an answer is sent when this much is pending
	// pendMax is what an answer's body may hold back before its header is
	// sent (net/http's bufferBeforeChunkingSize): a handler that finishes
	// within it gets a Content-Length instead of chunking.
	pendMax = 2048
	// maxPostHandlerReadBytes is how much of a request body the handler
	// left unread is read and dropped to keep the connection (net/http's).
	maxPostHandlerReadBytes = 256 << 10
	// rstAvoidanceDelay is how long a connection closed with request bytes
	// unread waits after its half-close, so that the client reads the
	// answer before the reset the close causes (net/http's).
	rstAvoidanceDelay = 500 * time.Millisecond
)

// serverConn is one client connection of the loop, served by one
// goroutine (serve) from accept to close or hand-off.
type serverConn struct {
	srv        *Server
	nc         net.Conn
	rc         syscall.RawConn // nil: the platform cannot watch the socket
	ctx        context.Context // the connection's: ServerContextKey, LocalAddrContextKey
	remoteAddr string
	state      atomic.Uint64 // connState<<56 | unix seconds of the change

	// buf[r:w] is what was read and not consumed yet: the rest of a head,
	// a body, the next pipelined request.
	buf  []byte
	r, w int

	head RequestHead
	// prev holds the strings of the previous request's fields: a client
	// sends the same fields again and again, so equal ones are reused
	// rather than allocated (as the fast path reuses a backend's).
	prev, cur []prevField
	// target and url are the previous request's target and its parse.
	target string
	url    url.URL

	// The request being served (a fresh copy each time), its writer, and
	// what the next request reuses: the header map and its values, the
	// request's context and URL (spare). The handler must not keep any of
	// it after it returned (net/http lets it keep the *http.Request); the
	// proxy keeps nothing, and httputil.ReverseProxy sends a clone.
	req   http.Request
	resp  response
	pend  []byte // the writer's body held back before its header (pendMax)
	hdr   http.Header
	vals  []string
	spare *request

	// The watch for the client's disconnect (see requestContext); the
	// fields are under watchMu.
	watchMu   sync.Mutex
	wantWatch *requestContext // someone waits on this request's context
	bodyDone  bool            // no request body left to read: the socket may be watched
	watching  chan struct{}   // the watcher runs; closed when it ends
	stopWatch atomic.Bool
	peekBuf   [1]byte

	// idleAt is the idle deadline armed for the previous keep-alive wait,
	// on the yielder's clock, while nothing has moved the read deadline
	// since (zero: unknown, or moved). deadlineMoved says the handler
	// moved it (response.SetReadDeadline, from any goroutine).
	idleAt        int64
	deadlineMoved atomic.Bool

	handedOff bool // the connection is Fallback's now
}

// prevField is one field of the previous request, as strings.
type prevField struct {
	name, key, val string
}

// setState records the connection's state, and when it changed for the
// state whose age counts (a new connection's: Shutdown closes one without
// a request for 5 s).
func (c *serverConn) setState(st connState) {
	var unix int64
	if st == connNew {
		unix = time.Now().Unix()
	}
	c.state.Store(uint64(st)<<56 | uint64(unix))
}

func (c *serverConn) getState() (connState, int64) {
	v := c.state.Load()
	return connState(v >> 56), int64(v & (1<<56 - 1))
}

// serve reads and serves the connection's requests until it closes, fails
// or is handed over.
func (c *serverConn) serve() {
	s := c.srv
	defer func() {
		if !c.handedOff {
			c.nc.Close()
		}
		s.forget(c)
	}()
	c.remoteAddr = c.nc.RemoteAddr().String()
	if sc, ok := c.nc.(syscall.Conn); ok {
		c.rc, _ = sc.SyscallConn()
	}
	c.buf = make([]byte, readBufferSize)
	if d := s.readHeaderTimeout; d > 0 {
		c.setDeadline(time.Now().Add(d))
	}
	for first := true; ; first = false {
		n, err := c.readHead(first)
		if err != nil {
			if errors.Is(err, errHeadOverLimit) {
				c.tooLarge()
			}
			return // closed, timed out or failed: as net/http, no answer
		}
		if s.inShutdown.Load() {
			return
		}
		if !c.serveRequest(n) {
			return
		}
		if s.inShutdown.Load() {
			return
		}
		c.setState(connIdle)
	}
}

// readHead reads until buf[r:] holds a whole request head and returns its
// length. The first request's deadline was set at accept; a later one
// waits IdleTimeout for its first byte, then has ReadHeaderTimeout from
// there (net/http's timeouts).
func (c *serverConn) readHead(first bool) (int, error) {
	s := c.srv
	if c.r == c.w {
		c.r, c.w = 0, 0
		if cap(c.buf) > 4*readBufferSize {
			c.buf = make([]byte, readBufferSize) // let a large head's buffer go
		}
	}
	timed := first     // the header deadline is set
	start := int64(-1) // when the first read begins (y.now), if known
	if !first {
		if c.r < c.w { // pipelined
			c.setReadDeadline(s.readHeaderTimeout)
			timed = true
		} else {
			t := s.yield.now()
			c.armIdle(t)
			// The client sends its next request only once it has read
			// this answer: reading at once mostly finds nothing yet.
			start = s.yield.yield(t)
		}
	}
	searched := 0
	for {
		if c.r < c.w {
			if searched == 0 {
				c.setState(connActive)
			}
			b := c.buf[c.r:c.w]
			if end := headEnd(b, max(searched-2, 0)); end >= 0 {
				if end > s.maxHead {
					return 0, errHeadOverLimit
				}
				return end, nil
			}
			if len(b) > s.maxHead {
				return 0, errHeadOverLimit
			}
			searched = len(b)
			if !timed {
				// The head started and is not whole: it has
				// ReadHeaderTimeout from its first byte.
				c.setReadDeadline(s.readHeaderTimeout)
				timed = true
			}
		}
		if err := c.fill(start); err != nil {
			return 0, err
		}
		start = -1
	}
}

// lazyDeadline bounds how far short of IdleTimeout a keep-alive wait's
// deadline may fall: a deadline armed by the previous request and less
// than this short of the new one is left as it is (as nginx leaves a
// timer that would move by less than NGX_TIMER_LAZY_DELAY, 300 ms). Under
// load that saves a timer update and two clock reads per request; an
// idle connection is closed at most this much early. It is at most an
// eighth of the timeout, for short ones.
func lazyDeadline(idle time.Duration) time.Duration { return min(300*time.Millisecond, idle/8) }

// armIdle sets the read deadline of a keep-alive wait that begins at t
// (y.now's): IdleTimeout from t, or none, lazily (lazyDeadline).
func (c *serverConn) armIdle(t int64) {
	d := c.srv.idleTimeout
	if c.deadlineMoved.Load() {
		c.deadlineMoved.Store(false)
		c.idleAt = 0
	}
	if d <= 0 {
		c.setDeadline(time.Time{})
		return
	}
	want := t + int64(d)
	if c.idleAt != 0 && want >= c.idleAt && want-c.idleAt < int64(lazyDeadline(d)) {
		return
	}
	_ = c.nc.SetReadDeadline(c.srv.yield.at(want))
	c.idleAt = want
}

// fill reads more into buf, making room first: it moves the unconsumed
// bytes to the front, or grows buf (up to the head limit and a little
// more, which a long chunk-size or trailer line may also need). start is
// the yielder's time just before, if the caller has it (else -1).
func (c *serverConn) fill(start int64) error {
	if c.w == len(c.buf) {
		if c.r > 0 {
			c.w = copy(c.buf, c.buf[c.r:c.w])
			c.r = 0
		} else {
			nb := make([]byte, min(2*len(c.buf), max(c.srv.maxHead, 2*readBufferSize)+readBufferSize))
			if len(nb) == len(c.buf) {
				return errHeadOverLimit
			}
			copy(nb, c.buf[:c.w])
			c.buf = nb
		}
	}
	if start < 0 {
		start = c.srv.yield.now()
	}
	n, err := c.nc.Read(c.buf[c.w:])
	c.srv.yield.readDone(start)
	c.w += n
	if n > 0 {
		return nil
	}
	if err == nil {
		err = io.ErrNoProgress
	}
	return err
}

// setReadDeadline sets the read deadline d from now (none for zero).
func (c *serverConn) setReadDeadline(d time.Duration) {
	var t time.Time
	if d > 0 {
		t = time.Now().Add(d)
	}
	c.setDeadline(t)
}

// setDeadline sets the read deadline t (none for zero), from the serving
// goroutine. Every change of the deadline but the idle wait's (armIdle)
// goes through it, or sets deadlineMoved, so that armIdle never keeps a
// deadline it did not arm.
func (c *serverConn) setDeadline(t time.Time) {
	c.idleAt = 0
	_ = c.nc.SetReadDeadline(t)
}

// tooLarge answers a head over MaxHeaderBytes as net/http does.
func (c *serverConn) tooLarge() {
	const msg = "431 Request Header Fields Too Large"
	_, _ = io.WriteString(c.nc, "HTTP/1.1 "+msg+"\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n"+msg)
	c.closeWriteAndWait()
}

// closeWriteAndWait half-closes the connection and reads and drops what
// the client still sends, until it closes or rstDelay passes, before the
// full close: closing with unread bytes would reset the connection, and a
// client still sending could lose the answer (net/http's
// closeWriteAndWait, which sleeps instead; draining lets the connection go
// as soon as the client has read the answer and closed).
func (c *serverConn) closeWriteAndWait() {
	if cw, ok := c.nc.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
	c.buf = nil // no longer needed
	if c.srv.rstDelay <= 0 {
		return
	}
	c.setDeadline(time.Now().Add(c.srv.rstDelay))
	var sink [512]byte
	for {
		if _, err := c.nc.Read(sink[:]); err != nil {
			return
		}
	}
}

// reject refuses a request as the framing guard does: a 400 with the
// reason as a JSON error, and the connection closed.
func (c *serverConn) reject(err error) {
	reason := err.Error()
	if f := c.srv.cfg.Guard.Rejected; f != nil {
		f(reason)
	}
	_ = writeRefusal(c.nc, reason)
}

// handOff gives the connection to Fallback, the bytes read and not
// consumed put back in front of it, guarded or (the HTTP/2 preface, with
// HTTP2PriorKnowledge) not. The caller returns from serve.
func (c *serverConn) handOff(guarded bool) {
	c.setDeadline(time.Time{}) // net/http sets its own
	var nc net.Conn = &replayConn{Conn: c.nc, pending: bytes.Clone(c.buf[c.r:c.w])}
	if guarded {
		nc = newGuardConn(nc, &c.srv.cfg.Guard, nil)
	}
	c.buf = nil
	c.handedOff = c.srv.handOff(nc)
}

// replayConn is a connection handed over: what the loop had read, then
// the socket.
type replayConn struct {
	net.Conn
	pending []byte
}

func (c *replayConn) Read(p []byte) (int, error) {
	if len(c.pending) > 0 {
		n := copy(p, c.pending)
		c.pending = c.pending[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

// CloseWrite half-closes the socket, for net/http's graceful close.
func (c *replayConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// serveRequest parses the head of n bytes at buf[r:], serves the request
// (or hands the connection over) and reports whether the connection goes
// on with another request.
func (c *serverConn) serveRequest(n int) bool {
	s := c.srv
	head := c.buf[c.r : c.r+n]
	if _, err := ParseRequestHead(head, &c.head); err != nil {
		if err == errPriorKnowledge && s.cfg.HTTP2PriorKnowledge {
			c.handOff(false)
			return false
		}
		if errors.Is(err, errPriorKnowledge) || errors.As(err, new(FramingError)) {
			c.reject(err)
		}
		return false
	}
	rq, ok := c.newRequest()
	if !ok {
		c.handOff(true)
		return false
	}
	c.r += n
	if rq.body != nil {
		// As net/http: no read deadline on a body but the handler's own
		// (the proxy's body read timeout).
		c.setDeadline(time.Time{})
	}
	w := &c.resp
	w.start(c, &c.req, rq)
	keep := c.run(w)
	gone := w.dead || w.werr != nil
	c.endRequest(rq)
	if rq.body != nil && !rq.body.eof() {
		// Request bytes left unread: a plain close would reset the
		// connection under the answer (unless there is none to protect: a
		// refused request's connection is closed already, a failed write's
		// is gone).
		if !gone {
			c.closeWriteAndWait()
		}
		return false
	}
	return keep
}

// run runs the handler and finishes the answer; false: the connection
// must close.
func (c *serverConn) run(w *response) (keep bool) {
	defer func() {
		if v := recover(); v != nil {
			if v != http.ErrAbortHandler {
				buf := make([]byte, 64<<10)
				buf = buf[:runtime.Stack(buf, false)]
				c.srv.logf("http: panic serving %v: %v\n%s", c.remoteAddr, v, buf)
			}
			// As net/http: what was already committed goes out, the
			// rest (and the terminating chunk) does not, so the client
			// sees the answer cut short.
			w.abort()
			keep = false
		}
	}()
	c.srv.handler.ServeHTTP(w, &c.req)
	// As net/http: the handler is done, its context too, before the
	// answer's last bytes go out.
	c.endContext(w.rq)
	return w.finish()
}

// endRequest ends the request: its context and the watch, if the handler
// did not return (a panic), and its body.
func (c *serverConn) endRequest(rq *request) {
	c.endContext(rq)
	if rq.body != nil {
		rq.body.close()
	}
	c.resp.reset()
	if rq.ctx.reusable() {
		c.spare = rq
	}
}

// endContext cancels the request's context and stops the watch.
func (c *serverConn) endContext(rq *request) {
	rq.ctx.end()
	c.watchMu.Lock()
	c.wantWatch = nil
	done := c.watching
	if done != nil {
		c.stopWatch.Store(true)
		_ = c.nc.SetReadDeadline(aLongTimeAgo) // wakes the watcher
	}
	c.watchMu.Unlock()
	if done != nil {
		<-done
		c.watching = nil
		c.setDeadline(time.Time{})
	}
}

// requestWaitedOn is called by a request's context the first time
// someone waits on it: the socket is watched for the client's disconnect
// once the request's body is read (before that, the body reads would
// compete with the watcher for the socket, and they notice a disconnect
// themselves).
func (c *serverConn) requestWaitedOn(x *requestContext) {
	c.watchMu.Lock()
	defer c.watchMu.Unlock()
	c.wantWatch = x
	if c.bodyDone {
		c.startWatchLocked()
	}
}

// bodyRead is called when the request's body has been read whole.
func (c *serverConn) bodyRead() {
	c.watchMu.Lock()
	defer c.watchMu.Unlock()
	c.bodyDone = true
	if c.wantWatch != nil {
		c.startWatchLocked()
	}
}

func (c *serverConn) startWatchLocked() {
	if c.watching != nil || c.rc == nil {
		return
	}
	c.stopWatch.Store(false)
	_ = c.nc.SetReadDeadline(time.Time{})
	c.watching = make(chan struct{})
	go c.watch(c.wantWatch, c.watching)
}

// watch waits for the socket to turn readable and cancels x if that is
// the client's close or a reset. Bytes (a pipelined request) end the
// watch: they are the next request's, and net/http stops there too.
func (c *serverConn) watch(x *requestContext, done chan struct{}) {
	defer close(done)
	for {
		var gone bool
		err := c.rc.Read(func(fd uintptr) bool {
			ready, g := c.peekGone(fd)
			gone = g
			return ready
		})
		if c.stopWatch.Load() {
			return
		}
		if err != nil {
			if !isTimeout(err) {
				return // closed
			}
			// A deadline the handler left (a body read timeout): the
			// watch goes on without one.
			c.watchMu.Lock()
			if !c.stopWatch.Load() {
				_ = c.nc.SetReadDeadline(time.Time{})
			}
			c.watchMu.Unlock()
			continue
		}
		if gone {
			x.clientGone()
		}
		return
	}
}

// clientGone reports, without waiting, whether the client closed or
// reset the connection. It is checked only once the request's body is
// read: a body still arriving is not a disconnect.
func (c *serverConn) clientGone() bool {
	c.watchMu.Lock()
	bodyDone := c.bodyDone
	c.watchMu.Unlock()
	if !bodyDone || c.rc == nil {
		return false
	}
	var gone bool
	if err := c.rc.Control(func(fd uintptr) { _, gone = c.peekGone(fd) }); err != nil {
		return true // closed
	}
	return gone
}
