// Package judge decides, from the proxy's measurements, whether the canary
// meets its service-level objectives. The guard calls a Judge every tick and
// at once after a canary error, and Restart at every new step or reset.
//
// # Two judges
//
// The window judge (CANARY_JUDGE=window, the first behaviour) compares the
// sliding window's averages with the SLO: with at least MinRequests canary
// requests in the window, an error rate above SLO.ErrorRate is
// rollback_error_rate, more than 5% of requests slower than SLO.P95 (which is
// exactly "p95 > P95", judged on the proxy's exact count of slow requests)
// is rollback_latency, anything else proceed; below the floor it holds.
// Looking every second at a small window, it keeps testing noise: see the
// table below.
//
// The sequential judge (the default) runs anytime-valid tests on the
// evidence accumulated since the last Restart, after Lindon, Sanden and
// Shirikian, "Rapid Regression Detection in Software Deployments through
// Sequential Testing" (KDD 2022). It may be consulted after every request
// without inflating its false-alarm probability. This is its second version
// (v2): v1 tested one alternative, three times the SLO, and let a canary at
// 1.5 times its SLO through in 42.5% of 100,000-request rollouts.
//
// # The step test: a mixture SPRT
//
// Each SLO is a rate: the error rate p0 = SLO.ErrorRate, and for latency the
// share of requests slower than SLO.P95, p0 = 5% ("p95 <= P95" is exactly
// "at most 5% of requests are slower than P95"). Given k events (failed, or
// slow) among the n canary requests since the step started, the likelihood
// ratio of a rate p1 against p0 is
//
//	L(p1; n, k) = (p1/p0)^k · ((1-p1)/(1-p0))^(n-k).
//
// Nobody knows in advance how bad a bad release is, so the step test does
// not pick one p1: its statistic is the mixture
//
//	M(n, k) = 0.10·L(1.5·p0) + 0.15·L(2·p0) + 0.60·L(3·p0) + 0.15·L(10·p0)
//
// (each p1 capped halfway from p0 to 1), and it rejects when
// log M >= log(1/b), b being its share of α: log(4/α) = 5.99 at α = 0.01.
//
// The guarantee. Let the requests be independent with any rate p <= p0.
// One request multiplies L(p1) by p1/p0 with probability p and by
// (1-p1)/(1-p0) otherwise, whose expectation p·p1/p0 + (1-p)(1-p1)/(1-p0)
// is 1 at p = p0 and smaller below it (p1 > p0). So every L(p1) is a
// non-negative supermartingale starting at 1, and so is M, an average of
// them with fixed weights summing to 1. By Ville's inequality,
//
//	P(M ever reaches 1/b) <= b,
//
// however often M is looked at and however long the step: looking only at
// batch ends (ticks, errors) looks less often, which can only lower it. This
// is the anytime-valid guarantee of v1, unchanged; the mixture is what the
// paper calls a mixture SPRT, and the weights are a prior on how bad a bad
// release is, fixed before any data (any fixed weights keep the guarantee).
//
// The price of not knowing p1: M >= w·L(p1) for each component, so the test
// concludes no later than a single-alternative SPRT at that p1 with the
// threshold raised by log(1/w): 0.51 at 3x (v1's design point, where most of
// the weight sits), 1.90 at 2x and 10x, 2.30 at 1.5x. That costs about 5% at
// 3x and buys the half-broken canary: at 1.5x the SLO, 7,168 requests
// (median) instead of 28,738 with 42.5% missed (table below). A dead canary is
// rolled back on its 4th failed request (10^4·0.15 > 400); three failures in
// a row are not enough, so a short burst of errors at the start of a step
// does not end it. The mixture has no component beyond 10x on purpose: one
// at 50x would conclude on the 3rd failure.
//
// Summable state. The step test's statistic is a function of the two counts
// (n, k) alone, and the comparison below needs the same two counts for
// stable. The sequential judge's whole state is therefore a few counts per
// gate: canary requests, errors and slow requests since the step started,
// and the same for stable, plus the path-dependent statistics below. Counts
// of several replicas add up: the sum of their counts is the count of the
// merged stream of all their requests, independent under the same rate, so
// M(Σn, Σk) is the same supermartingale, evaluated on the fleet's stream,
// and Ville's bound holds for it. A leader judges the fleet by feeding one
// judge a proxy.Snapshot whose Totals are the replicas' summed counts (see
// "A fleet" below).
//
// # Late regressions: the CUSUM
//
// Restarting at each step is not enough: a step can last for hours. While
// the canary is healthy, every component of M drifts down (the 3x one by
// 0.015 per request at half a 1% SLO), so after 10,000 good requests M
// would need thousands of requests to climb back. Page's CUSUM forgets
// good history: on the 3x alternative's per-request log likelihood ratio
// llr, W = max(0, W + llr), rejecting at h. It never goes below zero, so its
// delay after a change is about h/KL (KL = 0.013 per request at 3x a 1%
// SLO) whether the change comes at the first request or the millionth, and
// it minimises the worst-case delay for a given false-alarm rate (Lorden
// 1971 asymptotically, Moustakides 1986 exactly). It keeps v1's single
// alternative: measured against 2x and 4x, 3x caught a late 3x regression
// fastest.
//
// The CUSUM is path-dependent (where W stood at zero matters), so its state
// is W and the counts since it last stood at zero. The judge feeds it the
// growth of the totals between calls, one batch per call, reflected at zero
// only at batch ends, which never puts it above the per-request CUSUM of the
// same requests in the order they completed (by induction over batches), so
// every bound below holds for the batches. Fed the growth of a fleet's
// summed totals tick by tick, it is the CUSUM of the fleet's merged stream
// in batches, and its horizon counts fleet-wide requests.
//
// # Calibration: exactly at the SLO, within a horizon
//
// No change detector can promise "never" over an unbounded time: one that
// reacts within a bounded delay to a change at any moment must eventually
// fire on a long enough stretch of data sitting exactly at its SLO. Its
// threshold is therefore calibrated for a horizon H = SLO.Horizon canary
// requests per step (100,000 by default), at every rate that meets the
// SLO, p <= p0, where exp(llr) is a non-negative supermartingale:
//
//   - An alarm needs an excursion: a request at which W stood at zero,
//     followed by an event, from where W = up = log(p1/p0). Stopping exp(W)
//     when it reaches e^h (success) or W falls back to zero (failure, where
//     exp(W) is still above e^down, down = log((1-p1)/(1-p0)), one request's
//     fall), optional stopping gives e^up >= e^h·P + e^down·(1-P), so an
//     excursion succeeds with probability P <= (e^up - e^down)/(e^h - e^down).
//   - Excursions start at most once per cycle: W at zero, a geometric wait
//     for an event (mean 1/p), then at least K = floor(up/|down|) requests
//     (53 at a 1% SLO) before W can be zero again. By Wald's identity and
//     Lorden's bound on a renewal process's excess (E[excess] <= E[X²]/E[X]),
//     there are on average at most S = (H+K)·p0/(1+K·p0) + 1 starts within
//     H requests (655 at a 1% SLO; counting every event, as v1 did, 1,000).
//
// By the union bound over excursions, P(CUSUM alarm within H) <= S·P, and
// NewSequential sets h so that this is the CUSUM's share of α: h = 13.18 for
// a 1% error SLO and 14.88 for latency at α = 0.01 (v1's cruder count and
// Ville's e^(up-h) gave 14.00 and 15.61). This holds for every p <= p0: a
// lower rate has fewer starts (S grows with p) and a supermartingale that
// can only do worse. Simulated, the bound is still far from tight (see
// TestSimChangeDetectorCalibration), but every step of it is a proof.
//
// W = max(0, W + llr) is monotone in W, so a CUSUM restarted at zero never
// stands above one that was not restarted, and a new leader that feeds the
// step's summed counts as one batch gets W = max(0, llr of the whole step so
// far), never more than the per-request CUSUM (the batch argument above):
// restarting the CUSUM, by Restart or by a change of leader in a fleet, can
// delay a rollback, never cause one.
//
// # Gates and the α split
//
// Alpha is split evenly between the error and the latency SLO (α/2 each),
// and each SLO's half evenly between its tests that may roll back, so that
// by a union bound they together roll back a canary meeting its SLO with
// probability at most α:
//
//   - error_rate, p95_latency: the step tests, α/4 each (log(4/α) = 5.99),
//     at any horizon.
//   - error_rate_change, p95_latency_change: the CUSUMs, α/4 each within H
//     requests of a step, growing by as much per further H requests.
//   - error_rate_vs_stable, p95_latency_vs_stable: the canary compared with
//     stable over the same batches. Given that a batch saw e events in all,
//     each is the canary's with probability π = nc·r/(nc·r + ns) when the
//     canary's rate is r times stable's; an SPRT of r = 2(1+m) against
//     r = 1+m (m = SLO.Margin, 50% by default) on these conditional
//     binomials. Its likelihood ratio is a supermartingale for r <= 1+m, so
//     it is anytime-valid as far as the conditional binomial holds: exactly
//     for Poisson counts, approximately for rare Bernoulli events, whose
//     odds ratio exceeds the rate ratio by the factor (1-ps)/(1-pc), under
//     5% at the rates an SLO allows (measured at the margin: 4.5% and 3.3%
//     of rollouts against a 5% share, see TestSimCompareRollback). With
//     SLO.Compare = CompareHold (the default, CANARY_COMPARE=hold) it is a
//     second line of evidence: a canary significantly worse than stable but
//     within its SLO is held (the plan does not advance), never rolled back,
//     at level α/2 (log(2/α) = 5.30). With CompareRollback it rolls such a
//     canary back, as rollback_error_rate or rollback_latency (the SLO
//     compared) with a reason naming the comparison; each SLO's α/2 is then split three ways,
//     α/6 for each of its step test, CUSUM and comparison (thresholds 6.40,
//     13.58 and 6.40 for errors), so that a canary that meets its SLO and is
//     not worse than stable by more than the margin is still rolled back
//     with probability at most α.
//   - min_requests: proceed needs at least MinRequests canary requests in
//     the step. A rollback needs no floor: the tests control their error.
//
// A rejection is final until Restart. The verdict is rollback_error_rate if
// an error gate failed (or, with CompareRollback, the error comparison),
// else rollback_latency if a latency gate failed (or the latency
// comparison), else hold below MinRequests, else hold if any gate holds or
// a comparison failed, else proceed. A step gate holds when the step's
// observed rate is above its SLO but the evidence is not yet conclusive; its
// Needed is the number of further requests that would conclude at the
// observed rate (the fewest any one mixture component needs).
//
// Hence, per step: a canary meeting its SLO (any p <= p0, also exactly at
// it) is rolled back within H requests with probability at most α (α/2 from
// the step tests, α/2 from the CUSUMs; with CompareRollback, and within the
// margin of stable, α/3 from each kind), growing by at most α/2 per further
// H requests, and by the step tests alone at most α/2 at any horizon.
//
// # A fleet
//
// Replicas sharing one rollout (a fleet) judge with SLO.FleetShares: the
// leader judges the replicas' summed counts with Alpha/2, each of R
// replicas judges its own with Alpha/(2R) and Horizon/R (its share of the
// fleet's requests), and any of them may roll the fleet back, a replica
// without waiting for the leader. By the union bound the fleet rolls back a
// canary meeting its SLO with probability at most α, as a single instance
// does. The leader gets half because it sees all the evidence; the
// replicas' shares are a safety net (a slow or absent leader, a store
// outage) and shrink with R, their step thresholds rising by log(R) (7.78
// at R = 3, 8.99 at R = 10). Their CUSUM thresholds equal the leader's (the
// horizon shrinks with the budget), so an uneven spread of traffic over the
// replicas does not break the CUSUMs' bound, which is linear in each
// replica's requests. Use one R for a whole step (e.g. the replicas at its
// start, or an upper bound): shares computed with different R may sum to
// more than α/2.
//
// To judge the fleet the leader builds one judge, Restarts it at the step's
// start (zero counts) and feeds it, every tick and whenever a replica
// publishes after a canary error, a proxy.Snapshot whose Canary.Totals and
// Stable.Totals are the replicas' summed counts since the step started. A
// replica leaving makes the sums fall: the judge keeps the evidence it has
// and counts from the new sums (as for any totals going backwards). A new
// leader does the same from the replicas' counts: the step tests resume
// exactly; the CUSUM and the comparison restart as above.
//
// # Measured
//
// TestSimRollouts (go test ./guard/judge -run Sim) runs 6,900 seeded
// rollouts of up to 100,000 canary requests through both judges at their
// defaults (1% error SLO, 500ms p95, MinRequests 100, α = 0.01): 50 canary
// requests per 1s tick, judged every tick and at once after each canary
// error (as the guard does), a 5-minute window of 15,000 canary requests,
// stable getting 9 requests per canary request at half the SLO. Rates are
// multiples of the SLO (errors, and the 5% slow share); a canary breaking
// one SLO keeps the other at half of it; detection is the number of canary
// requests at the rollback verdict (median and 90th percentile). The v1
// column is the same simulation, same seeds, run against v1 (commit
// 1fbb52c).
//
//	| canary (rollouts)                         | v1: one alternative                       | v2 (sequential)                | window                                     | target                       |
//	|-------------------------------------------|-------------------------------------------|--------------------------------|--------------------------------------------|------------------------------|
//	| good: 0.5x both SLOs (1000)               | false rollback 0.00%                      | false rollback 0.00%           | false rollback 41.10%                      | ≤ 0.1%                       |
//	| good: exactly at both SLOs (600)          | false rollback 0.33%                      | false rollback 0.17%           | false rollback 100.00%                     | ≤ α = 1%                     |
//	| errors 1.5x SLO (200)                     | median 28,738, p90 84,343 (42.50% missed) | median 6,654, p90 12,917       | median 106, p90 340                        | median ≤ 15,000, ≤ 5% missed |
//	| errors 2x SLO (200)                       | median 1,662, p90 6,110                   | median 1,636, p90 3,350        | median 100, p90 182                        | median ≤ 2,500               |
//	| errors 3x SLO (1000)                      | median 427, p90 903                       | median 449, p90 939            | median 100, p90 132                        | median ≤ 500                 |
//	| errors 10x SLO (500)                      | median 66, p90 114                        | median 51, p90 115             | median 100, p90 100                        | median ≤ 80                  |
//	| errors: total outage (500)                | median 6, p90 6                           | median 4, p90 4                | median 100, p90 100                        | ≤ 7                          |
//	| errors: 0.5x, then 3x after 10k (500)     | median 974, p90 1,617 after the change    | median 884, p90 1,443 after it | median 2,470 (37.0% rolled back before it) | median ≤ 1,000 after it      |
//	| slow share 1.5x SLO (200)                 | median 36,109, p90 84,000 (31.50% missed) | median 1,307, p90 2,615        | median 100, p90 137                        | median ≤ 15,000, ≤ 5% missed |
//	| slow share 2x SLO (200)                   | median 400, p90 1,528                     | median 300, p90 607            | median 100, p90 100                        | median ≤ 2,500               |
//	| slow share 3x SLO (500)                   | median 100, p90 200                       | median 83, p90 171             | median 100, p90 100                        | median ≤ 500                 |
//	| slow share 10x SLO (500)                  | median 50, p90 50                         | median 9, p90 18               | median 100, p90 100                        | median ≤ 80                  |
//	| slow share: every request slow (500)      | median 50, p90 50                         | median 4, p90 4                | median 100, p90 100                        | ≤ 7                          |
//	| slow share: 0.5x, then 3x after 10k (500) | median 250, p90 400 after the change      | median 201, p90 335 after it   | median 2,466 (46.0% rolled back before it) | median ≤ 1,000 after it      |
//
// Every target is met. The guard is woken at once by a failed or a slow
// canary request (the proxy signals both), so a canary whose every request
// is slow is rolled back on its 4th request, like a dead one. Latency
// otherwise needs fewer requests than errors: at a 5% slow share each
// request carries more information. The v1 column was measured when only a
// failed request woke the guard. The
// false rollbacks at the SLO are the step tests' (1 of 600 rollouts, bound
// 1%): the mixture's components near p0 come closer to Ville's bound than
// v1's single test did (TestSimStepTestIsAnytimeValid measures 3.5% against
// a 5% bound at α = 0.2). The late regressions are caught faster than in v1
// by the CUSUM's tighter calibration alone; the ratio to a from-start
// regression (884 against 449) is the price of not knowing when the change
// comes.
//
// With CompareRollback, a canary at 0.75% errors against stable's 0.25%
// (within its 1% SLO) is rolled back in a median of 4,290 canary requests
// (p90 8,984; TestSimCompareRollback).
//
// The fleet, TestSimFleet: the same service; R replicas each serving what
// the single instance serves (50 canary requests per second), round robin,
// so the fleet serves R times as much; every judge ticks once a second, and
// a canary error is judged at once by its replica and by the leader (which
// the replica's immediate publication allows); the same seeds for every
// column; requests counted fleet-wide.
//
//	| canary (rollouts of up to 100,000 fleet-wide canary requests) | single instance (α) | 1 replica | 3 replicas | 10 replicas |
//	|---|---|---|---|---|
//	| good: 0.5x both SLOs (100)         | false rollback 0.00% | false rollback 0.00% | false rollback 0.00% | false rollback 0.00% |
//	| good: exactly at both SLOs (400)   | false rollback 0.75% | false rollback 0.25% | false rollback 0.25% | false rollback 0.50% |
//	| errors 3x SLO (1000)               | median 432, p90 953  | median 465, p90 1,016 | median 473, p90 983 (a replica first in 3.7%) | median 494, p90 969 (a replica first in 0.4%) |
//	| errors: total outage (500)         | median 4, p90 4      | median 4, p90 4      | median 4, p90 4      | median 4, p90 4      |
//
// Three replicas need 1.09 times the fleet-wide canary requests a single
// instance needs to roll back a canary failing 3% of requests (target
// 1.3), ten replicas 1.14: the leader's threshold is log 2 higher, and it
// judges on the same evidence as one instance. Every false-rollback rate is
// at most α.
//
// # Cost
//
// Judge is O(1) in time and memory: a handful of additions, a dozen
// exponentials and logarithms, plus the gates' sentences. BenchmarkJudge:
// about 1.1µs and 4 allocations (1.3 KB: the gates, one string holding all
// their sentences, the reasons) per sequential judgement, 0.45µs and 6
// allocations per window judgement, on a 2-core machine.
package judge
