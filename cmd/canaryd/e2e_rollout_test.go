package main

import (
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// The staged plan end to end with second-long steps: 5 → 25 → 100 → complete.
func TestE2EPlanCompletes(t *testing.T) {
	stable, canary := newBackend(t, "stable", nil), newBackend(t, "canary", nil)
	in := start(t, testEnv(t, stable, canary, "CANARY_STEPS=5@1s,25@1s,100@1s", "CANARY_SLO_MIN_REQUESTS=5"))
	seen := map[float64]bool{}
	c := in.waitFor("complete", 100, func(c checkBody) bool {
		seen[c.Weight] = true
		return c.Recommendation == "complete"
	})
	if c.Weight != 100 || c.State != "complete" || !c.CanaryOK {
		t.Errorf("at the end: %+v; want complete at 100", c)
	}
	for _, w := range []float64{5, 25, 100} {
		if !seen[w] {
			t.Errorf("weight %v never observed on the way (saw %v)", w, seen)
		}
	}
	_, body := in.adminGet("/dashboard/canary_overview", testToken)
	var ov struct {
		History []struct {
			From, To float64
			Who      string `json:"who"`
		} `json:"history"`
		Plan []struct {
			Status string `json:"status"`
		} `json:"plan"`
	}
	json.Unmarshal(body, &ov)
	var path []float64
	for _, h := range ov.History {
		if h.Who == "plan" {
			path = append(path, h.To)
		}
	}
	if want := []float64{25, 100, 100}; fmt.Sprint(path) != fmt.Sprint(want) {
		t.Errorf("plan transitions to %v; want %v (25, 100, then complete at 100)", path, want)
	}
	for i, st := range ov.Plan {
		if st.Status != "done" {
			t.Errorf("plan step %d status %q; want done", i, st.Status)
		}
	}
}

// A canary that starts failing in step 2 is rolled back and stays rolled back.
func TestE2EPlanRollbackInStep2(t *testing.T) {
	var failing atomic.Bool
	stable := newBackend(t, "stable", nil)
	canary := newBackend(t, "canary", func(w http.ResponseWriter, r *http.Request) {
		if failing.Load() {
			http.Error(w, "broken", http.StatusInternalServerError)
			return
		}
		io.WriteString(w, "canary")
	})
	in := start(t, testEnv(t, stable, canary, "CANARY_STEPS=10@1s,50@1h,100@1h", "CANARY_SLO_MIN_REQUESTS=5"))
	in.waitFor("step 2", 100, func(c checkBody) bool { return c.Weight == 50 })
	failing.Store(true)
	c := in.waitFor("rollback", 100, func(c checkBody) bool { return strings.HasPrefix(c.Recommendation, "rollback_") })
	if c.Weight != 0 || c.State != "rolled_back" {
		t.Errorf("after the failure: %+v", c)
	}
	failing.Store(false)
	in.send(300)
	time.Sleep(300 * time.Millisecond)
	if c := in.check(); c.Weight != 0 || c.Recommendation != "rollback_error_rate" {
		t.Errorf("a healthy canary undid the rollback: %+v", c)
	}
}

func TestE2EManualControls(t *testing.T) {
	stable, canary := newBackend(t, "stable", nil), newBackend(t, "canary", nil)
	in := start(t, testEnv(t, stable, canary, "CANARY_STEPS=5@1h,25@1h,100@1h"))
	post := func(path, body string) (int, map[string]any) {
		req, _ := http.NewRequest("POST", in.admin+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+testToken)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var m map[string]any
		json.NewDecoder(resp.Body).Decode(&m)
		return resp.StatusCode, m
	}
	for _, tc := range []struct {
		path, body string
		code       int
		weight     float64
		state      string
	}{
		{"/rollout/promote", "", 200, 25, "progressing"},
		{"/rollout/pause", "", 200, 25, "paused"},
		{"/rollout/pause", "", 409, -1, ""},
		{"/rollout/resume", "", 200, 25, "progressing"},
		{"/rollout/weight", `{"weight": 12.5}`, 200, 12.5, "paused"},
		{"/rollout/weight", `{"weight": "12"}`, 400, -1, ""},
		{"/rollout/weight", `{"weight": 101}`, 400, -1, ""},
		{"/rollout/weight", `{"weight": 1, "extra": 2}`, 400, -1, ""},
		{"/rollout/weight", `not json`, 400, -1, ""},
		{"/rollout/rollback", "", 200, 0, "rolled_back"},
		{"/rollout/promote", "", 409, -1, ""},
		{"/rollout/reset", "", 200, 5, "progressing"},
	} {
		code, m := post(tc.path, tc.body)
		if code != tc.code {
			t.Errorf("POST %s %s = %d %v; want %d", tc.path, tc.body, code, m, tc.code)
			continue
		}
		if code != 200 {
			if m["error"] == nil {
				t.Errorf("POST %s %s: %d without a JSON error", tc.path, tc.body, code)
			}
			continue
		}
		if m["weight"] != tc.weight || m["state"] != tc.state {
			t.Errorf("POST %s %s: weight %v state %v; want %v %v", tc.path, tc.body, m["weight"], m["state"], tc.weight, tc.state)
		}
	}
	// A bad body changed nothing.
	if c := in.check(); c.Weight != 5 || c.State != "progressing" {
		t.Errorf("after the bad bodies: %+v", c)
	}
	req, _ := http.NewRequest("GET", in.admin+"/rollout/promote", nil)
	req.Header.Set("Authorization", "Bearer "+testToken)
	if resp, err := client.Do(req); err != nil || resp.StatusCode != 405 {
		t.Errorf("GET /rollout/promote = %v %v; want 405", resp.StatusCode, err)
	}
	big := `{"weight": 1` + strings.Repeat(" ", 70<<10) + `}`
	if code, _ := post("/rollout/weight", big); code != 413 {
		t.Errorf("70 KiB body = %d; want 413", code)
	}
}

// Health checks steer traffic: a failing canary gets nothing until it
// recovers, and /readyz answers 503 while stable fails.
func TestE2EHealthChecksSteer(t *testing.T) {
	var canarySick, stableSick atomic.Bool
	health := func(sick *atomic.Bool) *backend {
		b := &backend{}
		b.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/status" {
				if sick.Load() {
					http.Error(w, "sick", http.StatusServiceUnavailable)
					return
				}
				io.WriteString(w, "ok")
				return
			}
			b.hits.Add(1)
			io.WriteString(w, "hello")
		}))
		t.Cleanup(b.Close)
		return b
	}
	stable, canary := health(&stableSick), health(&canarySick)
	in := start(t, testEnv(t, stable, canary, "CANARY_WEIGHT=50", "CANARY_HEALTH_PATH=/status", "CANARY_HEALTH_INTERVAL=100ms",
		"CANARY_SLO_MIN_REQUESTS=1000000"))
	canarySick.Store(true)
	waitUntil(t, "the canary blocked", func() bool {
		before := canary.hits.Load()
		in.send(50)
		return canary.hits.Load() == before
	})
	// The verdict shows it by the guard's next evaluation (CANARY_EVAL_INTERVAL).
	waitUntil(t, "the failing health checks in the verdict", func() bool {
		for _, g := range in.check().Gates {
			if g.Name == "canary_health_checks" && g.Verdict == "fail" {
				return true
			}
		}
		return false
	})
	canarySick.Store(false)
	waitUntil(t, "the canary back", func() bool {
		before := canary.hits.Load()
		in.send(50)
		return canary.hits.Load() > before
	})
	if resp, _ := in.adminGet("/readyz", ""); resp.StatusCode != 200 {
		t.Errorf("/readyz with stable healthy = %d", resp.StatusCode)
	}
	stableSick.Store(true)
	waitUntil(t, "/readyz 503", func() bool {
		resp, _ := in.adminGet("/readyz", "")
		return resp.StatusCode == http.StatusServiceUnavailable
	})
	stableSick.Store(false)
	waitUntil(t, "/readyz 200", func() bool {
		resp, _ := in.adminGet("/readyz", "")
		return resp.StatusCode == http.StatusOK
	})
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// https backends are verified against CANARY_UPSTREAM_CA_FILE.
func TestE2EUpstreamCA(t *testing.T) {
	tlsBackend := func(name string) *httptest.Server {
		s := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, name) }))
		t.Cleanup(s.Close)
		return s
	}
	stable, canary := tlsBackend("stable"), tlsBackend("canary")
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	var pemBytes []byte
	for _, s := range []*httptest.Server{stable, canary} {
		pemBytes = append(pemBytes, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: s.Certificate().Raw})...)
	}
	os.WriteFile(caFile, pemBytes, 0o600)
	env := []string{
		"CANARY_STABLE_URL=" + stable.URL, "CANARY_CANARY_URL=" + canary.URL, "CANARY_TOKEN=" + testToken,
		"CANARY_LISTEN=127.0.0.1:0", "CANARY_ADMIN_LISTEN=127.0.0.1:0", "CANARY_WEIGHT=0",
		"CANARY_STATE_FILE=" + filepath.Join(t.TempDir(), "state.json"),
	}
	in := start(t, append(env, "CANARY_UPSTREAM_CA_FILE="+caFile))
	resp, err := client.Get(in.traffic + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "stable" {
		t.Errorf("with the CA: %d %q; want 200 stable", resp.StatusCode, body)
	}
	// Without it the self-signed backend is refused.
	in2 := start(t, env)
	resp, err = client.Get(in2.traffic + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadGateway {
		t.Errorf("without the CA: %d; want 502", resp.StatusCode)
	}
}
