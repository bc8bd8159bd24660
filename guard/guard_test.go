package guard_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/canaryd/canaryd/guard"
	"github.com/canaryd/canaryd/guard/judge"
	"github.com/canaryd/canaryd/proxy"
)

// weights lists a history's target weights.
func weights(h []guard.Transition) []float64 {
	out := make([]float64, len(h))
	for i, tr := range h {
		out[i] = tr.To
	}
	return out
}

func equalFloats(a, b []float64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestPlanRealTime drives a short plan end to end on the real clock and ticker.
func TestPlanRealTime(t *testing.T) {
	cfg, _ := baseConfig(t)
	cfg.Now = nil
	cfg.EvalInterval = 5 * time.Millisecond
	cfg.Steps = []guard.Step{{Weight: 500, Observe: 40 * time.Millisecond}, {Weight: 2500, Observe: 40 * time.Millisecond}, {Weight: 10000, Observe: 40 * time.Millisecond}}
	h := newHarness(t, cfg, nil)
	h.judge.set(judge.Proceed)
	h.start()
	waitFor(t, func() bool { return h.g.Overview().State == "complete" })

	o := h.g.Overview()
	if want := []float64{5, 25, 100, 100}; !equalFloats(weights(o.History), want) {
		t.Errorf("history weights = %v; want %v", weights(o.History), want)
	}
	for i, who := range []string{"startup", "plan", "plan", "plan"} {
		if o.History[i].Who != who {
			t.Errorf("history[%d].Who = %q; want %q", i, o.History[i].Who, who)
		}
	}
	if w, blocked := h.router.get(); w != 10000 || blocked {
		t.Errorf("router = %d, blocked %v; want 10000, false", w, blocked)
	}
	c := h.g.Check()
	if c.Recommendation != "complete" || !c.CanaryOK || c.Weight != 100 {
		t.Errorf("Check = %s ok=%v weight=%v; want complete ok=true 100", c.Recommendation, c.CanaryOK, c.Weight)
	}
	for _, sv := range o.Plan {
		if sv.Status != "done" {
			t.Errorf("plan step %d status %q; want done", sv.Index, sv.Status)
		}
	}
	if _, restarts := h.judge.counts(); restarts < 3 {
		t.Errorf("judge restarted %d times; want at least 3 (one per step)", restarts)
	}
}

// TestObservationClock checks on a manual clock that a step advances only
// after continuous proceed verdicts for its observe time.
func TestObservationClock(t *testing.T) {
	cfg, clock := baseConfig(t)
	cfg.Steps = []guard.Step{{Weight: 500, Observe: 50 * time.Millisecond}, {Weight: 2500, Observe: time.Hour}}
	h := newHarness(t, cfg, clock)
	h.start()

	type tick struct {
		advance  time.Duration
		verdict  judge.Verdict
		wantStep int
	}
	ticks := []tick{
		{0, judge.Proceed, 0},                     // healthy since t
		{30 * time.Millisecond, judge.Proceed, 0}, // 30ms observed
		{10 * time.Millisecond, judge.Hold, 0},    // clock restarts
		{10 * time.Millisecond, judge.Proceed, 0}, // healthy since t'
		{49 * time.Millisecond, judge.Proceed, 0}, // 49ms < 50ms
		{1 * time.Millisecond, judge.Proceed, 1},  // 50ms: next step
		{time.Minute, judge.Proceed, 1},           // new step's clock starts now
		{59 * time.Minute, judge.Proceed, 1},      // 59m < 1h
		{time.Minute - 1, judge.Proceed, 1},       // just short
		{1, judge.Proceed, 1},                     // 1h: complete, step stays last
	}
	for i, tk := range ticks {
		clock.Advance(tk.advance)
		h.judge.set(tk.verdict)
		o := h.wake()
		if o.Step != tk.wantStep {
			t.Fatalf("tick %d (%s after %v): step = %d; want %d", i, tk.verdict, tk.advance, o.Step, tk.wantStep)
		}
	}
	if o := h.g.Overview(); o.State != "complete" || o.Weight != 100 {
		t.Errorf("after the last step: state %s weight %v; want complete 100", o.State, o.Weight)
	}
}

// TestRollbackIsSticky: a failing verdict in step 2 rolls back and further
// healthy verdicts change nothing.
func TestRollbackIsSticky(t *testing.T) {
	cfg, clock := baseConfig(t)
	cfg.Steps = []guard.Step{{Weight: 500, Observe: time.Second}, {Weight: 2500, Observe: time.Second}, {Weight: 10000, Observe: time.Second}}
	h := newHarness(t, cfg, clock)
	h.start()
	h.judge.set(judge.Proceed)
	h.wake()
	clock.Advance(time.Second)
	if o := h.wake(); o.Step != 1 {
		t.Fatalf("step = %d; want 1", o.Step)
	}
	gate := judge.Gate{Name: "error_rate", Value: 0.2, Threshold: 0.01, Unit: "ratio", Samples: 500, Verdict: "fail"}
	h.src.setSnapshot(proxy.Snapshot{Canary: proxy.Stats{Requests: 500, Errors: 100}})
	h.judge.set(judge.RollbackErrorRate, gate)
	o := h.wake()
	if o.State != "rolled_back" || !o.RollbackRequired || o.RollbackReason != "rollback_error_rate" || o.Weight != 0 {
		t.Fatalf("after failing verdict: %+v", o)
	}
	if o.Rollback == nil || o.Rollback.Who != "guard" || o.Rollback.Canary.Requests != 500 || o.Rollback.Canary.ErrorRate != 0.2 || len(o.Rollback.Gates) != 1 {
		t.Errorf("rollback record = %+v", o.Rollback)
	}
	if w, blocked := h.router.get(); w != 0 || !blocked {
		t.Errorf("router = %d, blocked %v; want 0, true", w, blocked)
	}
	h.judge.set(judge.Proceed)
	for range 5 {
		clock.Advance(time.Second)
		h.wake()
	}
	c := h.g.Check()
	if c.State != "rolled_back" || c.Recommendation != "rollback_error_rate" || c.CanaryOK {
		t.Errorf("after healthy verdicts: state %s rec %s ok %v; want rolled_back rollback_error_rate false", c.State, c.Recommendation, c.CanaryOK)
	}
	if len(c.Reasons) == 0 || !strings.Contains(c.Reasons[0], "rolled back") {
		t.Errorf("reasons = %q; want a rolled-back note first", c.Reasons)
	}
	// Issue 16: a rolled-back canary with a healthy stable hurts no user.
	if hs := h.g.Health(); hs.OverallHealth != "degraded" {
		t.Errorf("health = %s; want degraded", hs.OverallHealth)
	}
	h.must(h.g.Reset("10.0.0.1:5555"))
	if w, blocked := h.router.get(); w != 500 || blocked {
		t.Errorf("after reset router = %d, blocked %v; want 500, false", w, blocked)
	}
}

// TestCanaryErrorWakes: a canary error is judged at once although the tick
// is an hour away.
func TestCanaryErrorWakes(t *testing.T) {
	cfg, clock := baseConfig(t)
	h := newHarness(t, cfg, clock)
	h.start()
	h.judge.set(judge.RollbackLatency)
	start := time.Now()
	o := h.wake()
	if o.State != "rolled_back" || o.RollbackReason != "rollback_latency" {
		t.Fatalf("state %s reason %s; want rolled_back rollback_latency", o.State, o.RollbackReason)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("rollback took %v", d)
	}
}

// TestFixedWeight: without a plan the weight stays fixed while the judge
// proceeds, and the step is -1.
func TestFixedWeight(t *testing.T) {
	cfg, clock := baseConfig(t)
	h := newHarness(t, cfg, clock)
	h.start()
	h.judge.set(judge.Proceed)
	for range 3 {
		clock.Advance(time.Hour)
		h.wake()
	}
	o := h.g.Overview()
	if o.State != "fixed" || o.Weight != 10 || o.Step != -1 || o.Recommendation != "proceed" || len(o.Plan) != 0 {
		t.Errorf("overview = state %s weight %v step %d rec %s plan %v", o.State, o.Weight, o.Step, o.Recommendation, o.Plan)
	}
	if w, _ := h.router.get(); w != 1000 {
		t.Errorf("router weight = %d; want 1000", w)
	}
}

// TestControls runs sequences of controls and checks state, weight and errors.
func TestControls(t *testing.T) {
	plan := []guard.Step{{Weight: 500, Observe: time.Hour}, {Weight: 2500, Observe: time.Hour}}
	type op struct {
		name      string
		weight    uint32
		wantErr   error
		wantState string
		wantW     float64
	}
	tests := []struct {
		name  string
		steps []guard.Step
		ops   []op
	}{
		{"promote through the plan", plan, []op{
			{"promote", 0, nil, "progressing", 25},
			{"promote", 0, nil, "complete", 100},
			{"promote", 0, guard.ErrConflict, "complete", 100},
			{"pause", 0, guard.ErrConflict, "complete", 100},
			{"reset", 0, nil, "progressing", 5},
		}},
		{"pause and resume", plan, []op{
			{"resume", 0, guard.ErrConflict, "progressing", 5},
			{"pause", 0, nil, "paused", 5},
			{"pause", 0, guard.ErrConflict, "paused", 5},
			{"promote", 0, nil, "progressing", 25},
			{"pause", 0, nil, "paused", 25},
			{"resume", 0, nil, "progressing", 25},
		}},
		{"manual weight", plan, []op{
			{"weight", 10001, guard.ErrInvalid, "progressing", 5},
			{"weight", 1234, nil, "paused", 12.34},
			{"weight", 0, nil, "paused", 0},
			{"resume", 0, nil, "progressing", 5},
		}},
		{"rollback blocks controls until reset", plan, []op{
			{"rollback", 0, nil, "rolled_back", 0},
			{"rollback", 0, nil, "rolled_back", 0},
			{"weight", 100, guard.ErrConflict, "rolled_back", 0},
			{"promote", 0, guard.ErrConflict, "rolled_back", 0},
			{"pause", 0, guard.ErrConflict, "rolled_back", 0},
			{"resume", 0, guard.ErrConflict, "rolled_back", 0},
			{"reset", 0, nil, "progressing", 5},
		}},
		{"no plan", nil, []op{
			{"pause", 0, guard.ErrConflict, "fixed", 10},
			{"weight", 5000, nil, "paused", 50},
			{"resume", 0, nil, "fixed", 10},
			{"promote", 0, nil, "complete", 100},
			{"reset", 0, nil, "fixed", 10},
			{"rollback", 0, nil, "rolled_back", 0},
			{"reset", 0, nil, "fixed", 10},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, clock := baseConfig(t)
			cfg.Steps = tt.steps
			h := newHarness(t, cfg, clock)
			for i, o := range tt.ops {
				var got guard.Overview
				var err error
				switch o.name {
				case "promote":
					got, err = h.g.Promote("admin")
				case "pause":
					got, err = h.g.Pause("admin")
				case "resume":
					got, err = h.g.Resume("admin")
				case "reset":
					got, err = h.g.Reset("admin")
				case "rollback":
					got, err = h.g.Rollback("admin")
				case "weight":
					got, err = h.g.SetWeight(o.weight, "admin")
				}
				if !errors.Is(err, o.wantErr) || (o.wantErr == nil && err != nil) {
					t.Fatalf("op %d %s: err = %v; want %v", i, o.name, err, o.wantErr)
				}
				if got.State != o.wantState || got.Weight != o.wantW {
					t.Fatalf("op %d %s: state %s weight %v; want %s %v", i, o.name, got.State, got.Weight, o.wantState, o.wantW)
				}
				w, blocked := h.router.get()
				if float64(w)/100 != o.wantW || blocked != (o.wantState == "rolled_back") {
					t.Fatalf("op %d %s: router %d blocked %v", i, o.name, w, blocked)
				}
			}
		})
	}
}

// TestManualRollbackRecord: the admin caller is recorded.
func TestManualRollbackRecord(t *testing.T) {
	cfg, clock := baseConfig(t)
	h := newHarness(t, cfg, clock)
	o := h.must(h.g.Rollback("192.0.2.7:41000"))
	last := o.History[len(o.History)-1]
	if last.Who != "192.0.2.7:41000" || last.Reason != "rollback_manual" || last.From != 10 || last.To != 0 || last.ToState != "rolled_back" {
		t.Errorf("last transition = %+v", last)
	}
	if o.Rollback == nil || o.Rollback.Reason != "rollback_manual" {
		t.Errorf("rollback = %+v", o.Rollback)
	}
	if c := h.g.Check(); c.CanaryOK || c.Recommendation != "rollback_manual" {
		t.Errorf("check = ok %v rec %s", c.CanaryOK, c.Recommendation)
	}
}

// TestHistoryBounded: the history keeps the last 200 entries.
func TestHistoryBounded(t *testing.T) {
	cfg, clock := baseConfig(t)
	h := newHarness(t, cfg, clock)
	for i := range 205 {
		h.must(h.g.SetWeight(uint32(i), "admin"))
	}
	o := h.g.Overview()
	if len(o.History) != 200 || o.History[199].To != 2.04 {
		t.Errorf("history has %d entries, last to %v; want 200, 2.04", len(o.History), o.History[len(o.History)-1].To)
	}
}

// TestHealthAndReady covers the health summary's rules.
func TestHealthAndReady(t *testing.T) {
	ok := proxy.HealthStats{Enabled: true, Healthy: true, Checks: 100}
	tests := []struct {
		name           string
		stable, canary proxy.HealthStats
		verdict        judge.Verdict
		gates          []judge.Gate
		want           string
		ready          bool
	}{
		{"all good", ok, ok, judge.Proceed, nil, "healthy", true},
		{"checks disabled", proxy.HealthStats{}, proxy.HealthStats{}, judge.Proceed, nil, "healthy", true},
		{"too little data", ok, ok, judge.Hold, nil, "degraded", true},
		{"gate near threshold", ok, ok, judge.Proceed, []judge.Gate{{Name: "p95_latency", Value: 450, Threshold: 500, Unit: "ms", Verdict: "pass"}}, "degraded", true},
		{"gate well below", ok, ok, judge.Proceed, []judge.Gate{{Name: "p95_latency", Value: 100, Threshold: 500, Unit: "ms", Verdict: "pass"}}, "healthy", true},
		{"stable down", proxy.HealthStats{Enabled: true, Healthy: false, Checks: 100, Failures: 3, LastError: "connection refused"}, ok, judge.Proceed, nil, "unhealthy", false},
		{"canary flaky", ok, proxy.HealthStats{Enabled: true, Healthy: true, Checks: 100, Failures: 6}, judge.Proceed, nil, "degraded", true},
		{"stable flaky", proxy.HealthStats{Enabled: true, Healthy: true, Checks: 100, Failures: 6}, ok, judge.Proceed, nil, "unhealthy", true},
		{"canary down", ok, proxy.HealthStats{Enabled: true, Healthy: false, Checks: 100, Failures: 3}, judge.Proceed, nil, "degraded", true},
		{"stable 5% exactly", proxy.HealthStats{Enabled: true, Healthy: true, Checks: 100, Failures: 5}, ok, judge.Proceed, nil, "healthy", true},
		{"judge rolls back", ok, ok, judge.RollbackErrorRate, nil, "degraded", true},
		{"rolled back and stable down", proxy.HealthStats{Enabled: true, Healthy: false, Checks: 100, Failures: 3}, ok, judge.RollbackErrorRate, nil, "unhealthy", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, clock := baseConfig(t)
			h := newHarness(t, cfg, clock)
			h.src.setHealth(tt.stable, tt.canary)
			h.judge.set(tt.verdict, tt.gates...)
			h.start()
			hs := h.g.Health()
			if hs.OverallHealth != tt.want {
				t.Errorf("Health() = %s %q; want %s", hs.OverallHealth, hs.Reasons, tt.want)
			}
			if hs.Reasons == nil {
				t.Error("Health().Reasons is nil")
			}
			if ready, why := h.g.Ready(); ready != tt.ready || (!ready && why == "") {
				t.Errorf("Ready() = %v %q; want %v", ready, why, tt.ready)
			}
		})
	}
}

// TestCheckFields fills every part of /canary_check.
func TestCheckFields(t *testing.T) {
	cfg, clock := baseConfig(t)
	cfg.Steps = []guard.Step{{Weight: 500, Observe: time.Minute}, {Weight: 10000, Observe: time.Minute}}
	h := newHarness(t, cfg, clock)
	h.src.setSnapshot(proxy.Snapshot{
		Stable: proxy.Stats{Requests: 1000, Errors: 5},
		Canary: proxy.Stats{Requests: 200, Errors: 1},
	})
	h.judge.set(judge.Proceed, judge.Gate{Name: "error_rate", Value: 0.005, Threshold: 0.01, Unit: "ratio", Samples: 200, Verdict: "pass"})
	h.start()
	clock.Advance(20 * time.Second)
	h.wake()
	c := h.g.Check()
	if !c.CanaryOK || c.Recommendation != "proceed" || c.State != "progressing" || c.Weight != 5 || c.Release != "v1" || c.Judge != "fake" {
		t.Errorf("check header = %+v", c)
	}
	if c.Stable.Requests != 1000 || c.Stable.ErrorRate != 0.005 || c.Canary.Errors != 1 {
		t.Errorf("backends = %+v %+v", c.Stable, c.Canary)
	}
	if c.SLO.ErrorRate != 0.01 || c.SLO.P95Ms != 500 || c.SLO.MinRequests != 100 || c.Window != "1m0s" {
		t.Errorf("slo = %+v window %s", c.SLO, c.Window)
	}
	if c.Integrity.Status != "DISABLED" || c.Integrity.Verified {
		t.Errorf("integrity = %+v", c.Integrity)
	}
	names := []string{}
	for _, g := range c.Gates {
		names = append(names, g.Name)
	}
	if strings.Join(names, ",") != "error_rate,integrity" {
		t.Errorf("gates = %v; want error_rate,integrity", names)
	}
	if c.Step == nil || c.Step.Index != 0 || c.Step.Status != "current" || c.Step.Remaining != "40s" {
		t.Errorf("step = %+v; want index 0 current, 40s remaining", c.Step)
	}
	if c.CheckedAt.IsZero() || c.Reasons == nil {
		t.Errorf("checked_at %v reasons %v", c.CheckedAt, c.Reasons)
	}
	h.must(h.g.Pause("admin"))
	if c := h.g.Check(); c.Recommendation != "hold" || c.Gates[len(c.Gates)-1].Name != "state" {
		t.Errorf("paused check = %s gates %+v; want hold with a state gate", c.Recommendation, c.Gates)
	}
}

// TestRunPersistsOnReturn: Run returns nil after cancel and leaves the file.
func TestRunPersistsOnReturn(t *testing.T) {
	cfg, clock := baseConfig(t)
	h := newHarness(t, cfg, clock)
	h.start()
	if err := h.stop(); err != nil {
		t.Fatalf("Run returned %v", err)
	}
	h2 := newHarness(t, cfg, clock)
	if o := h2.g.Overview(); len(o.History) != 2 || o.History[1].Reason != "resumed after restart" {
		t.Errorf("history after restart = %+v", o.History)
	}
}

// TestWindowJudgeWiring: without JudgeImpl, Judge "window" builds the real
// threshold judge, whose rollback the guard acts on.
func TestWindowJudgeWiring(t *testing.T) {
	cfg, _ := baseConfig(t)
	cfg.Judge = "window"
	src := newFakeSource()
	src.setSnapshot(proxy.Snapshot{Window: time.Minute, Canary: proxy.Stats{Requests: 200, Errors: 50}})
	router := &fakeRouter{}
	g, err := guard.New(cfg, src, router, zerolog.Nop(), nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx) }()
	waitFor(t, func() bool { return g.Overview().State == "rolled_back" })
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	c := g.Check()
	if c.Judge != "window" || c.Recommendation != "rollback_error_rate" || c.Canary.ErrorRate != 0.25 {
		t.Errorf("check = judge %s rec %s canary %+v", c.Judge, c.Recommendation, c.Canary)
	}
	if w, blocked := router.get(); w != 0 || !blocked {
		t.Errorf("router = %d blocked %v", w, blocked)
	}
}

// TestJudgeRestarts: the judge's evidence is restarted at each new step,
// weight and reset, and kept across a pause.
func TestJudgeRestarts(t *testing.T) {
	cfg, clock := baseConfig(t)
	cfg.Steps = []guard.Step{{Weight: 500, Observe: time.Minute}, {Weight: 2500, Observe: time.Minute}}
	h := newHarness(t, cfg, clock)
	steps := []struct {
		name string
		do   func() (guard.Overview, error)
		want int // restarts added
	}{
		{"pause", func() (guard.Overview, error) { return h.g.Pause("admin") }, 0},
		{"resume same step", func() (guard.Overview, error) { return h.g.Resume("admin") }, 0},
		{"promote", func() (guard.Overview, error) { return h.g.Promote("admin") }, 1},
		{"weight", func() (guard.Overview, error) { return h.g.SetWeight(3000, "admin") }, 1},
		{"rollback", func() (guard.Overview, error) { return h.g.Rollback("admin") }, 0},
		{"reset", func() (guard.Overview, error) { return h.g.Reset("admin") }, 1},
	}
	for _, st := range steps {
		_, before := h.judge.counts()
		h.must(st.do())
		if _, after := h.judge.counts(); after-before != st.want {
			t.Errorf("%s: judge restarted %d times; want %d", st.name, after-before, st.want)
		}
	}
}

// A step is observed under traffic: a proceed verdict does not advance the
// plan while the canary fails its health checks or had no request in the
// window.
func TestNoObservationWithoutTraffic(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mutate func(s *fakeSource)
	}{
		{"canary unhealthy", func(s *fakeSource) {
			s.canary = proxy.HealthStats{Enabled: true, Healthy: false, Checks: 10, Failures: 10}
		}},
		{"no canary requests in the window", func(s *fakeSource) { s.snap.Canary.Requests = 0 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, clock := baseConfig(t)
			cfg.Steps = []guard.Step{{Weight: 500, Observe: 50 * time.Millisecond}, {Weight: 2500, Observe: time.Hour}}
			h := newHarness(t, cfg, clock)
			h.start()
			h.src.mu.Lock()
			tc.mutate(h.src)
			h.src.mu.Unlock()
			h.judge.set(judge.Proceed)
			for range 5 {
				clock.Advance(20 * time.Millisecond)
				if o := h.wake(); o.Step != 0 {
					t.Fatalf("step advanced to %d without an observable canary", o.Step)
				}
			}
			if c := h.g.Check(); tc.name == "canary unhealthy" && c.Recommendation != "hold" {
				t.Errorf("recommendation with an unhealthy canary = %q; want hold", c.Recommendation)
			}
		})
	}
}

// Reset restarts the judge even at weight 0 (a canary reached only through
// the override header), so the old evidence does not roll it back again.
func TestResetRestartsJudgeAtWeightZero(t *testing.T) {
	cfg, clock := baseConfig(t)
	cfg.Weight = 0
	h := newHarness(t, cfg, clock)
	h.start()
	h.judge.set(judge.RollbackErrorRate)
	if o := h.wake(); o.State != "rolled_back" {
		t.Fatalf("state %s; want rolled_back", o.State)
	}
	_, before := h.judge.counts()
	if _, err := h.g.Reset("test"); err != nil {
		t.Fatal(err)
	}
	if _, after := h.judge.counts(); after != before+1 {
		t.Errorf("judge restarts %d → %d on reset at weight 0; want one more", before, after)
	}
}
