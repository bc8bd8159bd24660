package h1

import (
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// pipeDial is a dialer of in-memory connections that counts them.
func pipeDial(opened *atomic.Int64) func(context.Context, string, string) (net.Conn, error) {
	return func(context.Context, string, string) (net.Conn, error) {
		opened.Add(1)
		c, s := net.Pipe()
		go func() { io.Copy(io.Discard, s); s.Close() }()
		return c, nil
	}
}

func (l *Limiter) state() (open, waiting int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.open, len(l.queue)
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// Dials beyond the cap wait, in order; a canceled wait leaves the queue; a
// closed connection's slot goes to the first waiter.
func TestLimiterQueuesInOrder(t *testing.T) {
	var opened atomic.Int64
	l := NewLimiter(2, nil)
	dial := l.DialContext(pipeDial(&opened))
	ctx := context.Background()
	a, _ := dial(ctx, "tcp", "x")
	b, _ := dial(ctx, "tcp", "x")
	got := make(chan string, 3)
	canceled, cancel := context.WithCancel(ctx)
	for _, name := range []string{"first", "canceled", "second"} {
		c := ctx
		if name == "canceled" {
			c = canceled
		}
		_, waitingBefore := l.state()
		go func() {
			conn, err := dial(c, "tcp", "x")
			if err != nil {
				got <- name + ": " + err.Error()
				return
			}
			got <- name
			t.Cleanup(func() { conn.Close() })
		}()
		waitUntil(t, name+" to queue", func() bool { _, w := l.state(); return w == waitingBefore+1 })
	}
	cancel()
	if g := <-got; g != "canceled: context canceled" {
		t.Fatalf("the canceled wait returned %q", g)
	}
	a.Close()
	if g := <-got; g != "first" {
		t.Errorf("first slot freed went to %q; want first", g)
	}
	b.Close()
	b.Close() // a second Close frees nothing more
	if g := <-got; g != "second" {
		t.Errorf("second slot freed went to %q; want second", g)
	}
	if open, waiting := l.state(); open != 2 || waiting != 0 {
		t.Errorf("open %d, waiting %d; want 2, 0", open, waiting)
	}
}

// countingBackend is a loopback backend that counts its connections.
func countingBackend(t *testing.T, h http.HandlerFunc) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	var conns atomic.Int64
	s := httptest.NewUnstartedServer(h)
	s.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			conns.Add(1)
		}
	}
	s.Start()
	t.Cleanup(s.Close)
	return s, &conns
}

// The two paths share the cap without starving each other: a dial waiting
// for the only slot closes a pool's idle connection; a pool connection
// finishing while a dial waits is closed and its slot handed over; a pool
// connection finishing while a request of the same pool waits is handed
// over whole.
func TestLimiterSharedBetweenPathsAndPools(t *testing.T) {
	release := make(chan struct{})
	be, conns := countingBackend(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			<-release
		}
		io.WriteString(w, "ok")
	})
	var opened atomic.Int64
	closed := atomic.Int64{}
	l := NewLimiter(1, func() { closed.Add(1) })
	x := newExchanger(t, be.URL, l, PoolConfig{})
	dial := l.DialContext(pipeDial(&opened))

	if _, err := x.get(http.MethodGet, "/warm"); err != nil { // one idle connection, holding the slot
		t.Fatal(err)
	}
	c, err := dial(context.Background(), "tcp", "x") // takes it over
	if err != nil {
		t.Fatal(err)
	}
	if n := len(x.pool.idle); n != 0 {
		t.Errorf("idle connections after a dial took the slot: %d; want 0", n)
	}

	done := make(chan error, 2)
	go func() { _, err := x.get(http.MethodGet, "/slow"); done <- err }()
	waitUntil(t, "the exchange to queue", func() bool { _, w := l.state(); return w == 1 })
	c.Close() // its slot goes to the exchange
	waitUntil(t, "the exchange to reach the backend", func() bool { return conns.Load() == 2 })

	go func() { _, err := x.get(http.MethodGet, "/fast"); done <- err }()
	waitUntil(t, "the second exchange to queue", func() bool { _, w := l.state(); return w == 1 })
	close(release)
	for range 2 {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	if n := conns.Load(); n != 2 {
		t.Errorf("backend connections = %d; want 2 (the second exchange got the first's connection)", n)
	}
	dialed := make(chan net.Conn)
	go func() { c, _ := dial(context.Background(), "tcp", "x"); dialed <- c }()
	select {
	case c := <-dialed:
		c.Close()
	case <-time.After(5 * time.Second):
		t.Fatal("a dial behind an idle pool connection still waits")
	}
	if closed.Load() == 0 {
		t.Error("waits never asked for the standard path's idle connections")
	}
}

// Reclaim closes the standard path's idle connections only while someone
// waits.
func TestLimiterReclaim(t *testing.T) {
	var closed, opened atomic.Int64
	l := NewLimiter(1, func() { closed.Add(1) })
	l.Reclaim()
	if closed.Load() != 0 {
		t.Fatal("Reclaim with nobody waiting closed idle connections")
	}
	dial := l.DialContext(pipeDial(&opened))
	c, _ := dial(context.Background(), "tcp", "x")
	go func() {
		if c2, err := dial(context.Background(), "tcp", "x"); err == nil {
			c2.Close()
		}
	}()
	waitUntil(t, "the dial to queue", func() bool { _, w := l.state(); return w == 1 })
	before := closed.Load()
	l.Reclaim()
	if closed.Load() != before+1 {
		t.Error("Reclaim with a waiter did not close idle connections")
	}
	c.Close()
}

// Under concurrent dials, cancellations and closes, the cap holds and every
// slot comes back.
func TestLimiterStress(t *testing.T) {
	var opened atomic.Int64
	const max = 3
	l := NewLimiter(max, nil)
	dial := l.DialContext(pipeDial(&opened))
	var inUse, peak atomic.Int64
	var wg sync.WaitGroup
	for i := range 40 {
		wg.Go(func() {
			rnd := rand.New(rand.NewPCG(uint64(i), 1))
			for range 50 {
				ctx, cancel := context.WithTimeout(context.Background(), time.Duration(rnd.IntN(3))*time.Millisecond)
				c, err := dial(ctx, "tcp", "x")
				cancel()
				if err != nil {
					if !errors.Is(err, context.DeadlineExceeded) {
						t.Error(err)
					}
					continue
				}
				n := inUse.Add(1)
				for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
				}
				time.Sleep(time.Duration(rnd.IntN(200)) * time.Microsecond)
				inUse.Add(-1)
				c.Close()
			}
		})
	}
	wg.Wait()
	if p := peak.Load(); p > max {
		t.Errorf("%d connections open at once; cap %d", p, max)
	}
	if open, waiting := l.state(); open != 0 || waiting != 0 {
		t.Errorf("after all closed: open %d, waiting %d; want 0, 0", open, waiting)
	}
}
