// Package admin is canaryd's admin listener: health, metrics, the
// authenticated /canary_check, /dashboard… and /rollout/… endpoints, and the
// /dashboard page.
//
// CONTRACT SKELETON: the exported names in this file are the contract cmd is
// written against. Bodies are filled in by the admin owner.
package admin

import (
	"github.com/canaryd/canaryd/guard"
	"github.com/canaryd/canaryd/guard/integrity"
)

// Controller is what the admin API reads and steers (a *guard.Guard).
type Controller interface {
	Check() guard.Check
	Overview() guard.Overview
	Health() guard.HealthSummary
	Integrity() integrity.Report
	Ready() (bool, string)
	SetWeight(w uint32, who string) (guard.Overview, error)
	Promote(who string) (guard.Overview, error)
	Rollback(who string) (guard.Overview, error)
	Pause(who string) (guard.Overview, error)
	Resume(who string) (guard.Overview, error)
	Reset(who string) (guard.Overview, error)
}

// Config configures the admin API.
type Config struct {
	// Token is the Bearer token for everything but /healthz, /readyz and
	// /metrics. Required, at least 16 characters.
	Token string
	// Version is shown by /healthz.
	Version string
}
