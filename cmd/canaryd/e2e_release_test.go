package main

import (
	"encoding/json"
	"io"
	"net/http"
	"os/exec"
	"strings"
	"sync"
	"testing"
)

// overviewBody is the part of an overview the release tests read.
type overviewBody struct {
	State            string  `json:"state"`
	Weight           float64 `json:"weight"`
	Release          string  `json:"release"`
	RollbackRequired bool    `json:"rollback_required"`
	Persisted        bool    `json:"persisted"`
	Plan             []struct {
		Weight float64 `json:"weight"`
	} `json:"plan"`
	History []struct {
		Reason  string `json:"reason"`
		Who     string `json:"who"`
		ToState string `json:"to_state"`
		Release string `json:"release"`
	} `json:"history"`
	Error string `json:"error"`
}

// postJSON posts body to the admin path and decodes the overview (or error).
func (in *instance) postJSON(path, body string) (int, overviewBody) {
	in.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, in.admin+path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+testToken)
	resp, err := client.Do(req)
	if err != nil {
		in.t.Fatal(err)
	}
	defer resp.Body.Close()
	var o overviewBody
	raw, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(raw, &o); err != nil {
		in.t.Fatalf("POST %s: body %q: %v", path, raw, err)
	}
	return resp.StatusCode, o
}

func (in *instance) overview() overviewBody {
	in.t.Helper()
	_, body := in.adminGet("/dashboard/canary_overview", testToken)
	var o overviewBody
	if err := json.Unmarshal(body, &o); err != nil {
		in.t.Fatalf("overview %s: %v", body, err)
	}
	return o
}

// sendWith makes n requests with header name: value and returns the answers'
// status counts.
func (in *instance) sendWith(n int, name, value string) map[int]int {
	in.t.Helper()
	var mu sync.Mutex
	codes := map[int]int{}
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := w; i < n; i += 4 {
				req, _ := http.NewRequest(http.MethodGet, in.traffic+"/cohort", nil)
				req.Header.Set(name, value)
				code := 0
				if resp, err := client.Do(req); err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					code = resp.StatusCode
				}
				mu.Lock()
				codes[code]++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return codes
}

// TestE2EStartAndFinish (issue 12 item 7, single instance): POST
// /rollout/start starts a release without a restart, /rollout/finish ends
// it, both in the history with the caller; CANARY_RELEASE at a restart only
// starts a release never seen.
func TestE2EStartAndFinish(t *testing.T) {
	stable, canary := newBackend(t, "stable", nil), newBackend(t, "canary", nil)
	env := testEnv(t, stable, canary, "CANARY_RELEASE=v1", "CANARY_STEPS=5@1h,25@1h",
		"CANARY_OVERRIDE_HEADER=X-Canary", "CANARY_SLO_MIN_REQUESTS=100000")
	in := start(t, env)
	if o := in.overview(); o.Release != "v1" || o.State != "progressing" || o.Weight != 5 {
		t.Fatalf("at start: %+v", o)
	}
	if code, o := in.postJSON("/rollout/start", `{"release": "v1"}`); code != http.StatusConflict || !strings.Contains(o.Error, "reset") {
		t.Errorf("start of the current release = %d %q; want 409 pointing to reset", code, o.Error)
	}
	for _, body := range []string{`{"release": ""}`, `{"release": "v2", "steps": "25@1m,5@1m"}`, `{"release": "v2", "steps": "1e1@1m"}`, `{"release": "v2", "extra": 1}`} {
		if code, o := in.postJSON("/rollout/start", body); code != http.StatusBadRequest || o.Error == "" {
			t.Errorf("start %s = %d %q; want 400 with a JSON error", body, code, o.Error)
		}
	}
	if code, _ := in.postJSON("/rollout/rollback", ""); code != 200 {
		t.Fatalf("rollback = %d", code)
	}

	code, o := in.postJSON("/rollout/start", `{"release": "v1.0.1", "steps": "10@1h,50@1h"}`)
	if code != 200 || o.State != "progressing" || o.Weight != 10 || o.Release != "v1.0.1" || o.RollbackRequired || !o.Persisted || len(o.Plan) != 2 {
		t.Fatalf("start v1.0.1 = %d %+v; want progressing at 10 with the given plan, the rollback cleared", code, o)
	}
	last := o.History[len(o.History)-1]
	if last.Who != "default (127.0.0.1)" || !strings.Contains(last.Reason, `started release "v1.0.1" (was "v1")`) || last.Release != "v1.0.1" {
		t.Errorf("history entry of the start = %+v; want the caller and the release", last)
	}
	before := canary.hits.Load()
	in.send(1000)
	if got := canary.hits.Load() - before; got != 100 {
		t.Errorf("canary got %d of 1000 requests after the start; want 100 (10%%)", got)
	}

	// A restart with the stale CANARY_RELEASE=v1 keeps v1.0.1 and its plan.
	if code := in.stop(); code != 0 {
		t.Fatalf("exit = %d", code)
	}
	in = start(t, env)
	if o := in.overview(); o.Release != "v1.0.1" || o.State != "progressing" || o.Weight != 10 {
		t.Errorf("after a restart with CANARY_RELEASE=v1: %+v; want v1.0.1 progressing at 10", o)
	}

	code, o = in.postJSON("/rollout/finish", "")
	if code != 200 || o.State != "finished" || o.Weight != 0 || o.History[len(o.History)-1].Who != "default (127.0.0.1)" ||
		!strings.Contains(o.History[len(o.History)-1].Reason, `finished release "v1.0.1"`) {
		t.Fatalf("finish = %d %+v", code, o)
	}
	before = canary.hits.Load()
	in.send(300)
	in.sendWith(50, "X-Canary", "always")
	if got := canary.hits.Load() - before; got != 0 {
		t.Errorf("a finished release's canary got %d requests (override header included)", got)
	}
	if c := in.check(); c.State != "finished" || c.Recommendation != "hold" || !c.CanaryOK {
		t.Errorf("check when finished = %+v", c)
	}
	if code, _ := in.postJSON("/rollout/finish", ""); code != 200 {
		t.Errorf("second finish = %d; want 200 (no change)", code)
	}
	if code, _ := in.postJSON("/rollout/reset", ""); code != http.StatusConflict {
		t.Errorf("reset when finished = %d; want 409 (start a release)", code)
	}

	for _, tc := range []struct {
		release, state, want string
		weight               float64
	}{
		{"CANARY_RELEASE=v1.0.1", "finished", "v1.0.1", 0}, // the current release: nothing changes
		{"CANARY_RELEASE", "finished", "v1.0.1", 0},        // unset: the stored release stays
		{"CANARY_RELEASE=v2", "progressing", "v2", 5},      // never seen: started at boot with the configured plan
		{"CANARY_RELEASE=v1", "progressing", "v2", 5},      // seen before: a stale replica never drags it back
	} {
		in.stop()
		in = start(t, with(env, tc.release))
		if o := in.overview(); o.State != tc.state || o.Release != tc.want || o.Weight != tc.weight {
			t.Errorf("restart with %s: %s %q at %v; want %s %q at %v", tc.release, o.State, o.Release, o.Weight, tc.state, tc.want, tc.weight)
		}
	}
}

// TestE2EZeroWeightFirstStep: a plan may begin at weight 0 (issue 14's
// cohorts feed the canary there; here the override header does): the split
// sends nothing, the step is observed on the forced traffic and advances.
func TestE2EZeroWeightFirstStep(t *testing.T) {
	stable, canary := newBackend(t, "stable", nil), newBackend(t, "canary", nil)
	in := start(t, testEnv(t, stable, canary, "CANARY_STEPS=0@1s,50@1h", "CANARY_OVERRIDE_HEADER=X-Canary", "CANARY_SLO_MIN_REQUESTS=5"))
	if c := in.check(); c.Weight != 0 || c.State != "progressing" {
		t.Fatalf("at start: %+v; want progressing at 0", c)
	}
	in.send(200)
	if got := canary.hits.Load(); got != 0 {
		t.Fatalf("canary got %d requests at weight 0", got)
	}
	in.waitFor("step 2", 0, func(c checkBody) bool {
		in.sendWith(40, "X-Canary", "always")
		return c.Weight == 50
	})
	before := canary.hits.Load()
	in.send(100)
	if got := canary.hits.Load() - before; got != 50 {
		t.Errorf("canary got %d of 100 at step 2; want 50", got)
	}
}

// TestE2EOneGrammar: the percent grammar is the same in CANARY_WEIGHT,
// CANARY_STEPS and the API (no exponents), and CANARY_RELEASE follows the
// release-id rule of POST /rollout/start; a bad value exits 2 naming it.
func TestE2EOneGrammar(t *testing.T) {
	stable, canary := newBackend(t, "stable", nil), newBackend(t, "canary", nil)
	for _, tc := range []struct{ kv, name string }{
		{"CANARY_WEIGHT=1e1", "CANARY_WEIGHT"},
		{"CANARY_WEIGHT=-0", "CANARY_WEIGHT"},
		{"CANARY_STEPS=1e1@5m", "CANARY_STEPS"},
		{"CANARY_STEPS=5@5m,0@10m", "CANARY_STEPS"},
		{"CANARY_RELEASE=v1\x01", "CANARY_RELEASE"},
		{"CANARY_RELEASE=" + strings.Repeat("v", 129), "CANARY_RELEASE"},
	} {
		cmd := exec.Command(binary)
		cmd.Env = testEnv(t, stable, canary, tc.kv)
		out, _ := cmd.CombinedOutput()
		if code := cmd.ProcessState.ExitCode(); code != exitConfig || !strings.HasPrefix(string(out), "canaryd: "+tc.name+":") || strings.Count(string(out), "\n") != 1 {
			t.Errorf("%q: exit %d, %q; want 2 and one line naming %s", tc.kv, code, out, tc.name)
		}
	}
	in := start(t, testEnv(t, stable, canary, "CANARY_WEIGHT=12.50", "CANARY_STEPS=0@10m,5@15m"))
	if c := in.check(); c.Weight != 0 {
		t.Errorf("CANARY_STEPS=0@10m,5@15m starts at %v; want 0", c.Weight)
	}
	if code, o := in.postJSON("/rollout/weight", `{"weight": 1e1}`); code != http.StatusBadRequest || !strings.Contains(o.Error, "not a percentage") {
		t.Errorf(`{"weight": 1e1} = %d %q; want 400 naming the grammar`, code, o.Error)
	}
	if code, o := in.postJSON("/rollout/weight", `{"weight": 12.50}`); code != 200 || o.Weight != 12.5 {
		t.Errorf(`{"weight": 12.50} = %d %+v; want 200 at 12.5`, code, o)
	}
}
