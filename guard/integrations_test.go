package guard_test

import (
	"testing"
	"time"

	"github.com/canaryd/canaryd/guard"
	"github.com/canaryd/canaryd/guard/judge"
)

// With confirmation on, a step that earned its observation waits (Awaiting,
// saved at once, no transition) until the event says the endpoint
// accepted; the answers are kept; a hold clears the wait.
func TestNextConfirmation(t *testing.T) {
	rules := rules3
	rules.Confirm = true
	r := rec(guard.StateProgressing, 0, 500, plan3)
	r.Observation = guard.Observation{Since: t0.Add(-2 * time.Minute)}
	judged := func(r guard.Record, at time.Duration, v judge.Verdict, confirmed bool, answer string) (guard.Record, guard.Effects) {
		t.Helper()
		next, eff, err := guard.Next(r, guard.Event{Kind: guard.EventJudged, At: t0.Add(at), Who: "guard", Verdict: v, Observable: true,
			Confirmed: confirmed, ConfirmAnswer: answer}, rules)
		if err != nil {
			t.Fatal(err)
		}
		return next, eff
	}

	waiting, eff := judged(r, 0, judge.Proceed, false, "")
	if eff.Transition != nil || waiting.Step != 0 || waiting.Awaiting == nil || !waiting.Awaiting.Since.Equal(t0) || eff.Save != guard.SaveNow {
		t.Fatalf("ready without confirmation: step %d, awaiting %+v, effects %+v; want step 0, awaiting since t0, saved at once", waiting.Step, waiting.Awaiting, eff)
	}
	// Confirmed without having waited proves nothing.
	if next, eff := judged(r, 0, judge.Proceed, true, "accepted"); eff.Transition != nil || next.Awaiting == nil {
		t.Errorf("a confirmation for a step that was not waiting advanced it: %+v", eff.Transition)
	}
	refused, eff := judged(waiting, time.Second, judge.Proceed, false, "403 Forbidden")
	if eff.Transition != nil || refused.Awaiting.Answer != "403 Forbidden" || !refused.Awaiting.Since.Equal(t0) || eff.Save != guard.SaveProgress {
		t.Fatalf("refused: awaiting %+v, effects %+v; want the answer kept, still since t0, a progress save", refused.Awaiting, eff)
	}
	if waiting.Awaiting.Answer != "" {
		t.Error("Next modified the record's Awaiting in place")
	}
	advanced, eff := judged(refused, 2*time.Second, judge.Proceed, true, "accepted")
	if eff.Transition == nil || advanced.Step != 1 || advanced.Awaiting != nil || eff.Kind != guard.KindStep {
		t.Fatalf("accepted: step %d, awaiting %+v, effects %+v; want step 1, no longer waiting, a step", advanced.Step, advanced.Awaiting, eff)
	}
	if tr := advanced.History[len(advanced.History)-1]; tr.Who != "plan" || tr.Reason != "step 1 (5%) observed healthy for 1m0s; confirmed" {
		t.Errorf("history entry %+v", tr)
	}
	held, eff := judged(refused, 3*time.Second, judge.Hold, false, "")
	if held.Awaiting != nil || eff.Save != guard.SaveNow || eff.Transition != nil {
		t.Errorf("a hold while waiting: awaiting %+v, effects %+v; want the wait cleared and saved at once", held.Awaiting, eff)
	}
	// The last step waits before complete.
	last := rec(guard.StateProgressing, 2, 10000, plan3)
	last.Observation = guard.Observation{Since: t0.Add(-time.Hour)}
	lastWaiting, _ := judged(last, 0, judge.Proceed, false, "")
	if lastWaiting.State != guard.StateProgressing || lastWaiting.Awaiting == nil {
		t.Fatalf("the last step without confirmation: %s, awaiting %+v", lastWaiting.State, lastWaiting.Awaiting)
	}
	if done, eff := judged(lastWaiting, time.Second, judge.Proceed, true, "accepted"); done.State != guard.StateComplete || eff.Kind != guard.KindComplete {
		t.Errorf("the last step confirmed: %s, %q; want complete", done.State, eff.Kind)
	}
	// An operator's promote does not wait, and clears the wait.
	promoted, _, err := guard.Next(waiting, guard.Event{Kind: guard.EventPromote, At: t0, Who: "ops"}, rules)
	if err != nil || promoted.Step != 1 || promoted.Awaiting != nil {
		t.Errorf("promote while waiting: step %d, awaiting %+v, %v", promoted.Step, promoted.Awaiting, err)
	}
	// The wait survives the store.
	data, err := guard.EncodeRecord(refused, 3)
	if err != nil {
		t.Fatal(err)
	}
	back, _, err := guard.DecodeRecord(data)
	if err != nil || back.Awaiting == nil || *back.Awaiting != *refused.Awaiting {
		t.Errorf("decoded awaiting %+v, %v; want %+v", back.Awaiting, err, refused.Awaiting)
	}
}

// A stalled step keeps its observation and stays stalled (and stored as
// such) until it advances, which clears the stall.
func TestNextStall(t *testing.T) {
	rules := deadline(30*time.Minute, guard.DeadlineStall)
	r := rec(guard.StateProgressing, 0, 500, plan3)
	r.Observation = guard.Observation{Since: t0.Add(-10 * time.Second)}
	stalled, eff, err := guard.Next(r, guard.Event{Kind: guard.EventJudged, At: t0, Who: "guard", Verdict: judge.Proceed, Observable: true}, rules)
	if err != nil || eff.Kind != guard.KindStalled || !stalled.StalledAt.Equal(t0) || stalled.Observation != r.Observation || eff.RestartJudge {
		t.Fatalf("stall: %q, stalled at %v, observation %+v, %+v, %v", eff.Kind, stalled.StalledAt, stalled.Observation, eff, err)
	}
	data, _ := guard.EncodeRecord(stalled, 1)
	if back, _, _ := guard.DecodeRecord(data); !back.StalledAt.Equal(t0) {
		t.Errorf("decoded stalled_at %v; want %v", back.StalledAt, t0)
	}
	// A restart keeps the stall (the same step), an advance clears it.
	booted, _, _ := guard.Next(stalled, guard.Event{Kind: guard.EventBoot, At: t0.Add(time.Minute), Stored: true}, rules)
	if booted.StalledAt.IsZero() {
		t.Error("a restart cleared the stall")
	}
	advanced, eff, _ := guard.Next(stalled, guard.Event{Kind: guard.EventJudged, At: t0.Add(time.Minute), Who: "guard", Verdict: judge.Proceed, Observable: true}, rules)
	if eff.Kind != guard.KindStep || !advanced.StalledAt.IsZero() {
		t.Errorf("advance of a stalled step: %q, stalled at %v; want a step, no longer stalled", eff.Kind, advanced.StalledAt)
	}
	rb, eff, _ := guard.Next(r, guard.Event{Kind: guard.EventJudged, At: t0, Who: "guard", Verdict: judge.Hold, Observable: true},
		deadline(30*time.Minute, guard.DeadlineRollback))
	if rb.Rollback == nil || rb.Rollback.Detail != "step 1 (5%) did not advance within the progress deadline of 30m0s" || eff.Kind != guard.KindRolledBack {
		t.Fatalf("deadline rollback: %+v, %q", rb.Rollback, eff.Kind)
	}
	if g := rb.Rollback.Gates; len(g) == 0 || g[len(g)-1].Name != "progress_deadline" || g[len(g)-1].Verdict != judge.GateFail || g[len(g)-1].Value != 3600 {
		t.Errorf("deadline rollback's evidence %+v; want a failing progress_deadline gate at 3600 s", g)
	}
}

// Every transition names its kind, as the notices do.
func TestNextKinds(t *testing.T) {
	running := rec(guard.StateProgressing, 0, 500, plan3)
	due := running
	due.Observation = guard.Observation{Since: t0.Add(-time.Hour)}
	last := rec(guard.StateProgressing, 2, 10000, plan3)
	last.Observation = due.Observation
	for _, tt := range []struct {
		name string
		from guard.Record
		ev   guard.Event
		want guard.TransitionKind
	}{
		{"fresh start", guard.Record{}, ev(guard.EventBoot), guard.KindStarted},
		{"new release at boot", running, ev(guard.EventBoot, func(e *guard.Event) { e.Stored, e.Release = true, "v2" }), guard.KindStarted},
		{"restart", running, ev(guard.EventBoot, func(e *guard.Event) { e.Stored = true }), guard.KindRestarted},
		{"unreadable", guard.Record{}, ev(guard.EventBoot, func(e *guard.Event) { e.Problem = "bad" }), guard.KindHeld},
		{"plan step", due, ev(guard.EventJudged, verdict(judge.Proceed, true)), guard.KindStep},
		{"plan complete", last, ev(guard.EventJudged, verdict(judge.Proceed, true)), guard.KindComplete},
		{"judge rollback", running, ev(guard.EventJudged, verdict(judge.RollbackLatency, true)), guard.KindRolledBack},
		{"integrity", running, ev(guard.EventIntegrityFailed), guard.KindRolledBack},
		{"metric", running, ev(guard.EventMetricFailed), guard.KindRolledBack},
		{"manual rollback", running, ev(guard.EventRollback), guard.KindRolledBack},
		{"weight", running, ev(guard.EventSetWeight, func(e *guard.Event) { e.Weight = 100 }), guard.KindWeight},
		{"promote", running, ev(guard.EventPromote), guard.KindStep},
		{"promote to complete", rec(guard.StateProgressing, 2, 10000, plan3), ev(guard.EventPromote), guard.KindComplete},
		{"pause", running, ev(guard.EventPause), guard.KindPaused},
		{"resume", rec(guard.StatePaused, 1, 700, plan3), ev(guard.EventResume), guard.KindResumed},
		{"reset", rec(guard.StateRolledBack, 1, 0, plan3), ev(guard.EventReset), guard.KindReset},
		{"start", running, ev(guard.EventStart, func(e *guard.Event) { e.Release = "v2" }), guard.KindStarted},
		{"finish", running, ev(guard.EventFinish), guard.KindFinished},
	} {
		_, eff, err := guard.Next(tt.from, tt.ev, rules3)
		if err != nil || eff.Transition == nil || eff.Kind != tt.want {
			t.Errorf("%s: kind %q (transition %v, %v); want %q", tt.name, eff.Kind, eff.Transition != nil, err, tt.want)
		}
	}
}
