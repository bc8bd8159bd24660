package judge

import (
	"fmt"
	"time"

	"github.com/canaryd/canaryd/proxy"
)

// Verdict is what a judge concluded.
type Verdict string

// Verdicts a judge may return. The guard adds complete, rollback_integrity,
// rollback_manual, rollback_deadline and rollback_metric on its own.
const (
	Proceed           Verdict = "proceed"
	Hold              Verdict = "hold"
	RollbackErrorRate Verdict = "rollback_error_rate"
	RollbackLatency   Verdict = "rollback_latency"
)

// IsRollback reports whether the verdict asks for a rollback (every
// rollback_* verdict, which is exactly when canary_ok is false).
func (v Verdict) IsRollback() bool {
	switch v {
	case Proceed, Hold, "":
		return false
	}
	return true
}

// SLO is what the canary is judged against.
type SLO struct {
	// ErrorRate is the maximum canary error rate (fraction, e.g. 0.01).
	ErrorRate float64
	// P95 is the maximum canary p95 latency.
	P95 time.Duration
	// MinRequests is the number of canary requests needed before any
	// verdict other than hold: in the window for the window judge; in the
	// step for the sequential judge to proceed (its tests control their
	// own error and roll back without a floor).
	MinRequests uint64
	// Alpha bounds the probability that the sequential judge rolls back a
	// canary that meets its SLO (including one exactly at it, and, with
	// CompareRollback, not worse than stable by more than Margin) within
	// Horizon requests of a step; its step tests alone take Alpha/2 and
	// keep that bound however long the step (see the package doc). Zero
	// means DefaultAlpha.
	Alpha float64
	// Margin is the relative margin by which the canary may be worse than
	// stable before the comparison gates object (0.5 = 50% worse). Zero
	// means the judge's default, DefaultMargin.
	Margin float64
	// Compare is what the sequential judge does with a canary that is
	// significantly worse than stable by more than Margin while it meets
	// its SLO. The zero value, CompareHold, holds the plan.
	Compare Compare
	// Horizon is the number of canary requests in one step over which the
	// sequential judge's change detectors keep a canary that meets its SLO
	// (even exactly) from a false rollback with probability at least
	// 1-Alpha/2 (see the package doc). Zero means DefaultHorizon.
	Horizon uint64
}

// Compare is what the comparison with stable may conclude (SLO.Compare).
type Compare uint8

// Comparison modes.
const (
	// CompareHold (the zero value): a canary significantly worse than
	// stable but within its SLO is held (the plan does not advance), never
	// rolled back.
	CompareHold Compare = iota
	// CompareRollback: such a canary is rolled back, with the verdict of
	// the SLO compared (rollback_error_rate or rollback_latency) and a
	// reason naming the comparison. For services whose SLO is loose.
	CompareRollback
)

// String is "hold" or "rollback", as CANARY_COMPARE spells them.
func (c Compare) String() string {
	if c == CompareRollback {
		return "rollback"
	}
	return "hold"
}

// ParseCompare reads a comparison mode as CANARY_COMPARE spells it.
func ParseCompare(s string) (Compare, error) {
	switch s {
	case "hold":
		return CompareHold, nil
	case "rollback":
		return CompareRollback, nil
	}
	return CompareHold, fmt.Errorf("%w: comparison mode %q must be hold or rollback", ErrInvalidSLO, s)
}

// FleetShares splits s between the judges of a fleet of replicas that share
// one rollout (see the package doc, "A fleet"): the leader judges the sum of
// every replica's evidence with leader, each replica judges its own with
// replica, and any of them may roll the fleet back. The leader gets
// Alpha/2; each replica Alpha/(2·replicas) and Horizon/replicas (it sees
// that share of the fleet's canary requests), so that by a union bound the
// fleet rolls back a canary that meets its SLO with probability at most
// Alpha, as a single instance does. The other fields are copied; zero
// fields are resolved to their defaults first. replicas below 1 counts
// as 1.
func (s SLO) FleetShares(replicas int) (leader, replica SLO) {
	s = s.withDefaults()
	r := uint64(max(replicas, 1))
	leader, replica = s, s
	leader.Alpha = s.Alpha / 2
	replica.Alpha = s.Alpha / float64(2*r)
	replica.Horizon = (s.Horizon + r - 1) / r
	return leader, replica
}

// Gate is one check behind a verdict, so every verdict explains itself.
type Gate struct {
	// Name identifies the check, e.g. "error_rate", "p95_latency",
	// "min_requests", "error_rate_vs_stable".
	Name string `json:"name"`
	// Value is the measured statistic, Threshold what it is compared with
	// (in the unit Unit names: "ratio", "ms", "requests", "log_lr").
	Value     float64 `json:"value"`
	Threshold float64 `json:"threshold"`
	Unit      string  `json:"unit,omitempty"`
	// Samples is the number of canary requests behind Value.
	Samples uint64 `json:"samples"`
	// Verdict is what this gate concluded: pass, hold or fail.
	Verdict GateVerdict `json:"verdict"`
	// Detail is one human sentence; Needed estimates how many more canary
	// requests a holding gate needs (0 if unknown).
	Detail string `json:"detail,omitempty"`
	Needed uint64 `json:"needed,omitempty"`
}

// Result is a judge's conclusion with the gates behind it.
type Result struct {
	Verdict Verdict
	// Reasons are short human sentences for the verdict.
	Reasons []string
	Gates   []Gate
}

// Judge turns snapshots into verdicts. Implementations may keep evidence
// between calls (the sequential judge does); they are called from one
// goroutine only (the guard's loop).
type Judge interface {
	// Judge returns the verdict for the snapshot s.
	Judge(s proxy.Snapshot) Result
	// Restart forgets accumulated evidence, e.g. at a new step or a reset.
	// Evidence counted afterwards starts from the cumulative totals in s.
	Restart(s proxy.Snapshot)
	// Name is "window" or "sequential".
	Name() string
}
