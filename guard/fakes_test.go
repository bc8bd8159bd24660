package guard_test

import (
	"context"
	"errors"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/canaryd/canaryd/guard"
	"github.com/canaryd/canaryd/guard/integrity"
	"github.com/canaryd/canaryd/guard/judge"
	"github.com/canaryd/canaryd/proxy"
)

// fakeSource hands out hand-made snapshots (Latency.Counts left nil).
type fakeSource struct {
	errs chan struct{}

	mu             sync.Mutex
	snap           proxy.Snapshot
	stable, canary proxy.HealthStats
}

// newFakeSource starts with canary traffic in the window: the guard only
// observes a step while the canary gets requests.
func newFakeSource() *fakeSource {
	return &fakeSource{errs: make(chan struct{}), snap: proxy.Snapshot{Canary: proxy.Stats{Requests: 100}}}
}

func (s *fakeSource) Snapshot() proxy.Snapshot {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.snap
}

func (s *fakeSource) CanaryErrors() <-chan struct{} { return s.errs }

func (s *fakeSource) Health() (proxy.HealthStats, proxy.HealthStats) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stable, s.canary
}

func (s *fakeSource) setHealth(stable, canary proxy.HealthStats) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stable, s.canary = stable, canary
}

func (s *fakeSource) setSnapshot(snap proxy.Snapshot) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.snap = snap
}

// fakeRouter records what the guard steers.
type fakeRouter struct {
	mu      sync.Mutex
	weight  uint32
	blocked bool
}

func (r *fakeRouter) SetWeight(w uint32) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.weight = w
}

func (r *fakeRouter) SetRolledBack(on bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.blocked = on
}

func (r *fakeRouter) get() (uint32, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.weight, r.blocked
}

// fakeJudge returns whatever verdict the test set.
type fakeJudge struct {
	mu       sync.Mutex
	verdict  judge.Verdict
	gates    []judge.Gate
	calls    int
	restarts int
}

func (j *fakeJudge) Judge(proxy.Snapshot) judge.Result {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.calls++
	return judge.Result{Verdict: j.verdict, Reasons: []string{"fake says " + string(j.verdict)}, Gates: append([]judge.Gate(nil), j.gates...)}
}

func (j *fakeJudge) Restart(proxy.Snapshot) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.restarts++
}

func (j *fakeJudge) Name() string { return "fake" }

func (j *fakeJudge) set(v judge.Verdict, gates ...judge.Gate) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.verdict, j.gates = v, gates
}

func (j *fakeJudge) counts() (calls, restarts int) {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.calls, j.restarts
}

// fakeClock is a manual clock.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// fakeVerifier returns a settable integrity report.
type fakeVerifier struct {
	mu    sync.Mutex
	rep   integrity.Report
	calls int
}

func (v *fakeVerifier) Verify(context.Context) integrity.Report {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.calls++
	return v.rep
}

func (v *fakeVerifier) set(ok bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if ok {
		v.rep = integrity.Report{Verified: true, Status: integrity.StatusVerified, Summary: "2 files verified", FilesChecked: 2, FilesTotal: 2, Failures: []integrity.Failure{}}
	} else {
		v.rep = integrity.Report{Status: integrity.StatusFailed, Summary: "1 of 2 files failed", FilesChecked: 2, FilesTotal: 2,
			Failures: []integrity.Failure{{Path: "bin/app", Problem: "checksum mismatch"}}}
	}
}

// faultyStore is a real FileStore whose saves fail while broken is set, as
// on a read-only or full disk (the end-to-end tests break a real disk).
type faultyStore struct {
	*guard.FileStore
	mu     sync.Mutex
	broken bool
	saves  int // attempts, failed or not
}

func (s *faultyStore) Save(ctx context.Context, rec guard.Record, prev guard.Revision) (guard.Revision, error) {
	s.mu.Lock()
	s.saves++
	broken := s.broken
	s.mu.Unlock()
	if broken {
		return 0, errors.New("write state.json.tmp-1: no space left on device")
	}
	return s.FileStore.Save(ctx, rec, prev)
}

func (s *faultyStore) setBroken(on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.broken = on
}

func (s *faultyStore) failing() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.broken
}

func (s *faultyStore) attempts() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.saves
}

// harness is one guard with its fakes.
type harness struct {
	t      testing.TB
	g      *guard.Guard
	store  *faultyStore
	cfg    guard.Config
	src    *fakeSource
	router *fakeRouter
	judge  *fakeJudge
	clock  *fakeClock
	reg    *prometheus.Registry
	cancel context.CancelFunc
	done   chan error
}

// baseConfig is a config with a state file in a fresh folder, a manual clock
// and an evaluation interval long enough that only canary-error wakes judge.
func baseConfig(t testing.TB) (guard.Config, *fakeClock) {
	clock := &fakeClock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	return guard.Config{
		Release:      "v1",
		Weight:       1000,
		SLO:          judge.SLO{ErrorRate: 0.01, P95: 500 * time.Millisecond, MinRequests: 100},
		Window:       time.Minute,
		EvalInterval: time.Hour,
		StateFile:    filepath.Join(t.TempDir(), "state.json"),
		Now:          clock.Now,
	}, clock
}

// newHarness builds a guard (without running it).
func newHarness(t testing.TB, cfg guard.Config, clock *fakeClock) *harness {
	t.Helper()
	h := &harness{t: t, cfg: cfg, src: newFakeSource(), router: &fakeRouter{}, judge: &fakeJudge{verdict: judge.Hold}, clock: clock, reg: prometheus.NewRegistry()}
	if cfg.JudgeImpl == nil {
		h.cfg.JudgeImpl = h.judge
	} else {
		h.judge = cfg.JudgeImpl.(*fakeJudge)
	}
	if cfg.Store == nil {
		fs, err := guard.NewFileStore(cfg.StateFile, cfg.Now)
		if err != nil {
			t.Fatalf("NewFileStore: %v", err)
		}
		h.store = &faultyStore{FileStore: fs}
		h.cfg.Store = h.store
	}
	g, err := guard.New(h.cfg, h.src, h.router, zerolog.Nop(), h.reg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	h.g = g
	return h
}

// start runs the guard until the test ends.
func (h *harness) start() {
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel, h.done = cancel, make(chan error, 1)
	go func() { h.done <- h.g.Run(ctx) }()
	h.t.Cleanup(func() { h.stop() })
	h.waitJudged(1) // Run judges once at start
}

// stop ends Run and returns its error.
func (h *harness) stop() error {
	if h.cancel == nil {
		return nil
	}
	h.cancel()
	h.cancel = nil
	select {
	case err := <-h.done:
		return err
	case <-time.After(5 * time.Second):
		h.t.Fatal("Run did not return after cancel")
		return nil
	}
}

// waitJudged waits until the judge has been called at least n times in all,
// then for that evaluation to be applied (the judge is called under the
// guard's lock, which Overview takes) and saved (Overview says persisted),
// unless the harness's store is failing on purpose.
func (h *harness) waitJudged(n int) {
	h.t.Helper()
	waitFor(h.t, func() bool { c, _ := h.judge.counts(); return c >= n })
	if h.store != nil && h.store.failing() {
		h.g.Overview()
		return
	}
	waitFor(h.t, func() bool { return h.g.Overview().Persisted })
}

// wake sends one canary-error wake-up and waits for its evaluation.
func (h *harness) wake() guard.Overview {
	h.t.Helper()
	c, _ := h.judge.counts()
	select {
	case h.src.errs <- struct{}{}:
	case <-time.After(5 * time.Second):
		h.t.Fatal("guard did not take the canary-error wake-up")
	}
	h.waitJudged(c + 1)
	return h.g.Overview()
}

// waitFor polls cond until it holds or 5s pass.
func waitFor(t testing.TB, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 5s")
		}
		time.Sleep(time.Millisecond)
	}
}

// must fails the test on a control's error.
func (h *harness) must(o guard.Overview, err error) guard.Overview {
	h.t.Helper()
	if err != nil {
		h.t.Fatal(err)
	}
	return o
}
