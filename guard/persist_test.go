package guard_test

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/canaryd/canaryd/guard"
	"github.com/canaryd/canaryd/guard/integrity"
	"github.com/canaryd/canaryd/guard/judge"
)

// TestRestartResumesStep: a new Guard on the same file resumes the step with
// the observation it had earned, and a hold while the judge gathers data
// again does not erase it.
func TestRestartResumesStep(t *testing.T) {
	cfg, clock := baseConfig(t)
	cfg.Steps = []guard.Step{{Weight: 500, Observe: time.Minute}, {Weight: 2500, Observe: time.Minute}, {Weight: 10000, Observe: time.Minute}}
	h := newHarness(t, cfg, clock)
	h.start()
	h.judge.set(judge.Proceed)
	h.wake()
	clock.Advance(time.Minute)
	h.wake() // step 1 begins
	h.wake() // healthy since now
	clock.Advance(40 * time.Second)
	if err := h.stop(); err != nil {
		t.Fatal(err)
	}

	clock.Advance(time.Hour) // downtime does not count as observation
	h2 := newHarness(t, cfg, clock)
	o := h2.g.Overview()
	if o.State != "progressing" || o.Step != 1 || o.Weight != 25 {
		t.Fatalf("after restart: state %s step %d weight %v; want progressing 1 25", o.State, o.Step, o.Weight)
	}
	if o.Plan[1].Remaining != "20s" {
		t.Errorf("remaining = %q; want 20s", o.Plan[1].Remaining)
	}
	if w, blocked := h2.router.get(); w != 2500 || blocked {
		t.Errorf("router = %d blocked %v", w, blocked)
	}
	h2.judge.set(judge.Hold) // fresh judge, too little data
	h2.start()
	h2.wake()
	h2.judge.set(judge.Proceed)
	h2.wake() // healthy since now, 40s credit
	clock.Advance(19 * time.Second)
	if o := h2.wake(); o.Step != 1 {
		t.Fatalf("advanced after 59s of observation")
	}
	clock.Advance(time.Second)
	if o := h2.wake(); o.Step != 2 {
		t.Fatalf("step = %d after 60s of observation; want 2", o.Step)
	}
}

// TestRestartStates: each stored state resumes as itself.
func TestRestartStates(t *testing.T) {
	plan := []guard.Step{{Weight: 500, Observe: time.Minute}, {Weight: 2500, Observe: time.Minute}}
	tests := []struct {
		name        string
		act         func(g *guard.Guard) error
		wantState   string
		wantW       uint32
		wantBlocked bool
		wantRec     string
	}{
		{"rolled back", func(g *guard.Guard) error { _, err := g.Rollback("admin"); return err }, "rolled_back", 0, true, "rollback_manual"},
		{"paused", func(g *guard.Guard) error { _, err := g.SetWeight(1500, "admin"); return err }, "paused", 1500, false, "hold"},
		{"complete", func(g *guard.Guard) error {
			if _, err := g.Promote("admin"); err != nil {
				return err
			}
			_, err := g.Promote("admin")
			return err
		}, "complete", 10000, false, "complete"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, clock := baseConfig(t)
			cfg.Steps = plan
			h := newHarness(t, cfg, clock)
			if err := tt.act(h.g); err != nil {
				t.Fatal(err)
			}
			h2 := newHarness(t, cfg, clock)
			o := h2.g.Overview()
			w, blocked := h2.router.get()
			if o.State != tt.wantState || w != tt.wantW || blocked != tt.wantBlocked || string(o.Recommendation) != tt.wantRec {
				t.Errorf("after restart: state %s router %d blocked %v rec %s; want %s %d %v %s", o.State, w, blocked, o.Recommendation, tt.wantState, tt.wantW, tt.wantBlocked, tt.wantRec)
			}
			// The judge saying proceed changes nothing for a sticky rollback.
			h2.judge.set(judge.Proceed)
			h2.start()
			if o := h2.g.Overview(); o.State != tt.wantState {
				t.Errorf("after judging: state %s; want %s", o.State, tt.wantState)
			}
		})
	}
}

// TestNewReleaseStartsFresh: another release id clears a rollback.
func TestNewReleaseStartsFresh(t *testing.T) {
	cfg, clock := baseConfig(t)
	cfg.Steps = []guard.Step{{Weight: 500, Observe: time.Minute}, {Weight: 2500, Observe: time.Minute}}
	h := newHarness(t, cfg, clock)
	h.must(h.g.Promote("admin"))
	h.must(h.g.Rollback("admin"))

	cfg.Release = "v2"
	h2 := newHarness(t, cfg, clock)
	o := h2.g.Overview()
	if o.State != "progressing" || o.Step != 0 || o.Weight != 5 || o.RollbackRequired || o.Release != "v2" {
		t.Errorf("new release: %+v", o)
	}
	last := o.History[len(o.History)-1]
	if !strings.Contains(last.Reason, "new release") || last.FromState != "rolled_back" || last.Who != "startup" {
		t.Errorf("last transition = %+v; want a new-release note from rolled_back", last)
	}
	if w, blocked := h2.router.get(); w != 500 || blocked {
		t.Errorf("router = %d blocked %v", w, blocked)
	}
}

// TestCorruptStateFile: the file is kept aside and the canary held at 0.
func TestCorruptStateFile(t *testing.T) {
	tests := []struct {
		name    string
		content string
	}{
		{"not json", "{\"version\": 1, \"state\": \"progr"},
		{"unknown state", `{"version":1,"release":"v1","state":"exploded","weight_hundredths":500}`},
		{"unknown version", `{"version":99,"release":"v1","state":"fixed"}`},
		{"rolled back without reason", `{"version":1,"release":"v1","state":"rolled_back"}`},
		{"weight out of range", `{"version":1,"release":"v1","state":"paused","weight_hundredths":20000}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, clock := baseConfig(t)
			cfg.Steps = []guard.Step{{Weight: 500, Observe: time.Minute}}
			if err := os.WriteFile(cfg.StateFile, []byte(tt.content), 0o600); err != nil {
				t.Fatal(err)
			}
			h := newHarness(t, cfg, clock)
			o := h.g.Overview()
			if o.State != "held" || o.Weight != 0 || o.Recommendation != "hold" {
				t.Errorf("state %s weight %v rec %s; want held 0 hold", o.State, o.Weight, o.Recommendation)
			}
			if w, blocked := h.router.get(); w != 0 || !blocked {
				t.Errorf("router = %d blocked %v; want 0 blocked", w, blocked)
			}
			aside := cfg.StateFile + ".corrupt-" + strconv.FormatInt(clock.Now().Unix(), 10)
			kept, err := os.ReadFile(aside)
			if err != nil || string(kept) != tt.content {
				t.Errorf("kept-aside file %s: %v %q", aside, err, kept)
			}
			hs := h.g.Health()
			if hs.StateFileProblem == "" || !strings.Contains(hs.StateFileProblem, aside) || hs.OverallHealth != "degraded" {
				t.Errorf("health = %s problem %q", hs.OverallHealth, hs.StateFileProblem)
			}
			if _, err := h.g.Promote("admin"); !errors.Is(err, guard.ErrConflict) {
				t.Errorf("Promote while held: %v; want ErrConflict", err)
			}
			o = h.must(h.g.Resume("admin"))
			if o.State != "progressing" || o.Weight != 5 {
				t.Errorf("after resume: %s %v", o.State, o.Weight)
			}
			// The fresh file is valid again.
			h2 := newHarness(t, cfg, clock)
			if o := h2.g.Overview(); o.State != "progressing" {
				t.Errorf("after restart: %s", o.State)
			}
		})
	}
}

// TestUnwritableStateFile: New fails with ErrStateFile naming the path.
func TestUnwritableStateFile(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "plain-file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		path string
	}{
		{"folder missing", filepath.Join(dir, "missing", "state.json")},
		{"parent is a file", filepath.Join(file, "state.json")},
		{"path is a folder", dir},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, _ := baseConfig(t)
			cfg.StateFile = tt.path
			cfg.JudgeImpl = &fakeJudge{}
			_, err := guard.New(cfg, newFakeSource(), &fakeRouter{}, zerolog.Nop(), prometheus.NewRegistry())
			if !errors.Is(err, guard.ErrStateFile) || !strings.Contains(err.Error(), tt.path) {
				t.Errorf("New() error = %v; want ErrStateFile naming %s", err, tt.path)
			}
		})
	}
}

// TestStateFileContents: the file holds the documented fields, and no
// temporary files are left behind (stale ones are removed at start).
func TestStateFileContents(t *testing.T) {
	cfg, clock := baseConfig(t)
	cfg.Steps = []guard.Step{{Weight: 500, Observe: time.Minute}, {Weight: 2500, Observe: time.Minute}}
	// A crash between create and rename leaves a temporary file behind.
	if err := os.WriteFile(cfg.StateFile+".tmp-12345", []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, cfg, clock)
	h.must(h.g.Promote("admin"))
	data, err := os.ReadFile(cfg.StateFile)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"version", "release", "state", "plan", "step", "step_started_at", "observed_ns", "weight_hundredths", "history", "saved_at"} {
		if _, ok := m[k]; !ok {
			t.Errorf("state file lacks %q: %s", k, data)
		}
	}
	if m["state"] != "progressing" || m["step"] != 1.0 || m["weight_hundredths"] != 2500.0 {
		t.Errorf("state file = %s", data)
	}
	entries, _ := os.ReadDir(filepath.Dir(cfg.StateFile))
	if len(entries) != 1 {
		t.Errorf("folder holds %d entries; want only the state file", len(entries))
	}
}

// TestPlanChangeClampsStep: a shorter plan with the same release keeps the
// state and clamps the step.
func TestPlanChangeClampsStep(t *testing.T) {
	cfg, clock := baseConfig(t)
	cfg.Steps = []guard.Step{{Weight: 500, Observe: time.Minute}, {Weight: 2500, Observe: time.Minute}, {Weight: 5000, Observe: time.Minute}}
	h := newHarness(t, cfg, clock)
	h.must(h.g.Promote("admin"))
	h.must(h.g.Promote("admin"))

	cfg.Steps = []guard.Step{{Weight: 1000, Observe: time.Minute}, {Weight: 2000, Observe: time.Minute}}
	h2 := newHarness(t, cfg, clock)
	o := h2.g.Overview()
	if o.State != "progressing" || o.Step != 1 || o.Weight != 20 {
		t.Errorf("after plan change: state %s step %d weight %v; want progressing 1 20", o.State, o.Step, o.Weight)
	}
	if last := o.History[len(o.History)-1]; !strings.Contains(last.Reason, "plan changed") {
		t.Errorf("last reason %q; want a plan-change note", last.Reason)
	}
}

// TestIntegrity: a failing release starts rolled back; reset needs it fixed;
// Run re-verifies and rolls back when files change.
func TestIntegrity(t *testing.T) {
	cfg, clock := baseConfig(t)
	v := &fakeVerifier{}
	v.set(false)
	cfg.IntegrityManifest = filepath.Join(t.TempDir(), "SHA256SUMS")
	cfg.IntegrityInterval = 5 * time.Millisecond
	cfg.VerifyIntegrity = v.Verify
	h := newHarness(t, cfg, clock)
	o := h.g.Overview()
	if o.State != "rolled_back" || o.RollbackReason != "rollback_integrity" {
		t.Fatalf("failing release: state %s reason %s", o.State, o.RollbackReason)
	}
	if r := h.g.Integrity(); r.Status != integrity.StatusFailed || len(r.Failures) != 1 {
		t.Errorf("Integrity() = %+v", r)
	}
	if _, err := h.g.Reset("admin"); !errors.Is(err, guard.ErrConflict) {
		t.Errorf("Reset with failing files: %v; want ErrConflict", err)
	}
	v.set(true)
	o = h.must(h.g.Reset("admin"))
	if o.State != "fixed" || o.Weight != 10 {
		t.Errorf("after reset: %s %v", o.State, o.Weight)
	}
	c := h.g.Check()
	if c.Integrity.Status != "VERIFIED" || !c.Integrity.Verified {
		t.Errorf("check integrity = %+v", c.Integrity)
	}
	h.start()
	v.set(false)
	waitFor(t, func() bool { return h.g.Overview().State == "rolled_back" })
	if c := h.g.Check(); c.Recommendation != "rollback_integrity" || c.CanaryOK {
		t.Errorf("after files changed: %s ok %v", c.Recommendation, c.CanaryOK)
	}
}
