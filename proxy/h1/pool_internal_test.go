package h1

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
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

// rawBackend serves each loopback connection with serve and counts them.
func rawBackend(t *testing.T, serve func(net.Conn)) (string, *atomic.Int64) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var (
		conns atomic.Int64
		wg    sync.WaitGroup
		mu    sync.Mutex
		open  []net.Conn
	)
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range open {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns.Add(1)
			mu.Lock()
			open = append(open, c)
			mu.Unlock()
			wg.Go(func() { defer c.Close(); serve(c) })
		}
	})
	return "http://" + ln.Addr().String(), &conns
}

// answer reads requests from c and writes answer(r) for each.
func answer(c net.Conn, answer func(r *http.Request) bool) {
	br := bufio.NewReader(c)
	for {
		r, err := http.ReadRequest(br)
		if err != nil || !answer(r) {
			return
		}
	}
}

const poison = "HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nid=POISON"

// Bytes nobody asked for (a body on a HEAD answer, an answer after a
// complete one), arriving in a later segment, are found when the
// connection is next taken, however soon: it is closed, and the next
// request gets its own answer on a new connection.
func TestUnreadBytesCheckedAtEveryReuse(t *testing.T) {
	url, conns := rawBackend(t, func(c net.Conn) {
		answer(c, func(r *http.Request) bool {
			switch r.URL.Path {
			case "/head":
				io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n")
			case "/late":
				io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nlate")
			default:
				io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: "+strconv.Itoa(len(r.URL.Path))+"\r\n\r\n"+r.URL.Path)
				return true
			}
			time.Sleep(5 * time.Millisecond) // a later segment
			io.WriteString(c, poison)
			return true
		})
	})
	x := newExchanger(t, url, NewLimiter(4, nil), PoolConfig{})
	for i, first := range []struct{ method, path string }{{http.MethodHead, "/head"}, {http.MethodGet, "/late"}} {
		if _, err := x.get(first.method, first.path); err != nil {
			t.Fatal(err)
		}
		time.Sleep(30 * time.Millisecond) // the unasked bytes are in; far less than any idle delay
		w, err := x.get(http.MethodGet, "/mine")
		if err != nil || w.Body.String() != "/mine" {
			t.Errorf("after %s %s: answer %q, %v; want /mine", first.method, first.path, w.Body.String(), err)
		}
		if got := conns.Load(); got != int64(i+2) {
			t.Errorf("after %s %s: %d connections; want %d (the spoilt one closed)", first.method, first.path, got, i+2)
		}
	}
}

// An answer's head is read whole and bounded: one larger than the
// connection's buffer is fine (and the connection is reused after it), one
// over the limit is ErrResponseHeaderTooLarge; one dripped past the header
// timeout is a timeout; a status outside 100-599 is refused.
func TestAnswerHeads(t *testing.T) {
	url, conns := rawBackend(t, func(c net.Conn) {
		answer(c, func(r *http.Request) bool {
			switch r.URL.Path {
			case "/large":
				io.WriteString(c, "HTTP/1.1 200 OK\r\nX-Large: "+strings.Repeat("l", 10<<10)+"\r\nContent-Length: 2\r\n\r\nok")
			case "/huge":
				io.WriteString(c, "HTTP/1.1 200 OK\r\nX-Huge: "+strings.Repeat("h", 100<<10)+"\r\nContent-Length: 2\r\n\r\nok")
			case "/drip":
				for _, b := range []byte("HTTP/1.1 200 OK\r\nX-Drip: dddddddddd\r\n\r\n") {
					c.Write([]byte{b})
					time.Sleep(20 * time.Millisecond)
				}
			case "/600":
				io.WriteString(c, "HTTP/1.1 600 Odd\r\nContent-Length: 2\r\n\r\nok")
			default:
				io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
			}
			return true
		})
	})
	x := newExchanger(t, url, NewLimiter(4, nil), PoolConfig{ResponseHeaderTimeout: 300 * time.Millisecond})
	for _, path := range []string{"/large", "/small"} {
		if w, err := x.get(http.MethodGet, path); err != nil || w.Body.String() != "ok" {
			t.Fatalf("GET %s: %q, %v", path, w.Body.String(), err)
		}
	}
	if n := conns.Load(); n != 1 {
		t.Errorf("connections after a 10 KiB head and a small one: %d; want 1", n)
	}
	if _, err := x.get(http.MethodGet, "/huge"); !errors.Is(err, ErrResponseHeaderTooLarge) {
		t.Errorf("a 100 KiB head: %v; want ErrResponseHeaderTooLarge", err)
	}
	if _, err := x.get(http.MethodGet, "/drip"); !isTimeout(err) {
		t.Errorf("a dripped head: %v; want a timeout", err)
	}
	if _, err := x.get(http.MethodGet, "/600"); !errors.Is(err, errStatus) {
		t.Errorf("status 600: %v; want errStatus", err)
	}
}
