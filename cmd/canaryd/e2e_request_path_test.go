package main

// End-to-end tests of what the request path promises, on both ways
// canaryd serves plaintext traffic: the server loop (proxy/h1, with the
// fast path on, the default) and net/http's server behind the framing
// guard (CANARY_FAST_PATH=off). The same raw bytes must get the same
// behaviour from both.

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// bothPaths runs f once per way of serving plaintext traffic, with the
// variable that selects it.
func bothPaths(t *testing.T, f func(t *testing.T, fastPath string)) {
	for _, p := range []struct{ name, env string }{
		{"server loop", "CANARY_FAST_PATH=on"},
		{"net/http", "CANARY_FAST_PATH=off"},
	} {
		t.Run(p.name, func(t *testing.T) { f(t, p.env) })
	}
}

// Ambiguous framing, malformed chunks and refused methods are answered
// by canaryd and never reach a backend; a clean request after them does.
func TestE2ERequestPathRefusals(t *testing.T) {
	bothPaths(t, func(t *testing.T, fastPath string) {
		stable, canary := newBackend(t, "stable", nil), newBackend(t, "canary", nil)
		in := start(t, testEnv(t, stable, canary, fastPath))
		for _, tc := range []struct{ name, raw, want string }{
			{"CL and TE", "POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", "400"},
			{"two different CL", "POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nabcde", "400"},
			{"obs-fold", "GET /x HTTP/1.1\r\nHost: a\r\nX-A: b\r\n c\r\n\r\n", "400"},
			{"bad TE", "POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", "400"},
			{"space before colon", "GET /x HTTP/1.1\r\nHost: a\r\nContent-Length : 0\r\n\r\n", "400"},
			{"no host", "GET /x HTTP/1.1\r\n\r\n", "400"},
			{"two hosts", "GET /x HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", "400"},
			{"bare LF", "GET /lf HTTP/1.1\nHost: a\n\n", "400"},
			{"chunk size +1", "POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n+1\r\nX\r\n0\r\n\r\n", "400"},
			{"chunk size 0x1", "POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0x1\r\nX\r\n0\r\n\r\n", "400"},
			{"chunk data too long", "POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nXY\r\n0\r\n\r\n", "400"},
			{"TE on HTTP/1.0", "POST /x HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", "400"},
			{"HTTP/2 preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "400"},
			{"CONNECT", "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n", "405"},
			{"TRACE", "TRACE / HTTP/1.1\r\nHost: a\r\nCookie: secret\r\n\r\n", "405"},
			{"unknown Expect", "GET / HTTP/1.1\r\nHost: a\r\nExpect: magic\r\n\r\n", "417"},
			{"head too large", "GET / HTTP/1.1\r\nHost: a\r\nX-Big: " + strings.Repeat("b", 2<<20) + "\r\n\r\n", "431"},
		} {
			if got := rawRequest(t, in.traffic, tc.raw); !strings.HasPrefix(got, "HTTP/1.1 "+tc.want) {
				t.Errorf("%s: answer %q; want %s", tc.name, got, tc.want)
			}
		}
		if n := stable.hits.Load() + canary.hits.Load(); n != 0 {
			t.Errorf("%d refused requests reached a backend", n)
		}
		if got := rawRequest(t, in.traffic, "GET /fine HTTP/1.1\r\nHost: a\r\n\r\n"); got != "HTTP/1.1 200 OK" {
			t.Errorf("a clean request after the refusals: %q", got)
		}
	})
}

// The protocol features a front door must carry, through canaryd to a
// backend and back: pipelined bodies, HEAD, 100-continue, request and
// answer trailers, X-Forwarded-*, HTTP/1.0 clients, event streams flushed
// per event, WebSocket-style upgrades.
func TestE2ERequestPathProtocol(t *testing.T) {
	bothPaths(t, func(t *testing.T, fastPath string) {
		eventSeen := make(chan struct{}, 1)
		h := func(w http.ResponseWriter, r *http.Request) {
			switch r.URL.Path {
			case "/head":
				w.Header().Set("Content-Length", "5")
				io.WriteString(w, "hello")
			case "/forwarded":
				fmt.Fprintf(w, "for=%s proto=%s host=%s backend-host=%s",
					r.Header.Get("X-Forwarded-For"), r.Header.Get("X-Forwarded-Proto"), r.Header.Get("X-Forwarded-Host"), r.Host)
			case "/trailers":
				b, _ := io.ReadAll(r.Body)
				w.Header().Set("Trailer", "X-Checksum")
				fmt.Fprintf(w, "%s sum=%s", b, r.Trailer.Get("X-Sum"))
				w.Header().Set("X-Checksum", "c0ffee")
			case "/events":
				w.Header().Set("Content-Type", "text/event-stream")
				io.WriteString(w, "data: one\n\n")
				w.(http.Flusher).Flush()
				select {
				case <-eventSeen: // the client read the first event while the stream is open
				case <-time.After(5 * time.Second):
					return
				}
				io.WriteString(w, "data: two\n\n")
			case "/ws":
				c, brw, err := http.NewResponseController(w).Hijack()
				if err != nil {
					return
				}
				defer c.Close()
				io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n")
				buf := make([]byte, 64)
				n, _ := brw.Read(buf)
				c.Write(buf[:n])
			default:
				b, _ := io.ReadAll(r.Body)
				w.Write(b)
			}
		}
		stable, canary := newBackend(t, "stable", h), newBackend(t, "canary", h)
		in := start(t, testEnv(t, stable, canary, fastPath))
		addr := strings.TrimPrefix(in.traffic, "http://")
		dial := func(t *testing.T) (net.Conn, *bufio.Reader) {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { c.Close() })
			c.SetDeadline(time.Now().Add(10 * time.Second))
			return c, bufio.NewReader(c)
		}
		read := func(t *testing.T, br *bufio.Reader, method string) (*http.Response, string) {
			t.Helper()
			resp, err := http.ReadResponse(br, &http.Request{Method: method})
			if err != nil {
				t.Fatalf("reading the answer: %v", err)
			}
			b, _ := io.ReadAll(resp.Body)
			return resp, string(b)
		}

		t.Run("pipelined bodies", func(t *testing.T) {
			c, br := dial(t)
			big := strings.Repeat("x", 100000)
			go io.WriteString(c, "POST /a HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello"+
				"POST /b HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nworld\r\n3\r\n!!!\r\n0\r\nX-Trailer: t\r\n\r\n"+
				"\r\nGET /c HTTP/1.1\r\nHost: a\r\n\r\n"+
				fmt.Sprintf("POST /d HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n%s", len(big), big))
			for _, want := range []string{"hello", "world!!!", "", big} {
				if resp, body := read(t, br, "POST"); resp.StatusCode != 200 || body != want {
					t.Errorf("answer %d %.20q (%d bytes); want %.20q (%d bytes)", resp.StatusCode, body, len(body), want, len(want))
				}
			}
		})
		t.Run("HEAD", func(t *testing.T) {
			c, br := dial(t)
			io.WriteString(c, "HEAD /head HTTP/1.1\r\nHost: a\r\n\r\n")
			if resp, body := read(t, br, "HEAD"); resp.StatusCode != 200 || resp.ContentLength != 5 || body != "" {
				t.Errorf("HEAD: %d, length %d, body %q; want 200, 5, none", resp.StatusCode, resp.ContentLength, body)
			}
			io.WriteString(c, "GET /head HTTP/1.1\r\nHost: a\r\n\r\n")
			if _, body := read(t, br, "GET"); body != "hello" {
				t.Errorf("GET after HEAD on the same connection: %q", body)
			}
		})
		t.Run("100-continue", func(t *testing.T) {
			c, br := dial(t)
			io.WriteString(c, "POST /echo HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n")
			if line, err := br.ReadString('\n'); err != nil || line != "HTTP/1.1 100 Continue\r\n" {
				t.Fatalf("before the body: %q %v; want 100 Continue", line, err)
			}
			br.ReadString('\n')
			io.WriteString(c, "body")
			if resp, body := read(t, br, "POST"); resp.StatusCode != 200 || body != "body" {
				t.Errorf("after 100-continue: %d %q", resp.StatusCode, body)
			}
		})
		t.Run("trailers", func(t *testing.T) {
			c, br := dial(t)
			io.WriteString(c, "POST /trailers HTTP/1.1\r\nHost: a\r\nTrailer: X-Sum\r\nTransfer-Encoding: chunked\r\n\r\n4\r\ndata\r\n0\r\nX-Sum: 42\r\n\r\n")
			resp, body := read(t, br, "POST")
			if body != "data sum=42" || resp.Trailer.Get("X-Checksum") != "c0ffee" {
				t.Errorf("trailers: body %q, answer trailer %v; want %q and X-Checksum", body, resp.Trailer, "data sum=42")
			}
		})
		t.Run("X-Forwarded", func(t *testing.T) {
			c, br := dial(t)
			io.WriteString(c, "GET /forwarded HTTP/1.1\r\nHost: shop.example\r\nX-Forwarded-For: 10.1.2.3\r\n\r\n")
			_, body := read(t, br, "GET")
			backendHost := strings.TrimPrefix(stable.URL, "http://")
			if want := "for=10.1.2.3, 127.0.0.1 proto=http host=shop.example backend-host="; !strings.HasPrefix(body, want) ||
				(!strings.HasSuffix(body, backendHost) && !strings.HasSuffix(body, strings.TrimPrefix(canary.URL, "http://"))) {
				t.Errorf("backend saw %q; want %s<backend>", body, want)
			}
		})
		t.Run("HTTP/1.0", func(t *testing.T) {
			c, br := dial(t)
			io.WriteString(c, "GET /head HTTP/1.0\r\n\r\n")
			resp, body := read(t, br, "GET")
			if resp.Proto != "HTTP/1.0" || body != "hello" {
				t.Errorf("HTTP/1.0 client: %s %q", resp.Proto, body)
			}
			if _, err := br.ReadByte(); err != io.EOF {
				t.Errorf("after an HTTP/1.0 answer: %v; want the connection closed", err)
			}
		})
		t.Run("event stream", func(t *testing.T) {
			c, br := dial(t)
			io.WriteString(c, "GET /events HTTP/1.1\r\nHost: a\r\n\r\n")
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatal(err)
			}
			first := make([]byte, len("data: one\n\n"))
			if _, err := io.ReadFull(resp.Body, first); err != nil || string(first) != "data: one\n\n" {
				t.Fatalf("first event %q %v", first, err)
			}
			eventSeen <- struct{}{}
			if rest, _ := io.ReadAll(resp.Body); string(rest) != "data: two\n\n" {
				t.Errorf("second event %q", rest)
			}
		})
		t.Run("upgrade", func(t *testing.T) {
			c, br := dial(t)
			io.WriteString(c, "GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n")
			if resp, err := http.ReadResponse(br, nil); err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
				t.Fatalf("upgrade answer: %v %v; want 101", resp, err)
			}
			frame := "frame\nwith\x00bare LF\n"
			io.WriteString(c, frame)
			got := make([]byte, len(frame))
			if _, err := io.ReadFull(br, got); err != nil || string(got) != frame {
				t.Errorf("echo after the upgrade: %q %v; want %q", got, err, frame)
			}
		})
	})
}

// A client that goes away while its backend works cancels the upstream
// request, and the request counts as 499, not against the backend.
func TestE2ERequestPathClientGoneCancelsUpstream(t *testing.T) {
	bothPaths(t, func(t *testing.T, fastPath string) {
		arrived, canceled := make(chan struct{}, 4), make(chan struct{}, 4)
		slow := func(w http.ResponseWriter, r *http.Request) {
			// Read the body: net/http (the backend's server) notices its
			// client's close only once the body is read.
			io.ReadAll(r.Body)
			arrived <- struct{}{}
			select {
			case <-r.Context().Done():
				canceled <- struct{}{}
			case <-time.After(15 * time.Second):
			}
		}
		stable, canary := newBackend(t, "stable", slow), newBackend(t, "canary", slow)
		in := start(t, testEnv(t, stable, canary, fastPath, "CANARY_WEIGHT=0"))
		for _, raw := range []string{
			"GET /slow HTTP/1.1\r\nHost: a\r\n\r\n",                         // the fast path (with it on)
			"POST /slow HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nhi", // the standard path
		} {
			c, err := net.Dial("tcp", strings.TrimPrefix(in.traffic, "http://"))
			if err != nil {
				t.Fatal(err)
			}
			io.WriteString(c, raw)
			select {
			case <-arrived:
			case <-time.After(10 * time.Second):
				t.Fatalf("%.20q did not reach the backend", raw)
			}
			c.Close()
			select {
			case <-canceled:
			case <-time.After(10 * time.Second):
				t.Errorf("%.20q: the upstream request was not canceled after the client left", raw)
			}
		}
		deadline := time.Now().Add(10 * time.Second)
		for {
			n, _ := in.metricValue("canary_requests_total", "backend", "stable", "code", "499")
			if n == 2 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("canary_requests_total{code=\"499\"} = %v; want 2", n)
			}
			time.Sleep(50 * time.Millisecond)
		}
		if n, _ := in.metricValue("canary_client_canceled_total", "backend", "stable"); n != 2 {
			t.Errorf("canary_client_canceled_total = %v; want 2", n)
		}
	})
}

// The client-side limits: a head over CANARY_MAX_HEADER_BYTES is 431, a
// head slower than CANARY_READ_HEADER_TIMEOUT and a connection idle for
// CANARY_IDLE_TIMEOUT are closed.
func TestE2ERequestPathLimits(t *testing.T) {
	bothPaths(t, func(t *testing.T, fastPath string) {
		stable, canary := newBackend(t, "stable", nil), newBackend(t, "canary", nil)
		in := start(t, testEnv(t, stable, canary, fastPath,
			"CANARY_MAX_HEADER_BYTES=8192", "CANARY_READ_HEADER_TIMEOUT=300ms", "CANARY_IDLE_TIMEOUT=300ms"))
		if got := rawRequest(t, in.traffic, "GET / HTTP/1.1\r\nHost: a\r\nX-Big: "+strings.Repeat("b", 64<<10)+"\r\n\r\n"); !strings.HasPrefix(got, "HTTP/1.1 431") {
			t.Errorf("64 KiB head: %q; want 431", got)
		}
		for _, tc := range []struct{ name, first string }{
			{"slow head", "GET / HTTP/1.1\r\nHost: a\r\nX-Slow: "},
			{"idle after an answer", "GET / HTTP/1.1\r\nHost: a\r\n\r\n"},
		} {
			c, err := net.Dial("tcp", strings.TrimPrefix(in.traffic, "http://"))
			if err != nil {
				t.Fatal(err)
			}
			c.SetDeadline(time.Now().Add(10 * time.Second))
			io.WriteString(c, tc.first)
			begin := time.Now()
			if _, err := io.ReadAll(c); err != nil {
				t.Errorf("%s: %v; want the connection closed by canaryd", tc.name, err)
			}
			if d := time.Since(begin); d > 5*time.Second {
				t.Errorf("%s: closed after %v; want about 300ms", tc.name, d)
			}
			c.Close()
		}
	})
}

// SIGTERM: the request in flight finishes, an idle keep-alive connection
// is closed at once, canaryd exits 0.
func TestE2ERequestPathGracefulShutdown(t *testing.T) {
	bothPaths(t, func(t *testing.T, fastPath string) {
		release := make(chan struct{})
		var hits atomic.Int64
		slow := func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/slow" {
				hits.Add(1)
				<-release
			}
			io.WriteString(w, "finished")
		}
		stable, canary := newBackend(t, "stable", slow), newBackend(t, "canary", slow)
		in := start(t, testEnv(t, stable, canary, fastPath))
		addr := strings.TrimPrefix(in.traffic, "http://")
		idle, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer idle.Close()
		idle.SetDeadline(time.Now().Add(15 * time.Second))
		io.WriteString(idle, "GET /quick HTTP/1.1\r\nHost: a\r\n\r\n")
		ibr := bufio.NewReader(idle)
		if got := statusOf(ibr); got != "HTTP/1.1 200 OK" {
			t.Fatalf("idle connection's first answer: %q", got)
		}
		busy, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer busy.Close()
		busy.SetDeadline(time.Now().Add(15 * time.Second))
		io.WriteString(busy, "GET /slow HTTP/1.1\r\nHost: a\r\n\r\n")
		for deadline := time.Now().Add(10 * time.Second); hits.Load() == 0; time.Sleep(5 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatal("the slow request did not reach a backend")
			}
		}
		in.cmd.Process.Signal(syscall.SIGTERM)
		if _, err := ibr.ReadByte(); err != io.EOF {
			t.Errorf("idle keep-alive connection at SIGTERM: %v; want closed", err)
		}
		close(release)
		resp, err := http.ReadResponse(bufio.NewReader(busy), nil)
		if err != nil {
			t.Fatalf("in-flight request across SIGTERM: %v", err)
		}
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 || string(body) != "finished" {
			t.Errorf("in-flight request across SIGTERM: %d %q; want 200 finished", resp.StatusCode, body)
		}
		select {
		case <-in.done:
		case <-time.After(15 * time.Second):
			t.Fatal("canaryd did not exit after SIGTERM")
		}
		if in.exit != 0 {
			t.Errorf("exit %d; want 0", in.exit)
		}
	})
}

// Every request is measured and logged: the access log has one line per
// request, the metrics count them all, on either path.
func TestE2ERequestPathAccessLogAndMetrics(t *testing.T) {
	bothPaths(t, func(t *testing.T, fastPath string) {
		stable, canary := newBackend(t, "stable", nil), newBackend(t, "canary", nil)
		in := start(t, testEnv(t, stable, canary, fastPath, "CANARY_ACCESS_LOG=true", "CANARY_WEIGHT=50"))
		const n = 20
		for i := range n {
			var resp *http.Response
			var err error
			if i%2 == 0 {
				resp, err = client.Get(fmt.Sprintf("%s/get/%d", in.traffic, i))
			} else {
				resp, err = client.Post(fmt.Sprintf("%s/post/%d", in.traffic, i), "text/plain", strings.NewReader("body"))
			}
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		var total float64
		for _, b := range []string{"stable", "canary"} {
			v, _ := in.metricValue("canary_requests_total", "backend", b, "code", "200")
			total += v
		}
		if total != n {
			t.Errorf("canary_requests_total{code=\"200\"} = %v; want %d", total, n)
		}
		deadline := time.Now().Add(5 * time.Second)
		for {
			logged := strings.Count(in.logs.String(), `"message":"request"`)
			if logged == n {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%d access log lines; want %d", logged, n)
			}
			time.Sleep(20 * time.Millisecond)
		}
		for _, want := range []string{`"method":"GET","path":"/get/0","status":200`, `"method":"POST","path":"/post/1","status":200`} {
			if !strings.Contains(in.logs.String(), want) {
				t.Errorf("access log lacks %s", want)
			}
		}
	})
}
