package judge

import (
	"time"

	"github.com/canaryd/canaryd/proxy"
)

// window is the threshold judge: the sliding window's averages against the
// SLO. Its only memory is where the evidence starts: after Restart it judges
// just the requests since then until the window has slid past that moment,
// so a reset is not rolled straight back by the failures that caused it.
type window struct {
	slo  SLO
	p95  string // slo.P95, formatted once
	line line   // reused for sentences

	restartAt time.Time    // zero: never restarted
	base      proxy.Totals // canary totals at restartAt
}

// NewWindow returns the threshold judge: the window's error rate and p95
// compared with the SLO, given at least MinRequests canary requests.
//
// The p95 is judged as the share of window requests slower than SLO.P95
// (Stats.Slow), which is exactly "p95 > P95" without the histogram's
// rounding; the histogram's p95 is quoted in the gate's detail.
func NewWindow(slo SLO) Judge {
	slo = slo.withDefaults()
	return &window{slo: slo, p95: slo.P95.String()}
}

// Name is "window".
func (w *window) Name() string { return "window" }

// Restart makes the judge ignore the requests before s until the window has
// slid past it.
func (w *window) Restart(s proxy.Snapshot) {
	w.restartAt, w.base = s.At, s.Canary.Totals
}

// Judge compares the snapshot's canary window with the SLO.
func (w *window) Judge(s proxy.Snapshot) Result {
	c := &s.Canary
	n, errs, slow := c.Requests, c.Errors, c.Slow
	if !w.restartAt.IsZero() && s.At.Sub(w.restartAt) < s.Window {
		// The window still reaches back before the restart: count only the
		// requests since (cumulative totals are exact).
		n = c.Totals.Requests - min(w.base.Requests, c.Totals.Requests)
		errs = c.Totals.Errors - min(w.base.Errors, c.Totals.Errors)
		slow = c.Totals.Slow - min(w.base.Slow, c.Totals.Slow)
	}
	errs, slow = min(errs, n), min(slow, n)
	errRate, slowRate := rate(errs, n), rate(slow, n)
	enough := n >= w.slo.MinRequests

	l := &w.line
	res := Result{Verdict: Proceed, Gates: make([]Gate, 3)}
	minGate, errGate, latGate := &res.Gates[0], &res.Gates[1], &res.Gates[2]
	minRequestsGate(l, minGate, n, w.slo.MinRequests, "in the window")
	*errGate = Gate{Name: GateErrorRate, Value: errRate, Threshold: w.slo.ErrorRate, Unit: "ratio", Samples: n}
	l.n(errs).s(" errors in ").n(n).s(" window requests (").pct(errRate).s("); SLO ").pct(w.slo.ErrorRate).into(&errGate.Detail)
	*latGate = Gate{Name: GateP95Latency, Value: slowRate, Threshold: SlowShare, Unit: "ratio", Samples: n}
	l.n(slow).s(" of ").n(n).s(" window requests (").pct(slowRate).s(") slower than ").s(w.p95).
		s("; p95 meets the SLO while at most ").pct(SlowShare).s(" are")
	if len(c.Latency.Counts) > 0 && c.Latency.Count() > 0 {
		l.s("; histogram p95 ").s(c.Latency.Quantile(0.95).String())
	}
	l.into(&latGate.Detail)

	errBad, latBad := errRate > w.slo.ErrorRate, slowRate > SlowShare
	var errReason, latReason, proceed string
	switch {
	case !enough:
		errGate.Verdict, latGate.Verdict = GateHold, GateHold
		res.Verdict = Hold
	default:
		errGate.Verdict, latGate.Verdict = passFail(errBad), passFail(latBad)
		if errBad {
			res.Verdict = RollbackErrorRate
			l.s("window error rate ").pct(errRate).s(" exceeds the SLO ").pct(w.slo.ErrorRate).into(&errReason)
		}
		if latBad {
			if !errBad {
				res.Verdict = RollbackLatency
			}
			l.pct(slowRate).s(" of window requests slower than ").s(w.p95).s(": p95 exceeds the SLO").into(&latReason)
		}
		if res.Verdict == Proceed {
			l.s("window error rate ").pct(errRate).s(" and ").pct(slowRate).s(" slow requests over ").n(n).s(" requests are within the SLO").into(&proceed)
		}
	}
	l.flush()
	switch {
	case !enough:
		res.Reasons = []string{minGate.Detail}
	case res.Verdict == Proceed:
		res.Reasons = []string{proceed}
	default:
		for _, r := range []string{errReason, latReason} {
			if r != "" {
				res.Reasons = append(res.Reasons, r)
			}
		}
	}
	return res
}

func passFail(bad bool) GateVerdict {
	if bad {
		return GateFail
	}
	return GatePass
}
