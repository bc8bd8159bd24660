package guard_test

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/canaryd/canaryd/guard"
	"github.com/canaryd/canaryd/guard/judge"
)

// Each value's rule, at its boundaries: what canaryd's environment is
// checked against as well.
func TestValidateValues(t *testing.T) {
	steps := []guard.Step{{Weight: 500, Observe: 5 * time.Minute}, {Weight: 2500, Observe: 10 * time.Minute}}
	for _, tt := range []struct {
		name string
		err  error
		ok   bool
	}{
		{"judge sequential", guard.ValidateJudge("sequential"), true},
		{"judge window", guard.ValidateJudge("window"), true},
		{"judge empty", guard.ValidateJudge(""), false},
		{"judge capitalised", guard.ValidateJudge("Window"), false},
		{"eval interval 1ns", guard.ValidateEvalInterval(1), true},
		{"eval interval 0", guard.ValidateEvalInterval(0), false},
		{"integrity interval 1ns", guard.ValidateIntegrityInterval(1), true},
		{"integrity interval negative", guard.ValidateIntegrityInterval(-1), false},
		{"metric gate interval 1ns", guard.ValidateMetricGateInterval(1), true},
		{"metric gate interval 0", guard.ValidateMetricGateInterval(0), false},
		{"no deadline", guard.ValidateProgressDeadline(0, steps), true},
		{"deadline longer than every step", guard.ValidateProgressDeadline(10*time.Minute+1, steps), true},
		{"deadline as long as a step", guard.ValidateProgressDeadline(10*time.Minute, steps), false},
		{"deadline negative", guard.ValidateProgressDeadline(-time.Second, nil), false},
		{"stall without a deadline", guard.ValidateDeadlineAction(guard.DeadlineStall, 0), true},
		{"rollback with a deadline", guard.ValidateDeadlineAction(guard.DeadlineRollback, time.Hour), true},
		{"rollback without a deadline", guard.ValidateDeadlineAction(guard.DeadlineRollback, 0), false},
		{"unknown action", guard.ValidateDeadlineAction(guard.DeadlineRollback+1, time.Hour), false},
		{"gate names", guard.ValidateGateNames([]string{"checkout_errors", "queue_depth"}), true},
		{"gate without a name", guard.ValidateGateNames([]string{""}), false},
		{"gate named twice", guard.ValidateGateNames([]string{"a", "a"}), false},
		{"gate named as a built-in", guard.ValidateGateNames([]string{guard.ReservedGateNames()[0]}), false},
	} {
		if (tt.err == nil) != tt.ok {
			t.Errorf("%s: %v; want ok = %v", tt.name, tt.err, tt.ok)
		}
	}
}

// Config.Validate applies each value's rule to a field that is set (zero
// means the default), the judge's to the SLO and the proxy's to the window.
func TestConfigValidateValues(t *testing.T) {
	good := func() guard.Config {
		return guard.Config{
			SLO:       judge.SLO{ErrorRate: 0.01, P95: 500 * time.Millisecond, MinRequests: 100},
			StateFile: filepath.Join(t.TempDir(), "state.json"),
		}
	}
	for _, tt := range []struct {
		name    string
		mod     func(*guard.Config)
		wantErr string // "" = valid
	}{
		{"zero values are the defaults", func(*guard.Config) {}, ""},
		{"no state file", func(c *guard.Config) { c.StateFile = "" }, "state file"},
		{"judge unknown", func(c *guard.Config) { c.Judge = "vibes" }, "judge"},
		{"window under 1s", func(c *guard.Config) { c.Window = 500 * time.Millisecond }, "window"},
		{"eval interval negative", func(c *guard.Config) { c.EvalInterval = -time.Second }, "evaluation interval"},
		{"integrity interval negative", func(c *guard.Config) { c.IntegrityInterval = -time.Second }, "integrity interval"},
		{"metric gate interval negative", func(c *guard.Config) { c.MetricGateInterval = -time.Second }, "metric gate interval"},
		{"error rate 0", func(c *guard.Config) { c.SLO.ErrorRate = 0 }, "error rate"},
		{"min requests 0", func(c *guard.Config) { c.SLO.MinRequests = 0 }, "min requests"},
		{"alpha 0.5", func(c *guard.Config) { c.SLO.Alpha = 0.5 }, "alpha"},
		{"deadline shorter than a step", func(c *guard.Config) {
			c.Steps, c.ProgressDeadline = []guard.Step{{Weight: 500, Observe: time.Hour}}, 10*time.Minute
		}, "progress deadline"},
		{"rollback without a deadline", func(c *guard.Config) { c.DeadlineAction = guard.DeadlineRollback }, "progress deadline action"},
	} {
		c := good()
		tt.mod(&c)
		err := c.Validate()
		if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
			t.Errorf("%s: Validate() = %v; want %q", tt.name, err, tt.wantErr)
		}
	}
}
