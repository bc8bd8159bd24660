package main

// End-to-end tests with backends that misbehave at the byte level: bytes
// after a complete answer, a body on a HEAD answer, a header block that
// never ends or is far too large, statuses outside 100–599. Each backend is
// a raw TCP server; canaryd is the real binary.

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// rawServer serves each accepted loopback connection with serve and
// returns its URL. Its cleanup closes the connections still open.
func rawServer(t *testing.T, serve func(net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		open = map[net.Conn]bool{}
	)
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for c := range open {
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
			mu.Lock()
			open[c] = true
			mu.Unlock()
			wg.Go(func() {
				defer func() {
					c.Close()
					mu.Lock()
					delete(open, c)
					mu.Unlock()
				}()
				serve(c)
			})
		}
	})
	return "http://" + ln.Addr().String()
}

// serveRequests reads requests from c and lets answer write each answer,
// until the connection ends or answer returns false.
func serveRequests(c net.Conn, answer func(r *http.Request) bool) {
	br := bufio.NewReader(c)
	for {
		r, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		io.Copy(io.Discard, r.Body)
		if !answer(r) {
			return
		}
	}
}

// envFor is testEnv with backend URLs of raw servers.
func envFor(t *testing.T, stableURL, canaryURL string, extra ...string) []string {
	t.Helper()
	unused := newBackend(t, "unused", nil)
	return with(testEnv(t, unused, unused), append([]string{"CANARY_STABLE_URL=" + stableURL, "CANARY_CANARY_URL=" + canaryURL}, extra...)...)
}

// paddedHead returns a response head of exactly size bytes: the status line,
// fields, a padding field and the empty line.
func paddedHead(size int, fields ...string) string {
	head := "HTTP/1.1 200 OK\r\n" + strings.Join(fields, "") + "X-Pad: "
	return head + strings.Repeat("p", size-len(head)-len("\r\n\r\n")) + "\r\n\r\n"
}

// poison is a complete answer a hostile backend sends where nothing was
// asked: whoever receives it as the answer to their own request got
// someone else's bytes.
const poison = "HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nid=POISON"

// TestE2EPoisonedConnectionsAreNotReused: a backend that sends bytes
// nobody asked for (a body on a HEAD answer, or a whole answer after a
// complete one) must not have them delivered to the next, unrelated client,
// under steady load (the connection never idles). The unasked bytes come in
// the same write as the answer, but past the first 4 KiB: they sit in the
// socket, not yet read, when the answer is complete. GETs and HEADs take
// the fast path, POSTs with a body the standard one (http.Transport), on
// which a refused connection's POST is sent again: none may fail.
func TestE2EPoisonedConnectionsAreNotReused(t *testing.T) {
	serve := func(c net.Conn) {
		serveRequests(c, func(r *http.Request) bool {
			switch {
			case r.URL.Path == "/poison/head" && r.Method == http.MethodHead:
				io.WriteString(c, paddedHead(4096, fmt.Sprintf("Content-Length: %d\r\n", len(poison)))+poison)
			case r.URL.Path == "/poison/late":
				body := "late"
				io.WriteString(c, paddedHead(4096-len(body), "Content-Length: 4\r\n")+body+poison)
			default:
				id := strings.TrimPrefix(r.URL.Path, "/id/")
				fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\nid=%s", len("id=")+len(id), id)
			}
			return true
		})
	}
	stable, canary := rawServer(t, serve), rawServer(t, serve)
	in := start(t, envFor(t, stable, canary, "CANARY_WEIGHT=50", "CANARY_SLO_MIN_REQUESTS=1000000"))

	var mixed, failed, hostileFailed atomic.Int64
	stop := make(chan struct{})
	var hostile sync.WaitGroup
	for _, h := range []struct{ method, path, want string }{
		{http.MethodHead, "/poison/head", ""},
		{http.MethodGet, "/poison/late", "late"},
		{http.MethodPost, "/poison/late", "late"},
	} {
		hostile.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				var upload io.Reader
				if h.method == http.MethodPost {
					upload = strings.NewReader("x")
				}
				req, _ := http.NewRequest(h.method, in.traffic+h.path, upload)
				resp, err := client.Do(req)
				if err != nil {
					hostileFailed.Add(1)
					continue
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 || string(body) != h.want {
					hostileFailed.Add(1)
				}
			}
		})
	}
	var wellBehaved sync.WaitGroup
	for w := range 8 {
		wellBehaved.Go(func() {
			for i := range 80 {
				id := fmt.Sprintf("%d-%d", w, i)
				var (
					resp *http.Response
					err  error
				)
				if i%2 == 0 {
					resp, err = client.Get(in.traffic + "/id/" + id)
				} else {
					resp, err = client.Post(in.traffic+"/id/"+id, "text/plain", strings.NewReader("posted"))
				}
				if err != nil {
					failed.Add(1)
					continue
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				switch {
				case resp.StatusCode != 200:
					failed.Add(1)
				case string(body) != "id="+id:
					mixed.Add(1)
				}
			}
		})
	}
	wellBehaved.Wait()
	close(stop)
	hostile.Wait()
	if mixed.Load() != 0 || failed.Load() != 0 {
		t.Errorf("of 640 well-behaved requests, %d got another request's answer and %d failed; want 0 and 0", mixed.Load(), failed.Load())
	}
	if hostileFailed.Load() != 0 {
		t.Errorf("%d requests to the misbehaving paths did not get their own answer", hostileFailed.Load())
	}
}

// TestE2EHugeResponseHeaderIs502: a header block over
// CANARY_MAX_RESPONSE_HEADER_BYTES is a 502 and the backend's error on both
// paths (a GET takes the fast path, a POST with a body the standard one),
// and reading it costs no more memory than the limit.
func TestE2EHugeResponseHeaderIs502(t *testing.T) {
	serve := func(c net.Conn) {
		serveRequests(c, func(r *http.Request) bool {
			size := 1 << 20
			if r.URL.Path == "/enormous" {
				size = 32 << 20
			}
			w := bufio.NewWriterSize(c, 64<<10)
			io.WriteString(w, "HTTP/1.1 200 OK\r\nX-Big: ")
			chunk := strings.Repeat("a", 64<<10)
			for n := 0; n < size; n += len(chunk) {
				if _, err := io.WriteString(w, chunk); err != nil {
					return false
				}
			}
			io.WriteString(w, "\r\nContent-Length: 2\r\n\r\nok")
			return w.Flush() == nil
		})
	}
	stable := rawServer(t, serve)
	in := start(t, envFor(t, stable, rawServer(t, serve), "CANARY_WEIGHT=0"))
	for _, method := range []string{http.MethodGet, http.MethodPost} {
		req, _ := http.NewRequest(method, in.traffic+"/big", strings.NewReader("body"))
		if method == http.MethodGet {
			req.Body, req.ContentLength = nil, 0
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("%s with a 1 MiB answer header: %v", method, err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadGateway {
			t.Errorf("%s with a 1 MiB answer header: status %d; want 502", method, resp.StatusCode)
		}
	}
	m := in.metricsOf()
	if got := sumMetric(m, "canary_upstream_errors_total{", `backend="stable"`, `kind="other"`); got != 2 {
		t.Errorf("canary_upstream_errors_total{stable,other} = %v; want 2", got)
	}

	before := m["process_resident_memory_bytes"]
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			if resp, err := client.Get(in.traffic + "/enormous"); err == nil {
				resp.Body.Close()
				if resp.StatusCode != http.StatusBadGateway {
					t.Errorf("GET with a 32 MiB answer header: status %d; want 502", resp.StatusCode)
				}
			}
		})
	}
	wg.Wait()
	after := in.metricsOf()["process_resident_memory_bytes"]
	t.Logf("RSS before %.1f MiB, after eight 32 MiB answer headers %.1f MiB", before/(1<<20), after/(1<<20))
	if after-before > 48<<20 {
		t.Errorf("RSS grew by %.1f MiB reading eight 32 MiB headers; want it bounded by the header limit", (after-before)/(1<<20))
	}
}

// TestE2EDrippedHeaderIs504: a backend that starts its answer at once but
// drips it past CANARY_UPSTREAM_TIMEOUT is a timeout (504, counted as kind
// timeout), on both paths.
func TestE2EDrippedHeaderIs504(t *testing.T) {
	serve := func(c net.Conn) {
		serveRequests(c, func(r *http.Request) bool {
			// One byte at a time from the status line on: the answer starts
			// at once, and would be complete after 3 s.
			head := "HTTP/1.1 200 OK\r\nX-Drip: " + strings.Repeat("a", 40) + "\r\nContent-Length: 2\r\n\r\nok"
			for i := range len(head) {
				if _, err := c.Write([]byte{head[i]}); err != nil {
					return false
				}
				time.Sleep(50 * time.Millisecond)
			}
			return false
		})
	}
	in := start(t, envFor(t, rawServer(t, serve), rawServer(t, serve), "CANARY_WEIGHT=0", "CANARY_UPSTREAM_TIMEOUT=500ms"))
	for _, method := range []string{http.MethodGet, http.MethodPost} {
		req, _ := http.NewRequest(method, in.traffic+"/drip", strings.NewReader("body"))
		if method == http.MethodGet {
			req.Body, req.ContentLength = nil, 0
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("%s: %v", method, err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusGatewayTimeout {
			t.Errorf("%s with a dripped header: status %d; want 504", method, resp.StatusCode)
		}
	}
	m := in.metricsOf()
	if got := sumMetric(m, "canary_upstream_errors_total{", `backend="stable"`, `kind="timeout"`); got != 2 {
		t.Errorf("canary_upstream_errors_total{stable,timeout} = %v; want 2 (other: %v)", got,
			sumMetric(m, "canary_upstream_errors_total{", `backend="stable"`, `kind="other"`))
	}
}

// TestE2EBackendStatusOutOfRange: a status outside 100–599 is a 502 and the
// backend's error, on both paths; an HTTP/1.0 client never receives a 1xx
// answer (RFC 9110 §15.2).
func TestE2EBackendStatusOutOfRange(t *testing.T) {
	serve := func(c net.Conn) {
		serveRequests(c, func(r *http.Request) bool {
			switch r.URL.Path {
			case "/600":
				io.WriteString(c, "HTTP/1.1 600 Odd\r\nContent-Length: 2\r\n\r\nok")
			case "/999":
				io.WriteString(c, "HTTP/1.1 999 Odd\r\nContent-Length: 2\r\n\r\nok")
			case "/hints":
				io.WriteString(c, "HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n"+
					"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\npage")
			}
			return true
		})
	}
	in := start(t, envFor(t, rawServer(t, serve), rawServer(t, serve), "CANARY_WEIGHT=0"))
	for _, path := range []string{"/600", "/999"} {
		for _, method := range []string{http.MethodGet, http.MethodPost} {
			req, _ := http.NewRequest(method, in.traffic+path, strings.NewReader("body"))
			if method == http.MethodGet {
				req.Body, req.ContentLength = nil, 0
			}
			resp, err := client.Do(req)
			if err != nil {
				t.Fatalf("%s %s: %v", method, path, err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusBadGateway {
				t.Errorf("%s %s: status %d; want 502", method, path, resp.StatusCode)
			}
		}
	}
	if got := sumMetric(in.metricsOf(), "canary_upstream_errors_total{", `backend="stable"`); got != 4 {
		t.Errorf("canary_upstream_errors_total{stable} = %v; want 4", got)
	}
	for _, method := range []string{http.MethodGet, http.MethodPost} {
		conn, err := net.Dial("tcp", strings.TrimPrefix(in.traffic, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		if method == http.MethodGet {
			io.WriteString(conn, "GET /hints HTTP/1.0\r\n\r\n") // the fast path
		} else {
			io.WriteString(conn, "POST /hints HTTP/1.0\r\nContent-Length: 4\r\n\r\nbody")
		}
		all, _ := io.ReadAll(conn)
		conn.Close()
		if !strings.HasPrefix(string(all), "HTTP/1.0 200") || strings.Contains(string(all), " 103 ") {
			t.Errorf("HTTP/1.0 %s: answer %q; want only the final 200", method, all)
		}
	}
}
