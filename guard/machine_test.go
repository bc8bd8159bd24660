package guard_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/canaryd/canaryd/guard"
	"github.com/canaryd/canaryd/guard/judge"
)

var (
	t0      = time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	plan3   = guard.Plan{Steps: []guard.Step{{Weight: 500, Observe: time.Minute}, {Weight: 2500, Observe: time.Minute}, {Weight: 10000, Observe: time.Minute}}, Weight: 1000}
	fixed10 = guard.Plan{Weight: 1000}
	rules3  = guard.Rules{Plan: plan3}
)

// rec builds a record of release v1 in state st at step and weight.
func rec(st guard.State, step int, weight uint32, plan guard.Plan) guard.Record {
	r := guard.Record{Release: "v1", State: st, Step: step, Weight: weight, Plan: plan, Releases: []string{"v0", "v1"}, StepStartedAt: t0.Add(-time.Hour)}
	if st == guard.StateRolledBack {
		r.Rollback = &guard.RollbackRecord{At: t0.Add(-time.Minute), Reason: guard.RecRollbackErrorRate, Who: "guard"}
	}
	if st == guard.StateHeld {
		r.Problem = "unreadable"
	}
	return r
}

func ev(kind guard.EventKind, mod ...func(*guard.Event)) guard.Event {
	e := guard.Event{Kind: kind, At: t0, Who: "10.0.0.1:5000"}
	for _, m := range mod {
		m(&e)
	}
	return e
}

func verdict(v judge.Verdict, observable bool) func(*guard.Event) {
	return func(e *guard.Event) { e.Verdict, e.Observable, e.Who = v, observable, "guard" }
}

func asGuard(e *guard.Event) { e.Who = "guard" }

// deadline is rules3 with a progress deadline.
func deadline(d time.Duration, action guard.DeadlineAction) guard.Rules {
	r := rules3
	r.Deadline, r.DeadlineAction = d, action
	return r
}

// TestNext is the package doc's transition table, row by row: from a
// record, an event gives a state, step and weight, says whether the judge
// restarts and what is counted, or refuses.
func TestNext(t *testing.T) {
	type want struct {
		state   guard.State
		step    int
		weight  uint32
		restart bool
		rolled  guard.Recommendation
		who     string // of the history entry; "" = no transition
		reason  string // substring of the history entry's reason
		err     error
		release string
		noop    bool // no transition (and no history entry)
	}
	paused7 := rec(guard.StatePaused, 1, 700, plan3)
	running := rec(guard.StateProgressing, 0, 500, plan3)
	running.Observation = guard.Observation{Since: t0.Add(-time.Minute)}
	restored := rec(guard.StateProgressing, 0, 500, plan3)
	restored.Observation = guard.Observation{Banked: 50 * time.Second, Restored: true}
	stored := rec(guard.StateProgressing, 1, 2500, plan3)
	stored.Observation = guard.Observation{Banked: 10 * time.Second, Since: t0.Add(-40 * time.Second)}
	stored.SavedAt = t0.Add(-30 * time.Second)
	custom := rec(guard.StateProgressing, 1, 5000, guard.Plan{Steps: []guard.Step{{Weight: 100, Observe: time.Minute}, {Weight: 5000, Observe: time.Minute}}, Custom: true})

	tests := []struct {
		name  string
		from  guard.Record
		ev    guard.Event
		rules guard.Rules
		want  want
	}{
		// Boot.
		{"boot, nothing stored", guard.Record{}, ev(guard.EventBoot, func(e *guard.Event) { e.Release, e.Who = "v1", "startup" }), rules3,
			want{state: guard.StateProgressing, weight: 500, restart: true, who: "startup", reason: "fresh start", release: "v1"}},
		{"boot, nothing stored, no plan", guard.Record{}, ev(guard.EventBoot), guard.Rules{Plan: fixed10},
			want{state: guard.StateFixed, weight: 1000, restart: true, reason: "fresh start"}},
		{"boot, unreadable", guard.Record{}, ev(guard.EventBoot, func(e *guard.Event) { e.Problem = "bad JSON" }), rules3,
			want{state: guard.StateHeld, weight: 0, reason: "unreadable"}},
		{"boot, unseen CANARY_RELEASE starts it", rec(guard.StateRolledBack, 1, 0, plan3), ev(guard.EventBoot, func(e *guard.Event) { e.Stored, e.Release = true, "v2" }), rules3,
			want{state: guard.StateProgressing, weight: 500, restart: true, reason: `new release "v2" (was "v1")`, release: "v2"}},
		{"boot, current CANARY_RELEASE resumes", rec(guard.StateRolledBack, 1, 0, plan3), ev(guard.EventBoot, func(e *guard.Event) { e.Stored, e.Release = true, "v1" }), rules3,
			want{state: guard.StateRolledBack, step: 1, weight: 0, reason: "resumed after restart", release: "v1"}},
		{"boot, earlier CANARY_RELEASE changes nothing", rec(guard.StatePaused, 1, 700, plan3), ev(guard.EventBoot, func(e *guard.Event) { e.Stored, e.Release = true, "v0" }), rules3,
			want{state: guard.StatePaused, step: 1, weight: 700, restart: true, reason: `CANARY_RELEASE "v0" was seen before, release "v1" kept`, release: "v1"}},
		{"boot, no CANARY_RELEASE keeps the stored one", rec(guard.StateFinished, 2, 0, plan3), ev(guard.EventBoot, func(e *guard.Event) { e.Stored = true }), rules3,
			want{state: guard.StateFinished, step: 2, weight: 0, reason: "resumed", release: "v1"}},
		{"boot, progressing keeps its step", stored, ev(guard.EventBoot, func(e *guard.Event) { e.Stored = true }), rules3,
			want{state: guard.StateProgressing, step: 1, weight: 2500, restart: true, reason: "resumed after restart"}},
		{"boot, complete", rec(guard.StateComplete, 2, 10000, plan3), ev(guard.EventBoot, func(e *guard.Event) { e.Stored = true }), rules3,
			want{state: guard.StateComplete, step: 2, weight: 10000, restart: true}},
		{"boot, configured plan changed: step clamped", rec(guard.StateProgressing, 2, 10000, plan3), ev(guard.EventBoot, func(e *guard.Event) { e.Stored = true }),
			guard.Rules{Plan: guard.Plan{Steps: []guard.Step{{Weight: 1000, Observe: time.Minute}, {Weight: 2000, Observe: time.Minute}}}},
			want{state: guard.StateProgressing, step: 1, weight: 2000, restart: true, reason: "plan changed"}},
		{"boot, plan removed: fixed", rec(guard.StateProgressing, 1, 2500, plan3), ev(guard.EventBoot, func(e *guard.Event) { e.Stored = true }), guard.Rules{Plan: fixed10},
			want{state: guard.StateFixed, weight: 1000, restart: true, reason: "plan changed"}},
		{"boot, plan added to fixed", rec(guard.StateFixed, 0, 1000, fixed10), ev(guard.EventBoot, func(e *guard.Event) { e.Stored = true }), rules3,
			want{state: guard.StateProgressing, weight: 500, restart: true}},
		{"boot, a Custom plan stays", custom, ev(guard.EventBoot, func(e *guard.Event) { e.Stored = true }), rules3,
			want{state: guard.StateProgressing, step: 1, weight: 5000, restart: true, reason: "resumed after restart"}},

		// The judge.
		{"proceed for the observe time advances", running, ev(guard.EventJudged, verdict(judge.Proceed, true)), rules3,
			want{state: guard.StateProgressing, step: 1, weight: 2500, restart: true, who: "plan", reason: "step 1 (5%) observed healthy for 1m0s"}},
		{"proceed at the last step completes", func() guard.Record {
			r := rec(guard.StateProgressing, 2, 10000, plan3)
			r.Observation.Since = t0.Add(-time.Hour)
			return r
		}(),
			ev(guard.EventJudged, verdict(judge.Proceed, true)), rules3,
			want{state: guard.StateComplete, step: 2, weight: 10000, restart: false, who: "plan", reason: "plan complete"}},
		{"proceed unobservable earns nothing", running, ev(guard.EventJudged, verdict(judge.Proceed, false)), rules3,
			want{state: guard.StateProgressing, weight: 500, noop: true}},
		{"restored credit plus proceed", restored, ev(guard.EventJudged, verdict(judge.Proceed, true), func(e *guard.Event) { e.At = t0 }), rules3,
			want{state: guard.StateProgressing, weight: 500, noop: true}},
		{"rollback verdict", running, ev(guard.EventJudged, verdict(judge.RollbackErrorRate, true)), rules3,
			want{state: guard.StateRolledBack, weight: 0, rolled: guard.RecRollbackErrorRate, who: "guard", reason: "rollback_error_rate"}},
		{"rollback verdict while paused", paused7, ev(guard.EventJudged, verdict(judge.RollbackLatency, true)), rules3,
			want{state: guard.StateRolledBack, step: 1, weight: 0, rolled: guard.RecRollbackLatency, who: "guard"}},
		{"rollback verdict while complete", rec(guard.StateComplete, 2, 10000, plan3), ev(guard.EventJudged, verdict(judge.RollbackLatency, true)), rules3,
			want{state: guard.StateRolledBack, step: 2, weight: 0, rolled: guard.RecRollbackLatency, who: "guard"}},
		{"verdicts do not act when rolled back", rec(guard.StateRolledBack, 1, 0, plan3), ev(guard.EventJudged, verdict(judge.RollbackLatency, true)), rules3,
			want{state: guard.StateRolledBack, step: 1, noop: true}},
		{"verdicts do not act when finished", rec(guard.StateFinished, 1, 0, plan3), ev(guard.EventJudged, verdict(judge.RollbackLatency, true)), rules3,
			want{state: guard.StateFinished, step: 1, noop: true}},
		{"verdicts do not act when held", rec(guard.StateHeld, 0, 0, plan3), ev(guard.EventJudged, verdict(judge.RollbackLatency, true)), rules3,
			want{state: guard.StateHeld, noop: true}},
		{"integrity failure rolls back", running, ev(guard.EventIntegrityFailed), rules3,
			want{state: guard.StateRolledBack, weight: 0, rolled: guard.RecRollbackIntegrity, reason: "rollback_integrity"}},
		{"integrity failure while held rolls back", rec(guard.StateHeld, 0, 0, plan3), ev(guard.EventIntegrityFailed), rules3,
			want{state: guard.StateRolledBack, weight: 0, rolled: guard.RecRollbackIntegrity}},
		{"integrity failure while finished does nothing", rec(guard.StateFinished, 0, 0, plan3), ev(guard.EventIntegrityFailed), rules3,
			want{state: guard.StateFinished, noop: true}},
		{"metric gate failure rolls back", running, ev(guard.EventMetricFailed, asGuard, func(e *guard.Event) { e.Detail = "metric gate checkout: 0.3 above its max 0.05 for 2m0s" }), rules3,
			want{state: guard.StateRolledBack, weight: 0, rolled: guard.RecRollbackMetric, who: "guard", reason: "rollback_metric"}},
		{"metric gate failure while paused rolls back", paused7, ev(guard.EventMetricFailed, asGuard), rules3,
			want{state: guard.StateRolledBack, step: 1, weight: 0, rolled: guard.RecRollbackMetric}},
		{"metric gate failure while held does nothing", rec(guard.StateHeld, 0, 0, plan3), ev(guard.EventMetricFailed, asGuard), rules3,
			want{state: guard.StateHeld, noop: true}},
		{"metric gate failure while finished does nothing", rec(guard.StateFinished, 0, 0, plan3), ev(guard.EventMetricFailed, asGuard), rules3,
			want{state: guard.StateFinished, noop: true}},
		{"metric gate failure when rolled back does nothing", rec(guard.StateRolledBack, 1, 0, plan3), ev(guard.EventMetricFailed, asGuard), rules3,
			want{state: guard.StateRolledBack, step: 1, noop: true}},

		// The progress deadline (the running step began an hour ago).
		{"deadline passed: stalled", running, ev(guard.EventJudged, verdict(judge.Hold, true)), deadline(30*time.Minute, guard.DeadlineStall),
			want{state: guard.StateProgressing, weight: 500, who: "plan", reason: "step 1 (5%) did not advance within the progress deadline of 30m0s: stalled"}},
		{"deadline passed: rolled back", running, ev(guard.EventJudged, verdict(judge.Hold, true)), deadline(30*time.Minute, guard.DeadlineRollback),
			want{state: guard.StateRolledBack, weight: 0, rolled: guard.RecRollbackDeadline, who: "guard", reason: "rollback_deadline"}},
		{"deadline not passed", running, ev(guard.EventJudged, verdict(judge.Hold, true)), deadline(2*time.Hour, guard.DeadlineRollback),
			want{state: guard.StateProgressing, weight: 500, noop: true}},
		{"deadline passed, already stalled", func() guard.Record { r := running; r.StalledAt = t0.Add(-time.Minute); return r }(),
			ev(guard.EventJudged, verdict(judge.Hold, true)), deadline(30*time.Minute, guard.DeadlineRollback),
			want{state: guard.StateProgressing, weight: 500, noop: true}},
		{"deadline passed, but the step advances", running, ev(guard.EventJudged, verdict(judge.Proceed, true)), deadline(30*time.Minute, guard.DeadlineRollback),
			want{state: guard.StateProgressing, step: 1, weight: 2500, restart: true, who: "plan"}},
		{"deadline does not apply while paused", paused7, ev(guard.EventJudged, verdict(judge.Hold, true)), deadline(time.Second, guard.DeadlineRollback),
			want{state: guard.StatePaused, step: 1, weight: 700, noop: true}},
		{"a rollback verdict wins over the deadline", running, ev(guard.EventJudged, verdict(judge.RollbackErrorRate, true)), deadline(time.Second, guard.DeadlineStall),
			want{state: guard.StateRolledBack, weight: 0, rolled: guard.RecRollbackErrorRate}},

		// Operators.
		{"weight pauses", running, ev(guard.EventSetWeight, func(e *guard.Event) { e.Weight = 1234 }), rules3,
			want{state: guard.StatePaused, weight: 1234, restart: true, who: "10.0.0.1:5000", reason: "weight set by hand to 12.34%"}},
		{"same weight keeps the evidence", running, ev(guard.EventSetWeight, func(e *guard.Event) { e.Weight = 500 }), rules3,
			want{state: guard.StatePaused, weight: 500, restart: false, reason: "weight set by hand to 5%"}},
		{"weight 0 does not restart", running, ev(guard.EventSetWeight, func(e *guard.Event) { e.Weight = 0 }), rules3,
			want{state: guard.StatePaused, weight: 0, restart: false}},
		{"weight from held restarts", rec(guard.StateHeld, 0, 0, plan3), ev(guard.EventSetWeight, func(e *guard.Event) { e.Weight = 0 }), rules3,
			want{state: guard.StatePaused, weight: 0, restart: true}},
		{"weight above 100", running, ev(guard.EventSetWeight, func(e *guard.Event) { e.Weight = 10001 }), rules3, want{err: guard.ErrInvalid}},
		{"weight while rolled back", rec(guard.StateRolledBack, 0, 0, plan3), ev(guard.EventSetWeight, func(e *guard.Event) { e.Weight = 1 }), rules3, want{err: guard.ErrConflict}},
		{"weight while finished", rec(guard.StateFinished, 0, 0, plan3), ev(guard.EventSetWeight, func(e *guard.Event) { e.Weight = 1 }), rules3, want{err: guard.ErrConflict}},
		{"promote", running, ev(guard.EventPromote), rules3,
			want{state: guard.StateProgressing, step: 1, weight: 2500, restart: true, reason: "promoted to step 2"}},
		{"promote paused", paused7, ev(guard.EventPromote), rules3,
			want{state: guard.StateProgressing, step: 2, weight: 10000, restart: true}},
		{"promote at the last step", rec(guard.StateProgressing, 2, 10000, plan3), ev(guard.EventPromote), rules3,
			want{state: guard.StateComplete, step: 2, weight: 10000, restart: false, reason: "promoted to 100%"}},
		{"promote without a plan", rec(guard.StateFixed, 0, 1000, fixed10), ev(guard.EventPromote), guard.Rules{Plan: fixed10},
			want{state: guard.StateComplete, weight: 10000, restart: true}},
		{"promote while rolled back", rec(guard.StateRolledBack, 0, 0, plan3), ev(guard.EventPromote), rules3, want{err: guard.ErrConflict}},
		{"promote while held", rec(guard.StateHeld, 0, 0, plan3), ev(guard.EventPromote), rules3, want{err: guard.ErrConflict}},
		{"promote while complete", rec(guard.StateComplete, 2, 10000, plan3), ev(guard.EventPromote), rules3, want{err: guard.ErrConflict}},
		{"promote while finished", rec(guard.StateFinished, 0, 0, plan3), ev(guard.EventPromote), rules3, want{err: guard.ErrConflict}},
		{"manual rollback", running, ev(guard.EventRollback), rules3,
			want{state: guard.StateRolledBack, weight: 0, rolled: guard.RecRollbackManual, who: "10.0.0.1:5000", reason: "rollback_manual"}},
		{"manual rollback while held", rec(guard.StateHeld, 0, 0, plan3), ev(guard.EventRollback), rules3,
			want{state: guard.StateRolledBack, weight: 0, rolled: guard.RecRollbackManual}},
		{"rollback when rolled back changes nothing", rec(guard.StateRolledBack, 1, 0, plan3), ev(guard.EventRollback), rules3,
			want{state: guard.StateRolledBack, step: 1, noop: true}},
		{"rollback when finished changes nothing", rec(guard.StateFinished, 1, 0, plan3), ev(guard.EventRollback), rules3,
			want{state: guard.StateFinished, step: 1, noop: true}},
		{"pause", running, ev(guard.EventPause), rules3, want{state: guard.StatePaused, weight: 500, restart: false, reason: "paused"}},
		{"pause while paused", paused7, ev(guard.EventPause), rules3, want{err: guard.ErrConflict}},
		{"pause without a plan", rec(guard.StateFixed, 0, 1000, fixed10), ev(guard.EventPause), rules3, want{err: guard.ErrConflict}},
		{"resume", paused7, ev(guard.EventResume), rules3, want{state: guard.StateProgressing, step: 1, weight: 2500, restart: true, reason: "resumed"}},
		{"resume at the same weight keeps the evidence", rec(guard.StatePaused, 1, 2500, plan3), ev(guard.EventResume), rules3,
			want{state: guard.StateProgressing, step: 1, weight: 2500, restart: false}},
		{"resume without a plan", rec(guard.StatePaused, 0, 5000, fixed10), ev(guard.EventResume), rules3,
			want{state: guard.StateFixed, weight: 1000, restart: true}},
		{"resume held", rec(guard.StateHeld, 0, 0, plan3), ev(guard.EventResume), rules3,
			want{state: guard.StateProgressing, weight: 500, restart: true}},
		{"resume while rolled back", rec(guard.StateRolledBack, 0, 0, plan3), ev(guard.EventResume), rules3, want{err: guard.ErrConflict}},
		{"reset", rec(guard.StateRolledBack, 1, 0, plan3), ev(guard.EventReset), rules3,
			want{state: guard.StateProgressing, weight: 500, restart: true, reason: "reset"}},
		{"reset at the same place restarts", running, ev(guard.EventReset), rules3,
			want{state: guard.StateProgressing, weight: 500, restart: true}},
		{"reset a custom plan keeps it", custom, ev(guard.EventReset), rules3,
			want{state: guard.StateProgressing, weight: 100, restart: true}},
		{"reset while finished", rec(guard.StateFinished, 0, 0, plan3), ev(guard.EventReset), rules3, want{err: guard.ErrConflict}},
		{"start a release", rec(guard.StateRolledBack, 1, 0, plan3), ev(guard.EventStart, func(e *guard.Event) { e.Release = "v2" }), rules3,
			want{state: guard.StateProgressing, weight: 500, restart: true, reason: `started release "v2" (was "v1")`, release: "v2"}},
		{"start with steps", rec(guard.StateFinished, 1, 0, plan3), ev(guard.EventStart, func(e *guard.Event) {
			e.Release, e.Steps = "v2", []guard.Step{{Weight: 0, Observe: time.Minute}, {Weight: 700, Observe: time.Minute}}
		}), rules3, want{state: guard.StateProgressing, weight: 0, restart: true, release: "v2"}},
		{"start without a plan", rec(guard.StateComplete, 0, 10000, fixed10), ev(guard.EventStart, func(e *guard.Event) { e.Release = "v2" }), guard.Rules{Plan: fixed10},
			want{state: guard.StateFixed, weight: 1000, restart: true, release: "v2"}},
		{"start an earlier release", rec(guard.StatePaused, 0, 100, plan3), ev(guard.EventStart, func(e *guard.Event) { e.Release = "v0" }), rules3,
			want{state: guard.StateProgressing, weight: 500, restart: true, release: "v0"}},
		{"start the current release", running, ev(guard.EventStart, func(e *guard.Event) { e.Release = "v1" }), rules3, want{err: guard.ErrConflict}},
		{"start without a release", running, ev(guard.EventStart), rules3, want{err: guard.ErrInvalid}},
		{"start with falling steps", running, ev(guard.EventStart, func(e *guard.Event) {
			e.Release, e.Steps = "v2", []guard.Step{{Weight: 700, Observe: time.Minute}, {Weight: 100, Observe: time.Minute}}
		}), rules3, want{err: guard.ErrInvalid}},
		{"finish", running, ev(guard.EventFinish), rules3,
			want{state: guard.StateFinished, weight: 0, restart: false, reason: `finished release "v1"`}},
		{"finish a rollback", rec(guard.StateRolledBack, 1, 0, plan3), ev(guard.EventFinish), rules3,
			want{state: guard.StateFinished, step: 1, weight: 0}},
		{"finish when finished changes nothing", rec(guard.StateFinished, 1, 0, plan3), ev(guard.EventFinish), rules3,
			want{state: guard.StateFinished, step: 1, noop: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := tt.from
			beforeHistory := len(before.History)
			got, eff, err := guard.Next(tt.from, tt.ev, tt.rules)
			if tt.want.err != nil {
				if !errors.Is(err, tt.want.err) {
					t.Fatalf("Next = %v; want %v", err, tt.want.err)
				}
				if eff.Transition != nil || eff.Route || eff.RestartJudge {
					t.Errorf("a refused event has effects %+v", eff)
				}
				return
			}
			if err != nil {
				t.Fatalf("Next: %v", err)
			}
			if got.State != tt.want.state || got.Step != tt.want.step || got.Weight != tt.want.weight {
				t.Errorf("Next = %s step %d weight %d; want %s step %d weight %d", got.State, got.Step, got.Weight, tt.want.state, tt.want.step, tt.want.weight)
			}
			if eff.RestartJudge != tt.want.restart {
				t.Errorf("RestartJudge = %v; want %v", eff.RestartJudge, tt.want.restart)
			}
			if eff.RolledBack != tt.want.rolled {
				t.Errorf("RolledBack = %q; want %q", eff.RolledBack, tt.want.rolled)
			}
			if tt.want.release != "" && got.Release != tt.want.release {
				t.Errorf("release = %q; want %q", got.Release, tt.want.release)
			}
			if got.State == guard.StateRolledBack != (got.Rollback != nil) {
				t.Errorf("state %s with rollback record %+v", got.State, got.Rollback)
			}
			if got.State.BlocksCanary() && eff.RestartJudge {
				t.Error("restarts the judge for a blocked canary")
			}
			if len(before.History) != beforeHistory {
				t.Error("Next modified its input")
			}
			moved := eff.Transition != nil
			if moved == tt.want.noop {
				if moved {
					t.Errorf("unexpected transition %+v", *eff.Transition)
				} else {
					t.Errorf("no transition; want one")
				}
			}
			if !moved {
				if len(got.History) != len(tt.from.History) || eff.Route || eff.RestartJudge || eff.Save == guard.SaveNow {
					t.Errorf("a no-op has effects %+v or grew the history", eff)
				}
				return
			}
			tr := got.History[len(got.History)-1]
			if *eff.Transition != tr || !eff.Route || eff.Save != guard.SaveNow {
				t.Errorf("effects %+v do not match the history entry %+v", eff, tr)
			}
			if tt.want.who != "" && tr.Who != tt.want.who {
				t.Errorf("who = %q; want %q", tr.Who, tt.want.who)
			}
			if !strings.Contains(tr.Reason, tt.want.reason) {
				t.Errorf("reason = %q; want it to contain %q", tr.Reason, tt.want.reason)
			}
			if tr.ToState != got.State.String() || tr.Release != got.Release || !tr.At.Equal(t0) {
				t.Errorf("history entry %+v does not describe the new record", tr)
			}
		})
	}
}

// TestNextObservation follows the observation clock: restored credit counts,
// a hold after a restart keeps it, any other verdict clears it.
func TestNextObservation(t *testing.T) {
	r := rec(guard.StateProgressing, 0, 500, plan3)
	r.Observation = guard.Observation{Banked: 50 * time.Second, Restored: true}
	steps := []struct {
		at      time.Duration
		v       judge.Verdict
		earned  time.Duration
		advance bool
	}{
		{0, judge.Hold, 50 * time.Second, false},              // gathering evidence again: credit kept
		{time.Second, judge.Proceed, 50 * time.Second, false}, // a run starts
		{9 * time.Second, judge.Proceed, 58 * time.Second, false},
		{11 * time.Second, judge.Proceed, 0, true}, // 50 + 10 s: the step's minute is complete
	}
	for i, st := range steps {
		next, eff, err := guard.Next(r, guard.Event{Kind: guard.EventJudged, At: t0.Add(st.at), Who: "guard", Verdict: st.v, Observable: true}, rules3)
		if err != nil {
			t.Fatal(err)
		}
		if st.advance != (eff.Transition != nil) {
			t.Fatalf("tick %d: transition %v; want %v", i, eff.Transition, st.advance)
		}
		if got := next.Observation.Earned(t0.Add(st.at)); !st.advance && got != st.earned {
			t.Errorf("tick %d: earned %v; want %v", i, got, st.earned)
		}
		if !st.advance && eff.Save != guard.SaveProgress {
			t.Errorf("tick %d: save %v; want SaveProgress", i, eff.Save)
		}
		r = next
	}
	if r.Step != 1 {
		t.Fatalf("step %d; want 1", r.Step)
	}
	// A hold not caused by a restart clears the observation.
	r.Observation = guard.Observation{Banked: time.Second, Since: t0}
	next, _, _ := guard.Next(r, guard.Event{Kind: guard.EventJudged, At: t0.Add(time.Minute), Verdict: judge.Hold, Observable: true}, rules3)
	if next.Observation != (guard.Observation{}) {
		t.Errorf("after a hold: %+v; want nothing earned", next.Observation)
	}
	// A restart keeps what was earned up to the last save, not the downtime.
	stored := rec(guard.StateProgressing, 1, 2500, plan3)
	stored.Observation = guard.Observation{Banked: 10 * time.Second, Since: t0.Add(-40 * time.Second)}
	stored.SavedAt = t0.Add(-30 * time.Second)
	booted, _, _ := guard.Next(stored, guard.Event{Kind: guard.EventBoot, At: t0.Add(time.Hour), Stored: true}, rules3)
	if o := booted.Observation; o.Banked != 20*time.Second || !o.Restored || !o.Since.IsZero() {
		t.Errorf("after a restart: %+v; want 20s banked, restored", o)
	}
}

// TestRebase: a change recomputed on a newer stored record never undoes a
// rollback it did not see.
func TestRebase(t *testing.T) {
	basis := rec(guard.StateProgressing, 0, 500, plan3)
	rolled, _, _ := guard.Next(basis, guard.Event{Kind: guard.EventRollback, At: t0, Who: "replica-a"}, rules3)
	tests := []struct {
		name    string
		basis   guard.Record
		newer   guard.Record
		ev      guard.Event
		want    guard.State
		wantErr error
	}{
		{"reset computed before a rollback", basis, rolled, ev(guard.EventReset), 0, guard.ErrConflict},
		{"resume computed before a rollback", basis, rolled, ev(guard.EventResume), 0, guard.ErrConflict},
		{"weight computed before a rollback", basis, rolled, ev(guard.EventSetWeight, func(e *guard.Event) { e.Weight = 100 }), 0, guard.ErrConflict},
		{"reset that saw the rollback", rolled, rolled, ev(guard.EventReset), guard.StateProgressing, nil},
		{"a second rollback is a no-op", basis, rolled, ev(guard.EventRollback), guard.StateRolledBack, nil},
		{"finish after a rollback", basis, rolled, ev(guard.EventFinish), guard.StateFinished, nil},
		{"start of another release", basis, rolled, ev(guard.EventStart, func(e *guard.Event) { e.Release = "v2" }), guard.StateProgressing, nil},
		{"pause on a promoted record", basis, rec(guard.StateProgressing, 1, 2500, plan3), ev(guard.EventPause), guard.StatePaused, nil},
		{"a rollback wins over a promotion", basis, rec(guard.StateProgressing, 1, 2500, plan3), ev(guard.EventRollback), guard.StateRolledBack, nil},
		{"a boot that could not read resumes the newer record", guard.Record{}, rec(guard.StatePaused, 1, 700, plan3),
			ev(guard.EventBoot, func(e *guard.Event) { e.Problem = "store unreachable" }), guard.StatePaused, nil},
		{"a boot with a new release starts it on the newer record", guard.Record{}, rolled,
			ev(guard.EventBoot, func(e *guard.Event) { e.Release = "v2" }), guard.StateProgressing, nil},
		{"a boot with a release the newer record has seen resumes it", guard.Record{}, rolled,
			ev(guard.EventBoot, func(e *guard.Event) { e.Release = "v0" }), guard.StateRolledBack, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, _, err := guard.Rebase(tt.basis, tt.newer, tt.ev, rules3)
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil && err != nil) {
				t.Fatalf("Rebase = %v; want %v", err, tt.wantErr)
			}
			if err == nil && got.State != tt.want {
				t.Errorf("Rebase = %s; want %s", got.State, tt.want)
			}
			if err != nil && got.State != tt.newer.State {
				t.Errorf("a refused rebase changed the record to %s", got.State)
			}
		})
	}
}

// TestAdopt: taking over another writer's record routes to it and restarts
// the judge only when the judges' evidence began anew (EvidenceSince), the
// release changed or the canary was blocked.
func TestAdopt(t *testing.T) {
	running := rec(guard.StateProgressing, 0, 500, plan3)
	for _, tt := range []struct {
		name    string
		old     guard.Record
		newer   guard.Record
		restart bool
	}{
		{"promoted elsewhere", running, func() guard.Record {
			r := rec(guard.StateProgressing, 1, 2500, plan3)
			r.EvidenceSince = running.EvidenceSince.Add(time.Minute)
			return r
		}(), true},
		{"weight set to 0 elsewhere (same evidence)", running, rec(guard.StatePaused, 0, 0, plan3), false},
		{"paused elsewhere", running, rec(guard.StatePaused, 0, 500, plan3), false},
		{"rolled back elsewhere", running, rec(guard.StateRolledBack, 0, 0, plan3), false},
		{"reset elsewhere", rec(guard.StateRolledBack, 0, 0, plan3), running, true},
		{"new release elsewhere", running, func() guard.Record { r := running; r.Release = "v2"; return r }(), true},
	} {
		eff := guard.Adopt(tt.old, tt.newer)
		if !eff.Route || eff.RestartJudge != tt.restart || eff.RolledBack != "" {
			t.Errorf("%s: Adopt = %+v; want route, restart %v, no rollback counted", tt.name, eff, tt.restart)
		}
	}
}
