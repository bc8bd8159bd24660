package h1

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// exchanger sends GETs over a pool to one backend, as the fast path does.
type exchanger struct {
	t      testing.TB
	pool   *Pool
	target *Target
}

func newExchanger(t testing.TB, backendURL string, lim *Limiter, cfg PoolConfig) *exchanger {
	u, err := url.Parse(backendURL)
	if err != nil {
		t.Fatal(err)
	}
	target := NewTarget(u)
	cfg.Addr = target.Addr()
	p := NewPool(lim, cfg)
	t.Cleanup(p.Close)
	return &exchanger{t: t, pool: p, target: target}
}

// get exchanges one request and returns the recorded answer.
func (x *exchanger) get(method, path string) (*httptest.ResponseRecorder, error) {
	r := httptest.NewRequest(method, path, nil)
	head, err := x.target.AppendRequest(nil, r)
	if err != nil {
		x.t.Fatal(err)
	}
	w := httptest.NewRecorder()
	return w, x.pool.Exchange(w, r, head, time.Now())
}

// A response longer than IdleTimeout does not flush the idle stack: idle
// time counts from the end of an exchange, so the returned connection does
// not look expired (and popIdle drops everything below an expired one).
func TestLongExchangeKeepsIdlePool(t *testing.T) {
	var conns atomic.Int64
	be := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/slow":
			time.Sleep(400 * time.Millisecond)
		case "/par":
			time.Sleep(50 * time.Millisecond)
		}
		io.WriteString(w, "ok")
	}))
	be.Config.ConnState = func(c net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	be.Start()
	defer be.Close()
	x := newExchanger(t, be.URL, NewLimiter(16, nil), PoolConfig{IdleTimeout: 300 * time.Millisecond})
	get := func(path string) {
		if w, err := x.get(http.MethodGet, path); err != nil || w.Body.String() != "ok" {
			t.Errorf("GET %s: %q, %v", path, w.Body.String(), err)
		}
	}
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() { get("/par") })
	}
	wg.Wait()
	get("/slow") // 400ms > IdleTimeout, yet the connection is fresh when put back
	before := conns.Load()
	get("/fast")
	if conns.Load() != before {
		t.Fatalf("a fast GET right after a slow one dialed anew: the idle stack (all used <100ms ago) was flushed")
	}
}
