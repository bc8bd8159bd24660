package guard

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strconv"
	"time"

	"github.com/canaryd/canaryd/guard/judge"
	"github.com/canaryd/canaryd/split"
)

// The integrations tell the outside world of the rollout and let it take
// part: a Notifier hears of every transition (CANARY_WEBHOOK_URL), a
// Confirmer must accept each advance the plan makes by itself
// (CANARY_CONFIRM_URL), the progress deadline stalls or rolls back a step
// that does not advance (CANARY_PROGRESS_DEADLINE), and MetricGates hold or
// roll back on the application's own metrics (CANARY_METRIC_GATES). The
// guard declares what it needs here; guard/notify and guard/metricgate
// implement it, and cmd wires them.

// Notifier hears of the rollout's transitions (guard/notify.Webhook). A
// guard calls Notify once per transition it stored, after the store
// accepted it, in the order of the history; a transition another replica
// stored is that replica's to announce. Notify is called with the guard's
// lock held: it must return at once (queue, never wait for I/O).
type Notifier interface {
	Notify(n Notice)
}

// TransitionKind says what a transition did, as a notice names it. The
// zero value is no transition.
type TransitionKind string

// The kinds of transition, one per row group of the package doc's table.
const (
	// KindStarted: a rollout began afresh (nothing stored, a new
	// CANARY_RELEASE, Start).
	KindStarted TransitionKind = "started"
	// KindRestarted: canaryd started again and resumed the stored rollout.
	KindRestarted TransitionKind = "restarted"
	// KindHeld: the stored rollout was unreadable at start.
	KindHeld TransitionKind = "held"
	// KindStep: the plan moved to its next step (by itself or promoted).
	KindStep TransitionKind = "step"
	// KindComplete: the plan finished at 100%.
	KindComplete TransitionKind = "complete"
	// KindRolledBack: the canary was rolled back, for any reason.
	KindRolledBack TransitionKind = "rolled_back"
	// KindWeight: an operator set the weight by hand.
	KindWeight TransitionKind = "weight"
	// KindPaused, KindResumed, KindReset, KindFinished: an operator's
	// pause, resume, reset, finish.
	KindPaused   TransitionKind = "paused"
	KindResumed  TransitionKind = "resumed"
	KindReset    TransitionKind = "reset"
	KindFinished TransitionKind = "finished"
	// KindStalled: a step did not advance within the progress deadline.
	KindStalled TransitionKind = "stalled"
)

// TransitionKinds lists every kind, in the order of the README.
func TransitionKinds() []TransitionKind {
	return []TransitionKind{KindStarted, KindRestarted, KindHeld, KindStep, KindComplete, KindRolledBack,
		KindWeight, KindPaused, KindResumed, KindReset, KindFinished, KindStalled}
}

// kindOf names the transition ev made of prev into next (Next's one place
// for it).
func kindOf(ev Event, prev, next Record) TransitionKind {
	if next.State == StateRolledBack && prev.State != StateRolledBack {
		return KindRolledBack
	}
	switch ev.Kind {
	case EventBoot:
		switch {
		case next.State == StateHeld && ev.Problem != "":
			return KindHeld
		case !ev.Stored || next.Release != prev.Release:
			return KindStarted
		}
		return KindRestarted
	case EventJudged, EventPromote:
		switch {
		case next.State == StateComplete:
			return KindComplete
		case next.Step != prev.Step || next.State != prev.State:
			return KindStep
		}
		return KindStalled // the plan's deadline: the same step, stalled
	case EventSetWeight:
		return KindWeight
	case EventPause:
		return KindPaused
	case EventResume:
		return KindResumed
	case EventReset:
		return KindReset
	case EventStart:
		return KindStarted
	case EventFinish:
		return KindFinished
	}
	return "" // the other events only roll back (above) or never move
}

// Notice is one stored transition as the outside world hears of it.
type Notice struct {
	// ID identifies the transition: the same transition always has the
	// same id (a hash of its history entry), so a receiver that gets it
	// twice can tell.
	ID   string
	Kind TransitionKind
	// Transition is the history entry (time, weights, states, reason, who,
	// release, replica).
	Transition Transition
	// State, Step and Weight are where the rollout stands after it; Step
	// is -1 without a plan, Steps the plan's length (0 without one).
	State  State
	Step   int
	Steps  int
	Weight uint32
	// Rollback is why and on what evidence, for KindRolledBack; nil
	// otherwise.
	Rollback *RollbackRecord
}

// noticeOf builds the notice of tr, the transition that made r.
func noticeOf(tr Transition, kind TransitionKind, r Record) Notice {
	n := Notice{ID: transitionID(tr), Kind: kind, Transition: tr, State: r.State, Step: -1, Steps: len(r.Plan.Steps), Weight: r.Weight}
	if len(r.Plan.Steps) > 0 {
		n.Step = r.Step
	}
	if kind == KindRolledBack && r.Rollback != nil {
		rb := *r.Rollback
		n.Rollback = &rb
	}
	return n
}

// transitionID hashes a history entry: a transition's id never changes,
// whoever computes it and however often.
func transitionID(tr Transition) string {
	h := sha256.New()
	for _, f := range []string{tr.At.UTC().Format(time.RFC3339Nano), tr.Release, tr.FromState, tr.ToState,
		strconv.FormatFloat(tr.From, 'f', -1, 64), strconv.FormatFloat(tr.To, 'f', -1, 64), tr.Reason, tr.Who, tr.Replica} {
		h.Write([]byte(f))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil)[:16])
}

// Confirmer is asked before each advance the plan makes by itself (a step,
// or complete) when confirmation is on (guard/notify.Confirmer,
// CANARY_CONFIRM_URL). Confirm returns nil when the advance may go ahead,
// else why not (the answer, or why there was none); ctx bounds it. An
// operator's promote is not asked about: it is the operator's decision.
type Confirmer interface {
	Confirm(ctx context.Context, p Proposal) error
}

// Proposal is an advance the plan is ready to make: from step Step of the
// release to step ToStep, or to complete (ToState StateComplete) at
// 100%.
type Proposal struct {
	Release string
	// Epoch is the record's EvidenceSince: with Release and Step it tells
	// one run of a step from another (a reset, a restart of the judges), so
	// that an answer about one never lets another advance.
	Epoch       time.Time
	Step        int
	Steps       int
	ToStep      int
	ToState     State
	FromWeight  uint32
	ToWeight    uint32
	ReadySince  time.Time
	At          time.Time
	Replica     string
	Canary      BackendView
	Observation time.Duration
}

// same reports whether p and q are the same advance of the same run of a
// step.
func (p Proposal) same(q Proposal) bool {
	return p.Release == q.Release && p.Step == q.Step && p.Epoch.Equal(q.Epoch)
}

// Awaiting is kept in a record while the plan is ready to advance and waits
// for the confirmation endpoint (Rules.Confirm): every replica shows it.
type Awaiting struct {
	// Since is when the step was first ready to advance.
	Since time.Time `json:"since"`
	// Answer is the endpoint's last answer (or why there was none); empty
	// before the first.
	Answer string `json:"answer,omitempty"`
}

// proposalOf is the advance r waits to make, if it waits for one.
func proposalOf(r *Record) (Proposal, bool) {
	if r.State != StateProgressing || r.Awaiting == nil || r.Step >= len(r.Plan.Steps) {
		return Proposal{}, false
	}
	p := Proposal{Release: r.Release, Epoch: r.EvidenceSince, Step: r.Step, Steps: len(r.Plan.Steps),
		FromWeight: r.Weight, ReadySince: r.Awaiting.Since}
	if next := r.Step + 1; next < len(r.Plan.Steps) {
		p.ToStep, p.ToState, p.ToWeight = next, StateProgressing, r.Plan.Steps[next].Weight
	} else {
		p.ToStep, p.ToState, p.ToWeight = r.Step, StateComplete, split.MaxWeight
	}
	return p, true
}

// describe says what the advance is, for reasons and logs.
func (p Proposal) describe() string {
	from := fmt.Sprintf("step %d (%s%%)", p.Step+1, split.FormatPercent(p.FromWeight))
	if p.ToState == StateComplete {
		return from + " to complete (100%)"
	}
	return fmt.Sprintf("%s to step %d (%s%%)", from, p.ToStep+1, split.FormatPercent(p.ToWeight))
}

// DeadlineAction is what the progress deadline does to a step that has not
// advanced within it (CANARY_PROGRESS_DEADLINE_ACTION). The zero value is
// DeadlineStall.
type DeadlineAction uint8

// The deadline's actions.
const (
	// DeadlineStall marks the step stalled (a reason, a metric, an alert)
	// and lets the plan go on trying.
	DeadlineStall DeadlineAction = iota
	// DeadlineRollback rolls the canary back (rollback_deadline).
	DeadlineRollback
)

// String is "stall" or "rollback", as CANARY_PROGRESS_DEADLINE_ACTION
// spells them.
func (a DeadlineAction) String() string {
	if a == DeadlineRollback {
		return "rollback"
	}
	return "stall"
}

// ParseDeadlineAction reads CANARY_PROGRESS_DEADLINE_ACTION.
func ParseDeadlineAction(s string) (DeadlineAction, error) {
	switch s {
	case "stall":
		return DeadlineStall, nil
	case "rollback":
		return DeadlineRollback, nil
	}
	return DeadlineStall, fmt.Errorf("deadline action %q must be stall or rollback", s)
}

// MetricGates are the operator's gates on the application's own metrics,
// queried from Prometheus (guard/metricgate.Set, CANARY_METRIC_GATES). The
// guard's own judgment never reads Prometheus; these gates are an addition
// the operator asks for.
type MetricGates interface {
	// Names lists the gates in the configured order.
	Names() []string
	// Check queries every gate once (ctx bounds it) and returns their
	// states as of now, in the configured order. It does not fail: a gate
	// it cannot evaluate is MetricUnknown, saying why.
	Check(ctx context.Context, now time.Time) []MetricGate
	// Restart forgets since when each gate has been outside its bound (a
	// new step, a reset, a new release): its "for" starts again.
	Restart()
}

// MetricStatus is what a metric gate concluded at its last check. The zero
// value is MetricUnknown.
type MetricStatus uint8

// The metric gates' statuses.
const (
	// MetricUnknown: no usable value (Prometheus unreachable, an error, no
	// series, several series, not a finite number): the plan holds, the
	// canary is never rolled back for it.
	MetricUnknown MetricStatus = iota
	// MetricPass: within the bound.
	MetricPass
	// MetricPending: outside the bound for less than the gate's "for":
	// the plan holds.
	MetricPending
	// MetricFail: outside the bound for the gate's "for": a rollback
	// (rollback_metric).
	MetricFail
)

// String names the status.
func (s MetricStatus) String() string {
	switch s {
	case MetricPass:
		return "pass"
	case MetricPending:
		return "pending"
	case MetricFail:
		return "fail"
	}
	return "unknown"
}

// MetricGate is one metric gate's state at its last check.
type MetricGate struct {
	Name   string
	Status MetricStatus
	// Value is the query's value (when HasValue); Threshold the bound it
	// is compared with (the one it breaks, else max when set, else min).
	Value     float64
	HasValue  bool
	Threshold float64
	// Detail is one sentence: the value against the bound, for how long,
	// or why there is no value.
	Detail string
}

// gate shows a metric gate among the judge's gates.
func (m MetricGate) gate() judge.Gate {
	gt := judge.Gate{Name: m.Name, Value: m.Value, Threshold: m.Threshold, Unit: "metric", Detail: m.Detail}
	switch m.Status {
	case MetricPass:
		gt.Verdict = judge.GatePass
	case MetricFail:
		gt.Verdict = judge.GateFail
	default:
		gt.Verdict = judge.GateHold
	}
	return gt
}

// The built-in gates' names besides the judges': a metric gate may not take
// one of them.
const (
	gateIntegrity    = "integrity"
	gateState        = "state"
	gateConfirmation = "confirmation"
	gateDeadline     = "progress_deadline"
)

// ReservedGateNames are the names of the gates canaryd shows itself: a
// metric gate may not take one (CANARY_METRIC_GATES).
func ReservedGateNames() []string {
	return []string{judge.GateErrorRate, judge.GateErrorRateChange, judge.GateP95Latency, judge.GateP95LatencyChange,
		judge.GateErrorRateVsStable, judge.GateP95LatencyVsStable, judge.GateMinRequests,
		gateIntegrity, gateState, gateConfirmation, gateDeadline, "stable_health_checks", "canary_health_checks"}
}
