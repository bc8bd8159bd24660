package proxy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/textproto"
	"net/url"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// The fast path.
//
// Most proxied requests are plain HTTP/1.1 exchanges without a request body:
// a GET, a HEAD. For those, and only when the backend is a plain http://
// URL served by the proxy's own transport (Config.Transport nil), the proxy
// skips httputil.ReverseProxy and http.Transport (with their per-request
// clone, goroutine hand-offs and channels) and does the exchange itself in
// the handler's goroutine: it takes a keep-alive connection from the
// backend's idle stack, writes the request line and headers with one write,
// reads the response with http.ReadResponse on the connection's bufio.Reader
// and copies it to the client. The connection goes back on the stack only
// when the response was read completely and neither side asked to close.
// A connection idle for over idleCheckAfter is peeked at before use (a
// backend may have closed it, or answered unasked); one that still turns
// out dead before any answer byte has its request retried once on a new
// connection, which is safe for the idempotent, bodiless requests taken
// here.
//
// The outbound request is the one ReverseProxy would send (see New's
// Rewrite): the backend's path prefix joined the same way, Host the
// backend's host, hop-by-hop headers (and those named in Connection)
// removed, "Te: trailers" kept, X-Forwarded-For appended to the client's
// chain, X-Forwarded-Host/-Proto set, Forwarded removed, no Go User-Agent
// added. Unlike http.Transport it does not add "Accept-Encoding: gzip" (and
// so never decompresses on the client's behalf): the backend answers what
// the client asked for.
//
// Everything else takes the ReverseProxy path: request bodies, upgrades,
// Expect, non-idempotent methods (they could not be retried safely on a
// dead keep-alive connection), https backends, a query with ';' (which
// ReverseProxy rewrites), requests in absolute or opaque form.

// cancelPoll is how often a request waiting for its response headers checks
// whether its client went away. Polling with a read deadline (which the
// response header timeout needs anyway) costs nothing per request, unlike a
// context.AfterFunc.
const cancelPoll = 100 * time.Millisecond

// idleCheckAfter is how long a connection may sit idle before it is
// checked for an unsolicited answer or a close before use (see stale).
// Backends time idle connections out after seconds, not milliseconds, so a
// busy proxy, reusing its connections within milliseconds, skips the check.
const idleCheckAfter = time.Second

// maxInformational bounds the 1xx responses forwarded before the final one.
const maxInformational = 10

// connBufferSize is the size of each upstream connection's read buffer.
const connBufferSize = 4 << 10

// aLongTimeAgo is a deadline in the past: setting it interrupts blocked I/O.
var aLongTimeAgo = time.Unix(1, 0) //nolint:gochecknoglobals // read-only

// errUnaskedSwitch is a 101 answer to a request that asked for no upgrade.
var errUnaskedSwitch = errors.New("backend switched protocols without being asked")

// errInvalidRequest is a request that cannot be written as HTTP/1.1 (a
// control character in a header or the target); http.Transport refuses it too.
var errInvalidRequest = errors.New("invalid outbound request")

// upstream is the fast path's view of one plain-HTTP backend: where to dial,
// what to send as Host, and a stack of idle keep-alive connections.
type upstream struct {
	target      *url.URL
	addr        string // host:port to dial
	host        string // the Host header: the backend URL's host, as ReverseProxy's SetURL sends it
	dialer      net.Dialer
	timeout     time.Duration // response header timeout
	idleTimeout time.Duration
	maxIdle     int

	// slots holds one token per open connection (MaxConnsPerBackend). A
	// request that finds no idle connection and no free slot waits for
	// either; put signals ready when someone is waiting.
	slots   chan struct{}
	ready   chan struct{}
	waiting atomic.Int32

	// The slow path's Transport dials through dialShared, so both paths
	// share slots: MaxConnsPerBackend caps the backend's connections in
	// all. Idle connections on one side are closed when the other side
	// waits for a slot, so neither can starve the other.
	dialWaiting        atomic.Int32
	closeTransportIdle func() // set once the Transport exists

	stopped atomic.Bool // set by shutdown: connections are closed, not kept

	mu   sync.Mutex // protects idle
	idle []*upConn  // LIFO: the most recently used on top, the oldest at 0
}

// upConn is one keep-alive connection to a backend. It is owned by one
// request at a time, or by the idle stack.
type upConn struct {
	up        *upstream
	conn      net.Conn
	br        *bufio.Reader
	wbuf      []byte    // the request being written, reused
	fields    []field   // the response header being parsed, reused
	prev      []field   // the previous response's fields: their strings are reused when equal
	idleSince time.Time // when it went back on the idle stack
	deadline  time.Time // the read deadline last set
	started   time.Time // when the current exchange started
	reused    bool      // it served a request before this one
	abort     func()    // interrupts blocked reads; bound once, for context.AfterFunc
}

// newUpstream returns the fast path for target, or nil if target does not
// qualify (not http://, or a host that would need rewriting as Host).
func newUpstream(cfg Config, target *url.URL) *upstream {
	if target.Scheme != "http" || target.Opaque != "" || target.User != nil {
		return nil
	}
	for i := range len(target.Host) {
		if c := target.Host[i]; c <= ' ' || c >= 0x7f || c == '%' {
			return nil // IDNA or an IPv6 zone: let http.Transport normalise it
		}
	}
	port := target.Port()
	if port == "" {
		port = "80"
	}
	return &upstream{
		target:      target,
		addr:        net.JoinHostPort(target.Hostname(), port),
		host:        target.Host,
		dialer:      net.Dialer{Timeout: dialTimeout, KeepAlive: dialKeepAlive},
		timeout:     cfg.ResponseHeaderTimeout,
		idleTimeout: idleConnTimeout,
		maxIdle:     maxIdleConnsPerHost,
		slots:       make(chan struct{}, cfg.MaxConnsPerBackend),
		ready:       make(chan struct{}, 1),
	}
}

// fastEligible reports whether r can take the fast path.
func fastEligible(r *http.Request) bool {
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
	default:
		return false
	}
	if r.ContentLength != 0 || len(r.TransferEncoding) != 0 || r.URL.Opaque != "" || r.URL.Host != "" {
		return false
	}
	h := r.Header
	if _, ok := h["Upgrade"]; ok {
		return false
	}
	if _, ok := h["Expect"]; ok {
		return false
	}
	return strings.IndexByte(r.URL.RawQuery, ';') < 0
}

// get returns an idle connection, or a new one when fresh is set or none is
// idle, waiting for a slot when MaxConnsPerBackend are open.
func (u *upstream) get(ctx context.Context, fresh bool, now time.Time) (*upConn, error) {
	if !fresh {
		if uc := u.popIdle(now); uc != nil {
			return uc, nil
		}
	}
	select {
	case u.slots <- struct{}{}:
	default:
		if uc, err := u.waitSlot(ctx, fresh, now); uc != nil || err != nil {
			return uc, err
		}
	}
	conn, err := u.dialer.DialContext(ctx, "tcp", u.addr)
	if err != nil {
		<-u.slots
		return nil, err
	}
	uc := &upConn{up: u, conn: conn, br: bufio.NewReaderSize(conn, connBufferSize), wbuf: make([]byte, 0, 1024)}
	uc.abort = func() { _ = uc.conn.SetReadDeadline(aLongTimeAgo) }
	return uc, nil
}

// waitSlot waits until a connection goes idle (returned) or a slot frees up
// (nil, nil: the caller holds a slot and dials).
func (u *upstream) waitSlot(ctx context.Context, fresh bool, now time.Time) (*upConn, error) {
	u.waiting.Add(1)
	defer u.waiting.Add(-1)
	for {
		if !fresh {
			if uc := u.popIdle(now); uc != nil {
				return uc, nil
			}
		} else {
			// A retry needs a new connection: an idle one holding a slot
			// is closed to free it, or the retry could wait behind
			// connections nobody uses.
			u.dropOldestIdle()
		}
		if u.closeTransportIdle != nil {
			u.closeTransportIdle() // the slow path's idle connections hold slots too
		}
		select {
		case u.slots <- struct{}{}:
			return nil, nil
		case <-u.ready:
		case <-time.After(sharedSlotPoll):
		case <-ctx.Done():
			return nil, fmt.Errorf("wait for a connection to %s: %w", u.addr, ctx.Err())
		}
	}
}

// sharedSlotPoll is how often a request waiting for a slot frees the other
// path's idle connections again (they may have gone idle since).
const sharedSlotPoll = 50 * time.Millisecond

// dialShared is the slow path's dialer: it takes a slot first, closing the
// fast path's idle connections when none is free, and frees the slot when
// the connection closes.
func (u *upstream) dialShared(ctx context.Context, network, addr string) (net.Conn, error) {
	select {
	case u.slots <- struct{}{}:
	default:
		u.dialWaiting.Add(1)
		u.closeIdle()
		select {
		case u.slots <- struct{}{}:
			u.dialWaiting.Add(-1)
		case <-ctx.Done():
			u.dialWaiting.Add(-1)
			return nil, ctx.Err()
		}
	}
	c, err := u.dialer.DialContext(ctx, network, addr)
	if err != nil {
		<-u.slots
		return nil, err
	}
	return &slotConn{Conn: c, slots: u.slots}, nil
}

// slotConn frees its slot once, when closed.
type slotConn struct {
	net.Conn
	slots chan struct{}
	once  sync.Once
}

func (c *slotConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { <-c.slots })
	return err
}

// popIdle takes the most recently used idle connection. Stale connections
// (idle longer than idleTimeout) are closed: when the top one is stale, so
// is everything below it. One idle for more than idleCheckAfter is checked
// first and dropped if the backend closed it or sent something unasked.
func (u *upstream) popIdle(now time.Time) *upConn {
	for {
		u.mu.Lock()
		n := len(u.idle)
		if n == 0 {
			u.mu.Unlock()
			return nil
		}
		uc := u.idle[n-1]
		idle := now.Sub(uc.idleSince)
		if idle > u.idleTimeout {
			stale := append([]*upConn(nil), u.idle...)
			clear(u.idle)
			u.idle = u.idle[:0]
			u.mu.Unlock()
			for _, s := range stale {
				s.close()
			}
			return nil
		}
		u.idle[n-1] = nil
		u.idle = u.idle[:n-1]
		u.mu.Unlock()
		if idle > idleCheckAfter && !uc.usable() {
			uc.close()
			continue
		}
		uc.reused = true
		return uc
	}
}

// usable reports whether an idle connection can carry a request: nothing
// arrived on it since its last answer.
func (uc *upConn) usable() bool {
	// A past read deadline would fail the peek before it is made.
	if err := uc.setDeadline(time.Time{}); err != nil {
		return false
	}
	return !stale(uc.conn)
}

// put returns a connection whose exchange completed cleanly to the idle
// stack (or closes it when the stack is full).
func (u *upstream) put(uc *upConn, now time.Time) {
	uc.idleSince = now
	var evict *upConn
	u.mu.Lock()
	if len(u.idle) >= u.maxIdle || u.dialWaiting.Load() > 0 || u.stopped.Load() {
		evict = uc
	} else {
		if len(u.idle) > 0 && now.Sub(u.idle[0].idleSince) > u.idleTimeout {
			evict = u.idle[0]
			copy(u.idle, u.idle[1:])
			u.idle[len(u.idle)-1] = nil
			u.idle = u.idle[:len(u.idle)-1]
		}
		u.idle = append(u.idle, uc)
	}
	u.mu.Unlock()
	if evict != nil {
		evict.close()
	}
	if u.waiting.Load() > 0 {
		select {
		case u.ready <- struct{}{}:
		default:
		}
	}
}

// dropOldestIdle closes the least recently used idle connection, if any.
func (u *upstream) dropOldestIdle() {
	u.mu.Lock()
	if len(u.idle) == 0 {
		u.mu.Unlock()
		return
	}
	uc := u.idle[0]
	copy(u.idle, u.idle[1:])
	u.idle[len(u.idle)-1] = nil
	u.idle = u.idle[:len(u.idle)-1]
	u.mu.Unlock()
	uc.close()
}

// shutdown closes the idle connections and makes the ones still in use
// close when their exchange ends, instead of going back on the stack.
func (u *upstream) shutdown() {
	u.stopped.Store(true)
	u.closeIdle()
}

// closeIdle closes every idle connection.
func (u *upstream) closeIdle() {
	u.mu.Lock()
	idle := append([]*upConn(nil), u.idle...)
	clear(u.idle)
	u.idle = u.idle[:0]
	u.mu.Unlock()
	for _, uc := range idle {
		uc.close()
	}
}

// close closes the connection and frees its slot.
func (uc *upConn) close() {
	_ = uc.conn.Close()
	<-uc.up.slots
}

// forwardFast forwards r to up and copies the answer to rw. A failure to get
// a response goes to errorHandler, as on the ReverseProxy path.
func (p *Proxy) forwardFast(rw *responseWriter, r *http.Request, up *upstream) {
	ctx := r.Context()
	fresh := false
	now := rw.start
	if !p.realTime {
		now = time.Now() // deadlines need the real clock
	}
	for {
		if fresh {
			now = time.Now()
		}
		uc, err := up.get(ctx, fresh, now)
		if err != nil {
			p.errorHandler(rw, r, err)
			return
		}
		retry, err := p.exchange(rw, r, uc, now)
		if err == nil {
			return
		}
		if retry && !fresh {
			// A reused connection the backend had closed while it was
			// idle: nothing was answered, so the request is safe to send
			// again on a new connection.
			fresh = true
			continue
		}
		p.errorHandler(rw, r, err)
		return
	}
}

// exchange sends r over uc and copies the response to rw. It owns uc: the
// connection is returned to the idle stack or closed. It returns an error
// only when nothing was sent to the client yet; retry says the backend
// answered nothing on a reused connection (it had closed it while idle).
// A failure while copying the body aborts the response (http.ErrAbortHandler).
func (p *Proxy) exchange(rw *responseWriter, r *http.Request, uc *upConn, now time.Time) (retry bool, err error) {
	up := uc.up
	uc.started = now
	uc.wbuf, err = up.appendRequest(uc.wbuf[:0], r)
	if err != nil {
		up.put(uc, now)
		return false, err
	}
	headerDeadline := now.Add(up.timeout)
	// The deadline of the previous exchange, if it is still ahead but no
	// further than a poll away, serves as well: the wait below re-arms it.
	// Under load that saves a timer update per request.
	if d := uc.deadline; !d.After(now) || d.After(now.Add(cancelPoll)) || d.After(headerDeadline) {
		if err := uc.setDeadline(earliest(headerDeadline, now.Add(cancelPoll))); err != nil {
			uc.close()
			return uc.reused, err
		}
	}
	if _, err := uc.conn.Write(uc.wbuf); err != nil {
		uc.close()
		return uc.reused && r.Context().Err() == nil, err
	}
	// The answer takes the backend a few microseconds. Reading at once
	// would mostly find nothing (a wasted read syscall, then a park and a
	// netpoll wake-up); letting the other requests' goroutines run first
	// usually finds it there. With nothing else runnable this returns at
	// once. Measured: about 10% less CPU per request under load.
	runtime.Gosched()
	if err := uc.awaitResponse(r.Context(), headerDeadline); err != nil {
		uc.close()
		return uc.reused && !isTimeout(err) && r.Context().Err() == nil, err
	}
	if p.copyParsed(rw, r, uc) {
		return false, nil
	}
	// The general case: let net/http parse it, with the time left.
	var resp *http.Response
	if err = uc.setDeadline(headerDeadline); err == nil {
		resp, err = readResponse(uc.br, r)
	}
	for n := 0; err == nil && resp.StatusCode < 200 && resp.StatusCode != http.StatusSwitchingProtocols; n++ {
		if n == maxInformational {
			err = fmt.Errorf("more than %d informational responses", maxInformational)
			break
		}
		// 1xx (103 Early Hints, say): pass it on, as ReverseProxy does.
		h := rw.Header()
		for k, vv := range resp.Header {
			h[k] = append(h[k], vv...)
		}
		rw.WriteHeader(resp.StatusCode)
		clear(h)
		if err = uc.awaitResponse(r.Context(), headerDeadline); err == nil {
			if err = uc.setDeadline(headerDeadline); err == nil {
				resp, err = readResponse(uc.br, r)
			}
		}
	}
	if err == nil && resp.StatusCode == http.StatusSwitchingProtocols {
		err = errUnaskedSwitch
	}
	if err != nil {
		uc.close()
		if r.Context().Err() != nil {
			err = fmt.Errorf("%w: %w", context.Canceled, err)
		}
		return false, err
	}
	p.copyResponse(rw, r, uc, resp)
	return false, nil
}

// readResponse is http.ReadResponse that also refuses a status outside
// 100..999: net/http parses "099" but panics when one is written to the
// client, which would leak the upstream connection.
func readResponse(br *bufio.Reader, r *http.Request) (*http.Response, error) {
	resp, err := http.ReadResponse(br, r)
	if err == nil && (resp.StatusCode < 100 || resp.StatusCode > 999) {
		resp.Body.Close()
		return nil, fmt.Errorf("malformed HTTP status code %d", resp.StatusCode)
	}
	return resp, err
}

// awaitResponse waits for the first byte of the response, checking every
// cancelPoll whether the client went away, until headerDeadline.
func (uc *upConn) awaitResponse(ctx context.Context, headerDeadline time.Time) error {
	for {
		_, err := uc.br.Peek(1)
		if err == nil {
			return nil
		}
		if !isTimeout(err) {
			return err
		}
		if ctx.Err() != nil {
			return fmt.Errorf("%w: client went away while waiting for the backend", context.Canceled)
		}
		now := time.Now()
		if !now.Before(headerDeadline) {
			return fmt.Errorf("timeout awaiting response headers: %w", err)
		}
		if err := uc.setDeadline(earliest(headerDeadline, now.Add(cancelPoll))); err != nil {
			return err
		}
	}
}

// setDeadline sets the connection's read deadline.
func (uc *upConn) setDeadline(t time.Time) error {
	uc.deadline = t
	return uc.conn.SetReadDeadline(t)
}

// copyResponse writes resp (a final, non-101 response) to rw and decides
// uc's fate.
func (p *Proxy) copyResponse(rw *responseWriter, r *http.Request, uc *upConn, resp *http.Response) {
	removeHopByHop(resp.Header)
	h := rw.Header()
	for k, vv := range resp.Header {
		if prior, ok := h[k]; ok {
			h[k] = append(prior, vv...)
		} else {
			h[k] = vv // resp is ours alone: share, do not copy
		}
	}
	announced := len(resp.Trailer)
	if announced > 0 {
		keys := make([]string, 0, announced)
		for k := range resp.Trailer {
			keys = append(keys, k)
		}
		h.Add("Trailer", strings.Join(keys, ", "))
	}
	rw.WriteHeader(resp.StatusCode)

	body := resp.Body
	// Streams (event streams, bodies of unknown length) are flushed
	// whenever the backend has nothing more buffered, as ReverseProxy
	// flushes them after every write.
	stream := resp.ContentLength < 0 || isEventStream(resp.Header["Content-Type"])
	// Once the header is read, body reads must not time out; unless the
	// whole body is already buffered, clear the deadline and watch the
	// client instead.
	var stop func() bool
	if body != http.NoBody && (resp.ContentLength < 0 || int64(uc.br.Buffered()) < resp.ContentLength) {
		if err := uc.setDeadline(time.Time{}); err != nil {
			uc.close()
			p.abortCopy(rw, r, err)
			return
		}
		stop = context.AfterFunc(r.Context(), uc.abort)
	}
	err := p.copyBody(rw, uc, body, stream)
	keep := err == nil && !resp.Close && uc.br.Buffered() == 0
	if stop != nil && !stop() {
		keep = false // the client went away: uc's deadline is spoilt
	}
	if err != nil {
		uc.close()
		p.abortCopy(rw, r, err)
		return
	}
	_ = body.Close() // a no-op after EOF; populates resp.Trailer
	uc.finish(keep)
	if len(resp.Trailer) > 0 {
		// Force chunking, so net/http does not compute a length for a
		// short body and drop the trailers.
		rw.Flush()
	}
	if len(resp.Trailer) == announced {
		for k, vv := range resp.Trailer {
			h[k] = append(h[k], vv...)
		}
		return
	}
	for k, vv := range resp.Trailer {
		k = http.TrailerPrefix + k
		h[k] = append(h[k], vv...)
	}
}

// copyBody copies body to rw. It returns write errors and non-EOF read
// errors.
func (p *Proxy) copyBody(rw *responseWriter, uc *upConn, body io.Reader, stream bool) error {
	buf := p.buffers.Get()
	defer p.buffers.Put(buf)
	pending := stream // the header is not flushed yet
	for {
		if pending && uc.br.Buffered() == 0 {
			rw.Flush() // about to wait for the backend: send what we have
			pending = false
		}
		n, rerr := body.Read(buf)
		if n > 0 {
			if _, werr := rw.Write(buf[:n]); werr != nil {
				return werr
			}
			pending = stream
		}
		if rerr == io.EOF {
			return nil
		}
		if rerr != nil {
			return rerr
		}
	}
}

// abortCopy ends a response that broke after its header was sent, as
// ReverseProxy does: by aborting the handler when running in a server.
func (p *Proxy) abortCopy(rw *responseWriter, r *http.Request, err error) {
	if !errors.Is(err, context.Canceled) && !rw.writeErr {
		p.log.Debug().Str("backend", rw.backend.String()).Err(err).Msg("read error during body copy")
	}
	if r.Context().Value(http.ServerContextKey) == nil {
		// Not in a server (a test calling ServeHTTP): no one to abort;
		// classify as ServeHTTP's recover would.
		if rw.kind == KindNone {
			rw.kind = KindReset
			if rw.writeErr || r.Context().Err() != nil {
				rw.kind = KindCanceled
			}
		}
		return
	}
	panic(http.ErrAbortHandler)
}

// appendRequest appends r as the HTTP/1.1 request to send to u.
func (u *upstream) appendRequest(b []byte, r *http.Request) ([]byte, error) {
	b = append(b, r.Method...)
	b = append(b, ' ')
	start := len(b)
	out := *r.URL
	out.Path, out.RawPath = joinURLPath(u.target, r.URL)
	if u.target.RawQuery == "" || r.URL.RawQuery == "" {
		out.RawQuery = u.target.RawQuery + r.URL.RawQuery
	} else {
		out.RawQuery = u.target.RawQuery + "&" + r.URL.RawQuery
	}
	path := out.EscapedPath()
	if path == "" {
		path = "/"
	}
	b = append(b, path...)
	if out.ForceQuery || out.RawQuery != "" {
		b = append(b, '?')
		b = append(b, out.RawQuery...)
	}
	for _, c := range b[start:] {
		if c <= ' ' || c == 0x7f {
			return b, fmt.Errorf("%w: control character or space in the target", errInvalidRequest)
		}
	}
	b = append(b, " HTTP/1.1\r\nHost: "...)
	b = append(b, u.host...)
	b = append(b, "\r\n"...)

	h := r.Header
	if ua := h["User-Agent"]; len(ua) > 0 && ua[0] != "" {
		if !validValue(ua[0]) {
			return b, fmt.Errorf("%w: header User-Agent", errInvalidRequest)
		}
		b = appendField(b, "User-Agent", ua[0])
	}
	conn := h["Connection"]
	for k, vv := range h {
		switch k {
		case "Host", "User-Agent", "Content-Length", "Transfer-Encoding", "Trailer",
			"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization",
			"Te", "Upgrade", "Forwarded", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto":
			continue
		}
		if len(conn) > 0 && tokenListContains(conn, k) {
			continue
		}
		if !validName(k) {
			return b, fmt.Errorf("%w: header name %q", errInvalidRequest, k)
		}
		for _, v := range vv {
			if !validValue(v) {
				return b, fmt.Errorf("%w: header %s", errInvalidRequest, k)
			}
			b = appendField(b, k, v)
		}
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		b = append(b, "Content-Length: 0\r\n"...) // as http.Transport sends
	}
	if tokenListContains(h["Te"], "trailers") {
		b = append(b, "Te: trailers\r\n"...)
	}
	if clientIP, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		b = append(b, "X-Forwarded-For: "...)
		for _, v := range h["X-Forwarded-For"] {
			if !validValue(v) {
				return b, fmt.Errorf("%w: header X-Forwarded-For", errInvalidRequest)
			}
			b = append(b, v...)
			b = append(b, ", "...)
		}
		b = append(b, clientIP...)
		b = append(b, "\r\n"...)
	}
	if !validValue(r.Host) {
		return b, fmt.Errorf("%w: Host", errInvalidRequest)
	}
	b = appendField(b, "X-Forwarded-Host", r.Host)
	if r.TLS == nil {
		b = append(b, "X-Forwarded-Proto: http\r\n\r\n"...)
	} else {
		b = append(b, "X-Forwarded-Proto: https\r\n\r\n"...)
	}
	return b, nil
}

func appendField(b []byte, k, v string) []byte {
	b = append(b, k...)
	b = append(b, ": "...)
	b = append(b, textproto.TrimString(v)...)
	return append(b, "\r\n"...)
}

// removeHopByHop removes the hop-by-hop headers of h, including those
// named in its Connection header.
func removeHopByHop(h http.Header) {
	for _, v := range h["Connection"] {
		for tok := range strings.SplitSeq(v, ",") {
			tok = textproto.TrimString(tok)
			if tok == "" {
				continue
			}
			for k := range h {
				if asciiEqualFold(k, tok) {
					delete(h, k)
				}
			}
		}
	}
	for _, k := range [...]string{"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate",
		"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade"} {
		delete(h, k)
	}
}

// tokenListContains reports whether the comma-separated lists in vals hold
// token (ASCII case-insensitively).
func tokenListContains(vals []string, token string) bool {
	for _, v := range vals {
		for len(v) > 0 {
			var tok string
			if i := strings.IndexByte(v, ','); i >= 0 {
				tok, v = v[:i], v[i+1:]
			} else {
				tok, v = v, ""
			}
			if asciiEqualFold(textproto.TrimString(tok), token) {
				return true
			}
		}
	}
	return false
}

func asciiEqualFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range len(a) {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// isEventStream reports whether a Content-Type is text/event-stream.
func isEventStream(ct []string) bool {
	if len(ct) == 0 {
		return false
	}
	v := ct[0]
	if i := strings.IndexByte(v, ';'); i >= 0 {
		v = v[:i]
	}
	return asciiEqualFold(textproto.TrimString(v), "text/event-stream")
}

// validName reports whether k is an HTTP token.
func validName(k string) bool {
	if k == "" {
		return false
	}
	for i := range len(k) {
		c := k[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// validValue reports whether v has no control characters other than tab.
func validValue(v string) bool {
	for i := range len(v) {
		if c := v[i]; (c < ' ' && c != '\t') || c == 0x7f {
			return false
		}
	}
	return true
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func earliest(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// joinURLPath is httputil's: the backend's path prefix joined with the
// request's path, keeping its escaping.
func joinURLPath(a, b *url.URL) (path, rawpath string) {
	if a.RawPath == "" && b.RawPath == "" {
		return singleJoiningSlash(a.Path, b.Path), ""
	}
	apath := a.EscapedPath()
	bpath := b.EscapedPath()
	aslash := strings.HasSuffix(apath, "/")
	bslash := strings.HasPrefix(bpath, "/")
	switch {
	case aslash && bslash:
		return a.Path + b.Path[1:], apath + bpath[1:]
	case !aslash && !bslash:
		return a.Path + "/" + b.Path, apath + "/" + bpath
	}
	return a.Path + b.Path, apath + bpath
}

func singleJoiningSlash(a, b string) string {
	aslash := strings.HasSuffix(a, "/")
	bslash := strings.HasPrefix(b, "/")
	switch {
	case aslash && bslash:
		return a + b[1:]
	case !aslash && !bslash:
		return a + "/" + b
	}
	return a + b
}
