package guard

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/canaryd/canaryd/internal/rule"
	"github.com/canaryd/canaryd/proxy"
	"github.com/canaryd/canaryd/split"
)

// The rules of Config's values, one function a value (or a pair that only
// makes sense together). Each checks a value set explicitly (zero
// included); Config.Validate applies it, a zero interval meaning the
// default. canaryd calls the same functions on what its environment says,
// so a rule is written once, here. The SLO's rules are the judge's
// (judge.ValidateErrorRate, …), the window's the proxy's
// (proxy.ValidateWindow): the guard judges the window the proxy measures.

// ValidateJudge checks Config.Judge set explicitly: sequential or window.
func ValidateJudge(name string) error {
	if name != "sequential" && name != "window" {
		return fmt.Errorf("%q must be sequential or window", name)
	}
	return nil
}

// ValidateEvalInterval checks Config.EvalInterval: positive.
func ValidateEvalInterval(d time.Duration) error { return rule.Positive(d) }

// ValidateIntegrityInterval checks Config.IntegrityInterval: positive.
func ValidateIntegrityInterval(d time.Duration) error { return rule.Positive(d) }

// ValidateMetricGateInterval checks Config.MetricGateInterval: positive.
// How often Prometheus may be asked is the metric gates' own rule
// (metricgate.ValidateInterval), which a faster fake need not follow.
func ValidateMetricGateInterval(d time.Duration) error { return rule.Positive(d) }

// ValidateProgressDeadline checks Config.ProgressDeadline against the
// configured plan: not negative (zero: no deadline), and longer than every
// step's observation time, which a step must run before it can advance.
func ValidateProgressDeadline(d time.Duration, steps []Step) error {
	if d < 0 {
		return fmt.Errorf("%v must not be negative (0 for no deadline)", d)
	}
	for i, st := range steps {
		if d > 0 && d <= st.Observe {
			return fmt.Errorf("%v is not longer than step %d's observation time (%v): that step could never advance in time", d, i+1, st.Observe)
		}
	}
	return nil
}

// ValidateDeadlineAction checks Config.DeadlineAction against the
// deadline: rolling back needs a deadline to act on.
func ValidateDeadlineAction(a DeadlineAction, deadline time.Duration) error {
	if a > DeadlineRollback {
		return fmt.Errorf("deadline action %d is neither stall nor rollback", a)
	}
	if a == DeadlineRollback && deadline == 0 {
		return errors.New("is rollback but there is no progress deadline to act on")
	}
	return nil
}

// ValidateGateNames checks the names of the metric gates: each set, none
// twice, none the name of a gate the guard shows itself
// (ReservedGateNames).
func ValidateGateNames(names []string) error {
	seen := map[string]bool{}
	for _, n := range names {
		switch {
		case n == "":
			return errors.New("a metric gate has no name")
		case slices.Contains(ReservedGateNames(), n):
			return fmt.Errorf("metric gate %q has the name of a gate canaryd shows itself; choose another", n)
		case seen[n]:
			return fmt.Errorf("two metric gates are named %q", n)
		}
		seen[n] = true
	}
	return nil
}

// Validate reports the first problem with c as one sentence.
func (c Config) Validate() error {
	if c.Store == nil && c.StateFile == "" {
		return errors.New("state file path is required")
	}
	if c.Release != "" {
		if err := ValidateRelease(c.Release); err != nil {
			return fmt.Errorf("%w: %w", ErrRelease, err)
		}
	}
	if c.Weight > split.MaxWeight {
		return fmt.Errorf("weight %s%% is above 100", split.FormatPercent(c.Weight))
	}
	if err := validateSteps(c.Steps); err != nil {
		return fmt.Errorf("plan: %w", err)
	}
	if err := c.SLO.Validate(); err != nil {
		return err
	}
	judgeName := ""
	if c.JudgeImpl == nil {
		judgeName = c.Judge
	}
	for _, f := range []struct {
		name string
		err  error
	}{
		{"judge", rule.IfSet(judgeName, ValidateJudge)},
		{"window", rule.IfSet(c.Window, proxy.ValidateWindow)},
		{"evaluation interval", rule.IfSet(c.EvalInterval, ValidateEvalInterval)},
		{"integrity interval", rule.IfSet(c.IntegrityInterval, ValidateIntegrityInterval)},
		{"metric gate interval", rule.IfSet(c.MetricGateInterval, ValidateMetricGateInterval)},
		{"progress deadline", ValidateProgressDeadline(c.ProgressDeadline, c.Steps)},
		{"progress deadline action", ValidateDeadlineAction(c.DeadlineAction, c.ProgressDeadline)},
	} {
		if f.err != nil {
			return fmt.Errorf("%s %w", f.name, f.err)
		}
	}
	if c.MetricGates != nil {
		return ValidateGateNames(c.MetricGates.Names())
	}
	return nil
}
