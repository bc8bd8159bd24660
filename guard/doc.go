// Package guard judges the canary from the proxy's snapshots, runs the
// rollout state machine (steps, promote, pause, rollback, releases), keeps
// the rollout in a Store and checks the release's integrity.
//
// The guard never runs on the request path: the proxy reads only the
// splitter's atomics, which the guard sets through its Router. Run wakes every
// EvalInterval, and at once after a canary error; each wake takes a
// snapshot, asks the judge, and acts on the verdict. The store's I/O runs in
// a loop of its own, so judging never waits for a slow or unreachable
// store.
//
// # The machine
//
// The rollout is a Record (release, state, step, weight, plan, earned
// observation, rollback record, history, releases seen). Next is the whole
// state machine: a pure function from (record, event) to (record, effects),
// where the events are the boot, the judge's verdicts, a failed integrity
// check and the operators' commands. The effects (route the splitter, restart
// the judge, count a rollback, log the transition, save) are carried out in
// one place, Guard.applyLocked; whether the judge restarts is part of each
// transition below, never inferred from its reason or caller.
//
// # States
//
//	fixed        no plan: the weight is the plan's fixed weight; the judge may still roll back
//	progressing  the plan runs at step i, weight Steps[i].Weight
//	paused       the plan is held at its step; also the state after a manual weight
//	rolled_back  weight 0 and the canary blocked (Router.SetRolledBack(true)); sticky
//	complete     the plan finished: weight 100%
//	held         the stored state was unreadable at start: weight 0, canary blocked,
//	             waiting for an operator's reset, resume, weight, start or finish
//	finished     the release was ended (Finish): weight 0, canary blocked until the next Start
//
// The canary is blocked (no request, not even forced by an override header)
// in rolled_back, held and finished.
//
// # Transitions
//
// "restart" says whether the judge's evidence starts afresh; it never does
// for a state that blocks the canary. Who is "startup", "plan", "guard" or the
// admin caller (the token's name and address,
// "ops-alice (10.0.0.5)").
//
//	from                      event                                 to           who      restart
//	(boot) nothing stored     boot                                  progressing  startup  yes      step 0 of the configured plan; fixed without one
//	(boot) unreadable         boot                                  held         startup  -        the value kept aside (Store.Quarantine)
//	(boot) any                boot, CANARY_RELEASE never seen       progressing  startup  yes      that release, configured plan, rollback cleared
//	(boot) any                boot, CANARY_RELEASE seen or empty    as stored    startup  yes      a configured plan follows the configuration (step
//	                                                                                               clamped), a Custom one stays; a step keeps the
//	                                                                                               observation earned up to the last save
//	(boot) any, a fleet's     boot, release seen or empty, and the  as stored    -        -        no transition, nothing saved: the other replicas
//	                          plan Custom or as configured                                         may be running it (Event.Shared)
//	progressing               this replica leads its fleet          progressing  -        no       no transition: the observation is banked (Restored),
//	                          (EventLead)                                                          up to now if this replica's judgment of the fleet
//	                                                                                               said proceed throughout since before the last
//	                                                                                               save, else up to the last save
//	progressing               proceed for Steps[i].Observe          progressing  plan     yes      step i+1
//	progressing               ... and i is the last step            complete     plan     if 100% is new
//	progressing               ... with Rules.Confirm, not confirmed progressing  -        no       no transition: Awaiting set (saved at once),
//	                                                                                               the endpoint's answers kept in it; the next
//	                                                                                               confirmed proceed advances (", confirmed")
//	progressing               a verdict, the step started           progressing  plan     no       stalled (StalledAt), once; the observation and
//	                          Rules.Deadline ago (DeadlineStall)                                   Awaiting stay; an advance clears it
//	progressing               ... (DeadlineRollback)                rolled_back  guard    -        rollback_deadline, a failing progress_deadline gate
//	fixed, progressing,       judge verdict rollback_*              rolled_back  guard    -        the gates and figures kept as evidence
//	paused, complete
//	fixed, progressing,       a metric gate failed                  rolled_back  guard    -        rollback_metric, naming the gate (Detail)
//	paused, complete          (EventMetricFailed)
//	any but rolled_back,      integrity check FAILED                rolled_back  guard    -        rollback_integrity
//	finished
//	any but rolled_back,      Rollback                              rolled_back  admin    -        rollback_manual; a no-op when rolled back or finished
//	finished
//	any but rolled_back,      SetWeight(w)                          paused       admin    if w > 0 and new, or from held
//	finished
//	fixed, progressing,       Promote                               progressing  admin    yes      step i+1
//	paused
//	fixed, progressing,       Promote at the last step / no plan    complete     admin    if 100% is new
//	paused
//	progressing               Pause                                 paused       admin    no
//	paused, held              Resume                                progressing  admin    if the weight is new, or from held
//	                                                                                               (held: step 0; fixed without a plan)
//	any but finished          Reset                                 progressing  admin    yes      step 0 of the release's plan, rollback cleared
//	                                                                                               (fixed without a plan); integrity verified first
//	any                       Start(release, steps)                 progressing  admin    yes      a release other than the current one; steps or the
//	                                                                                               configured plan; rollback cleared; integrity verified first
//	any but finished          Finish                                finished     admin    -        weight 0; a no-op when finished
//
// Every other (state, command) pair is ErrConflict (starting the current
// release too: reset it), and a malformed command ErrInvalid; neither
// changes anything.
//
// A step advances only after the judge said proceed continuously for the
// step's observe time while the canary was observable (it gets requests and
// passes its health checks) and every metric gate passed (a gate that is
// pending or cannot be checked turns proceed into hold): any other verdict
// restarts that clock. The one
// exception is a restart of canaryd: the observation a step had earned (up to
// the last save; saves happen at every transition and every 5 s) survives,
// and the judge's hold while it gathers evidence again does not erase it; the
// first failing or later holding verdict after a proceed does.
//
// EvidenceSince marks each restart of the judges: a transition that
// restarts them sets it, and a guard restarts its judges whenever the record
// in force carries another value, whoever wrote it.
//
// # Releases
//
// A record remembers the releases it has seen (the last 100). CANARY_RELEASE
// (Config.Release) starts a release at boot only if it was never seen, so a
// replica restarting with a stale value never drags the rollout back; an
// empty value keeps the stored release. Start starts any other release
// (earlier ones included) at once; Finish ends the current one. A plan given
// to Start (Custom) stays the release's plan across restarts; otherwise a
// release follows the configured plan (CANARY_STEPS, or CANARY_WEIGHT without
// steps), and a restart with another configured plan adopts it, clamping the
// step.
//
// # Integrations
//
// Next names every transition's kind (Effects.Kind: started, restarted,
// held, step, complete, rolled_back, weight, paused, resumed, reset,
// finished, stalled). Once the store accepted a transition, the guard that
// made it hands a Notice (the history entry, its kind, an id that hashes
// the entry) to Config.Notifier (guard/notify): a transition that lost the
// compare-and-swap and was dropped is never announced, one computed again
// on a newer record is announced as computed, and a transition another
// writer stored is that writer's to announce. So each transition of a
// fleet's history is announced once, by the replica that wrote it.
//
// The confirmation gate (Config.Confirmer, Rules.Confirm) and the progress
// deadline (Rules.Deadline) are part of EventJudged, so they act where the
// plan runs: a single canaryd, or the leader of a fleet. The leader asks
// the confirmer in a loop of its own, at most one request at a time and
// once per EvalInterval while the record is Awaiting; an acceptance wakes
// an evaluation at once. Awaiting and StalledAt are in the record, so every
// replica shows them. An operator's Promote is never asked about.
//
// The metric gates (Config.MetricGates, guard/metricgate) are checked in a
// loop of their own every MetricGateInterval by every replica (a check is
// one query per gate; the replicas ask the same Prometheus): a gate that
// is not passing holds the plan where it runs, and a failing one rolls the
// fleet back from whichever replica saw it first (EventMetricFailed),
// written like any rollback. A check begun before the judges restarted
// (a reset, a new step) does not act; the gates' "for" restarts with them.
//
// # Store
//
// The record lives in a Store: a FileStore (CANARY_STATE_FILE) for one
// canaryd, or a shared store for a fleet (guard/etcdstore). Every change is applied in memory
// at once (the splitter follows it before anything is written: a rollback is
// never delayed by the disk) and then saved with a compare-and-swap on the
// revision it was computed from. A save that loses the race loads the newer
// record, adopts it (Adopt) and computes the unsaved changes again on it
// (Rebase), where a change that is no longer possible is dropped and its
// command answered ErrConflict; a rollback is never undone that way. Changes
// other writers store reach a guard through Store.Watch.
//
// A save that fails keeps the change in force and is retried in Run's loop
// with backoff (100 ms doubling to 5 s) until it succeeds; meanwhile the
// commands answer ErrNotPersisted with the new Overview (whose Persisted is
// false), canary_state_persisted is 0, canary_state_persist_failures_total
// counts the failures and the health summary is degraded, naming the problem
// (state_store). If Run ends with a transition still unsaved, it returns an
// error wrapping ErrNotPersisted that says what is lost.
//
// # A fleet
//
// With Config.Fleet, the guard is one replica of a fleet that shares the
// rollout in its Store (etcd; the README's "Running a fleet" is the
// operator's view, guard/etcdstore's package doc the keys and leases).
// Every replica:
//
//   - publishes its Evidence (Fleet.Publish) at least once a second, and at
//     once after a canary error or a restart of its judges: per backend
//     its requests, errors and slow requests since its judges restarted for
//     the record's EvidenceSince (the tag that keeps an earlier step's
//     counts out of the sums), and its window figures;
//   - judges its own snapshot with its share of alpha
//     (judge.SLO.FleetShares: Alpha/(2R), Horizon/R, R the live replicas
//     when its judges restarted; a replica with no canary evidence yet
//     takes the share of a larger fleet at once). Only a rollback verdict of
//     this judge acts: it rolls the fleet back without waiting for the
//     leader (the safe direction);
//   - judges the fleet's summed evidence (every replica's window, and the
//     step counts of the evidence tagged with the current EvidenceSince)
//     with the leader's share (Alpha/2): its verdict, gates and figures are
//     what /canary_check shows on any replica. On the leader, and only while
//     the store answers, this verdict runs the plan (steps, earned
//     observation, and a rollback too), so no step advances while the
//     replicas cannot agree on it. The fleet's judge restarts from zero at
//     every EvidenceSince and when the replica becomes the leader (it then
//     takes in the step's sums as one batch: the step tests resume exactly,
//     the change detectors restart, which can only delay a rollback).
//
// By the union bound the fleet rolls back a canary that meets its SLO with
// probability at most Alpha (see guard/judge, "A fleet", for the
// simulation with 1, 3 and 10 replicas) while R holds for the step: a
// replica joining a step that has canary evidence judges at that step's
// share, adding at most Alpha/(2R) for the step.
//
// Every command and every transition is saved with the compare-and-swap
// of any Store, so concurrent commands on different replicas are computed
// again on the newer record rather than lost (a rollback is never undone).
// A replica that cannot reach the store keeps the rollout in force (the
// last weight it knew), still rolls back on its own evidence at once (saved
// when the store answers), and its views and canary_store_up say so; one
// that could not read the rollout at start serves with the canary blocked
// (a placeholder, never saved) and refuses commands (ErrStoreUnavailable)
// until the store answers.
//
// # Views
//
// Check, Overview and Health render from one snapshot of the guard's facts,
// taken under its lock, with fresh health-check figures; they never write.
// The metrics are set from the same facts as of the last evaluation,
// transition or save.
//
// # Recommendation
//
// rolled_back gives its reason (rollback_error_rate, rollback_latency,
// rollback_integrity, rollback_manual, rollback_deadline,
// rollback_metric); complete gives complete; paused,
// held and finished give hold; otherwise the judge's last verdict (proceed
// or hold; hold while the canary fails its health checks). canary_ok is false
// exactly when Recommendation.IsRollback.
//
// # Health
//
// overall_health is unhealthy only when users are hurt: stable fails its
// health checks, or they fail more than 5% of the time over the window. A
// rolled-back canary (stable serves everyone), a held, paused or stalled
// rollout, a canary failing its checks, too little canary data, a gate
// within 20% of its threshold, a metric gate not passing or an unsaved
// state are degraded.
//
// # Metrics
//
// canary_weight_ratio (0..1), canary_rollback_required (0/1),
// canary_rollbacks_total{reason} (rollbacks this process decided),
// canary_integrity_verified (1 VERIFIED, 0 FAILED, absent while integrity is
// DISABLED, so that it agrees with the API), canary_integrity_status{status}
// (1 on verified, failed or disabled), canary_slo_error_rate_ratio and
// canary_slo_p95_seconds (the configured objectives, so dashboards and alert
// rules can draw and compare against them), canary_overall_health{status},
// canary_verdict{verdict} (1 on the current recommendation), canary_step (the
// plan's step index, -1 without a plan), canary_state_persisted (0/1),
// canary_state_persist_failures_total, canary_store_up (1 while the store
// answers), canary_is_leader (1 while this replica leads; a single canaryd
// always does), canary_fleet_replicas (the live replicas it sees; 1 alone),
// canary_fleet_info{fleet,replica,store} (always 1: the labels that
// alert rules and dashboards aggregate a fleet by) and
// canary_progress_stalled (1 while the step is stalled).
package guard
