package guard

import (
	"fmt"
	"strings"
	"time"

	"github.com/canaryd/canaryd/guard/integrity"
	"github.com/canaryd/canaryd/guard/judge"
	"github.com/canaryd/canaryd/proxy"
)

// Health thresholds.
const (
	// maxHealthFailureRate is the health-check failure rate over the window
	// above which a backend makes the service unhealthy.
	maxHealthFailureRate = 0.05
	// nearThreshold is the fraction of a gate's threshold at which the
	// service counts as degraded.
	nearThreshold = 0.8
)

// Check returns the current verdict with its figures and gates, as of the
// last evaluation.
func (g *Guard) Check() Check {
	g.mu.Lock()
	defer g.mu.Unlock()
	rec := g.recommendationLocked()
	c := Check{
		CanaryOK:       !strings.HasPrefix(rec, "rollback_"),
		Recommendation: rec,
		Reasons:        g.reasonsLocked(),
		Weight:         percent(g.weight),
		State:          g.state.String(),
		Release:        g.cfg.Release,
		Judge:          g.judge.Name(),
		Window:         g.cfg.Window.String(),
		SLO:            g.sloViewLocked(),
		Stable:         g.stableView,
		Canary:         g.canaryView,
		Integrity:      integrityView(g.integ),
		Gates:          g.gatesLocked(),
		CheckedAt:      g.lastAt,
	}
	if c.CheckedAt.IsZero() {
		c.CheckedAt = g.now()
	}
	if len(g.cfg.Steps) > 0 {
		sv := g.planLocked(g.now())[g.step]
		c.Step = &sv
	}
	return c
}

// Overview returns the rollout's state, plan and history.
func (g *Guard) Overview() Overview {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.overviewLocked()
}

func (g *Guard) overviewLocked() Overview {
	o := Overview{
		RollbackRequired: g.state == StateRolledBack,
		Weight:           percent(g.weight),
		State:            g.state.String(),
		Recommendation:   g.recommendationLocked(),
		Release:          g.cfg.Release,
		Step:             -1,
		Plan:             g.planLocked(g.now()),
		History:          append([]Transition{}, g.history...),
	}
	if len(g.cfg.Steps) > 0 {
		o.Step = g.step
	}
	if g.state == StateRolledBack && g.rollback != nil {
		r := *g.rollback
		r.Gates = append([]judge.Gate{}, r.Gates...)
		o.Rollback = &r
		o.RollbackReason = r.Reason
	}
	return o
}

// Health returns the health summary: unhealthy when rolled back, when stable
// fails its health checks or a backend's checks fail more than 5% over the
// window; degraded when the canary has too little data, a gate is at 80% of
// its threshold or more, the rollout is held or the state cannot be saved;
// healthy otherwise.
func (g *Guard) Health() HealthSummary {
	stableH, canaryH := g.src.Health()
	g.mu.Lock()
	defer g.mu.Unlock()
	g.stableHealth, g.canaryHealth = stableH, canaryH
	status, reasons := g.healthLocked()
	return HealthSummary{
		OverallHealth:    status,
		Reasons:          reasons,
		State:            g.state.String(),
		Recommendation:   g.recommendationLocked(),
		Stable:           BackendHealth{BackendView: g.stableView, Checks: healthChecks(stableH)},
		Canary:           BackendHealth{BackendView: g.canaryView, Checks: healthChecks(canaryH)},
		Integrity:        integrityView(g.integ),
		StateFileProblem: g.stateFileProblem,
	}
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

// healthLocked computes the overall health from cached figures.
func (g *Guard) healthLocked() (string, []string) {
	var bad, weak []string
	if g.state == StateRolledBack {
		bad = append(bad, "canary rolled back: "+g.recommendationLocked())
	}
	if h := g.stableHealth; h.Enabled && !h.Healthy {
		bad = append(bad, "stable backend fails its health checks")
	}
	for _, b := range []struct {
		name string
		h    proxy.HealthStats
	}{{"stable", g.stableHealth}, {"canary", g.canaryHealth}} {
		if b.h.Enabled && b.h.FailureRate() > maxHealthFailureRate {
			bad = append(bad, fmt.Sprintf("%s health checks fail %.1f%% of the time (limit %.0f%%)", b.name, 100*b.h.FailureRate(), 100*maxHealthFailureRate))
		}
	}
	if h := g.canaryHealth; h.Enabled && !h.Healthy && g.state != StateRolledBack {
		weak = append(weak, "canary backend fails its health checks")
	}
	switch g.state {
	case StateHeld:
		weak = append(weak, "rollout held: the state file was unreadable at start")
	case StatePaused:
		weak = append(weak, "rollout paused")
	}
	if g.state != StateRolledBack && g.state != StateHeld && g.weight > 0 && g.last.Verdict == judge.Hold {
		weak = append(weak, "too little canary data to judge yet")
	}
	for _, gt := range g.last.Gates {
		if (gt.Unit == "ratio" || gt.Unit == "ms") && gt.Threshold > 0 && gt.Verdict != judge.GateFail && gt.Value >= nearThreshold*gt.Threshold {
			weak = append(weak, fmt.Sprintf("gate %s at %.3g is within 20%% of its threshold %.3g", gt.Name, gt.Value, gt.Threshold))
		}
	}
	if g.persistErr != nil {
		weak = append(weak, "rollout state cannot be saved: "+g.persistErr.Error())
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

// reasonsLocked explains the recommendation: state notes first, then the
// judge's reasons.
func (g *Guard) reasonsLocked() []string {
	r := []string{}
	switch g.state {
	case StateRolledBack:
		if rb := g.rollback; rb != nil {
			r = append(r, fmt.Sprintf("rolled back (%s) by %s at %s; reset to try again", rb.Reason, rb.Who, rb.At.UTC().Format(time.RFC3339)))
		}
	case StatePaused:
		r = append(r, "rollout paused at weight "+formatPercent(g.weight)+"%; resume to continue")
	case StateHeld:
		r = append(r, "rollout held at weight 0: the state file was unreadable at start; reset, resume or set a weight")
	case StateComplete:
		r = append(r, "plan complete at 100%")
	}
	if g.integ.Status == integrity.StatusFailed {
		r = append(r, "release integrity: "+g.integ.Summary)
	}
	if h := g.canaryHealth; h.Enabled && !h.Healthy && g.state != StateRolledBack {
		r = append(r, "canary fails its active health checks: it gets no traffic until it recovers")
	}
	if h := g.stableHealth; h.Enabled && !h.Healthy {
		r = append(r, "stable fails its active health checks: /readyz answers 503")
	}
	return append(r, g.last.Reasons...)
}

// gatesLocked is the judge's gates plus integrity and, when relevant, a
// state note.
func (g *Guard) gatesLocked() []judge.Gate {
	gates := append([]judge.Gate{}, g.last.Gates...)
	gates = append(gates, integrityGate(g.integ))
	for _, b := range []struct {
		name string
		h    proxy.HealthStats
	}{{"stable", g.stableHealth}, {"canary", g.canaryHealth}} {
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
	switch g.state {
	case StateRolledBack:
		gates = append(gates, judge.Gate{Name: "state", Verdict: judge.GateFail, Detail: "rolled back: " + g.recommendationLocked()})
	case StatePaused, StateHeld:
		gates = append(gates, judge.Gate{Name: "state", Verdict: judge.GateHold, Detail: "rollout " + g.state.String()})
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

// sloViewLocked shows the SLO.
func (g *Guard) sloViewLocked() SLOView {
	v := SLOView{
		ErrorRate:   g.cfg.SLO.ErrorRate,
		P95Ms:       ms(g.cfg.SLO.P95),
		MinRequests: g.cfg.SLO.MinRequests,
		Window:      g.cfg.Window.String(),
	}
	if g.judge.Name() == "sequential" {
		v.Alpha = g.cfg.SLO.Alpha
		if v.Alpha == 0 {
			v.Alpha = 0.01
		}
	}
	return v
}

// planLocked renders the plan with each step's status.
func (g *Guard) planLocked(now time.Time) []StepView {
	plan := make([]StepView, len(g.cfg.Steps))
	for i, st := range g.cfg.Steps {
		sv := StepView{Index: i, Weight: percent(st.Weight), Observe: st.Observe.String(), Status: "pending"}
		switch {
		case i < g.step || (i == g.step && g.state == StateComplete):
			sv.Status = "done"
		case i == g.step:
			sv.Status = "current"
			if g.state == StateProgressing {
				sv.StartedAt = g.stepStartedAt
				sv.Remaining = max(st.Observe-g.observedLocked(now), 0).String()
			}
		}
		plan[i] = sv
	}
	return plan
}
