package guard

import "fmt"

// State is the rollout's state; the package doc lists the transitions.
type State uint8

// The rollout states.
const (
	// StateFixed: no plan; the weight is Config.Weight.
	StateFixed State = iota
	// StateProgressing: the plan runs at its current step.
	StateProgressing
	// StatePaused: the plan is held, or an operator set the weight by hand.
	StatePaused
	// StateRolledBack: weight 0, canary blocked, until Reset or a new release.
	StateRolledBack
	// StateComplete: the plan finished at 100%.
	StateComplete
	// StateHeld: the state file was unreadable; weight 0 until an operator acts.
	StateHeld
)

// String returns the state's name as shown in JSON and the state file.
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
	}
	return fmt.Sprintf("state(%d)", uint8(s))
}

// ParseState is the inverse of State.String.
func ParseState(s string) (State, error) {
	for st := StateFixed; st <= StateHeld; st++ {
		if st.String() == s {
			return st, nil
		}
	}
	return 0, fmt.Errorf("unknown rollout state %q", s)
}

// blocksCanary reports whether the canary must get no traffic at all, not
// even forced by an override header.
func (s State) blocksCanary() bool { return s == StateRolledBack || s == StateHeld }

// Recommendations the guard adds to the judge's verdicts.
const (
	recComplete          = "complete"
	recHold              = "hold"
	recProceed           = "proceed"
	recRollbackIntegrity = "rollback_integrity"
	recRollbackManual    = "rollback_manual"
	recRollbackError     = "rollback_error_rate"
	recRollbackLatency   = "rollback_latency"
)

// allRecommendations are the values canary_verdict exports, in DESIGN order.
func allRecommendations() []string {
	return []string{recProceed, recHold, recComplete, recRollbackError, recRollbackLatency, recRollbackIntegrity, recRollbackManual}
}

// rollbackReasons are the values canary_rollbacks_total exports.
func rollbackReasons() []string {
	return []string{recRollbackError, recRollbackLatency, recRollbackIntegrity, recRollbackManual}
}

// Who values for transitions the guard makes on its own.
const (
	whoPlan    = "plan"
	whoGuard   = "guard"
	whoStartup = "startup"
)
