package proxy

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/canaryd/canaryd/split"
)

// hostTransport answers each request with the status set for its host (200
// by default) and records the hosts in order.
type hostTransport struct {
	mu     sync.Mutex
	status map[string]int
	hosts  []string
}

func (t *hostTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	t.mu.Lock()
	t.hosts = append(t.hosts, r.URL.Host)
	status := t.status[r.URL.Host]
	t.mu.Unlock()
	if status == 0 {
		status = http.StatusOK
	}
	return &http.Response{StatusCode: status, Header: http.Header{}, Body: io.NopCloser(strings.NewReader("ok")), Request: r}, nil
}

func (t *hostTransport) set(host string, status int) {
	t.mu.Lock()
	t.status[host] = status
	t.mu.Unlock()
}

func (t *hostTransport) take() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	h := t.hosts
	t.hosts = nil
	return h
}

type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *testClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// poolProxy builds a proxy whose stable backend is a pool of the hosts
// s1.test … sN.test over a hostTransport, all traffic to stable.
func poolProxy(t testing.TB, n int, mod func(*Config)) (*Proxy, *hostTransport, *testClock) {
	t.Helper()
	tr := &hostTransport{status: map[string]int{}}
	clock := &testClock{t: time.Date(2026, 1, 2, 3, 4, 0, 0, time.UTC)}
	cfg := Config{
		Canary:    &url.URL{Scheme: "http", Host: "canary.test"},
		Transport: tr,
		Now:       clock.Now,
		Window:    time.Minute,
	}
	for i := range n {
		cfg.StableURLs = append(cfg.StableURLs, &url.URL{Scheme: "http", Host: fmt.Sprintf("s%d.test", i+1)})
	}
	if mod != nil {
		mod(&cfg)
	}
	sp, err := split.New(split.Config{}, 0)
	if err != nil {
		t.Fatal(err)
	}
	p, err := New(cfg, sp, zerolog.Nop(), nil)
	if err != nil {
		t.Fatal(err)
	}
	return p, tr, clock
}

func get(p *Proxy) int {
	w := httptest.NewRecorder()
	p.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/", nil))
	return w.Code
}

// TestRoundRobinSequence: round_robin takes the endpoints in turn, exactly,
// and skips an ejected one without giving its turns to its neighbour.
func TestRoundRobinSequence(t *testing.T) {
	p, tr, clock := poolProxy(t, 3, func(c *Config) { c.LoadBalancer = RoundRobin; c.EjectConsecutiveFailures = 1 })
	for range 6 {
		get(p)
	}
	if got, want := strings.Join(tr.take(), " "), "s1.test s2.test s3.test s1.test s2.test s3.test"; got != want {
		t.Errorf("picks = %s; want %s", got, want)
	}
	tr.set("s2.test", 503)
	get(p) // s1
	get(p) // s2 fails once: ejected
	tr.take()
	clock.Advance(time.Second)
	for range 6 {
		get(p)
	}
	if got, want := strings.Join(tr.take(), " "), "s1.test s3.test s1.test s3.test s1.test s3.test"; got != want {
		t.Errorf("picks with s2 ejected = %s; want %s", got, want)
	}
}

// TestLeastRequestAvoidsTheBusiest: of two random endpoints, the one with
// fewer requests in flight; so an endpoint busier than all others is never
// picked, and idle ones share evenly.
func TestLeastRequestAvoidsTheBusiest(t *testing.T) {
	p, _, _ := poolProxy(t, 4, nil)
	bk := p.backends[split.Stable]
	all := bk.set.Load().all
	all[2].inFlight.Store(5)
	counts := map[*endpoint]int{}
	const picks = 30000
	for range picks {
		counts[bk.pick(p, 0)]++
	}
	if counts[all[2]] != 0 {
		t.Errorf("the busiest endpoint got %d picks; want 0", counts[all[2]])
	}
	for i, ep := range all {
		if i == 2 {
			continue
		}
		if share := float64(counts[ep]) / picks; share < 0.30 || share > 0.37 {
			t.Errorf("endpoint %d share = %.3f; want about 1/3", i, share)
		}
	}
}

// TestEjection follows one endpoint through Envoy-style ejections: five
// errors in a row eject it for EjectTime, it is readmitted when that has
// passed, a repeat doubles the time, and time without ejections forgets
// them. Success in between restarts the count.
func TestEjection(t *testing.T) {
	p, tr, clock := poolProxy(t, 3, func(c *Config) { c.LoadBalancer = RoundRobin })
	ep2 := p.backends[split.Stable].set.Load().all[1]
	ejectedFor := func() time.Duration {
		st, _ := p.Health()
		until := st.Endpoints[1].EjectedUntil
		if until.IsZero() {
			return 0
		}
		return until.Sub(clock.Now())
	}
	tr.set("s2.test", 500)
	for range 4 * 3 { // s2 answers every third request: four errors
		get(p)
	}
	if d := ejectedFor(); d != 0 {
		t.Fatalf("ejected after 4 errors (for %v); want not yet", d)
	}
	tr.set("s2.test", 200)
	for range 3 {
		get(p)
	}
	tr.set("s2.test", 500)
	for range 4 * 3 {
		get(p)
	}
	if d := ejectedFor(); d != 0 {
		t.Fatalf("ejected after a success broke the run (for %v); want not yet", d)
	}
	for range 3 {
		get(p)
	}
	if d := ejectedFor(); d != DefaultEjectTime {
		t.Fatalf("after 5 errors in a row ejected for %v; want %v", d, DefaultEjectTime)
	}
	tr.take()
	for range 10 {
		get(p)
	}
	for _, h := range tr.take() {
		if h == "s2.test" {
			t.Fatal("an ejected endpoint got a request")
		}
	}
	if ep2.ejections.Load() != 1 {
		t.Errorf("ejections = %d; want 1", ep2.ejections.Load())
	}
	// Readmitted after the ejection time; failing again doubles it.
	clock.Advance(DefaultEjectTime)
	for range 5 * 3 {
		get(p)
	}
	if d := ejectedFor(); d != 2*DefaultEjectTime {
		t.Fatalf("second ejection lasts %v; want %v", d, 2*DefaultEjectTime)
	}
	clock.Advance(2 * DefaultEjectTime)
	for range 5 * 3 {
		get(p)
	}
	if d := ejectedFor(); d != 4*DefaultEjectTime {
		t.Fatalf("third ejection lasts %v; want %v", d, 4*DefaultEjectTime)
	}
	// Each ejection time without an ejection forgets one: after the third
	// ends and 3 more EjectTimes pass, the next is a first again.
	clock.Advance(4*DefaultEjectTime + 3*DefaultEjectTime)
	for range 5 * 3 {
		get(p)
	}
	if d := ejectedFor(); d != DefaultEjectTime {
		t.Fatalf("an ejection long after the last lasts %v; want %v", d, DefaultEjectTime)
	}
	// Doubling stops at MaxEjectTime.
	for range 10 {
		clock.Advance(ejectedFor())
		for range 5 * 3 {
			get(p)
		}
	}
	if d := ejectedFor(); d != MaxEjectTime {
		t.Fatalf("a much repeated ejection lasts %v; want the cap %v", d, MaxEjectTime)
	}
}

// TestEjectionCap: never more than half a pool (rounded down) is ejected at
// once, and a pool of one never is.
func TestEjectionCap(t *testing.T) {
	for _, tc := range []struct{ pool, failing, wantEjected int }{
		{1, 1, 0}, {2, 2, 1}, {3, 3, 1}, {4, 3, 2}, {5, 5, 2},
	} {
		t.Run(fmt.Sprintf("%d of %d failing", tc.failing, tc.pool), func(t *testing.T) {
			p, tr, _ := poolProxy(t, tc.pool, func(c *Config) { c.LoadBalancer = RoundRobin })
			for i := range tc.failing {
				tr.set(fmt.Sprintf("s%d.test", i+1), 502)
			}
			for range 50 * tc.pool {
				get(p)
			}
			st, _ := p.Health()
			ejected := 0
			for _, e := range st.Endpoints {
				if !e.EjectedUntil.IsZero() {
					ejected++
				}
			}
			if ejected != tc.wantEjected {
				t.Errorf("ejected = %d; want %d", ejected, tc.wantEjected)
			}
			if tc.pool > 1 && p.backends[split.Stable].ctr.ejectionsCapped.Load() == 0 {
				t.Error("no ejection was refused by the cap")
			}
		})
	}
}

// TestEjectionOff: a negative EjectConsecutiveFailures never ejects.
func TestEjectionOff(t *testing.T) {
	p, tr, _ := poolProxy(t, 2, func(c *Config) { c.EjectConsecutiveFailures = -1 })
	tr.set("s1.test", 500)
	for range 100 {
		get(p)
	}
	st, _ := p.Health()
	for _, e := range st.Endpoints {
		if !e.EjectedUntil.IsZero() {
			t.Errorf("%s ejected with ejection off", e.Address)
		}
	}
}

// BenchmarkPickEndpoint: choosing an endpoint costs a few nanoseconds and
// no allocation, for one endpoint and for a pool, with either balancer.
func BenchmarkPickEndpoint(b *testing.B) {
	for _, tc := range []struct {
		name string
		n    int
		lb   LoadBalancer
	}{{"one", 1, LeastRequest}, {"three/least_request", 3, LeastRequest}, {"three/round_robin", 3, RoundRobin}} {
		b.Run(tc.name, func(b *testing.B) {
			p, _, _ := poolProxy(b, tc.n, func(c *Config) { c.LoadBalancer = tc.lb })
			bk := p.backends[split.Stable]
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					ep := bk.pick(p, 0)
					ep.inFlight.Add(1)
					ep.inFlight.Add(-1)
				}
			})
		})
	}
}
