package judge

import (
	"errors"
	"fmt"
	"math"
	"strconv"
)

// Defaults for the zero values of SLO's optional fields.
const (
	// DefaultAlpha is the false-rollback budget used when SLO.Alpha is 0.
	DefaultAlpha = 0.01
	// DefaultMargin is the comparison gates' relative margin used when
	// SLO.Margin is 0: the canary may be up to 50% worse than stable.
	DefaultMargin = 0.5
	// DefaultHorizon is the change detectors' design horizon in canary
	// requests per step, used when SLO.Horizon is 0.
	DefaultHorizon = 100_000
)

// SlowShare is the largest share of requests that may be slower than
// SLO.P95 while the p95 still meets it: "p95 <= P95" is exactly "at most 5%
// of requests are slower than P95", so latency is judged on the proxy's exact
// count of slow requests, not on a histogram estimate.
const SlowShare = 0.05

// altFactor is how many times the SLO rate the fixed alternative of every
// likelihood ratio is: the rate the tests are most sensitive to (the SPRT is
// optimal there) and still fast for an outage, since every failed request
// multiplies the ratio by about altFactor.
const altFactor = 3

// minRate and maxRate keep a degenerate SLO rate (0 or 1) inside the open
// interval where a likelihood ratio is defined.
const (
	minRate = 1e-6
	maxRate = 1 - 1e-6
)

// ErrInvalidSLO is wrapped by SLO.Validate.
var ErrInvalidSLO = errors.New("invalid slo")

// Validate reports the first field of s a judge cannot work with. The
// constructors accept any SLO (clamping what is out of range); Validate is
// for configuration code that wants to refuse it instead.
func (s SLO) Validate() error {
	switch {
	case !(s.ErrorRate > 0 && s.ErrorRate < 1):
		return fmt.Errorf("%w: error rate %v must be between 0 and 1 (exclusive)", ErrInvalidSLO, s.ErrorRate)
	case s.P95 <= 0:
		return fmt.Errorf("%w: p95 %v must be positive", ErrInvalidSLO, s.P95)
	case s.Alpha < 0 || s.Alpha >= 0.5:
		return fmt.Errorf("%w: alpha %v must be in [0, 0.5) (0 means %v)", ErrInvalidSLO, s.Alpha, DefaultAlpha)
	case s.Margin < 0:
		return fmt.Errorf("%w: margin %v must not be negative", ErrInvalidSLO, s.Margin)
	}
	return nil
}

// withDefaults fills the zero values and clamps what a judge cannot use.
func (s SLO) withDefaults() SLO {
	if !(s.Alpha > 0 && s.Alpha < 0.5) {
		s.Alpha = DefaultAlpha
	}
	if !(s.Margin > 0) {
		s.Margin = DefaultMargin
	}
	if s.Horizon == 0 {
		s.Horizon = DefaultHorizon
	}
	s.ErrorRate = clampRate(s.ErrorRate)
	return s
}

func clampRate(p float64) float64 {
	if !(p >= minRate) { // also catches NaN
		return minRate
	}
	return math.Min(p, maxRate)
}

// bernoulli is the log likelihood ratio of "rate p1" against "rate p0" for
// one request that is (up) or is not (down) an event: an error, or a slow
// response.
type bernoulli struct {
	p0, p1   float64
	up, down float64
}

func newBernoulli(p0 float64) bernoulli {
	p0 = clampRate(p0)
	p1 := math.Min(altFactor*p0, p0+(1-p0)/2)
	return bernoulli{p0: p0, p1: p1, up: math.Log(p1 / p0), down: math.Log((1 - p1) / (1 - p0))}
}

// llr is the log likelihood ratio of k events among n requests.
func (b bernoulli) llr(n, k uint64) float64 {
	return float64(k)*b.up + float64(n-k)*b.down
}

// drift is the expected llr per request when the true rate is p.
func (b bernoulli) drift(p float64) float64 {
	return p*b.up + (1-p)*b.down
}

// changeLimit is the CUSUM threshold h for a gate with false-rollback budget
// budget over horizon requests (see the package doc). For a canary exactly
// at its SLO (p = p0) the likelihood ratio against p0 is a true likelihood
// ratio, so exp(llr) is a martingale (θ = 1). A CUSUM alarm needs a last
// request k at which the statistic stood at zero and the next request was
// an event; the excursion then starts at up and, by Ville's inequality,
// reaches h with probability at most exp(up - h) = (p1/p0)·exp(-h). There
// are at most horizon·p0 such starts on average, so
//
//	P(false alarm within horizon) <= horizon·p0·(p1/p0)·exp(-h) = horizon·p1·exp(-h),
//
// which equals budget at h = log(horizon·p1/budget). A lower rate p < p0
// only thins the events, which can only lower the statistic, so the bound
// holds for every canary that meets its SLO.
func (b bernoulli) changeLimit(budget float64, horizon uint64) float64 {
	return math.Log(float64(max(horizon, 1)) * b.p1 / budget)
}

// rate is k/n, 0 for n = 0.
func rate(k, n uint64) float64 {
	if n == 0 {
		return 0
	}
	return float64(k) / float64(n)
}

// line builds one human sentence in a reused buffer: the guard judges every
// second, the simulation millions of times, and the sentences are most of a
// judgement's cost.
type line struct{ b []byte }

// s appends text.
func (l *line) s(text string) *line { l.b = append(l.b, text...); return l }

// n appends a count.
func (l *line) n(v uint64) *line { l.b = strconv.AppendUint(l.b, v, 10); return l }

// f appends a number with two decimals, formatted as integers: strconv's
// float path was most of a judgement's cost.
func (l *line) f(v float64) *line {
	r := math.Round(v * 100)
	if math.IsNaN(r) || math.Abs(r) > 1e15 {
		l.b = strconv.AppendFloat(l.b, v, 'g', 6, 64)
		return l
	}
	c := int64(r)
	if c < 0 {
		l.b = append(l.b, '-')
		c = -c
	}
	l.b = strconv.AppendInt(l.b, c/100, 10)
	l.b = append(l.b, '.', byte('0'+c%100/10), byte('0'+c%10))
	return l
}

// pct appends a fraction as a percentage with two decimals.
func (l *line) pct(v float64) *line {
	l.f(100 * v)
	l.b = append(l.b, '%')
	return l
}

// done returns the sentence and empties the buffer.
func (l *line) done() string {
	text := string(l.b)
	l.b = l.b[:0]
	return text
}

// GateVerdict is what one gate concluded. It is shown as its text in JSON.
type GateVerdict string

// Gate verdicts (Gate.Verdict).
const (
	// GatePass: the gate found no evidence against the canary.
	GatePass GateVerdict = "pass"
	// GateHold: the gate needs more evidence before it can pass.
	GateHold GateVerdict = "hold"
	// GateFail: the gate concluded against the canary.
	GateFail GateVerdict = "fail"
)

// Gate names (Gate.Name).
const (
	// GateMinRequests: enough canary requests for a verdict other than hold.
	GateMinRequests = "min_requests"
	// GateErrorRate: the error rate against the SLO (window average, or the
	// step's sequential test).
	GateErrorRate = "error_rate"
	// GateErrorRateChange: the sequential judge's CUSUM on errors.
	GateErrorRateChange = "error_rate_change"
	// GateP95Latency: the share of requests slower than SLO.P95 against 5%.
	GateP95Latency = "p95_latency"
	// GateP95LatencyChange: the sequential judge's CUSUM on slow requests.
	GateP95LatencyChange = "p95_latency_change"
	// GateErrorRateVsStable: canary errors compared with stable's.
	GateErrorRateVsStable = "error_rate_vs_stable"
	// GateP95LatencyVsStable: canary slow requests compared with stable's.
	GateP95LatencyVsStable = "p95_latency_vs_stable"
)

// minRequestsGate reports whether n canary requests are enough for a
// verdict other than hold.
func minRequestsGate(l *line, n, min uint64, scope string) Gate {
	g := Gate{Name: GateMinRequests, Value: float64(n), Threshold: float64(min), Unit: "requests", Samples: n, Verdict: GatePass}
	l.n(n).s(" canary requests ").s(scope)
	if n < min {
		g.Verdict = GateHold
		g.Needed = min - n
		l.s("; ").n(min).s(" needed before a verdict")
	} else {
		l.s(" (at least ").n(min).s(")")
	}
	g.Detail = l.done()
	return g
}
