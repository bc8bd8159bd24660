package guard

// TODO(guard owner): delete this file when the real implementations exist.

import (
	"context"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/canaryd/canaryd/guard/integrity"
)

// ParseSteps parses a plan such as "5@15m,25@30m,100@1h". Weights must rise
// and lie in (0, 100]; durations must be positive.
func ParseSteps(s string) ([]Step, error) { panic("unimplemented") }

// Guard judges the canary and runs the rollout. Create it with New.
type Guard struct{}

// New validates cfg, restores the persisted state (or starts fresh), applies
// the resulting weight to router and registers the guard's collectors.
// A state file location that cannot be written is an error.
func New(cfg Config, src Source, router Router, log zerolog.Logger, reg prometheus.Registerer) (*Guard, error) {
	panic("unimplemented")
}

// Run judges every EvalInterval (and at once after a canary error), drives the
// plan and re-verifies integrity until ctx ends; it persists the state before
// it returns.
func (g *Guard) Run(ctx context.Context) error { panic("unimplemented") }

// Check returns the current verdict with its figures and gates.
func (g *Guard) Check() Check { panic("unimplemented") }

// Overview returns the rollout's state, plan and history.
func (g *Guard) Overview() Overview { panic("unimplemented") }

// Health returns the health summary.
func (g *Guard) Health() HealthSummary { panic("unimplemented") }

// Integrity returns the last integrity report.
func (g *Guard) Integrity() integrity.Report { panic("unimplemented") }

// Ready reports whether canaryd should receive traffic (stable passes its
// health checks) and why not.
func (g *Guard) Ready() (bool, string) { panic("unimplemented") }

// SetWeight sets the weight by hand (hundredths of a percent) and pauses the plan.
func (g *Guard) SetWeight(w uint32, who string) (Overview, error) { panic("unimplemented") }

// Promote advances to the next step (or 100% without a plan).
func (g *Guard) Promote(who string) (Overview, error) { panic("unimplemented") }

// Rollback sets the weight to 0 with reason rollback_manual.
func (g *Guard) Rollback(who string) (Overview, error) { panic("unimplemented") }

// Pause holds the plan at its current step.
func (g *Guard) Pause(who string) (Overview, error) { panic("unimplemented") }

// Resume continues a paused plan.
func (g *Guard) Resume(who string) (Overview, error) { panic("unimplemented") }

// Reset clears a rollback and starts the plan again from its first step.
func (g *Guard) Reset(who string) (Overview, error) { panic("unimplemented") }
