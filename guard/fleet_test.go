package guard_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/canaryd/canaryd/guard"
	"github.com/canaryd/canaryd/guard/judge"
	"github.com/canaryd/canaryd/proxy"
)

// fakeFleet is a guard.Fleet whose leadership, peers and store health the
// test sets; it records what the guard publishes.
type fakeFleet struct {
	changes chan struct{}

	mu        sync.Mutex
	leading   bool
	peers     []guard.Peer
	storeErr  error
	published []guard.Evidence
}

func newFakeFleet() *fakeFleet { return &fakeFleet{changes: make(chan struct{}, 1)} }

func (f *fakeFleet) Self() string { return "r1" }
func (f *fakeFleet) Name() string { return "/canaryd/test/" }
func (f *fakeFleet) Leader() (string, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.leading {
		return "r1", true
	}
	return "r2", false
}
func (f *fakeFleet) Peers() []guard.Peer {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]guard.Peer(nil), f.peers...)
}
func (f *fakeFleet) Changes() <-chan struct{} { return f.changes }
func (f *fakeFleet) Publish(e guard.Evidence, urgent bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.published = append(f.published, e)
}
func (f *fakeFleet) StoreErr() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.storeErr
}

func (f *fakeFleet) set(fn func(f *fakeFleet)) {
	f.mu.Lock()
	fn(f)
	f.mu.Unlock()
	select {
	case f.changes <- struct{}{}:
	default:
	}
}

// recordingJudge is a fakeJudge that keeps the snapshots it judged.
type recordingJudge struct {
	fakeJudge
	snaps []proxy.Snapshot
}

func (j *recordingJudge) Judge(s proxy.Snapshot) judge.Result {
	j.mu.Lock()
	j.snaps = append(j.snaps, s)
	j.mu.Unlock()
	return j.fakeJudge.Judge(s)
}

func (j *recordingJudge) last() proxy.Snapshot {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.snaps[len(j.snaps)-1]
}

// fleetHarness is a replica's guard with a fake fleet and two judges: the
// replica's own (local) and the fleet's.
type fleetHarness struct {
	*harness
	fleet       *fakeFleet
	local, fled *recordingJudge
}

func newFleetHarness(t *testing.T, steps []guard.Step, leading bool) *fleetHarness {
	cfg, clock := baseConfig(t)
	cfg.Steps = steps
	fh := &fleetHarness{fleet: newFakeFleet(), local: &recordingJudge{}, fled: &recordingJudge{}}
	fh.fleet.leading = leading
	fh.local.verdict, fh.fled.verdict = judge.Hold, judge.Hold
	cfg.Fleet = fh.fleet
	cfg.NewJudge = func(fleet bool, slo judge.SLO) judge.Judge {
		if fleet {
			return fh.fled
		}
		return fh.local
	}
	fh.harness = newHarness(t, cfg, clock)
	fh.harness.judge = &fh.local.fakeJudge // the replica's judge runs at every evaluation
	return fh
}

// wakeFleet wakes the guard with a fleet notice and waits until the fleet's
// judge has judged once more and the result is saved.
func (fh *fleetHarness) wakeFleet() guard.Overview {
	fh.t.Helper()
	c, _ := fh.fled.counts()
	fh.fleet.set(func(*fakeFleet) {})
	waitFor(fh.t, func() bool { n, _ := fh.fled.counts(); return n > c })
	waitFor(fh.t, func() bool { return fh.g.Overview().Persisted })
	return fh.g.Overview()
}

// A replica that does not lead never runs the plan, however long the
// fleet's evidence says proceed; the leader does.
func TestFleetOnlyTheLeaderRunsThePlan(t *testing.T) {
	fh := newFleetHarness(t, []guard.Step{{Weight: 500, Observe: time.Minute}, {Weight: 2500, Observe: time.Hour}}, false)
	fh.start()
	fh.fled.set(judge.Proceed)
	fh.local.set(judge.Proceed)
	for range 3 {
		fh.clock.Advance(time.Minute)
		if o := fh.wakeFleet(); o.Step != 0 || o.Weight != 5 {
			t.Fatalf("a replica that does not lead moved the plan to step %d at %v", o.Step, o.Weight)
		}
	}
	if c := fh.g.Check(); c.Recommendation != guard.RecProceed || c.Fleet.Leader != "r2" || c.Fleet.Self != "r1" {
		t.Errorf("check = %s, fleet %+v; want the fleet's proceed shown, r2 leading", c.Recommendation, c.Fleet)
	}
	fh.fleet.set(func(f *fakeFleet) { f.leading = true })
	fh.wakeFleet()
	fh.clock.Advance(time.Minute)
	if o := fh.wakeFleet(); o.Step != 1 || o.History[len(o.History)-1].Replica != "r1" {
		t.Errorf("the leader after a minute of proceed: step %d, last entry %+v; want step 1 by r1", o.Step, o.History[len(o.History)-1])
	}
}

// A replica's own rollback verdict rolls the fleet back without a leader.
func TestFleetReplicaRollsBackOnItsOwn(t *testing.T) {
	fh := newFleetHarness(t, nil, false)
	fh.start()
	fh.local.set(judge.RollbackErrorRate, judge.Gate{Name: "error_rate", Verdict: judge.GateFail})
	o := fh.wakeFleet()
	if o.State != "rolled_back" || o.Rollback == nil || o.Rollback.Replica != "r1" || o.Rollback.Reason != guard.RecRollbackErrorRate {
		t.Fatalf("after the replica's rollback verdict: %s %+v; want rolled back by r1", o.State, o.Rollback)
	}
	if w, blocked := fh.router.get(); w != 0 || !blocked {
		t.Errorf("router = %d blocked %v", w, blocked)
	}
}

// While the store does not answer, the leader's plan does not advance (a
// rollback still happens), and health says why.
func TestFleetNoStepWhileTheStoreIsDown(t *testing.T) {
	fh := newFleetHarness(t, []guard.Step{{Weight: 500, Observe: time.Minute}, {Weight: 2500, Observe: time.Hour}}, true)
	fh.start()
	fh.fleet.set(func(f *fakeFleet) { f.storeErr = errors.New("etcd: context deadline exceeded") })
	fh.fled.set(judge.Proceed)
	for range 3 {
		fh.clock.Advance(time.Minute)
		if o := fh.wakeFleet(); o.Step != 0 {
			t.Fatalf("the plan advanced to step %d while the store was down", o.Step)
		}
	}
	h := fh.g.Health()
	if h.OverallHealth != "degraded" || h.StateStore.Up || h.StateStore.Problem == "" {
		t.Errorf("health with the store down = %s, store %+v; want degraded, down, the problem", h.OverallHealth, h.StateStore)
	}
	if v := gaugeValue(t, fh.reg, "canary_store_up"); v != 0 {
		t.Errorf("canary_store_up = %v; want 0", v)
	}
	fh.local.set(judge.RollbackLatency)
	if o := fh.wakeFleet(); o.State != "rolled_back" {
		t.Errorf("a rollback with the store down: %s; want rolled_back", o.State)
	}
}

// The fleet's judge gets the window figures of every replica and, as
// totals, the step counts of those whose evidence is the current step's.
func TestFleetSumsTheCurrentEvidence(t *testing.T) {
	fh := newFleetHarness(t, nil, true)
	// Counted after the judges started: this replica's own step counts.
	fh.src.setSnapshot(proxy.Snapshot{Canary: proxy.Stats{Requests: 100, Totals: proxy.Totals{Requests: 100, Errors: 1}}})
	fh.start()
	epoch := fh.fled.restartsEpoch(t, fh)
	counts := func(n, e uint64) guard.EvidenceCounts {
		return guard.EvidenceCounts{Canary: guard.Counts{Requests: n, Errors: e}, Stable: guard.Counts{Requests: 9 * n}}
	}
	window := guard.EvidenceWindow{Canary: guard.WindowCounts{Counts: guard.Counts{Requests: 50}}}
	fh.fleet.set(func(f *fakeFleet) {
		f.peers = []guard.Peer{
			{Evidence: guard.Evidence{Replica: "r2", Epoch: epoch, Release: "v1", Step: counts(40, 2), Window: window}},
			{Evidence: guard.Evidence{Replica: "r3", Epoch: epoch.Add(-time.Minute), Release: "v1", Step: counts(500, 50), Window: window}},
			{Evidence: guard.Evidence{Replica: "r4", Epoch: epoch, Release: "v0", Step: counts(700, 70), Window: window}},
		}
	})
	fh.wakeFleet()
	s := fh.fled.last()
	// This replica's counts since its judges restarted (100, 1) and r2's;
	// r3's are of an earlier step and r4's of another release.
	if s.Canary.Totals.Requests != 140 || s.Canary.Totals.Errors != 3 || s.Stable.Totals.Requests != 360 {
		t.Errorf("fleet totals = canary %+v, stable %+v; want this replica's and r2's only (140, 3; 360)", s.Canary.Totals, s.Stable.Totals)
	}
	if s.Canary.Requests != 100+3*50 {
		t.Errorf("fleet window canary requests = %d; want every replica's (250)", s.Canary.Requests)
	}
	if c := fh.g.Check(); c.Canary.Requests != 250 || len(c.Fleet.Replicas) != 4 {
		t.Errorf("check: canary %d requests, %d replicas; want the fleet's 250 and 4", c.Canary.Requests, len(c.Fleet.Replicas))
	}
}

// restartsEpoch returns the evidence epoch this replica publishes (after a
// publication).
func (j *recordingJudge) restartsEpoch(t *testing.T, fh *fleetHarness) time.Time {
	t.Helper()
	waitFor(t, func() bool {
		fh.fleet.mu.Lock()
		defer fh.fleet.mu.Unlock()
		return len(fh.fleet.published) > 0
	})
	fh.fleet.mu.Lock()
	defer fh.fleet.mu.Unlock()
	return fh.fleet.published[len(fh.fleet.published)-1].Epoch
}

// A replica that could not read its fleet's rollout at start serves with
// the canary blocked and refuses commands; it applies the rollout once the
// store answers.
func TestFleetBootWaitsForTheStore(t *testing.T) {
	cfg, clock := baseConfig(t)
	cfg.Weight = 3000
	fs, err := guard.NewFileStore(cfg.StateFile, nil)
	if err != nil {
		t.Fatal(err)
	}
	stored := guard.Record{Release: "v1", State: guard.StateFixed, Weight: 3000, Plan: guard.Plan{Weight: 3000}, Releases: []string{"v1"}}
	if _, err := fs.Save(context.Background(), stored, 0); err != nil {
		t.Fatal(err)
	}
	store := &unreachableStore{FileStore: fs, down: true}
	cfg.Store, cfg.Fleet = store, newFakeFleet()
	cfg.Now = clock.Now
	src, router := newFakeSource(), &fakeRouter{}
	g, err := guard.New(cfg, src, router, zerolog.Nop(), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	if w, blocked := router.get(); w != 0 || !blocked {
		t.Fatalf("before the rollout is read: router %d blocked %v; want the canary blocked", w, blocked)
	}
	if _, err := g.Promote("admin"); !errors.Is(err, guard.ErrStoreUnavailable) {
		t.Errorf("a command before the rollout is read = %v; want ErrStoreUnavailable", err)
	}
	if h := g.Health(); h.OverallHealth != "degraded" {
		t.Errorf("health = %s %q; want degraded", h.OverallHealth, h.Reasons)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx) }()
	defer func() { cancel(); <-done }()
	store.setDown(false)
	waitFor(t, func() bool { w, blocked := router.get(); return w == 3000 && !blocked })
	if o := g.Overview(); o.State != "fixed" || o.Weight != 30 || len(o.History) != 0 {
		t.Errorf("after the store answered: %s at %v, %d history entries; want the stored rollout as it was", o.State, o.Weight, len(o.History))
	}
}

// unreachableStore is a FileStore that does not answer while down.
type unreachableStore struct {
	*guard.FileStore
	mu   sync.Mutex
	down bool
}

func (s *unreachableStore) Kind() string { return "etcd" }

func (s *unreachableStore) setDown(on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.down = on
}

func (s *unreachableStore) Load(ctx context.Context) (guard.Record, guard.Revision, error) {
	s.mu.Lock()
	down := s.down
	s.mu.Unlock()
	if down {
		return guard.Record{}, 0, errors.New("etcd: context deadline exceeded")
	}
	return s.FileStore.Load(ctx)
}

func gaugeValue(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}

// TestNextFleet: the machine's fleet events. A replica joining its fleet
// takes the stored rollout as it is (no transition); a new CANARY_RELEASE
// or plan still decides. A new leader banks the running step's
// observation: up to now when its own judgment of the fleet vouches for
// the time since the last save, else up to the last save.
func TestNextFleet(t *testing.T) {
	stored := rec(guard.StateProgressing, 1, 2500, plan3)
	stored.Observation = guard.Observation{Banked: 10 * time.Second, Since: t0.Add(-40 * time.Second)}
	stored.SavedAt = t0.Add(-30 * time.Second)
	boot := func(release string, rules guard.Rules) (guard.Record, guard.Effects) {
		next, eff, err := guard.Next(stored, guard.Event{Kind: guard.EventBoot, At: t0, Who: "startup", Stored: true, Shared: true, Release: release}, rules)
		if err != nil {
			t.Fatal(err)
		}
		return next, eff
	}
	if next, eff := boot("v1", rules3); eff.Transition != nil || eff.Save != guard.SaveNone || !eff.Route || eff.RestartJudge ||
		next.Observation != stored.Observation || next.Weight != 2500 {
		t.Errorf("joining with a seen release: %+v, observation %+v; want the record as stored, routed, nothing saved", eff, next.Observation)
	}
	if next, eff := boot("v2", rules3); eff.Transition == nil || next.Release != "v2" || next.Step != 0 {
		t.Errorf("joining with a new CANARY_RELEASE: %+v; want that release started", next)
	}
	if _, eff := boot("v1", guard.Rules{Plan: fixed10}); eff.Transition == nil {
		t.Error("joining with another configured plan: no transition; want the plan adopted")
	}

	lead := func(at, vouched time.Time) time.Duration {
		next, eff, err := guard.Next(stored, guard.Event{Kind: guard.EventLead, At: at, Who: "guard", Vouched: vouched}, rules3)
		if err != nil || eff.Transition != nil || eff.Save != guard.SaveProgress {
			t.Fatalf("lead: %+v, %v; want no transition, a progress save", eff, err)
		}
		if !next.Observation.Restored || !next.Observation.Since.IsZero() {
			t.Errorf("lead: observation %+v; want banked and restored", next.Observation)
		}
		return next.Observation.Earned(at)
	}
	if got := lead(t0, time.Time{}); got != 20*time.Second {
		t.Errorf("a new leader that cannot vouch banks %v; want the 20s earned up to the last save", got)
	}
	if got := lead(t0, t0.Add(-35*time.Second)); got != 50*time.Second {
		t.Errorf("a new leader that vouches since before the save banks %v; want all 50s up to now", got)
	}
	if got := lead(t0, t0.Add(-10*time.Second)); got != 20*time.Second {
		t.Errorf("a new leader that vouches only since after the save banks %v; want 20s (a gap it cannot vouch for)", got)
	}
}
