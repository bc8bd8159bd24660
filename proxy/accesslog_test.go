package proxy_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/canaryd/canaryd/proxy"
	"github.com/canaryd/canaryd/split"
)

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

// TestAccessLogRedactsRotatedSecrets: the secrets given to SetRedact (admin
// tokens reloaded while canaryd runs) replace those of Config.Redact.
func TestAccessLogRedactsRotatedSecrets(t *testing.T) {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer backend.Close()
	var buf bytes.Buffer
	sp, _ := split.New(split.Config{}, 0)
	p, err := proxy.New(proxy.Config{
		Stable: mustURL(t, backend.URL), Canary: mustURL(t, "http://127.0.0.1:1"), AccessLog: true,
		Redact: []string{"old-secret-0123456789"},
	}, sp, zerolog.New(&buf), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	get := func(path string) string {
		buf.Reset()
		p.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, path, nil))
		return buf.String()
	}
	if line := get("/x/old-secret-0123456789"); strings.Contains(line, "old-secret") || !strings.Contains(line, "[REDACTED]") {
		t.Errorf("configured secret: %s", line)
	}
	p.SetRedact([]string{"new-secret-0123456789"})
	if line := get("/x/new-secret-0123456789"); strings.Contains(line, "new-secret") || !strings.Contains(line, "[REDACTED]") {
		t.Errorf("secret set while running: %s", line)
	}
	if line := get("/x/old-secret-0123456789"); !strings.Contains(line, "old-secret") {
		t.Errorf("a secret no longer in force is still redacted: %s", line)
	}
}
