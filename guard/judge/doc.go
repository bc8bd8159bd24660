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
// without inflating its false-alarm probability.
//
// # The statistic
//
// Each SLO is a rate: the error rate p0 = SLO.ErrorRate, and for latency the
// share of requests slower than SLO.P95, p0 = 5% ("p95 <= P95" is exactly
// "at most 5% of requests are slower than P95"). A request that is an event
// (failed, or slow) contributes log(p1/p0) to a log likelihood ratio, one
// that is not contributes log((1-p1)/(1-p0)), with the fixed alternative
// p1 = 3·p0 (at most halfway from p0 to 1). A batch contributes the sum over
// its requests, so the judge consumes the growth of proxy.Totals between
// calls. With p1 = 3·p0 the test is most efficient for a canary at three
// times its SLO, and every failed request multiplies the ratio by about 3, so
// a total outage is rolled back after ⌈log(4/α)/log 3⌉ = 6 requests at
// α = 0.01 (the guard is woken by each canary error, so it judges each one).
//
// # Gates
//
// Each SLO has two gates on this statistic. Alpha is split evenly between
// the error and the latency SLO (α/2 each), and each SLO's half again
// evenly between its two gates (α/4 each), so that by a union bound the
// four can together roll back a canary meeting its SLO with probability at
// most α, as DESIGN.md promises for CANARY_ALPHA:
//
//   - error_rate, p95_latency: the sequential probability ratio test (SPRT)
//     of the whole step, S = sum of the log likelihood ratios since Restart,
//     rejecting when S >= log(4/α) = 5.99. For any true rate p <= p0,
//     exp(S) is a non-negative supermartingale starting at 1, so by Ville's
//     inequality the probability that it EVER reaches 4/α is at most α/4,
//     however often it is looked at. This is the anytime-valid guarantee:
//     a canary that meets its SLO is rolled back by these gates with
//     probability at most α/2 per step, however long the step.
//   - error_rate_change, p95_latency_change: Page's CUSUM on the same
//     statistic, W = max(0, W + llr), that is the SPRT restarted whenever its
//     evidence falls back to zero, rejecting at a higher threshold h (14.00
//     for a 1% error SLO, 15.61 for latency, at α = 0.01; see below).
//   - error_rate_vs_stable, p95_latency_vs_stable: the canary compared with
//     stable over the same batches. Given that a batch saw k events in all,
//     each is the canary's with probability π = n_c·r/(n_c·r + n_s) when the
//     canary's rate is r times stable's; an SPRT of r = 2(1+m) against
//     r = 1+m (m = SLO.Margin, 50% by default) on these conditional
//     binomials, threshold log(2/α), anytime-valid for rare events. This is a
//     second line of evidence: a canary significantly worse than stable but
//     within its SLO is held (the plan does not advance), never rolled back.
//   - min_requests: proceed needs at least MinRequests canary requests in
//     the step. A rollback needs no floor: the tests control their error.
//
// A rejection is final until Restart. The verdict is rollback_error_rate if
// an error gate failed, else rollback_latency if a latency gate failed, else
// hold below MinRequests, else hold if any gate holds or a comparison
// failed, else proceed. An SPRT gate holds when the step's observed rate is
// above its SLO but the evidence is not yet conclusive; its Needed is the
// number of further requests that would conclude at the observed rate,
// (threshold - S) / (expected llr per request at that rate).
//
// # Late regressions: why CUSUM
//
// Restarting the SPRT at each step is not enough: a step can last for hours.
// While the canary is healthy the step SPRT drifts downwards (by 0.015 per
// request at half a 1% SLO), so after 10,000 good requests it stands near
// -150 and a regression to 3x SLO would need about 12,000 requests to climb
// back to the threshold. The CUSUM forgets good history: it never goes below
// zero, so its delay after a change is about h/KL (KL = 0.013 per request at
// 3x a 1% SLO) whether the change comes at the first request or the
// millionth, and it minimises the worst-case delay for a given false-alarm
// rate (Lorden 1971 asymptotically, Moustakides 1986 exactly).
//
// # Calibration: exactly at the SLO, within a horizon
//
// No change detector can promise "never" over an unbounded time: one that
// reacts within a bounded delay to a change at any moment must eventually
// fire on a long enough stretch of data sitting exactly at its SLO. Its
// threshold is therefore calibrated for a horizon H = SLO.Horizon canary
// requests per step (100,000 by default), at the worst rate that still meets
// the SLO, p = p0 itself. There the llr is a true log likelihood ratio, so
// exp(llr) is a martingale (the tilt θ is 1). A CUSUM alarm at request n
// needs a last request k < n at which W stood at zero and request k+1 was an
// event; from there W is the SPRT started at log(p1/p0), which by Ville
// reaches h with probability at most (p1/p0)·exp(-h). There are at most H·p0
// such starts on average, so
//
//	P(false rollback by the CUSUM within H requests) <= H·p1·exp(-h),
//
// and NewSequential sets h = log(H·p1/(α/4)) in closed form (14.00 and
// 15.61 above; at least the step threshold). A lower rate only removes
// events, which can only lower W, so this holds for every p <= p0.
// Hence, per step and for both SLOs together:
//
//   - a canary meeting its SLO (any p <= p0, also exactly at it) is rolled
//     back by any gate within H requests with probability at most α (α/2
//     from the step SPRTs, α/2 from the CUSUMs), growing by at most α/2
//     per further H requests;
//   - by the step SPRTs alone, at most α/2 at any horizon.
//
// The bound is a union bound, not an estimate, and conservative: simulated
// at the SLO, all four gates together falsely rolled back 0.33% of 100,000-
// request rollouts (bound 1%), and for error SLOs from 0.1% to 40% the error
// gates stayed below their bounds (TestSimChangeDetectorCalibration).
// Approximations that drop the union bound's slack (Siegmund's overshoot
// correction, the share of time W spends at zero) would lower h by about
// 1.3 and late detection by about 10%, but without a proof.
//
// The price, measured below: a late regression to 3x the SLO is caught in a
// median of 942 requests after it begins (p90 1,700), 2.2 times the 427 of
// a canary bad from the start, which the step SPRT, with its much lower
// threshold, catches. The ratio is about h/log(4/α) = 14.0/5.99: the
// change detector pays log(H·p1) for not knowing when the change comes.
// The alternative was measured too: with the CUSUM's alternative at 2x or
// 4x the SLO instead of 3x (each with its own calibrated h), the median
// delay after a change to 3x grew from about 944 to 1,187 and 961
// requests (the CUSUM alone, simulated per request), so 3x stays. The
// previous calibration (half the SLO, θ ≈ 2, h = 6.88) caught the late
// regression in 431 requests but rolled back 42.5% of canaries exactly at
// their SLO: it did not meet the contract.
//
// Judging only at batch ends looks at a subset of the per-request checks,
// and the batch CUSUM (reflected at batch ends) never exceeds the
// per-request one, so batching can only lower these probabilities.
//
// # Measured
//
// TestSimRollouts (go test ./guard/judge -run Sim) runs 4,300 seeded
// rollouts of up to 100,000 canary requests through both judges at their
// defaults (1% error SLO, 500ms p95, MinRequests 100, α = 0.01): 50 canary
// requests per 1s tick, judged every tick and at once after each canary
// error (as the guard does), a 5-minute window of 15,000 canary requests,
// stable getting 9 requests per canary request at half the SLO. Rates are
// multiples of the SLO (errors and the 5% slow share); detection is the
// number of canary requests at the rollback verdict.
//
//	| canary (rollouts)                          | sequential                                 | window                                                       |
//	|--------------------------------------------|--------------------------------------------|--------------------------------------------------------------|
//	| good: 0.5x SLO (400)                       | false rollback 0.00%                       | false rollback 35.00%                                        |
//	| good: exactly at SLO (600)                 | false rollback 0.33%                       | false rollback 100.00%                                       |
//	| bad: 1.5x error SLO (100)                  | median 36893, p90 85046 (43.00% missed)    | median 107, p90 359                                          |
//	| bad: 2x error SLO (200)                    | median 1662, p90 6110                      | median 100, p90 163                                          |
//	| bad: 3x error SLO (1000)                   | median 427, p90 903                        | median 100, p90 132                                          |
//	| bad: 10x error SLO (500)                   | median 66, p90 114                         | median 100, p90 100                                          |
//	| bad: total outage (500)                    | median 6, p90 6                            | median 100, p90 100                                          |
//	| bad: 3x slow share (500)                   | median 100, p90 200                        | median 100, p90 100                                          |
//	| late: 0.5x, then 3x errors after 10k (500) | median 942, p90 1700 after it              | median 2498, p90 3257 after it (34.8% rolled back before it) |
//
// The window judge answers fast because it rolls back on noise: at half its
// SLO it falsely rolls back a third of good canaries, all of them at the SLO.
// The sequential judge meets the targets: at most 1% false rollbacks at half
// the SLO and exactly at it over 100,000 requests, a median of at most 600
// requests at 3x, at most 10 for an outage, and every late regression caught
// (the test asks for a median within three times the from-start one, for
// the reason above). A canary at 1.5x its SLO is a hard case for both: the
// sequential judge needs tens of thousands of requests, or misses it within
// 100,000; the window judge "catches" it as fast as it rolls back good ones.
//
// # Cost
//
// Judge is O(1) in time and memory: a handful of additions and logarithms
// plus the gates' sentences. BenchmarkJudge: about 2.5µs and 9 allocations
// (1.3 KB) per sequential judgement, 1.3µs and 6 allocations per window
// judgement, on a shared 2-core machine.
package judge
