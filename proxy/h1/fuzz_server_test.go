package h1

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"net/url"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// The server loop's requests against net/http's: FuzzServerRequest feeds
// one byte stream to the loop (through an in-memory connection, read in
// pieces) and to http.ReadRequest with the checks net/http's server adds,
// and compares every request either serves.

// servedRequest is what a handler saw of one request.
type servedRequest struct {
	Method, Proto, Host, RequestURI string
	ProtoMajor, ProtoMinor          int
	URL                             *url.URL
	Header                          http.Header
	ContentLength                   int64
	TransferEncoding                []string
	Close                           bool
	DeclaredTrailer                 []string // Trailer's keys before the body was read
	Body                            []byte
	BodyOK                          bool
	Trailer                         http.Header // after the body was read
	end                             int         // net/http's side: offset after it
}

// record copies what the handler sees of r (the loop reuses the request
// and its parts once the handler returned).
func record(r *http.Request) servedRequest {
	u := *r.URL
	s := servedRequest{
		Method: r.Method, Proto: r.Proto, Host: r.Host, RequestURI: r.RequestURI,
		ProtoMajor: r.ProtoMajor, ProtoMinor: r.ProtoMinor, URL: &u, Header: r.Header.Clone(),
		ContentLength: r.ContentLength, TransferEncoding: slices.Clone(r.TransferEncoding), Close: r.Close,
	}
	for k := range r.Trailer {
		s.DeclaredTrailer = append(s.DeclaredTrailer, k)
	}
	slices.Sort(s.DeclaredTrailer)
	body, err := io.ReadAll(r.Body)
	s.Body, s.BodyOK = body, err == nil
	if len(r.Trailer) > 0 {
		s.Trailer = r.Trailer.Clone()
	}
	return s
}

// memConn is an in-memory client connection delivering raw in reads of
// step bytes, or, for step 0, of 1, 2, 3, 5, 8 and 13 bytes in turn (every
// boundary is split somewhere, in fewer reads than one byte at a time).
type memConn struct {
	r      *bytes.Reader
	step   int
	reads  int
	out    bytes.Buffer
	closed bool
}

var readSizes = [...]int{1, 2, 3, 5, 8, 13}

func (c *memConn) Read(p []byte) (int, error) {
	if c.closed {
		return 0, net.ErrClosed
	}
	step := c.step
	if step == 0 {
		step = readSizes[c.reads%len(readSizes)]
		c.reads++
	}
	if len(p) > step {
		p = p[:step]
	}
	return c.r.Read(p)
}

func (c *memConn) Write(p []byte) (int, error) {
	if c.closed {
		return 0, net.ErrClosed
	}
	return c.out.Write(p)
}

func (c *memConn) Close() error                     { c.closed = true; return nil }
func (c *memConn) LocalAddr() net.Addr              { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 80} }
func (c *memConn) RemoteAddr() net.Addr             { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1234} }
func (c *memConn) SetDeadline(time.Time) error      { return nil }
func (c *memConn) SetReadDeadline(time.Time) error  { return nil }
func (c *memConn) SetWriteDeadline(time.Time) error { return nil }

// loopOutcome is how the loop's connection ended.
type loopOutcome struct {
	handedOff bool
	refusal   string // the framing guard's reason, if it refused
	tooLarge  bool   // 431
}

// loopStream serves raw with the server loop, read in pieces of step
// bytes (see memConn), and returns the requests the handler saw and how the connection
// ended.
func loopStream(raw []byte, step int) ([]servedRequest, loopOutcome) {
	var (
		got []servedRequest
		out loopOutcome
	)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = append(got, record(r))
		io.WriteString(w, "ok")
	})
	srv := NewServer(ServerConfig{
		Fallback: &http.Server{Handler: h},
		Guard:    GuardConfig{Rejected: func(reason string) { out.refusal = reason }},
	})
	srv.rstDelay = 0
	srv.handoff = &handoffListener{conns: make(chan net.Conn, 1), done: make(chan struct{})}
	mc := &memConn{r: bytes.NewReader(raw), step: step}
	c := &serverConn{srv: srv, nc: mc, ctx: context.WithValue(context.Background(), http.ServerContextKey, srv.cfg.Fallback)}
	c.serve()
	out.handedOff = c.handedOff
	out.tooLarge = bytes.Contains(mc.out.Bytes(), []byte("431 Request Header Fields Too Large"))
	return got, out
}

// httpStream reads the requests of raw as net/http's server would, until
// it would refuse one, a body fails or the connection is to close after
// an answer; such a request is the last.
// next is the offset where the first request it did not take starts.
func httpStream(raw []byte) (reqs []servedRequest, next int) {
	r := bytes.NewReader(raw)
	br := bufio.NewReader(r)
	var lastMethod string
	for {
		if lastMethod == http.MethodPost {
			peek, _ := br.Peek(4)
			n := 0
			for n < len(peek) && (peek[n] == '\r' || peek[n] == '\n') {
				n++
			}
			_, _ = br.Discard(n)
		}
		next = len(raw) - r.Len() - br.Buffered()
		req, err := http.ReadRequest(br)
		if err != nil || !serverAccepts(req, raw[next:]) {
			return reqs, next
		}
		s := record(req)
		s.end = len(raw) - r.Len() - br.Buffered()
		reqs = append(reqs, s)
		if !s.BodyOK || req.Close || hasToken(req.Header.Get("Connection"), "close") {
			// A failed body ends the connection; so does the answer to a
			// request asking for it (HTTP/1.0 without keep-alive, say).
			return reqs, s.end
		}
		lastMethod = req.Method
	}
}

// FuzzServerRequest holds the server loop's request parsing to net/http's.
// Every request the loop serves must be the request net/http's server
// makes of the same bytes: method, target, URL, version, fields, Host,
// length, transfer coding, Close, declared trailers, body and trailers.
// Where the two part ways, the loop must have a reason: a request it
// hands to net/http (which then serves it itself), or one the framing
// guard refuses for an ambiguity the request really has (see justified).
// The loop's verdict must not depend on how the stream is split into
// reads.
func FuzzServerRequest(f *testing.F) {
	for _, s := range smuggling {
		f.Add([]byte(s))
	}
	for _, s := range []string{
		"GET /a?b=c&d HTTP/1.1\r\nHost: example.com:8080\r\nAccept: */*\r\nAccept: text/html\r\nX-Empty:\r\n\r\n",
		"GET / HTTP/1.0\r\n\r\nGET / HTTP/1.0\r\nHost: a\r\nConnection: keep-alive\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\nConnection: close, x\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: a\r\nTrailer: X-Sum, x-other\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\nX-Sum: 1\r\nX-More: 2\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: a\r\nTrailer: Content-Length\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: a\r\nTrailer: X\r\nContent-Length: 1\r\n\r\nx",
		"GET / HTTP/1.1\r\nHost: a\r\nPragma: no-cache\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\nx",
		"GET / HTTP/1.1\r\nHost: a\r\nExpect: 100-CONTINUE, foo\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\nExpect: foo\r\n\r\n",
		"GET /%zz HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET /a%20b/%2F?x HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET http://h/x HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a b\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
		"GET / HTTP/1.1\r\nhost: a\r\ncontent-length: 0\r\nx-lower-case: Value \t\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nhi",
		"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n" + strings.Repeat("1\r\nx\r\n", 100) + "0\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n" + strings.Repeat("1;"+strings.Repeat("e", 200)+"\r\nx\r\n", 100) + "0\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX-Long: " + strings.Repeat("t", 5000) + "\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nshort",
		"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
		"DELETE /x HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\nPURGE /y HTTP/1.1\r\nHost: a\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		if len(raw) > 64<<10 {
			return
		}
		served, outcome := loopStream(raw, 0)
		whole, wholeOutcome := loopStream(raw, len(raw)+1)
		if !reflect.DeepEqual(served, whole) || outcome != wholeOutcome {
			t.Fatalf("the loop depends on the reads: in small pieces %d requests, %+v; at once %d, %+v", len(served), outcome, len(whole), wholeOutcome)
		}
		accepted, next := httpStream(raw)
		start := 0
		for i := range min(len(served), len(accepted)) {
			l, n := served[i], accepted[i]
			msg := raw[start:n.end]
			start = n.end
			if !l.BodyOK && outcome.refusal != "" && i == len(served)-1 {
				// The guard refused the body, where net/http is lenient or
				// fails later: the refusal must be justified, and what the
				// handler read before it may be less.
				if n.BodyOK && !justified(FramingError(outcome.refusal), msg) {
					t.Fatalf("request %d: the loop refused %.300q's body (%s), which net/http reads", i, msg, outcome.refusal)
				}
				l.Body, l.Trailer, n.Body, n.BodyOK, n.Trailer = nil, nil, nil, false, nil
			}
			n.end = 0
			if !reflect.DeepEqual(l, n) {
				t.Fatalf("request %d of %.300q:\nloop     %+v\nnet/http %+v", i, raw, l, n)
			}
		}
		switch {
		case len(served) < len(accepted):
			// The loop stopped before a request net/http serves.
			i := len(served)
			if i > 0 && !served[i-1].BodyOK {
				return // both stopped at a failed body (compared above)
			}
			switch {
			case outcome.handedOff:
				return // net/http serves it, through the guard
			case outcome.refusal != "":
				from := 0
				if i > 0 {
					from = accepted[i-1].end
				}
				if msg := raw[from:accepted[i].end]; !justified(FramingError(outcome.refusal), msg) {
					t.Fatalf("the loop refused %.300q (%s), which net/http accepts", msg, outcome.refusal)
				}
			default:
				t.Fatalf("net/http read %d requests of %.300q, the loop %d and stopped", len(accepted), raw, len(served))
			}
		case len(served) > len(accepted):
			// net/http refuses a request the loop serves: only for empty
			// lines before it, which the loop (and the guard) skip as RFC
			// 9112 §2.2 allows.
			if i := len(accepted); next >= len(raw) || (raw[next] != '\r' && raw[next] != '\n') {
				t.Fatalf("the loop served request %d of %.300q, which net/http refuses", i, raw)
			}
		}
	})
}
