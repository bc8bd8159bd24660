package h1_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/canaryd/canaryd/proxy/h1"
)

// quietLog drops the servers' log lines (superfluous WriteHeader calls
// and the like, which some cases provoke on purpose).
var quietLog = log.New(io.Discard, "", 0)

// startLoop serves h with the server loop on a loopback listener; fb and
// cfg, if not nil, adjust the fallback server and the loop's
// configuration.
func startLoop(t *testing.T, h http.Handler, fb func(*http.Server), cfg func(*h1.ServerConfig)) (string, *h1.Server) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second, ErrorLog: quietLog}
	if fb != nil {
		fb(srv)
	}
	c := h1.ServerConfig{Fallback: srv}
	if cfg != nil {
		cfg(&c)
	}
	s := h1.NewServer(c)
	done := make(chan error, 1)
	go func() { done <- s.Serve(ln) }()
	t.Cleanup(func() {
		s.Close()
		if err := <-done; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("Serve = %v; want http.ErrServerClosed", err)
		}
	})
	return ln.Addr().String(), s
}

// startStd serves h with net/http's server on a loopback listener.
func startStd(t *testing.T, h http.Handler) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second, ErrorLog: quietLog}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

// answer is what a client saw of one answer.
type answer struct {
	Status           int
	Proto            string
	Header           http.Header
	ContentLength    int64
	TransferEncoding []string
	Close            bool
	Body             string
	Trailer          http.Header
	Err              string
}

// converse sends each request of reqs on one connection, one after the
// other, reading each answer (and any 1xx before it) before the next; it
// stops at the first answer that does not come.
func converse(t *testing.T, addr string, reqs ...string) []answer {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	var out []answer
	for _, raw := range reqs {
		if _, err := io.WriteString(c, raw); err != nil {
			break
		}
		method, _, _ := strings.Cut(raw, " ")
		var a answer
		for {
			resp, err := http.ReadResponse(br, &http.Request{Method: method})
			if err != nil {
				a.Err = "no answer"
				break
			}
			body, err := io.ReadAll(resp.Body)
			a = answer{
				Status: resp.StatusCode, Proto: resp.Proto, Header: resp.Header, ContentLength: resp.ContentLength,
				TransferEncoding: resp.TransferEncoding, Close: resp.Close, Body: string(body), Trailer: resp.Trailer,
			}
			if err != nil {
				a.Err = "body cut short"
			}
			if resp.StatusCode >= 200 {
				break
			}
		}
		a.Header.Del("Date")
		out = append(out, a)
		if a.Err != "" {
			break
		}
	}
	return out
}

// The loop answers as net/http's server does: the same status, fields
// (but Date), framing, body, trailers and connection fate, for handlers
// that exercise every path of the response writer, and for requests of
// HTTP/1.1 and HTTP/1.0, HEAD, closing, with bodies read or not.
func TestServerAnswersAsNetHTTP(t *testing.T) {
	handlers := map[string]http.HandlerFunc{
		"small": func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "hello, world") },
		"empty": func(w http.ResponseWriter, r *http.Request) {},
		"html":  func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "<!DOCTYPE html><p>hi") },
		"no type": func(w http.ResponseWriter, r *http.Request) {
			w.Header()["Content-Type"] = nil
			io.WriteString(w, "<html>")
		},
		"large": func(w http.ResponseWriter, r *http.Request) { w.Write(bytes.Repeat([]byte("x"), 10000)) },
		"many writes": func(w http.ResponseWriter, r *http.Request) {
			for range 100 {
				w.Write(bytes.Repeat([]byte("y"), 100))
			}
		},
		"flush": func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, "a")
			w.(http.Flusher).Flush()
			io.WriteString(w, "b")
		},
		"flush first": func(w http.ResponseWriter, r *http.Request) { w.(http.Flusher).Flush() },
		"length": func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", "5")
			io.WriteString(w, "hello")
		},
		"length too long": func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", "10")
			io.WriteString(w, "hello")
		},
		"length too short": func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", "2")
			io.WriteString(w, "hello")
		},
		"bad length": func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", "x")
			io.WriteString(w, "hello")
		},
		"204": func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", "3")
			w.WriteHeader(http.StatusNoContent)
			io.WriteString(w, "abc")
		},
		"304": func(w http.ResponseWriter, r *http.Request) {
			h := w.Header()
			h.Set("Content-Type", "text/plain")
			h.Set("Content-Length", "3")
			h.Set("Etag", `"v1"`)
			w.WriteHeader(http.StatusNotModified)
		},
		"404 after header change": func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusNotFound)
			w.Header().Set("X-Too-Late", "1")
			io.WriteString(w, "gone")
		},
		"unknown status": func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(599) },
		"trailer declared": func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Trailer", "X-Sum, Content-Type")
			io.WriteString(w, "body")
			w.Header().Set("X-Sum", "42")
		},
		"trailer prefix": func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, "body")
			w.(http.Flusher).Flush()
			w.Header().Set(http.TrailerPrefix+"X-Late", "7")
		},
		"early hints": func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Link", "</a.css>; rel=preload")
			w.Header().Set("Content-Length", "2")
			w.WriteHeader(http.StatusEarlyHints)
			io.WriteString(w, "ok")
		},
		"handler closes": func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Connection", "close")
			io.WriteString(w, "bye")
		},
		"keep-alive field": func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Connection", "keep-alive")
			w.Header().Set("Content-Length", "2")
			io.WriteString(w, "ok")
		},
		"identity": func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Transfer-Encoding", "identity")
			io.WriteString(w, "streamed")
		},
		"chunked set": func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Transfer-Encoding", "chunked")
			io.WriteString(w, "streamed")
		},
		"odd fields": func(w http.ResponseWriter, r *http.Request) {
			w.Header()["Bad Key"] = []string{"x"}
			w.Header()["X-Newline"] = []string{"a\r\nInjected: yes", " trimmed\t"}
			w.Header().Add("Set-Cookie", "a=1")
			w.Header().Add("Set-Cookie", "b=2")
			io.WriteString(w, "ok")
		},
		"echo": func(w http.ResponseWriter, r *http.Request) {
			b, err := io.ReadAll(r.Body)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			fmt.Fprintf(w, "%s %v", b, r.Trailer)
		},
		"reads part": func(w http.ResponseWriter, r *http.Request) {
			io.ReadFull(r.Body, make([]byte, 2))
			io.WriteString(w, "partly read")
		},
	}
	requests := map[string]string{
		"GET":               "GET /p HTTP/1.1\r\nHost: a\r\n\r\n",
		"HEAD":              "HEAD /p HTTP/1.1\r\nHost: a\r\n\r\n",
		"HTTP/1.0":          "GET /p HTTP/1.0\r\n\r\n",
		"HTTP/1.0 keep":     "GET /p HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
		"close":             "GET /p HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
		"POST":              "POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello",
		"POST chunked":      "POST /p HTTP/1.1\r\nHost: a\r\nTrailer: X-T\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\nX-T: 1\r\n\r\n",
		"POST unread large": "POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 300000\r\n\r\n" + strings.Repeat("z", 300000),
	}
	for hname, h := range handlers {
		std := startStd(t, h)
		loop, _ := startLoop(t, h, nil, nil)
		for rname, raw := range requests {
			next := "GET /next HTTP/1.1\r\nHost: a\r\n\r\n"
			want := converse(t, std, raw, next)
			got := converse(t, loop, raw, next)
			if !reflect.DeepEqual(got, want) {
				t.Errorf("%s, %s:\nloop     %+v\nnet/http %+v", hname, rname, got, want)
			}
		}
	}
}

// What the loop does not serve itself, net/http answers, the same way as
// it always did: the answers are net/http's.
func TestServerHandsOverWhatItDoesNotServe(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s %s %s %q", r.Method, r.RequestURI, r.Proto, r.Host)
	})
	std := startStd(t, h)
	loop, _ := startLoop(t, h, nil, nil)
	for _, raw := range []string{
		"GET http://example.com/x HTTP/1.1\r\nHost: a\r\n\r\n",
		"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n",
		"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
		"GET /x HTTP/1.1\r\n\r\n",
		"GET /x HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
		"GET /x HTTP/1.1\r\nHost: a b\r\n\r\n",
		"GET /x HTTP/1.1\r\nHost: a\r\nExpect: something\r\n\r\n",
		"GET /x HTTP/1.5\r\nHost: a\r\n\r\n",
		"POST /x HTTP/1.1\r\nHost: a\r\nTrailer: Content-Length\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
		"GET /%zz HTTP/1.1\r\nHost: a\r\n\r\n",
	} {
		next := "GET /next HTTP/1.1\r\nHost: a\r\n\r\n"
		want := converse(t, std, raw, next)
		got := converse(t, loop, raw, next)
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%.40q:\nloop     %+v\nnet/http %+v", raw, got, want)
		}
	}
}

// An upgrade is served by net/http through the guard: the 101 and the
// bytes after it pass; before a 101 the guard still checks.
func TestServerUpgradeHandedOver(t *testing.T) {
	var hijacked atomic.Int64
	addr, _ := startLoop(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") != "echo" {
			io.WriteString(w, "no upgrade")
			return
		}
		c, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Errorf("Hijack: %v", err)
			return
		}
		hijacked.Add(1)
		defer c.Close()
		io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n")
		buf := make([]byte, 64)
		n, _ := brw.Read(buf)
		c.Write(buf[:n])
	}), nil, nil)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	br := bufio.NewReader(c)
	// A plain request first: the loop serves it, then hands the
	// connection over at the upgrade.
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: a\r\n\r\n")
	if resp, err := http.ReadResponse(br, nil); err != nil || resp.StatusCode != 200 {
		t.Fatalf("plain request: %v %v", resp, err)
	} else {
		io.Copy(io.Discard, resp.Body)
	}
	io.WriteString(c, "GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n")
	if resp, err := http.ReadResponse(br, nil); err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade: %v %v", resp, err)
	}
	frame := "frame\nwith\x00bare LF\n"
	io.WriteString(c, frame)
	got := make([]byte, len(frame))
	if _, err := io.ReadFull(br, got); err != nil || string(got) != frame {
		t.Errorf("echo after the upgrade: %q %v; want %q", got, err, frame)
	}
	if hijacked.Load() != 1 {
		t.Errorf("%d hijacks; want 1", hijacked.Load())
	}
}

// A refused upgrade leaves the connection net/http's, guarded: a later
// request with a bare LF is refused.
func TestServerGuardAfterRefusedUpgrade(t *testing.T) {
	addr, _ := startLoop(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }), nil, nil)
	got := converse(t, addr,
		"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: foo\r\nConnection: upgrade\r\n\r\n",
		"GET /x HTTP/1.1\r\nHost: a\nX-Bare: lf\r\n\r\n")
	if len(got) != 2 || got[0].Status != 200 || got[1].Status != http.StatusBadRequest {
		t.Errorf("answers %+v; want 200 then 400", got)
	}
}

// The HTTP/2 preface is refused 400 as the guard refuses it, unless
// HTTP2PriorKnowledge hands it to the fallback, which then serves
// HTTP/2 without TLS.
func TestServerPriorKnowledge(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, r.Proto) })
	refused, _ := startLoop(t, h, nil, nil)
	if got := converse(t, refused, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"); len(got) != 1 || got[0].Status != http.StatusBadRequest || !strings.Contains(got[0].Body, "PRI") {
		t.Errorf("preface without HTTP2PriorKnowledge: %+v; want the guard's 400", got)
	}

	h2c, _ := startLoop(t, h, func(s *http.Server) {
		s.Protocols = new(http.Protocols)
		s.Protocols.SetHTTP1(true)
		s.Protocols.SetUnencryptedHTTP2(true)
	}, func(c *h1.ServerConfig) { c.HTTP2PriorKnowledge = true })
	tr := &http.Transport{Protocols: new(http.Protocols)}
	tr.Protocols.SetUnencryptedHTTP2(true)
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	for i := range 3 {
		resp, err := client.Get("http://" + h2c + "/")
		if err != nil {
			t.Fatalf("h2c request %d: %v", i, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.ProtoMajor != 2 || string(body) != "HTTP/2.0" {
			t.Errorf("h2c request %d: %s %q; want HTTP/2.0", i, resp.Proto, body)
		}
	}
	// HTTP/1.1 still goes to the loop on the same listener.
	if got := converse(t, h2c, "GET / HTTP/1.1\r\nHost: a\r\n\r\n"); len(got) != 1 || got[0].Body != "HTTP/1.1" {
		t.Errorf("HTTP/1.1 beside h2c: %+v", got)
	}
}

// exchangeSteps writes raw in pieces of step bytes and reads the answers
// until want of them are in or the connection ends.
func exchangeSteps(t *testing.T, addr, raw string, step, want int) []*http.Response {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	go func() {
		for i := 0; i < len(raw); i += step {
			if _, err := c.Write([]byte(raw[i:min(i+step, len(raw))])); err != nil {
				return
			}
		}
	}()
	br := bufio.NewReader(c)
	var out []*http.Response
	for len(out) < want {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			break
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body = io.NopCloser(bytes.NewReader(body))
		if resp.StatusCode != http.StatusContinue {
			out = append(out, resp)
		}
	}
	return out
}

// Ambiguous framing is refused as the guard refuses it (400 with a JSON
// reason, the connection closed), in a head or in a body, whatever the
// reads; no refused request reaches the handler whole.
func TestServerRefusesAmbiguousFraming(t *testing.T) {
	var whole atomic.Int64
	var mu sync.Mutex
	var reasons []string
	addr, _ := startLoop(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := io.ReadAll(r.Body); err == nil {
			whole.Add(1)
		}
	}), nil, func(c *h1.ServerConfig) {
		c.Guard.Rejected = func(r string) { mu.Lock(); reasons = append(reasons, r); mu.Unlock() }
	})
	cases := []struct{ name, raw string }{
		{"CL and TE", "POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"},
		{"conflicting CL", "POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nabcde"},
		{"signed CL", "POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: +4\r\n\r\nabcd"},
		{"obs-fold", "GET /x HTTP/1.1\r\nHost: a\r\nX-A: b\r\n c\r\n\r\n"},
		{"TE not chunked", "POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n"},
		{"two TE fields", "POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"},
		{"TE on HTTP/1.0", "POST /x HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"},
		{"space before colon", "GET /x HTTP/1.1\r\nHost: a\r\nContent-Length : 0\r\n\r\n"},
		{"bare LF", "GET /lf HTTP/1.1\nHost: a\n\n"},
		{"bare LF after CRLF lines", "GET /lf HTTP/1.1\r\nHost: a\n\r\n"},
		{"chunk size +1", "POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n+1\r\nX\r\n0\r\n\r\n"},
		{"chunk size -0", "POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n-0\r\n\r\n"},
		{"chunk size 0x1", "POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0x1\r\nX\r\n0\r\n\r\n"},
		{"chunk size with space", "POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n1 ;x\r\nX\r\n0\r\n\r\n"},
		{"chunk size zz", "POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nX\r\n0\r\n\r\n"},
		{"chunk line ends in LF", "POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n1\nX\r\n0\r\n\r\n"},
		{"chunk data too long", "POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nXY\r\n0\r\n\r\n"},
		{"obs-fold in a trailer", "POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX-T: 1\r\n t\r\n\r\n"},
		{"HTTP/2 prior knowledge", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"},
	}
	for _, tc := range cases {
		for _, step := range []int{1, len(tc.raw)} {
			got := exchangeSteps(t, addr, tc.raw, step, 1)
			if len(got) != 1 || got[0].StatusCode != http.StatusBadRequest {
				t.Errorf("%s, reads of %d: %d answers; want one 400", tc.name, step, len(got))
				continue
			}
			var e struct{ Error string }
			if err := json.NewDecoder(got[0].Body).Decode(&e); err != nil || !strings.HasPrefix(e.Error, "bad request: ") || got[0].Header.Get("Content-Type") != "application/json" {
				t.Errorf("%s: the 400 is not the guard's JSON error: %v %q", tc.name, err, e.Error)
			}
		}
	}
	if n := whole.Load(); n != 0 {
		t.Errorf("%d refused requests reached the handler whole", n)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(reasons) != 2*len(cases) {
		t.Errorf("Rejected heard %d reasons; want %d", len(reasons), 2*len(cases))
	}
}

// Valid traffic passes, however it is split into reads: chunk extensions,
// trailers, pipelining, HTTP/1.0 keep-alive, large fields, 100-continue,
// CRLF or a bare LF after a POST (net/http drops up to 4 CR or LF bytes
// before a request), hex case and leading zeros, bytes above 0x7f.
func TestServerPassesValidTraffic(t *testing.T) {
	addr, _ := startLoop(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.Write(b)
	}), nil, nil)
	cases := []struct{ name, raw, first string }{
		{"chunk extensions and trailer", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3;name=\"v;x\"\r\nabc\r\n0;e\r\nX-T: 1\r\n\r\n", "abc"},
		{"pipelined Content-Length", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc", "abc"},
		{"HTTP/1.0 keep-alive", "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", ""},
		{"large field", "GET / HTTP/1.1\r\nHost: a\r\nCookie: " + strings.Repeat("x", 20000) + "\r\nContent-Length: 0\r\n\r\n", ""},
		{"100-continue", "POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nhi", "hi"},
		{"CRLF after a POST", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nok\r\n", "ok"},
		{"bare LF after a POST", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nok\n", "ok"},
		{"upper-case hex, leading zeros", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked\r\n\r\n00A\r\n0123456789\r\n0\r\n\r\n", "0123456789"},
		{"bytes above 0x7f in a value", "GET / HTTP/1.1\r\nHost: a\r\nX-Obs: caf\xc3\xa9\r\n\r\n", ""},
		{"large body", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 100000\r\n\r\n" + strings.Repeat("b", 100000), strings.Repeat("b", 100000)},
	}
	for _, tc := range cases {
		raw := tc.raw + "GET / HTTP/1.1\r\nHost: a\r\n\r\n"
		for _, step := range []int{1, 7, 1000, len(raw)} {
			if step == 1 && len(raw) > 10000 {
				continue
			}
			got := exchangeSteps(t, addr, raw, step, 2)
			if len(got) != 2 || got[0].StatusCode != 200 || got[1].StatusCode != 200 {
				t.Errorf("%s, reads of %d: %d answers; want 2 × 200", tc.name, step, len(got))
				continue
			}
			if b, _ := io.ReadAll(got[0].Body); string(b) != tc.first {
				t.Errorf("%s, reads of %d: body %.20q (%d bytes); want %.20q", tc.name, step, b, len(b), tc.first)
			}
		}
	}
}

// 100 Continue is sent when the handler reads the body, not before; a
// handler that answers without reading gets no 100 sent, and the
// connection closes after its answer.
func TestServerExpectContinue(t *testing.T) {
	addr, _ := startLoop(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/read" {
			b, _ := io.ReadAll(r.Body)
			w.Write(b)
			return
		}
		http.Error(w, "no", http.StatusForbidden)
	}), nil, nil)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	io.WriteString(c, "POST /read HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n")
	line, err := br.ReadString('\n')
	if err != nil || line != "HTTP/1.1 100 Continue\r\n" {
		t.Fatalf("before the body: %q %v; want 100 Continue", line, err)
	}
	br.ReadString('\n')
	io.WriteString(c, "body")
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := io.ReadAll(resp.Body); string(b) != "body" {
		t.Errorf("echo %q", b)
	}
	io.WriteString(c, "POST /refuse HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n")
	resp, err = http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusForbidden || !resp.Close {
		t.Fatalf("refused upload: %v %v; want 403 closing", resp, err)
	}
	io.Copy(io.Discard, resp.Body)
	if _, err := br.ReadByte(); err != io.EOF {
		t.Errorf("after the refused upload: %v; want the connection closed", err)
	}
}

// The limits of the fallback server apply: a head over MaxHeaderBytes is
// answered 431; a head not in within ReadHeaderTimeout, and a connection
// idle for IdleTimeout, are closed.
func TestServerLimits(t *testing.T) {
	addr, _ := startLoop(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}), func(s *http.Server) {
		s.MaxHeaderBytes = 4096
		s.ReadHeaderTimeout = 300 * time.Millisecond
		s.IdleTimeout = 300 * time.Millisecond
	}, nil)
	got := converse(t, addr, "GET / HTTP/1.1\r\nHost: a\r\nX-Big: "+strings.Repeat("b", 16<<10)+"\r\n\r\n")
	if len(got) != 1 || got[0].Status != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("16 KiB head: %+v; want 431", got)
	}
	for _, tc := range []struct{ name, first string }{
		{"slow head", "GET / HTTP/1.1\r\nHost: a\r\nX-Slow: "},
		{"idle after a request", "GET / HTTP/1.1\r\nHost: a\r\n\r\n"},
	} {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(10 * time.Second))
		io.WriteString(c, tc.first)
		begin := time.Now()
		_, err = io.ReadAll(c)
		if err != nil {
			t.Errorf("%s: %v; want the server to close the connection", tc.name, err)
		}
		if d := time.Since(begin); d > 5*time.Second {
			t.Errorf("%s: closed after %v; want about 300ms", tc.name, d)
		}
		c.Close()
	}
}

// The idle deadline moves with every keep-alive request, though lazily (a
// timer update is skipped when it would move the deadline by little): a
// client that comes back within IdleTimeout keeps its connection for as
// long as it does, and one that stops is closed about IdleTimeout later,
// whatever the last request did to the read deadline (a body, a handler
// moving it).
func TestServerIdleDeadlineMoves(t *testing.T) {
	const idle = 400 * time.Millisecond
	addr, _ := startLoop(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/far" {
			_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(time.Hour))
		}
		io.Copy(io.Discard, r.Body)
	}), func(s *http.Server) { s.IdleTimeout = idle }, nil)
	for _, last := range []string{
		"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nhi",
		"GET /far HTTP/1.1\r\nHost: a\r\n\r\n",
	} {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(10 * time.Second))
		br := bufio.NewReader(c)
		ask := func(raw string) error {
			if _, err := io.WriteString(c, raw); err != nil {
				return err
			}
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				return err
			}
			io.Copy(io.Discard, resp.Body)
			return nil
		}
		// 8 requests 150 ms apart: 1.05 s, well past the first idle
		// deadline, each within IdleTimeout of the one before.
		for i := range 8 {
			if i > 0 {
				time.Sleep(150 * time.Millisecond)
			}
			if err := ask("GET / HTTP/1.1\r\nHost: a\r\n\r\n"); err != nil {
				t.Fatalf("request %d, %d ms after the one before: %v; want the connection kept", i, 150, err)
			}
		}
		if err := ask(last); err != nil {
			t.Fatalf("%q: %v", last, err)
		}
		begin := time.Now()
		if _, err := br.ReadByte(); err != io.EOF {
			t.Errorf("after %q: %v; want the server to close the idle connection", last, err)
		}
		if d := time.Since(begin); d < idle/2 || d > 5*time.Second {
			t.Errorf("after %q: closed after %v; want about %v", last, d, idle)
		}
		c.Close()
	}
}

// A client that goes away cancels its request's context: at once for a
// handler waiting on Done, and for one that only polls Err.
func TestServerClientGoneCancels(t *testing.T) {
	for _, mode := range []string{"done", "err"} {
		t.Run(mode, func(t *testing.T) {
			started, canceled := make(chan struct{}), make(chan error, 1)
			addr, _ := startLoop(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				close(started)
				ctx := r.Context()
				deadline := time.After(10 * time.Second)
				if mode == "done" {
					select {
					case <-ctx.Done():
						canceled <- ctx.Err()
					case <-deadline:
						canceled <- nil
					}
					return
				}
				for {
					if err := ctx.Err(); err != nil {
						canceled <- err
						return
					}
					select {
					case <-deadline:
						canceled <- nil
						return
					case <-time.After(10 * time.Millisecond):
					}
				}
			}), nil, nil)
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			io.WriteString(c, "GET / HTTP/1.1\r\nHost: a\r\n\r\n")
			<-started
			c.Close()
			if err := <-canceled; !errors.Is(err, context.Canceled) {
				t.Errorf("handler's context after the client left: %v; want context.Canceled", err)
			}
		})
	}
}

// The request's context carries what net/http's carries, is not canceled
// while the client waits, and is canceled once the handler returned.
func TestServerRequestContext(t *testing.T) {
	var (
		fallback *http.Server
		seen     context.Context
		info     string
	)
	addr, _ := startLoop(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		seen = ctx
		srv, _ := ctx.Value(http.ServerContextKey).(*http.Server)
		local, _ := ctx.Value(http.LocalAddrContextKey).(net.Addr)
		derived, cancel := context.WithCancel(ctx)
		defer cancel()
		select {
		case <-derived.Done():
			info = "canceled while serving"
		case <-time.After(50 * time.Millisecond):
		}
		info += fmt.Sprintf("server=%v local=%v remote=%v err=%v", srv == fallback, local != nil, r.RemoteAddr != "", ctx.Err())
	}), func(s *http.Server) { fallback = s }, nil)
	if got := converse(t, addr, "GET / HTTP/1.1\r\nHost: a\r\n\r\n"); len(got) != 1 || got[0].Status != 200 {
		t.Fatalf("answer %+v", got)
	}
	if want := "server=true local=true remote=true err=<nil>"; info != want {
		t.Errorf("in the handler: %s; want %s", info, want)
	}
	if seen == nil || !errors.Is(seen.Err(), context.Canceled) {
		t.Errorf("after the handler: %v; want canceled", seen.Err())
	}
}

// A handler that aborts (http.ErrAbortHandler, as ReverseProxy does when
// a backend breaks mid-answer) cuts the answer short: the client sees an
// error, not a complete answer.
func TestServerAbortCutsTheAnswer(t *testing.T) {
	addr, _ := startLoop(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write(bytes.Repeat([]byte("x"), 5000))
		panic(http.ErrAbortHandler)
	}), nil, nil)
	got := converse(t, addr, "GET / HTTP/1.1\r\nHost: a\r\n\r\n")
	if len(got) != 1 || got[0].Err == "" {
		t.Errorf("aborted answer: %+v; want an error", got)
	}
}

// Shutdown lets the request in flight finish, its answer saying
// Connection: close, closes idle connections, and returns when none is
// left; Serve returns http.ErrServerClosed.
func TestServerShutdown(t *testing.T) {
	release, started := make(chan struct{}), make(chan struct{}, 1)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := h1.NewServer(h1.ServerConfig{Fallback: &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			started <- struct{}{}
			<-release
		}
		io.WriteString(w, "done")
	}), ErrorLog: quietLog}})
	served := make(chan error, 1)
	go func() { served <- s.Serve(ln) }()
	addr := ln.Addr().String()

	idle, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	idle.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(idle, "GET / HTTP/1.1\r\nHost: a\r\n\r\n")
	ibr := bufio.NewReader(idle)
	if resp, err := http.ReadResponse(ibr, nil); err != nil {
		t.Fatal(err)
	} else {
		io.Copy(io.Discard, resp.Body)
	}

	busy, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	busy.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(busy, "GET /slow HTTP/1.1\r\nHost: a\r\n\r\n")
	<-started

	shut := make(chan error, 1)
	go func() { shut <- s.Shutdown(context.Background()) }()
	if _, err := ibr.ReadByte(); err != io.EOF {
		t.Errorf("idle connection during shutdown: %v; want closed", err)
	}
	select {
	case err := <-shut:
		t.Fatalf("Shutdown returned %v with a request in flight", err)
	case <-time.After(100 * time.Millisecond):
	}
	close(release)
	resp, err := http.ReadResponse(bufio.NewReader(busy), nil)
	if err != nil {
		t.Fatalf("in-flight request: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	if string(body) != "done" || !resp.Close {
		t.Errorf("in-flight answer %q, close %v; want done, closing", body, resp.Close)
	}
	if err := <-shut; err != nil {
		t.Errorf("Shutdown = %v", err)
	}
	if err := <-served; !errors.Is(err, http.ErrServerClosed) {
		t.Errorf("Serve = %v; want http.ErrServerClosed", err)
	}
	if _, err := net.Dial("tcp", addr); err == nil {
		t.Errorf("the listener still accepts after Shutdown")
	}
}
