package proxy_test

import (
	"bufio"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/canaryd/canaryd/proxy"
)

// TestStreamEnds covers a response stream that breaks after its headers:
// by the backend (an error) or by the client (not an error).
func TestStreamEnds(t *testing.T) {
	t.Run("backend cuts the body short", func(t *testing.T) {
		backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			conn, brw, err := http.NewResponseController(w).Hijack()
			if err != nil {
				return
			}
			brw.WriteString("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort")
			brw.Flush()
			conn.Close()
		}))
		defer backend.Close()
		p, _, reg, front := newRealProxy(t, proxy.Config{
			Stable: mustURL(t, backend.URL), Canary: mustURL(t, "http://127.0.0.1:1"),
		}, 0)
		resp, err := front.Client().Get(front.URL + "/")
		if err == nil {
			_, err = io.ReadAll(resp.Body)
			resp.Body.Close()
		}
		if err == nil {
			t.Error("client read the cut body without error; want an aborted response")
		}
		waitFor(t, "the broken stream to be recorded", func() bool { return p.Snapshot().Stable.Requests == 1 })
		if s := p.Snapshot(); s.Stable.Errors != 1 {
			t.Errorf("stable errors = %d; want 1", s.Stable.Errors)
		}
		if got := metricValue(t, reg, "canary_upstream_errors_total", map[string]string{"backend": "stable", "kind": "reset"}); got != 1 {
			t.Errorf("canary_upstream_errors_total{stable,reset} = %v; want 1", got)
		}
	})
	t.Run("client closes an event stream", func(t *testing.T) {
		backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/event-stream")
			io.WriteString(w, "data: first\n\n")
			w.(http.Flusher).Flush()
			<-r.Context().Done()
		}))
		defer backend.Close()
		p, _, reg, front := newRealProxy(t, proxy.Config{
			Stable: mustURL(t, "http://127.0.0.1:1"), Canary: mustURL(t, backend.URL),
		}, 100)
		resp, err := front.Client().Get(front.URL + "/events")
		if err != nil {
			t.Fatal(err)
		}
		if line, _ := bufio.NewReader(resp.Body).ReadString('\n'); line != "data: first\n" {
			t.Fatalf("first event = %q", line)
		}
		resp.Body.Close()
		waitFor(t, "the stream to be recorded", func() bool { return p.Snapshot().Canary.Requests == 1 })
		s := p.Snapshot()
		if s.Canary.Errors != 0 {
			t.Errorf("canary errors = %d; want 0 (the client ended the stream)", s.Canary.Errors)
		}
		if got := metricValue(t, reg, "canary_requests_total", map[string]string{"backend": "canary", "code": "200"}); got != 1 {
			t.Errorf("canary_requests_total{canary,200} = %v; want 1", got)
		}
		select {
		case <-p.CanaryErrors():
			t.Error("CanaryErrors fired for a stream the client closed")
		default:
		}
	})
}
