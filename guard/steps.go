package guard

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// fullWeight is 100% in hundredths of a percent.
const fullWeight = 10000

// ParseSteps parses a plan such as "5@15m,25@30m,100@1h": comma-separated
// items weight@observe, where weight is a percentage with at most two
// decimals and observe a Go duration. Weights must rise strictly and lie in
// (0, 100]; durations must be positive. An empty (or blank) string is no
// plan: nil, nil. Errors are one sentence naming the offending item.
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
		w, err := parsePercent(strings.TrimSpace(ws))
		if err != nil {
			return nil, fmt.Errorf("step %q: %w", item, err)
		}
		if w == 0 {
			return nil, fmt.Errorf("step %q: weight must be above 0", item)
		}
		d, err := time.ParseDuration(strings.TrimSpace(ds))
		if err != nil {
			return nil, fmt.Errorf("step %q: observe time %q is not a duration such as 15m", item, strings.TrimSpace(ds))
		}
		if d <= 0 {
			return nil, fmt.Errorf("step %q: observe time must be positive", item)
		}
		if i > 0 && w <= steps[i-1].Weight {
			return nil, fmt.Errorf("step %q: weight must rise above the previous step's %s%%", item, formatPercent(steps[i-1].Weight))
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
		parts[i] = formatPercent(st.Weight) + "@" + st.Observe.String()
	}
	return strings.Join(parts, ",")
}

// validateSteps checks the invariants ParseSteps guarantees, for plans built
// in code.
func validateSteps(steps []Step) error {
	for i, st := range steps {
		if st.Weight == 0 || st.Weight > fullWeight {
			return fmt.Errorf("step %d: weight %s%% must lie in (0, 100]", i+1, formatPercent(st.Weight))
		}
		if st.Observe <= 0 {
			return fmt.Errorf("step %d: observe time must be positive", i+1)
		}
		if i > 0 && st.Weight <= steps[i-1].Weight {
			return fmt.Errorf("step %d: weight must rise above the previous step's %s%%", i+1, formatPercent(steps[i-1].Weight))
		}
	}
	return nil
}

// parsePercent converts "12.5" into 1250 hundredths of a percent. Only plain
// decimal notation is accepted (no signs, exponents, hex or NaN).
func parsePercent(s string) (uint32, error) {
	if s == "" {
		return 0, fmt.Errorf("weight is missing")
	}
	for _, c := range s {
		if (c < '0' || c > '9') && c != '.' {
			return 0, fmt.Errorf("weight %q is not a number such as 12.5", s)
		}
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return 0, fmt.Errorf("weight %q is not a number such as 12.5", s)
	}
	if f > 100 {
		return 0, fmt.Errorf("weight %s%% is above 100", s)
	}
	h := math.Round(f * 100)
	if math.Abs(h-f*100) > 1e-6 {
		return 0, fmt.Errorf("weight %s%% has more than two decimals", s)
	}
	return uint32(h), nil
}

// percent converts hundredths of a percent into a percentage.
func percent(w uint32) float64 { return float64(w) / 100 }

// formatPercent renders hundredths of a percent as "12.5".
func formatPercent(w uint32) string {
	return strconv.FormatFloat(percent(w), 'f', -1, 64)
}
