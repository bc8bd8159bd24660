package main

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// metricValue reads one sample from /metrics: the metric name with every
// label=value pair given; ok is false when no such sample is exported.
func (in *instance) metricValue(name string, labels ...string) (float64, bool) {
	in.t.Helper()
	_, body := in.adminGet("/metrics", "")
	parser := expfmt.NewTextParser(model.LegacyValidation)
	families, err := parser.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		in.t.Fatalf("/metrics does not parse: %v", err)
	}
samples:
	for _, m := range families[name].GetMetric() {
		for i := 0; i+1 < len(labels); i += 2 {
			found := false
			for _, l := range m.GetLabel() {
				found = found || (l.GetName() == labels[i] && l.GetValue() == labels[i+1])
			}
			if !found {
				continue samples
			}
		}
		if g := m.GetGauge(); g != nil {
			return g.GetValue(), true
		}
		return m.GetCounter().GetValue(), true
	}
	return 0, false
}

// healthBody is the part of /dashboard/health_summary the tests read.
type healthBody struct {
	OverallHealth string   `json:"overall_health"`
	Reasons       []string `json:"reasons"`
	StateStore    struct {
		Kind        string `json:"kind"`
		Persisted   bool   `json:"persisted"`
		Error       string `json:"error"`
		FailedSaves int    `json:"failed_saves"`
	} `json:"state_store"`
}

func (in *instance) health() healthBody {
	in.t.Helper()
	resp, body := in.adminGet("/dashboard/health_summary", testToken)
	var h healthBody
	if resp.StatusCode != 200 || json.Unmarshal(body, &h) != nil {
		in.t.Fatalf("/dashboard/health_summary = %d %s", resp.StatusCode, body)
	}
	return h
}

// stateDirEnv is testEnv with the state file in a folder of its own, which
// the test can take away.
func stateDirEnv(t *testing.T, stable, canary *backend, extra ...string) (env []string, stateDir string) {
	stateDir = filepath.Join(t.TempDir(), "state")
	if err := os.Mkdir(stateDir, 0o755); err != nil {
		t.Fatal(err)
	}
	env = testEnv(t, stable, canary, append([]string{"CANARY_STATE_FILE=" + filepath.Join(stateDir, "state.json")}, extra...)...)
	return env, stateDir
}

// breakFolder makes the state folder unusable, for root as well (chmod does
// not stop root): the folder is moved away and a plain file takes its name,
// so creating the temporary file fails with "not a directory". It returns
// the repair.
func breakFolder(t *testing.T, dir string) (repair func()) {
	t.Helper()
	away := dir + "-away"
	if err := os.Rename(dir, away); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dir, []byte("not a folder\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return func() {
		t.Helper()
		if err := os.Remove(dir); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(away, dir); err != nil {
			t.Fatal(err)
		}
	}
}

// TestE2EStateSaveFailure (issue 10, item 5): with the state folder gone, a
// rollback is in force at once but answered 503 "not saved"; the canary gets
// no traffic; metrics and health say so; the save is retried and succeeds
// when the folder is back; a restart keeps the rollback.
func TestE2EStateSaveFailure(t *testing.T) {
	stable, canary := newBackend(t, "stable", nil), newBackend(t, "canary", nil)
	env, stateDir := stateDirEnv(t, stable, canary, "CANARY_RELEASE=v1", "CANARY_WEIGHT=50", "CANARY_SLO_MIN_REQUESTS=100000")
	in := start(t, env)
	in.send(100)
	if canary.hits.Load() != 50 {
		t.Fatalf("canary hits before = %d; want 50", canary.hits.Load())
	}
	if v, _ := in.metricValue("canary_state_persisted"); v != 1 {
		t.Fatalf("canary_state_persisted = %v before the failure; want 1", v)
	}

	repair := breakFolder(t, stateDir)
	req, _ := http.NewRequest(http.MethodPost, in.admin+"/rollout/rollback", nil)
	req.Header.Set("Authorization", "Bearer "+testToken)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var answer struct {
		Error     string  `json:"error"`
		Persisted *bool   `json:"persisted"`
		State     string  `json:"state"`
		Weight    float64 `json:"weight"`
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	json.Unmarshal(raw, &answer)
	t.Logf("POST /rollout/rollback with the folder gone: %d\n%s", resp.StatusCode, raw)
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Errorf("POST /rollout/rollback with the folder gone = %d (Retry-After %q); want 503 with Retry-After", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	if answer.State != "rolled_back" || answer.Weight != 0 || answer.Persisted == nil || *answer.Persisted ||
		!strings.Contains(answer.Error, "in force") || !strings.Contains(answer.Error, "not a directory") {
		t.Errorf("answer = %+v; want rolled_back at 0, persisted false, an error saying it is in force and why it is not saved", answer)
	}

	// In force at once: the canary gets nothing.
	before := canary.hits.Load()
	if codes := in.send(300); codes[200] != 300 {
		t.Errorf("answers after the rollback = %v; want 300 × 200", codes)
	}
	if got := canary.hits.Load(); got != before {
		t.Errorf("the canary got %d requests after an unsaved rollback", got-before)
	}
	if c := in.check(); c.Recommendation != "rollback_manual" || c.Weight != 0 {
		t.Errorf("check = %+v; want rollback_manual at 0", c)
	}
	waitUntil(t, "a retried save to fail", func() bool {
		v, _ := in.metricValue("canary_state_persist_failures_total")
		return v >= 2
	})
	if v, ok := in.metricValue("canary_state_persisted"); !ok || v != 0 {
		t.Errorf("canary_state_persisted = %v (exported %v); want 0", v, ok)
	}
	if v, _ := in.metricValue("canary_overall_health", "status", "degraded"); v != 1 {
		t.Errorf(`canary_overall_health{status="degraded"} = %v; want 1`, v)
	}
	h := in.health()
	if h.OverallHealth != "degraded" || h.StateStore.Persisted || h.StateStore.Kind != "file" || h.StateStore.FailedSaves < 1 ||
		!strings.Contains(h.StateStore.Error, "not a directory") || !strings.Contains(strings.Join(h.Reasons, " | "), "rollout state not saved") {
		t.Errorf("health = %+v; want degraded, naming the unsaved state and its cause", h)
	}

	repair()
	waitUntil(t, "the retried save to succeed", func() bool {
		v, _ := in.metricValue("canary_state_persisted")
		return v == 1
	})
	if h := in.health(); !h.StateStore.Persisted || h.StateStore.Error != "" {
		t.Errorf("health after the repair = %+v; want the state saved", h.StateStore)
	}
	if code := in.stop(); code != 0 {
		t.Fatalf("exit after SIGTERM = %d; want 0 once saved", code)
	}

	in = start(t, env)
	if c := in.check(); c.Recommendation != "rollback_manual" || c.Weight != 0 || c.CanaryOK {
		t.Errorf("after restart: %+v; want the rollback kept", c)
	}
	before = canary.hits.Load()
	in.send(200)
	if got := canary.hits.Load(); got != before {
		t.Errorf("the canary got %d requests after the restart", got-before)
	}
}

// TestE2EUnsavedStateAtShutdown: SIGTERM with a change in force but not saved
// exits 1 and says so in one plain line; the restart resumes the last saved
// state, as that line says.
func TestE2EUnsavedStateAtShutdown(t *testing.T) {
	stable, canary := newBackend(t, "stable", nil), newBackend(t, "canary", nil)
	env, stateDir := stateDirEnv(t, stable, canary, "CANARY_RELEASE=v1", "CANARY_WEIGHT=50")
	in := start(t, env)
	repair := breakFolder(t, stateDir)
	if code, body := in.adminPost("/rollout/rollback"); code != http.StatusServiceUnavailable {
		t.Fatalf("rollback with the folder gone = %d %s; want 503", code, body)
	}
	if code := in.stop(); code != exitFail {
		t.Errorf("exit after SIGTERM with an unsaved rollback = %d; want %d", code, exitFail)
	}
	var lines []string
	for _, l := range strings.Split(in.logs.String(), "\n") {
		if strings.HasPrefix(l, "canaryd: ") {
			lines = append(lines, l)
		}
	}
	if len(lines) != 1 || !strings.Contains(lines[0], "not saved") || !strings.Contains(lines[0], "rolled_back at 0%") ||
		!strings.Contains(lines[0], "restart resumes the last saved state") {
		t.Errorf("plain lines = %q; want one saying the rolled_back state is not saved and what a restart does", lines)
	}
	t.Logf("stderr lines: %q", lines)
	repair()
	in = start(t, env)
	if c := in.check(); c.State != "fixed" || c.Weight != 50 {
		t.Errorf("after restart: %+v; want the last saved state (fixed at 50)", c)
	}
}
