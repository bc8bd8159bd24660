package guard_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/canaryd/canaryd/guard"
	"github.com/canaryd/canaryd/guard/judge"
	"github.com/canaryd/canaryd/proxy"
)

// TestSaveFailure: a rollback whose save fails is in force at once, the
// controls say it is not saved, metrics and health show it, Run retries
// until the store works again, and a restart then keeps the rollback.
func TestSaveFailure(t *testing.T) {
	cfg, _ := baseConfig(t)
	cfg.Now = nil // Run's retry timer works on the real clock
	cfg.Weight = 5000
	h := newHarness(t, cfg, nil)
	h.start()

	h.store.setBroken(true)
	o, err := h.g.Rollback("192.0.2.9:4000")
	if !errors.Is(err, guard.ErrNotPersisted) || !strings.Contains(err.Error(), "no space left on device") {
		t.Fatalf("Rollback with a broken store: %v; want ErrNotPersisted naming the cause", err)
	}
	if o.State != "rolled_back" || o.Weight != 0 || o.Persisted {
		t.Errorf("overview = %s %v persisted %v; want rolled_back 0, not persisted", o.State, o.Weight, o.Persisted)
	}
	if w, blocked := h.router.get(); w != 0 || !blocked {
		t.Errorf("router = %d blocked %v; want the rollback in force at once", w, blocked)
	}
	// Idempotent, and still says so while unsaved.
	if _, err := h.g.Rollback("192.0.2.9:4000"); !errors.Is(err, guard.ErrNotPersisted) {
		t.Errorf("second Rollback: %v; want ErrNotPersisted", err)
	}
	hs := h.g.Health()
	if hs.OverallHealth != "degraded" || hs.StateStore.Persisted || hs.StateStore.FailedSaves == 0 || hs.StateStore.Kind != "file" ||
		!strings.Contains(hs.StateStore.Error, "no space left") || !strings.Contains(strings.Join(hs.Reasons, "|"), "rollout state not saved") {
		t.Errorf("health = %s %+v %q; want degraded naming the unsaved state", hs.OverallHealth, hs.StateStore, hs.Reasons)
	}
	// Run retries with backoff.
	before := h.store.attempts()
	waitFor(t, func() bool { return h.store.attempts() >= before+2 })
	if got := gatherText(t, h.reg, "canary_state_persisted"); !strings.Contains(got, "canary_state_persisted 0") {
		t.Errorf("while broken:\n%s", got)
	}
	if !strings.Contains(gatherText(t, h.reg, "canary_state_persist_failures_total"), "canary_state_persist_failures_total ") ||
		strings.Contains(gatherText(t, h.reg, "canary_state_persist_failures_total"), "canary_state_persist_failures_total 0\n") {
		t.Error("canary_state_persist_failures_total did not count the failures")
	}

	h.store.setBroken(false)
	waitFor(t, func() bool { return h.g.Overview().Persisted })
	if got := gatherText(t, h.reg, "canary_state_persisted"); !strings.Contains(got, "canary_state_persisted 1") {
		t.Errorf("after the store recovered:\n%s", got)
	}
	if hs := h.g.Health(); !hs.StateStore.Persisted || hs.StateStore.Error != "" || hs.OverallHealth != "degraded" {
		t.Errorf("health after recovery = %s %+v; want degraded (rolled back) with the state saved", hs.OverallHealth, hs.StateStore)
	}
	if err := h.stop(); err != nil {
		t.Fatalf("Run after recovery: %v", err)
	}
	h2 := newHarness(t, cfg, nil)
	if o := h2.g.Overview(); o.State != "rolled_back" || o.RollbackReason != guard.RecRollbackManual {
		t.Errorf("after restart: %s %s; want the rollback kept", o.State, o.RollbackReason)
	}
}

// TestSaveFailureAtShutdown: Run returns ErrNotPersisted, saying what is
// lost, when a transition is still unsaved as it ends.
func TestSaveFailureAtShutdown(t *testing.T) {
	cfg, clock := baseConfig(t)
	h := newHarness(t, cfg, clock)
	h.start()
	h.store.setBroken(true)
	if _, err := h.g.SetWeight(2000, "admin"); !errors.Is(err, guard.ErrNotPersisted) {
		t.Fatalf("SetWeight: %v", err)
	}
	err := h.stop()
	if !errors.Is(err, guard.ErrNotPersisted) || !strings.Contains(err.Error(), "paused at 20%") || strings.Contains(err.Error(), "\n") {
		t.Fatalf("Run = %v; want one line with ErrNotPersisted naming the lost state", err)
	}
}

// TestJudgeRollbackNotDelayedBySaveFailure: the judge's rollback routes at
// once even though its save fails.
func TestJudgeRollbackNotDelayedBySaveFailure(t *testing.T) {
	cfg, clock := baseConfig(t)
	h := newHarness(t, cfg, clock)
	h.start()
	h.store.setBroken(true)
	h.judge.set(judge.RollbackErrorRate)
	o := h.wake()
	if o.State != "rolled_back" || o.Persisted {
		t.Fatalf("state %s persisted %v; want rolled_back, not persisted", o.State, o.Persisted)
	}
	if w, blocked := h.router.get(); w != 0 || !blocked {
		t.Errorf("router = %d blocked %v", w, blocked)
	}
}

// TestViewsDoNotWrite: a view reads fresh health figures but changes
// nothing: the metrics keep the last evaluation's until the next one.
func TestViewsDoNotWrite(t *testing.T) {
	cfg, clock := baseConfig(t)
	h := newHarness(t, cfg, clock)
	ok := proxy.HealthStats{Enabled: true, Healthy: true, Checks: 10}
	h.src.setHealth(ok, ok)
	h.judge.set(judge.Proceed)
	h.start()
	healthy := `canary_overall_health{status="healthy"} 1`
	if got := gatherText(t, h.reg, "canary_overall_health"); !strings.Contains(got, healthy) {
		t.Fatalf("after a healthy evaluation:\n%s", got)
	}
	h.src.setHealth(proxy.HealthStats{Enabled: true, Healthy: false, Checks: 10, Failures: 1}, ok)
	if hs := h.g.Health(); hs.OverallHealth != "unhealthy" {
		t.Errorf("Health with stable down = %s; want unhealthy (fresh figures)", hs.OverallHealth)
	}
	h.g.Check()
	h.g.Overview()
	if got := gatherText(t, h.reg, "canary_overall_health"); !strings.Contains(got, healthy) {
		t.Errorf("a view changed the metrics:\n%s", got)
	}
	h.wake()
	if got := gatherText(t, h.reg, "canary_overall_health"); !strings.Contains(got, `canary_overall_health{status="unhealthy"} 1`) {
		t.Errorf("after the next evaluation:\n%s", got)
	}
}

// TestStartFinishAndReleases: Start begins a release afresh, Finish ends it,
// and CANARY_RELEASE at a restart starts only a release never seen.
func TestStartFinishAndReleases(t *testing.T) {
	cfg, clock := baseConfig(t)
	cfg.Steps = []guard.Step{{Weight: 500, Observe: time.Hour}, {Weight: 2500, Observe: time.Hour}}
	h := newHarness(t, cfg, clock)
	h.must(h.g.Rollback("admin"))
	if _, err := h.g.Start("v1", nil, "admin"); !errors.Is(err, guard.ErrConflict) {
		t.Errorf("Start of the current release: %v; want ErrConflict", err)
	}
	if _, err := h.g.Start("bad\nid", nil, "admin"); !errors.Is(err, guard.ErrInvalid) {
		t.Errorf("Start of an invalid id: %v; want ErrInvalid", err)
	}
	_, before := h.judge.counts()
	o := h.must(h.g.Start("v2", []guard.Step{{Weight: 0, Observe: time.Minute}, {Weight: 1000, Observe: time.Minute}}, "198.51.100.4:999"))
	if o.State != "progressing" || o.Weight != 0 || o.Release != "v2" || o.RollbackRequired || len(o.Plan) != 2 {
		t.Errorf("after Start: %+v", o)
	}
	if _, after := h.judge.counts(); after != before+1 {
		t.Errorf("judge restarts %d → %d; want one more", before, after)
	}
	if w, blocked := h.router.get(); w != 0 || blocked {
		t.Errorf("router = %d blocked %v; want weight 0 unblocked (step 1 of the new plan)", w, blocked)
	}
	last := o.History[len(o.History)-1]
	if last.Who != "198.51.100.4:999" || !strings.Contains(last.Reason, `started release "v2"`) || last.Release != "v2" {
		t.Errorf("history entry = %+v", last)
	}
	o = h.must(h.g.Finish("198.51.100.4:999"))
	if o.State != "finished" || o.Weight != 0 || o.History[len(o.History)-1].Who != "198.51.100.4:999" {
		t.Errorf("after Finish: %+v", o)
	}
	if w, blocked := h.router.get(); w != 0 || !blocked {
		t.Errorf("router = %d blocked %v; want the canary blocked", w, blocked)
	}
	if c := h.g.Check(); c.Recommendation != guard.RecHold || !c.CanaryOK {
		t.Errorf("check when finished = %s ok %v", c.Recommendation, c.CanaryOK)
	}
	for _, tc := range []struct {
		release, state, want string
	}{
		{"v1", "finished", "v2"},    // seen before: a stale replica changes nothing
		{"v2", "finished", "v2"},    // the current one
		{"", "finished", "v2"},      // no value keeps the stored release
		{"v3", "progressing", "v3"}, // never seen: started at boot with the configured plan
		{"v2", "progressing", "v3"},
	} {
		cfg.Release = tc.release
		h := newHarness(t, cfg, clock)
		if o := h.g.Overview(); o.State != tc.state || o.Release != tc.want {
			t.Errorf("restart with CANARY_RELEASE=%q: %s %q; want %s %q", tc.release, o.State, o.Release, tc.state, tc.want)
		}
	}
	// The started release's custom plan survives a restart; v3 uses the
	// configured one.
	if o := newHarness(t, cfg, clock).g.Overview(); o.Weight != 5 || len(o.Plan) != 2 || o.Plan[1].Weight != 25 {
		t.Errorf("v3 after restart: %+v", o)
	}
}
