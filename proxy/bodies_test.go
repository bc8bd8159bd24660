package proxy_test

import (
	"bufio"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/canaryd/canaryd/proxy"
)

// seenBody is what a backend saw of a request body.
type seenBody struct {
	length, te, expect string
	body               string
}

func recordingBackend(t *testing.T) (string, chan seenBody) {
	got := make(chan seenBody, 4)
	backend, _ := countedBackend(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got <- seenBody{r.Header.Get("Content-Length"), strings.Join(r.TransferEncoding, ","), r.Header.Get("Expect"), string(b)}
		w.Write(b)
	})
	return backend.URL, got
}

// A body up to RequestBuffer is read whole first and sent with its length
// (a chunked one too, and the 100-continue answered by canaryd); a larger
// one streams as it came.
func TestRequestBodyReadAhead(t *testing.T) {
	url, got := recordingBackend(t)
	_, front := stableOnly(t, url, func(c *proxy.Config) { c.RequestBuffer = 1024 })
	send := func(raw string) string {
		c, err := net.Dial("tcp", strings.TrimPrefix(front.URL, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		io.WriteString(c, raw)
		br := bufio.NewReader(c)
		for {
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != http.StatusContinue {
				return string(b)
			}
		}
	}
	small := send("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
	if s := <-got; small != "hello world" || s.length != "11" || s.te != "" || s.expect != "" {
		t.Errorf("small chunked body: backend saw %+v, client got %q; want length 11, no chunking, no Expect", s, small)
	}
	large := strings.Repeat("x", 5000)
	answer := send("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n1388\r\n" + large + "\r\n0\r\n\r\n")
	if s := <-got; answer != large || s.te != "chunked" || s.body != large {
		t.Errorf("large chunked body: backend saw %d bytes, te %q; client got %d bytes; want %d, chunked", len(s.body), s.te, len(answer), len(large))
	}
}

// A canary that cannot be reached is failed over to stable with the body
// that was read ahead: the POST is answered, the canary charged.
func TestSmallBodyFailsOver(t *testing.T) {
	url, got := recordingBackend(t)
	p, _, _, front := newRealProxy(t, proxy.Config{Stable: mustURL(t, url), Canary: mustURL(t, refusedURL(t))}, 100)
	resp, err := front.Client().Post(front.URL+"/", "text/plain", strings.NewReader("payload"))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(b) != "payload" || (<-got).body != "payload" {
		t.Errorf("POST with the canary down: %d %q; want stable's 200 payload", resp.StatusCode, b)
	}
	waitFor(t, "the failover to be recorded", func() bool { return p.Snapshot().Stable.Requests == 1 })
	if s := p.Snapshot(); s.Canary.Errors != 1 {
		t.Errorf("canary errors = %d; want 1 (the failed attempt)", s.Canary.Errors)
	}
}

// A client that stops sending its body gets 408 after BodyReadTimeout; it
// is its failure, not the backend's, and never reached the backend.
func TestBodyReadTimeout(t *testing.T) {
	backend, conns := countedBackend(t, func(w http.ResponseWriter, r *http.Request) { io.Copy(io.Discard, r.Body) })
	p, _, reg, front := newRealProxy(t, proxy.Config{
		Stable: mustURL(t, backend.URL), Canary: mustURL(t, "http://127.0.0.1:1"), BodyReadTimeout: 200 * time.Millisecond,
	}, 0)
	c, err := net.Dial("tcp", strings.TrimPrefix(front.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(c, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nabc")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	var e struct{ Error string }
	if json.NewDecoder(resp.Body).Decode(&e); resp.StatusCode != http.StatusRequestTimeout || e.Error == "" {
		t.Errorf("stalled body: %d %q; want 408 with a JSON error", resp.StatusCode, e.Error)
	}
	if conns.n.Load() != 0 {
		t.Error("a stalled small body reached the backend")
	}
	waitFor(t, "the 408 to be counted", func() bool {
		return metricValue(t, reg, "canary_requests_total", map[string]string{"backend": "stable", "code": "408"}) == 1
	})
	if s := p.Snapshot(); s.Stable.Requests != 0 || s.Stable.Errors != 0 {
		t.Errorf("window: %d requests, %d errors; want none (the client's failure)", s.Stable.Requests, s.Stable.Errors)
	}
}

// CONNECT and TRACE are refused (405 with Allow), PRI on HTTP/1.1 too
// (400); none reaches a backend or counts in the window.
func TestRefusedMethods(t *testing.T) {
	backend, conns := countedBackend(t, func(http.ResponseWriter, *http.Request) {})
	p, _, _, front := newRealProxy(t, proxy.Config{Stable: mustURL(t, backend.URL), Canary: mustURL(t, "http://127.0.0.1:1")}, 0)
	for _, tc := range []struct {
		raw  string
		want int
	}{
		{"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n", 405},
		{"TRACE / HTTP/1.1\r\nHost: a\r\n\r\n", 405},
		{"PRI * HTTP/2.0\r\n\r\n", 400},
	} {
		c, err := net.Dial("tcp", strings.TrimPrefix(front.URL, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(5 * time.Second))
		io.WriteString(c, tc.raw)
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		c.Close()
		if err != nil {
			t.Fatalf("%.10q: %v", tc.raw, err)
		}
		if resp.StatusCode != tc.want || (tc.want == 405 && resp.Header.Get("Allow") == "") {
			t.Errorf("%.10q: %d (Allow %q); want %d", tc.raw, resp.StatusCode, resp.Header.Get("Allow"), tc.want)
		}
	}
	if conns.n.Load() != 0 {
		t.Error("a refused method reached the backend")
	}
	if s := p.Snapshot(); s.Stable.Requests != 0 {
		t.Errorf("window requests = %d; want 0", s.Stable.Requests)
	}
}

// Requests whose bodies stream hold half the upstream connections at most:
// with two connections and two stalled large uploads, a GET still gets
// through.
func TestStreamedUploadsLeaveHalfTheConnections(t *testing.T) {
	backend, _ := countedBackend(t, func(w http.ResponseWriter, r *http.Request) { io.Copy(io.Discard, r.Body) })
	_, front := stableOnly(t, backend.URL, func(c *proxy.Config) {
		c.MaxConnsPerBackend, c.RequestBuffer, c.BodyReadTimeout = 2, 1024, 10*time.Second
	})
	for range 2 {
		c, err := net.Dial("tcp", strings.TrimPrefix(front.URL, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		io.WriteString(c, "POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: 100000\r\n\r\n"+strings.Repeat("u", 2000))
	}
	time.Sleep(200 * time.Millisecond) // both uploads are in
	cl := &http.Client{Timeout: 5 * time.Second}
	resp, err := cl.Get(front.URL + "/get")
	if err != nil {
		t.Fatalf("a GET behind two stalled uploads (2 connections): %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("GET: %d; want 200", resp.StatusCode)
	}
}
