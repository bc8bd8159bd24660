package proxy_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/canaryd/canaryd/proxy"
	"github.com/canaryd/canaryd/split"
)

func TestConfigValidate(t *testing.T) {
	good := func() proxy.Config {
		return proxy.Config{Stable: mustURL(t, "http://stable:8080"), Canary: mustURL(t, "https://canary:8443/v2")}
	}
	tests := []struct {
		name    string
		mod     func(*proxy.Config)
		wantErr string // "" = valid
	}{
		{"valid", func(*proxy.Config) {}, ""},
		{"valid with health", func(c *proxy.Config) { c.HealthPath = "/healthz" }, ""},
		{"no stable", func(c *proxy.Config) { c.Stable = nil }, "stable backend URL is required"},
		{"no canary", func(c *proxy.Config) { c.Canary = nil }, "canary backend URL is required"},
		{"ftp scheme", func(c *proxy.Config) { c.Canary = mustURL(t, "ftp://canary") }, "must start with http:// or https://"},
		{"no host", func(c *proxy.Config) { c.Stable = mustURL(t, "http:///path") }, "has no host"},
		{"same backends", func(c *proxy.Config) { c.Canary = c.Stable }, "must differ"},
		{"negative window", func(c *proxy.Config) { c.Window = -time.Second }, "window"},
		{"negative timeout", func(c *proxy.Config) { c.ResponseHeaderTimeout = -1 }, "response header timeout"},
		{"relative health path", func(c *proxy.Config) { c.HealthPath = "healthz" }, "must start with /"},
		{"password not echoed", func(c *proxy.Config) { c.Stable = mustURL(t, "gopher://u:hunter2@h") }, "xxxxx"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := good()
			tt.mod(&c)
			err := c.Validate()
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Validate() = %v; want nil", err)
				}
				return
			}
			if err == nil || !errors.Is(err, proxy.ErrBadConfig) || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Validate() = %v; want an ErrBadConfig mentioning %q", err, tt.wantErr)
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Fatalf("Validate() = %v; leaks the URL's password", err)
			}
			if _, err := proxy.New(c, &split.Splitter{}, zerolog.Nop(), nil); err == nil {
				t.Fatal("New accepted an invalid config")
			}
		})
	}
}

func TestAccessLog(t *testing.T) {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "hello")
	}))
	defer backend.Close()
	var buf bytes.Buffer
	sp, _ := split.New(split.Config{}, 0)
	p, err := proxy.New(proxy.Config{
		Stable: mustURL(t, backend.URL), Canary: mustURL(t, "http://127.0.0.1:1"), AccessLog: true,
	}, sp, zerolog.New(&buf), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"req-42", ""} {
		r := httptest.NewRequest(http.MethodPost, "/orders?token=s3cret", strings.NewReader("{}"))
		r.Header.Set("Authorization", "Bearer topsecret-token")
		if id != "" {
			r.Header.Set("X-Request-Id", id)
		}
		p.ServeHTTP(httptest.NewRecorder(), r)
	}
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("got %d log lines; want 2:\n%s", len(lines), buf.String())
	}
	for i, line := range lines {
		if strings.Contains(line, "topsecret") || strings.Contains(line, "s3cret") {
			t.Errorf("log line leaks a secret: %s", line)
		}
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatal(err)
		}
		want := map[string]any{"component": "proxy", "backend": "stable", "method": "POST", "path": "/orders", "status": 200.0, "bytes": 5.0}
		for k, v := range want {
			if rec[k] != v {
				t.Errorf("line %d: %s = %v; want %v", i, k, rec[k], v)
			}
		}
		if _, ok := rec["duration_ms"].(float64); !ok {
			t.Errorf("line %d: duration_ms missing: %s", i, line)
		}
		id, _ := rec["request_id"].(string)
		if i == 0 && id != "req-42" || i == 1 && len(id) < 8 {
			t.Errorf("line %d: request_id = %q; want the inbound one or a generated one", i, id)
		}
	}
}

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
