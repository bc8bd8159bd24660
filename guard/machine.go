package guard

import (
	"fmt"
	"slices"
	"time"

	"github.com/canaryd/canaryd/guard/judge"
	"github.com/canaryd/canaryd/split"
)

// EventKind is what happened to the rollout: the input of Next.
type EventKind uint8

// The events; the package doc's table says what each does in each state.
const (
	// EventBoot: the process started with the stored record (or none).
	EventBoot EventKind = iota + 1
	// EventJudged: the judge gave a verdict.
	EventJudged
	// EventIntegrityFailed: the release's files failed their check.
	EventIntegrityFailed
	// EventSetWeight, EventPromote, EventRollback, EventPause, EventResume,
	// EventReset, EventStart, EventFinish: an operator's command.
	EventSetWeight
	EventPromote
	EventRollback
	EventPause
	EventResume
	EventReset
	EventStart
	EventFinish
	// EventLead: this replica became the leader of its fleet, the one
	// that judges the fleet's evidence and runs the plan.
	EventLead
	// EventMetricFailed: a metric gate was outside its bound for its "for"
	// (CANARY_METRIC_GATES).
	EventMetricFailed
)

// String names the event as the admin API does (its command's name).
func (k EventKind) String() string {
	switch k {
	case EventBoot:
		return "boot"
	case EventJudged:
		return "judged"
	case EventIntegrityFailed:
		return "integrity_failed"
	case EventSetWeight:
		return "weight"
	case EventPromote:
		return "promote"
	case EventRollback:
		return "rollback"
	case EventPause:
		return "pause"
	case EventResume:
		return "resume"
	case EventReset:
		return "reset"
	case EventStart:
		return "start"
	case EventFinish:
		return "finish"
	case EventLead:
		return "lead"
	case EventMetricFailed:
		return "metric_failed"
	}
	return fmt.Sprintf("event(%d)", uint8(k))
}

// Event is one input of Next. Kind, At and Who are always set; the other
// fields belong to the kinds their comments name.
type Event struct {
	Kind EventKind
	At   time.Time
	// Who goes into the history: "plan", "guard", "startup" or the admin
	// caller.
	Who string
	// Replica is the fleet replica the event happened on, for the history
	// ("" for a single canaryd).
	Replica string
	// Release: EventBoot, the configured release (CANARY_RELEASE, "" for
	// none); EventStart, the release to start.
	Release string
	// Stored (EventBoot) is true when the record given to Next was loaded
	// from the store, false when nothing was stored.
	Stored bool
	// Problem (EventBoot) says why the stored record could not be read:
	// the rollout is held.
	Problem string
	// Vouched (EventLead) is when this replica's own judgment of the
	// fleet's evidence began to say proceed, with the canary observable,
	// without a break since (zero: it does not say proceed now).
	Vouched time.Time
	// Shared (EventBoot) is true when the stored record is a fleet's,
	// which other replicas may be running: a boot that would only resume
	// it takes it as stored, without a transition (see boot).
	Shared bool
	// Weight (EventSetWeight) is in hundredths of a percent.
	Weight uint32
	// Steps (EventStart) is the release's plan; nil means the configured
	// plan.
	Steps []Step
	// Verdict (EventJudged) is the judge's verdict; Observable says whether
	// the canary could be observed (it gets requests and passes its health
	// checks), without which a step earns no observation.
	Verdict    judge.Verdict
	Observable bool
	// Confirmed (EventJudged) says that the confirmation endpoint accepted
	// the advance the record waits to make (Record.Awaiting); ConfirmAnswer
	// is its last answer about it, kept in Awaiting ("" when none yet).
	Confirmed     bool
	ConfirmAnswer string
	// Gates and Canary (EventJudged, EventIntegrityFailed, EventRollback,
	// EventMetricFailed) are the evidence a rollback record keeps; Detail
	// (EventMetricFailed) names the gates that failed.
	Gates  []judge.Gate
	Canary BackendView
	Detail string
}

// Rules is the configuration Next applies.
type Rules struct {
	// Plan is the configured plan (CANARY_STEPS, or CANARY_WEIGHT without
	// steps): the plan of a fresh rollout, of a new CANARY_RELEASE and of a
	// Start without steps. It replaces a stored non-Custom plan at boot.
	Plan Plan
	// Confirm makes every advance the plan makes by itself (a step, or
	// complete) wait until Event.Confirmed says the confirmation endpoint
	// accepted it (CANARY_CONFIRM_URL); meanwhile the record is Awaiting.
	// An operator's Promote does not wait.
	Confirm bool
	// Deadline, if positive, is how long a step may run without advancing
	// (CANARY_PROGRESS_DEADLINE), counted from Record.StepStartedAt; then
	// DeadlineAction applies. Zero means no deadline.
	Deadline       time.Duration
	DeadlineAction DeadlineAction
}

// Save says when a record that Next returned must be written.
type Save uint8

const (
	// SaveNone: nothing that needs saving changed.
	SaveNone Save = iota
	// SaveProgress: only the earned observation changed; save it now and
	// then (every few seconds), so a crash loses little of it.
	SaveProgress
	// SaveNow: a transition, or a change every replica must see soon (the
	// plan starts or stops waiting for confirmation); save it at once.
	SaveNow
)

// Effects are what Next asks of the guard beside keeping the new record: the
// guard carries them out in one place, in this order.
type Effects struct {
	// Route: steer the splitter to the record's weight and block.
	Route bool
	// RestartJudge: the judge's evidence no longer describes the canary's
	// traffic (a new release, step or weight, a reset, a lifted block):
	// restart it. Never set for a state that blocks the canary.
	RestartJudge bool
	// RolledBack is the reason of the rollback this event made, to count
	// (canary_rollbacks_total); "" for none.
	RolledBack Recommendation
	// Transition is the history entry Next appended, to log and announce;
	// nil when the event moved nothing. Kind says what it did.
	Transition *Transition
	Kind       TransitionKind
	// Save says how soon the record must be written.
	Save Save
}

// Next is the rollout state machine: the record and the effects that event
// ev makes of record r, or an error wrapping ErrInvalid (a malformed
// command) or ErrConflict (not possible in r's state) with r unchanged. It
// is a pure function: it reads no clock (ev.At is the time) and touches
// nothing; r is not modified. The package doc's table is its specification.
func Next(r Record, ev Event, rules Rules) (Record, Effects, error) {
	next, eff, err := transition(r, ev, rules)
	if err == nil && eff.Transition != nil {
		eff.Kind = kindOf(ev, r, next)
	}
	return next, eff, err
}

// transition is Next without naming the transition's kind.
func transition(r Record, ev Event, rules Rules) (Record, Effects, error) {
	// r is a copy; its slices are shared with the caller's record and never
	// written in place: move and remember build new ones.
	switch ev.Kind {
	case EventBoot:
		next, eff := boot(r, ev, rules)
		return next, eff, nil
	case EventJudged:
		next, eff := judged(r, ev, rules)
		return next, eff, nil
	case EventIntegrityFailed:
		if r.State == StateRolledBack || r.State == StateFinished {
			return r, Effects{}, nil
		}
		next, eff := rollback(r, ev, RecRollbackIntegrity, "")
		return next, eff, nil
	case EventMetricFailed:
		if !r.State.judged() {
			return r, Effects{}, nil
		}
		next, eff := rollback(r, ev, RecRollbackMetric, ev.Detail)
		return next, eff, nil
	case EventSetWeight:
		if ev.Weight > split.MaxWeight {
			return r, Effects{}, fmt.Errorf("%w: weight %s%% is above 100", ErrInvalid, split.FormatPercent(ev.Weight))
		}
		if err := refuse(r, ev, StateRolledBack, StateFinished); err != nil {
			return r, Effects{}, err
		}
		restart := r.State.BlocksCanary() || (ev.Weight > 0 && ev.Weight != r.Weight)
		next, eff := move(r, ev, StatePaused, r.Step, ev.Weight, "weight set by hand to "+split.FormatPercent(ev.Weight)+"%", restart, false)
		return next, eff, nil
	case EventPromote:
		if err := refuse(r, ev, StateRolledBack, StateHeld, StateComplete, StateFinished); err != nil {
			return r, Effects{}, err
		}
		if next := r.Step + 1; next < len(r.Plan.Steps) {
			n, eff := move(r, ev, StateProgressing, next, r.Plan.Steps[next].Weight, fmt.Sprintf("promoted to step %d", next+1), true, false)
			return n, eff, nil
		}
		next, eff := move(r, ev, StateComplete, r.Step, split.MaxWeight, "promoted to 100%", r.Weight != split.MaxWeight, false)
		return next, eff, nil
	case EventRollback:
		if r.State == StateRolledBack || r.State == StateFinished {
			return r, Effects{}, nil // the canary gets no traffic already
		}
		next, eff := rollback(r, ev, RecRollbackManual, "")
		return next, eff, nil
	case EventPause:
		if r.State != StateProgressing {
			return r, Effects{}, fmt.Errorf("%w: only a progressing plan can be paused (state is %s)", ErrConflict, r.State)
		}
		next, eff := move(r, ev, StatePaused, r.Step, r.Weight, "paused", false, false)
		return next, eff, nil
	case EventResume:
		step := r.Step
		switch r.State {
		case StatePaused:
		case StateHeld:
			step = 0
		default:
			return r, Effects{}, fmt.Errorf("%w: only a paused or held rollout can be resumed (state is %s)", ErrConflict, r.State)
		}
		to, w := StateFixed, r.Plan.Weight
		if len(r.Plan.Steps) > 0 {
			to, w = StateProgressing, r.Plan.Steps[step].Weight
		}
		restart := r.State.BlocksCanary() || (w > 0 && w != r.Weight)
		next, eff := move(r, ev, to, step, w, "resumed", restart, false)
		return next, eff, nil
	case EventReset:
		if err := refuse(r, ev, StateFinished); err != nil {
			return r, Effects{}, err
		}
		to, w := r.Plan.first()
		next, eff := move(r, ev, to, 0, w, reasonReset, true, true)
		return next, eff, nil
	case EventStart:
		return start(r, ev, rules)
	case EventFinish:
		if r.State == StateFinished {
			return r, Effects{}, nil
		}
		next, eff := move(r, ev, StateFinished, r.Step, 0, fmt.Sprintf("finished release %q", r.Release), false, false)
		return next, eff, nil
	case EventLead:
		return lead(r, ev), Effects{Save: SaveProgress}, nil
	}
	return r, Effects{}, fmt.Errorf("%w: unknown event %v", ErrInvalid, ev.Kind)
}

// reasonReset is the reason of a Reset transition.
const reasonReset = "reset"

// refuse is ErrConflict, worded for an operator, when r is in one of states.
func refuse(r Record, ev Event, states ...State) error {
	if !slices.Contains(states, r.State) {
		return nil
	}
	switch r.State {
	case StateRolledBack:
		return fmt.Errorf("%w: the canary is rolled back (%s); reset before %s", ErrConflict, r.Rollback.Reason, doing(ev.Kind))
	case StateFinished:
		return fmt.Errorf("%w: release %q is finished; POST /rollout/start a release before %s", ErrConflict, r.Release, doing(ev.Kind))
	}
	return fmt.Errorf("%w: cannot %s while %s", ErrConflict, ev.Kind, r.State)
}

// doing names a command in a sentence.
func doing(k EventKind) string {
	switch k {
	case EventSetWeight:
		return "setting a weight"
	case EventPromote:
		return "promoting"
	case EventReset:
		return "resetting"
	}
	return k.String()
}

// move is every transition: it moves r to state to at step and weight,
// appends the history entry and says what to do. fresh starts the step's
// clock and observation even if state, step and weight stay the same (a
// reset, a new release); restart restarts the judge unless to blocks the
// canary.
func move(r Record, ev Event, to State, step int, weight uint32, reason string, restart, fresh bool) (Record, Effects) {
	from, fromWeight := r.State, r.Weight
	if fresh || from != to || r.Step != step || fromWeight != weight {
		r.StepStartedAt = ev.At
		r.Observation = Observation{}
		r.StalledAt = time.Time{}
	}
	// Waiting for confirmation is re-established by the next verdict if
	// the step is still ready (a restart, a stall: the same step).
	r.Awaiting = nil
	restart = restart && !to.BlocksCanary()
	if restart {
		// Strictly later than before, even on a coarse or stopped clock:
		// a new value is what restarts every replica's judges.
		if ev.At.After(r.EvidenceSince) {
			r.EvidenceSince = ev.At
		} else {
			r.EvidenceSince = r.EvidenceSince.Add(time.Nanosecond)
		}
	}
	r.State, r.Step, r.Weight = to, step, weight
	if to != StateRolledBack {
		r.Rollback = nil
	}
	if to != StateHeld {
		r.Problem = ""
	}
	tr := Transition{
		At:        ev.At,
		From:      split.Percent(fromWeight),
		To:        split.Percent(weight),
		FromState: from.String(),
		ToState:   to.String(),
		Reason:    reason,
		Who:       ev.Who,
		Release:   r.Release,
		Replica:   ev.Replica,
	}
	keep := r.History[max(len(r.History)+1-historyLimit, 0):]
	r.History = append(append(make([]Transition, 0, len(keep)+1), keep...), tr)
	return r, Effects{Route: true, RestartJudge: restart, Transition: &tr, Save: SaveNow}
}

// rollback moves r to rolled_back for reason, keeping the evidence and
// detail (what broke, when the reason alone does not say).
func rollback(r Record, ev Event, reason Recommendation, detail string) (Record, Effects) {
	r, eff := move(r, ev, StateRolledBack, r.Step, 0, string(reason), false, false)
	r.Rollback = &RollbackRecord{
		At:      ev.At,
		Reason:  reason,
		Who:     ev.Who,
		Replica: ev.Replica,
		Canary:  ev.Canary,
		Gates:   append([]judge.Gate{}, ev.Gates...),
		Detail:  detail,
	}
	eff.RolledBack = reason
	return r, eff
}

// boot decides the rollout at the start of the process.
func boot(r Record, ev Event, rules Rules) (Record, Effects) {
	switch {
	case ev.Problem != "":
		r = Record{Release: ev.Release, Plan: rules.Plan, Releases: remember(nil, ev.Release)}
		r, eff := move(r, ev, StateHeld, 0, 0, "stored rollout state unreadable", false, true)
		r.Problem = ev.Problem
		return r, eff
	case !ev.Stored:
		r = Record{Release: ev.Release, Plan: rules.Plan, Releases: remember(nil, ev.Release)}
		to, w := r.Plan.first()
		return move(r, ev, to, 0, w, "fresh start", true, true)
	case ev.Release != "" && !r.seen(ev.Release):
		reason := fmt.Sprintf("new release %q (was %q)", ev.Release, r.Release)
		r.Release, r.Plan, r.Releases = ev.Release, rules.Plan, remember(r.Releases, ev.Release)
		to, w := r.Plan.first()
		return move(r, ev, to, 0, w, reason, true, true)
	case ev.Shared && (r.Plan.Custom || r.Plan.equal(rules.Plan)):
		// A replica joining its fleet: the rollout runs on (the other
		// replicas may be serving it), so it is taken as stored. Whether
		// the whole fleet was down is not known here; the observation
		// earned before a change of leader is banked by EventLead.
		return r, Effects{Route: true}
	}
	return resume(r, ev, rules)
}

// lead banks a running step's observation when a replica becomes its
// fleet's leader, so that the new leader's holds while its judge takes in
// the sums again keep it (Restored), as after a restart. It banks up to
// now when the replica's own judgment of the fleet has said proceed
// without a break since before the last save (ev.Vouched): the step was
// observed healthy throughout, by the previous leader up to the save and by
// this replica since. Otherwise (a fleet that was down, a replica that has
// just started) it banks what was earned up to the last save.
func lead(r Record, ev Event) Record {
	o := r.Observation
	if r.State != StateProgressing || o.Since.IsZero() {
		return r
	}
	upTo := r.SavedAt
	if !ev.Vouched.IsZero() && !ev.Vouched.After(r.SavedAt) && ev.At.After(upTo) {
		upTo = ev.At
	}
	r.Observation = Observation{Banked: o.Earned(upTo), Restored: true}
	return r
}

// resume continues the stored rollout after a restart. A plan from the
// configuration follows the configuration (the step clamped); a Custom plan
// stays.
func resume(r Record, ev Event, rules Rules) (Record, Effects) {
	reason := "resumed after restart"
	if ev.Release != "" && ev.Release != r.Release {
		reason += fmt.Sprintf("; CANARY_RELEASE %q was seen before, release %q kept", ev.Release, r.Release)
	}
	samePlan := r.Plan.Custom || r.Plan.equal(rules.Plan)
	if !r.Plan.Custom {
		if !samePlan {
			reason += fmt.Sprintf("; plan changed from %q to %q", r.Plan.String(), rules.Plan.String())
		}
		r.Plan = rules.Plan
	}
	n := len(r.Plan.Steps)
	step := min(r.Step, max(n-1, 0))
	to, w := r.State, r.Weight
	switch to {
	case StateRolledBack, StateHeld, StateFinished:
		w = 0
	case StateComplete:
		w = split.MaxWeight
	case StateProgressing:
		if n == 0 {
			to, step, w = StateFixed, 0, r.Plan.Weight
			break
		}
		w = r.Plan.Steps[step].Weight
	case StateFixed:
		if n > 0 {
			to, step, w = StateProgressing, 0, r.Plan.Steps[0].Weight
		} else {
			w = r.Plan.Weight
		}
	}
	// The observation earned up to the last save survives, if the step
	// stays the same; downtime does not count.
	earned := r.Observation.Earned(r.SavedAt)
	same := samePlan && to == r.State && step == r.Step && w == r.Weight
	r.Step = step // a clamped index is not a new step
	r, eff := move(r, ev, to, step, w, reason, true, false)
	r.Observation = Observation{}
	if to == StateProgressing && same {
		r.Observation = Observation{Banked: earned, Restored: true}
	}
	return r, eff
}

// start starts release ev.Release afresh with ev.Steps or the configured plan.
func start(r Record, ev Event, rules Rules) (Record, Effects, error) {
	if err := ValidateRelease(ev.Release); err != nil {
		return r, Effects{}, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if ev.Release == r.Release {
		return r, Effects{}, fmt.Errorf("%w: release %q is already the current release; POST /rollout/reset to start its plan again", ErrConflict, ev.Release)
	}
	plan := rules.Plan
	if ev.Steps != nil {
		if err := validateSteps(ev.Steps); err != nil {
			return r, Effects{}, fmt.Errorf("%w: steps: %w", ErrInvalid, err)
		}
		plan = Plan{Steps: slices.Clone(ev.Steps), Weight: rules.Plan.Weight, Custom: true}
	}
	reason := fmt.Sprintf("started release %q", ev.Release)
	if r.Release != "" {
		reason += fmt.Sprintf(" (was %q)", r.Release)
	}
	r.Release, r.Plan, r.Releases = ev.Release, plan, remember(r.Releases, ev.Release)
	to, w := plan.first()
	next, eff := move(r, ev, to, 0, w, reason, true, true)
	return next, eff, nil
}

// judged acts on a verdict: a rollback, or the plan's observation clock.
// A step advances after its observe time of continuous proceed verdicts
// while the canary is observable (and, with Rules.Confirm, once the
// confirmation endpoint accepted it); any other verdict restarts that
// clock, except a hold while the judge gathers evidence again after a
// restart, which keeps (but does not add to) what the step had earned. A
// step that has not advanced within Rules.Deadline stalls or is rolled
// back.
func judged(r Record, ev Event, rules Rules) (Record, Effects) {
	if !r.State.judged() {
		return r, Effects{}
	}
	if ev.Verdict.IsRollback() {
		return rollback(r, ev, Recommendation(ev.Verdict), "")
	}
	if r.State != StateProgressing {
		return r, Effects{}
	}
	v := ev.Verdict
	if !ev.Observable {
		// A step is observed under traffic: a canary that fails its health
		// checks (and so gets none) or had no request for a whole window
		// proves nothing, however good its past.
		v = judge.Hold
	}
	o := r.Observation
	var awaiting *Awaiting
	switch {
	case v == judge.Proceed:
		if o.Since.IsZero() {
			o.Since, o.Restored = ev.At, false
		}
		st := r.Plan.Steps[r.Step]
		if o.Earned(ev.At) < st.Observe {
			break
		}
		if rules.Confirm && !(ev.Confirmed && r.Awaiting != nil) {
			// Ready: the plan waits for the confirmation endpoint.
			awaiting = r.Awaiting
			if awaiting == nil {
				awaiting = &Awaiting{Since: ev.At}
			}
			if ev.ConfirmAnswer != "" && ev.ConfirmAnswer != awaiting.Answer {
				a := *awaiting // records are values: never written in place
				a.Answer = ev.ConfirmAnswer
				awaiting = &a
			}
			break
		}
		ev.Who = whoPlan
		reason := fmt.Sprintf("step %d (%s%%) observed healthy for %s", r.Step+1, split.FormatPercent(st.Weight), st.Observe)
		if rules.Confirm {
			reason += "; confirmed"
		}
		if next := r.Step + 1; next < len(r.Plan.Steps) {
			return move(r, ev, StateProgressing, next, r.Plan.Steps[next].Weight, reason, true, false)
		}
		return move(r, ev, StateComplete, r.Step, split.MaxWeight, reason+"; plan complete", r.Weight != split.MaxWeight, false)
	case v == judge.Hold && o.Restored:
		o.Since = time.Time{}
	default:
		o = Observation{}
	}
	save := SaveProgress
	if (awaiting == nil) != (r.Awaiting == nil) {
		save = SaveNow // every replica shows whether the plan waits
	}
	r.Observation, r.Awaiting = o, awaiting
	if next, eff, ok := deadline(r, ev, rules); ok {
		return next, eff
	}
	return r, Effects{Save: save}
}

// deadline stalls or rolls back a progressing step that has not advanced
// within rules.Deadline of its start (once: a stalled step stays stalled
// until it advances or the state changes). ok is false when the deadline
// does not apply.
func deadline(r Record, ev Event, rules Rules) (_ Record, _ Effects, ok bool) {
	if rules.Deadline <= 0 || r.State != StateProgressing || !r.StalledAt.IsZero() || r.StepStartedAt.IsZero() {
		return r, Effects{}, false
	}
	ran := ev.At.Sub(r.StepStartedAt)
	if ran < rules.Deadline {
		return r, Effects{}, false
	}
	st := r.Plan.Steps[r.Step]
	what := fmt.Sprintf("step %d (%s%%) did not advance within the progress deadline of %s", r.Step+1, split.FormatPercent(st.Weight), rules.Deadline)
	if rules.DeadlineAction == DeadlineRollback {
		ev.Who = whoGuard
		ev.Gates = append(append([]judge.Gate{}, ev.Gates...), judge.Gate{Name: gateDeadline, Value: ran.Seconds(),
			Threshold: rules.Deadline.Seconds(), Unit: "s", Verdict: judge.GateFail, Detail: what})
		next, eff := rollback(r, ev, RecRollbackDeadline, what)
		return next, eff, true
	}
	ev.Who = whoPlan
	next, eff := move(r, ev, StateProgressing, r.Step, r.Weight, what+": stalled", false, false)
	// Nothing else changes: the step goes on earning its observation and
	// may still advance.
	next.StalledAt, next.Awaiting = ev.At, r.Awaiting
	return next, eff, true
}

// remember adds release to the seen releases, keeping the last
// releasesLimit.
func remember(seen []string, release string) []string {
	if release == "" || slices.Contains(seen, release) {
		return seen
	}
	seen = append(slices.Clone(seen), release)
	if n := len(seen) - releasesLimit; n > 0 {
		seen = seen[n:]
	}
	return seen
}

// Rebase computes ev again on newer, the stored record that replaced basis
// (the record ev was first applied to) while ev's change waited to be
// saved: the compare-and-swap lost, and the change is recomputed from the
// newer record. It is Next on newer, with two more rules. A boot decides
// again on newer as a record that was read (another writer stored it while
// this process started). And a rollback is never undone by a concurrent
// transition: if newer was rolled back since basis, an event that would let
// the same release's canary have traffic again (a reset computed before the
// rollback was seen) is ErrConflict.
func Rebase(basis, newer Record, ev Event, rules Rules) (Record, Effects, error) {
	if ev.Kind == EventBoot {
		ev.Stored, ev.Problem = true, ""
	}
	next, eff, err := Next(newer, ev, rules)
	if err != nil {
		return newer, Effects{}, err
	}
	if newer.State == StateRolledBack && !sameRollback(basis.Rollback, newer.Rollback) &&
		!next.State.BlocksCanary() && next.Release == newer.Release {
		return newer, Effects{}, fmt.Errorf("%w: the canary was rolled back meanwhile (%s by %s); look at it, then %s again",
			ErrConflict, newer.Rollback.Reason, newer.Rollback.Who, ev.Kind)
	}
	return next, eff, nil
}

// sameRollback reports whether a and b are the same rollback (or both none).
func sameRollback(a, b *RollbackRecord) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.At.Equal(b.At) && a.Reason == b.Reason && a.Who == b.Who
}

// Adopt is what a guard does when it takes over newer, a record another
// writer stored, in place of old, the record in force: route to it, and
// restart the judges if their evidence began anew (EvidenceSince), the
// release changed or the canary was blocked. The rollback counter is not
// counted again (the writer that decided it counted it).
func Adopt(old, newer Record) Effects {
	fresh := !old.EvidenceSince.Equal(newer.EvidenceSince) || old.Release != newer.Release ||
		(old.State.BlocksCanary() && newer.Weight > 0)
	eff := Effects{Route: true, RestartJudge: fresh && !newer.State.BlocksCanary()}
	if n := len(newer.History); n > 0 && (len(old.History) == 0 || old.History[len(old.History)-1] != newer.History[n-1]) {
		tr := newer.History[n-1]
		eff.Transition = &tr
	}
	return eff
}
