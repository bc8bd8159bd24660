// Package guard judges the canary from the proxy's snapshots, runs the
// rollout state machine (steps, promote, pause, rollback), persists its state
// and checks the release's integrity.
//
// The guard never runs on the request path: the proxy reads only the
// splitter's atomics, which the guard sets through its Router. Run wakes every
// EvalInterval, and at once after a canary error; each wake takes a
// snapshot, asks the judge, and acts on the verdict.
//
// # States
//
//	fixed        no plan: the weight is Config.Weight; the judge may still roll back
//	progressing  the plan runs at step i, weight Steps[i].Weight
//	paused       the plan is held at its step; also the state after a manual weight
//	rolled_back  weight 0 and the canary blocked (Router.SetRolledBack(true)); sticky
//	complete     the plan finished: weight 100%
//	held         the state file was unreadable at start: weight 0, canary blocked,
//	             waiting for an operator's reset, resume or weight
//
// # Transitions
//
//	from                  event                                      to           who
//	(start)               no state file, or another Config.Release   progressing  startup   (step 0; fixed without a plan)
//	(start)               state file of this release                 as stored    startup   (a step keeps its earned observation)
//	(start)               state file unreadable or corrupt           held         startup   (file kept aside as <file>.corrupt-<unix>)
//	progressing           judge said proceed for Steps[i].Observe    progressing  plan      (step i+1)
//	progressing           ... and i is the last step                 complete     plan
//	any but rolled_back   judge verdict rollback_*                   rolled_back  guard
//	any but rolled_back   integrity report FAILED                    rolled_back  guard     (rollback_integrity)
//	any but rolled_back   Rollback                                   rolled_back  admin     (rollback_manual; no-op when rolled back)
//	any but rolled_back   SetWeight(w)                               paused       admin     (weight w)
//	progressing, paused   Promote                                    progressing  admin     (step i+1)
//	fixed, progressing,   Promote at the last step or without plan   complete     admin
//	paused
//	progressing           Pause                                      paused       admin
//	paused, held          Resume                                     progressing  admin     (current step; held: step 0; fixed without a plan)
//	any                   Reset                                      progressing  admin     (step 0, rollback cleared; fixed without a plan)
//
// Every other (state, control) pair is ErrConflict. One method performs every
// transition: it steers the router, appends to the bounded history, logs one
// event, updates the metrics and writes the state file atomically.
//
// A step advances only after the judge said proceed continuously for the
// step's observe time: any other verdict restarts that clock. The one
// exception is a restart of canaryd: the observation a step had earned is
// stored, and the judge's hold while it gathers data again (its evidence does
// not survive the process) does not erase that credit; the first failing or
// later holding verdict after a proceed does.
//
// # Recommendation
//
// rolled_back gives its reason (rollback_error_rate, rollback_latency,
// rollback_integrity, rollback_manual); complete gives complete; paused and
// held give hold; otherwise the judge's last verdict (proceed or hold).
// canary_ok is false exactly when the recommendation starts with rollback_.
//
// # Metrics
//
// canary_weight_ratio (0..1), canary_rollback_required (0/1),
// canary_rollbacks_total{reason}, canary_integrity_verified (1 when the last
// report is VERIFIED or integrity is DISABLED, 0 when FAILED),
// canary_slo_error_rate_ratio and canary_slo_p95_seconds (the configured
// objectives, so dashboards and alert rules can draw and compare against
// them), canary_overall_health{status}, canary_verdict{verdict} (1 on the
// current recommendation) and canary_step (the plan's step index, -1 without
// a plan).
package guard
