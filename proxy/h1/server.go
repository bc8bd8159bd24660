package h1

import (
	"context"
	"errors"
	"log"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// The server loop.
//
// Server serves the plaintext HTTP/1.1 connections of a traffic listener
// itself, leaner than net/http's server: one goroutine per connection
// reads each request head into a reused buffer, parses it with
// ParseRequestHead (the parser the framing guard runs, so that the path
// has one parser, not two), builds the *http.Request from it, runs the
// handler in that goroutine and writes the answer from a reused buffer,
// usually in one write. It starts no goroutine per request: a client's
// disconnect is watched for only once someone waits on the request's
// context (see requestContext).
//
// What it does not serve itself it hands to net/http unchanged (handOff):
// the connection, with the bytes already read put back in front, goes to
// ServerConfig.Fallback, an ordinary *http.Server, through the framing
// guard (GuardConfig), from that request on. That is any request asking
// for an upgrade (WebSocket), a target not in origin form (CONNECT,
// absolute URLs, OPTIONS *), an HTTP/1.x version other than 1.0 and 1.1,
// a Host field missing, repeated or malformed, an Expect other than
// 100-continue, a trailer declaration net/http refuses, a target net/url
// does not parse: net/http answers or serves those as it always did. The
// HTTP/2 preface (PRI * HTTP/2.0) is refused 400 as the guard refuses it,
// or, with ServerConfig.HTTP2PriorKnowledge, handed over unguarded for
// Fallback to serve as HTTP/2.
//
// Everything else is served here with net/http's semantics, which
// FuzzServerRequest holds to http.ReadRequest: the framing rules of the
// guard (ParseRequestHead; strict chunk sizes and trailers, chunkedBody),
// the limits and timeouts of Fallback (ReadHeaderTimeout from the first
// byte of a head, IdleTimeout between requests, MaxHeaderBytes answered
// 431), keep-alive and pipelining, Expect: 100-continue, HEAD, chunked
// answers with trailers, Flush, the automatic Content-Length, Date and
// Content-Type of net/http's response writer, a handler's panic
// (http.ErrAbortHandler aborts the answer), and graceful shutdown.

// ServerConfig configures a Server.
type ServerConfig struct {
	// Fallback is the net/http server that serves what the loop hands
	// over. Required. Its Handler serves the loop's requests too, and its
	// ReadHeaderTimeout, IdleTimeout, MaxHeaderBytes, ErrorLog and
	// BaseContext apply to the loop's connections as net/http applies
	// them (zero ReadHeaderTimeout: no limit; zero IdleTimeout:
	// ReadHeaderTimeout; zero MaxHeaderBytes: http.DefaultMaxHeaderBytes).
	// Its ConnState and ConnContext hooks see only the connections handed
	// over.
	Fallback *http.Server
	// Guard configures the framing guard that connections handed over pass
	// through; its Rejected also hears the loop's own refusals.
	Guard GuardConfig
	// HTTP2PriorKnowledge hands a connection that opens with the HTTP/2
	// preface to Fallback as it is, unguarded, for Fallback to serve as
	// HTTP/2 (its Protocols must then include UnencryptedHTTP2). False,
	// the zero value, refuses the preface 400, as the guard does.
	HTTP2PriorKnowledge bool
}

// Server is the server loop. Create it with NewServer; Serve it on a
// listener, stop it with Shutdown or Close, as an http.Server.
type Server struct {
	cfg      ServerConfig
	handler  http.Handler
	errorLog *log.Logger

	readHeaderTimeout time.Duration
	idleTimeout       time.Duration
	maxHead           int // MaxHeaderBytes plus net/http's 4096 bytes of slack
	rstDelay          time.Duration

	handoff *handoffListener

	inShutdown atomic.Bool
	yield      *yielder // before reading a keep-alive connection
	dates      dateCache
	outBufs    sync.Pool // *[]byte: answers being written

	mu       sync.Mutex // protects the fields below
	ln       net.Listener
	conns    map[*serverConn]struct{}
	serving  bool
	fallback chan error // Fallback.Serve's result; nil until Serve starts it
}

// NewServer returns a server loop configured by cfg.
func NewServer(cfg ServerConfig) *Server {
	f := cfg.Fallback
	s := &Server{
		cfg:               cfg,
		yield:             newYielder(),
		handler:           f.Handler,
		errorLog:          f.ErrorLog,
		readHeaderTimeout: f.ReadHeaderTimeout,
		idleTimeout:       f.IdleTimeout,
		maxHead:           f.MaxHeaderBytes,
		conns:             make(map[*serverConn]struct{}),
		rstDelay:          rstAvoidanceDelay,
	}
	if s.handler == nil {
		s.handler = http.DefaultServeMux
	}
	if s.readHeaderTimeout <= 0 {
		s.readHeaderTimeout = f.ReadTimeout
	}
	if s.idleTimeout <= 0 {
		s.idleTimeout = s.readHeaderTimeout
	}
	if s.maxHead <= 0 {
		s.maxHead = http.DefaultMaxHeaderBytes
	}
	s.maxHead += 4096 // net/http's initialReadLimitSize
	return s
}

// Serve accepts connections on ln and serves them until Shutdown or Close,
// then returns http.ErrServerClosed; any other error is the listener's.
// It also serves Fallback on the connections handed over, and closes ln
// when it returns.
func (s *Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	if s.inShutdown.Load() {
		s.mu.Unlock()
		ln.Close()
		return http.ErrServerClosed
	}
	if s.serving {
		s.mu.Unlock()
		return errors.New("h1: Server.Serve called twice")
	}
	s.serving, s.ln = true, ln
	s.handoff = &handoffListener{addr: ln.Addr(), conns: make(chan net.Conn), done: make(chan struct{})}
	s.fallback = make(chan error, 1)
	s.mu.Unlock()
	go func() { s.fallback <- s.cfg.Fallback.Serve(s.handoff) }()

	base := context.Background()
	if s.cfg.Fallback.BaseContext != nil {
		base = s.cfg.Fallback.BaseContext(ln)
		if base == nil {
			panic("BaseContext returned a nil context")
		}
	}
	base = context.WithValue(base, http.ServerContextKey, s.cfg.Fallback)
	var delay time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			if s.inShutdown.Load() {
				return http.ErrServerClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || isTemporary(err) {
				// As net/http: too many open files, say; wait and retry.
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				s.logf("http: Accept error: %v; retrying in %v", err, delay)
				time.Sleep(delay)
				continue
			}
			s.Close()
			return err
		}
		delay = 0
		c := s.newConn(nc, base)
		if c == nil {
			continue // shutting down
		}
		go c.serve()
	}
}

// isTemporary reports whether an Accept error is one net/http retries.
func isTemporary(err error) bool {
	var t interface{ Temporary() bool }
	return errors.As(err, &t) && t.Temporary()
}

// Shutdown stops accepting, closes idle connections (those between
// requests, and new ones without a request after 5 s, as net/http), lets
// the requests in flight finish (their answers say Connection: close),
// shuts Fallback down likewise, and waits until every connection is
// closed or ctx ends (then it returns ctx's error; Close cuts the rest
// off).
func (s *Server) Shutdown(ctx context.Context) error {
	s.inShutdown.Store(true)
	s.mu.Lock()
	lnErr := s.closeListenerLocked()
	fallback := s.fallback
	s.mu.Unlock()

	fbDone := make(chan error, 1)
	go func() { fbDone <- s.cfg.Fallback.Shutdown(ctx) }()

	// Poll, as net/http does: connections go idle on their own goroutines.
	const maxPoll = 500 * time.Millisecond
	poll := time.Millisecond
	timer := time.NewTimer(poll)
	defer timer.Stop()
	for !s.closeIdleConns() {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-timer.C:
			poll = min(2*poll, maxPoll)
			timer.Reset(poll)
		}
	}
	if err := <-fbDone; err != nil {
		return err
	}
	if fallback != nil {
		<-fallback
	}
	return lnErr
}

// Close closes the listener and every connection at once, the loop's and
// Fallback's.
func (s *Server) Close() error {
	s.inShutdown.Store(true)
	s.mu.Lock()
	err := s.closeListenerLocked()
	for c := range s.conns {
		c.nc.Close()
	}
	s.mu.Unlock()
	return errors.Join(err, s.cfg.Fallback.Close())
}

func (s *Server) closeListenerLocked() error {
	if s.ln == nil {
		return nil
	}
	err := s.ln.Close()
	s.ln = nil
	if errors.Is(err, net.ErrClosed) {
		err = nil
	}
	return err
}

// closeIdleConns closes the connections that wait for a request and
// reports whether none is left.
func (s *Server) closeIdleConns() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	quiescent := true
	now := time.Now().Unix()
	for c := range s.conns {
		st, since := c.getState()
		if st == connNew && since < now-5 {
			st = connIdle
		}
		if st != connIdle {
			quiescent = false
			continue
		}
		c.nc.Close()
		delete(s.conns, c)
	}
	return quiescent
}

// newConn registers a new connection, or closes it when shutting down.
func (s *Server) newConn(nc net.Conn, base context.Context) *serverConn {
	c := &serverConn{srv: s, nc: nc}
	c.setState(connNew)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.inShutdown.Load() {
		nc.Close()
		return nil
	}
	s.conns[c] = struct{}{}
	c.ctx = context.WithValue(base, http.LocalAddrContextKey, nc.LocalAddr())
	return c
}

func (s *Server) forget(c *serverConn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
}

func (s *Server) logf(format string, args ...any) {
	if s.errorLog != nil {
		s.errorLog.Printf(format, args...)
	} else {
		log.Printf(format, args...)
	}
}

// getOut lends a buffer for an answer; putOut takes it back.
func (s *Server) getOut() *[]byte {
	if b, _ := s.outBufs.Get().(*[]byte); b != nil {
		return b
	}
	b := make([]byte, 0, outBufferSize)
	return &b
}

func (s *Server) putOut(b *[]byte) {
	if cap(*b) > 4*outBufferSize {
		return // a rare large one: let it go
	}
	*b = (*b)[:0]
	s.outBufs.Put(b)
}

// handOff gives a connection to Fallback: its Serve loop accepts it from
// here. It fails only when shutting down.
func (s *Server) handOff(c net.Conn) bool {
	select {
	case s.handoff.conns <- c:
		return true
	case <-s.handoff.done:
		return false
	}
}

// handoffListener is the listener Fallback serves: it accepts the
// connections the loop hands over.
type handoffListener struct {
	addr  net.Addr
	conns chan net.Conn
	done  chan struct{} // closed by Close
	once  sync.Once
}

func (l *handoffListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *handoffListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *handoffListener) Addr() net.Addr { return l.addr }

// Connection states, for Shutdown (as net/http's ConnState).
type connState uint8

const (
	connNew    connState = iota // accepted, no request byte yet
	connActive                  // a request is being read or served
	connIdle                    // between requests
)

// dateCache formats the Date field once a second. Each connection keeps
// its own copy (date); the cache is read with one atomic load.
type dateCache struct {
	cur atomic.Pointer[dateStamp]
}

type dateStamp struct {
	sec  int64
	line []byte // "Date: ...\r\n"
}

// line returns the Date field line for now.
func (d *dateCache) line(now time.Time) []byte {
	sec := now.Unix()
	if st := d.cur.Load(); st != nil && st.sec == sec {
		return st.line
	}
	b := append([]byte("Date: "), now.UTC().AppendFormat(nil, http.TimeFormat)...)
	st := &dateStamp{sec: sec, line: append(b, "\r\n"...)}
	d.cur.Store(st)
	return st.line
}
