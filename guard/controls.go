package guard

import (
	"context"
	"fmt"

	"github.com/canaryd/canaryd/guard/integrity"
)

// The controls are the operators' commands (POST /rollout/…). Each applies
// its transition at once (the splitter follows before the method returns),
// then saves it and answers with the new Overview. The errors wrap
// ErrInvalid (a malformed command: nothing changed), ErrConflict (not
// possible in the current state: nothing changed) or ErrNotPersisted (the
// change is in force but not saved yet), or, on a replica of a fleet that
// has not read the fleet's rollout yet, ErrStoreUnavailable (nothing
// changed). who is the caller, as the history shows it.

// SetWeight sets the weight by hand (hundredths of a percent, 0..10000) and
// pauses the plan. It is ErrInvalid above 10000 and ErrConflict while rolled
// back (reset first) or finished (start a release first).
func (g *Guard) SetWeight(w uint32, who string) (Overview, error) {
	return g.command(Event{Kind: EventSetWeight, Weight: w, Who: who})
}

// Promote advances to the next step, or to 100% (complete) from the last step
// or without a plan. It is ErrConflict when rolled back, held, complete or
// finished.
func (g *Guard) Promote(who string) (Overview, error) {
	return g.command(Event{Kind: EventPromote, Who: who})
}

// Rollback sets the weight to 0 and blocks the canary with reason
// rollback_manual, keeping the last evaluation's figures as evidence. It is
// idempotent: when the canary gets no traffic already (rolled back for any
// reason, or finished) it changes nothing and returns no error (unless the
// state in force is still unsaved: ErrNotPersisted).
func (g *Guard) Rollback(who string) (Overview, error) {
	return g.command(Event{Kind: EventRollback, Who: who})
}

// Pause holds a progressing plan at its current step; otherwise ErrConflict.
func (g *Guard) Pause(who string) (Overview, error) {
	return g.command(Event{Kind: EventPause, Who: who})
}

// Resume continues a paused plan at its current step (held: at step 0;
// without a plan: the fixed weight); the step's observation starts again.
// Any other state is ErrConflict.
func (g *Guard) Resume(who string) (Overview, error) {
	return g.command(Event{Kind: EventResume, Who: who})
}

// Reset clears a rollback and starts the plan of the current release again
// from its first step (or the fixed weight), from any state but finished
// (ErrConflict: start a release). With an integrity manifest the release is
// verified again first; a release that still fails is ErrConflict.
func (g *Guard) Reset(who string) (Overview, error) {
	if ov, err := g.verifyBefore("reset"); err != nil {
		return ov, err
	}
	return g.command(Event{Kind: EventReset, Who: who})
}

// Start starts release afresh from any state: the rollback cleared, the
// judge restarted, the first step of steps (nil: the configured plan, or
// its fixed weight). The current release is ErrConflict (use Reset); an
// invalid release id or plan is ErrInvalid. With an integrity manifest the
// release's files are verified first; failing files are ErrConflict.
func (g *Guard) Start(release string, steps []Step, who string) (Overview, error) {
	if err := ValidateRelease(release); err != nil {
		return g.Overview(), fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if steps != nil {
		if err := validateSteps(steps); err != nil {
			return g.Overview(), fmt.Errorf("%w: steps: %w", ErrInvalid, err)
		}
	}
	if ov, err := g.verifyBefore("start"); err != nil {
		return ov, err
	}
	return g.command(Event{Kind: EventStart, Release: release, Steps: steps, Who: who})
}

// Finish ends the current release from any state: weight 0, state finished,
// the canary blocked until the next Start. Finishing a finished release
// changes nothing.
func (g *Guard) Finish(who string) (Overview, error) {
	return g.command(Event{Kind: EventFinish, Who: who})
}

// verifyBefore re-verifies the release's files (with a manifest) before a
// command that lets the canary have traffic again; failing files roll the
// canary back and refuse the command.
func (g *Guard) verifyBefore(what string) (Overview, error) {
	if g.cfg.IntegrityManifest == "" {
		return Overview{}, nil
	}
	rep := g.verify(context.Background())
	g.applyIntegrity(rep)
	g.flush(false)
	if rep.Status == integrity.StatusFailed {
		return g.Overview(), fmt.Errorf("%w: cannot %s: the release fails its integrity check: %s", ErrConflict, what, rep.Summary)
	}
	return Overview{}, nil
}

// command applies an operator's event, saves it and answers.
func (g *Guard) command(ev Event) (Overview, error) {
	stableH, canaryH := g.src.Health()
	g.mu.Lock()
	if !g.booted {
		f := g.factsLocked(stableH, canaryH)
		g.mu.Unlock()
		return f.overview(), fmt.Errorf("%w: this replica could not read it from the %s store since it started (%v); the canary is blocked here meanwhile; try again when the store answers",
			ErrStoreUnavailable, g.store.Kind(), f.fleet.storeErr)
	}
	ev.At = g.now()
	ev.Replica = g.self()
	if ev.Kind == EventRollback {
		ev.Gates, ev.Canary = g.last.Gates, g.canaryView
	}
	next, eff, err := Next(g.rec, ev, g.rules)
	if err != nil {
		f := g.factsLocked(stableH, canaryH)
		g.mu.Unlock()
		return f.overview(), err
	}
	id := g.applyLocked(ev, next, eff)
	if id != 0 {
		g.awaiting[id] = nil
	}
	g.mu.Unlock()

	g.flush(false)

	g.mu.Lock()
	dropped := g.awaiting[id]
	delete(g.awaiting, id)
	f := g.factsLocked(stableH, canaryH)
	g.mu.Unlock()
	switch {
	case dropped != nil:
		return f.overview(), dropped
	case !f.persisted:
		cause := "a save is under way"
		if f.save.err != nil {
			cause = f.save.err.Error()
		}
		return f.overview(), fmt.Errorf("%w: the change is in force (the canary's traffic already follows it) but saving it failed: %s; canaryd retries the save until it succeeds, and until then a restart would resume an older state",
			ErrNotPersisted, cause)
	}
	return f.overview(), nil
}
