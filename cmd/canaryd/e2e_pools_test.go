package main

// End-to-end tests of backend pools (issue 13): load balancing, ejection,
// the ejection cap, and the endpoints in /dashboard/health_summary.

import (
	"encoding/json"
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
)

// endpointBody is one entry of a backend's endpoints in the health summary.
type endpointBody struct {
	URL          string     `json:"url"`
	Address      string     `json:"address"`
	Healthy      bool       `json:"healthy"`
	EjectedUntil *time.Time `json:"ejected_until"`
	InFlight     int64      `json:"in_flight"`
	Requests     uint64     `json:"requests"`
	Errors       uint64     `json:"errors"`
}

// endpoints returns the stable and canary pools from the health summary,
// checking that every entry carries every field.
func (in *instance) endpoints() (stable, canary []endpointBody) {
	in.t.Helper()
	resp, body := in.adminGet("/dashboard/health_summary", testToken)
	var raw struct {
		Stable struct {
			Endpoints []map[string]any `json:"endpoints"`
		} `json:"stable"`
	}
	var h struct {
		Stable struct {
			Endpoints []endpointBody `json:"endpoints"`
		} `json:"stable"`
		Canary struct {
			Endpoints []endpointBody `json:"endpoints"`
		} `json:"canary"`
	}
	if resp.StatusCode != 200 || json.Unmarshal(body, &h) != nil || json.Unmarshal(body, &raw) != nil {
		in.t.Fatalf("/dashboard/health_summary = %d %s", resp.StatusCode, body)
	}
	for _, e := range raw.Stable.Endpoints {
		for _, k := range []string{"url", "address", "healthy", "ejected_until", "in_flight", "requests", "errors"} {
			if _, ok := e[k]; !ok {
				in.t.Fatalf("endpoint %v has no %q", e, k)
			}
		}
	}
	return h.Stable.Endpoints, h.Canary.Endpoints
}

// killable is a backend that can die (its listener closed and every
// connection cut, requests in flight included, as a crash would) and come
// back on the same address.
type killable struct {
	t    *testing.T
	addr string
	hits atomic.Int64
	mu   sync.Mutex
	srv  *httptest.Server
}

func newKillable(t *testing.T) *killable {
	k := &killable{t: t, addr: "127.0.0.1:0"}
	k.start()
	k.addr = k.srv.Listener.Addr().String()
	return k
}

func (k *killable) url() string { return "http://" + k.addr }

func (k *killable) start() {
	var ln net.Listener
	var err error
	for range 50 { // the port of a killed server can take a moment to free
		if ln, err = net.Listen("tcp", k.addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		k.t.Fatalf("listen %s: %v", k.addr, err)
	}
	s := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		k.hits.Add(1)
		io.WriteString(w, "ok")
	}))
	s.Listener.Close()
	s.Listener = ln
	s.Start()
	k.mu.Lock()
	k.srv = s
	k.mu.Unlock()
	k.t.Cleanup(s.Close)
}

func (k *killable) kill() {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.srv.Listener.Close()
	k.srv.CloseClientConnections()
}

// load sends GETs from workers until stopped, counting what clients saw.
type load struct {
	stop     chan struct{}
	once     sync.Once
	wg       sync.WaitGroup
	ok, bad  atomic.Int64
	mu       sync.Mutex
	failures []string
}

func startLoad(in *instance, workers int) *load {
	l := &load{stop: make(chan struct{})}
	for range workers {
		l.wg.Go(func() {
			for {
				select {
				case <-l.stop:
					return
				default:
				}
				resp, err := client.Get(in.traffic + "/work")
				if err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
				if err != nil || resp.StatusCode != 200 {
					l.bad.Add(1)
					l.mu.Lock()
					if err != nil {
						l.failures = append(l.failures, err.Error())
					} else {
						l.failures = append(l.failures, resp.Status)
					}
					l.mu.Unlock()
					continue
				}
				l.ok.Add(1)
			}
		})
	}
	return l
}

// finish stops the load and waits for the workers; once, however often it
// is called.
func (l *load) finish() {
	l.once.Do(func() { close(l.stop) })
	l.wg.Wait()
}

// TestE2EPoolEvenShare: a stable pool of three endpoints gets an even share
// (each within ±10% of a third) under round_robin and under least_request.
func TestE2EPoolEvenShare(t *testing.T) {
	for _, lb := range []string{"round_robin", "least_request"} {
		t.Run(lb, func(t *testing.T) {
			var eps [3]*backend
			var urls []string
			for i := range eps {
				eps[i] = newBackend(t, fmt.Sprint("stable-", i), nil)
				urls = append(urls, eps[i].URL)
			}
			canary := newBackend(t, "canary", nil)
			in := start(t, envFor(t, strings.Join(urls, ","), canary.URL, "CANARY_WEIGHT=0", "CANARY_LB="+lb))
			const n = 3000
			if codes := in.send(n); codes[200] != n {
				t.Fatalf("answers = %v; want %d × 200", codes, n)
			}
			stable, _ := in.endpoints()
			for i, ep := range eps {
				share := float64(ep.hits.Load()) / n
				t.Logf("%s endpoint %d: %d requests (%.1f%%)", lb, i, ep.hits.Load(), 100*share)
				if share < 0.9/3 || share > 1.1/3 {
					t.Errorf("endpoint %d got %.1f%% of the requests; want 33.3%% ± 10%% (30.0–36.7%%)", i, 100*share)
				}
				if stable[i].Requests != uint64(ep.hits.Load()) || stable[i].Address != strings.TrimPrefix(ep.URL, "http://") {
					t.Errorf("health_summary endpoint %d = %+v; want %d requests at %s", i, stable[i], ep.hits.Load(), ep.URL)
				}
			}
			if v, _ := in.metricValue("canary_endpoint_requests_total", "backend", "stable", "endpoint", strings.TrimPrefix(eps[0].URL, "http://")); v != float64(eps[0].hits.Load()) {
				t.Errorf("canary_endpoint_requests_total of endpoint 0 = %v; want %d", v, eps[0].hits.Load())
			}
		})
	}
}

// TestE2EPoolEndpointKilledUnderLoad: one endpoint of a stable pool of
// three dies under load: no client sees an error (each request to it goes
// once to another endpoint), it is ejected, and once it is back it is
// readmitted and serves again.
func TestE2EPoolEndpointKilledUnderLoad(t *testing.T) {
	var eps [3]*killable
	var urls []string
	for i := range eps {
		eps[i] = newKillable(t)
		urls = append(urls, eps[i].url())
	}
	canary := newBackend(t, "canary", nil)
	in := start(t, envFor(t, strings.Join(urls, ","), canary.URL, "CANARY_WEIGHT=0", "CANARY_EJECT_TIME=2s"))
	l := startLoad(in, 8)
	defer l.finish()
	victim := eps[2]
	waitUntil(t, "traffic on every endpoint", func() bool {
		return eps[0].hits.Load() > 100 && eps[1].hits.Load() > 100 && victim.hits.Load() > 100
	})
	victim.kill()
	killedAt := time.Now()
	waitUntil(t, "the dead endpoint to be ejected", func() bool {
		stable, _ := in.endpoints()
		return stable[2].EjectedUntil != nil
	})
	t.Logf("ejected %v after the kill", time.Since(killedAt).Round(time.Millisecond))
	if v, _ := in.metricValue("canary_endpoint_ejected", "backend", "stable", "endpoint", victim.addr); v != 1 {
		t.Errorf("canary_endpoint_ejected of the dead endpoint = %v; want 1", v)
	}
	if v, _ := in.metricValue("canary_endpoints", "backend", "stable", "state", "ejected"); v != 1 {
		t.Errorf(`canary_endpoints{stable,ejected} = %v; want 1`, v)
	}
	// It comes back; after its ejection time it is readmitted and serves.
	victim.hits.Store(0)
	victim.start()
	waitUntil(t, "the endpoint to serve again", func() bool { return victim.hits.Load() > 50 })
	stable, _ := in.endpoints()
	if stable[2].EjectedUntil != nil {
		t.Errorf("readmitted endpoint still shows ejected_until %v", stable[2].EjectedUntil)
	}
	before := l.ok.Load()
	waitUntil(t, "more traffic after the readmission", func() bool { return l.ok.Load() > before+500 })
	l.finish()
	t.Logf("%d requests answered 200, %d not", l.ok.Load(), l.bad.Load())
	if l.bad.Load() != 0 {
		t.Errorf("%d client-visible failures while an endpoint died: %v", l.bad.Load(), l.failures[:min(len(l.failures), 5)])
	}
	if v, _ := in.metricValue("canary_retries_total", "backend", "stable"); v == 0 {
		t.Error("canary_retries_total{stable} = 0; want the requests that went to another endpoint")
	}
	if v, _ := in.metricValue("canary_endpoint_ejections_total", "backend", "stable", "endpoint", victim.addr); v < 1 {
		t.Errorf("canary_endpoint_ejections_total of the dead endpoint = %v; want at least 1", v)
	}
}

// TestE2EPoolEjectionCap: with three of four endpoints dead, two are
// ejected (half the pool) and no more, ever; the live one and the dead one
// left in the pool share the traffic, the retries making up for it.
func TestE2EPoolEjectionCap(t *testing.T) {
	live := newBackend(t, "live", nil)
	var urls []string
	for range 3 {
		dead := newBackend(t, "dead", nil)
		dead.Close()
		urls = append(urls, dead.URL)
	}
	urls = append(urls, live.URL)
	canary := newBackend(t, "canary", nil)
	in := start(t, envFor(t, strings.Join(urls, ","), canary.URL, "CANARY_WEIGHT=0", "CANARY_EJECT_TIME=1m"))
	maxEjected := 0
	for range 10 {
		in.send(50)
		stable, _ := in.endpoints()
		ejected := 0
		for _, e := range stable {
			if e.EjectedUntil != nil {
				ejected++
			}
		}
		maxEjected = max(maxEjected, ejected)
	}
	if maxEjected != 2 {
		t.Errorf("at most %d endpoints of 4 were ejected at once; want 2 (half the pool)", maxEjected)
	}
	if v, _ := in.metricValue("canary_endpoints", "backend", "stable", "state", "ejected"); v != 2 {
		t.Errorf(`canary_endpoints{stable,ejected} = %v; want 2`, v)
	}
	// With two ejected, the dead one left fails over to the live one.
	if codes := in.send(200); codes[200] != 200 {
		t.Errorf("answers with half the pool ejected = %v; want 200 × 200", codes)
	}
}

// TestE2EAttemptsAndAnswers (issue 16 item 6): with the canary down, each
// request sent to it is a canary failure and a stable 200, and /metrics
// shows both: the attempts (canary_requests_total, canary_errors_total,
// canary_failovers_total, what the judge rolled back on) and the answers
// clients got (canary_responses_total: every one a 200 from stable).
func TestE2EAttemptsAndAnswers(t *testing.T) {
	stable := newBackend(t, "stable", nil)
	dead := newBackend(t, "canary", nil)
	dead.Close()
	in := start(t, testEnv(t, stable, dead, "CANARY_WEIGHT=50"))
	const n = 400
	if codes := in.send(n); codes[200] != n {
		t.Fatalf("answers = %v; want %d × 200", codes, n)
	}
	value := func(name string, labels ...string) float64 {
		v, _ := in.metricValue(name, labels...)
		return v
	}
	canaryAttempts := value("canary_requests_total", "backend", "canary", "code", "502")
	failovers := value("canary_failovers_total")
	if canaryAttempts < 1 || failovers != canaryAttempts || value("canary_errors_total", "backend", "canary") != canaryAttempts ||
		value("canary_upstream_errors_total", "backend", "canary", "kind", "connect") != canaryAttempts {
		t.Errorf("canary attempts %v, failovers %v, errors %v, connect failures %v; want all equal and > 0", canaryAttempts, failovers,
			value("canary_errors_total", "backend", "canary"), value("canary_upstream_errors_total", "backend", "canary", "kind", "connect"))
	}
	if got := value("canary_responses_total", "backend", "stable", "code", "200"); got != n {
		t.Errorf("canary_responses_total{stable,200} = %v; want %d (every client answer)", got, n)
	}
	if got := value("canary_requests_total", "backend", "stable", "code", "200"); got != n {
		t.Errorf("canary_requests_total{stable,200} = %v; want %d", got, n)
	}
	if _, ok := in.metricValue("canary_responses_total", "backend", "canary"); ok {
		t.Error("canary_responses_total has a canary series; no client got a canary answer")
	}
	// The judge counted the same failed attempts (its figures are those of
	// its last evaluation, at most a tick old).
	waitUntil(t, "/canary_check to show the failed attempts and the rollback", func() bool {
		c := in.check()
		return c.Recommendation == "rollback_error_rate" && float64(c.Canary.Errors) == canaryAttempts && c.Canary.Requests == c.Canary.Errors
	})
}
