package proxy_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/canaryd/canaryd/proxy"
)

// connCounter counts the distinct connections a test server accepted.
type connCounter struct{ n atomic.Int64 }

func (c *connCounter) hook(_ net.Conn, s http.ConnState) {
	if s == http.StateNew {
		c.n.Add(1)
	}
}

// countedBackend is a loopback backend running h that counts connections.
func countedBackend(t *testing.T, h http.HandlerFunc) (*httptest.Server, *connCounter) {
	t.Helper()
	var cc connCounter
	s := httptest.NewUnstartedServer(h)
	s.Config.ConnState = cc.hook
	s.Start()
	t.Cleanup(s.Close)
	return s, &cc
}

// stableOnly fronts a proxy whose stable backend is url (the canary is
// unreachable and gets no traffic).
func stableOnly(t *testing.T, url string, mod func(*proxy.Config)) (*proxy.Proxy, *httptest.Server) {
	t.Helper()
	cfg := proxy.Config{Stable: mustURL(t, url), Canary: mustURL(t, "http://127.0.0.1:1")}
	if mod != nil {
		mod(&cfg)
	}
	p, _, _, front := newRealProxy(t, cfg, 0)
	return p, front
}

// rawBackend serves each accepted connection with serve, on loopback. Its
// cleanup closes the connections still open (the proxy's idle ones).
func rawBackend(t *testing.T, serve func(net.Conn)) (url string, conns *atomic.Int64) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	conns = new(atomic.Int64)
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		open []net.Conn
	)
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range open {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns.Add(1)
			mu.Lock()
			open = append(open, c)
			mu.Unlock()
			wg.Go(func() {
				defer c.Close()
				serve(c)
			})
		}
	})
	return "http://" + ln.Addr().String(), conns
}

// readRequests reads requests from c and calls answer for each until the
// connection ends or answer returns false.
func readRequests(c net.Conn, answer func(*http.Request) bool) {
	br := bufio.NewReader(c)
	for {
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		io.Copy(io.Discard, req.Body)
		if !answer(req) {
			return
		}
	}
}

func get(t *testing.T, client *http.Client, method, url string, hdr http.Header) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, vv := range hdr {
		req.Header[k] = vv
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatalf("%s %s: reading the body: %v", method, url, err)
	}
	return resp, string(body)
}

func TestUpstreamConnectionReuse(t *testing.T) {
	tests := []struct {
		name      string
		backend   http.HandlerFunc
		reqHeader http.Header
		wantConns int64
	}{
		{"keep-alive reuses one connection",
			func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }, nil, 1},
		{"client Connection: close does not close upstream",
			func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") },
			http.Header{"Connection": {"close"}}, 1},
		{"backend Connection: close is honoured",
			func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Connection", "close")
				io.WriteString(w, "ok")
			}, nil, 5},
		{"chunked responses reuse the connection",
			func(w http.ResponseWriter, r *http.Request) {
				io.WriteString(w, "o")
				w.(http.Flusher).Flush()
				io.WriteString(w, "k")
			}, nil, 1},
		{"large bodies reuse the connection",
			func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Length", "100002")
				io.WriteString(w, "ok"+strings.Repeat("x", 100000))
			}, nil, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			backend, conns := countedBackend(t, tt.backend)
			p, front := stableOnly(t, backend.URL, nil)
			for i := range 5 {
				resp, body := get(t, front.Client(), http.MethodGet, front.URL+"/", tt.reqHeader)
				if resp.StatusCode != 200 || !strings.HasPrefix(body, "ok") {
					t.Fatalf("request %d: %d %.20q; want 200 ok", i, resp.StatusCode, body)
				}
				if v := resp.Header.Get("Connection"); v != "" && tt.reqHeader == nil {
					t.Errorf("request %d: response Connection %q leaked to the client", i, v)
				}
			}
			if got := conns.n.Load(); got != tt.wantConns {
				t.Errorf("backend connections = %d; want %d", got, tt.wantConns)
			}
			// The client may have the whole answer before the handler records it.
			waitFor(t, "5 recorded requests", func() bool { return p.Snapshot().Stable.Requests == 5 })
			if s := p.Snapshot(); s.Stable.Errors != 0 {
				t.Errorf("stable errors = %d; want 0", s.Stable.Errors)
			}
		})
	}
}

// A backend that closes a keep-alive connection while it is idle (as
// servers with a short idle timeout do) must not cost the client an error:
// the request is retried on a new connection.
func TestDeadIdleConnectionRetried(t *testing.T) {
	url, conns := rawBackend(t, func(c net.Conn) {
		readRequests(c, func(*http.Request) bool {
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
			return false // then close, without having said so
		})
	})
	for _, method := range []string{http.MethodGet, http.MethodHead} {
		t.Run(method, func(t *testing.T) {
			p, front := stableOnly(t, url, nil)
			before := conns.Load()
			for i := range 4 {
				resp, _ := get(t, front.Client(), method, front.URL+"/", nil)
				if resp.StatusCode != 200 {
					t.Fatalf("request %d: status %d; want 200", i, resp.StatusCode)
				}
				// Let the backend's close arrive before the next request.
				time.Sleep(10 * time.Millisecond)
			}
			if got := conns.Load() - before; got != 4 {
				t.Errorf("backend connections = %d; want 4 (one per request)", got)
			}
			waitFor(t, "4 recorded requests", func() bool { return p.Snapshot().Stable.Requests == 4 })
			if s := p.Snapshot(); s.Stable.Errors != 0 {
				t.Errorf("stable errors = %d; want 0", s.Stable.Errors)
			}
		})
	}
}

// A non-idempotent request is never sent twice: it takes the ReverseProxy
// path, which does not resend it either.
func TestPostWithoutBodyNotRetried(t *testing.T) {
	var hits atomic.Int64
	url, _ := rawBackend(t, func(c net.Conn) {
		readRequests(c, func(r *http.Request) bool {
			if hits.Add(1) == 2 {
				return false // drop the second request unanswered
			}
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
			return true
		})
	})
	_, front := stableOnly(t, url, nil)
	for i, want := range []int{200, 502} {
		resp, _ := get(t, front.Client(), http.MethodPost, front.URL+"/", nil)
		if resp.StatusCode != want {
			t.Errorf("POST %d: status %d; want %d", i, resp.StatusCode, want)
		}
	}
	if got := hits.Load(); got != 2 {
		t.Errorf("backend saw %d POSTs; want 2 (no resend)", got)
	}
}

func TestBodilessResponses(t *testing.T) {
	backend, conns := countedBackend(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Path", r.URL.Path)
		switch r.URL.Path {
		case "/204":
			w.WriteHeader(http.StatusNoContent)
		case "/304":
			w.Header().Set("Etag", `"v1"`)
			w.WriteHeader(http.StatusNotModified)
		default:
			w.Header().Set("Content-Length", "11")
			io.WriteString(w, "hello world")
		}
	})
	_, front := stableOnly(t, backend.URL, nil)
	tests := []struct {
		method, path string
		status       int
		length       string
		body         string
	}{
		{http.MethodHead, "/head", 200, "11", ""},
		{http.MethodGet, "/204", 204, "", ""},
		{http.MethodGet, "/304", 304, "", ""},
		{http.MethodGet, "/get", 200, "11", "hello world"},
		{http.MethodOptions, "/options", 200, "11", "hello world"},
	}
	for _, tt := range tests {
		resp, body := get(t, front.Client(), tt.method, front.URL+tt.path, nil)
		if resp.StatusCode != tt.status || body != tt.body || resp.Header.Get("X-Path") != tt.path {
			t.Errorf("%s %s = %d %q (X-Path %q); want %d %q", tt.method, tt.path, resp.StatusCode, body, resp.Header.Get("X-Path"), tt.status, tt.body)
		}
		if got := resp.Header.Get("Content-Length"); got != tt.length {
			t.Errorf("%s %s: Content-Length %q; want %q", tt.method, tt.path, got, tt.length)
		}
	}
	if got := conns.n.Load(); got != 1 {
		t.Errorf("backend connections = %d; want 1 (bodiless answers keep the connection)", got)
	}
}

func TestTrailersThroughProxy(t *testing.T) {
	backend, _ := countedBackend(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Trailer", "X-Checksum")
		w.Header().Set("X-Saw-Te", r.Header.Get("Te"))
		io.WriteString(w, "body")
		w.(http.Flusher).Flush()
		w.Header().Set("X-Checksum", "abc123")
		w.Header().Set(http.TrailerPrefix+"X-Late", "unannounced")
	})
	for _, method := range []string{http.MethodGet, http.MethodPost} {
		t.Run(method, func(t *testing.T) {
			_, front := stableOnly(t, backend.URL, nil)
			var body io.Reader // GET: the fast path; POST with a body: ReverseProxy
			if method == http.MethodPost {
				body = strings.NewReader("payload")
			}
			req, _ := http.NewRequest(method, front.URL+"/", body)
			req.Header.Set("Te", "trailers")
			resp, err := front.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			got, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if string(got) != "body" {
				t.Errorf("body = %q; want body", got)
			}
			if got := resp.Header.Get("X-Saw-Te"); got != "trailers" {
				t.Errorf("backend saw Te %q; want trailers", got)
			}
			if got := resp.Trailer.Get("X-Checksum"); got != "abc123" {
				t.Errorf("trailer X-Checksum = %q; want abc123 (trailers %v)", got, resp.Trailer)
			}
			if got := resp.Trailer.Get("X-Late"); got != "unannounced" {
				t.Errorf("trailer X-Late = %q; want unannounced", got)
			}
		})
	}
}

func TestExpectContinueThroughProxy(t *testing.T) {
	backend, _ := countedBackend(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "got %s", b)
	})
	_, front := stableOnly(t, backend.URL, nil)
	client := &http.Client{Transport: &http.Transport{ExpectContinueTimeout: 5 * time.Second}}
	defer client.CloseIdleConnections()
	req, _ := http.NewRequest(http.MethodPut, front.URL+"/", strings.NewReader("payload"))
	req.Header.Set("Expect", "100-continue")
	start := time.Now()
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "got payload" {
		t.Errorf("answer = %d %q; want 200 %q", resp.StatusCode, body, "got payload")
	}
	// The client waits for 100 Continue up to 5s; a proxy that swallowed it
	// would make the request take that long.
	if d := time.Since(start); d > 4*time.Second {
		t.Errorf("request took %v: 100 Continue was not passed on", d)
	}
}

// The backend sees its own host as Host (as http.Transport and
// ReverseProxy.SetURL send it); the client's Host travels in
// X-Forwarded-Host and its address is appended to X-Forwarded-For.
func TestHostHandling(t *testing.T) {
	type forwarded struct{ host, xfh, xff, proto string }
	got := make(chan forwarded, 1)
	backend, _ := countedBackend(t, func(w http.ResponseWriter, r *http.Request) {
		got <- forwarded{r.Host, r.Header.Get("X-Forwarded-Host"), r.Header.Get("X-Forwarded-For"), r.Header.Get("X-Forwarded-Proto")}
	})
	for _, method := range []string{http.MethodGet, http.MethodDelete} {
		t.Run(method, func(t *testing.T) {
			_, front := stableOnly(t, backend.URL, nil)
			req, _ := http.NewRequest(method, front.URL+"/", nil)
			req.Host = "shop.example.com"
			req.Header.Set("X-Forwarded-Host", "spoofed.example")
			req.Header.Set("X-Forwarded-Proto", "https")
			resp, err := front.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			s := <-got
			want := forwarded{strings.TrimPrefix(backend.URL, "http://"), "shop.example.com", "127.0.0.1", "http"}
			if s != want {
				t.Errorf("backend saw %+v; want %+v", s, want)
			}
		})
	}
}

func TestEarlyHintsForwarded(t *testing.T) {
	backend, _ := countedBackend(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Link", "</style.css>; rel=preload")
		w.WriteHeader(http.StatusEarlyHints)
		w.Header().Del("Link")
		io.WriteString(w, "page")
	})
	_, front := stableOnly(t, backend.URL, nil)
	conn, err := net.Dial("tcp", strings.TrimPrefix(front.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(conn, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusEarlyHints || resp.Header.Get("Link") == "" {
		t.Fatalf("first answer = %d %v; want 103 with Link", resp.StatusCode, resp.Header)
	}
	resp, err = http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || string(body) != "page" || resp.Header.Get("Link") != "" {
		t.Errorf("final answer = %d %q (Link %q); want 200 page, no Link", resp.StatusCode, body, resp.Header.Get("Link"))
	}
}

func TestUnaskedSwitchingProtocols(t *testing.T) {
	url, _ := rawBackend(t, func(c net.Conn) {
		readRequests(c, func(*http.Request) bool {
			io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: evil\r\nConnection: Upgrade\r\n\r\n")
			return false
		})
	})
	p, front := stableOnly(t, url, nil)
	resp, _ := get(t, front.Client(), http.MethodGet, front.URL+"/", nil)
	if resp.StatusCode != http.StatusBadGateway {
		t.Errorf("status = %d; want 502", resp.StatusCode)
	}
	waitFor(t, "the failure to be recorded", func() bool { return p.Snapshot().Stable.Errors == 1 })
}

func TestPipelinedRequests(t *testing.T) {
	backend, _ := countedBackend(t, func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, r.URL.Path)
	})
	_, front := stableOnly(t, backend.URL, nil)
	conn, err := net.Dial("tcp", strings.TrimPrefix(front.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	paths := []string{"/a", "/b", "/c", "/d"}
	var reqs strings.Builder
	for _, p := range paths {
		fmt.Fprintf(&reqs, "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", p)
	}
	go io.WriteString(conn, reqs.String())
	br := bufio.NewReader(conn)
	for _, want := range paths {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		if string(body) != want {
			t.Errorf("answer %q; want %q", body, want)
		}
	}
}

func TestMaxConnsPerBackend(t *testing.T) {
	release := make(chan struct{})
	var inFlight, peak atomic.Int64
	backend, conns := countedBackend(t, func(w http.ResponseWriter, r *http.Request) {
		n := inFlight.Add(1)
		defer inFlight.Add(-1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		if r.URL.Path == "/slow" {
			<-release
		}
		io.WriteString(w, "ok")
	})
	_, front := stableOnly(t, backend.URL, func(c *proxy.Config) { c.MaxConnsPerBackend = 1 })
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 8}}
	defer client.CloseIdleConnections()
	errc := make(chan error, 3)
	for range 3 {
		go func() {
			resp, err := client.Get(front.URL + "/slow")
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode != 200 {
					err = fmt.Errorf("status %d", resp.StatusCode)
				}
			}
			errc <- err
		}()
	}
	waitFor(t, "a request to reach the backend", func() bool { return inFlight.Load() == 1 })
	for range 3 {
		release <- struct{}{}
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
	}
	if p, c := peak.Load(), conns.n.Load(); p != 1 || c != 1 {
		t.Errorf("peak concurrency %d over %d connections; want 1 over 1", p, c)
	}
}

func TestClientCancelWhileStreaming(t *testing.T) {
	gone := make(chan struct{})
	backend, _ := countedBackend(t, func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "first")
		w.(http.Flusher).Flush()
		<-r.Context().Done()
		close(gone)
	})
	p, front := stableOnly(t, backend.URL, nil)
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, front.URL+"/", nil)
	resp, err := front.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 5)
	if _, err := io.ReadFull(resp.Body, buf); err != nil || string(buf) != "first" {
		t.Fatalf("first bytes = %q, %v", buf, err)
	}
	cancel()
	resp.Body.Close()
	select {
	case <-gone:
	case <-time.After(5 * time.Second):
		t.Fatal("the backend's request was not canceled after the client left")
	}
	waitFor(t, "the stream to be recorded", func() bool { return p.Snapshot().Stable.Requests == 1 })
	if s := p.Snapshot(); s.Stable.Errors != 0 {
		t.Errorf("stable errors = %d; want 0 (the client ended the stream)", s.Stable.Errors)
	}
}

func TestInvalidOutboundHeader(t *testing.T) {
	backend, _ := countedBackend(t, func(w http.ResponseWriter, r *http.Request) {})
	p, _ := stableOnly(t, backend.URL, nil)
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.Header["X-Bad"] = []string{"a\r\nInjected: yes"}
	w := httptest.NewRecorder()
	p.ServeHTTP(w, r)
	if w.Code != http.StatusBadGateway {
		t.Errorf("status = %d; want 502 for a header value with CRLF", w.Code)
	}
}

// TestResponseShapes sends raw backend answers of many shapes through the
// proxy: the common ones are parsed by the fast path, the others by
// http.ReadResponse; the client must see the same either way.
func TestResponseShapes(t *testing.T) {
	tests := []struct {
		name     string
		raw      string // the backend's answer
		status   int
		header   http.Header // must be present in the client's answer
		absent   []string    // must not be
		body     string
		reusable bool // the backend connection survives the exchange
	}{
		{"plain", "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok",
			200, http.Header{"Content-Type": {"text/plain"}}, nil, "ok", true},
		{"lower-case names, padded values", "HTTP/1.1 201 Created\r\ncontent-type:  text/x \t\r\nx-multi: a\r\nX-Multi: b\r\ncontent-length: 3\r\n\r\nabc",
			201, http.Header{"Content-Type": {"text/x"}, "X-Multi": {"a", "b"}}, nil, "abc", true},
		{"no reason phrase", "HTTP/1.1 404\r\nContent-Length: 0\r\n\r\n", 404, nil, nil, "", true},
		{"hop-by-hop dropped", "HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\nProxy-Authenticate: x\r\nUpgrade: h2\r\nContent-Length: 1\r\n\r\nx",
			200, nil, []string{"Connection", "Keep-Alive", "Proxy-Authenticate", "Upgrade"}, "x", true},
		{"Connection names a field", "HTTP/1.1 200 OK\r\nConnection: X-Private\r\nX-Private: secret\r\nX-Public: yes\r\nContent-Length: 1\r\n\r\nx",
			200, http.Header{"X-Public": {"yes"}}, []string{"X-Private", "Connection"}, "x", true},
		{"Connection: close", "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\nx",
			200, nil, []string{"Connection"}, "x", false},
		{"chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
			200, nil, []string{"Transfer-Encoding"}, "abcde", true},
		{"close-delimited", "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil close",
			200, nil, nil, "until close", false},
		{"obs-fold", "HTTP/1.1 200 OK\r\nX-Folded: a\r\n b\r\nContent-Length: 1\r\n\r\nx",
			200, http.Header{"X-Folded": {"a b"}}, nil, "x", true},
		{"bare LF", "HTTP/1.1 200 OK\nX-Lf: yes\nContent-Length: 1\n\nx",
			200, http.Header{"X-Lf": {"yes"}}, nil, "x", true},
		{"HTTP/1.0 without keep-alive", "HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\nx",
			200, nil, nil, "x", false},
		{"same length twice", "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx",
			200, nil, nil, "x", true},
		{"server error", "HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Length: 4\r\n\r\nbusy",
			503, http.Header{"Retry-After": {"1"}}, nil, "busy", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			url, conns := rawBackend(t, func(c net.Conn) {
				readRequests(c, func(*http.Request) bool {
					io.WriteString(c, tt.raw)
					return tt.reusable
				})
			})
			p, front := stableOnly(t, url, nil)
			for i := range 2 {
				resp, body := get(t, front.Client(), http.MethodGet, front.URL+"/", nil)
				if resp.StatusCode != tt.status || body != tt.body {
					t.Fatalf("answer %d: %d %q; want %d %q", i, resp.StatusCode, body, tt.status, tt.body)
				}
				for k, want := range tt.header {
					if got := resp.Header[k]; strings.Join(got, "|") != strings.Join(want, "|") {
						t.Errorf("answer %d: %s = %q; want %q", i, k, got, want)
					}
				}
				for _, k := range tt.absent {
					if v, ok := resp.Header[k]; ok {
						t.Errorf("answer %d: %s = %q; want it removed", i, k, v)
					}
				}
			}
			wantConns := int64(2)
			if tt.reusable {
				wantConns = 1
			}
			if got := conns.Load(); got != wantConns {
				t.Errorf("backend connections = %d; want %d", got, wantConns)
			}
			waitFor(t, "2 recorded requests", func() bool { return p.Snapshot().Stable.Requests == 2 })
			if s := p.Snapshot(); s.Stable.Errors != boolToCount(tt.status >= 500)*2 {
				t.Errorf("stable errors = %d", s.Stable.Errors)
			}
		})
	}
}

func boolToCount(b bool) uint64 {
	if b {
		return 1
	}
	return 0
}

// onceBody delivers its data (with io.EOF) and then fails every further
// Read, as net/http's request body does once the server has closed it.
type onceBody struct {
	r    *strings.Reader
	done bool
}

func (b *onceBody) Read(p []byte) (int, error) {
	if b.done {
		return 0, http.ErrBodyReadAfterClose
	}
	n, err := b.r.Read(p)
	if b.r.Len() == 0 {
		b.done = true
		err = io.EOF
	}
	return n, err
}

func (b *onceBody) Close() error { return nil }

// A request body of known length must not be read past its length: the
// server may have closed it by then (it does when it writes the answer's
// header), and a failed extra Read made http.Transport drop the upstream
// connection in the middle of the answer.
func TestBodyNotReadPastLength(t *testing.T) {
	backend, _ := countedBackend(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.Write(b)
	})
	p, _ := stableOnly(t, backend.URL, nil)
	payload := strings.Repeat("x", 100000)
	for i := range 20 {
		r := httptest.NewRequest(http.MethodPost, "/", nil)
		r.Body = &onceBody{r: strings.NewReader(payload)}
		r.ContentLength = int64(len(payload))
		w := httptest.NewRecorder()
		p.ServeHTTP(w, r)
		if w.Code != 200 || w.Body.Len() != len(payload) {
			t.Fatalf("request %d: %d with %d bytes; want 200 with %d", i, w.Code, w.Body.Len(), len(payload))
		}
	}
}

// A backend that answers on an idle connection without being asked (a 408
// as it times the connection out) must not have that answer taken for the
// next request's: a connection is checked for unread bytes at every reuse,
// however short its idle time.
func TestUnsolicitedAnswerOnIdleConnection(t *testing.T) {
	var served atomic.Int64
	url, conns := rawBackend(t, func(c net.Conn) {
		readRequests(c, func(*http.Request) bool {
			served.Add(1)
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
			time.Sleep(50 * time.Millisecond)
			io.WriteString(c, "HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
			return true // and keep the connection open, as a misbehaving server might
		})
	})
	_, front := stableOnly(t, url, nil)
	for i := range 2 {
		resp, body := get(t, front.Client(), http.MethodGet, front.URL+"/", nil)
		if resp.StatusCode != 200 || body != "ok" {
			t.Fatalf("request %d: %d %q; want 200 ok", i, resp.StatusCode, body)
		}
		if i == 0 {
			time.Sleep(100 * time.Millisecond) // the unasked answer is in
		}
	}
	if got := conns.Load(); got != 2 {
		t.Errorf("backend connections = %d; want 2 (the spoilt one dropped)", got)
	}
}

// When Run returns, idle upstream connections are closed, and one still in
// use closes when its exchange ends instead of going back to the pool.
func TestRunEndClosesUpstreamConnections(t *testing.T) {
	release := make(chan struct{})
	var open atomic.Int64
	backend := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			<-release
		}
		io.WriteString(w, "ok")
	}))
	backend.Config.ConnState = func(c net.Conn, s http.ConnState) {
		switch s {
		case http.StateNew:
			open.Add(1)
		case http.StateClosed:
			open.Add(-1)
		}
	}
	backend.Start()
	t.Cleanup(backend.Close)
	p, front := stableOnly(t, backend.URL, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()

	get := func(path string) {
		resp, err := http.Get(front.URL + path)
		if err != nil {
			t.Error(err)
			return
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	slow := make(chan struct{})
	go func() { get("/slow"); close(slow) }() // one connection in use
	waitFor(t, "the slow request upstream", func() bool { return open.Load() == 1 })
	get("/fast") // and one idle
	waitFor(t, "two upstream connections", func() bool { return open.Load() == 2 })

	cancel()
	<-done
	close(release)
	<-slow
	waitFor(t, "every upstream connection closed", func() bool { return open.Load() == 0 })
}
