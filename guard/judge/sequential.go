package judge

import (
	"math"

	"github.com/canaryd/canaryd/proxy"
)

// sequential is the anytime-valid judge. It turns the growth of the
// cumulative totals between calls into evidence; see the package doc.
type sequential struct {
	slo SLO
	// seenCanary and seenStable are the totals already turned into
	// evidence.
	seenCanary, seenStable proxy.Totals

	errors, slow    sloTest
	errorVs, slowVs versusTest
	line            line // reused for sentences
}

// NewSequential returns the anytime-valid judge: per SLO, a mixture
// sequential probability ratio test over the step (anytime-valid), a CUSUM
// change detector for late regressions (calibrated within Horizon requests
// of a step at the SLO itself), and a comparison with stable that holds the
// plan, or with CompareRollback rolls the canary back. Alpha is shared by
// all the gates that can roll back (see the package doc).
func NewSequential(slo SLO) Judge {
	slo = slo.withDefaults()
	sloAlpha := slo.Alpha / 2 // the error and the latency SLO share the budget
	// Each SLO's half is split evenly between the tests that may roll
	// back: the step test and the CUSUM, and the comparison with
	// CompareRollback. In hold mode the comparison's error costs only
	// time, and it keeps the level it always had (sloAlpha).
	perTest, vsAlpha := sloAlpha/2, sloAlpha
	if slo.Compare == CompareRollback {
		perTest = sloAlpha / 3
		vsAlpha = perTest
	}
	rollback := slo.Compare == CompareRollback
	return &sequential{
		slo:     slo,
		errors:  newSLOTest(GateErrorRate, GateErrorRateChange, "failed", slo.ErrorRate, perTest, slo.Horizon),
		slow:    newSLOTest(GateP95Latency, GateP95LatencyChange, "slower than "+slo.P95.String(), SlowShare, perTest, slo.Horizon),
		errorVs: newVersusTest(GateErrorRateVsStable, "error rate", slo.Margin, vsAlpha, rollback),
		slowVs:  newVersusTest(GateP95LatencyVsStable, "share of slow requests", slo.Margin, vsAlpha, rollback),
	}
}

// Name is "sequential".
func (j *sequential) Name() string { return "sequential" }

// Restart forgets all evidence; requests counted after s are the new step's.
func (j *sequential) Restart(s proxy.Snapshot) {
	j.seenCanary, j.seenStable = s.Canary.Totals, s.Stable.Totals
	j.errors.reset()
	j.slow.reset()
	j.errorVs.reset()
	j.slowVs.reset()
}

// Judge adds the requests counted since the last call to the evidence and
// returns the verdict.
func (j *sequential) Judge(s proxy.Snapshot) Result {
	c, st := s.Canary.Totals, s.Stable.Totals
	if c.Requests < j.seenCanary.Requests || st.Requests < j.seenStable.Requests ||
		c.Errors < j.seenCanary.Errors || c.Slow < j.seenCanary.Slow ||
		st.Errors < j.seenStable.Errors || st.Slow < j.seenStable.Slow {
		// Totals went backwards: another source (a restarted process, or
		// a replica leaving a fleet's sum). Keep the evidence gathered so
		// far and count from here.
		j.seenCanary, j.seenStable = c, st
	}
	n, e, sl := advance(&j.seenCanary, c)
	sn, se, ssl := advance(&j.seenStable, st)
	j.errors.add(n, e)
	j.slow.add(n, sl)
	j.errorVs.add(n, e, sn, se)
	j.slowVs.add(n, sl, sn, ssl)
	return j.result()
}

// advance returns the requests, errors and slow requests counted between
// seen and cur and moves seen forward. Events are never counted ahead of
// their requests (totals read while a request completes may be torn); the
// excess is carried to the next call.
func advance(seen *proxy.Totals, cur proxy.Totals) (n, errs, slow uint64) {
	n = cur.Requests - seen.Requests
	errs = min(cur.Errors-seen.Errors, n)
	slow = min(cur.Slow-seen.Slow, n)
	seen.Requests += n
	seen.Errors += errs
	seen.Slow += slow
	return n, errs, slow
}

func (j *sequential) result() Result {
	n, l := j.errors.n, &j.line
	res := Result{Gates: make([]Gate, 7)}
	g := res.Gates
	minRequestsGate(l, &g[0], n, j.slo.MinRequests, "in this step")
	j.errors.gates(l, &g[1], &g[2])
	j.slow.gates(l, &g[3], &g[4])
	j.errorVs.gate(l, &g[5])
	j.slowVs.gate(l, &g[6])

	errFailed := j.errors.failed() || j.errorVs.rollsBack()
	slowFailed := j.slow.failed() || j.slowVs.rollsBack()
	var proceed string
	switch {
	case errFailed || slowFailed:
		res.Verdict = RollbackLatency
		if errFailed {
			res.Verdict = RollbackErrorRate
		}
	case n < j.slo.MinRequests:
		res.Verdict = Hold
	default:
		res.Verdict = Proceed
		for _, gt := range g[1:] {
			if gt.Verdict != GatePass {
				res.Verdict = Hold
			}
		}
		if res.Verdict == Proceed {
			l.s("no evidence against the SLO in ").n(n).s(" canary requests: ").
				pct(rate(j.errors.k, n)).s(" errors, ").pct(rate(j.slow.k, n)).s(" ").s(j.slow.events).into(&proceed)
		}
	}
	l.flush()

	switch res.Verdict {
	case RollbackErrorRate, RollbackLatency:
		for _, gt := range g[1:] {
			comparison := gt.Name == GateErrorRateVsStable || gt.Name == GateP95LatencyVsStable
			if gt.Verdict == GateFail && (!comparison || j.slo.Compare == CompareRollback) {
				res.Reasons = append(res.Reasons, gt.Detail)
			}
		}
	case Proceed:
		res.Reasons = []string{proceed}
	default:
		if n < j.slo.MinRequests {
			res.Reasons = []string{g[0].Detail}
			break
		}
		for _, gt := range g[1:] {
			if gt.Verdict != GatePass {
				res.Reasons = append(res.Reasons, gt.Detail)
			}
		}
	}
	return res
}

// sloTest is one SLO's pair of tests: the step test, a mixture SPRT on the
// counts since Restart, and the CUSUM change detector on the fixed 3x
// alternative (the single-alternative SPRT restarted whenever it falls to
// zero). A rejection is final until Restart.
type sloTest struct {
	name, changeName, events string
	mix                      mixture   // the step test's statistic
	bern                     bernoulli // the CUSUM's per-request llr
	stepLimit, changeLimit   float64

	n, k         uint64  // requests and events since Restart: the step test's state
	step         float64 // log M(n, k), kept for the gates
	change       float64 // CUSUM statistic
	changeN      uint64  // requests since the CUSUM last stood at zero
	changeK      uint64  // events among them
	stepFailed   bool
	changeFailed bool
	failedAt     uint64 // n when the first rejection happened
}

// newSLOTest builds one SLO's tests, each with false-rollback budget
// budget: the step test may ever reject a canary meeting the SLO with
// probability at most budget (Ville), the CUSUM within horizon requests at
// most budget (see the package doc).
func newSLOTest(name, changeName, events string, p0, budget float64, horizon uint64) sloTest {
	b := newBernoulli(p0)
	stepLimit := math.Log(1 / budget)
	return sloTest{
		name: name, changeName: changeName, events: events, mix: newMixture(p0), bern: b,
		stepLimit:   stepLimit,
		changeLimit: math.Max(stepLimit, b.changeLimit(budget, horizon)),
	}
}

func (t *sloTest) reset() {
	*t = sloTest{name: t.name, changeName: t.changeName, events: t.events, mix: t.mix, bern: t.bern,
		stepLimit: t.stepLimit, changeLimit: t.changeLimit}
}

func (t *sloTest) failed() bool { return t.stepFailed || t.changeFailed }

// add counts k events among n requests. The step statistic is recomputed
// from the counts alone; the CUSUM takes the batch's likelihood ratio, the
// product over its requests, and is reflected at zero only at batch ends,
// which can only keep it lower than the per-request CUSUM.
func (t *sloTest) add(n, k uint64) {
	if n == 0 {
		return
	}
	l := t.bern.llr(n, k)
	t.n += n
	t.k += k
	t.step = t.mix.logLR(t.n, t.k)
	if t.change+l <= 0 {
		t.change, t.changeN, t.changeK = 0, 0, 0
	} else {
		t.change += l
		t.changeN += n
		t.changeK += k
	}
	if t.failed() {
		return
	}
	t.stepFailed = t.step >= t.stepLimit
	t.changeFailed = t.change >= t.changeLimit
	if t.failed() {
		t.failedAt = t.n
	}
}

// gates explains both tests in step and change; Value, Threshold and
// Samples carry the numbers, Detail says what they mean.
func (t *sloTest) gates(l *line, step, change *Gate) {
	p := rate(t.k, t.n)
	*step = Gate{Name: t.name, Value: t.step, Threshold: t.stepLimit, Unit: "log_lr", Samples: t.n, Verdict: GatePass}
	l.n(t.k).s(" of ").n(t.n).s(" requests ").s(t.events).s(" (").pct(p).s(") since the step started; SLO ").pct(t.mix.p0)
	switch {
	case t.stepFailed:
		step.Verdict = GateFail
		l.s(": above the SLO, concluded after ").n(t.failedAt).s(" requests")
	case p > t.mix.p0:
		step.Verdict = GateHold
		l.s(": above the SLO but not yet conclusive")
		if step.Needed = t.mix.needed(t.n, t.k, p, t.stepLimit); step.Needed > 0 {
			l.s("; about ").n(step.Needed).s(" more at this rate would conclude")
		}
	default:
		l.s(": no evidence against the SLO")
	}
	l.into(&step.Detail)

	*change = Gate{Name: t.changeName, Value: t.change, Threshold: t.changeLimit, Unit: "log_lr", Samples: t.changeN, Verdict: GatePass}
	switch {
	case t.changeFailed:
		change.Verdict = GateFail
		l.s("regression: ")
	case t.changeN == 0:
		l.s("no recent excess of requests ").s(t.events).into(&change.Detail)
		return
	}
	l.n(t.changeK).s(" of the last ").n(t.changeN).s(" requests ").s(t.events).s(" (").pct(rate(t.changeK, t.changeN)).
		s("); SLO ").pct(t.bern.p0).into(&change.Detail)
}

// versusTest asks whether the canary's event rate exceeds stable's by more
// than the margin. Given that a batch saw e events in all, each is the
// canary's with probability π = nc·r/(nc·r + ns) when the canary's rate is r
// times stable's; the test is an SPRT of r = 2(1+m) against r = 1+m on those
// conditional binomials, anytime-valid for rare events (see the package
// doc).
type versusTest struct {
	name, what string
	boundary   float64 // 1 + margin
	limit      float64
	rollback   bool // CompareRollback: a rejection rolls back

	nc, kc, ns, ks uint64
	llr            float64
	failed         bool
}

func newVersusTest(name, what string, margin, alpha float64, rollback bool) versusTest {
	return versusTest{name: name, what: what, boundary: 1 + margin, limit: math.Log(1 / alpha), rollback: rollback}
}

func (t *versusTest) reset() {
	*t = versusTest{name: t.name, what: t.what, boundary: t.boundary, limit: t.limit, rollback: t.rollback}
}

// rollsBack reports whether the comparison concluded and may roll back.
func (t *versusTest) rollsBack() bool { return t.failed && t.rollback }

func (t *versusTest) add(nc, kc, ns, ks uint64) {
	t.nc += nc
	t.kc += kc
	t.ns += ns
	t.ks += ks
	if nc == 0 || ns == 0 || kc+ks == 0 {
		return // no comparison possible in this batch
	}
	w0 := float64(nc) * t.boundary
	w1 := 2 * w0
	pi0 := w0 / (w0 + float64(ns))
	pi1 := w1 / (w1 + float64(ns))
	t.llr += float64(kc)*math.Log(pi1/pi0) + float64(ks)*math.Log((1-pi1)/(1-pi0))
	if t.llr >= t.limit {
		t.failed = true
	}
}

func (t *versusTest) gate(l *line, g *Gate) {
	*g = Gate{Name: t.name, Value: t.llr, Threshold: t.limit, Unit: "log_lr", Samples: t.nc, Verdict: GatePass}
	l.s("canary ").s(t.what).s(" ").pct(rate(t.kc, t.nc)).s(" vs stable ").pct(rate(t.ks, t.ns))
	switch {
	case t.failed && t.rollback:
		g.Verdict = GateFail
		l.s(": significantly worse than stable by more than ").pct(t.boundary - 1).s("; rolling back (comparison mode rollback)")
	case t.failed:
		g.Verdict = GateFail
		l.s(": significantly worse than stable by more than ").pct(t.boundary - 1).s("; holding")
	default:
		l.s(": not significantly worse than stable by more than ").pct(t.boundary - 1)
	}
	l.into(&g.Detail)
}
