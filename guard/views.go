package guard

import (
	"fmt"
	"time"

	"github.com/canaryd/canaryd/guard/integrity"
	"github.com/canaryd/canaryd/guard/judge"
	"github.com/canaryd/canaryd/proxy"
	"github.com/canaryd/canaryd/split"
)

// Health thresholds.
const (
	// maxHealthFailureRate is the health-check failure rate over the window
	// above which a backend's checks count as failing.
	maxHealthFailureRate = 0.05
	// nearThreshold is the fraction of a gate's threshold at which the
	// service counts as degraded.
	nearThreshold = 0.8
)

// Overall health values.
const (
	healthHealthy   = "healthy"
	healthDegraded  = "degraded"
	healthUnhealthy = "unhealthy"
)

// facts is one consistent snapshot of everything the views show, taken under
// the guard's lock; the views are pure functions of it and never write.
type facts struct {
	now       time.Time
	rec       Record
	persisted bool
	save      saveStatus
	storeKind string
	judgeName string
	// booted is false while a replica waits to read its fleet's rollout.
	booted bool
	fleet  fleetFacts
	evaluation

	slo    judge.SLO
	window time.Duration
	// rules are the machine's rules (the deadline); every is the
	// evaluation interval, how often the confirmation endpoint is asked.
	rules Rules
	every time.Duration
}

// factsLocked snapshots the guard with the given health figures (fresh ones
// for the views, the evaluation's for the metrics).
func (g *Guard) factsLocked(stableH, canaryH proxy.HealthStats) facts {
	f := facts{
		now:        g.now(),
		rec:        g.rec,
		persisted:  g.seq == g.savedSeq && g.save.err == nil,
		save:       g.save,
		storeKind:  g.store.Kind(),
		judgeName:  g.judge.Name(),
		booted:     g.booted,
		evaluation: g.evaluation,
		slo:        g.cfg.SLO,
		window:     g.cfg.Window,
		rules:      g.rules,
		every:      g.cfg.EvalInterval,
	}
	f.fleet = g.fleetFactsLocked(f.now)
	if !g.booted {
		f.fleet.storeErr = g.bootErr
		f.fleet.view.StoreOK = false
	}
	f.stableHealth, f.canaryHealth = stableH, canaryH
	return f
}

// facts snapshots the guard for a view, with fresh health-check figures.
func (g *Guard) facts() facts {
	stableH, canaryH := g.src.Health()
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.factsLocked(stableH, canaryH)
}

// Check returns the current verdict with its figures and gates, as of the
// last evaluation.
func (g *Guard) Check() Check {
	f := g.facts()
	return f.check()
}

// Overview returns the rollout's state, plan and history.
func (g *Guard) Overview() Overview {
	f := g.facts()
	return f.overview()
}

// Health returns the health summary. It is unhealthy only when users are
// hurt: stable fails its health checks (or they fail more than 5% of the
// time over the window). It is degraded when the canary is rolled back,
// held, paused, fails its health checks, has too little data, has a gate at
// 80% of its threshold or more, or the state in force is not saved; healthy
// otherwise.
func (g *Guard) Health() HealthSummary {
	f := g.facts()
	return f.health()
}

// Fleet returns who judges and where the rollout is kept: the "fleet"
// object of Check, and the body of GET /dashboard/fleet.
func (g *Guard) Fleet() FleetView {
	f := g.facts()
	return f.fleet.view
}

// Integrity returns the last integrity report.
func (g *Guard) Integrity() integrity.Report {
	g.mu.Lock()
	defer g.mu.Unlock()
	r := g.integ
	r.Failures = append([]integrity.Failure{}, r.Failures...)
	return r
}

// Ready reports whether canaryd should receive traffic (stable passes its
// health checks) and why not.
func (g *Guard) Ready() (bool, string) {
	stable, _ := g.src.Health()
	if stable.Enabled && !stable.Healthy {
		why := "stable backend fails its health checks"
		if stable.LastError != "" {
			why += ": " + stable.LastError
		}
		return false, why
	}
	return true, ""
}

// recommendation is the answer of /canary_check for f.
func recommendation(f *facts) Recommendation {
	switch f.rec.State {
	case StateRolledBack:
		if rb := f.rec.Rollback; rb != nil && rb.Reason != "" {
			return rb.Reason
		}
		return RecRollbackManual
	case StateComplete:
		return RecComplete
	case StatePaused, StateHeld, StateFinished:
		return RecHold
	}
	if h := f.canaryHealth; h.Enabled && !h.Healthy {
		return RecHold // it gets no traffic until it recovers
	}
	if f.last.Verdict == judge.Proceed {
		return RecProceed
	}
	return RecHold
}

func (f *facts) check() Check {
	rec := recommendation(f)
	c := Check{
		CanaryOK:       !rec.IsRollback(),
		Recommendation: rec,
		Reasons:        f.reasons(),
		Weight:         split.Percent(f.rec.Weight),
		State:          f.rec.State.String(),
		Release:        f.rec.Release,
		Judge:          f.judgeName,
		Window:         f.window.String(),
		SLO:            f.sloView(),
		Stable:         f.stableView,
		Canary:         f.canaryView,
		Mirror:         f.mirrorView,
		Integrity:      integrityView(f.integ),
		Gates:          f.gates(),
		CheckedAt:      f.lastAt,
		Fleet:          f.fleet.view,
	}
	if c.CheckedAt.IsZero() {
		c.CheckedAt = f.now
	}
	if len(f.rec.Plan.Steps) > 0 {
		sv := f.plan()[f.rec.Step]
		c.Step = &sv
	}
	return c
}

func (f *facts) overview() Overview {
	o := Overview{
		RollbackRequired: f.rec.State == StateRolledBack,
		Weight:           split.Percent(f.rec.Weight),
		State:            f.rec.State.String(),
		Recommendation:   recommendation(f),
		Release:          f.rec.Release,
		Step:             -1,
		Plan:             f.plan(),
		History:          append([]Transition{}, f.rec.History...),
		Persisted:        f.persisted,
	}
	if len(f.rec.Plan.Steps) > 0 {
		o.Step = f.rec.Step
	}
	if f.rec.State == StateRolledBack && f.rec.Rollback != nil {
		r := *f.rec.Rollback
		r.Gates = append([]judge.Gate{}, r.Gates...)
		o.Rollback = &r
		o.RollbackReason = r.Reason
	}
	return o
}

func (f *facts) health() HealthSummary {
	status, reasons := f.overallHealth()
	h := HealthSummary{
		OverallHealth:    status,
		Reasons:          reasons,
		State:            f.rec.State.String(),
		Recommendation:   recommendation(f),
		Stable:           BackendHealth{BackendView: f.stableView, Checks: healthChecks(f.stableHealth), Endpoints: endpointViews(f.stableHealth)},
		Canary:           BackendHealth{BackendView: f.canaryView, Checks: healthChecks(f.canaryHealth), Endpoints: endpointViews(f.canaryHealth)},
		Integrity:        integrityView(f.integ),
		StateFileProblem: f.rec.Problem,
		StateStore:       StoreView{Kind: f.storeKind, Persisted: f.persisted, Up: f.fleet.storeErr == nil},
	}
	if err := f.fleet.storeErr; err != nil {
		h.StateStore.Problem = err.Error()
	}
	if !f.persisted {
		h.StateStore.UnsavedSince = f.save.unsavedSince
		h.StateStore.FailedSaves = f.save.failures
		if f.save.err != nil {
			h.StateStore.Error = f.save.err.Error()
		}
	}
	return h
}

// overallHealth is unhealthy only when users are hurt (stable fails its
// checks); what only concerns the canary or the rollout is degraded.
func (f *facts) overallHealth() (string, []string) {
	var bad, weak []string
	if h := f.stableHealth; h.Enabled && !h.Healthy {
		bad = append(bad, "stable backend fails its health checks")
	}
	if h := f.stableHealth; h.Enabled && h.FailureRate() > maxHealthFailureRate {
		bad = append(bad, fmt.Sprintf("stable health checks fail %.1f%% of the time (limit %.0f%%)", 100*h.FailureRate(), 100*maxHealthFailureRate))
	}
	if err := f.fleet.storeErr; err != nil && f.fleet.shared {
		switch {
		case !f.booted:
			weak = append(weak, fmt.Sprintf("the %s store is unreachable (%v): the fleet's rollout is not read yet, so the canary is blocked until it answers", f.storeKind, err))
		default:
			weak = append(weak, fmt.Sprintf("the %s store is unreachable (%v): proxying at the last known weight (%s%%, %s); no step advances and changes wait until it answers (a rollback still happens at once)",
				f.storeKind, err, split.FormatPercent(f.rec.Weight), f.rec.State))
		}
	}
	if !f.persisted {
		why := "a save is under way"
		if f.save.err != nil {
			why = f.save.err.Error()
		}
		weak = append(weak, fmt.Sprintf("rollout state not saved to the %s store since %s (%s at %s%% is in force; a restart now would resume an older state), retrying: %s",
			f.storeKind, f.save.unsavedSince.UTC().Format(time.RFC3339), f.rec.State, split.FormatPercent(f.rec.Weight), why))
	}
	switch f.rec.State {
	case StateRolledBack:
		weak = append(weak, "canary rolled back ("+string(recommendation(f))+"): stable serves all traffic")
	case StateHeld:
		if f.booted {
			weak = append(weak, "rollout held: the stored state was unreadable at start")
		}
	case StatePaused:
		weak = append(weak, "rollout paused")
	}
	if f.stalled() {
		weak = append(weak, f.stalledReason())
	}
	for _, m := range f.metric {
		if m.Status != MetricPass && !f.rec.State.BlocksCanary() {
			weak = append(weak, "metric gate "+m.Name+" ("+m.Status.String()+"): "+m.Detail)
		}
	}
	if h := f.canaryHealth; h.Enabled && h.FailureRate() > maxHealthFailureRate {
		weak = append(weak, fmt.Sprintf("canary health checks fail %.1f%% of the time (limit %.0f%%)", 100*h.FailureRate(), 100*maxHealthFailureRate))
	}
	if h := f.canaryHealth; h.Enabled && !h.Healthy && !f.rec.State.BlocksCanary() {
		weak = append(weak, "canary backend fails its health checks")
	}
	if !f.rec.State.BlocksCanary() && f.rec.Weight > 0 && f.last.Verdict == judge.Hold {
		weak = append(weak, "too little canary data to judge yet")
	}
	for _, gt := range f.last.Gates {
		if (gt.Unit == "ratio" || gt.Unit == "ms") && gt.Threshold > 0 && gt.Verdict != judge.GateFail && gt.Value >= nearThreshold*gt.Threshold {
			weak = append(weak, fmt.Sprintf("gate %s at %.3g is within 20%% of its threshold %.3g", gt.Name, gt.Value, gt.Threshold))
		}
	}
	reasons := append(append([]string{}, bad...), weak...)
	switch {
	case len(bad) > 0:
		return healthUnhealthy, reasons
	case len(weak) > 0:
		return healthDegraded, reasons
	}
	return healthHealthy, reasons
}

// reasons explains the recommendation: state notes first, then the judge's
// reasons.
func (f *facts) reasons() []string {
	r := []string{}
	switch f.rec.State {
	case StateRolledBack:
		if rb := f.rec.Rollback; rb != nil {
			by := rb.Who
			if rb.Replica != "" {
				by += " on replica " + rb.Replica
			}
			what := ""
			if rb.Detail != "" {
				what = ": " + rb.Detail
			}
			r = append(r, fmt.Sprintf("rolled back (%s%s) by %s at %s; reset to try again", rb.Reason, what, by, rb.At.UTC().Format(time.RFC3339)))
		}
	case StatePaused:
		r = append(r, "rollout paused at weight "+split.FormatPercent(f.rec.Weight)+"%; resume to continue")
	case StateHeld:
		if !f.booted {
			r = append(r, "the fleet's rollout is not read yet ("+f.storeKind+" store unreachable): the canary is blocked until it is")
			break
		}
		r = append(r, "rollout held at weight 0: the stored state was unreadable at start; reset, resume or set a weight")
	case StateComplete:
		r = append(r, "plan complete at 100%")
	case StateFinished:
		r = append(r, fmt.Sprintf("release %q finished: the canary gets no traffic until POST /rollout/start", f.rec.Release))
	}
	if p, ok := proposalOf(&f.rec); ok {
		r = append(r, awaitingReason(p, f.rec.Awaiting, f.every))
	}
	if f.stalled() {
		r = append(r, f.stalledReason())
	}
	for _, m := range f.metric {
		if m.Status != MetricPass {
			r = append(r, "metric gate "+m.Name+" ("+m.Status.String()+"): "+m.Detail)
		}
	}
	if !f.persisted {
		r = append(r, "the rollout state in force is not saved yet (see /dashboard/health_summary)")
	}
	if f.integ.Status == integrity.StatusFailed {
		r = append(r, "release integrity: "+f.integ.Summary)
	}
	if h := f.canaryHealth; h.Enabled && !h.Healthy && f.rec.State != StateRolledBack {
		r = append(r, "canary fails its active health checks: it gets no traffic until it recovers")
	}
	if h := f.stableHealth; h.Enabled && !h.Healthy {
		r = append(r, "stable fails its active health checks: /readyz answers 503")
	}
	return append(r, f.last.Reasons...)
}

// gates is the judge's gates plus integrity and, when relevant, a state
// note.
func (f *facts) gates() []judge.Gate {
	gates := append([]judge.Gate{}, f.last.Gates...)
	for _, m := range f.metric {
		gates = append(gates, m.gate())
	}
	gates = append(gates, integrityGate(f.integ))
	if p, ok := proposalOf(&f.rec); ok {
		gates = append(gates, judge.Gate{Name: gateConfirmation, Value: max(f.now.Sub(f.rec.Awaiting.Since), 0).Seconds(), Unit: "s",
			Verdict: judge.GateHold, Detail: awaitingReason(p, f.rec.Awaiting, f.every)})
	}
	if d := f.rules.Deadline; d > 0 && f.rec.State == StateProgressing && !f.rec.StepStartedAt.IsZero() {
		gt := judge.Gate{Name: gateDeadline, Value: max(f.now.Sub(f.rec.StepStartedAt), 0).Seconds(), Threshold: d.Seconds(), Unit: "s",
			Verdict: judge.GatePass, Detail: fmt.Sprintf("the step must advance within %s of its start (CANARY_PROGRESS_DEADLINE)", d)}
		if f.stalled() {
			gt.Verdict, gt.Detail = judge.GateHold, f.stalledReason()
		}
		gates = append(gates, gt)
	}
	for _, b := range []struct {
		name string
		h    proxy.HealthStats
	}{{"stable", f.stableHealth}, {"canary", f.canaryHealth}} {
		if !b.h.Enabled {
			continue
		}
		gt := judge.Gate{Name: b.name + "_health_checks", Value: b.h.FailureRate(), Threshold: maxHealthFailureRate,
			Unit: "ratio", Samples: b.h.Checks, Verdict: judge.GatePass, Detail: b.name + " passes its active health checks"}
		if !b.h.Healthy {
			gt.Verdict = judge.GateFail
			gt.Detail = b.name + " fails its active health checks"
			if b.name == "canary" {
				gt.Detail += ": it gets no traffic until it recovers"
			} else {
				gt.Detail += ": /readyz answers 503"
			}
			if b.h.LastError != "" {
				gt.Detail += " (last error: " + b.h.LastError + ")"
			}
		}
		gates = append(gates, gt)
	}
	switch f.rec.State {
	case StateRolledBack:
		gates = append(gates, judge.Gate{Name: "state", Verdict: judge.GateFail, Detail: "rolled back: " + string(recommendation(f))})
	case StatePaused, StateHeld, StateFinished:
		gates = append(gates, judge.Gate{Name: "state", Verdict: judge.GateHold, Detail: "rollout " + f.rec.State.String()})
	}
	return gates
}

// integrityGate shows an integrity report as a gate: the number of failing
// files against a threshold of 0.
func integrityGate(r integrity.Report) judge.Gate {
	gt := judge.Gate{Name: "integrity", Value: float64(len(r.Failures)), Unit: "files", Verdict: judge.GatePass, Detail: r.Summary}
	if r.Status == integrity.StatusFailed {
		gt.Verdict = judge.GateFail
		if gt.Value == 0 {
			gt.Value = 1
		}
	}
	return gt
}

// integrityView condenses a report for /canary_check.
func integrityView(r integrity.Report) IntegrityView {
	return IntegrityView{Status: r.Status, Verified: r.Status == integrity.StatusVerified, Summary: r.Summary}
}

// healthChecks converts the proxy's figures.
func healthChecks(h proxy.HealthStats) HealthChecks {
	return HealthChecks{
		Enabled:     h.Enabled,
		Healthy:     h.Healthy || !h.Enabled,
		Checks:      h.Checks,
		Failures:    h.Failures,
		FailureRate: h.FailureRate(),
		LastError:   h.LastError,
	}
}

// endpointViews shows a backend's pool.
func endpointViews(h proxy.HealthStats) []EndpointView {
	out := make([]EndpointView, len(h.Endpoints))
	for i, e := range h.Endpoints {
		out[i] = EndpointView{
			URL:      e.URL,
			Address:  e.Address,
			Healthy:  e.Healthy,
			InFlight: e.InFlight,
			Requests: e.Requests,
			Errors:   e.Errors,
		}
		if !e.EjectedUntil.IsZero() {
			until := e.EjectedUntil
			out[i].EjectedUntil = &until
		}
	}
	return out
}

// sloView shows the SLO.
func (f *facts) sloView() SLOView {
	v := SLOView{
		ErrorRate:   f.slo.ErrorRate,
		P95Ms:       ms(f.slo.P95),
		MinRequests: f.slo.MinRequests,
		Window:      f.window.String(),
	}
	if f.judgeName == "sequential" {
		v.Alpha = f.slo.Alpha
		if v.Alpha == 0 {
			v.Alpha = judge.DefaultAlpha
		}
	}
	return v
}

// plan renders the release's plan with each step's status.
func (f *facts) plan() []StepView {
	steps := f.rec.Plan.Steps
	plan := make([]StepView, len(steps))
	for i, st := range steps {
		sv := StepView{Index: i, Weight: split.Percent(st.Weight), Observe: st.Observe.String(), Status: "pending"}
		switch {
		case i < f.rec.Step || (i == f.rec.Step && f.rec.State == StateComplete):
			sv.Status = "done"
		case i == f.rec.Step:
			sv.Status = "current"
			if f.rec.State == StateProgressing {
				sv.StartedAt = f.rec.StepStartedAt
				sv.Remaining = max(st.Observe-f.rec.Observation.Earned(f.now), 0).String()
			}
		}
		plan[i] = sv
	}
	return plan
}

// stalled reports whether the current step passed the progress deadline
// without advancing (and the plan goes on trying).
func (f *facts) stalled() bool {
	return f.rec.State == StateProgressing && !f.rec.StalledAt.IsZero()
}

// stalledReason says which step stalled and since when.
func (f *facts) stalledReason() string {
	w := f.rec.Weight
	return fmt.Sprintf("stalled: step %d (%s%%) has not advanced within the progress deadline of %s (CANARY_PROGRESS_DEADLINE): it began at %s, stalled at %s",
		f.rec.Step+1, split.FormatPercent(w), f.rules.Deadline, f.rec.StepStartedAt.UTC().Format(time.RFC3339), f.rec.StalledAt.UTC().Format(time.RFC3339))
}
