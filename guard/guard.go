package guard

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/canaryd/canaryd/guard/integrity"
	"github.com/canaryd/canaryd/guard/judge"
	"github.com/canaryd/canaryd/proxy"
)

// ErrStateFile means the state file's location cannot be used (its folder is
// missing or not writable, or the path is a folder). The error's message
// names the path; cmd maps it to exit status 2 naming CANARY_STATE_FILE.
var ErrStateFile = errors.New("state file is not usable")

// historyLimit bounds the history kept in memory and in the state file.
const historyLimit = 200

// Defaults for zero Config values.
const (
	defaultEvalInterval      = time.Second
	defaultIntegrityInterval = 5 * time.Minute
	defaultWindow            = 5 * time.Minute
)

// Validate reports the first problem with c as one sentence.
func (c Config) Validate() error {
	if c.StateFile == "" {
		return errors.New("state file path is required")
	}
	if c.Weight > fullWeight {
		return fmt.Errorf("weight %s%% is above 100", formatPercent(c.Weight))
	}
	if err := validateSteps(c.Steps); err != nil {
		return fmt.Errorf("plan: %w", err)
	}
	if c.JudgeImpl == nil {
		switch c.Judge {
		case "", "sequential", "window":
		default:
			return fmt.Errorf("judge %q is neither sequential nor window", c.Judge)
		}
	}
	if c.SLO.ErrorRate < 0 || c.SLO.ErrorRate > 1 {
		return fmt.Errorf("error-rate objective %v must lie in [0, 1]", c.SLO.ErrorRate)
	}
	if c.SLO.P95 < 0 || c.Window < 0 || c.EvalInterval < 0 || c.IntegrityInterval < 0 {
		return errors.New("p95 objective, window and intervals must not be negative")
	}
	return nil
}

// Guard judges the canary and runs the rollout. Create it with New. Its
// methods are safe for concurrent use; the controls and views are called by
// admin while Run judges.
type Guard struct {
	cfg    Config
	src    Source
	router Router
	log    zerolog.Logger
	judge  judge.Judge
	now    func() time.Time
	verify func(context.Context) integrity.Report
	m      *metrics

	// mu protects every field below, and serialises calls into judge.
	mu     sync.Mutex
	state  State
	step   int    // index into cfg.Steps; 0 without a plan
	weight uint32 // hundredths of a percent, as last given to the router
	// stepStartedAt is when the current step (or state) began. healthySince
	// is when the current run of proceed verdicts began (zero: none). credit
	// is observation earned before a restart; restored marks that the judge
	// has not said proceed since that restart.
	stepStartedAt time.Time
	healthySince  time.Time
	credit        time.Duration
	restored      bool
	rollback      *RollbackRecord
	history       []Transition

	// Results of the last evaluation, served by the views.
	evaluated    bool
	last         judge.Result
	lastAt       time.Time
	stableView   BackendView
	canaryView   BackendView
	stableHealth proxy.HealthStats
	canaryHealth proxy.HealthStats
	integ        integrity.Report

	stateFileProblem string
	persistErr       error
	persistedAt      time.Time // when the state file was last written
}

// New validates cfg, restores the persisted state (or starts fresh), applies
// the resulting weight to router and registers the guard's collectors with
// reg (nil: not registered). A state file location that cannot be written is
// an error wrapping ErrStateFile. With an IntegrityManifest the release is
// verified before New returns, and a failing release starts rolled back.
func New(cfg Config, src Source, router Router, log zerolog.Logger, reg prometheus.Registerer) (*Guard, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("guard: %w", err)
	}
	if src == nil || router == nil {
		return nil, errors.New("guard: source and router are required")
	}
	if cfg.EvalInterval == 0 {
		cfg.EvalInterval = defaultEvalInterval
	}
	if cfg.IntegrityInterval == 0 {
		cfg.IntegrityInterval = defaultIntegrityInterval
	}
	if cfg.Window == 0 {
		cfg.Window = defaultWindow
	}
	if cfg.IntegrityManifest != "" && cfg.IntegrityRoot == "" {
		cfg.IntegrityRoot = filepath.Dir(cfg.IntegrityManifest)
	}
	cfg.Steps = append([]Step(nil), cfg.Steps...)
	if err := checkWritable(cfg.StateFile); err != nil {
		return nil, err
	}
	removeStaleTemps(cfg.StateFile)
	g := &Guard{
		cfg:    cfg,
		src:    src,
		router: router,
		log:    log.With().Str("component", "guard").Logger(),
		judge:  cfg.JudgeImpl,
		now:    cfg.Now,
		verify: cfg.VerifyIntegrity,
		integ:  integrity.Disabled(),
		last:   judge.Result{Verdict: judge.Hold, Reasons: []string{"not judged yet"}},
	}
	if g.now == nil {
		g.now = time.Now
	}
	if g.judge == nil {
		if cfg.Judge == "window" {
			g.judge = judge.NewWindow(cfg.SLO)
		} else {
			g.judge = judge.NewSequential(cfg.SLO)
		}
	}
	if g.verify == nil {
		v := integrity.Verifier{Manifest: cfg.IntegrityManifest, Root: cfg.IntegrityRoot}
		g.verify = v.Verify
	}
	m, err := newMetrics(reg, cfg.SLO)
	if err != nil {
		return nil, fmt.Errorf("guard: %w", err)
	}
	g.m = m
	if cfg.IntegrityManifest != "" {
		g.integ = g.verify(context.Background())
	}
	g.stableHealth, g.canaryHealth = src.Health()

	g.mu.Lock()
	defer g.mu.Unlock()
	g.restoreLocked()
	g.applyIntegrityLocked(g.integ)
	g.updateMetricsLocked()
	return g, nil
}

// Run judges every EvalInterval (and at once after a canary error), drives the
// plan and re-verifies integrity until ctx ends; it persists the state before
// it returns. It returns nil when ctx ends, or the final persist's error.
func (g *Guard) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	if g.cfg.IntegrityManifest != "" {
		wg.Go(func() { g.integrityLoop(ctx) })
	}
	tick := time.NewTicker(g.cfg.EvalInterval)
	defer tick.Stop()
	errs := g.src.CanaryErrors()
	g.evaluate()
	for {
		select {
		case <-ctx.Done():
			wg.Wait()
			g.mu.Lock()
			defer g.mu.Unlock()
			if err := g.persistLocked(); err != nil {
				return fmt.Errorf("guard: final save: %w", err)
			}
			return nil
		case <-tick.C:
			g.evaluate()
		case <-errs:
			g.evaluate()
		}
	}
}

// integrityLoop re-verifies the release every IntegrityInterval.
func (g *Guard) integrityLoop(ctx context.Context) {
	t := time.NewTicker(g.cfg.IntegrityInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			rep := g.verify(ctx)
			if ctx.Err() != nil {
				return // a cancelled verification proves nothing
			}
			g.mu.Lock()
			g.applyIntegrityLocked(rep)
			g.updateMetricsLocked()
			g.mu.Unlock()
		}
	}
}

// evaluate takes one snapshot, judges it and acts on the verdict. A panic in
// the judge is logged and the evaluation skipped, so one bad snapshot does
// not take the guard down.
func (g *Guard) evaluate() {
	snap := g.src.Snapshot()
	stableH, canaryH := g.src.Health()
	g.mu.Lock()
	defer g.mu.Unlock()
	defer func() {
		if r := recover(); r != nil {
			g.log.Error().Interface("panic", r).Msg("evaluation failed")
		}
	}()
	res := g.judge.Judge(snap)
	if res.Reasons == nil {
		res.Reasons = []string{}
	}
	now := g.now()
	prev := g.recommendationLocked()
	g.last, g.lastAt, g.evaluated = res, now, true
	g.stableView, g.canaryView = backendView(&snap.Stable), backendView(&snap.Canary)
	g.stableHealth, g.canaryHealth = stableH, canaryH

	if res.Verdict.IsRollback() && g.state != StateRolledBack {
		g.rollbackLocked(string(res.Verdict), whoGuard, res.Gates)
	} else if g.state == StateProgressing {
		v := res.Verdict
		if !g.canaryObservableLocked(&snap) {
			// A step is observed under traffic: a canary that fails its
			// health checks (and so gets none) or has had no request for
			// a whole window proves nothing, however good its past.
			v = judge.Hold
		}
		g.observeLocked(v, now)
		if now.Sub(g.persistedAt) >= progressPersistEvery {
			// Save the earned observation time now and then, so a kill -9
			// loses at most this much of it.
			if err := g.persistLocked(); err != nil {
				g.log.Error().Err(err).Str("state_file", g.cfg.StateFile).Msg("cannot save the rollout state")
			}
		}
	}
	if rec := g.recommendationLocked(); rec != prev {
		g.log.Info().Str("recommendation", rec).Str("previous", prev).Str("verdict", string(res.Verdict)).
			Strs("reasons", res.Reasons).Str("state", g.state.String()).Msg("verdict changed")
	}
	g.updateMetricsLocked()
}

// progressPersistEvery is how often a running step's earned observation
// time is saved between transitions.
const progressPersistEvery = 5 * time.Second

// canaryObservableLocked reports whether the canary is being observed: it
// passes its health checks (when enabled) and had requests in the window.
func (g *Guard) canaryObservableLocked(snap *proxy.Snapshot) bool {
	if h := g.canaryHealth; h.Enabled && !h.Healthy {
		return false
	}
	return snap.Canary.Requests > 0
}

// observeLocked advances the plan when the current step has been observed
// healthy for long enough.
func (g *Guard) observeLocked(v judge.Verdict, now time.Time) {
	st := g.cfg.Steps[g.step]
	switch {
	case v == judge.Proceed:
		if g.healthySince.IsZero() {
			g.healthySince = now
			g.restored = false
		}
		if g.observedLocked(now) < st.Observe {
			return
		}
		reason := fmt.Sprintf("step %d (%s%%) observed healthy for %s", g.step+1, formatPercent(st.Weight), st.Observe)
		if g.step+1 < len(g.cfg.Steps) {
			g.transition(StateProgressing, g.step+1, g.cfg.Steps[g.step+1].Weight, reason, whoPlan)
		} else {
			g.transition(StateComplete, g.step, fullWeight, reason+"; plan complete", whoPlan)
		}
	case v == judge.Hold && g.restored:
		// The judge is gathering evidence again after a restart: keep the
		// observation the step had earned, but do not add to it.
		g.healthySince = time.Time{}
	default:
		g.healthySince, g.credit, g.restored = time.Time{}, 0, false
	}
}

// observedLocked is how long the current step has been observed healthy.
func (g *Guard) observedLocked(now time.Time) time.Duration {
	d := g.credit
	if !g.healthySince.IsZero() {
		d += now.Sub(g.healthySince)
	}
	return d
}

// rollbackLocked moves to rolled_back for reason, recording the evidence.
func (g *Guard) rollbackLocked(reason, who string, gates []judge.Gate) {
	g.rollback = &RollbackRecord{
		At:     g.now(),
		Reason: reason,
		Who:    who,
		Canary: g.canaryView,
		Gates:  append([]judge.Gate{}, gates...),
	}
	g.transition(StateRolledBack, g.step, 0, reason, who)
}

// applyIntegrityLocked stores an integrity report and rolls back on FAILED.
func (g *Guard) applyIntegrityLocked(rep integrity.Report) {
	prev := g.integ.Status
	g.integ = rep
	if rep.Status != prev {
		ev := g.log.Info()
		if rep.Status == integrity.StatusFailed {
			ev = g.log.Error()
		}
		ev.Str("status", rep.Status).Str("previous", prev).Str("summary", rep.Summary).
			Int("failures", len(rep.Failures)).Msg("integrity status changed")
	}
	if rep.Status == integrity.StatusFailed && g.state != StateRolledBack {
		g.rollbackLocked(recRollbackIntegrity, whoGuard, []judge.Gate{integrityGate(rep)})
	}
}

// transition is the one place the rollout changes state: it steers the
// router, restarts the judge's evidence when the canary's traffic changes,
// appends to the history, logs, updates the metrics and persists.
func (g *Guard) transition(to State, step int, weight uint32, reason, who string) {
	now := g.now()
	from, fromWeight, fromStep := g.state, g.weight, g.step
	g.state, g.step, g.weight = to, step, weight

	if to.blocksCanary() {
		g.router.SetRolledBack(true)
		g.router.SetWeight(weight)
	} else {
		g.router.SetWeight(weight)
		g.router.SetRolledBack(false)
	}
	if to != StateRolledBack {
		g.rollback = nil
	}
	if from == StateHeld && to != StateHeld {
		g.stateFileProblem = "" // an operator has decided
	}
	changed := from != to || fromWeight != weight || fromStep != step
	if changed {
		g.stepStartedAt = now
		g.healthySince, g.credit, g.restored = time.Time{}, 0, false
	}
	// The judge's evidence is about the canary at one weight: a pause keeps
	// it, a new weight or step, a reset or a lifted block starts afresh.
	trafficChanged := fromWeight != weight || fromStep != step
	fresh := reason == reasonReset || from.blocksCanary() || who == whoStartup
	if !to.blocksCanary() && (fresh || (weight > 0 && trafficChanged)) {
		g.judge.Restart(g.src.Snapshot())
	}
	if from != StateRolledBack && to == StateRolledBack {
		g.m.rollbacks.WithLabelValues(reason).Inc()
	}

	g.history = append(g.history, Transition{
		At:        now,
		From:      percent(fromWeight),
		To:        percent(weight),
		FromState: from.String(),
		ToState:   to.String(),
		Reason:    reason,
		Who:       who,
	})
	if n := len(g.history) - historyLimit; n > 0 {
		g.history = append([]Transition(nil), g.history[n:]...)
	}

	ev := g.log.Info()
	if to == StateRolledBack || to == StateHeld {
		ev = g.log.Warn()
	}
	ev = ev.Str("from_state", from.String()).Str("to_state", to.String()).
		Float64("from_weight", percent(fromWeight)).Float64("to_weight", percent(weight)).
		Str("reason", reason).Str("who", who).Str("release", g.cfg.Release)
	if len(g.cfg.Steps) > 0 {
		ev = ev.Int("step", step)
	}
	ev.Msg("rollout transition")

	g.updateMetricsLocked()
	if err := g.persistLocked(); err != nil {
		g.log.Error().Err(err).Str("path", g.cfg.StateFile).Msg("cannot save the rollout state")
	}
}

// reasonReset is the reason of a Reset transition.
const reasonReset = "reset"

// recommendationLocked is DESIGN §4's recommendation for the current state.
func (g *Guard) recommendationLocked() string {
	switch g.state {
	case StateRolledBack:
		if g.rollback != nil && g.rollback.Reason != "" {
			return g.rollback.Reason
		}
		return recRollbackManual
	case StateComplete:
		return recComplete
	case StatePaused, StateHeld:
		return recHold
	}
	if h := g.canaryHealth; h.Enabled && !h.Healthy {
		return recHold // it gets no traffic until it recovers
	}
	if g.last.Verdict == judge.Proceed {
		return recProceed
	}
	return recHold
}

// backendView summarises one backend's window figures. Quantiles are only
// asked of a non-empty histogram.
func backendView(s *proxy.Stats) BackendView {
	v := BackendView{Requests: s.Requests, Errors: s.Errors, ErrorRate: s.ErrorRate()}
	if len(s.Latency.Counts) > 0 {
		v.P50Ms = ms(s.Latency.Quantile(0.50))
		v.P95Ms = ms(s.Latency.Quantile(0.95))
		v.P99Ms = ms(s.Latency.Quantile(0.99))
	}
	return v
}

// ms converts a duration into fractional milliseconds.
func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
