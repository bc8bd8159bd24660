package proxy_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/canaryd/canaryd/proxy"
	"github.com/canaryd/canaryd/split"
)

// getOK sends n GETs through front and fails on any answer but 200.
func getOK(t *testing.T, front *httptest.Server, n int) {
	t.Helper()
	for i := range n {
		resp, err := front.Client().Get(front.URL + "/")
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

// TestRetryOnAnotherEndpoint: a request whose connection to an endpoint
// fails goes once to another endpoint of the same backend, bodies read
// whole included; the failed attempt is evidence against the backend and
// the endpoint.
func TestRetryOnAnotherEndpoint(t *testing.T) {
	live, hits := countingBackend(t, "live")
	dead := refusedURL(t)
	for _, method := range []string{http.MethodGet, http.MethodPost} {
		t.Run(method, func(t *testing.T) {
			hits.Store(0)
			p, _, reg, front := newRealProxy(t, proxy.Config{
				StableURLs: []*url.URL{mustURL(t, dead), mustURL(t, live.URL)},
				Canary:     mustURL(t, refusedURL(t)),
				// Round robin: the dead endpoint comes first, every other
				// request.
				LoadBalancer:             proxy.RoundRobin,
				EjectConsecutiveFailures: -1,
			}, 0)
			const n = 10
			for i := range n {
				req, _ := http.NewRequest(method, front.URL+"/", strings.NewReader(strings.Repeat("b", i)))
				resp, err := front.Client().Do(req)
				if err != nil {
					t.Fatal(err)
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 || string(body) != "live" {
					t.Fatalf("request %d = %d %q; want 200 from live", i, resp.StatusCode, body)
				}
			}
			if hits.Load() != n {
				t.Errorf("live endpoint hits = %d; want %d", hits.Load(), n)
			}
			s := p.Snapshot()
			if s.Stable.Requests != n+n/2 || s.Stable.Errors != n/2 {
				t.Errorf("stable window = %d requests, %d errors; want %d, %d (every failed attempt counted)", s.Stable.Requests, s.Stable.Errors, n+n/2, n/2)
			}
			if v := metricValue(t, reg, "canary_retries_total", map[string]string{"backend": "stable"}); v != n/2 {
				t.Errorf("canary_retries_total{stable} = %v; want %d", v, n/2)
			}
			if v := metricValue(t, reg, "canary_responses_total", map[string]string{"backend": "stable", "code": "200"}); v != n {
				t.Errorf("canary_responses_total{stable,200} = %v; want %d", v, n)
			}
			st, _ := p.Health()
			if e := st.Endpoints[0]; e.Requests != n/2 || e.Errors != n/2 {
				t.Errorf("dead endpoint figures = %+v; want %d requests, all errors", e, n/2)
			}
		})
	}
}

// TestRetryThenFailover: a canary whose every endpoint refuses is tried on
// a second endpoint, then failed over to stable; the client sees stable's
// answer, and each attempt is counted where it happened.
func TestRetryThenFailover(t *testing.T) {
	stable, _ := countingBackend(t, "stable")
	p, _, reg, front := newRealProxy(t, proxy.Config{
		Stable:     mustURL(t, stable.URL),
		CanaryURLs: []*url.URL{mustURL(t, refusedURL(t)), mustURL(t, refusedURL(t))},
	}, 100)
	getOK(t, front, 1)
	s := p.Snapshot()
	if s.Canary.Requests != 2 || s.Canary.Errors != 2 || s.Stable.Requests != 1 || s.Stable.Errors != 0 {
		t.Errorf("canary %d/%d, stable %d/%d (requests/errors); want 2/2, 1/0", s.Canary.Requests, s.Canary.Errors, s.Stable.Requests, s.Stable.Errors)
	}
	for _, m := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"canary_retries_total", map[string]string{"backend": "canary"}, 1},
		{"canary_failovers_total", map[string]string{}, 1},
		{"canary_requests_total", map[string]string{"backend": "canary", "code": "502"}, 2},
		{"canary_upstream_errors_total", map[string]string{"backend": "canary", "kind": "connect"}, 2},
		{"canary_responses_total", map[string]string{"backend": "stable", "code": "200"}, 1},
		{"canary_responses_total", map[string]string{"backend": "canary", "code": "502"}, 0},
	} {
		if v := metricValue(t, reg, m.name, m.labels); v != m.want {
			t.Errorf("%s%v = %v; want %v", m.name, m.labels, v, m.want)
		}
	}
}

// TestMetricsAttemptsAndAnswers (issue 16 item 6): with the canary down,
// every request is one canary failure and one stable 200, and both are
// visible: canary_requests_total and canary_errors_total count the attempts
// (what the judge sees), canary_responses_total the answers clients got,
// canary_failovers_total the requests sent on.
func TestMetricsAttemptsAndAnswers(t *testing.T) {
	stable, _ := countingBackend(t, "stable")
	p, _, reg, front := newRealProxy(t, proxy.Config{
		Stable: mustURL(t, stable.URL),
		Canary: mustURL(t, refusedURL(t)),
	}, 100)
	const n = 20
	getOK(t, front, n)
	want := map[string]float64{
		`canary_requests_total{backend="canary",code="502"}`:            n, // attempts
		`canary_errors_total{backend="canary"}`:                         n,
		`canary_upstream_errors_total{backend="canary",kind="connect"}`: n,
		`canary_failovers_total{}`:                                      n,
		`canary_requests_total{backend="stable",code="200"}`:            n,
		`canary_errors_total{backend="stable"}`:                         0,
		`canary_responses_total{backend="stable",code="200"}`:           n, // answers
		`canary_responses_total{backend="canary",code="502"}`:           0,
	}
	for series, v := range want {
		name, rest, _ := strings.Cut(series, "{")
		labels := map[string]string{}
		for kv := range strings.SplitSeq(strings.TrimSuffix(rest, "}"), ",") {
			if k, val, ok := strings.Cut(kv, "="); ok {
				labels[k] = strings.Trim(val, `"`)
			}
		}
		if got := metricValue(t, reg, name, labels); got != v {
			t.Errorf("%s = %v; want %v", series, got, v)
		}
	}
	if s := p.Snapshot(); s.Canary.Requests != n || s.Canary.Errors != n || s.Stable.Requests != n {
		t.Errorf("window: canary %d/%d, stable %d; want %d/%d, %d", s.Canary.Requests, s.Canary.Errors, s.Stable.Requests, n, n, n)
	}
}

// TestErrorStatuses: which HTTP statuses are errors is configurable.
func TestErrorStatuses(t *testing.T) {
	statuses, err := proxy.ParseStatusSet("5xx,429")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		set     proxy.StatusSet
		status  int
		wantErr bool
	}{
		{"default 503", proxy.StatusSet{}, 503, true},
		{"default 429", proxy.StatusSet{}, 429, false},
		{"5xx,429: 429", statuses, 429, true},
		{"5xx,429: 404", statuses, 404, false},
		{"5xx,429: 500", statuses, 500, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, _, _, _ := newFakeProxy(t, 100, func(c *proxy.Config) { c.ErrorStatuses = tc.set })
			do(p, "canary", tc.status, time.Millisecond)
			if got := p.Snapshot().Canary.Errors == 1; got != tc.wantErr {
				t.Errorf("status %d counted as error = %v; want %v", tc.status, got, tc.wantErr)
			}
		})
	}
}

func TestParseStatusSet(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"5xx", "5xx"}, {"5xx,429", "429,5xx"}, {" 502 , 503 ", "502,503"}, {"4XX", "4xx"},
		{"", ""}, {"600", ""}, {"5x", ""}, {"abc", ""}, {"099", ""}, {"5xx,", ""},
	} {
		set, err := proxy.ParseStatusSet(tc.in)
		if got := set.String(); (err == nil) != (tc.want != "") || err == nil && got != tc.want {
			t.Errorf("ParseStatusSet(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

func TestParseGRPCCodes(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"2,4,12,13,14,15", "2,4,12,13,14,15"}, {"UNAVAILABLE, deadline_exceeded", "4,14"}, {"Unavailable", "14"},
		{"0", "0"}, {"17", ""}, {"", ""}, {"UNAVAILABLEX", ""}, {"-1", ""},
	} {
		set, err := proxy.ParseGRPCCodes(tc.in)
		if got := set.String(); (err == nil) != (tc.want != "") || err == nil && got != tc.want {
			t.Errorf("ParseGRPCCodes(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
	if got := (proxy.GRPCCodes{}).String(); got != "2,4,12,13,14,15" {
		t.Errorf("zero GRPCCodes = %q; want the default", got)
	}
}

// fakeResolver answers a host name from a table the test changes.
type fakeResolver struct {
	mu    sync.Mutex
	addrs map[string][]string
	calls atomic.Int64
}

func (r *fakeResolver) LookupHost(_ context.Context, host string) ([]string, error) {
	r.calls.Add(1)
	r.mu.Lock()
	defer r.mu.Unlock()
	if a, ok := r.addrs[host]; ok {
		return a, nil
	}
	return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
}

func (r *fakeResolver) set(host string, addrs ...string) {
	r.mu.Lock()
	r.addrs[host] = addrs
	r.mu.Unlock()
}

// listenOn serves h at ip:port (port 0: any), counting requests and
// remembering the Host they carried.
func listenOn(t *testing.T, ip string, port int, h http.HandlerFunc) (*httptest.Server, error) {
	t.Helper()
	ln, err := net.Listen("tcp", net.JoinHostPort(ip, fmt.Sprint(port)))
	if err != nil {
		return nil, err
	}
	s := httptest.NewUnstartedServer(h)
	s.Listener.Close()
	s.Listener = ln
	s.Start()
	t.Cleanup(s.Close)
	return s, nil
}

// TestDNSRefresh: a backend URL with a host name is one endpoint per
// address it resolves to, resolved again every DNSRefresh; the Host the
// backend sees stays the name's. An address that appears gets traffic, one
// that goes away none; a failed resolution keeps what there was.
func TestDNSRefresh(t *testing.T) {
	var v4Hits, v6Hits atomic.Int64
	var hostSeen atomic.Value
	handler := func(hits *atomic.Int64) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			hits.Add(1)
			hostSeen.Store(r.Host)
			io.WriteString(w, "ok")
		}
	}
	// The same port on both loopback addresses: one name, two endpoints.
	var v4, v6 *httptest.Server
	for range 20 {
		s4, err := listenOn(t, "127.0.0.1", 0, handler(&v4Hits))
		if err != nil {
			t.Fatal(err)
		}
		_, port, _ := net.SplitHostPort(s4.Listener.Addr().String())
		var p int
		fmt.Sscan(port, &p)
		if s6, err := listenOn(t, "::1", p, handler(&v6Hits)); err == nil {
			v4, v6 = s4, s6
			break
		}
		s4.Close()
	}
	if v6 == nil {
		t.Skip("IPv6 loopback unavailable: the test needs ::1 beside 127.0.0.1")
	}
	_, port, _ := net.SplitHostPort(v4.Listener.Addr().String())
	res := &fakeResolver{addrs: map[string][]string{}}
	res.set("pool.test", "127.0.0.1")
	p, _, _, front := newRealProxy(t, proxy.Config{
		Stable:     mustURL(t, "http://pool.test:"+port),
		Canary:     mustURL(t, refusedURL(t)),
		Resolver:   res,
		DNSRefresh: time.Second, // the floor (ValidateDNSRefresh)
	}, 0)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	getOK(t, front, 20)
	if v4Hits.Load() != 20 || v6Hits.Load() != 0 {
		t.Fatalf("hits v4 %d, v6 %d; want 20, 0", v4Hits.Load(), v6Hits.Load())
	}
	if got := hostSeen.Load(); got != "pool.test:"+port {
		t.Errorf("Host seen by the backend = %q; want the name's, pool.test:%s", got, port)
	}
	res.set("pool.test", "::1", "127.0.0.1")
	waitFor(t, "the new address to join the pool", func() bool {
		st, _ := p.Health()
		return len(st.Endpoints) == 2
	})
	st, _ := p.Health()
	if st.Endpoints[0].Address != "127.0.0.1:"+port || st.Endpoints[1].Address != "[::1]:"+port || st.Endpoints[1].URL != "http://pool.test:"+port {
		t.Errorf("endpoints = %+v; want 127.0.0.1:%s and [::1]:%s of http://pool.test:%s", st.Endpoints, port, port, port)
	}
	getOK(t, front, 200)
	if v6Hits.Load() < 50 {
		t.Errorf("the new address got %d of 200 requests; want about half", v6Hits.Load())
	}
	// A failed resolution keeps the pool; an answer without an address
	// takes it out.
	res.mu.Lock()
	delete(res.addrs, "pool.test")
	res.mu.Unlock()
	calls := res.calls.Load()
	waitFor(t, "two more resolutions", func() bool { return res.calls.Load() >= calls+2 })
	if st, _ := p.Health(); len(st.Endpoints) != 2 {
		t.Errorf("after a failed resolution the pool has %d endpoints; want the 2 it had", len(st.Endpoints))
	}
	res.set("pool.test", "::1")
	waitFor(t, "the old address to leave the pool", func() bool {
		st, _ := p.Health()
		return len(st.Endpoints) == 1
	})
	before := v4Hits.Load()
	getOK(t, front, 20)
	if v4Hits.Load() != before {
		t.Errorf("a removed address got %d requests", v4Hits.Load()-before)
	}
}

// TestEndpointHealthChecks: each endpoint is probed; a failing one gets no
// traffic while another passes, and the backend stays healthy (its rounds
// pass); when every endpoint fails, the backend is unhealthy and a canary
// is blocked.
func TestEndpointHealthChecks(t *testing.T) {
	var sick [2]atomic.Bool
	var hits [2]atomic.Int64
	var urls []*url.URL
	for i := range 2 {
		s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/healthz" {
				if sick[i].Load() {
					w.WriteHeader(http.StatusServiceUnavailable)
				}
				return
			}
			hits[i].Add(1)
		}))
		t.Cleanup(s.Close)
		urls = append(urls, mustURL(t, s.URL))
	}
	stable, _ := countingBackend(t, "stable")
	p, sp, reg, front := newRealProxy(t, proxy.Config{
		Stable:         mustURL(t, stable.URL),
		CanaryURLs:     urls,
		HealthPath:     "/healthz",
		HealthInterval: 20 * time.Millisecond,
	}, 100)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	sick[0].Store(true)
	waitFor(t, "endpoint 0 to turn unhealthy", func() bool {
		_, c := p.Health()
		return !c.Endpoints[0].Healthy
	})
	_, c := p.Health()
	if !c.Healthy || c.Failures != 0 || sp.Blocked() != 0 {
		t.Errorf("canary with one endpoint of two failing: healthy %v, failed rounds %d, blocked %b; want healthy, 0, 0", c.Healthy, c.Failures, sp.Blocked())
	}
	hits[0].Store(0)
	getOK(t, front, 20)
	if hits[0].Load() != 0 || hits[1].Load() < 20 {
		t.Errorf("hits = %d, %d; want 0 to the unhealthy endpoint", hits[0].Load(), hits[1].Load())
	}
	if v := metricValue(t, reg, "canary_endpoints", map[string]string{"backend": "canary", "state": "unhealthy"}); v != 1 {
		t.Errorf(`canary_endpoints{canary,unhealthy} = %v; want 1`, v)
	}
	sick[1].Store(true)
	waitFor(t, "the canary to turn unhealthy and be blocked", func() bool {
		_, c := p.Health()
		return !c.Healthy && sp.Blocked()&split.BlockUnhealthy != 0
	})
	sick[0].Store(false)
	waitFor(t, "the canary to recover", func() bool {
		_, c := p.Health()
		return c.Healthy && sp.Blocked() == 0 && c.Endpoints[0].Healthy && !c.Endpoints[1].Healthy
	})
	if _, c := p.Health(); c.Failures == 0 || c.LastError == "" {
		t.Errorf("failed rounds = %d, last error %q; want the rounds when every endpoint failed", c.Failures, c.LastError)
	}
}

// TestEndpointSeriesBounded: per-endpoint series stop at 32 per backend;
// the rest are summed under endpoint="other".
func TestEndpointSeriesBounded(t *testing.T) {
	var urls []*url.URL
	for i := range 40 {
		urls = append(urls, mustURL(t, fmt.Sprintf("http://s%d.test", i)))
	}
	clock := newFakeClock()
	reg := prometheus.NewRegistry()
	sp, _ := split.New(split.Config{}, 0)
	p, err := proxy.New(proxy.Config{
		StableURLs: urls, Canary: mustURL(t, "http://canary.test"),
		Transport: &fakeBackend{clock: clock}, Now: clock.Now, LoadBalancer: proxy.RoundRobin,
	}, sp, zerolog.Nop(), reg)
	if err != nil {
		t.Fatal(err)
	}
	for range 80 {
		w := httptest.NewRecorder()
		p.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/", nil))
	}
	if n := seriesCount(t, reg, "canary_endpoint_requests_total"); n != 33+1 {
		t.Errorf("canary_endpoint_requests_total series = %d; want 32 + other for stable, 1 for canary", n)
	}
	if v := metricValue(t, reg, "canary_endpoint_requests_total", map[string]string{"backend": "stable", "endpoint": "other"}); v != 16 {
		t.Errorf(`endpoint="other" requests = %v; want 16 (8 endpoints × 2)`, v)
	}
}
