package guard

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/canaryd/canaryd/guard/integrity"
	"github.com/canaryd/canaryd/guard/judge"
	"github.com/canaryd/canaryd/proxy"
	"github.com/canaryd/canaryd/split"
)

// Defaults for zero Config values.
const (
	// DefaultEvalInterval is how often the guard judges.
	DefaultEvalInterval = time.Second
	// DefaultIntegrityInterval is how often the release's files are
	// verified again.
	DefaultIntegrityInterval = 5 * time.Minute
	// DefaultMetricGateInterval is how often the metric gates are checked.
	DefaultMetricGateInterval = 30 * time.Second
	// defaultWindow is the proxy's: the guard judges the window it measures.
	defaultWindow = proxy.DefaultWindow
)

// The integrations' bounds.
const (
	// confirmTimeout bounds one request to the confirmation endpoint; no
	// answer within it holds the plan like a refusal.
	confirmTimeout = 10 * time.Second
	// metricCheckTimeout bounds one check of the metric gates.
	metricCheckTimeout = 20 * time.Second
)

// Saving.
const (
	// progressSaveEvery is how often a running step's earned observation
	// is saved between transitions, so a kill -9 loses at most this much.
	progressSaveEvery = 5 * time.Second
	// saveRetryMin and saveRetryMax bound the backoff between retries of
	// a failed save.
	saveRetryMin = 100 * time.Millisecond
	saveRetryMax = 5 * time.Second
	// storeTimeout bounds one store operation.
	storeTimeout = 10 * time.Second
	// maxPending bounds the unsaved changes kept for a replay (Rebase).
	maxPending = historyLimit
	// maxRebases bounds how often one save recomputes its change on a newer
	// record before it counts as failed (and is retried later).
	maxRebases = 5
	// publishEvery is how often a replica of a fleet publishes its evidence
	// when nothing urgent happens.
	publishEvery = time.Second
	// bootTimeout bounds a replica's first read of its fleet's rollout at
	// start; when the store does not answer in time, it serves with the
	// canary blocked and reads again in the background.
	bootTimeout = 3 * time.Second
)

// Guard judges the canary and runs the rollout. Create it with New. Its
// methods are safe for concurrent use; the controls and views are called by
// admin while Run judges.
//
// The rollout in force lives in memory (rec) and is what the splitter
// follows; every change is applied there at once and then saved to the
// store. A change that cannot be saved stays in force and is saved later
// (see ErrNotPersisted).
type Guard struct {
	cfg    Config
	rules  Rules
	src    Source
	router Router
	log    zerolog.Logger
	judge  judge.Judge
	now    func() time.Time
	verify func(context.Context) integrity.Report
	m      *metrics
	store  Store
	// fleet is the fleet this guard is a replica of; nil for a single
	// canaryd.
	fleet Fleet
	// id tells this guard's writes apart from other writers' (Record.Writer).
	id string
	// kick wakes the store loop to schedule the retry of a save that
	// failed elsewhere; saveNow asks it to save (see requestSave).
	kick, saveNow chan struct{}
	// wakeEval asks Run for an evaluation now (the confirmation endpoint
	// accepted an advance); askNow wakes the confirmation loop.
	wakeEval, askNow chan struct{}

	// saveMu serialises the store's I/O (saves, loads, quarantines). It is
	// taken before mu, and never while mu is held: mu is never held during
	// I/O, so neither the splitter's steering nor the views wait for a slow
	// disk or store.
	saveMu sync.Mutex

	// mu protects every field below, and serialises calls into the judges.
	mu sync.Mutex
	// booted is false while a replica of a fleet has not read the fleet's
	// rollout yet (the store did not answer at start): rec is then a
	// placeholder that blocks the canary, and nothing is judged or saved.
	booted bool
	// bootErr is why the rollout could not be read yet; bootRetryAt when
	// the store loop reads again, bootFailures how often it failed.
	bootErr      error
	bootRetryAt  time.Time
	bootFailures uint64
	// forceSave asks the store loop's next save to write even without a
	// change (the earned observation).
	forceSave bool
	// rec is the rollout in force. Records are values whose slices are
	// never modified in place (Next clones them), so a copy can be read
	// without mu.
	rec Record
	// rev is the store's revision that the next save is conditioned on:
	// the record rec was last saved as or adopted from.
	rev Revision
	// seq counts changes that must be saved; savedSeq is the last one
	// saved. Changes to the observation alone do not count.
	seq, savedSeq uint64
	// pending are the changes made since rev, replayed on a newer record
	// when the store changed under them (Rebase).
	pending []pendingChange
	// awaiting holds, for each command waiting for its save, the error
	// that dropped it during a rebase (nil while it stands).
	awaiting map[uint64]error
	nextID   uint64
	writes   uint64
	save     saveStatus

	// The judges' current evidence: it counts from the totals baseStable
	// and baseCanary, taken when the judges restarted for the record's
	// EvidenceSince epoch (of release epochRelease).
	baseStable, baseCanary proxy.Totals
	epoch                  time.Time
	epochRelease           string

	// A replica of a fleet judges twice: its own evidence with judge (at
	// its share of alpha, computed for localR replicas; it may only roll
	// back), and the fleet's summed evidence with fleetJudge (at the
	// leader's share; its verdicts run the plan on the leader and are
	// shown everywhere). leading is whether this replica led at the last
	// evaluation; own is the evidence it last built, republish says that
	// its judges restarted since it last published.
	fleetJudge judge.Judge
	localR     int
	leading    bool
	own        Evidence
	republish  bool
	// vouched is when the fleet judge's verdicts began to say proceed
	// (the canary observable) without a break since; zero otherwise.
	vouched time.Time

	// confirm is where the confirmation endpoint stands on the advance the
	// plan waits to make (this guard asks while it runs the plan).
	confirm confirmState
	// metricRestart asks the next metric-gate check to forget the gates'
	// time outside their bounds (the judges restarted); metricGen counts
	// those restarts, so that a check begun before one does not act.
	metricRestart bool
	metricGen     uint64

	// The last evaluation's findings.
	evaluation
}

// confirmState is the confirmation gate as the guard that asks sees it.
type confirmState struct {
	// asked is the advance last asked about (zero: none), at askedAt on
	// the real clock; granted says the endpoint accepted it, answer is its
	// last answer (or why there was none).
	asked   Proposal
	askedAt time.Time
	granted bool
	answer  string
}

// evaluation is what the guard last found: the judge's result, the
// window's figures, the health checks and the release's integrity.
type evaluation struct {
	last         judge.Result
	lastAt       time.Time
	stableView   BackendView
	canaryView   BackendView
	mirrorView   MirrorView // this replica's, even in a fleet
	stableHealth proxy.HealthStats
	canaryHealth proxy.HealthStats
	integ        integrity.Report
	// metric are the metric gates' states at their last check (nil
	// without metric gates; "not checked yet" before the first).
	metric []MetricGate
}

// pendingChange is an applied change that is not saved yet; notice is its
// transition's, announced once it is saved (nil: it moved nothing).
type pendingChange struct {
	id     uint64
	seq    uint64
	ev     Event
	basis  Record
	notice *Notice
}

// saveStatus is how saving goes.
type saveStatus struct {
	// err is the last failed save's error; nil after a success.
	err error
	// failures counts saves that failed in a row; retryAt is when the next
	// retry is due (on the real clock: Run's timer fires it).
	failures uint64
	retryAt  time.Time
	// unsavedSince is when the oldest unsaved change (or the first failure)
	// happened; zero while everything is saved.
	unsavedSince time.Time
	// lastAttempt is when the last save began.
	lastAttempt time.Time
}

// New validates cfg, opens the store (a FileStore at cfg.StateFile unless
// cfg.Store is set), restores the stored rollout (or starts fresh), applies
// it to router and registers the guard's collectors with reg (nil: not
// registered). A state file location that cannot be written is an error
// wrapping ErrStateFile, an invalid cfg.Release one wrapping ErrRelease.
// With an IntegrityManifest the release is verified before New returns, and
// a failing release starts rolled back. A first save that fails does not
// stop New: Run retries it.
func New(cfg Config, src Source, router Router, log zerolog.Logger, reg prometheus.Registerer) (*Guard, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("guard: %w", err)
	}
	if src == nil || router == nil {
		return nil, errors.New("guard: source and router are required")
	}
	if cfg.EvalInterval == 0 {
		cfg.EvalInterval = DefaultEvalInterval
	}
	if cfg.IntegrityInterval == 0 {
		cfg.IntegrityInterval = DefaultIntegrityInterval
	}
	if cfg.Window == 0 {
		cfg.Window = defaultWindow
	}
	if cfg.MetricGateInterval == 0 {
		cfg.MetricGateInterval = DefaultMetricGateInterval
	}
	if cfg.IntegrityManifest != "" && cfg.IntegrityRoot == "" {
		cfg.IntegrityRoot = filepath.Dir(cfg.IntegrityManifest)
	}
	cfg.Steps = append([]Step(nil), cfg.Steps...)
	now := cfg.Now
	if now == nil {
		now = time.Now
	}
	store := cfg.Store
	if store == nil {
		fs, err := NewFileStore(cfg.StateFile, now)
		if err != nil {
			return nil, err
		}
		store = fs
	}
	id := make([]byte, 6)
	rand.Read(id)
	g := &Guard{
		cfg: cfg,
		rules: Rules{Plan: Plan{Steps: cfg.Steps, Weight: cfg.Weight}, Confirm: cfg.Confirmer != nil,
			Deadline: cfg.ProgressDeadline, DeadlineAction: cfg.DeadlineAction},
		src:      src,
		router:   router,
		log:      log.With().Str("component", "guard").Logger(),
		judge:    cfg.JudgeImpl,
		now:      now,
		verify:   cfg.VerifyIntegrity,
		store:    store,
		fleet:    cfg.Fleet,
		id:       hex.EncodeToString(id),
		kick:     make(chan struct{}, 1),
		saveNow:  make(chan struct{}, 1),
		wakeEval: make(chan struct{}, 1),
		askNow:   make(chan struct{}, 1),
		awaiting: map[uint64]error{},
		evaluation: evaluation{
			integ: integrity.Disabled(),
			last:  judge.Result{Verdict: judge.Hold, Reasons: []string{"not judged yet"}},
		},
	}
	if cfg.MetricGates != nil {
		for _, n := range cfg.MetricGates.Names() {
			g.metric = append(g.metric, MetricGate{Name: n, Detail: "not checked yet"})
		}
	}
	if g.cfg.ReplicaID == "" {
		g.cfg.ReplicaID, _ = os.Hostname()
	}
	if g.fleet != nil {
		// One replica until the fleet is known: its share is rebuilt as soon
		// as more replicas show up, before it has evidence (see
		// refreshShareLocked).
		leader, replica := cfg.SLO.FleetShares(1)
		g.localR = 1
		g.judge = g.build(false, replica)
		g.fleetJudge = g.build(true, leader)
	} else if g.judge == nil {
		g.judge = g.build(false, cfg.SLO)
	}
	if g.verify == nil {
		v := integrity.Verifier{Manifest: cfg.IntegrityManifest, Root: cfg.IntegrityRoot}
		g.verify = v.Verify
	}
	fleetName, replica := g.cfg.ReplicaID, g.cfg.ReplicaID
	if g.fleet != nil {
		fleetName, replica = g.fleet.Name(), g.fleet.Self()
	}
	m, err := newMetrics(reg, cfg.SLO, fleetName, replica, store.Kind())
	if err != nil {
		return nil, fmt.Errorf("guard: %w", err)
	}
	g.m = m
	if cfg.IntegrityManifest != "" {
		g.integ = g.verify(context.Background())
	}
	g.stableHealth, g.canaryHealth = src.Health()

	if g.boot() {
		g.applyIntegrity(g.integ)
		g.flush(false)
	}
	return g, nil
}

// build makes a judge for slo: the configured kind, or cfg.NewJudge's.
func (g *Guard) build(fleet bool, slo judge.SLO) judge.Judge {
	switch {
	case g.cfg.NewJudge != nil && g.fleet != nil:
		return g.cfg.NewJudge(fleet, slo)
	case g.cfg.Judge == "window":
		return judge.NewWindow(slo)
	}
	return judge.NewSequential(slo)
}

// self is this replica's id.
func (g *Guard) self() string {
	if g.fleet != nil {
		return g.fleet.Self()
	}
	return ""
}

// boot loads the stored record and decides the rollout (EventBoot). It
// returns false when a replica of a fleet could not read the store: it
// then serves with the canary blocked (a placeholder record, never saved)
// and the store loop boots again until the store answers.
func (g *Guard) boot() bool {
	timeout := storeTimeout
	if g.fleet != nil {
		timeout = bootTimeout
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	ev := Event{Kind: EventBoot, At: g.now(), Who: whoStartup, Release: g.cfg.Release, Shared: g.fleet != nil, Replica: g.self()}
	g.mu.Lock()
	first := !g.booted && g.bootFailures == 0
	g.mu.Unlock()
	if g.fleet != nil && first {
		if err := g.fleet.StoreErr(); err != nil {
			// The store did not answer a moment ago (the replica's
			// registration at start): serve at once, read in the background.
			g.waitForStore(err)
			return false
		}
	}
	rec, rev, err := g.store.Load(ctx)
	switch {
	case err == nil:
		ev.Stored = true
	case errors.Is(err, ErrNoRecord):
	case errors.Is(err, ErrCorruptRecord):
		kept := ""
		if where, qerr := g.store.Quarantine(ctx); qerr != nil {
			kept = fmt.Sprintf("could not be kept aside (%v)", qerr)
		} else {
			kept, rev = "was kept aside as "+where, 0
		}
		ev.Problem = fmt.Sprintf("the stored rollout state could not be read (%v) and %s; the canary is held at weight 0 until an operator resets, resumes or sets a weight", err, kept)
		g.log.Error().AnErr("cause", err).Str("kept", kept).Str("store", g.store.Kind()).
			Msg("STORED STATE UNREADABLE: canary held at weight 0 until an operator acts")
	case g.fleet != nil:
		g.waitForStore(err)
		return false
	default:
		ev.Problem = fmt.Sprintf("the stored rollout state could not be read (%v); the canary is held at weight 0 until an operator resets, resumes or sets a weight", err)
		g.log.Error().Err(err).Str("store", g.store.Kind()).Msg("STORED STATE UNREADABLE: canary held at weight 0 until an operator acts")
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.booted && g.bootFailures > 0 {
		g.log.Info().Uint64("failed_reads", g.bootFailures).Msg("read the fleet's rollout from the store: serving it")
	}
	g.booted, g.bootErr = true, nil
	g.rec, g.rev = rec, rev
	next, eff, _ := Next(rec, ev, g.rules)
	g.applyLocked(ev, next, eff)
	return true
}

// waitForStore keeps the canary blocked while a replica cannot read its
// fleet's rollout, and schedules the next read.
func (g *Guard) waitForStore(err error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.bootErr = err
	g.bootFailures++
	backoff := min(saveRetryMin<<min(g.bootFailures-1, 16), saveRetryMax)
	g.bootRetryAt = time.Now().Add(backoff)
	if !g.rec.State.BlocksCanary() || g.bootFailures == 1 {
		g.rec = Record{State: StateHeld, Problem: "waiting to read the fleet's rollout from the " + g.store.Kind() + " store: the canary is blocked until then"}
		g.router.SetRolledBack(true)
		g.router.SetWeight(0)
	}
	if n := g.bootFailures; n <= 3 || n%60 == 0 {
		g.log.Error().Err(err).Str("store", g.store.Kind()).Uint64("failed_reads", n).Dur("retry_in", backoff).
			Msg("cannot read the fleet's rollout: serving with the canary blocked until the store answers")
	}
	g.updateMetricsLocked()
}

// Run judges every EvalInterval (and at once after a canary error), drives the
// plan, re-verifies integrity, retries failed saves and applies changes
// other writers store, until ctx ends; then it saves the state a last time.
// It returns nil, or an error wrapping ErrNotPersisted when a change in
// force could not be saved.
//
// Judging and the store's I/O run apart: the judging loop (ticks, canary
// errors, the fleet's notices) never waits for the store, so a rollback is
// decided and routed at once even while a save hangs on an unreachable
// store; the store loop saves, retries, applies other writers' changes and,
// for a replica that started without its store, reads the fleet's rollout.
func (g *Guard) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	if g.cfg.IntegrityManifest != "" {
		wg.Go(func() { g.integrityLoop(ctx) })
	}
	if g.cfg.MetricGates != nil {
		wg.Go(func() { g.metricLoop(ctx) })
	}
	if g.cfg.Confirmer != nil {
		wg.Go(func() { g.confirmLoop(ctx) })
	}
	wg.Go(func() { g.storeLoop(ctx) })
	tick := time.NewTicker(g.cfg.EvalInterval)
	defer tick.Stop()
	errs := g.src.CanaryErrors()
	var fleetChanges <-chan struct{}
	var publish <-chan time.Time
	if g.fleet != nil {
		fleetChanges = g.fleet.Changes()
		t := time.NewTicker(publishEvery)
		defer t.Stop()
		publish = t.C
	}
	g.evaluate(false)
	for {
		select {
		case <-ctx.Done():
			wg.Wait()
			return g.finalSave()
		case <-tick.C:
			g.evaluate(false)
		case <-errs:
			g.evaluate(true)
		case <-fleetChanges:
			g.evaluate(false)
		case <-g.wakeEval:
			g.evaluate(false)
		case <-publish:
			g.publish(false)
		}
	}
}

// storeLoop does the store's I/O for Run: requested saves, retries of
// failed ones, changes other writers stored, and the first read of a
// replica that started without its store.
func (g *Guard) storeLoop(ctx context.Context) {
	changes := g.store.Watch(ctx)
	retry := time.NewTimer(time.Hour)
	defer retry.Stop()
	for {
		g.scheduleRetry(retry)
		select {
		case <-ctx.Done():
			return
		case _, ok := <-changes:
			if !ok {
				changes = nil
				continue
			}
			if !g.isBooted() {
				g.bootLate()
				break
			}
			g.sync()
			g.mu.Lock()
			unsaved := g.seq != g.savedSeq || g.save.err != nil
			g.mu.Unlock()
			if unsaved {
				// The store answers again (a watch notice): save now rather
				// than at the next retry.
				g.flush(false)
			}
		case <-g.kick:
		case <-g.saveNow:
			g.mu.Lock()
			force := g.forceSave
			g.forceSave = false
			g.mu.Unlock()
			g.flush(force)
		case <-retry.C:
			if g.isBooted() {
				g.flush(false)
			} else {
				g.bootLate()
			}
		}
		g.publishIfRestarted()
	}
}

// isBooted reports whether the rollout has been read (always, but for a
// replica of a fleet that started while its store was unreachable).
func (g *Guard) isBooted() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.booted
}

// bootLate reads the fleet's rollout again for a replica that could not at
// start, and applies it once the store answers.
func (g *Guard) bootLate() {
	g.saveMu.Lock()
	ok := g.boot()
	g.saveMu.Unlock()
	if ok {
		g.applyIntegrity(g.integrityReport())
		g.flush(false)
	}
}

// integrityReport is the last integrity report.
func (g *Guard) integrityReport() integrity.Report {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.integ
}

// requestSave asks the store loop to save (force: even without a change,
// to refresh the earned observation), without waiting for it.
func (g *Guard) requestSave(force bool) {
	g.mu.Lock()
	g.forceSave = g.forceSave || force
	g.mu.Unlock()
	signal(g.saveNow)
}

// scheduleRetry sets t to fire when a failed save, or the first read of a
// replica waiting for its store, is due to be retried.
func (g *Guard) scheduleRetry(t *time.Timer) {
	g.mu.Lock()
	failing, at := g.save.err != nil, g.save.retryAt
	if !g.booted {
		failing, at = true, g.bootRetryAt
	}
	g.mu.Unlock()
	if !failing {
		t.Stop()
		return
	}
	t.Reset(max(time.Until(at), 0))
}

// finalSave saves the state a last time when Run ends. A replica that is
// not its fleet's leader has no observation of its own to save.
func (g *Guard) finalSave() error {
	g.mu.Lock()
	booted, force := g.booted, g.fleet == nil || g.leading
	g.mu.Unlock()
	if !booted {
		return nil // nothing was read, nothing changed
	}
	g.flush(force)
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.seq == g.savedSeq {
		if g.save.err != nil {
			g.log.Warn().Err(g.save.err).Msg("the earned observation of the current step could not be saved at shutdown")
		}
		return nil
	}
	r := g.rec
	return fmt.Errorf("%w at shutdown: the rollout in force (%s at %s%%, release %q) is lost, a restart resumes the last saved state instead (%v)",
		ErrNotPersisted, r.State, split.FormatPercent(r.Weight), r.Release, g.save.err)
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
			g.applyIntegrity(rep)
			g.requestSave(false)
		}
	}
}

// evaluate takes one snapshot, judges it and acts on the verdict. A panic in
// a judge is logged and the evaluation skipped, so one bad snapshot does
// not take the guard down. urgent (a canary error woke it) also publishes a
// replica's evidence at once. Saves are left to the store loop.
func (g *Guard) evaluate(urgent bool) {
	snap := g.src.Snapshot()
	stableH, canaryH := g.src.Health()
	var peers []Peer
	if g.fleet != nil {
		peers = g.fleet.Peers()
	}
	save, ok := g.judgeSnapshot(&snap, stableH, canaryH, peers)
	if !ok {
		return
	}
	switch save {
	case SaveNow:
		g.requestSave(false)
	case SaveProgress:
		g.mu.Lock()
		due := g.now().Sub(g.save.lastAttempt) >= progressSaveEvery
		g.mu.Unlock()
		if due {
			g.requestSave(true)
		}
	}
	if urgent {
		g.publish(true)
	} else {
		g.publishIfRestarted()
	}
}

// publish hands this replica's evidence to its fleet (urgent: written at
// once).
func (g *Guard) publish(urgent bool) {
	if g.fleet == nil {
		return
	}
	snap := g.src.Snapshot()
	g.mu.Lock()
	if !g.booted {
		g.mu.Unlock()
		return
	}
	e := g.evidenceLocked(&snap)
	g.own, g.republish = e, false
	g.mu.Unlock()
	g.fleet.Publish(e, urgent)
}

// publishIfRestarted publishes at once when the judges restarted since the
// last publication (a new step): the fleet then sums the new step's counts
// from the start.
func (g *Guard) publishIfRestarted() {
	if g.fleet == nil {
		return
	}
	g.mu.Lock()
	due := g.republish
	g.mu.Unlock()
	if due {
		g.publish(true)
	}
}

// judgeSnapshot asks the judges about snap and applies their verdicts.
func (g *Guard) judgeSnapshot(snap *proxy.Snapshot, stableH, canaryH proxy.HealthStats, peers []Peer) (save Save, ok bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	defer func() {
		if r := recover(); r != nil {
			g.log.Error().Interface("panic", r).Msg("evaluation failed")
			ok = false
		}
	}()
	g.mirrorView = mirrorView(&snap.Mirror)
	if !g.booted {
		// Nothing to judge against: the figures are shown, nothing acts.
		g.stableView, g.canaryView = backendView(&snap.Stable), backendView(&snap.Canary)
		g.stableHealth, g.canaryHealth = stableH, canaryH
		g.updateMetricsLocked()
		return SaveNone, true
	}
	res := g.judge.Judge(*snap)
	if res.Reasons == nil {
		res.Reasons = []string{}
	}
	before := g.factsLocked(g.stableHealth, g.canaryHealth)
	prev := recommendation(&before)
	g.lastAt = g.now()
	g.stableHealth, g.canaryHealth = stableH, canaryH
	if g.fleet != nil {
		save = g.judgeFleetLocked(snap, res, canaryH, peers)
	} else {
		g.last = g.metricHoldLocked(res)
		g.stableView, g.canaryView = backendView(&snap.Stable), backendView(&snap.Canary)
		ev := Event{
			Kind: EventJudged, At: g.lastAt, Who: whoGuard,
			Verdict: g.last.Verdict, Gates: g.last.Gates, Canary: g.canaryView,
			Observable: !(canaryH.Enabled && !canaryH.Healthy) && snap.Canary.Requests > 0,
		}
		ev.Confirmed, ev.ConfirmAnswer = g.confirmedLocked()
		next, eff, _ := Next(g.rec, ev, g.rules)
		g.applyLocked(ev, next, eff)
		g.askIfAwaitingLocked()
		save = eff.Save
	}
	g.updateMetricsLocked()
	after := g.factsLocked(stableH, canaryH)
	if rec := recommendation(&after); rec != prev {
		g.log.Info().Str("recommendation", string(rec)).Str("previous", string(prev)).Str("verdict", string(g.last.Verdict)).
			Strs("reasons", g.last.Reasons).Str("state", g.rec.State.String()).Msg("verdict changed")
	}
	return save, true
}

// judgeFleetLocked is a replica's evaluation: its own verdict local (at its
// share) may roll the fleet back; the fleet's summed evidence is judged
// too, shown as the verdict, and on the leader, while the store answers,
// runs the plan (so no step advances while the fleet cannot agree on it).
func (g *Guard) judgeFleetLocked(snap *proxy.Snapshot, local judge.Result, canaryH proxy.HealthStats, peers []Peer) Save {
	_, leading := g.fleet.Leader()
	var save Save
	apply := func(ev Event) {
		next, eff, _ := Next(g.rec, ev, g.rules)
		g.applyLocked(ev, next, eff)
		save = max(save, eff.Save)
	}
	if leading && !g.leading {
		// A new leader judges the fleet from the step's summed counts,
		// fed as one batch: the step tests resume exactly, the change
		// detectors restart (which can only delay a rollback).
		g.fleetJudge.Restart(proxy.Snapshot{})
		g.log.Info().Str("replica", g.fleet.Self()).Msg("this replica leads the fleet: it judges the fleet's evidence and runs the plan")
		apply(Event{Kind: EventLead, At: g.lastAt, Who: whoGuard, Replica: g.fleet.Self(), Vouched: g.vouched})
	} else if !leading && g.leading {
		g.log.Info().Str("replica", g.fleet.Self()).Msg("this replica no longer leads the fleet")
	}
	g.leading = leading
	own := g.evidenceLocked(snap)
	g.own = own
	g.refreshShareLocked(snap, own, peers)
	fsnap := fleetSnapshot(&g.rec, &own, peers, g.lastAt, g.cfg.Window)
	fleet := g.fleetJudge.Judge(fsnap)
	if fleet.Reasons == nil {
		fleet.Reasons = []string{}
	}
	g.last = g.metricHoldLocked(fleet)
	g.stableView, g.canaryView = backendView(&fsnap.Stable), backendView(&fsnap.Canary)
	observable := !(canaryH.Enabled && !canaryH.Healthy) && fsnap.Canary.Requests > 0
	switch {
	case fleet.Verdict != judge.Proceed || !observable:
		g.vouched = time.Time{}
	case g.vouched.IsZero():
		g.vouched = g.lastAt
	}
	if local.Verdict.IsRollback() {
		// The safe direction needs no leader.
		apply(Event{
			Kind: EventJudged, At: g.lastAt, Who: whoGuard, Replica: g.fleet.Self(),
			Verdict: local.Verdict, Gates: local.Gates, Canary: backendView(&snap.Canary),
		})
	}
	if leading && g.fleet.StoreErr() == nil && g.save.err == nil {
		ev := Event{
			Kind: EventJudged, At: g.lastAt, Who: whoGuard, Replica: g.fleet.Self(),
			Verdict: g.last.Verdict, Gates: g.last.Gates, Canary: g.canaryView,
			Observable: observable,
		}
		ev.Confirmed, ev.ConfirmAnswer = g.confirmedLocked()
		apply(ev)
		g.askIfAwaitingLocked()
	}
	return save
}

// refreshShareLocked rebuilds this replica's judge at the share of a larger
// fleet while it has no canary evidence yet in the step (nothing is lost:
// replicas starting together each judge at their share of all of them). A
// fleet that grows later keeps the share its step began with.
func (g *Guard) refreshShareLocked(snap *proxy.Snapshot, own Evidence, peers []Peer) {
	live := liveReplicas(g.fleet.Self(), peers)
	if live <= g.localR || own.Step.Canary.Requests > 0 {
		return
	}
	g.setShareLocked(live)
	g.judge.Restart(*snap)
}

// setShareLocked builds this replica's judge for a fleet of live replicas.
func (g *Guard) setShareLocked(live int) {
	_, replica := g.cfg.SLO.FleetShares(live)
	g.localR = live
	g.judge = g.build(false, replica)
}

// liveReplicas counts the replicas in peers, self included even when its
// evidence has not arrived.
func liveReplicas(self string, peers []Peer) int {
	n := len(peers)
	for _, p := range peers {
		if p.Replica == self {
			return max(n, 1)
		}
	}
	return n + 1
}

// restartJudgesLocked starts the judges' evidence afresh for rec's
// EvidenceSince: this replica's judge from its current totals, the
// fleet's judge from zero (the replicas' counts for the new epoch start at
// zero), at the share of the fleet as it is now.
func (g *Guard) restartJudgesLocked(rec Record) {
	snap := g.src.Snapshot()
	g.baseStable, g.baseCanary = snap.Stable.Totals, snap.Canary.Totals
	g.epoch, g.epochRelease = rec.EvidenceSince, rec.Release
	g.vouched = time.Time{}
	// The metric gates' "for" starts again with the evidence.
	g.metricRestart = true
	g.metricGen++
	if g.fleet != nil {
		if live := liveReplicas(g.fleet.Self(), g.fleet.Peers()); live != g.localR {
			g.setShareLocked(live)
		}
		g.fleetJudge.Restart(proxy.Snapshot{})
		g.republish = true
	}
	g.judge.Restart(snap)
}

// applyIntegrity stores an integrity report and rolls back on FAILED.
func (g *Guard) applyIntegrity(rep integrity.Report) {
	g.mu.Lock()
	defer g.mu.Unlock()
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
	if rep.Status == integrity.StatusFailed && g.booted {
		ev := Event{Kind: EventIntegrityFailed, At: g.now(), Who: whoGuard, Replica: g.self(), Gates: []judge.Gate{integrityGate(rep)}, Canary: g.canaryView}
		next, eff, _ := Next(g.rec, ev, g.rules)
		g.applyLocked(ev, next, eff)
	}
	g.updateMetricsLocked()
}

// applyLocked makes next the rollout in force and carries out eff: the one
// place where the rollout's effects happen. ev is the event that made next
// (kept for a replay if the save loses a race); the caller saves.
func (g *Guard) applyLocked(ev Event, next Record, eff Effects) uint64 {
	basis := g.rec
	g.rec = next
	if eff.Route {
		// Block before lowering, raise before unblocking: no request sees
		// an unblocked canary at a weight it should not have.
		if next.State.BlocksCanary() {
			g.router.SetRolledBack(true)
			g.router.SetWeight(next.Weight)
		} else {
			g.router.SetWeight(next.Weight)
			g.router.SetRolledBack(false)
		}
	}
	if eff.RestartJudge || !next.EvidenceSince.Equal(g.epoch) || next.Release != g.epochRelease {
		g.restartJudgesLocked(next)
	}
	if eff.RolledBack != "" {
		g.m.rollbacks.WithLabelValues(string(eff.RolledBack)).Inc()
	}
	if tr := eff.Transition; tr != nil {
		g.logTransition(*tr, next, "rollout transition")
	}
	var id uint64
	if eff.Save == SaveNow {
		g.seq++
		if g.seq == g.savedSeq+1 && g.save.unsavedSince.IsZero() {
			g.save.unsavedSince = ev.At
		}
		g.nextID++
		id = g.nextID
		pc := pendingChange{id: id, seq: g.seq, ev: ev, basis: basis}
		if tr := eff.Transition; tr != nil && g.cfg.Notifier != nil {
			n := noticeOf(*tr, eff.Kind, next)
			pc.notice = &n
		}
		g.pending = append(g.pending, pc)
		if n := len(g.pending) - maxPending; n > 0 {
			// A store down for long: the oldest changes stay in the record in
			// force, but are no longer replayed one by one after a conflict,
			// so they are announced now.
			g.announceLocked(g.pending[:n])
			g.pending = append([]pendingChange(nil), g.pending[n:]...)
		}
	}
	g.updateMetricsLocked()
	return id
}

// logTransition logs one history entry as a structured event.
func (g *Guard) logTransition(tr Transition, r Record, msg string) {
	ev := g.log.Info()
	if tr.ToState == StateRolledBack.String() || tr.ToState == StateHeld.String() {
		ev = g.log.Warn()
	}
	ev = ev.Str("from_state", tr.FromState).Str("to_state", tr.ToState).
		Float64("from_weight", tr.From).Float64("to_weight", tr.To).
		Str("reason", tr.Reason).Str("who", tr.Who).Str("release", r.Release)
	if tr.Replica != "" {
		ev = ev.Str("replica", tr.Replica)
	}
	if len(r.Plan.Steps) > 0 {
		ev = ev.Int("step", r.Step)
	}
	ev.Msg(msg)
}

// flush saves the rollout in force if a change waits to be saved, a failed
// save waits for its retry, or force (to refresh the earned observation). A
// save that lost the compare-and-swap is computed again on the newer record
// (rebase) and tried again. It returns the error of a save that failed; the
// failure is recorded and Run retries.
func (g *Guard) flush(force bool) error {
	g.saveMu.Lock()
	defer g.saveMu.Unlock()
	for range maxRebases {
		g.mu.Lock()
		if !g.booted || (!force && g.seq == g.savedSeq && g.save.err == nil) {
			g.mu.Unlock()
			return nil
		}
		force = false
		rec, prev, seq := g.rec, g.rev, g.seq
		rec.SavedAt = g.now()
		g.writes++
		rec.Writer = fmt.Sprintf("%s/%d", g.id, g.writes)
		g.save.lastAttempt = rec.SavedAt
		g.mu.Unlock()

		ctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
		rev, err := g.store.Save(ctx, rec, prev)
		cancel()
		switch {
		case err == nil:
			g.saved(rec, rev, seq)
		case errors.Is(err, ErrRevisionConflict) || errors.Is(err, ErrCorruptRecord):
			g.log.Info().Err(err).Msg("the stored rollout changed meanwhile; computing the change again on the newer state")
			if err := g.rebase(rec, seq); err != nil {
				g.failed(err)
				return err
			}
		default:
			g.failed(err)
			return err
		}
		force = false
	}
	g.mu.Lock()
	done := g.seq == g.savedSeq
	g.mu.Unlock()
	if done {
		return nil
	}
	err := errors.New("the stored rollout kept changing while saving; will retry")
	g.failed(err)
	return err
}

// saved records that rec, made of the changes up to seq, is stored as rev.
func (g *Guard) saved(rec Record, rev Revision, seq uint64) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.savedLocked(rec, rev, seq)
}

func (g *Guard) savedLocked(rec Record, rev Revision, seq uint64) {
	g.rev, g.savedSeq = rev, seq
	if g.seq == seq {
		// rec is the record in force, as stored.
		g.rec.SavedAt, g.rec.Writer = rec.SavedAt, rec.Writer
	}
	kept := g.pending[:0]
	for _, p := range g.pending {
		if p.seq > seq {
			kept = append(kept, p)
		} else {
			g.announceLocked([]pendingChange{p})
		}
	}
	g.pending = kept
	if g.save.err != nil {
		g.log.Info().Int("failed_saves", int(g.save.failures)).Dur("unsaved_for", g.now().Sub(g.save.unsavedSince)).
			Msg("rollout state saved again")
	}
	g.save.err, g.save.failures = nil, 0
	if g.seq == g.savedSeq {
		g.save.unsavedSince = time.Time{}
	}
	g.updateMetricsLocked()
}

// failed records a failed save and schedules its retry.
func (g *Guard) failed(err error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	now := g.now()
	g.save.err = err
	g.save.failures++
	if g.save.unsavedSince.IsZero() {
		g.save.unsavedSince = now
	}
	backoff := min(saveRetryMin<<min(g.save.failures-1, 16), saveRetryMax)
	// The retry runs on Run's timer, so on the real clock (whatever Now is).
	g.save.retryAt = time.Now().Add(backoff)
	g.m.persistFailures.Inc()
	g.updateMetricsLocked()
	if n := g.save.failures; n <= 3 || n%60 == 0 {
		// The first failures, then one line about every 5 minutes.
		g.log.Error().Err(err).Str("store", g.store.Kind()).Uint64("failed_saves", n).
			Dur("retry_in", backoff).Str("state", g.rec.State.String()).Float64("weight", split.Percent(g.rec.Weight)).
			Msg("cannot save the rollout state: the change is in force but not saved; retrying")
	}
	signal(g.kick)
}

// rebase loads the newer stored record after a save of attempt (made of the
// changes up to seq) lost the compare-and-swap, and computes the unsaved
// changes again on it.
func (g *Guard) rebase(attempt Record, seq uint64) error {
	ctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
	defer cancel()
	stored, rev, err := g.store.Load(ctx)
	switch {
	case errors.Is(err, ErrNoRecord):
		// Deleted by hand: the next save writes it again.
		g.mu.Lock()
		g.rev = 0
		g.mu.Unlock()
		return nil
	case errors.Is(err, ErrCorruptRecord):
		where, qerr := g.store.Quarantine(ctx)
		if qerr != nil {
			return fmt.Errorf("%w (and it cannot be kept aside: %w)", err, qerr)
		}
		g.log.Error().AnErr("cause", err).Str("kept_as", where).Msg("the stored rollout state was unreadable; it was kept aside and is replaced by the state in force")
		g.mu.Lock()
		g.rev = 0
		g.mu.Unlock()
		return nil
	case err != nil:
		return err
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if stored.Writer == attempt.Writer {
		// A save that reported an error had landed after all.
		g.savedLocked(attempt, rev, seq)
		return nil
	}
	g.rebaseLocked(stored, rev)
	return nil
}

// sync applies a change another writer stored (Watch).
func (g *Guard) sync() {
	g.saveMu.Lock()
	defer g.saveMu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
	stored, rev, err := g.store.Load(ctx)
	cancel()
	if err != nil {
		if !errors.Is(err, ErrNoRecord) {
			g.log.Warn().Err(err).Msg("cannot read the stored rollout after a change notice; the next save will reconcile")
		}
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if rev == g.rev {
		return // our own save
	}
	g.rebaseLocked(stored, rev)
}

// rebaseLocked makes stored (at rev) the rollout in force, with the unsaved
// changes computed again on it; a change that is no longer possible is
// dropped (and its command answered with the reason).
func (g *Guard) rebaseLocked(stored Record, rev Revision) {
	old := g.rec
	cur := stored
	var kept []pendingChange
	for _, p := range g.pending {
		if p.ev.Kind == EventJudged && !p.ev.Verdict.IsRollback() {
			continue // a plan step is judged again on the newer state
		}
		next, eff, err := Rebase(p.basis, cur, p.ev, g.rules)
		if err != nil {
			g.log.Warn().Err(err).Str("event", p.ev.Kind.String()).Str("who", p.ev.Who).
				Msg("a change was not applied: the stored rollout changed meanwhile")
			if _, ok := g.awaiting[p.id]; ok {
				g.awaiting[p.id] = err
			}
			continue
		}
		p.basis = cur
		p.notice = nil
		if tr := eff.Transition; tr != nil && g.cfg.Notifier != nil {
			n := noticeOf(*tr, eff.Kind, next)
			p.notice = &n
		}
		cur = next
		kept = append(kept, p)
	}
	g.rev = rev
	g.pending = kept
	eff := Adopt(old, cur)
	if eff.Transition != nil && len(kept) == 0 {
		g.logTransition(*eff.Transition, cur, "rollout changed by another writer")
	}
	eff.Transition = nil
	g.applyLocked(Event{}, cur, eff)
	if len(kept) == 0 {
		g.savedSeq = g.seq
		g.save.unsavedSince = time.Time{}
	} else {
		g.seq++
		for i := range g.pending {
			g.pending[i].seq = g.seq
		}
	}
	g.updateMetricsLocked()
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

func mirrorView(m *proxy.MirrorStats) MirrorView {
	return MirrorView{
		Percent: split.Percent(m.Percent), BackendView: backendView(&m.Stats),
		Dropped: m.Dropped, Skipped: m.Skipped, InFlight: m.InFlight,
	}
}

// ms converts a duration into fractional milliseconds.
func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
