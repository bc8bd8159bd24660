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
// a total outage is rolled back after ⌈log(2/α)/log 3⌉ = 5 requests at
// α = 0.01 (the guard is woken by each canary error, so it judges each one).
//
// # Gates
//
// Each SLO has two gates on this statistic; Alpha is split evenly between the
// error and the latency SLO (α/2 each):
//
//   - error_rate, p95_latency: the sequential probability ratio test (SPRT)
//     of the whole step, S = sum of the log likelihood ratios since Restart,
//     rejecting when S >= log(2/α) = 5.30. For any true rate p <= p0,
//     exp(S) is a non-negative supermartingale starting at 1, so by Ville's
//     inequality the probability that it EVER reaches 2/α is at most α/2,
//     however often it is looked at. This is the anytime-valid guarantee:
//     a canary that meets its SLO is rolled back by these gates with
//     probability at most α per step.
//   - error_rate_change, p95_latency_change: Page's CUSUM on the same
//     statistic, W = max(0, W + llr), that is the SPRT restarted whenever its
//     evidence falls back to zero, rejecting at a higher threshold h (6.88
//     for a 1% error SLO, 7.78 for latency, at α = 0.01).
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
// rate (Lorden 1971 asymptotically, Moustakides 1986 exactly). The simulation confirms it: the late
// regression is caught in a median 431 requests after it begins, against
// 375 for a canary bad from the start (where the step SPRT, with its lower
// threshold, usually fires first).
//
// The price is that no change detector can promise "never" over an
// unbounded time: one that reacts within a bounded delay to a change at any
// moment must eventually fire on a long enough stretch of data sitting
// exactly at its SLO. Its threshold is therefore calibrated for a horizon
// H = SLO.Horizon canary requests per step (100,000 by default). A CUSUM
// alarm needs a start at some event k (only events raise it) from which the
// ratio climbs by h; for a true rate p = p0/2, exp(θ·llr) is a martingale for
// the θ solving p·(p1/p0)^θ + (1-p)·((1-p1)/(1-p0))^θ = 1 (θ ≈ 2), so by
// Ville and a union bound over the H·p expected starts,
//
//	P(false rollback within H requests) <= H·p·(p1/p0)^θ·exp(-θ·h),
//
// and h is set so that this, plus the step SPRT's (α/2)^θ at that rate,
// equals α/2. Hence the guarantees, per step and for both SLOs together:
//
//   - a canary meeting its SLO (any p <= p0) is rolled back by the step
//     SPRTs with probability at most α, at any horizon;
//   - a canary at half its SLO or better is rolled back by any gate within
//     H requests with probability at most α (growing linearly beyond H);
//   - a canary exactly at its SLO has no such bound from the change
//     detectors: it is rolled back in 42.5% of simulated 100,000-request
//     rollouts with both rates at their SLOs (the window judge: 100%), while
//     the step SPRT alone, at an error rate exactly at the SLO, crossed its
//     threshold in 2 of 400 rollouts of 20,000 requests (0.5%, its bound
//     α/2; TestSimStepTestIsAnytimeValid). This is the honest cost of
//     catching late regressions; with a long step, set the SLO with some
//     headroom above the rate the service normally runs at.
//
// Judging only at batch ends looks at a subset of the per-request checks,
// and the batch CUSUM (reflected at batch ends) never exceeds the
// per-request one, so batching can only lower these probabilities.
//
// # Measured
//
// TestSimRollouts (go test ./guard/judge -run Sim) runs 4,700 seeded
// rollouts of up to 100,000 canary requests through both judges at their
// defaults (1% error SLO, 500ms p95, MinRequests 100, α = 0.01): 50 canary
// requests per 1s tick, judged every tick and at once after each canary
// error (as the guard does), a 5-minute window of 15,000 canary requests,
// stable getting 9 requests per canary request at half the SLO. Rates are
// multiples of the SLO (errors and the 5% slow share); detection is the
// number of canary requests at the rollback verdict.
//
//	| canary (rollouts)                          | sequential                   | window                                                       |
//	|--------------------------------------------|------------------------------|--------------------------------------------------------------|
//	| good: 0.5x SLO (500)                       | false rollback 0.00%         | false rollback 37.40%                                        |
//	| good: exactly at SLO (200)                 | false rollback 42.50%        | false rollback 100.00%                                       |
//	| bad: 1.5x error SLO (500)                  | median 5669, p90 17602       | median 108, p90 360                                          |
//	| bad: 2x error SLO (500)                    | median 1192, p90 3432        | median 100, p90 177                                          |
//	| bad: 3x error SLO (1000)                   | median 375, p90 787          | median 100, p90 132                                          |
//	| bad: 10x error SLO (500)                   | median 57, p90 107           | median 100, p90 100                                          |
//	| bad: total outage (500)                    | median 5, p90 5              | median 100, p90 100                                          |
//	| bad: 3x slow share (500)                   | median 100, p90 200          | median 100, p90 100                                          |
//	| late: 0.5x, then 3x errors after 10k (500) | median 431, p90 858 after it | median 2498, p90 3257 after it (34.8% rolled back before it) |
//
// The window judge answers fast because it rolls back on noise: at half its
// SLO it falsely rolls back a third of good canaries, all of them at the SLO.
// The sequential judge meets the targets: at most 1% false rollbacks at half
// the SLO over 100,000 requests, a median of at most 600 requests at 3x, at
// most 10 for an outage.
//
// # Cost
//
// Judge is O(1) in time and memory: a handful of additions and logarithms
// plus the gates' sentences. BenchmarkJudge: about 2.5µs and 9 allocations
// (1.3 KB) per sequential judgement, 1.3µs and 6 allocations per window
// judgement, on a shared 2-core machine.
package judge
