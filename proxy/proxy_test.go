package proxy_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/canaryd/canaryd/proxy"
	"github.com/canaryd/canaryd/split"
)

// countingBackend is a loopback backend counting its hits.
func countingBackend(t *testing.T, name string) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	var hits atomic.Int64
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		io.WriteString(w, name)
	}))
	t.Cleanup(s.Close)
	return s, &hits
}

func TestSplitThroughProxy(t *testing.T) {
	stable, stableHits := countingBackend(t, "stable")
	canary, canaryHits := countingBackend(t, "canary")
	p, sp, _, front := newRealProxy(t, proxy.Config{
		Stable: mustURL(t, stable.URL), Canary: mustURL(t, canary.URL),
	}, 10)
	client := front.Client()
	get := func(n int) {
		for i := range n {
			resp, err := client.Get(front.URL + "/item")
			if err != nil {
				t.Fatalf("request %d: %v", i, err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("request %d: status %d", i, resp.StatusCode)
			}
		}
	}
	get(10000)
	if got, want := canaryHits.Load(), int64(1000); got != want {
		t.Errorf("canary hits at 10%% over 10000 requests = %d; want %d", got, want)
	}
	if got := stableHits.Load(); got != 9000 {
		t.Errorf("stable hits = %d; want 9000", got)
	}
	s := p.Snapshot()
	if s.Canary.Requests != 1000 || s.Stable.Requests != 9000 || s.Canary.Errors+s.Stable.Errors != 0 {
		t.Errorf("snapshot = %d canary, %d stable requests, %d+%d errors; want 1000, 9000, 0",
			s.Canary.Requests, s.Stable.Requests, s.Canary.Errors, s.Stable.Errors)
	}
	sp.SetWeight(0)
	get(1000)
	if got := canaryHits.Load(); got != 1000 {
		t.Errorf("canary hits after weight 0 = %d; want still 1000", got)
	}
}

// seen is what a backend saw of a request.
type seen struct {
	header http.Header
	host   string
	path   string
}

func TestHeaders(t *testing.T) {
	got := make(chan seen, 1)
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- seen{r.Header.Clone(), r.Host, r.URL.RequestURI()}
		w.Header().Set("Connection", "X-Backend-Hop")
		w.Header().Set("X-Backend-Hop", "secret")
		w.Header().Set("Keep-Alive", "timeout=5")
		w.Header().Set("X-End-To-End", "yes")
	}))
	defer backend.Close()
	_, _, _, front := newRealProxy(t, proxy.Config{
		Stable: mustURL(t, backend.URL+"/base"), Canary: mustURL(t, "http://127.0.0.1:1"),
	}, 0)

	// GET takes the fast path, POST with a body the ReverseProxy path:
	// both must send and answer the same headers.
	for _, method := range []string{http.MethodGet, http.MethodPost} {
		t.Run(method, func(t *testing.T) { checkHeaders(t, method, front, backend, got) })
	}
}

func checkHeaders(t *testing.T, method string, front, backend *httptest.Server, got chan seen) {
	var body io.Reader
	if method == http.MethodPost {
		body = strings.NewReader("payload")
	}
	req, _ := http.NewRequest(method, front.URL+"/dir?q=1", body)
	req.Header.Set("Connection", "X-Hop-Named")
	req.Header.Set("X-Hop-Named", "drop me")
	req.Header.Set("Proxy-Authorization", "Basic drop")
	req.Header.Set("Te", "gzip")
	req.Header.Set("X-Forwarded-For", "203.0.113.7")
	req.Header.Set("X-End-To-End", "keep")
	resp, err := front.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	s := <-got

	for _, h := range []string{"X-Hop-Named", "Proxy-Authorization", "Te", "Keep-Alive", "Upgrade"} {
		if v, ok := s.header[h]; ok {
			t.Errorf("backend got hop-by-hop header %s: %q; want it removed", h, v)
		}
	}
	frontHost := strings.TrimPrefix(front.URL, "http://")
	tests := []struct{ name, got, want string }{
		{"X-End-To-End", s.header.Get("X-End-To-End"), "keep"},
		{"X-Forwarded-For", strings.Join(s.header["X-Forwarded-For"], ","), "203.0.113.7, 127.0.0.1"},
		{"X-Forwarded-Proto", s.header.Get("X-Forwarded-Proto"), "http"},
		{"X-Forwarded-Host", s.header.Get("X-Forwarded-Host"), frontHost},
		{"Host", s.host, strings.TrimPrefix(backend.URL, "http://")},
		{"path", s.path, "/base/dir?q=1"},
		{"response X-Backend-Hop", resp.Header.Get("X-Backend-Hop"), ""},
		{"response Keep-Alive", resp.Header.Get("Keep-Alive"), ""},
		{"response X-End-To-End", resp.Header.Get("X-End-To-End"), "yes"},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("%s = %q; want %q", tt.name, tt.got, tt.want)
		}
	}
}

func TestServerSentEvents(t *testing.T) {
	next := make(chan struct{})
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.Header().Set("Content-Length", "") // no length: a stream
		for i := range 3 {
			fmt.Fprintf(w, "data: event %d\n\n", i)
			w.(http.Flusher).Flush()
			select {
			case <-next:
			case <-r.Context().Done():
				return
			}
		}
	}))
	defer backend.Close()
	_, _, _, front := newRealProxy(t, proxy.Config{
		Stable: mustURL(t, backend.URL), Canary: mustURL(t, "http://127.0.0.1:1"),
	}, 0)
	resp, err := front.Client().Get(front.URL + "/events")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	for i := range 3 {
		// The backend sends event i+1 only after we have read event i, so
		// reading it proves each event was flushed on its own.
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("event %d: %v", i, err)
		}
		if want := fmt.Sprintf("data: event %d\n", i); line != want {
			t.Fatalf("event %d = %q; want %q", i, line, want)
		}
		br.ReadString('\n')
		next <- struct{}{}
	}
}

func TestWebSocketUpgrade(t *testing.T) {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
			http.Error(w, "upgrade required", http.StatusUpgradeRequired)
			return
		}
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Errorf("hijack: %v", err)
			return
		}
		defer conn.Close()
		brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
		brw.Flush()
		buf := make([]byte, 5)
		if _, err := io.ReadFull(brw, buf); err != nil {
			return
		}
		conn.Write(bytes.ToUpper(buf))
	}))
	defer backend.Close()
	p, _, _, front := newRealProxy(t, proxy.Config{
		Stable: mustURL(t, "http://127.0.0.1:1"), Canary: mustURL(t, backend.URL),
	}, 100)

	conn, err := net.Dial("tcp", strings.TrimPrefix(front.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(conn, "GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("status = %d; want 101", resp.StatusCode)
	}
	conn.Write([]byte("hello"))
	buf := make([]byte, 5)
	if _, err := io.ReadFull(br, buf); err != nil {
		t.Fatal(err)
	}
	if string(buf) != "HELLO" {
		t.Fatalf("echo = %q; want HELLO", buf)
	}
	conn.Close()
	waitFor(t, "the upgrade to be recorded", func() bool { return p.Snapshot().Canary.Requests == 1 })
	s := p.Snapshot()
	if s.Canary.Latency.Count() != 0 || s.Canary.Errors != 0 {
		t.Errorf("upgrade: histogram %d, errors %d; want 0, 0 (counted, not timed)", s.Canary.Latency.Count(), s.Canary.Errors)
	}
}

func TestLargeBodyStreamed(t *testing.T) {
	const size = 20 << 20
	payload := func(seed uint64) io.Reader {
		return io.LimitReader(rand.NewChaCha8([32]byte{byte(seed)}), size)
	}
	sum := func(r io.Reader) string {
		h := sha256.New()
		io.Copy(h, r)
		return hex.EncodeToString(h.Sum(nil))
	}
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got := sum(r.Body)
		w.Header().Set("X-Request-Sha256", got)
		io.Copy(w, payload(2))
	}))
	defer backend.Close()
	_, _, _, front := newRealProxy(t, proxy.Config{
		Stable: mustURL(t, "http://127.0.0.1:1"), Canary: mustURL(t, backend.URL),
	}, 100)
	resp, err := front.Client().Post(front.URL+"/upload", "application/octet-stream", payload(1))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if got, want := resp.Header.Get("X-Request-Sha256"), sum(payload(1)); got != want {
		t.Errorf("backend received sha256 %s; want %s", got, want)
	}
	if got, want := sum(resp.Body), sum(payload(2)); got != want {
		t.Errorf("client received sha256 %s; want %s", got, want)
	}
}

func TestUpstreamFailures(t *testing.T) {
	hang := make(chan struct{})
	defer close(hang)
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-hang:
		case <-r.Context().Done():
		}
	}))
	defer slow.Close()
	failing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "boom", http.StatusServiceUnavailable)
	}))
	defer failing.Close()
	tests := []struct {
		name     string
		stable   string
		status   int
		kind     string
		upstream bool // counted in canary_upstream_errors_total
	}{
		{"refused stable answers 502", refusedURL(t), http.StatusBadGateway, "connect", true},
		{"silent stable answers 504", slow.URL, http.StatusGatewayTimeout, "timeout", true},
		{"backend 503 passes through", failing.URL, http.StatusServiceUnavailable, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, _, reg, front := newRealProxy(t, proxy.Config{
				Stable: mustURL(t, tt.stable), Canary: mustURL(t, "http://127.0.0.1:1"),
				ResponseHeaderTimeout: 100 * time.Millisecond,
			}, 0)
			resp, err := front.Client().Get(front.URL + "/")
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tt.status {
				t.Errorf("status = %d; want %d", resp.StatusCode, tt.status)
			}
			s := p.Snapshot()
			if s.Stable.Requests != 1 || s.Stable.Errors != 1 || s.Stable.Totals.Errors != 1 {
				t.Errorf("stable window %d requests, %d errors (totals %+v); want 1, 1", s.Stable.Requests, s.Stable.Errors, s.Stable.Totals)
			}
			if tt.upstream {
				if got := metricValue(t, reg, "canary_upstream_errors_total", map[string]string{"backend": "stable", "kind": tt.kind}); got != 1 {
					t.Errorf("canary_upstream_errors_total{stable,%s} = %v; want 1", tt.kind, got)
				}
			}
			if got := metricValue(t, reg, "canary_requests_total", map[string]string{"backend": "stable", "code": fmt.Sprint(tt.status)}); got != 1 {
				t.Errorf("canary_requests_total{stable,%d} = %v; want 1", tt.status, got)
			}
		})
	}
}

func TestClientDisconnectCancelsUpstream(t *testing.T) {
	started := make(chan struct{})
	canceled := make(chan struct{})
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(started)
		select {
		case <-r.Context().Done():
			close(canceled)
		case <-time.After(10 * time.Second):
		}
	}))
	defer backend.Close()
	p, _, reg, front := newRealProxy(t, proxy.Config{
		Stable: mustURL(t, "http://127.0.0.1:1"), Canary: mustURL(t, backend.URL),
	}, 100)
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, front.URL+"/", nil)
		_, err := front.Client().Do(req)
		errc <- err
	}()
	<-started
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Errorf("client error = %v; want context.Canceled", err)
	}
	select {
	case <-canceled:
	case <-time.After(5 * time.Second):
		t.Fatal("the backend's request context was not canceled after the client left")
	}
	waitFor(t, "the canceled request to be recorded", func() bool {
		return metricValue(t, reg, "canary_client_canceled_total", map[string]string{"backend": "canary"}) == 1
	})
	s := p.Snapshot()
	if s.Canary.Errors != 0 || s.Canary.Requests != 0 {
		t.Errorf("canceled request counted as %d requests, %d errors; want 0, 0", s.Canary.Requests, s.Canary.Errors)
	}
	select {
	case <-p.CanaryErrors():
		t.Error("CanaryErrors fired for a client that went away")
	default:
	}
}

func TestCanaryErrorsSignal(t *testing.T) {
	p, _, _, _ := newFakeProxy(t, 10, nil)
	fired := func() bool {
		select {
		case <-p.CanaryErrors():
			return true
		default:
			return false
		}
	}
	steps := []struct {
		name   string
		action func()
		want   bool
	}{
		{"stable error", func() { do(p, "stable", 500, time.Millisecond) }, false},
		{"canary success", func() { do(p, "canary", 200, time.Millisecond) }, false},
		{"canary error", func() { do(p, "canary", 502, time.Millisecond) }, true},
		{"second error before any snapshot", func() { do(p, "canary", 500, time.Millisecond) }, false},
		{"snapshot re-arms, error", func() { p.Snapshot(); do(p, "canary", 500, time.Millisecond) }, true},
		{"totals re-arm, two errors", func() { p.Totals(); do(p, "canary", 500, 0); do(p, "canary", 500, 0) }, true},
		{"nothing new", func() { p.Totals() }, false},
	}
	for _, st := range steps {
		st.action()
		if got := fired(); got != st.want {
			t.Errorf("%s: CanaryErrors fired = %v; want %v", st.name, got, st.want)
		}
	}
}

func TestFailoverToStable(t *testing.T) {
	stable := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "stable got %q", body)
	}))
	defer stable.Close()
	var canaryHits atomic.Int64
	untrusted := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		canaryHits.Add(1)
	}))
	defer untrusted.Close()
	untrusted.Config.ErrorLog = log.New(io.Discard, "", 0) // the handshake failure is expected
	tests := []struct {
		name   string
		canary string
		method string
		body   string
		kind   string
	}{
		{"refused GET", refusedURL(t), http.MethodGet, "", "connect"},
		{"refused POST with body", refusedURL(t), http.MethodPost, "payload", "connect"},
		{"untrusted certificate", untrusted.URL, http.MethodPut, "payload", "tls"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, _, reg, front := newRealProxy(t, proxy.Config{
				Stable: mustURL(t, stable.URL), Canary: mustURL(t, tt.canary),
			}, 100)
			req, _ := http.NewRequest(tt.method, front.URL+"/", strings.NewReader(tt.body))
			resp, err := front.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			got, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if want := fmt.Sprintf("stable got %q", tt.body); resp.StatusCode != 200 || string(got) != want {
				t.Errorf("answer = %d %q; want 200 %q", resp.StatusCode, got, want)
			}
			s := p.Snapshot()
			if s.Canary.Requests != 1 || s.Canary.Errors != 1 || s.Stable.Requests != 1 || s.Stable.Errors != 0 {
				t.Errorf("canary %d/%d, stable %d/%d (requests/errors); want 1/1, 1/0",
					s.Canary.Requests, s.Canary.Errors, s.Stable.Requests, s.Stable.Errors)
			}
			if got := metricValue(t, reg, "canary_upstream_errors_total", map[string]string{"backend": "canary", "kind": tt.kind}); got != 1 {
				t.Errorf("canary_upstream_errors_total{canary,%s} = %v; want 1", tt.kind, got)
			}
			select {
			case <-p.CanaryErrors():
			default:
				t.Error("CanaryErrors did not fire for the failed canary attempt")
			}
		})
	}
	if n := canaryHits.Load(); n != 0 {
		t.Errorf("the untrusted canary served %d requests; want 0", n)
	}
}

func TestHealthChecks(t *testing.T) {
	var canaryDown atomic.Bool
	healthz := func(down *atomic.Bool) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path != "/prefix/healthz" {
				http.NotFound(w, r)
				return
			}
			if down != nil && down.Load() {
				http.Error(w, "down", http.StatusServiceUnavailable)
			}
		})
	}
	stable := httptest.NewServer(healthz(nil))
	defer stable.Close()
	canary := httptest.NewServer(healthz(&canaryDown))
	defer canary.Close()
	p, sp, reg, _ := newRealProxy(t, proxy.Config{
		Stable: mustURL(t, stable.URL+"/prefix"), Canary: mustURL(t, canary.URL+"/prefix"),
		HealthPath: "/healthz", HealthInterval: 10 * time.Millisecond,
	}, 50)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()

	waitFor(t, "a few successful probes", func() bool {
		st, ca := p.Health()
		return st.Checks >= 2 && ca.Checks >= 2
	})
	if sp.Blocked() != 0 {
		t.Errorf("Blocked() = %b with a healthy canary; want 0", sp.Blocked())
	}
	canaryDown.Store(true)
	waitFor(t, "the canary to be blocked", func() bool { return sp.Blocked()&split.BlockUnhealthy != 0 })
	_, ca := p.Health()
	if ca.Healthy || ca.Failures < 2 || !strings.Contains(ca.LastError, "503") || ca.LastCheck.IsZero() {
		t.Errorf("canary health = %+v; want unhealthy, >= 2 failures, last error with 503", ca)
	}
	if st, _ := p.Health(); !st.Healthy || st.Failures != 0 || !st.Enabled {
		t.Errorf("stable health = %+v; want enabled, healthy, no failures", st)
	}
	canaryDown.Store(false)
	waitFor(t, "the canary to be unblocked", func() bool { return sp.Blocked() == 0 })
	if _, ca := p.Health(); !ca.Healthy {
		t.Errorf("canary health after recovery = %+v; want healthy", ca)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run() = %v; want nil after cancel", err)
	}
	if got := metricValue(t, reg, "canary_health_checks_total", map[string]string{"backend": "canary", "result": "failure"}); got < 2 {
		t.Errorf("canary_health_checks_total{canary,failure} = %v; want >= 2", got)
	}
}

func TestHealthDisabled(t *testing.T) {
	p, _, _, _ := newFakeProxy(t, 10, nil)
	st, ca := p.Health()
	for _, h := range []proxy.HealthStats{st, ca} {
		if h.Enabled || !h.Healthy {
			t.Errorf("Health() = %+v; want disabled and healthy", h)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := p.Run(ctx); err != nil {
		t.Errorf("Run() = %v; want nil", err)
	}
}
