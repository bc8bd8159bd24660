package proxy_test

import (
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/canaryd/canaryd/proxy"
)

// serveLoop serves p with the server loop on a loopback listener and
// returns its URL.
func serveLoop(tb testing.TB, p *proxy.Proxy) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	s := proxy.NewServer(proxy.ServerConfig{Fallback: &http.Server{Handler: p}})
	done := make(chan error, 1)
	go func() { done <- s.Serve(ln) }()
	tb.Cleanup(func() {
		s.Close()
		if err := <-done; !errors.Is(err, http.ErrServerClosed) {
			tb.Errorf("Serve = %v", err)
		}
	})
	return "http://" + ln.Addr().String()
}

// The server loop serves the Proxy as net/http does: the answer, the
// split and the measurement are the same.
func TestServerServesTheProxy(t *testing.T) {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, r.Host+" "+r.URL.Path+" "+r.Header.Get("X-Forwarded-For"))
	}))
	defer backend.Close()
	p, _, _, _ := newRealProxy(t, proxy.Config{Stable: mustURL(t, backend.URL), Canary: mustURL(t, backend.URL+"/canary")}, 50)
	url := serveLoop(t, p)
	for i := range 20 {
		resp, err := http.Get(url + "/x")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.HasSuffix(string(body), " 127.0.0.1") || !strings.Contains(string(body), "/x") {
			t.Fatalf("request %d: %d %q", i, resp.StatusCode, body)
		}
	}
	s := p.Snapshot()
	if s.Stable.Requests+s.Canary.Requests != 20 || s.Canary.Requests == 0 || s.Stable.Requests == 0 {
		t.Errorf("measured %d stable + %d canary; want 20 split between both", s.Stable.Requests, s.Canary.Requests)
	}
}

// BenchmarkProxyServerLoop is BenchmarkProxy with the front served by the
// server loop (proxy.Server) instead of net/http's server.
func BenchmarkProxyServerLoop(b *testing.B) {
	body := strings.Repeat("x", 100)
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, body)
	}))
	defer backend.Close()
	p, _, _, _ := newRealProxy(b, proxy.Config{Stable: mustURL(b, backend.URL), Canary: mustURL(b, backend.URL+"/canary")}, 10)
	url := serveLoop(b, p) + "/bench"
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	b.ReportAllocs()
	for b.Loop() {
		resp, err := client.Get(url)
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
}
