package admin_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/canaryd/canaryd/admin"
	"github.com/canaryd/canaryd/guard"
	"github.com/canaryd/canaryd/guard/integrity"
)

// The guard is the controller cmd wires in; keep the contracts in step.
var _ admin.Controller = (*guard.Guard)(nil)

func decodeStrict(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("trailing data")
	}
	return nil
}

func TestNewValidates(t *testing.T) {
	ctl := newFakeController()
	tests := []struct {
		name    string
		cfg     admin.Config
		ctl     admin.Controller
		gather  prometheus.Gatherer
		wantErr string
	}{
		{"empty token", admin.Config{}, ctl, prometheus.NewRegistry(), "at least one is required"},
		{"short token", admin.Config{Tokens: oneToken("short-token")}, ctl, prometheus.NewRegistry(), "at least 16"},
		{"token with space", admin.Config{Tokens: oneToken("0123456789 abcdefgh")}, ctl, prometheus.NewRegistry(), "visible ASCII"},
		{"nil controller", admin.Config{Tokens: testTokens()}, nil, prometheus.NewRegistry(), "nil controller"},
		{"nil gatherer", admin.Config{Tokens: testTokens()}, ctl, nil, "nil gatherer"},
		{"ok", admin.Config{Tokens: testTokens()}, ctl, prometheus.NewRegistry(), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := admin.New(tt.cfg, tt.ctl, tt.gather, zerolog.Nop(), prometheus.NewRegistry())
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("New = %v; want no error", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("New = %v; want error containing %q", err, tt.wantErr)
			}
			if err != nil && strings.Contains(err.Error(), testToken) {
				t.Errorf("error %q contains the token", err)
			}
		})
	}

	t.Run("registered twice", func(t *testing.T) {
		reg := prometheus.NewRegistry()
		if _, err := admin.New(admin.Config{Tokens: testTokens()}, ctl, reg, zerolog.Nop(), reg); err != nil {
			t.Fatalf("first New: %v", err)
		}
		if _, err := admin.New(admin.Config{Tokens: testTokens()}, ctl, reg, zerolog.Nop(), reg); err == nil {
			t.Fatal("second New on the same registry succeeded; want a registration error")
		}
	})
}

func TestOpenEndpoints(t *testing.T) {
	ts := newTestServer(t, nil, admin.LimiterConfig{})
	tests := []struct {
		name       string
		req        request
		wantStatus int
		wantType   string
		wantBody   string // substring
	}{
		{"healthz", request{path: "/healthz"}, 200, "application/json", `{"status":"ok","version":"1.2.3-test"}`},
		{"healthz HEAD", request{method: "HEAD", path: "/healthz"}, 200, "application/json", ""},
		{"readyz", request{path: "/readyz"}, 200, "application/json", `{"ready":true}`},
		{"metrics", request{path: "/metrics"}, 200, "text/plain", "canary_admin_auth_failures_total"},
		{"metrics HEAD", request{method: "HEAD", path: "/metrics"}, 200, "text/plain", ""},
		{"dashboard", request{path: "/dashboard"}, 200, "text/html; charset=utf-8", `id="token-form"`},
		{"dashboard HEAD", request{method: "HEAD", path: "/dashboard"}, 200, "text/html; charset=utf-8", ""},
		{"app.js", request{path: "/dashboard/assets/app.js"}, 200, "text/javascript; charset=utf-8", "sessionStorage"},
		{"style.css", request{path: "/dashboard/assets/style.css"}, 200, "text/css; charset=utf-8", "canvas"},
		{"dashboard slash", request{path: "/dashboard/"}, 301, "", ""},
		{"unknown asset", request{path: "/dashboard/assets/index.html"}, 404, "application/json", `"error"`},
		{"asset traversal", request{path: "/dashboard/assets/..%2fdashboard.go"}, 404, "application/json", `"error"`},
		{"unknown path", request{path: "/nope"}, 404, "application/json", `{"error":"no such endpoint"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := ts.do(t, tt.req)
			if rec.Code != tt.wantStatus {
				t.Fatalf("%s = %d; want %d (body %q)", describe(tt.req), rec.Code, tt.wantStatus, rec.Body)
			}
			if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, tt.wantType) {
				t.Errorf("Content-Type = %q; want prefix %q", ct, tt.wantType)
			}
			if !strings.Contains(rec.Body.String(), tt.wantBody) {
				t.Errorf("body %q does not contain %q", rec.Body, tt.wantBody)
			}
		})
	}

	t.Run("dashboard headers", func(t *testing.T) {
		rec := ts.do(t, request{path: "/dashboard"})
		csp := rec.Header().Get("Content-Security-Policy")
		for _, want := range []string{"script-src 'self'", "connect-src 'self'", "frame-ancestors 'none'"} {
			if !strings.Contains(csp, want) {
				t.Errorf("Content-Security-Policy %q lacks %q", csp, want)
			}
		}
		if got := rec.Header().Get("Referrer-Policy"); got != "no-referrer" {
			t.Errorf("Referrer-Policy = %q; want no-referrer", got)
		}
		if body := rec.Body.String(); strings.Contains(body, "http://") || strings.Contains(body, "https://") {
			t.Errorf("page refers to another origin: %q", body)
		}
	})
}

func TestReadyzNotReady(t *testing.T) {
	ctl := newFakeController()
	ctl.ready, ctl.reason = false, "stable backend fails its health checks"
	ts := newTestServer(t, ctl, admin.LimiterConfig{})
	rec := ts.do(t, request{path: "/readyz"})
	if rec.Code != http.StatusServiceUnavailable {
		t.Fatalf("GET /readyz = %d; want 503", rec.Code)
	}
	var got struct {
		Ready  bool   `json:"ready"`
		Reason string `json:"reason"`
	}
	if err := decodeStrict(rec.Body.Bytes(), &got); err != nil {
		t.Fatalf("decode %q: %v", rec.Body, err)
	}
	if got.Ready || got.Reason != ctl.reason {
		t.Errorf("GET /readyz = %+v; want ready false, reason %q", got, ctl.reason)
	}
}

func TestMetricsServesGatherer(t *testing.T) {
	gather := prometheus.NewRegistry()
	g := prometheus.NewGauge(prometheus.GaugeOpts{Name: "canary_weight_ratio", Help: "test"})
	g.Set(0.25)
	gather.MustRegister(g)
	reg := prometheus.NewRegistry()
	srv, err := admin.New(admin.Config{Tokens: testTokens()}, newFakeController(), gather, zerolog.Nop(), reg)
	if err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	srv.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if !strings.Contains(rec.Body.String(), "canary_weight_ratio 0.25") {
		t.Errorf("GET /metrics = %q; want canary_weight_ratio 0.25", rec.Body)
	}
	// The admin's own counters go to reg, not necessarily to the gatherer.
	if n, err := reg.Gather(); err != nil || len(n) != 3 {
		t.Errorf("reg holds %d families (%v); want the 2 auth counters and the tokens gauge", len(n), err)
	}
}

// TestJSONEndpoints checks every authenticated GET renders the controller's
// value exactly, as JSON that must not be cached.
func TestJSONEndpoints(t *testing.T) {
	ctl := newFakeController()
	ts := newTestServer(t, ctl, admin.LimiterConfig{})
	wantCheck := ctl.check
	wantCheck.Version = "1.2.3-test" // admin.Config.Version
	tests := []struct {
		path string
		want any
		got  func() any
	}{
		{"/canary_check", wantCheck, func() any { return new(guard.Check) }},
		{"/dashboard/canary_overview", ctl.overview, func() any { return new(guard.Overview) }},
		{"/dashboard/health_summary", ctl.health, func() any { return new(guard.HealthSummary) }},
		{"/dashboard/integrity_details", ctl.report, func() any { return new(integrity.Report) }},
		{"/dashboard/fleet", ctl.fleet, func() any { return new(guard.FleetView) }},
	}
	for _, tt := range tests {
		for _, method := range []string{"GET", "HEAD"} {
			t.Run(method+tt.path, func(t *testing.T) {
				rec := ts.do(t, request{method: method, path: tt.path, auth: authed()})
				if rec.Code != http.StatusOK {
					t.Fatalf("%s %s = %d; want 200 (body %q)", method, tt.path, rec.Code, rec.Body)
				}
				if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
					t.Errorf("Content-Type = %q; want application/json", ct)
				}
				if cc := rec.Header().Get("Cache-Control"); cc != "no-store" {
					t.Errorf("Cache-Control = %q; want no-store", cc)
				}
				if method == "HEAD" {
					return
				}
				got := tt.got()
				if err := decodeStrict(rec.Body.Bytes(), got); err != nil {
					t.Fatalf("decode %q: %v", rec.Body, err)
				}
				if g := reflect.ValueOf(got).Elem().Interface(); !reflect.DeepEqual(g, tt.want) {
					t.Errorf("GET %s =\n%+v\nwant\n%+v", tt.path, g, tt.want)
				}
			})
		}
	}
}

// TestJSONFieldNames pins the field names of the admin API (README, "Endpoints").
func TestJSONFieldNames(t *testing.T) {
	ts := newTestServer(t, nil, admin.LimiterConfig{})
	tests := []struct {
		path string
		keys []string
	}{
		{"/canary_check", []string{"canary_ok", "recommendation", "reasons", "weight", "state", "release", "window", "slo", "stable", "canary", "integrity", "gates", "version", "fleet"}},
		{"/dashboard/fleet", []string{"self", "leader", "store", "store_ok", "replicas"}},
		{"/dashboard/health_summary", []string{"overall_health", "stable", "canary"}},
		{"/dashboard/canary_overview", []string{"rollback_required", "rollback_reason", "weight", "state", "plan", "history"}},
		{"/dashboard/integrity_details", []string{"integrity_verified", "status", "summary", "files_checked", "failures"}},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			rec := ts.do(t, request{path: tt.path, auth: authed()})
			var m map[string]json.RawMessage
			if err := json.Unmarshal(rec.Body.Bytes(), &m); err != nil {
				t.Fatalf("decode %q: %v", rec.Body, err)
			}
			for _, k := range tt.keys {
				if _, ok := m[k]; !ok {
					t.Errorf("GET %s lacks %q: %s", tt.path, k, rec.Body)
				}
			}
		})
	}
}

// TestNilListsAreArrays: clients (jq, the dashboard) always see arrays.
func TestNilListsAreArrays(t *testing.T) {
	ctl := newFakeController()
	ctl.check.Reasons, ctl.check.Gates = nil, nil
	ctl.overview.Plan, ctl.overview.History = nil, nil
	ctl.health.Reasons = nil
	ctl.report = integrity.Report{}
	ctl.check.Fleet.Replicas, ctl.fleet.Replicas = nil, nil
	ts := newTestServer(t, ctl, admin.LimiterConfig{})
	tests := []struct {
		path string
		want []string
	}{
		{"/canary_check", []string{`"reasons":[]`, `"gates":[]`}},
		{"/dashboard/canary_overview", []string{`"plan":[]`, `"history":[]`}},
		{"/dashboard/health_summary", []string{`"reasons":[]`}},
		{"/dashboard/integrity_details", []string{`"failures":[]`, `"status":"DISABLED"`}},
		{"/dashboard/fleet", []string{`"replicas":[]`}},
	}
	for _, tt := range tests {
		rec := ts.do(t, request{path: tt.path, auth: authed()})
		for _, w := range tt.want {
			if !strings.Contains(rec.Body.String(), w) {
				t.Errorf("GET %s = %s; want %s", tt.path, rec.Body, w)
			}
		}
	}
}

func TestMethodNotAllowed(t *testing.T) {
	ts := newTestServer(t, nil, admin.LimiterConfig{})
	tests := []struct {
		method, path string
		wantAllow    string
	}{
		{"GET", "/rollout/promote", "POST"},
		{"PUT", "/rollout/weight", "POST"},
		{"POST", "/canary_check", "GET, HEAD"},
		{"DELETE", "/healthz", "GET, HEAD"},
		{"POST", "/metrics", "GET, HEAD"},
		{"POST", "/dashboard", "GET, HEAD"},
		{"PATCH", "/dashboard/canary_overview", "GET, HEAD"},
	}
	for _, tt := range tests {
		t.Run(tt.method+tt.path, func(t *testing.T) {
			rec := ts.do(t, request{method: tt.method, path: tt.path})
			if rec.Code != http.StatusMethodNotAllowed {
				t.Fatalf("%s %s = %d; want 405", tt.method, tt.path, rec.Code)
			}
			if got := rec.Header().Get("Allow"); got != tt.wantAllow {
				t.Errorf("Allow = %q; want %q", got, tt.wantAllow)
			}
			errorBody(t, rec)
		})
	}
	if calls := ts.ctl.Calls(); len(calls) != 0 {
		t.Errorf("controller received %v; want no calls", calls)
	}
}

// TestOverLoopback drives a real listener with a real client, including a
// body too large to be read.
func TestOverLoopback(t *testing.T) {
	ts := newTestServer(t, nil, admin.LimiterConfig{})
	srv := httptest.NewServer(ts.handler)
	t.Cleanup(srv.Close)

	post := func(path string, body io.Reader, auth bool) *http.Response {
		t.Helper()
		req, err := http.NewRequest("POST", srv.URL+path, body)
		if err != nil {
			t.Fatal(err)
		}
		if auth {
			req.Header.Set("Authorization", "Bearer "+testToken)
		}
		req.Header.Set("Content-Type", "application/json")
		res, err := srv.Client().Do(req)
		if err != nil {
			t.Fatalf("POST %s: %v", path, err)
		}
		t.Cleanup(func() { res.Body.Close() })
		return res
	}

	res := post("/rollout/weight", strings.NewReader(`{"weight": 12.5}`), true)
	if res.StatusCode != http.StatusOK {
		t.Fatalf("POST /rollout/weight = %d; want 200", res.StatusCode)
	}
	var ov guard.Overview
	if err := json.NewDecoder(res.Body).Decode(&ov); err != nil || ov.Weight != 12.5 {
		t.Errorf("overview = %+v, %v; want weight 12.5", ov, err)
	}
	// Who is the token's name and the caller's address.
	calls := ts.ctl.Calls()
	if len(calls) != 1 || calls[0].Weight != 1250 || calls[0].Who != "ops-alice (127.0.0.1)" {
		t.Errorf("calls = %+v; want one SetWeight(1250, \"ops-alice (127.0.0.1)\")", calls)
	}

	big := io.MultiReader(strings.NewReader(`{"weight": 5, "pad": "`), strings.NewReader(strings.Repeat("x", admin.MaxBodyBytes)), strings.NewReader(`"}`))
	res = post("/rollout/weight", big, true)
	if res.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("POST /rollout/weight with %d bytes = %d; want 413", admin.MaxBodyBytes, res.StatusCode)
	}
	if got := len(ts.ctl.Calls()); got != 1 {
		t.Errorf("controller received %d calls; want still 1", got)
	}

	res = post("/rollout/promote", nil, false)
	if res.StatusCode != http.StatusUnauthorized {
		t.Errorf("POST /rollout/promote without token = %d; want 401", res.StatusCode)
	}
	body, _ := io.ReadAll(res.Body)
	if !bytes.Contains(body, []byte(`"error"`)) {
		t.Errorf("401 body = %q; want a JSON error", body)
	}
}

func ExampleNew() {
	reg := prometheus.NewRegistry()
	srv, err := admin.New(admin.Config{Tokens: oneToken("0123456789abcdef-example"), Version: "v1"},
		newFakeController(), reg, zerolog.Nop(), reg)
	if err != nil {
		panic(err)
	}
	rec := httptest.NewRecorder()
	req := httptest.NewRequest("GET", "/canary_check", nil)
	req.Header.Set("Authorization", "Bearer 0123456789abcdef-example")
	srv.Handler().ServeHTTP(rec, req)
	fmt.Println(rec.Code, rec.Header().Get("Content-Type"))
	// Output: 200 application/json
}
