package h1

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync/atomic"
	"testing"
)

// TestPoolRetire: a retired pool closes its idle connections, is forgotten
// by its limiter (which no longer steals from it), gives back its slots,
// and still completes an exchange, closing the connection after it.
func TestPoolRetire(t *testing.T) {
	var conns atomic.Int64
	be := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok")
	}))
	be.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	be.Start()
	t.Cleanup(be.Close)
	lim := NewLimiter(4, nil)
	x := newExchanger(t, be.URL, lim, PoolConfig{})
	other := newExchanger(t, be.URL, lim, PoolConfig{})
	for range 3 {
		if w, err := x.get(http.MethodGet, "/"); err != nil || w.Code != 200 {
			t.Fatalf("exchange: %v %d", err, w.Code)
		}
	}
	if lim.open != 1 {
		t.Fatalf("open slots = %d; want 1 (the idle connection)", lim.open)
	}
	x.pool.Retire()
	lim.mu.Lock()
	known := slices.Contains(lim.pools, x.pool)
	open := lim.open
	lim.mu.Unlock()
	if known || open != 0 {
		t.Errorf("after Retire: known to the limiter %v, open slots %d; want false, 0", known, open)
	}
	// Still usable for an exchange in flight, which then closes its
	// connection.
	if w, err := x.get(http.MethodGet, "/"); err != nil || w.Code != 200 {
		t.Fatalf("exchange on a retired pool: %v %d", err, w.Code)
	}
	if lim.open != 0 || len(x.pool.idle) != 0 {
		t.Errorf("after an exchange on a retired pool: open %d, idle %d; want 0, 0", lim.open, len(x.pool.idle))
	}
	if w, err := other.get(http.MethodGet, "/"); err != nil || w.Code != 200 {
		t.Fatalf("the other pool: %v %d", err, w.Code)
	}
	if conns.Load() != 3 {
		t.Errorf("connections = %d; want 3 (one kept alive, one after Retire, one of the other pool)", conns.Load())
	}
}
