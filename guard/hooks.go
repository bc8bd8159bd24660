package guard

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/canaryd/canaryd/guard/judge"
)

// The guard's side of the integrations (see integrations.go): announcing
// stored transitions, asking the confirmation endpoint, checking the metric
// gates.

// announceLocked hands the notices of saved (or no longer replayable)
// changes to the notifier, in order.
func (g *Guard) announceLocked(ps []pendingChange) {
	if g.cfg.Notifier == nil {
		return
	}
	for _, p := range ps {
		if p.notice != nil {
			g.cfg.Notifier.Notify(*p.notice)
		}
	}
}

// runsPlanLocked reports whether this guard runs the plan: a single
// canaryd, or the leader of a fleet.
func (g *Guard) runsPlanLocked() bool {
	return g.fleet == nil || g.leading
}

// confirmedLocked is what the confirmation endpoint said about the advance
// the record in force waits to make: accepted, and its last answer ("" when
// it has not been asked about this one).
func (g *Guard) confirmedLocked() (bool, string) {
	p, ok := proposalOf(&g.rec)
	if !ok || !g.confirm.asked.same(p) {
		return false, ""
	}
	return g.confirm.granted, g.confirm.answer
}

// askIfAwaitingLocked wakes the confirmation loop while the plan waits for
// an answer (at most once per evaluation: the loop spaces the requests).
func (g *Guard) askIfAwaitingLocked() {
	if g.cfg.Confirmer == nil {
		return
	}
	if _, ok := proposalOf(&g.rec); ok {
		signal(g.askNow)
	}
}

// confirmLoop asks the confirmation endpoint about the advance the plan
// waits to make, one request at a time, again every EvalInterval until it
// accepts; an acceptance wakes an evaluation at once, which advances.
func (g *Guard) confirmLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-g.askNow:
		}
		p, ok := g.nextAsk()
		if !ok {
			continue
		}
		actx, cancel := context.WithTimeout(ctx, confirmTimeout)
		err := g.cfg.Confirmer.Confirm(actx, p)
		cancel()
		if ctx.Err() != nil {
			return
		}
		if g.answered(p, err) {
			signal(g.wakeEval)
		}
	}
}

// nextAsk returns the advance to ask about now, if any: the plan waits for
// one, this guard runs the plan, it was not accepted yet and was not asked
// about within the last half EvalInterval (the evaluations that wake the
// loop come every EvalInterval).
func (g *Guard) nextAsk() (Proposal, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	p, ok := proposalOf(&g.rec)
	if !ok || !g.booted || !g.runsPlanLocked() {
		return Proposal{}, false
	}
	if g.confirm.asked.same(p) {
		if g.confirm.granted || time.Since(g.confirm.askedAt) < g.cfg.EvalInterval/2 {
			return Proposal{}, false
		}
	} else {
		g.confirm = confirmState{}
	}
	now := g.now()
	p.At, p.Replica, p.Canary = now, g.self(), g.canaryView
	p.Observation = g.rec.Observation.Earned(now)
	g.confirm.asked, g.confirm.askedAt = p, time.Now()
	return p, true
}

// answered records the endpoint's answer about p (err nil: accepted) and
// reports whether the plan may now advance.
func (g *Guard) answered(p Proposal, err error) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.confirm.asked.same(p) {
		return false // the plan moved on meanwhile
	}
	answer := "accepted"
	if err != nil {
		answer = err.Error()
	}
	if answer != g.confirm.answer {
		ev := g.log.Info()
		if err != nil {
			ev = g.log.Warn()
		}
		ev.Str("release", p.Release).Int("step", p.Step).Str("answer", answer).
			Msg("confirmation endpoint: " + p.describe() + ": " + answer)
	}
	g.confirm.granted, g.confirm.answer = err == nil, answer
	return err == nil
}

// metricHoldLocked holds a proceed verdict while a metric gate is not
// within its bound (or cannot be checked): the plan advances only when
// every gate passes.
func (g *Guard) metricHoldLocked(res judge.Result) judge.Result {
	if res.Verdict != judge.Proceed {
		return res
	}
	var holding []string
	for _, m := range g.metric {
		if m.Status != MetricPass {
			holding = append(holding, m.Name)
		}
	}
	if len(holding) == 0 {
		return res
	}
	res.Verdict = judge.Hold
	res.Reasons = append(slices.Clone(res.Reasons), "the canary's own figures say proceed, but metric gates hold the plan: "+strings.Join(holding, ", "))
	return res
}

// metricLoop checks the metric gates at once and then every
// MetricGateInterval.
func (g *Guard) metricLoop(ctx context.Context) {
	t := time.NewTicker(g.cfg.MetricGateInterval)
	defer t.Stop()
	for {
		g.checkMetricGates(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// checkMetricGates queries the gates once (outside the lock) and applies
// what they say.
func (g *Guard) checkMetricGates(ctx context.Context) {
	g.mu.Lock()
	restart, gen := g.metricRestart, g.metricGen
	g.metricRestart = false
	g.mu.Unlock()
	if restart {
		g.cfg.MetricGates.Restart()
	}
	cctx, cancel := context.WithTimeout(ctx, metricCheckTimeout)
	gates := g.cfg.MetricGates.Check(cctx, g.now())
	cancel()
	if ctx.Err() != nil {
		return // a cancelled check proves nothing
	}
	if g.applyMetricGates(gates, gen) {
		g.requestSave(false)
	}
}

// applyMetricGates keeps the gates' states for the views and the plan, and
// rolls the canary back (rollback_metric) when a gate failed, unless the
// judges restarted since the check began (its "for" counted from before:
// the next check decides). It reports whether the rollout changed.
func (g *Guard) applyMetricGates(gates []MetricGate, gen uint64) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	prev := map[string]MetricStatus{}
	for _, m := range g.metric {
		prev[m.Name] = m.Status
	}
	g.metric = gates
	var failing []string
	for _, m := range gates {
		if old, ok := prev[m.Name]; !ok || old != m.Status {
			ev := g.log.Info()
			if m.Status != MetricPass {
				ev = g.log.Warn()
			}
			ev.Str("gate", m.Name).Str("status", m.Status.String()).Str("previous", old.String()).Str("detail", m.Detail).
				Msg("metric gate " + m.Name + ": " + m.Status.String())
		}
		if m.Status == MetricFail {
			failing = append(failing, "metric gate "+m.Name+": "+m.Detail)
		}
	}
	changed := false
	if len(failing) > 0 && gen == g.metricGen && g.booted {
		gts := append([]judge.Gate{}, g.last.Gates...)
		for _, m := range gates {
			gts = append(gts, m.gate())
		}
		ev := Event{Kind: EventMetricFailed, At: g.now(), Who: whoGuard, Replica: g.self(), Gates: gts, Canary: g.canaryView,
			Detail: strings.Join(failing, "; ")}
		next, eff, _ := Next(g.rec, ev, g.rules)
		g.applyLocked(ev, next, eff)
		changed = eff.Save == SaveNow
	}
	g.updateMetricsLocked()
	return changed
}

// awaitingReason says what the plan waits for.
func awaitingReason(p Proposal, a *Awaiting, every time.Duration) string {
	s := fmt.Sprintf("awaiting_confirmation: %s is ready since %s; ", p.describe(), a.Since.UTC().Format(time.RFC3339))
	if a.Answer == "" {
		return s + "asking the confirmation endpoint (CANARY_CONFIRM_URL)"
	}
	return s + fmt.Sprintf("last answer of the confirmation endpoint (CANARY_CONFIRM_URL): %s; asking again every %s", a.Answer, every)
}
