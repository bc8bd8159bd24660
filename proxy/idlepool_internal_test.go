package proxy

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

	"github.com/rs/zerolog"

	"github.com/canaryd/canaryd/split"
)

// A response longer than idleTimeout does not flush the idle pool: idle
// time counts from the end of an exchange, so the returned connection does
// not look stale (popIdle drops everything below a stale one).
func TestLongResponseKeepsIdlePool(t *testing.T) {
	var conns atomic.Int64
	be := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			time.Sleep(400 * time.Millisecond)
		}
		if r.URL.Path == "/par" {
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
	u, _ := url.Parse(be.URL)
	sp, _ := split.New(split.Config{}, 0)
	p, err := New(Config{Stable: u, Canary: &url.URL{Scheme: "http", Host: "127.0.0.1:1"}}, sp, zerolog.Nop(), nil)
	if err != nil {
		t.Fatal(err)
	}
	p.backends[split.Stable].up.idleTimeout = 300 * time.Millisecond
	front := httptest.NewServer(p)
	defer front.Close()
	getp := func(path string) {
		r, err := http.Get(front.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, r.Body)
		r.Body.Close()
	}
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() { getp("/par") })
	}
	wg.Wait()
	t.Logf("idle after 4 parallel: %d, conns %d", len(p.backends[split.Stable].up.idle), conns.Load())
	getp("/slow") // 400ms > idleTimeout, yet the conn is fresh when put back
	before := conns.Load()
	t.Logf("idle before: %d", len(p.backends[split.Stable].up.idle))
	getp("/fast")
	t.Logf("idle after: %d, new conns for /fast: %d", len(p.backends[split.Stable].up.idle), conns.Load()-before)
	if conns.Load() != before {
		t.Fatalf("a fast GET right after a slow one dialed anew: the idle pool (all used <100ms ago) was flushed")
	}
}
