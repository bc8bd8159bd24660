package guard

import (
	"fmt"

	"github.com/canaryd/canaryd/guard/judge"
)

// State is the rollout's state; the package doc lists the transitions. The
// zero value is StateFixed.
type State uint8

// The rollout states.
const (
	// StateFixed: no plan; the weight is the plan's fixed weight.
	StateFixed State = iota
	// StateProgressing: the plan runs at its current step.
	StateProgressing
	// StatePaused: the plan is held, or an operator set the weight by hand.
	StatePaused
	// StateRolledBack: weight 0, canary blocked, until Reset, Start or Finish.
	StateRolledBack
	// StateComplete: the plan finished at 100%.
	StateComplete
	// StateHeld: the stored state was unreadable; weight 0 until an operator acts.
	StateHeld
	// StateFinished: the release was ended by Finish; weight 0, canary
	// blocked until the next Start.
	StateFinished
)

// lastState is the highest State value.
const lastState = StateFinished

// String returns the state's name as shown in JSON and stored.
func (s State) String() string {
	switch s {
	case StateFixed:
		return "fixed"
	case StateProgressing:
		return "progressing"
	case StatePaused:
		return "paused"
	case StateRolledBack:
		return "rolled_back"
	case StateComplete:
		return "complete"
	case StateHeld:
		return "held"
	case StateFinished:
		return "finished"
	}
	return fmt.Sprintf("state(%d)", uint8(s))
}

// ParseState is the inverse of State.String.
func ParseState(s string) (State, error) {
	for st := StateFixed; st <= lastState; st++ {
		if st.String() == s {
			return st, nil
		}
	}
	return 0, fmt.Errorf("unknown rollout state %q", s)
}

// MarshalText writes the state's name.
func (s State) MarshalText() ([]byte, error) {
	if s > lastState {
		return nil, fmt.Errorf("unknown rollout state %d", uint8(s))
	}
	return []byte(s.String()), nil
}

// UnmarshalText reads a state's name.
func (s *State) UnmarshalText(b []byte) error {
	st, err := ParseState(string(b))
	if err != nil {
		return err
	}
	*s = st
	return nil
}

// BlocksCanary reports whether the canary gets no traffic at all in s, not
// even forced by an override header: rolled_back, held and finished.
func (s State) BlocksCanary() bool {
	return s == StateRolledBack || s == StateHeld || s == StateFinished
}

// judged reports whether the judge's verdicts act in s: while the canary
// may get traffic.
func (s State) judged() bool {
	switch s {
	case StateFixed, StateProgressing, StatePaused, StateComplete:
		return true
	}
	return false
}

// Recommendation is the answer of /canary_check: one of the judge's verdicts
// or one the guard adds (complete, rollback_integrity, rollback_manual,
// rollback_deadline, rollback_metric).
// Decide with its methods, never with its text.
type Recommendation string

// The recommendations. The set grows only by rollback values, so that
// canary_ok keeps its meaning (false exactly when IsRollback).
const (
	RecProceed                          = Recommendation(judge.Proceed)
	RecHold                             = Recommendation(judge.Hold)
	RecComplete          Recommendation = "complete"
	RecRollbackErrorRate                = Recommendation(judge.RollbackErrorRate)
	RecRollbackLatency                  = Recommendation(judge.RollbackLatency)
	RecRollbackIntegrity Recommendation = "rollback_integrity"
	RecRollbackManual    Recommendation = "rollback_manual"
	// RecRollbackDeadline: a step did not advance within the progress
	// deadline, and its action is rollback.
	RecRollbackDeadline Recommendation = "rollback_deadline"
	// RecRollbackMetric: a metric gate was outside its bound for its "for".
	RecRollbackMetric Recommendation = "rollback_metric"
)

// Recommendations lists every recommendation, in the order of the README.
func Recommendations() []Recommendation {
	return []Recommendation{RecProceed, RecHold, RecComplete, RecRollbackErrorRate, RecRollbackLatency, RecRollbackIntegrity, RecRollbackManual,
		RecRollbackDeadline, RecRollbackMetric}
}

// RollbackReasons lists the recommendations that are rollbacks.
func RollbackReasons() []Recommendation {
	return []Recommendation{RecRollbackErrorRate, RecRollbackLatency, RecRollbackIntegrity, RecRollbackManual, RecRollbackDeadline, RecRollbackMetric}
}

// IsRollback reports whether r asks for the canary to be rolled back (the
// canary is not OK). Like judge.Verdict.IsRollback, anything but proceed,
// hold, complete and the empty value counts as a rollback, so a new kind
// of rollback can never pass as OK.
func (r Recommendation) IsRollback() bool {
	switch r {
	case RecProceed, RecHold, RecComplete, "":
		return false
	}
	return true
}

// Who values for transitions the guard makes on its own; an operator's
// transitions carry the admin caller: the token's name and its address.
const (
	whoPlan    = "plan"
	whoGuard   = "guard"
	whoStartup = "startup"
)
