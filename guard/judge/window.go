package judge

import (
	"github.com/canaryd/canaryd/proxy"
)

// window is the threshold judge: the sliding window's averages against the
// SLO. It keeps no state.
type window struct {
	slo SLO
}

// NewWindow returns the threshold judge: the window's error rate and p95
// compared with the SLO, given at least MinRequests canary requests.
//
// The p95 is judged as the share of window requests slower than SLO.P95
// (Stats.Slow), which is exactly "p95 > P95" without the histogram's
// rounding; the histogram's p95 is quoted in the gate's detail.
func NewWindow(slo SLO) Judge {
	return &window{slo: slo.withDefaults()}
}

// Name is "window".
func (w *window) Name() string { return "window" }

// Restart does nothing: the window judge keeps no evidence.
func (w *window) Restart(proxy.Snapshot) {}

// Judge compares the snapshot's canary window with the SLO.
func (w *window) Judge(s proxy.Snapshot) Result {
	c := &s.Canary
	n := c.Requests
	errs, slow := min(c.Errors, n), min(c.Slow, n)
	errRate, slowRate := rate(errs, n), rate(slow, n)
	enough := n >= w.slo.MinRequests

	minGate := minRequestsGate(n, w.slo.MinRequests, "in the window")
	errGate := Gate{
		Name: GateErrorRate, Value: errRate, Threshold: w.slo.ErrorRate, Unit: "ratio", Samples: n,
		Detail: count(errs) + " errors in " + count(n) + " window requests (" + pct(errRate) + "); SLO " + pct(w.slo.ErrorRate),
	}
	latGate := Gate{
		Name: GateP95Latency, Value: slowRate, Threshold: SlowShare, Unit: "ratio", Samples: n,
		Detail: count(slow) + " of " + count(n) + " window requests (" + pct(slowRate) + ") slower than " +
			w.slo.P95.String() + "; p95 meets the SLO while at most " + pct(SlowShare) + " are",
	}
	if len(c.Latency.Counts) > 0 && c.Latency.Count() > 0 {
		latGate.Detail += "; histogram p95 " + c.Latency.Quantile(0.95).String()
	}

	errBad, latBad := errRate > w.slo.ErrorRate, slowRate > SlowShare
	res := Result{Verdict: Proceed}
	switch {
	case !enough:
		errGate.Verdict, latGate.Verdict = gateHold, gateHold
		res.Verdict = Hold
		res.Reasons = []string{"only " + count(n) + " canary requests in the window; " + count(w.slo.MinRequests) + " needed before a verdict"}
	default:
		errGate.Verdict, latGate.Verdict = passFail(errBad), passFail(latBad)
		if errBad {
			res.Verdict = RollbackErrorRate
			res.Reasons = append(res.Reasons, "window error rate "+pct(errRate)+" exceeds the SLO "+pct(w.slo.ErrorRate))
		}
		if latBad {
			if !errBad {
				res.Verdict = RollbackLatency
			}
			res.Reasons = append(res.Reasons, pct(slowRate)+" of window requests slower than "+w.slo.P95.String()+": p95 exceeds the SLO")
		}
		if res.Verdict == Proceed {
			res.Reasons = []string{"window error rate " + pct(errRate) + " and " + pct(slowRate) + " slow requests over " + count(n) + " requests are within the SLO"}
		}
	}
	res.Gates = []Gate{minGate, errGate, latGate}
	return res
}

func passFail(bad bool) string {
	if bad {
		return gateFail
	}
	return gatePass
}
