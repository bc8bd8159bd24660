package h1

import (
	"bytes"
	"crypto/tls"
	"io"
	"net"
	"sync"
	"sync/atomic"
)

// The framing guard.
//
// net/http resolves some ambiguous request framing safely for itself
// (Content-Length beside Transfer-Encoding, obs-folded fields, bare LF line
// ends, lenient chunk sizes), but a backend behind the proxy may resolve it
// differently, and a front door should refuse it outright, as nginx and
// Envoy do. The guard sits under net/http, in the connection: it follows
// the HTTP/1.1 framing of every byte net/http reads, parses each request
// head with ParseRequestHead, skips bodies by their Content-Length or chunk
// sizes (strictly: 1*HEXDIG, CRLF after each chunk, trailers as field
// lines), and at the first ambiguity answers 400 itself and closes the
// connection, before net/http has seen the rest of the request. A refused
// request therefore never reaches a handler, let alone a backend.
//
// A connection becomes opaque (no longer checked) only when the server
// answers 101 to a request that asked for an upgrade: Write watches the
// status line of the answer. Any other answer (a refused upgrade, a
// CONNECT, which canaryd refuses) leaves it HTTP/1.1 and checked.

// GuardConfig configures the framing guard. The zero value is usable.
type GuardConfig struct {
	// Rejected, if not nil, is told each refusal's reason (for a log
	// line). It is called on the connection's read path and must not
	// block.
	Rejected func(reason string)
	// MaxHeadBytes bounds a request head or a trailer section the guard
	// holds while it arrives in pieces; a larger one is refused. Zero means
	// 1 MiB. net/http's own limit (Server.MaxHeaderBytes) is normally
	// lower and answered 431 first.
	MaxHeadBytes int
	// AllowH2C lets a connection that opens with the HTTP/2 connection
	// preface (prior knowledge, RFC 9113 §3.4) through unguarded, for a
	// server that serves plaintext HTTP/2 (http.Server.Protocols with
	// UnencryptedHTTP2): HTTP/2 frames its messages unambiguously. The
	// preface anywhere else, or with AllowH2C false, is refused (400).
	AllowH2C bool
}

// h2Preface is the HTTP/2 connection preface a client with prior knowledge
// opens with.
const h2Preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

// DefaultMaxHeadBytes is the guard's bound when GuardConfig.MaxHeadBytes is
// zero.
const DefaultMaxHeadBytes = 1 << 20

// GuardListener wraps a plain-HTTP listener: every connection it accepts is
// guarded.
func GuardListener(ln net.Listener, cfg GuardConfig) net.Listener {
	return &guardListener{Listener: ln, cfg: cfg}
}

type guardListener struct {
	net.Listener
	cfg GuardConfig
}

func (l *guardListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return newGuardConn(c, &l.cfg, nil), nil
}

// guardConn is one guarded connection.
type guardConn struct {
	net.Conn
	cfg *GuardConfig
	// tls is the handshake's state for HTTP/1.1 over TLS (see ConnContext);
	// nil on plain connections.
	tls *tls.ConnectionState

	// switchPending: an upgrade was asked for and not answered yet.
	// opaque: the server switched protocols; nothing is checked any more.
	// Set by Read and Write, which may run at once.
	switchPending atomic.Bool
	opaque        atomic.Bool

	// prefaceSeen is how much of h2Preface the connection opened with, so
	// far (AllowH2C); -1 once it is known not to open with it. Those bytes
	// were given to the reader unscanned; they are scanned once the
	// connection turns out to be HTTP/1.1. Read only.
	prefaceSeen int

	mu sync.Mutex // protects sc; net/http never reads concurrently, this makes it a fact here
	sc scanner
}

func newGuardConn(c net.Conn, cfg *GuardConfig, st *tls.ConnectionState) *guardConn {
	g := &guardConn{Conn: c, cfg: cfg, tls: st, prefaceSeen: -1}
	if cfg.AllowH2C && st == nil {
		g.prefaceSeen = 0
	}
	g.sc.maxHead = cfg.MaxHeadBytes
	if g.sc.maxHead <= 0 {
		g.sc.maxHead = DefaultMaxHeadBytes
	}
	return g
}

func (c *guardConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 && !c.opaque.Load() {
		c.mu.Lock()
		b := p[:n]
		var ferr error
		if c.prefaceSeen >= 0 {
			b, ferr = c.preface(b)
		}
		if ferr == nil && len(b) > 0 {
			ferr = c.sc.scan(b)
		}
		upgrade := c.sc.upgrade
		c.sc.upgrade = false
		c.mu.Unlock()
		if upgrade {
			c.switchPending.Store(true)
		}
		if ferr != nil {
			c.reject(ferr)
			return 0, io.EOF
		}
	}
	return n, err
}

// preface follows the start of a connection that may open with the HTTP/2
// preface (AllowH2C). It returns what is left to scan as HTTP/1.1: nothing
// while b continues the preface (the whole of it makes the connection
// opaque), or, at the first byte that departs from it, the bytes held back
// so far followed by b. Under c.mu.
func (c *guardConn) preface(b []byte) ([]byte, error) {
	k := min(len(b), len(h2Preface)-c.prefaceSeen)
	if string(b[:k]) == h2Preface[c.prefaceSeen:c.prefaceSeen+k] {
		if c.prefaceSeen += k; c.prefaceSeen == len(h2Preface) {
			c.opaque.Store(true)
			c.prefaceSeen = -1
		}
		return nil, nil
	}
	held := c.prefaceSeen
	c.prefaceSeen = -1
	if held > 0 {
		if err := c.sc.scan([]byte(h2Preface[:held])); err != nil {
			return nil, err
		}
	}
	return b, nil
}

// Write watches the answer to a request that asked for an upgrade: a 101
// makes the connection opaque; any final answer ends the wait.
func (c *guardConn) Write(p []byte) (int, error) {
	if c.switchPending.Load() && len(p) >= len("HTTP/1.1 101") && bytes.HasPrefix(p, []byte("HTTP/1.")) {
		switch code := p[9:12]; {
		case string(code) == "101":
			c.opaque.Store(true)
			c.switchPending.Store(false)
		case code[0] != '1': // not a 100 Continue or 103 Early Hints
			c.switchPending.Store(false)
		}
	}
	return c.Conn.Write(p)
}

// CloseWrite half-closes the connection when the wrapped one can, so
// net/http's graceful close after an error still works through the guard.
func (c *guardConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// reject answers 400 with the reason as a JSON error and closes the
// connection.
func (c *guardConn) reject(err error) {
	reason := err.Error()
	if c.cfg.Rejected != nil {
		c.cfg.Rejected(reason)
	}
	_ = writeRefusal(c.Conn, reason)
	_ = c.Conn.Close()
}

type scanState uint8

const (
	betweenRequests scanState = iota // empty lines may precede a request line
	inHead
	inBody
	inChunkSize
	inChunkData
	inChunkEnd
	inTrailer
)

// scanner follows the framing of a stream of requests.
type scanner struct {
	state     scanState
	remaining int64  // body or chunk-data bytes left
	crlf      int    // bytes seen of the CRLF that ends chunk data
	cr        bool   // betweenRequests: a CR was seen, its LF is due
	pending   []byte // a head, chunk-size line or trailer line split across reads
	trailer   int    // bytes of the current trailer section
	maxHead   int
	head      RequestHead
	upgrade   bool // the last head asked for an upgrade (taken by Read)
	messages  int  // requests seen whole (for tests: where the guard framed them)
}

// scan advances over b and returns the reason to refuse the connection, if
// any.
func (s *scanner) scan(b []byte) error {
	for len(b) > 0 {
		switch s.state {
		case betweenRequests:
			switch c := b[0]; {
			case s.cr && c != '\n':
				return errRequestLine
			case s.cr:
				s.cr = false
			case c == '\r':
				s.cr = true
			case c == '\n':
				return errBareLF
			default:
				s.state = inHead
				continue
			}
			b = b[1:]
		case inHead:
			n, err := s.takeHead(b)
			if err != nil {
				return err
			}
			b = b[n:]
		case inBody, inChunkData:
			k := min(int64(len(b)), s.remaining)
			s.remaining -= k
			b = b[k:]
			if s.remaining == 0 {
				if s.state == inBody {
					s.endOfMessage()
				} else {
					s.state, s.crlf = inChunkEnd, 0
				}
			}
		case inChunkEnd:
			if b[0] != "\r\n"[s.crlf] {
				return errChunkEnd
			}
			b = b[1:]
			if s.crlf++; s.crlf == 2 {
				s.state = inChunkSize
			}
		case inChunkSize, inTrailer:
			limit := maxChunkLine + 1 // with its CRLF; net/http refuses 4096 bytes and more before it
			if s.state == inTrailer {
				limit = s.maxHead - s.trailer
			}
			line, n, err := s.takeLine(b, limit)
			if err != nil {
				return err
			}
			b = b[n:]
			if line != nil {
				if err := s.endOfLine(line); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// takeHead consumes the request head at the start of b, or all of b when
// the head goes on in a later read.
func (s *scanner) takeHead(b []byte) (int, error) {
	if len(s.pending) == 0 {
		end := headEnd(b, 0)
		if end < 0 {
			if len(b) > s.maxHead {
				return 0, errHeadTooLarge
			}
			s.pending = append(s.pending, b...)
			return len(b), nil
		}
		return end, s.endOfHead(b[:end])
	}
	// The end may straddle the reads: search from the last LF that could
	// start it.
	from := max(len(s.pending)-2, 0)
	prior := len(s.pending)
	s.pending = append(s.pending, b...)
	end := headEnd(s.pending, from)
	if end < 0 {
		if len(s.pending) > s.maxHead {
			return 0, errHeadTooLarge
		}
		return len(b), nil
	}
	err := s.endOfHead(s.pending[:end])
	s.releasePending()
	return end - prior, err
}

// endOfHead parses a complete head and sets up for its body.
func (s *scanner) endOfHead(head []byte) error {
	if _, err := ParseRequestHead(head, &s.head); err != nil {
		return err
	}
	s.upgrade = s.head.Upgrade
	switch {
	case s.head.Framing == Chunked:
		s.state = inChunkSize
	case s.head.Framing == Length && s.head.Length > 0:
		s.state, s.remaining = inBody, s.head.Length
	default:
		s.endOfMessage()
	}
	return nil
}

func (s *scanner) endOfMessage() {
	s.state = betweenRequests
	s.messages++
}

// takeLine returns the line at the start of b with its line end, or nil
// after keeping all of b when the line goes on in a later read; n is how
// much of b it consumed. limit bounds the whole line.
func (s *scanner) takeLine(b []byte, limit int) (line []byte, n int, err error) {
	i := bytes.IndexByte(b, '\n')
	if i < 0 {
		if len(s.pending)+len(b) > limit {
			return nil, 0, s.tooLong()
		}
		s.pending = append(s.pending, b...)
		return nil, len(b), nil
	}
	if len(s.pending)+i+1 > limit {
		return nil, 0, s.tooLong()
	}
	if len(s.pending) == 0 {
		return b[:i+1], i + 1, nil
	}
	s.pending = append(s.pending, b[:i+1]...)
	return s.pending, i + 1, nil
}

func (s *scanner) tooLong() error {
	if s.state == inTrailer {
		return errTrailerTooLarge
	}
	return errChunkLine
}

// endOfLine handles a complete chunk-size or trailer line (with its end).
func (s *scanner) endOfLine(line []byte) error {
	defer s.releasePending()
	n := len(line)
	if n < 2 || line[n-2] != '\r' {
		return errBareLF
	}
	line = line[:n-2]
	if s.state == inChunkSize {
		size, err := parseChunkSize(line)
		switch {
		case err != nil:
			return err
		case size == 0:
			s.state, s.trailer = inTrailer, 0
		default:
			s.state, s.remaining = inChunkData, size
		}
		return nil
	}
	if len(line) == 0 {
		s.endOfMessage()
		return nil
	}
	s.trailer += n
	_, _, err := parseFieldLine(line)
	return err
}

// releasePending empties the pending buffer, and lets a large one go.
func (s *scanner) releasePending() {
	if cap(s.pending) > 64<<10 {
		s.pending = nil
		return
	}
	s.pending = s.pending[:0]
}
