package main

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
)

// TestE2ERollbackIsDegradedNotUnhealthy (issue 16 item 1): a rolled-back
// canary with a healthy stable hurts no user, so overall health is degraded
// (API and metric); only a failing stable makes it unhealthy.
func TestE2ERollbackIsDegradedNotUnhealthy(t *testing.T) {
	var stableSick atomic.Bool
	stable := &backend{}
	stable.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" && stableSick.Load() {
			http.Error(w, "sick", http.StatusServiceUnavailable)
			return
		}
		stable.hits.Add(1)
		io.WriteString(w, "stable")
	}))
	t.Cleanup(stable.Close)
	canary := newBackend(t, "canary", nil)
	in := start(t, testEnv(t, stable, canary, "CANARY_HEALTH_PATH=/healthz", "CANARY_HEALTH_INTERVAL=100ms", "CANARY_SLO_MIN_REQUESTS=10"))
	if code, body := in.adminPost("/rollout/rollback"); code != 200 {
		t.Fatalf("rollback = %d %s", code, body)
	}
	waitUntil(t, "health degraded after the rollback", func() bool {
		h := in.health()
		return h.OverallHealth == "degraded" && strings.Contains(strings.Join(h.Reasons, "|"), "rolled back")
	})
	if v, _ := in.metricValue("canary_overall_health", "status", "degraded"); v != 1 {
		t.Errorf(`canary_overall_health{status="degraded"} = %v; want 1`, v)
	}
	if v, _ := in.metricValue("canary_overall_health", "status", "unhealthy"); v != 0 {
		t.Errorf(`canary_overall_health{status="unhealthy"} = %v; want 0`, v)
	}
	stableSick.Store(true)
	waitUntil(t, "health unhealthy with stable failing", func() bool {
		v, _ := in.metricValue("canary_overall_health", "status", "unhealthy")
		return in.health().OverallHealth == "unhealthy" && v == 1
	})
}

// TestE2EIntegrityMetricsAgreeWithAPI (issue 16 item 6): for each integrity
// status the API's integrity_verified/status and the metrics say the same;
// with integrity off canary_integrity_verified is absent (not 1) and
// canary_integrity_status says disabled.
func TestE2EIntegrityMetricsAgreeWithAPI(t *testing.T) {
	root := filepath.Join(testdata, "release")
	for _, tc := range []struct {
		env      []string
		status   string
		verified bool
		gauge    float64 // canary_integrity_verified; -1 = absent
	}{
		{nil, "DISABLED", false, -1},
		{[]string{"CANARY_INTEGRITY_MANIFEST=" + filepath.Join(testdata, "release.sha256"), "CANARY_INTEGRITY_ROOT=" + root}, "VERIFIED", true, 1},
		{[]string{"CANARY_INTEGRITY_MANIFEST=" + filepath.Join(testdata, "release-tampered.sha256"), "CANARY_INTEGRITY_ROOT=" + root}, "FAILED", false, 0},
	} {
		t.Run(tc.status, func(t *testing.T) {
			in := start(t, testEnv(t, newBackend(t, "stable", nil), newBackend(t, "canary", nil), tc.env...))
			_, body := in.adminGet("/dashboard/integrity_details", testToken)
			var rep struct {
				Verified bool   `json:"integrity_verified"`
				Status   string `json:"status"`
			}
			json.Unmarshal(body, &rep)
			if rep.Verified != tc.verified || rep.Status != tc.status {
				t.Errorf("integrity_details = %s; want %s, verified %v", body, tc.status, tc.verified)
			}
			v, exported := in.metricValue("canary_integrity_verified")
			if tc.gauge < 0 && exported {
				t.Errorf("canary_integrity_verified = %v while integrity is disabled; want it absent", v)
			}
			if tc.gauge >= 0 && (!exported || v != tc.gauge) {
				t.Errorf("canary_integrity_verified = %v (exported %v); want %v", v, exported, tc.gauge)
			}
			for _, s := range []string{"verified", "failed", "disabled"} {
				want := 0.0
				if strings.EqualFold(s, tc.status) {
					want = 1
				}
				if v, ok := in.metricValue("canary_integrity_status", "status", s); !ok || v != want {
					t.Errorf(`canary_integrity_status{status=%q} = %v (exported %v); want %v`, s, v, ok, want)
				}
			}
		})
	}
}

// TestE2ECheckVersion: /canary_check carries the version `canaryd version`
// prints.
func TestE2ECheckVersion(t *testing.T) {
	out, err := exec.Command(binary, "version").Output()
	if err != nil {
		t.Fatal(err)
	}
	want := strings.TrimSpace(strings.TrimPrefix(string(out), "canaryd "))
	in := start(t, testEnv(t, newBackend(t, "stable", nil), newBackend(t, "canary", nil)))
	_, body := in.adminGet("/canary_check", testToken)
	var c struct {
		Version string `json:"version"`
	}
	if err := json.Unmarshal(body, &c); err != nil || c.Version == "" || c.Version != want {
		t.Errorf("/canary_check version = %q (%v); want %q", c.Version, err, want)
	}
}
