package proxy_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/canaryd/canaryd/proxy"
	"github.com/canaryd/canaryd/split"
)

// fakeClock is an injected clock that only moves when told to.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{t: time.Date(2026, 1, 2, 3, 4, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// fakeBackend is an in-memory RoundTripper: each request advances the clock
// by the X-Test-Latency header and answers the X-Test-Status header (200 by
// default), so latencies and outcomes are exact.
type fakeBackend struct {
	clock *fakeClock
	mu    sync.Mutex
	hits  map[string]int // by host
}

func (f *fakeBackend) RoundTrip(r *http.Request) (*http.Response, error) {
	f.mu.Lock()
	if f.hits == nil {
		f.hits = map[string]int{}
	}
	f.hits[r.URL.Host]++
	f.mu.Unlock()
	if d, err := time.ParseDuration(r.Header.Get("X-Test-Latency")); err == nil {
		f.clock.Advance(d)
	}
	status := http.StatusOK
	if s := r.Header.Get("X-Test-Status"); s != "" {
		status, _ = strconv.Atoi(s)
	}
	return &http.Response{
		StatusCode: status,
		Header:     http.Header{"Content-Type": {"text/plain"}},
		Body:       io.NopCloser(strings.NewReader("ok")),
		Request:    r,
	}, nil
}

func mustURL(t testing.TB, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// newFakeProxy builds a proxy over a fakeBackend with a fake clock at the
// given weight (percent).
func newFakeProxy(t testing.TB, weight uint32, mod func(*proxy.Config)) (*proxy.Proxy, *fakeClock, *split.Splitter, *prometheus.Registry) {
	t.Helper()
	clock := newFakeClock()
	cfg := proxy.Config{
		Stable:    mustURL(t, "http://stable.test"),
		Canary:    mustURL(t, "http://canary.test"),
		Window:    time.Minute,
		Transport: &fakeBackend{clock: clock},
		Now:       clock.Now,
	}
	if mod != nil {
		mod(&cfg)
	}
	sp, err := split.New(split.Config{OverrideHeader: "X-Canary"}, weight*100)
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	p, err := proxy.New(cfg, sp, zerolog.Nop(), reg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return p, clock, sp, reg
}

// do sends one request through p's handler directly.
func do(p http.Handler, backend string, status int, latency time.Duration) *httptest.ResponseRecorder {
	r := httptest.NewRequest(http.MethodGet, "/x", nil)
	if backend == "canary" {
		r.Header.Set("X-Canary", "always")
	} else {
		r.Header.Set("X-Canary", "never")
	}
	r.Header.Set("X-Test-Status", strconv.Itoa(status))
	r.Header.Set("X-Test-Latency", latency.String())
	w := httptest.NewRecorder()
	p.ServeHTTP(w, r)
	return w
}

// newRealProxy fronts p's handler with a loopback server.
func newRealProxy(t testing.TB, cfg proxy.Config, weight uint32) (*proxy.Proxy, *split.Splitter, *prometheus.Registry, *httptest.Server) {
	t.Helper()
	sp, err := split.New(split.Config{OverrideHeader: "X-Canary"}, weight*100)
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	p, err := proxy.New(cfg, sp, zerolog.Nop(), reg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	front := httptest.NewServer(p)
	t.Cleanup(front.Close)
	return p, sp, reg, front
}

// refusedURL returns a loopback URL nothing listens on.
func refusedURL(t testing.TB) string {
	t.Helper()
	s := httptest.NewServer(http.NotFoundHandler())
	u := s.URL
	s.Close()
	return u
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
