package judge

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/canaryd/canaryd/internal/rule"
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

// altFactor is how many times the SLO rate the change detector's fixed
// alternative is: the rate it is most sensitive to (a CUSUM is optimal at
// its alternative). Measured against 2x and 4x, 3x caught a late 3x
// regression fastest (see the package doc).
const altFactor = 3

// mixturePrior is the step test's mixture over the alternative: rates
// ratio·p0 (capped halfway from p0 to 1) with weights that sum to 1. It is
// a prior on how bad a bad release is, fixed before any data, and any fixed
// prior keeps the guarantee. Most of the mass sits at 3x, where the
// single-alternative test of v1 was tuned, so a 3x breach costs only
// log(1/0.6) = 0.51 more evidence than in v1; the rest catches a canary at
// 1.5x, 2x or 10x its SLO nearly as fast as a test tuned to it. Without a
// component beyond 10x a dead canary needs 4 failed requests, not 3: one
// more request buys some tolerance of a short burst of errors (see the
// package doc for the figures).
func mixturePrior() [4]struct{ ratio, weight float64 } {
	return [4]struct{ ratio, weight float64 }{
		{1.5, 0.10},
		{2, 0.15},
		{3, 0.60},
		{10, 0.15},
	}
}

// minRate and maxRate keep a degenerate SLO rate (0 or 1) inside the open
// interval where a likelihood ratio is defined.
const (
	minRate = 1e-6
	maxRate = 1 - 1e-6
)

// ErrInvalidSLO is wrapped by SLO.Validate.
var ErrInvalidSLO = errors.New("invalid slo")

// The rules of SLO's values, one function a value. Each checks a value set
// explicitly (zero included); SLO.Validate applies it, a zero Alpha or
// Margin meaning the default. canaryd calls the same functions on what its
// environment says, so a rule is written once, here.

// ValidateErrorRate checks SLO.ErrorRate: a fraction strictly between 0
// and 1.
func ValidateErrorRate(r float64) error {
	if !(r > 0 && r < 1) {
		return fmt.Errorf("%v must be a fraction between 0 and 1 (e.g. 0.01)", r)
	}
	return nil
}

// ValidateP95 checks SLO.P95: positive.
func ValidateP95(d time.Duration) error { return rule.Positive(d) }

// ValidateMinRequests checks SLO.MinRequests: at least 1, since a proceed
// verdict on no evidence at all advances a canary nobody has tried.
func ValidateMinRequests(n uint64) error { return rule.AtLeast(n, 1) }

// ValidateAlpha checks SLO.Alpha: a probability strictly between 0 and
// 0.5.
func ValidateAlpha(a float64) error {
	if !(a > 0 && a < 0.5) {
		return fmt.Errorf("%v must be a probability between 0 and 0.5 (e.g. 0.01)", a)
	}
	return nil
}

// ValidateMargin checks SLO.Margin: a positive, finite fraction.
func ValidateMargin(m float64) error {
	if !(m > 0) || math.IsInf(m, 1) {
		return fmt.Errorf("%v must be a positive fraction (e.g. 0.5 for 50%% worse than stable)", m)
	}
	return nil
}

// Validate reports the first field of s a judge cannot work with, wrapping
// ErrInvalidSLO. The constructors accept any SLO (clamping what is out of
// range); Validate is for configuration code that wants to refuse it
// instead.
func (s SLO) Validate() error {
	for _, f := range []struct {
		name string
		err  error
	}{
		{"error rate", ValidateErrorRate(s.ErrorRate)},
		{"p95", ValidateP95(s.P95)},
		{"min requests", ValidateMinRequests(s.MinRequests)},
		{"alpha", rule.IfSet(s.Alpha, ValidateAlpha)},
		{"margin", rule.IfSet(s.Margin, ValidateMargin)},
	} {
		if f.err != nil {
			return fmt.Errorf("%w: %s %w", ErrInvalidSLO, f.name, f.err)
		}
	}
	if s.Compare > CompareRollback {
		return fmt.Errorf("%w: comparison mode %d is neither hold nor rollback", ErrInvalidSLO, s.Compare)
	}
	return nil
}

// withDefaults fills the zero values and clamps what a judge cannot use.
func (s SLO) withDefaults() SLO {
	if !(s.Alpha > 0 && s.Alpha < 0.5) {
		s.Alpha = DefaultAlpha
	}
	if !(s.Margin > 0) || math.IsInf(s.Margin, 1) {
		s.Margin = DefaultMargin
	}
	if s.Compare > CompareRollback {
		s.Compare = CompareHold
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

func newBernoulli(p0 float64) bernoulli { return newBernoulliAt(p0, altFactor) }

// newBernoulliAt is the likelihood ratio of rate min(ratio·p0, halfway from
// p0 to 1) against p0.
func newBernoulliAt(p0, ratio float64) bernoulli {
	p0 = clampRate(p0)
	p1 := math.Min(ratio*p0, p0+(1-p0)/2)
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

// changeLimit is the CUSUM threshold h for a gate with false-rollback
// budget budget over horizon requests H (the argument in full is in the
// package doc, "Calibration"). At any rate p <= p0, exp(llr) is a
// non-negative supermartingale. A CUSUM alarm needs an excursion: a request
// at which W stood at zero followed by an event, from where W = up.
//
//   - One excursion reaches h before W falls back to zero with probability
//     at most (e^up - e^down)/(e^h - e^down): optional stopping of exp(W),
//     which ends at e^h or more on success and above e^down on failure.
//   - Excursions start at most once per cycle (zero, a geometric wait for an
//     event, then at least K = floor(up/|down|) requests to fall back), so
//     by Lorden's bound on a renewal process's excess there are on average
//     at most S = (H+K)·p0/(1+K·p0) + 1 starts within H requests.
//
// Hence P(alarm within H) <= S·(e^up - e^down)/(e^h - e^down), which equals
// budget at the h returned. Compared with counting every event as a start
// and using Ville's bound e^(up-h) (v1), h is about 0.8 lower at a 1% SLO.
func (b bernoulli) changeLimit(budget float64, horizon uint64) float64 {
	eUp, eDown := math.Exp(b.up), math.Exp(b.down)
	k := math.Floor(b.up / -b.down) // requests an excursion lasts at least
	starts := (float64(max(horizon, 1))+k)*b.p0/(1+k*b.p0) + 1
	return math.Log(eDown + starts*(eUp-eDown)/budget)
}

// mixture is the step test's statistic: the likelihood ratio of k events
// among n requests, averaged over the alternatives of mixturePrior,
//
//	M(n, k) = sum_i w_i · (p_i/p0)^k · ((1-p_i)/(1-p0))^(n-k),
//
// a function of the two counts alone, so that the sums of several
// replicas' counts can be judged as one stream (see the package doc).
type mixture struct {
	p0    float64
	comps [4]mixtureComponent
}

type mixtureComponent struct {
	bernoulli
	logWeight float64
}

func newMixture(p0 float64) mixture {
	m := mixture{p0: clampRate(p0)}
	for i, c := range mixturePrior() {
		m.comps[i] = mixtureComponent{bernoulli: newBernoulliAt(p0, c.ratio), logWeight: math.Log(c.weight)}
	}
	return m
}

// logLR is log M(n, k), computed as a log-sum-exp so that no term
// overflows (an outage drives one term to e^(2.3·n)).
func (m *mixture) logLR(n, k uint64) float64 {
	var terms [len(m.comps)]float64
	top := math.Inf(-1)
	for i := range m.comps {
		c := &m.comps[i]
		terms[i] = c.logWeight + c.llr(n, k)
		top = math.Max(top, terms[i])
	}
	var sum float64
	for _, t := range terms {
		sum += math.Exp(t - top)
	}
	return top + math.Log(sum)
}

// needed estimates how many more requests at rate p would take log M from
// its value at (n, k) to limit: the fewest that any one component needs,
// since the mixture is at least each weighted component. Zero if none
// gains evidence at p.
func (m *mixture) needed(n, k uint64, p, limit float64) uint64 {
	best := math.Inf(1)
	for i := range m.comps {
		c := &m.comps[i]
		if d := c.drift(p); d > 0 {
			best = math.Min(best, (limit-c.logWeight-c.llr(n, k))/d)
		}
	}
	if math.IsInf(best, 1) || best <= 0 {
		return 0
	}
	return uint64(math.Ceil(best))
}

// rate is k/n, 0 for n = 0.
func rate(k, n uint64) float64 {
	if n == 0 {
		return 0
	}
	return float64(k) / float64(n)
}

// line builds a judgement's sentences in one reused buffer and turns them
// into strings with a single conversion (flush): the guard judges every
// second, the simulation millions of times, and the sentences are most of a
// judgement's cost.
type line struct {
	b       []byte
	from    int        // where the current sentence starts in b
	pending []sentence // finished sentences, stored by flush
}

// sentence is a finished sentence, b[from:to], and where flush stores it.
type sentence struct {
	dst      *string
	from, to int
}

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

// into ends the current sentence; flush stores it in *dst, which must stay
// where it is until then.
func (l *line) into(dst *string) {
	l.pending = append(l.pending, sentence{dst: dst, from: l.from, to: len(l.b)})
	l.from = len(l.b)
}

// flush stores every finished sentence, all sharing one string, and empties
// the line, keeping its memory but no pointer into the result.
func (l *line) flush() {
	text := string(l.b)
	for _, p := range l.pending {
		*p.dst = text[p.from:p.to]
	}
	clear(l.pending)
	l.b, l.from, l.pending = l.b[:0], 0, l.pending[:0]
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

// minRequestsGate reports in g whether n canary requests are enough for a
// verdict other than hold.
func minRequestsGate(l *line, g *Gate, n, min uint64, scope string) {
	*g = Gate{Name: GateMinRequests, Value: float64(n), Threshold: float64(min), Unit: "requests", Samples: n, Verdict: GatePass}
	l.n(n).s(" canary requests ").s(scope)
	if n < min {
		g.Verdict = GateHold
		g.Needed = min - n
		l.s("; ").n(min).s(" needed before a verdict")
	} else {
		l.s(" (at least ").n(min).s(")")
	}
	l.into(&g.Detail)
}
