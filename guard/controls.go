package guard

import (
	"context"
	"fmt"

	"github.com/canaryd/canaryd/guard/integrity"
)

// SetWeight sets the weight by hand (hundredths of a percent, 0..10000) and
// pauses the plan. It is ErrInvalid above 10000 and ErrConflict while rolled
// back (reset first).
func (g *Guard) SetWeight(w uint32, who string) (Overview, error) {
	if w > fullWeight {
		return g.Overview(), fmt.Errorf("%w: weight %s%% is above 100", ErrInvalid, formatPercent(w))
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.state == StateRolledBack {
		return g.overviewLocked(), fmt.Errorf("%w: the canary is rolled back; reset before setting a weight", ErrConflict)
	}
	g.transition(StatePaused, g.step, w, "weight set by hand to "+formatPercent(w)+"%", who)
	return g.overviewLocked(), nil
}

// Promote advances to the next step, or to 100% (complete) from the last step
// or without a plan. It is ErrConflict when rolled back, held or complete.
func (g *Guard) Promote(who string) (Overview, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	switch g.state {
	case StateRolledBack, StateHeld, StateComplete:
		return g.overviewLocked(), fmt.Errorf("%w: cannot promote while %s", ErrConflict, g.state)
	}
	if next := g.step + 1; len(g.cfg.Steps) > 0 && next < len(g.cfg.Steps) {
		g.transition(StateProgressing, next, g.cfg.Steps[next].Weight, fmt.Sprintf("promoted to step %d", next+1), who)
	} else {
		g.transition(StateComplete, g.step, fullWeight, "promoted to 100%", who)
	}
	return g.overviewLocked(), nil
}

// Rollback sets the weight to 0 and blocks the canary with reason
// rollback_manual. It is idempotent: when already rolled back (for any
// reason) it changes nothing and returns the current overview without error.
func (g *Guard) Rollback(who string) (Overview, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.state != StateRolledBack {
		g.rollbackLocked(recRollbackManual, who, g.last.Gates)
	}
	return g.overviewLocked(), nil
}

// Pause holds a progressing plan at its current step; otherwise ErrConflict.
func (g *Guard) Pause(who string) (Overview, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.state != StateProgressing {
		return g.overviewLocked(), fmt.Errorf("%w: only a progressing plan can be paused (state is %s)", ErrConflict, g.state)
	}
	g.transition(StatePaused, g.step, g.weight, "paused", who)
	return g.overviewLocked(), nil
}

// Resume continues a paused plan at its current step (held: at step 0;
// without a plan: the fixed weight); the step's observation starts again.
// Any other state is ErrConflict.
func (g *Guard) Resume(who string) (Overview, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	step := g.step
	switch g.state {
	case StatePaused:
	case StateHeld:
		step = 0
	default:
		return g.overviewLocked(), fmt.Errorf("%w: only a paused or held rollout can be resumed (state is %s)", ErrConflict, g.state)
	}
	if len(g.cfg.Steps) == 0 {
		g.transition(StateFixed, 0, g.cfg.Weight, "resumed", who)
	} else {
		g.transition(StateProgressing, step, g.cfg.Steps[step].Weight, "resumed", who)
	}
	return g.overviewLocked(), nil
}

// Reset clears a rollback and starts the plan again from its first step (or
// the fixed weight), from any state. With an integrity manifest the release
// is verified again first; a release that still fails is ErrConflict.
func (g *Guard) Reset(who string) (Overview, error) {
	if g.cfg.IntegrityManifest != "" {
		rep := g.verify(context.Background())
		if rep.Status == integrity.StatusFailed {
			g.mu.Lock()
			defer g.mu.Unlock()
			g.applyIntegrityLocked(rep)
			g.updateMetricsLocked()
			return g.overviewLocked(), fmt.Errorf("%w: the release still fails its integrity check: %s", ErrConflict, rep.Summary)
		}
		g.mu.Lock()
		g.applyIntegrityLocked(rep)
		g.mu.Unlock()
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.cfg.Steps) > 0 {
		g.transition(StateProgressing, 0, g.cfg.Steps[0].Weight, reasonReset, who)
	} else {
		g.transition(StateFixed, 0, g.cfg.Weight, reasonReset, who)
	}
	return g.overviewLocked(), nil
}
