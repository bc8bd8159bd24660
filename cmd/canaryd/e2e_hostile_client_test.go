package main

// End-to-end tests with clients that misbehave: malformed chunk sizes, slow
// uploads and slow reads, methods a front door refuses, smuggling over TLS.
// None of it may count against a backend, hold an upstream connection, or
// reach a backend at all when the request is refused.

import (
	"bufio"
	"crypto/tls"
	"encoding/json"
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

// dialTraffic opens a raw connection to the traffic listener, over TLS
// (HTTP/1.1 by ALPN) when it serves https.
func dialTraffic(t *testing.T, in *instance) net.Conn {
	t.Helper()
	addr := strings.TrimPrefix(strings.TrimPrefix(in.traffic, "http://"), "https://")
	var (
		c   net.Conn
		err error
	)
	if strings.HasPrefix(in.traffic, "https://") {
		c, err = tls.DialWithDialer(&net.Dialer{Timeout: 2 * time.Second}, "tcp", addr,
			&tls.Config{InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}})
	} else {
		c, err = net.DialTimeout("tcp", addr, 2*time.Second)
	}
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	t.Cleanup(func() { c.Close() })
	return c
}

// statusOf reads one answer from br and returns its status line ("" when
// the connection ended without one).
func statusOf(br *bufio.Reader) string {
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return ""
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.Proto + " " + resp.Status
}

// checkAny is in.check for an instance whose admin listener may serve TLS
// with a self-signed certificate.
func checkAny(t *testing.T, in *instance) checkBody {
	t.Helper()
	if !strings.HasPrefix(in.admin, "https://") {
		return in.check()
	}
	tr := &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}
	defer tr.CloseIdleConnections()
	req, _ := http.NewRequest(http.MethodGet, in.admin+"/canary_check", nil)
	req.Header.Set("Authorization", "Bearer "+testToken)
	resp, err := (&http.Client{Transport: tr, Timeout: 5 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var c checkBody
	if err := json.NewDecoder(resp.Body).Decode(&c); err != nil || resp.StatusCode != 200 {
		t.Fatalf("/canary_check = %d: %v", resp.StatusCode, err)
	}
	return c
}

// tlsEnv adds a fresh self-signed certificate to env.
func tlsEnv(t *testing.T, env []string) []string {
	certFile, keyFile, _ := selfSigned(t, t.TempDir(), 1)
	return with(env, "CANARY_TLS_CERT_FILE="+certFile, "CANARY_TLS_KEY_FILE="+keyFile)
}

// TestE2EMalformedChunkSizesAre400: chunk sizes outside 1*HEXDIG are the
// client's error (400), never forwarded and never counted against the
// backend, on plain HTTP and on HTTP/1.1 over TLS alike; enough of them
// would otherwise roll back a healthy canary.
func TestE2EMalformedChunkSizesAre400(t *testing.T) {
	for _, scheme := range []string{"http", "https"} {
		t.Run(scheme, func(t *testing.T) {
			stable, canary := newBackend(t, "stable", nil), newBackend(t, "canary", nil)
			env := testEnv(t, stable, canary, "CANARY_WEIGHT=100", "CANARY_JUDGE=window", "CANARY_SLO_MIN_REQUESTS=5")
			if scheme == "https" {
				env = tlsEnv(t, env)
			}
			in := start(t, env)
			for range 2 {
				for _, size := range []string{"+1", "-0", "1 ;x", "zz", "0x1", " 1", "1_0"} {
					c := dialTraffic(t, in)
					io.WriteString(c, "POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"+size+"\r\nX\r\n0\r\n\r\n")
					if got := statusOf(bufio.NewReader(c)); !strings.HasPrefix(got, "HTTP/1.1 400") {
						t.Errorf("chunk size %q: answer %q; want 400", size, got)
					}
				}
			}
			if n := stable.hits.Load() + canary.hits.Load(); n != 0 {
				t.Errorf("%d requests with malformed chunk sizes reached a backend", n)
			}
			time.Sleep(300 * time.Millisecond) // several judge ticks
			if c := checkAny(t, in); strings.HasPrefix(c.Recommendation, "rollback") || c.Canary.Errors != 0 {
				t.Errorf("after 14 malformed requests: %s with %d canary errors; want no rollback and no error", c.Recommendation, c.Canary.Errors)
			}
		})
	}
}

// TestE2EGuardCoversHTTP11OverTLS: the framing guard checks HTTP/1.1 over
// TLS as on plain HTTP, the backend still learns the request came over TLS
// (X-Forwarded-Proto), and HTTP/2 is unaffected.
func TestE2EGuardCoversHTTP11OverTLS(t *testing.T) {
	protos := make(chan string, 8)
	record := func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		protos <- r.Header.Get("X-Forwarded-Proto")
		io.WriteString(w, "ok")
	}
	stable, canary := newBackend(t, "stable", record), newBackend(t, "canary", record)
	in := start(t, tlsEnv(t, testEnv(t, stable, canary, "CANARY_WEIGHT=0")))
	for _, tc := range []struct{ name, raw string }{
		{"CL and TE", "POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"},
		{"obs-fold", "GET /x HTTP/1.1\r\nHost: a\r\nX-A: b\r\n c\r\n\r\n"},
		{"bare LF", "GET /x HTTP/1.1\nHost: a\n\n"},
	} {
		c := dialTraffic(t, in)
		io.WriteString(c, tc.raw)
		if got := statusOf(bufio.NewReader(c)); !strings.HasPrefix(got, "HTTP/1.1 400") {
			t.Errorf("%s over TLS: answer %q; want 400", tc.name, got)
		}
	}
	if n := stable.hits.Load(); n != 0 {
		t.Errorf("%d ambiguous requests over TLS reached the backend", n)
	}
	for _, raw := range []string{
		"GET /fast HTTP/1.1\r\nHost: a\r\n\r\n",
		"POST /standard HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n\r\nbody",
	} {
		c := dialTraffic(t, in)
		io.WriteString(c, raw)
		if got := statusOf(bufio.NewReader(c)); !strings.HasPrefix(got, "HTTP/1.1 200") {
			t.Errorf("%.20q over TLS: answer %q; want 200", raw, got)
		} else if p := <-protos; p != "https" {
			t.Errorf("%.20q over TLS: backend saw X-Forwarded-Proto %q; want https", raw, p)
		}
	}
	tr := &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, ForceAttemptHTTP2: true}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr, Timeout: 5 * time.Second}).Get(in.traffic + "/h2")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.ProtoMajor != 2 || resp.StatusCode != 200 {
		t.Errorf("HTTP/2 over TLS: %s %d; want HTTP/2.0 200", resp.Proto, resp.StatusCode)
	} else if p := <-protos; p != "https" {
		t.Errorf("HTTP/2: backend saw X-Forwarded-Proto %q; want https", p)
	}
}

// TestE2ESlowClientsDoNotInflateLatency: the latency the judge sees is the
// backend's. A client that takes a second to upload two bytes, or to start
// reading a large answer, must not make a healthy canary look slow.
func TestE2ESlowClientsDoNotInflateLatency(t *testing.T) {
	// The clients wait 2 s or more; the backend's own time is well under
	// the 1.5 s SLO even on a loaded machine under the race detector.
	const clients = 6
	judged := []string{"CANARY_WEIGHT=100", "CANARY_JUDGE=window", fmt.Sprint("CANARY_SLO_MIN_REQUESTS=", clients-2), "CANARY_SLO_P95=1500ms"}
	verdict := func(t *testing.T, in *instance) {
		t.Helper()
		time.Sleep(300 * time.Millisecond) // several judge ticks
		c := in.check()
		t.Logf("after %d slow clients: %s, canary p95 %.1f ms", clients, c.Recommendation, c.Canary.P95Ms)
		if c.Canary.Requests != clients || strings.HasPrefix(c.Recommendation, "rollback") || c.Canary.P95Ms >= 1500 {
			t.Errorf("after %d slow clients: %s, %d canary requests, p95 %.1f ms; want no rollback, %d requests, p95 under 1500 ms",
				clients, c.Recommendation, c.Canary.Requests, c.Canary.P95Ms, clients)
		}
	}
	t.Run("slow upload", func(t *testing.T) {
		echo := func(w http.ResponseWriter, r *http.Request) { b, _ := io.ReadAll(r.Body); w.Write(b) }
		in := start(t, testEnv(t, newBackend(t, "stable", nil), newBackend(t, "canary", echo), judged...))
		var wg sync.WaitGroup
		for range clients {
			wg.Go(func() {
				c := dialTraffic(t, in)
				io.WriteString(c, "POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\n")
				time.Sleep(2 * time.Second)
				io.WriteString(c, "ok")
				if got := statusOf(bufio.NewReader(c)); !strings.HasPrefix(got, "HTTP/1.1 200") {
					t.Errorf("slow upload: answer %q; want 200", got)
				}
			})
		}
		wg.Wait()
		verdict(t, in)
	})
	t.Run("slow reader", func(t *testing.T) {
		big := strings.Repeat("x", 5<<20) // more than the socket buffers hold (4 MiB and 128 KiB here)
		canary := newBackend(t, "canary", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, big) })
		in := start(t, testEnv(t, newBackend(t, "stable", nil), canary, judged...))
		var wg sync.WaitGroup
		for range clients {
			wg.Go(func() {
				c := dialTraffic(t, in)
				io.WriteString(c, "GET /big HTTP/1.1\r\nHost: a\r\n\r\n")
				time.Sleep(3 * time.Second) // the proxy's writes block meanwhile
				resp, err := http.ReadResponse(bufio.NewReader(c), nil)
				if err != nil {
					t.Errorf("slow reader: %v", err)
					return
				}
				n, _ := io.Copy(io.Discard, resp.Body)
				if resp.StatusCode != 200 || n != int64(len(big)) {
					t.Errorf("slow reader: %d with %d bytes; want 200 with %d", resp.StatusCode, n, len(big))
				}
			})
		}
		wg.Wait()
		verdict(t, in)
	})
}

// TestE2ESlowUploadersDoNotHoldUpstreamConnections: clients that send a
// body slowly cannot take the upstream connections other requests need.
// A small body is read whole before a connection is taken; a large one must
// keep coming (CANARY_BODY_READ_TIMEOUT per CANARY_REQUEST_BUFFER bytes) or
// the client gets 408 and its connection is freed.
func TestE2ESlowUploadersDoNotHoldUpstreamConnections(t *testing.T) {
	drain := func(w http.ResponseWriter, r *http.Request) { io.Copy(io.Discard, r.Body); io.WriteString(w, "ok") }
	stable, canary := newBackend(t, "stable", drain), newBackend(t, "canary", drain)
	in := start(t, testEnv(t, stable, canary, "CANARY_WEIGHT=0", "CANARY_MAX_CONNS_PER_BACKEND=4", "CANARY_BODY_READ_TIMEOUT=1s"))
	for range 12 { // a small body, one byte of ten sent
		c := dialTraffic(t, in)
		io.WriteString(c, "POST /small HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nx")
	}
	var large []net.Conn
	for range 8 { // a large body, stalled after 64 KiB and a bit
		c := dialTraffic(t, in)
		io.WriteString(c, "POST /large HTTP/1.1\r\nHost: a\r\nContent-Length: 1048576\r\n\r\n"+strings.Repeat("y", 64<<10+100))
		large = append(large, c)
	}
	time.Sleep(300 * time.Millisecond) // the slow requests are in
	var failed atomic.Int64
	cl := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{}}
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			resp, err := cl.Get(in.traffic + "/get")
			if err != nil {
				failed.Add(1)
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				failed.Add(1)
			}
		})
	}
	wg.Wait()
	if failed.Load() != 0 {
		t.Errorf("%d of 20 requests failed behind 20 slow uploaders (4 upstream connections); want 0", failed.Load())
	}
	for i, c := range large {
		if got := statusOf(bufio.NewReader(c)); !strings.HasPrefix(got, "HTTP/1.1 408") {
			t.Errorf("stalled large upload %d: answer %q; want 408", i, got)
		}
	}
	if m := in.metricsOf(); sumMetric(m, "canary_upstream_errors_total{") != 0 ||
		sumMetric(m, "canary_requests_total{", `code="5`) != 0 {
		t.Errorf("slow uploads counted against a backend: upstream errors %v, 5xx %v",
			sumMetric(m, "canary_upstream_errors_total{"), sumMetric(m, "canary_requests_total{", `code="5`))
	}
}

// TestE2EProtocolRefusals: the traffic listener refuses CONNECT (405),
// HTTP/2 prior knowledge on HTTP/1.1 (PRI, 400) and TRACE (405), none of
// them reaching a backend; neither a refused CONNECT nor a refused upgrade
// switches the framing guard off for the rest of the connection.
func TestE2EProtocolRefusals(t *testing.T) {
	stable, canary := newBackend(t, "stable", nil), newBackend(t, "canary", nil)
	in := start(t, testEnv(t, stable, canary))
	for _, tc := range []struct {
		name, raw, want string
	}{
		{"CONNECT", "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n", "HTTP/1.1 405"},
		{"PRI", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "HTTP/1.1 400"},
		{"TRACE", "TRACE /t HTTP/1.1\r\nHost: a\r\nCookie: secret\r\n\r\n", "HTTP/1.1 405"},
	} {
		c := dialTraffic(t, in)
		br := bufio.NewReader(c)
		io.WriteString(c, tc.raw)
		if got := statusOf(br); !strings.HasPrefix(got, tc.want) {
			t.Errorf("%s: answer %q; want %s", tc.name, got, tc.want)
		}
		if tc.name != "CONNECT" {
			continue
		}
		// The connection stays HTTP/1.1 and stays checked.
		io.WriteString(c, "POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
		if got := statusOf(br); !strings.HasPrefix(got, "HTTP/1.1 400") {
			t.Errorf("CL and TE after a CONNECT: answer %q; want 400", got)
		}
	}
	if n := stable.hits.Load() + canary.hits.Load(); n != 0 {
		t.Errorf("%d refused requests reached a backend", n)
	}
	c := dialTraffic(t, in)
	br := bufio.NewReader(c)
	io.WriteString(c, "GET /up HTTP/1.1\r\nHost: a\r\nUpgrade: foo\r\nConnection: upgrade\r\n\r\n")
	if got := statusOf(br); !strings.HasPrefix(got, "HTTP/1.1 200") {
		t.Fatalf("refused upgrade: answer %q; want the backend's 200", got)
	}
	io.WriteString(c, "GET /x HTTP/1.1\r\nHost: a\nX-Bare: lf\r\n\r\n")
	if got := statusOf(br); !strings.HasPrefix(got, "HTTP/1.1 400") {
		t.Errorf("bare LF after a refused upgrade: answer %q; want 400", got)
	}
}
