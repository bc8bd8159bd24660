package guard_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/canaryd/canaryd/guard"
	"github.com/canaryd/canaryd/guard/judge"
)

// fakeNotifier records the notices it hears.
type fakeNotifier struct {
	mu      sync.Mutex
	notices []guard.Notice
}

func (n *fakeNotifier) Notify(x guard.Notice) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.notices = append(n.notices, x)
}

func (n *fakeNotifier) heard() []guard.Notice {
	n.mu.Lock()
	defer n.mu.Unlock()
	return slices.Clone(n.notices)
}

// fakeConfirmer answers with the error the test sets (nil: accepted) and
// records the proposals it was asked about.
type fakeConfirmer struct {
	mu     sync.Mutex
	answer error
	asked  []guard.Proposal
}

func (c *fakeConfirmer) Confirm(_ context.Context, p guard.Proposal) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.asked = append(c.asked, p)
	return c.answer
}

func (c *fakeConfirmer) set(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.answer = err
}

func (c *fakeConfirmer) asks() []guard.Proposal {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.asked)
}

// fakeMetricGates returns the states the test sets, and counts restarts.
type fakeMetricGates struct {
	mu       sync.Mutex
	gates    []guard.MetricGate
	checks   int
	restarts int
}

func (m *fakeMetricGates) Names() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	var names []string
	for _, g := range m.gates {
		names = append(names, g.Name)
	}
	return names
}

func (m *fakeMetricGates) Check(context.Context, time.Time) []guard.MetricGate {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.checks++
	return slices.Clone(m.gates)
}

func (m *fakeMetricGates) Restart() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.restarts++
}

func (m *fakeMetricGates) set(status guard.MetricStatus, value float64, detail string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.gates[0].Status, m.gates[0].Value, m.gates[0].HasValue, m.gates[0].Detail = status, value, true, detail
}

// checked waits until the guard has applied at least n more checks.
func (m *fakeMetricGates) checked(t *testing.T, g *guard.Guard, n int) {
	t.Helper()
	m.mu.Lock()
	target := m.checks + n
	m.mu.Unlock()
	waitFor(t, func() bool {
		m.mu.Lock()
		defer m.mu.Unlock()
		return m.checks >= target
	})
	g.Check() // the check applied (it holds the guard's lock while applying)
}

// Every stored transition is announced once, in the order of the history,
// with the history entry, the kind and an id that hashes the entry.
func TestNotifierHearsEveryStoredTransitionOnce(t *testing.T) {
	cfg, clock := baseConfig(t)
	cfg.Steps = []guard.Step{{Weight: 500, Observe: time.Minute}, {Weight: 2500, Observe: time.Minute}, {Weight: 10000, Observe: time.Minute}}
	n := &fakeNotifier{}
	cfg.Notifier = n
	h := newHarness(t, cfg, clock)
	h.start()
	h.judge.set(judge.Proceed)
	h.wake()
	clock.Advance(time.Minute)
	h.wake() // the plan's step 2
	h.must(h.g.Pause("ops"))
	h.must(h.g.Resume("ops"))
	h.must(h.g.SetWeight(1234, "ops"))
	h.must(h.g.Promote("ops"))
	h.must(h.g.Rollback("ops"))
	h.must(h.g.Rollback("ops")) // a no-op: nothing announced
	h.must(h.g.Reset("ops"))
	h.must(h.g.Finish("ops"))
	h.must(h.g.Start("v2", nil, "ops"))
	history := h.g.Overview().History
	got := n.heard()
	wantKinds := []guard.TransitionKind{guard.KindStarted, guard.KindStep, guard.KindPaused, guard.KindResumed, guard.KindWeight,
		guard.KindStep, guard.KindRolledBack, guard.KindReset, guard.KindFinished, guard.KindStarted}
	if len(got) != len(history) || len(got) != len(wantKinds) {
		t.Fatalf("%d notices for %d history entries; want %d", len(got), len(history), len(wantKinds))
	}
	ids := map[string]bool{}
	for i, x := range got {
		if x.Transition != history[i] || x.Kind != wantKinds[i] {
			t.Errorf("notice %d = %s %+v; want %s %+v", i, x.Kind, x.Transition, wantKinds[i], history[i])
		}
		if len(x.ID) != 32 || ids[x.ID] {
			t.Errorf("notice %d id %q: not 32 hex digits, or repeated", i, x.ID)
		}
		ids[x.ID] = true
	}
	if rb := got[6]; rb.Rollback == nil || rb.Rollback.Reason != guard.RecRollbackManual || rb.State != guard.StateRolledBack || rb.Weight != 0 {
		t.Errorf("rollback notice %+v; want the rollback record and the state after it", rb)
	}
	if st := got[1]; st.Step != 1 || st.Steps != 3 || st.Weight != 2500 || st.Transition.Who != "plan" {
		t.Errorf("step notice %+v; want step 1 of 3 at 25%% by the plan", st)
	}
}

// A transition is announced once it is stored: while saves fail, its
// notice waits; when the store answers again, it is sent.
func TestNotifierWaitsForTheSave(t *testing.T) {
	cfg, clock := baseConfig(t)
	n := &fakeNotifier{}
	cfg.Notifier = n
	h := newHarness(t, cfg, clock)
	h.start()
	before := len(n.heard())
	h.store.setBroken(true)
	if _, err := h.g.Rollback("ops"); !errors.Is(err, guard.ErrNotPersisted) {
		t.Fatalf("rollback on a broken store: %v; want ErrNotPersisted", err)
	}
	time.Sleep(300 * time.Millisecond) // a retry or two fail
	if got := len(n.heard()); got != before {
		t.Fatalf("%d notices while the rollback is unsaved; want %d", got, before)
	}
	h.store.setBroken(false)
	waitFor(t, func() bool { return len(n.heard()) == before+1 })
	if x := n.heard()[before]; x.Kind != guard.KindRolledBack {
		t.Errorf("notice after the save: %s; want rolled_back", x.Kind)
	}
}

// Two guards on one store (two replicas): every transition of the shared
// history is announced exactly once, by the guard that stored it, even when
// both roll back at the same moment.
func TestNotifiersOfTwoWritersAnnounceEachTransitionOnce(t *testing.T) {
	cfg, _ := baseConfig(t)
	cfg.Now = nil
	cfg.Steps = []guard.Step{{Weight: 500, Observe: time.Hour}, {Weight: 2500, Observe: time.Hour}}
	store, err := guard.NewFileStore(cfg.StateFile, nil)
	if err != nil {
		t.Fatal(err)
	}
	na, nb := &fakeNotifier{}, &fakeNotifier{}
	cfgA, cfgB := cfg, cfg
	cfgA.Store, cfgA.Notifier = store, na
	cfgB.Store, cfgB.Notifier = store, nb
	a := newHarness(t, cfgA, nil)
	b := newHarness(t, cfgB, nil)
	a.start()
	b.start()
	for round := range 20 {
		var wg sync.WaitGroup
		wg.Go(func() { a.g.Rollback(fmt.Sprintf("a-%d", round)) })
		wg.Go(func() { b.g.Rollback(fmt.Sprintf("b-%d", round)) })
		wg.Wait()
		waitFor(t, func() bool { return a.g.Overview().State == "rolled_back" && b.g.Overview().State == "rolled_back" })
		if _, err := a.g.Reset("a"); err != nil && !errors.Is(err, guard.ErrConflict) {
			t.Fatal(err)
		}
		waitFor(t, func() bool { return b.g.Overview().State == "progressing" })
		b.must(b.g.Promote("b"))
	}
	var history []guard.Transition
	waitFor(t, func() bool {
		history = a.g.Overview().History
		return len(history) == len(b.g.Overview().History) && len(na.heard())+len(nb.heard()) >= len(history)
	})
	// Stored times lose the monotonic clock reading: compare entries by
	// their text.
	key := func(tr guard.Transition) string {
		tr.At = tr.At.UTC().Round(0)
		return fmt.Sprintf("%+v", tr)
	}
	count := map[string]int{}
	for _, x := range append(na.heard(), nb.heard()...) {
		count[key(x.Transition)]++
	}
	for _, tr := range history {
		if count[key(tr)] != 1 {
			t.Errorf("history entry %+v announced %d times; want once", tr, count[key(tr)])
		}
		delete(count, key(tr))
	}
	for tr, c := range count {
		t.Errorf("announced %d times but not in the history: %+v", c, tr)
	}
	rollbacks := 0
	for _, tr := range history {
		if tr.ToState == "rolled_back" {
			rollbacks++
		}
	}
	if rollbacks != 20 {
		t.Errorf("%d rollbacks in the history; want 20 (one per round)", rollbacks)
	}
}

// With a confirmer, the plan waits at a step that earned its observation,
// asks again while refused (the answer shown as awaiting_confirmation) and
// advances once accepted; an operator's promote is not asked about.
func TestConfirmationHoldsThePlan(t *testing.T) {
	cfg, clock := baseConfig(t)
	cfg.EvalInterval = 20 * time.Millisecond
	cfg.Steps = []guard.Step{{Weight: 500, Observe: time.Minute}, {Weight: 2500, Observe: time.Minute}, {Weight: 10000, Observe: time.Hour}}
	c := &fakeConfirmer{answer: errors.New("403 Forbidden")}
	cfg.Confirmer = c
	h := newHarness(t, cfg, clock)
	h.judge.set(judge.Proceed)
	h.start()
	h.wake()
	clock.Advance(time.Minute)
	waitFor(t, func() bool { return len(c.asks()) >= 3 })
	chk := h.g.Check()
	if chk.Weight != 5 || chk.Step == nil || chk.Step.Index != 0 {
		t.Fatalf("refused: weight %v step %+v; want held at step 1 (5%%)", chk.Weight, chk.Step)
	}
	if !slices.ContainsFunc(chk.Reasons, func(r string) bool {
		return strings.HasPrefix(r, "awaiting_confirmation: step 1 (5%) to step 2 (25%) is ready since") && strings.Contains(r, "last answer of the confirmation endpoint (CANARY_CONFIRM_URL): 403 Forbidden")
	}) {
		t.Errorf("reasons %q; want awaiting_confirmation with the answer", chk.Reasons)
	}
	if !slices.ContainsFunc(chk.Gates, func(g judge.Gate) bool { return g.Name == "confirmation" && g.Verdict == judge.GateHold }) {
		t.Errorf("gates %+v; want a holding confirmation gate", chk.Gates)
	}
	p := c.asks()[0]
	if p.Release != "v1" || p.Step != 0 || p.ToStep != 1 || p.ToState != guard.StateProgressing || p.FromWeight != 500 || p.ToWeight != 2500 || p.Steps != 3 {
		t.Errorf("proposal %+v; want v1 step 0 → 1, 5%% → 25%%", p)
	}
	c.set(nil)
	waitFor(t, func() bool { return h.g.Overview().Step == 1 })
	if tr := h.g.Overview().History; !strings.HasSuffix(tr[len(tr)-1].Reason, "; confirmed") {
		t.Errorf("history %+v; want the step confirmed", tr[len(tr)-1])
	}
	asked := len(c.asks())
	c.set(errors.New("no answer within 10s"))
	h.must(h.g.Promote("ops")) // by hand: not asked
	if o := h.g.Overview(); o.Step != 2 || len(c.asks()) != asked {
		t.Errorf("promote by hand: step %d, %d asks (was %d); want step 2, no new ask", o.Step, len(c.asks()), asked)
	}
}

// A replica of a fleet asks only while it leads.
func TestFleetOnlyTheLeaderAsksForConfirmation(t *testing.T) {
	fh := newFleetHarness(t, []guard.Step{{Weight: 500, Observe: time.Minute}, {Weight: 2500, Observe: time.Hour}}, true)
	c := &fakeConfirmer{answer: errors.New("503 Service Unavailable")}
	// The harness is built; rebuild its guard with a confirmer.
	fh.cfg.Confirmer = c
	fh.cfg.EvalInterval = 20 * time.Millisecond
	fh.harness = newHarness(t, fh.cfg, fh.clock)
	fh.harness.judge = &fh.local.fakeJudge
	fh.start()
	fh.fled.set(judge.Proceed)
	fh.wakeFleet()
	fh.clock.Advance(time.Minute)
	fh.wakeFleet()
	waitFor(t, func() bool { return len(c.asks()) > 0 })
	fh.fleet.set(func(f *fakeFleet) { f.leading = false })
	fh.wakeFleet()
	time.Sleep(50 * time.Millisecond) // a request in flight when leadership went
	n := len(c.asks())
	for range 5 {
		fh.wakeFleet()
	}
	time.Sleep(100 * time.Millisecond)
	if got := len(c.asks()); got != n {
		t.Errorf("a replica that no longer leads asked %d more times", got-n)
	}
	if !slices.ContainsFunc(fh.g.Check().Reasons, func(r string) bool { return strings.HasPrefix(r, "awaiting_confirmation: ") }) {
		t.Errorf("reasons %q; want awaiting_confirmation shown on every replica (it is in the record)", fh.g.Check().Reasons)
	}
}

// Metric gates: shown among the gates; a pending or unknown gate holds the
// plan (never rolls back), a failing one rolls back with rollback_metric
// naming it.
func TestMetricGates(t *testing.T) {
	cfg, clock := baseConfig(t)
	cfg.Steps = []guard.Step{{Weight: 500, Observe: time.Minute}, {Weight: 2500, Observe: time.Hour}}
	cfg.MetricGateInterval = 10 * time.Millisecond
	m := &fakeMetricGates{gates: []guard.MetricGate{{Name: "checkout_errors", Threshold: 0.05, Detail: "not yet"}}}
	cfg.MetricGates = m
	h := newHarness(t, cfg, clock)
	if c := h.g.Check(); !slices.ContainsFunc(c.Gates, func(g judge.Gate) bool {
		return g.Name == "checkout_errors" && g.Verdict == judge.GateHold && g.Detail == "not checked yet"
	}) {
		t.Errorf("before the first check: gates %+v; want checkout_errors holding, not checked yet", c.Gates)
	}
	h.judge.set(judge.Proceed)
	h.start()

	for _, st := range []guard.MetricStatus{guard.MetricUnknown, guard.MetricPending} {
		m.set(st, 0.2, "the gate's detail")
		m.checked(t, h.g, 2)
		clock.Advance(2 * time.Minute)
		o := h.wake()
		if o.Step != 0 || o.State != "progressing" {
			t.Fatalf("metric gate %s: step %d %s; want held at step 1", st, o.Step, o.State)
		}
		c := h.g.Check()
		if c.Recommendation != guard.RecHold || !slices.Contains(c.Reasons, "metric gate checkout_errors ("+st.String()+"): the gate's detail") {
			t.Errorf("metric gate %s: %s %q; want hold naming the gate", st, c.Recommendation, c.Reasons)
		}
		if hs := h.g.Health(); hs.OverallHealth != "degraded" {
			t.Errorf("metric gate %s: health %s; want degraded", st, hs.OverallHealth)
		}
	}
	m.set(guard.MetricPass, 0.01, "0.01 within its max 0.05")
	m.checked(t, h.g, 2)
	h.wake()
	clock.Advance(2 * time.Minute)
	if o := h.wake(); o.Step != 1 {
		t.Fatalf("metric gate passing: step %d; want the plan to advance", o.Step)
	}
	c := h.g.Check()
	if !slices.ContainsFunc(c.Gates, func(g judge.Gate) bool {
		return g.Name == "checkout_errors" && g.Verdict == judge.GatePass && g.Value == 0.01 && g.Threshold == 0.05 && g.Unit == "metric"
	}) {
		t.Errorf("gates %+v; want checkout_errors passing at 0.01 of 0.05", c.Gates)
	}
	m.set(guard.MetricFail, 0.3, "0.3 above its max 0.05 for 2m0s")
	waitFor(t, func() bool { return h.g.Overview().State == "rolled_back" })
	o := h.g.Overview()
	if o.RollbackReason != guard.RecRollbackMetric || o.Rollback.Detail != "metric gate checkout_errors: 0.3 above its max 0.05 for 2m0s" || o.Rollback.Who != "guard" {
		t.Errorf("rollback %+v; want rollback_metric naming the gate", o.Rollback)
	}
	if !slices.ContainsFunc(o.Rollback.Gates, func(g judge.Gate) bool { return g.Name == "checkout_errors" && g.Verdict == judge.GateFail }) {
		t.Errorf("rollback evidence %+v; want the failing gate", o.Rollback.Gates)
	}
	if c := h.g.Check(); c.CanaryOK || !strings.Contains(c.Reasons[0], "rollback_metric: metric gate checkout_errors") {
		t.Errorf("check after the rollback: ok %v, reasons %q", c.CanaryOK, c.Reasons)
	}
	// A reset restarts the gates' "for".
	m.set(guard.MetricPass, 0.01, "ok")
	m.mu.Lock()
	restarts := m.restarts
	m.mu.Unlock()
	h.must(h.g.Reset("ops"))
	m.checked(t, h.g, 2)
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.restarts <= restarts {
		t.Error("a reset did not restart the metric gates")
	}
}

// A metric-gate rollback needs no leader: any replica writes it.
func TestFleetReplicaRollsBackOnAMetricGate(t *testing.T) {
	fh := newFleetHarness(t, nil, false)
	m := &fakeMetricGates{gates: []guard.MetricGate{{Name: "queue_depth", Status: guard.MetricPass}}}
	fh.cfg.MetricGates, fh.cfg.MetricGateInterval = m, 10*time.Millisecond
	fh.harness = newHarness(t, fh.cfg, fh.clock)
	fh.harness.judge = &fh.local.fakeJudge
	fh.start()
	m.set(guard.MetricFail, 5000, "5000 above its max 1000 for 0s")
	waitFor(t, func() bool { return fh.g.Overview().State == "rolled_back" })
	if rb := fh.g.Overview().Rollback; rb.Reason != guard.RecRollbackMetric || rb.Replica != "r1" {
		t.Errorf("rollback %+v; want rollback_metric by r1", rb)
	}
}

// The progress deadline through the guard: stalled shows in the check,
// the health summary, the gates and canary_progress_stalled.
func TestProgressDeadlineStalls(t *testing.T) {
	cfg, clock := baseConfig(t)
	cfg.Steps = []guard.Step{{Weight: 500, Observe: time.Minute}, {Weight: 2500, Observe: 5 * time.Minute}} // each shorter than the deadline
	cfg.ProgressDeadline = 10 * time.Minute
	h := newHarness(t, cfg, clock)
	h.start()
	clock.Advance(9 * time.Minute)
	h.wake()
	if v := gaugeValue(t, h.reg, "canary_progress_stalled"); v != 0 {
		t.Fatalf("canary_progress_stalled = %v before the deadline", v)
	}
	clock.Advance(time.Minute)
	o := h.wake()
	if last := o.History[len(o.History)-1]; o.State != "progressing" || last.Who != "plan" || !strings.HasSuffix(last.Reason, ": stalled") {
		t.Fatalf("after the deadline: %s, last entry %+v; want progressing, stalled by the plan", o.State, last)
	}
	stalled := func(r string) bool {
		return strings.HasPrefix(r, "stalled: step 1 (5%) has not advanced within the progress deadline of 10m0s")
	}
	if c := h.g.Check(); !slices.ContainsFunc(c.Reasons, stalled) || !slices.ContainsFunc(c.Gates, func(g judge.Gate) bool {
		return g.Name == "progress_deadline" && g.Verdict == judge.GateHold && g.Value == 600 && g.Threshold == 600
	}) {
		t.Errorf("check: reasons %q, gates %+v; want stalled and a holding progress_deadline gate", c.Reasons, c.Gates)
	}
	if hs := h.g.Health(); hs.OverallHealth != "degraded" || !slices.ContainsFunc(hs.Reasons, stalled) {
		t.Errorf("health %s %q; want degraded, stalled", hs.OverallHealth, hs.Reasons)
	}
	if v := gaugeValue(t, h.reg, "canary_progress_stalled"); v != 1 {
		t.Errorf("canary_progress_stalled = %v; want 1", v)
	}
	h.wake()
	if n := len(h.g.Overview().History); n != len(o.History) {
		t.Errorf("stalled again: %d history entries; want %d (once)", n, len(o.History))
	}
	h.must(h.g.Promote("ops"))
	if v := gaugeValue(t, h.reg, "canary_progress_stalled"); v != 0 {
		t.Errorf("canary_progress_stalled = %v after the step advanced; want 0", v)
	}
}

// The progress deadline acts where the plan runs: a replica that does not
// lead never stalls the step; the leader does, once, for the fleet.
func TestFleetOnlyTheLeaderStalls(t *testing.T) {
	fh := newFleetHarness(t, []guard.Step{{Weight: 500, Observe: time.Minute}, {Weight: 2500, Observe: 5 * time.Minute}}, false)
	fh.cfg.ProgressDeadline = 10 * time.Minute
	fh.harness = newHarness(t, fh.cfg, fh.clock)
	fh.harness.judge = &fh.local.fakeJudge
	fh.start()
	fh.clock.Advance(time.Hour)
	if o := fh.wakeFleet(); len(o.History) != 1 || gaugeValue(t, fh.reg, "canary_progress_stalled") != 0 {
		t.Fatalf("a replica that does not lead: history %+v; want no stall", o.History)
	}
	fh.fleet.set(func(f *fakeFleet) { f.leading = true })
	fh.wakeFleet()
	o := fh.wakeFleet()
	if last := o.History[len(o.History)-1]; len(o.History) != 2 || last.Replica != "r1" || !strings.HasSuffix(last.Reason, ": stalled") {
		t.Fatalf("the leader: history %+v; want one stall by r1", o.History)
	}
	if gaugeValue(t, fh.reg, "canary_progress_stalled") != 1 {
		t.Error("canary_progress_stalled = 0 on the leader after the stall")
	}
}
