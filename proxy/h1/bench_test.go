package h1

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"sync"
	"testing"
)

// browserRequest is a request head of the size browsers send.
const browserRequest = "GET /products/42?ref=home HTTP/1.1\r\n" +
	"Host: shop.example.com\r\n" +
	"User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\n" +
	"Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n" +
	"Accept-Language: en-US,en;q=0.5\r\n" +
	"Accept-Encoding: gzip, deflate, br\r\n" +
	"Connection: keep-alive\r\n" +
	"Cookie: session=0123456789abcdef0123456789abcdef; theme=dark\r\n" +
	"Upgrade-Insecure-Requests: 1\r\n" +
	"\r\n"

// BenchmarkGuardScan is the framing guard's cost per request head read.
func BenchmarkGuardScan(b *testing.B) {
	s := scanner{maxHead: DefaultMaxHeadBytes}
	buf := []byte(browserRequest)
	b.SetBytes(int64(len(buf)))
	b.ReportAllocs()
	for b.Loop() {
		if err := s.scan(buf); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkParseRequestHead is the request-head parser alone.
func BenchmarkParseRequestHead(b *testing.B) {
	var h RequestHead
	buf := []byte(browserRequest)
	b.SetBytes(int64(len(buf)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseRequestHead(buf, &h); err != nil {
			b.Fatal(err)
		}
	}
}

// repeatConn is a client connection sending the same request n times,
// pipelined, and dropping the answers.
type repeatConn struct {
	memConn
	req  []byte
	off  int
	left int
}

func (c *repeatConn) Read(p []byte) (int, error) {
	if c.closed {
		return 0, net.ErrClosed
	}
	n := 0
	for n < len(p) && c.left > 0 {
		k := copy(p[n:], c.req[c.off:])
		n += k
		if c.off += k; c.off == len(c.req) {
			c.off = 0
			c.left--
		}
	}
	if n == 0 {
		return 0, io.EOF
	}
	return n, nil
}

func (c *repeatConn) Write(p []byte) (int, error) { return len(p), nil }

// benchHandler answers as a small backend answer relayed: a few fields and
// 100 bytes.
var benchHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h["Content-Type"] = []string{"application/json"}
	h["Content-Length"] = []string{"100"}
	w.Write(benchBody)
})

var benchBody = bytes.Repeat([]byte("x"), 100)

// BenchmarkServerLoop is the server loop's own cost per request: read,
// parse, build the request, run a handler, write the answer, over an
// in-memory connection (no system calls), pipelined.
func BenchmarkServerLoop(b *testing.B) {
	srv := NewServer(ServerConfig{Fallback: &http.Server{Handler: benchHandler}})
	c := &repeatConn{req: []byte(browserRequest), left: b.N}
	sc := &serverConn{srv: srv, nc: c, ctx: context.Background()}
	b.SetBytes(int64(len(browserRequest)))
	b.ReportAllocs()
	b.ResetTimer()
	sc.serve()
}

// BenchmarkNetHTTPServer is BenchmarkServerLoop with net/http's server.
func BenchmarkNetHTTPServer(b *testing.B) {
	done := make(chan struct{})
	srv := &http.Server{Handler: benchHandler, ConnState: func(_ net.Conn, st http.ConnState) {
		if st == http.StateClosed {
			close(done)
		}
	}}
	c := &repeatConn{req: []byte(browserRequest), left: b.N}
	ln := &oneConnListener{c: c, closed: make(chan struct{})}
	b.SetBytes(int64(len(browserRequest)))
	b.ReportAllocs()
	b.ResetTimer()
	go srv.Serve(ln)
	<-done
	b.StopTimer()
	srv.Close()
}

// oneConnListener accepts one connection, then waits until closed.
type oneConnListener struct {
	c      net.Conn
	once   sync.Once
	closed chan struct{}
}

func (l *oneConnListener) Accept() (net.Conn, error) {
	var c net.Conn
	l.once.Do(func() { c = l.c })
	if c != nil {
		return c, nil
	}
	<-l.closed
	return nil, net.ErrClosed
}

func (l *oneConnListener) Close() error {
	select {
	case <-l.closed:
	default:
		close(l.closed)
	}
	return nil
}

func (l *oneConnListener) Addr() net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 80} }
