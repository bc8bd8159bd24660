package guard

import (
	"fmt"
	"strings"
	"time"

	"github.com/canaryd/canaryd/split"
)

// ParseSteps parses a plan such as "5@15m,25@30m,100@1h" (CANARY_STEPS, and
// the "steps" of POST /rollout/start): comma-separated items weight@observe,
// where weight is a percentage in split.ParsePercent's grammar and observe a
// Go duration; spaces around items and around "@" are allowed. Weights lie
// in 0..100 and must rise strictly, so only the first step may have weight 0
// (the canary then learns from traffic sent to it otherwise, e.g. an
// override header); durations must be positive. An empty (or blank) string
// is no plan: nil, nil. Errors are one sentence naming the offending item.
func ParseSteps(s string) ([]Step, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	items := strings.Split(s, ",")
	steps := make([]Step, 0, len(items))
	for i, raw := range items {
		item := strings.TrimSpace(raw)
		if item == "" {
			return nil, fmt.Errorf("step %d of plan %q is empty", i+1, s)
		}
		ws, ds, ok := strings.Cut(item, "@")
		if !ok {
			return nil, fmt.Errorf("step %q is not weight@observe (e.g. 25@30m)", item)
		}
		w, err := split.ParsePercent(strings.TrimSpace(ws))
		if err != nil {
			return nil, fmt.Errorf("step %q: weight %w", item, err)
		}
		d, err := time.ParseDuration(strings.TrimSpace(ds))
		if err != nil {
			return nil, fmt.Errorf("step %q: observe time %q is not a duration such as 15m", item, strings.TrimSpace(ds))
		}
		if d <= 0 {
			return nil, fmt.Errorf("step %q: observe time must be positive", item)
		}
		if i > 0 && w <= steps[i-1].Weight {
			return nil, fmt.Errorf("step %q: weight must rise above the previous step's %s%%", item, split.FormatPercent(steps[i-1].Weight))
		}
		steps = append(steps, Step{Weight: w, Observe: d})
	}
	return steps, nil
}

// FormatSteps renders a plan in the form ParseSteps reads, e.g.
// "5@15m0s,25@30m0s"; "" for no plan.
func FormatSteps(steps []Step) string {
	parts := make([]string, len(steps))
	for i, st := range steps {
		parts[i] = split.FormatPercent(st.Weight) + "@" + st.Observe.String()
	}
	return strings.Join(parts, ",")
}

// validateSteps checks the invariants ParseSteps guarantees, for plans built
// in code.
func validateSteps(steps []Step) error {
	for i, st := range steps {
		if st.Weight > split.MaxWeight {
			return fmt.Errorf("step %d: weight %s%% is above 100", i+1, split.FormatPercent(st.Weight))
		}
		if st.Observe <= 0 {
			return fmt.Errorf("step %d: observe time must be positive", i+1)
		}
		if i > 0 && st.Weight <= steps[i-1].Weight {
			return fmt.Errorf("step %d: weight must rise above the previous step's %s%%", i+1, split.FormatPercent(steps[i-1].Weight))
		}
	}
	return nil
}
