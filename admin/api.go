// Package admin is canaryd's admin listener: health, metrics, the
// authenticated /canary_check, /dashboard… and /rollout/… endpoints, and the
// /dashboard page. It renders what the guard decided and forwards operators'
// commands to it; it decides nothing itself.
//
// Routes (HEAD is accepted wherever GET is):
//
//	open
//	  GET  /healthz                      200 {"status":"ok","version":…}
//	  GET  /readyz                       200 {"ready":true} or 503 {"ready":false,"reason":…}
//	  GET  /metrics                      Prometheus exposition of the injected Gatherer
//	  GET  /dashboard                    the HTML page (holds no data, asks for the token)
//	  GET  /dashboard/assets/{file}      its script and style sheet
//	Bearer token required, any role (read or operate)
//	  GET  /canary_check                 guard.Check
//	  GET  /dashboard/health_summary     guard.HealthSummary
//	  GET  /dashboard/canary_overview    guard.Overview
//	  GET  /dashboard/integrity_details  integrity.Report
//	  GET  /dashboard/fleet              guard.FleetView (the replicas, the leader, the store)
//	  GET  /dashboard/session            {"name": "ops-alice", "role": "read"|"operate"}
//	  GET  /dashboard/history[?since=T]  HistoryView: the points after T (RFC 3339), all without it
//	Bearer token of the operate role required
//	  POST /rollout/weight               {"weight": 25.5} → guard.Overview
//	  POST /rollout/promote              empty body or {} → guard.Overview
//	  POST /rollout/rollback             (likewise)
//	  POST /rollout/pause                (likewise)
//	  POST /rollout/resume               (likewise)
//	  POST /rollout/reset                (likewise)
//	  POST /rollout/finish               (likewise)
//	  POST /rollout/start                {"release": "v1.0.1", "steps": "5@15m,…"} → guard.Overview
//
// Every answer but /metrics and the page is JSON; errors are {"error": "…"}.
// A missing token is answered 401 with WWW-Authenticate: Bearer
// realm="canaryd"; a malformed or wrong one 401 with error="invalid_token"
// (RFC 6750); a valid token without the role a route needs 403. After 10
// failed attempts an address (the TCP peer, never X-Forwarded-For) earns one
// more per second and its wrong tokens are answered 429 with Retry-After
// meanwhile; a valid token is never refused for its address's sake. Tokens
// are never logged, their names are: the history's and the logs' "who" of a
// command is "NAME (ADDRESS)". Rollout commands map guard.ErrInvalid to 400, guard.ErrConflict to
// 409, guard.ErrNotPersisted (the change is in force but not saved) to 503
// with Retry-After and a body that is the new overview ("persisted": false)
// plus "error", guard.ErrStoreUnavailable (a replica of a fleet that has not
// read the fleet's rollout yet: nothing changed) to 503 with Retry-After and
// a JSON error, and other errors to 500; bodies over 64 KiB are answered
// 413; a wrong method on a known path 405 with Allow; an unknown path 404.
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
	// Fleet is who judges and where the rollout is kept (a single canaryd
	// is a fleet of one).
	Fleet() guard.FleetView
	Ready() (bool, string)
	SetWeight(w uint32, who string) (guard.Overview, error)
	Promote(who string) (guard.Overview, error)
	Rollback(who string) (guard.Overview, error)
	Pause(who string) (guard.Overview, error)
	Resume(who string) (guard.Overview, error)
	Reset(who string) (guard.Overview, error)
	// Start starts release with steps (nil: the configured plan).
	Start(release string, steps []guard.Step, who string) (guard.Overview, error)
	Finish(who string) (guard.Overview, error)
}

// Config configures the admin API.
type Config struct {
	// Tokens are the Bearer tokens for everything but /healthz, /readyz,
	// /metrics and the page, at start (Server.SetTokens replaces them).
	// Required: at least one; each token ValidateSecret's rules, names
	// unique (1 to 64 letters, digits, '.', '_', '-', '@'), tokens unique.
	Tokens []Token
	// Version is shown by /healthz and /canary_check ("" shows as "").
	Version string
	// AuthLimit limits failed authentications per client address. The zero
	// value means 10 failures at once, then 1 per second, 10,000 addresses
	// remembered, and the wall clock.
	AuthLimit LimiterConfig
	// History is served at GET /dashboard/history (the caller runs it).
	// Nil means no history is kept: the endpoint answers no points.
	History *History
}
