package proxy_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/canaryd/canaryd/proxy"
	"github.com/canaryd/canaryd/split"
)

// copySeen is what a canary backend received.
type copySeen struct {
	method, path, mirror, xff, body string
}

type recorder struct {
	mu   sync.Mutex
	reqs []copySeen
}

func (rc *recorder) add(r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	rc.mu.Lock()
	rc.reqs = append(rc.reqs, copySeen{r.Method, r.URL.RequestURI(), r.Header.Get("X-Canaryd-Mirror"), r.Header.Get("X-Forwarded-For"), string(b)})
	rc.mu.Unlock()
}

func (rc *recorder) all() []copySeen {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]copySeen(nil), rc.reqs...)
}

// newMirrorProxy runs a proxy (with Run) in front of stable and canary,
// with sc for its splitter, at weight 0.
func newMirrorProxy(t *testing.T, stable, canary string, sc split.Config, mod func(*proxy.Config)) (*proxy.Proxy, *split.Splitter, *prometheus.Registry, *httptest.Server) {
	t.Helper()
	cfg := proxy.Config{Stable: mustURL(t, stable), Canary: mustURL(t, canary), MirrorPercent: split.MaxWeight}
	if mod != nil {
		mod(&cfg)
	}
	sp, err := split.New(sc, 0)
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	p, err := proxy.New(cfg, sp, zerolog.Nop(), reg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { p.Run(ctx); close(done) }()
	front := httptest.NewServer(p)
	t.Cleanup(func() { front.Close(); cancel(); <-done })
	return p, sp, reg, front
}

func sendTo(t *testing.T, c *http.Client, method, url, body string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	if body == "" {
		req.Body = nil
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestMirrorCopiesStableRequests(t *testing.T) {
	stable := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "stable") }))
	defer stable.Close()
	var got recorder
	canary := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got.add(r)
		w.WriteHeader(http.StatusInternalServerError)
	}))
	defer canary.Close()
	for _, fastOff := range []bool{false, true} {
		got = recorder{}
		p, _, reg, front := newMirrorProxy(t, stable.URL, canary.URL, split.Config{}, func(c *proxy.Config) {
			c.MirrorMethods = []string{"GET", "POST"}
			c.DisableFastPath = fastOff
		})
		c := front.Client()
		for _, rq := range []struct{ method, path, body string }{
			{"GET", "/a?q=1", ""},
			{"POST", "/small", "hello"},
			{"POST", "/large", strings.Repeat("x", proxy.MirrorMaxBody+1)},
			{"PUT", "/put", "not a mirrored method"},
		} {
			if code, body := sendTo(t, c, rq.method, front.URL+rq.path, rq.body); code != 200 || body != "stable" {
				t.Fatalf("%s %s = %d %q; want stable's 200", rq.method, rq.path, code, body)
			}
		}
		waitFor(t, "two copies recorded", func() bool { return p.Snapshot().Mirror.Requests == 2 })
		reqs := got.all()
		if len(reqs) != 2 {
			t.Fatalf("fast path off=%v: the canary got %+v; want the GET and the small POST", fastOff, reqs)
		}
		for _, r := range reqs {
			if r.mirror != "1" || r.xff != "127.0.0.1" {
				t.Errorf("copy %+v: want X-Canaryd-Mirror 1 and X-Forwarded-For 127.0.0.1", r)
			}
		}
		// Copies are sent asynchronously and may reach the canary in
		// either order.
		sort.Slice(reqs, func(i, j int) bool { return reqs[i].method < reqs[j].method })
		if reqs[0].method != "GET" || reqs[0].path != "/a?q=1" || reqs[1].method != "POST" || reqs[1].path != "/small" || reqs[1].body != "hello" {
			t.Errorf("copies %+v; want GET /a?q=1 and POST /small with its body", reqs)
		}
		s := p.Snapshot()
		// The copies are the canary's evidence (window and totals), and
		// shown alone as Mirror; the clients' canary figures hold none.
		if s.Canary.Requests != 2 || s.Canary.Errors != 2 || s.Canary.Totals.Errors != 2 || s.Mirror.Errors != 2 || s.Mirror.Skipped != 1 {
			t.Errorf("snapshot canary %+v totals %+v, mirror %d/%d skipped %d; want 2 errors everywhere, 1 skipped",
				s.Canary.Requests, s.Canary.Totals, s.Mirror.Requests, s.Mirror.Errors, s.Mirror.Skipped)
		}
		if v := metricValue(t, reg, "canary_mirror_requests_total", map[string]string{"code": "500"}); v != 2 {
			t.Errorf("canary_mirror_requests_total{code=500} = %v; want 2", v)
		}
		if txt := gatherText(t, reg, "canary_requests_total"); strings.Contains(txt, `backend="canary"`) {
			t.Errorf("copies counted as client requests:\n%s", txt)
		}
		if v := metricValue(t, reg, "canary_mirror_skipped_total", nil); v != 1 {
			t.Errorf("canary_mirror_skipped_total = %v; want 1", v)
		}
		front.Close()
	}
}

func TestMirrorPercentIsExact(t *testing.T) {
	stable := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer stable.Close()
	var got recorder
	canary := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { got.add(r) }))
	defer canary.Close()
	p, _, _, front := newMirrorProxy(t, stable.URL, canary.URL, split.Config{}, func(c *proxy.Config) { c.MirrorPercent = 2500 })
	for range 100 {
		sendTo(t, front.Client(), "GET", front.URL+"/", "")
	}
	waitFor(t, "25 copies", func() bool { return p.Snapshot().Mirror.Requests >= 25 })
	time.Sleep(50 * time.Millisecond)
	if n := len(got.all()); n != 25 {
		t.Errorf("25%% of 100 requests: %d copies; want 25", n)
	}
}

// A canary that hangs holds MirrorConcurrency copies; the rest are dropped
// and counted, and the clients are answered at once all the same.
func TestMirrorDropsWhenFull(t *testing.T) {
	stable := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer stable.Close()
	release := make(chan struct{})
	canary := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-release }))
	defer canary.Close()
	defer close(release)
	p, _, reg, front := newMirrorProxy(t, stable.URL, canary.URL, split.Config{}, func(c *proxy.Config) { c.MirrorConcurrency = 4 })
	for i := range 200 {
		if code, _ := sendTo(t, front.Client(), "GET", front.URL+"/", ""); code != 200 {
			t.Fatalf("request %d = %d", i, code)
		}
	}
	s := p.Snapshot()
	if s.Mirror.InFlight != 4 || s.Mirror.Dropped != 196 {
		t.Errorf("in flight %d, dropped %d; want 4 and 196", s.Mirror.InFlight, s.Mirror.Dropped)
	}
	if v := metricValue(t, reg, "canary_mirror_dropped_total", nil); v != 196 {
		t.Errorf("canary_mirror_dropped_total = %v; want 196", v)
	}
}

func TestMirrorNotWhileRolledBackNorToCanaryRequests(t *testing.T) {
	stable := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer stable.Close()
	var got recorder
	canary := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { got.add(r) }))
	defer canary.Close()
	p, sp, _, front := newMirrorProxy(t, stable.URL, canary.URL, split.Config{OverrideHeader: "X-Canary"}, nil)
	sp.SetRolledBack(true)
	for range 20 {
		sendTo(t, front.Client(), "GET", front.URL+"/", "")
	}
	sp.SetRolledBack(false)
	req, _ := http.NewRequest("GET", front.URL+"/", nil)
	req.Header.Set("X-Canary", "always")
	resp, err := front.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	time.Sleep(100 * time.Millisecond)
	if n := len(got.all()); n != 1 || got.all()[0].mirror != "" {
		t.Errorf("the canary got %+v; want only the one request sent to it, no copy", got.all())
	}
	if s := p.Snapshot(); s.Mirror.Requests != 0 || s.Mirror.Dropped != 0 {
		t.Errorf("mirror %+v; want nothing", s.Mirror)
	}
}

// A failed copy wakes the guard, as a failed canary request does.
func TestMirrorErrorWakesTheGuard(t *testing.T) {
	stable := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer stable.Close()
	canary := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(503) }))
	defer canary.Close()
	p, _, _, front := newMirrorProxy(t, stable.URL, canary.URL, split.Config{}, nil)
	p.Totals() // arm
	sendTo(t, front.Client(), "GET", front.URL+"/", "")
	select {
	case <-p.CanaryErrors():
	case <-time.After(10 * time.Second):
		t.Fatal("a failed copy did not wake the guard")
	}
	if _, c := p.Totals(); c.Errors != 1 {
		t.Errorf("canary totals %+v; want the copy's error", c)
	}
}

func TestParseMirrorMethods(t *testing.T) {
	m, err := proxy.ParseMirrorMethods("get, POST,PROPFIND,POST")
	if err != nil || strings.Join(m, ",") != "GET,POST,PROPFIND" {
		t.Errorf("ParseMirrorMethods = %v, %v; want GET,POST,PROPFIND", m, err)
	}
	for _, in := range []string{"GET,", "GE T", "GET;POST", "CONNECT", "trace", "G\u00e9T"} {
		if _, err := proxy.ParseMirrorMethods(in); err == nil {
			t.Errorf("ParseMirrorMethods(%q) = nil error; want one", in)
		}
	}
}

// The sticky cookie reaches the client on both paths, beside the backend's
// own cookies.
func TestStickySetCookieOnTheAnswer(t *testing.T) {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.SetCookie(w, &http.Cookie{Name: "app", Value: "1"})
		if r.Method == http.MethodPost {
			io.Copy(io.Discard, r.Body)
		}
		io.WriteString(w, "ok")
	}))
	defer backend.Close()
	for _, fastOff := range []bool{false, true} {
		_, _, _, front := newMirrorProxy(t, backend.URL, backend.URL+"/canary", split.Config{StickyKey: "cookie:cid", SetCookie: true},
			func(c *proxy.Config) { c.MirrorPercent = 0; c.DisableFastPath = fastOff })
		for _, method := range []string{"GET", "POST"} {
			req, _ := http.NewRequest(method, front.URL+"/", strings.NewReader("b"))
			resp, err := front.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			names := map[string]bool{}
			for _, c := range resp.Cookies() {
				names[c.Name] = true
			}
			if !names["cid"] || !names["app"] {
				t.Errorf("fast path off=%v, %s: cookies %v; want cid and app", fastOff, method, resp.Header["Set-Cookie"])
			}
			req, _ = http.NewRequest(method, front.URL+"/", nil)
			req.AddCookie(&http.Cookie{Name: "cid", Value: "user-1"})
			resp, err = front.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			for _, c := range resp.Cookies() {
				if c.Name == "cid" {
					t.Errorf("a client with its cookie got a new one: %v", resp.Header["Set-Cookie"])
				}
			}
		}
		front.Close()
	}
}

// A protocol upgrade's 101, the first answer of a new user, carries the
// sticky cookie too (ReverseProxy writes it from the header map).
func TestStickySetCookieOnAnUpgrade(t *testing.T) {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
		brw.Flush()
	}))
	defer backend.Close()
	_, _, _, front := newMirrorProxy(t, backend.URL, backend.URL+"/canary", split.Config{StickyKey: "cookie:cid", SetCookie: true},
		func(c *proxy.Config) { c.MirrorPercent = 0 })
	conn, err := net.Dial("tcp", strings.TrimPrefix(front.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(conn, "GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols || len(resp.Cookies()) != 1 || resp.Cookies()[0].Name != "cid" {
		t.Errorf("upgrade: %d, Set-Cookie %q; want 101 with a cid cookie", resp.StatusCode, resp.Header["Set-Cookie"])
	}
}
