package proxy

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/canaryd/canaryd/proxy/h1"
	"github.com/canaryd/canaryd/split"
)

// captureConn is a connection to nowhere for http.Transport: it keeps what
// the Transport writes and, once a request head is complete, answers it
// with an empty 204.
type captureConn struct {
	mu      sync.Mutex
	written bytes.Buffer
	answer  chan []byte
	closed  chan struct{}
	once    sync.Once
	pending []byte
}

func newCaptureConn() *captureConn {
	return &captureConn{answer: make(chan []byte, 1), closed: make(chan struct{})}
}

func (c *captureConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.written.Write(p)
	if bytes.Contains(c.written.Bytes(), []byte("\r\n\r\n")) {
		select {
		case c.answer <- []byte("HTTP/1.1 204 No Content\r\n\r\n"):
		default:
		}
	}
	return len(p), nil
}

func (c *captureConn) Read(p []byte) (int, error) {
	if len(c.pending) == 0 {
		select {
		case b := <-c.answer:
			c.pending = b
		case <-c.closed:
			return 0, io.EOF
		}
	}
	n := copy(p, c.pending)
	c.pending = c.pending[n:]
	return n, nil
}

func (c *captureConn) head() []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return bytes.Clone(c.written.Bytes())
}

func (c *captureConn) Close() error                     { c.once.Do(func() { close(c.closed) }); return nil }
func (c *captureConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (c *captureConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (c *captureConn) SetDeadline(time.Time) error      { return nil }
func (c *captureConn) SetReadDeadline(time.Time) error  { return nil }
func (c *captureConn) SetWriteDeadline(time.Time) error { return nil }

// fuzzTargets are backend URLs the outbound request is rewritten for.
var fuzzTargets = []string{
	"http://backend.test",
	"http://backend.test:8080/base",
	"http://backend.test/base/",
	"http://backend.test/base?k=v",
	"http://backend.test/a%2Fb/",
}

// standardRequest returns the bytes the standard path (canaryd's
// ReverseProxy over its Transport) sends to target for r, or nil and the
// error it reported.
func standardRequest(t *testing.T, p *Proxy, target *url.URL, r *http.Request) ([]byte, error) {
	conn := newCaptureConn()
	defer conn.Close()
	tr := newTransport(p.cfg, schemeHTTP)
	tr.DialContext = func(context.Context, string, string) (net.Conn, error) { return conn, nil }
	defer tr.CloseIdleConnections()
	var rpErr error
	rp := p.newReverseProxy(target, tr, split.Stable)
	rp.ErrorHandler = func(_ http.ResponseWriter, _ *http.Request, err error) { rpErr = err }
	rp.ServeHTTP(httptest.NewRecorder(), r)
	if rpErr != nil {
		return nil, rpErr
	}
	return conn.head(), nil
}

// FuzzOutboundRequest holds the fast path's outbound request to what
// httputil.ReverseProxy sends over canaryd's Transport for the same
// inbound request, field by field: the same request line, Host, fields
// and values (field order aside), and the same refusals.
func FuzzOutboundRequest(f *testing.F) {
	seeds := []string{
		"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET /dir?q=1 HTTP/1.1\r\nHost: shop.example.com\r\nConnection: X-Hop-Named\r\nX-Hop-Named: drop me\r\nProxy-Authorization: Basic drop\r\nTe: gzip\r\nX-Forwarded-For: 203.0.113.7\r\nX-End-To-End: keep\r\n\r\n",
		"HEAD /x HTTP/1.1\r\nHost: a\r\nTe: trailers, deflate\r\nX-Forwarded-Host: spoofed\r\nX-Forwarded-Proto: https\r\nForwarded: for=1.2.3.4\r\n\r\n",
		"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n",
		"OPTIONS /o HTTP/1.1\r\nHost: a\r\nUser-Agent: curl/8\r\nUser-Agent: second\r\n\r\n",
		"GET /a%2Fb?x=%zz HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET /a;b?x;y HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET //double/slash HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, Keep-Alive\r\nKeep-Alive: timeout=5\r\n\r\n",
		"GET /? HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET /x HTTP/1.0\r\nUser-Agent:\r\n\r\n",
		"GET http://absolute.test/x HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET /x HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\nTrailer: X\r\nUpgrade: websocket\r\n\r\n",
		"GET /x HTTP/1.1\r\nHost: a\r\nConnection: x-forwarded-for\r\nX-Forwarded-For: 10.0.0.1\r\nX-Forwarded-For: 10.0.0.2\r\n\r\n",
		"GET /caf\xc3\xa9 HTTP/1.1\r\nHost: h\xc3\xa9\r\nX-Obs: \xff\r\n\r\n",
	}
	for _, s := range seeds {
		for i := range fuzzTargets {
			f.Add([]byte(s), uint8(i), i%2 == 0)
		}
	}
	sp, err := split.New(split.Config{}, 0)
	if err != nil {
		f.Fatal(err)
	}
	p, err := New(Config{Stable: &url.URL{Scheme: "http", Host: "127.0.0.1:1"}, Canary: &url.URL{Scheme: "http", Host: "127.0.0.1:2"}},
		sp, zerolog.Nop(), nil)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, raw []byte, which uint8, overTLS bool) {
		r, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(raw)))
		if err != nil || !inboundAccepted(r) || !h1.Eligible(r) {
			return
		}
		r.RemoteAddr = "192.0.2.7:40000"
		if overTLS {
			r.TLS = &tls.ConnectionState{}
		}
		target, _ := url.Parse(fuzzTargets[int(which)%len(fuzzTargets)])
		ft := h1.NewTarget(target)
		fast, fastErr := ft.AppendRequest(nil, r)
		std, stdErr := standardRequest(t, p, target, r)
		if (fastErr != nil) != (stdErr != nil) {
			t.Fatalf("fast path error %v; standard path error %v", fastErr, stdErr)
		}
		if fastErr != nil {
			return
		}
		lineA, fieldsA := rawHead(fast)
		lineB, fieldsB := rawHead(std)
		if lineA != lineB {
			t.Fatalf("request lines differ:\nfast     %q\nstandard %q", fast, std)
		}
		if !reflect.DeepEqual(fieldsA, fieldsB) {
			t.Fatalf("fields differ:\nfast     %q\nstandard %q", fast, std)
		}
	})
}

// rawHead splits a request head as sent into its request line and its
// fields, by canonical name, values in the order sent (no parser in
// between that could hide a difference).
func rawHead(b []byte) (line string, fields map[string][]string) {
	head, _, _ := bytes.Cut(b, []byte("\r\n\r\n"))
	lines := strings.Split(string(head), "\r\n")
	fields = map[string][]string{}
	for _, l := range lines[1:] {
		k, v, _ := strings.Cut(l, ":")
		fields[http.CanonicalHeaderKey(k)] = append(fields[http.CanonicalHeaderKey(k)], strings.TrimLeft(v, " "))
	}
	return lines[0], fields
}

// inboundAccepted applies the checks net/http's server adds to ReadRequest.
func inboundAccepted(r *http.Request) bool {
	if r.ProtoMajor != 1 {
		return false
	}
	if hosts, ok := r.Header["Host"]; r.ProtoAtLeast(1, 1) && (!ok || len(hosts) == 0) {
		return false
	}
	for k, vv := range r.Header {
		if !h1.ValidFieldName(k) {
			return false
		}
		for _, v := range vv {
			if !h1.ValidFieldValue(v) {
				return false
			}
		}
	}
	delete(r.Header, "Host") // as the server does
	return true
}
