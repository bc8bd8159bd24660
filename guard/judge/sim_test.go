package judge_test

import (
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/canaryd/canaryd/guard/judge"
	"github.com/canaryd/canaryd/proxy"
)

// simOut keeps the simulation's markdown table: go test ./guard/judge -run
// Sim -sim.out /tmp/sim.md.
var simOut = flag.String("sim.out", "", "also write the simulation table to this file")

// The simulated service: the defaults of DESIGN.md, a canary getting 10% of
// the traffic at 50 canary requests per second.
const (
	simErrorSLO  = 0.01
	simBatch     = 50     // canary requests per guard tick (1s at 50 req/s)
	simWindow    = 15_000 // canary requests in the 5m window at 50 req/s
	simStableX   = 9      // stable requests per canary request (10% weight)
	simMax       = 100_000
	simLateStart = 10_000
	simSeed      = 20220814 // KDD 2022
)

func simSLO() judge.SLO {
	return judge.SLO{ErrorRate: simErrorSLO, P95: 500 * time.Millisecond, MinRequests: 100, Alpha: 0.01}
}

// scenario is one kind of canary. Rates are multiples of the SLO: of the
// error rate for errors, of the 5% allowed above P95 for slow requests. A
// late scenario switches to the late rates after simLateStart requests.
type scenario struct {
	name              string
	err, slow         float64
	lateErr, lateSlow float64
	late              bool
	good              bool
	rollouts          int
	wantVerdict       judge.Verdict
}

// outcome is one judge's fate in one rollout.
type outcome struct {
	verdict judge.Verdict // Hold if it never rolled back
	at      uint64        // canary requests at the rollback (after the change for late scenarios)
	early   bool          // rolled back before a late regression began
}

// simScenarios lists the canaries simulated; -short simulates a fifth of the
// rollouts.
func simScenarios() []scenario {
	scs := []scenario{
		{name: "good: 0.5x SLO", err: 0.5, slow: 0.5, good: true, rollouts: 400},
		{name: "good: exactly at SLO", err: 1, slow: 1, good: true, rollouts: 600},
		{name: "bad: 1.5x error SLO", err: 1.5, slow: 0.5, rollouts: 100, wantVerdict: judge.RollbackErrorRate},
		{name: "bad: 2x error SLO", err: 2, slow: 0.5, rollouts: 200, wantVerdict: judge.RollbackErrorRate},
		{name: "bad: 3x error SLO", err: 3, slow: 0.5, rollouts: 1000, wantVerdict: judge.RollbackErrorRate},
		{name: "bad: 10x error SLO", err: 10, slow: 0.5, rollouts: 500, wantVerdict: judge.RollbackErrorRate},
		{name: "bad: total outage", err: 1 / simErrorSLO, slow: 0.5, rollouts: 500, wantVerdict: judge.RollbackErrorRate},
		{name: "bad: 3x slow share (p95 over SLO)", err: 0.5, slow: 3, rollouts: 500, wantVerdict: judge.RollbackLatency},
		{name: "late: 0.5x then 3x errors after 10k", err: 0.5, slow: 0.5, late: true, lateErr: 3, lateSlow: 0.5, rollouts: 500, wantVerdict: judge.RollbackErrorRate},
	}
	if testing.Short() {
		for i := range scs {
			scs[i].rollouts /= 5
		}
	}
	return scs
}

// stream draws request outcomes as gaps between events (geometric), so a
// rollout costs time per event and per judgement, not per request.
type stream struct {
	rng  *rand.Rand
	p    float64
	logq float64 // log(1-p)
	next uint64  // index (1-based) of the next event
}

func (s *stream) reset(from uint64, p float64) {
	s.p, s.logq = p, math.Log1p(-p)
	s.next = from + s.gap()
}

func (s *stream) gap() uint64 {
	switch {
	case s.p >= 1:
		return 1
	case s.p <= 0:
		return math.MaxUint64 / 2
	}
	return 1 + uint64(math.Log(1-s.rng.Float64())/s.logq)
}

// count returns how many events fall in (.., upTo] and advances.
func (s *stream) count(upTo uint64) uint64 {
	var k uint64
	for s.next <= upTo {
		k++
		s.next += s.gap()
	}
	return k
}

type checkpoint struct{ n, errs, slow uint64 }

// simulate runs one rollout against both judges, judging every simBatch
// canary requests and at once after every canary error (as the guard does),
// until both rolled back or simMax canary requests.
func simulate(sc scenario, rng *rand.Rand) (seq, win outcome) {
	slo := simSLO()
	judges := []judge.Judge{judge.NewSequential(slo), judge.NewWindow(slo)}
	outs := []outcome{{verdict: judge.Hold}, {verdict: judge.Hold}}
	done := []bool{false, false}
	judges[0].Restart(proxy.Snapshot{})

	errRate := func(m float64) float64 { return math.Min(1, m*simErrorSLO) }
	slowRate := func(m float64) float64 { return math.Min(1, m*judge.SlowShare) }
	errs := stream{rng: rng}
	slow := stream{rng: rng}
	sErrs := stream{rng: rng}
	sSlow := stream{rng: rng}
	errs.reset(0, errRate(sc.err))
	slow.reset(0, slowRate(sc.slow))
	sErrs.reset(0, errRate(0.5))
	sSlow.reset(0, slowRate(0.5))

	ring := make([]checkpoint, simWindow/simBatch+2)
	var n, e, sl, se, ssl uint64
	for n < simMax && !(done[0] && done[1]) {
		target := min((n/simBatch+1)*simBatch, errs.next, simMax)
		if sc.late && n < simLateStart && target > simLateStart {
			target = simLateStart
		}
		e += errs.count(target)
		sl += slow.count(target)
		se += sErrs.count(target * simStableX)
		ssl += sSlow.count(target * simStableX)
		n = target
		if sc.late && n == simLateStart {
			errs.reset(n, errRate(sc.lateErr))
			slow.reset(n, slowRate(sc.lateSlow))
		}
		if n%simBatch == 0 {
			ring[(n/simBatch)%uint64(len(ring))] = checkpoint{n, e, sl}
		}
		var base checkpoint
		if n > simWindow {
			base = ring[((n-simWindow)/simBatch)%uint64(len(ring))]
		}
		snap := proxy.Snapshot{
			Window: 5 * time.Minute,
			Canary: proxy.Stats{
				Requests: n - base.n, Errors: e - base.errs, Slow: sl - base.slow,
				Totals: proxy.Totals{Requests: n, Errors: e, Slow: sl},
			},
			Stable: proxy.Stats{Totals: proxy.Totals{Requests: n * simStableX, Errors: se, Slow: ssl}},
		}
		for i, j := range judges {
			if done[i] {
				continue
			}
			v := j.Judge(snap).Verdict
			if v != judge.RollbackErrorRate && v != judge.RollbackLatency {
				continue
			}
			done[i] = true
			outs[i] = outcome{verdict: v, at: n}
			if sc.late {
				outs[i].early = n <= simLateStart
				if !outs[i].early {
					outs[i].at = n - simLateStart
				}
			}
		}
	}
	return outs[0], outs[1]
}

// summary is one judge's figures over a scenario's rollouts.
type summary struct {
	rollbacks, early, wrongKind int
	sizes                       []uint64
}

func (s summary) quantile(q float64) uint64 {
	if len(s.sizes) == 0 {
		return 0
	}
	i := int(math.Ceil(q*float64(len(s.sizes)))) - 1
	return s.sizes[max(i, 0)]
}

func summarise(sc scenario, outs []outcome) summary {
	var s summary
	for _, o := range outs {
		switch {
		case o.verdict == judge.Hold:
		case o.early:
			s.early++
		default:
			s.rollbacks++
			s.sizes = append(s.sizes, o.at)
			if sc.wantVerdict != "" && o.verdict != sc.wantVerdict {
				s.wrongKind++
			}
		}
	}
	slices.Sort(s.sizes)
	return s
}

func runScenario(sc scenario, idx int) (seq, win summary) {
	seqOut := make([]outcome, sc.rollouts)
	winOut := make([]outcome, sc.rollouts)
	var wg sync.WaitGroup
	workers := runtime.GOMAXPROCS(0)
	for w := range workers {
		wg.Go(func() {
			for i := w; i < sc.rollouts; i += workers {
				rng := rand.New(rand.NewPCG(simSeed, uint64(idx)<<32|uint64(i)))
				seqOut[i], winOut[i] = simulate(sc, rng)
			}
		})
	}
	wg.Wait()
	return summarise(sc, seqOut), summarise(sc, winOut)
}

func cell(sc scenario, s summary) string {
	pctOf := func(k int) string { return fmt.Sprintf("%.2f%%", 100*float64(k)/float64(sc.rollouts)) }
	switch {
	case sc.good:
		return "false rollback " + pctOf(s.rollbacks)
	case sc.late:
		return fmt.Sprintf("median %d, p90 %d after the change (%s missed; %s rolled back before it)",
			s.quantile(0.5), s.quantile(0.9), pctOf(sc.rollouts-s.rollbacks-s.early), pctOf(s.early))
	}
	missed := ""
	if s.rollbacks < sc.rollouts {
		missed = fmt.Sprintf(" (%s missed)", pctOf(sc.rollouts-s.rollbacks))
	}
	return fmt.Sprintf("median %d, p90 %d%s", s.quantile(0.5), s.quantile(0.9), missed)
}

// TestSimRollouts runs thousands of simulated rollouts through both judges
// and checks the sequential judge's targets (see the package doc for the
// table it prints).
func TestSimRollouts(t *testing.T) {
	// Millions of judgements allocate a lot of short-lived garbage over a
	// tiny live heap; collecting less often halves the test's run time.
	defer debug.SetGCPercent(debug.SetGCPercent(1000))
	start := time.Now()
	scs := simScenarios()
	total := 0
	for _, sc := range scs {
		total += sc.rollouts
	}
	var table strings.Builder
	fmt.Fprintf(&table, "| canary (%d rollouts of up to %d canary requests, judged every %d requests and after each error) | sequential | window (%d-request window) |\n|---|---|---|\n",
		total, simMax, simBatch, simWindow)
	type result struct {
		sc       scenario
		seq, win summary
	}
	results := map[string]result{}
	for i, sc := range scs {
		seq, win := runScenario(sc, i)
		results[sc.name] = result{sc, seq, win}
		fmt.Fprintf(&table, "| %s (%d) | %s | %s |\n", sc.name, sc.rollouts, cell(sc, seq), cell(sc, win))
		if seq.wrongKind > 0 {
			t.Errorf("%s: sequential judge gave the wrong rollback reason %d times; want %s", sc.name, seq.wrongKind, sc.wantVerdict)
		}
	}
	out := table.String()
	t.Logf("simulation in %v:\n%s", time.Since(start).Round(time.Millisecond), out)
	path := filepath.Join(t.TempDir(), "sim.md")
	if *simOut != "" {
		path = *simOut
	}
	if err := os.WriteFile(path, []byte(out), 0o644); err != nil {
		t.Fatal(err)
	}

	// The targets of the issue, for the sequential judge.
	// DESIGN.md: CANARY_ALPHA (1%) bounds the false rollbacks of any canary
	// that meets its SLO, including one exactly at it.
	for _, name := range []string{"good: 0.5x SLO", "good: exactly at SLO"} {
		if r := results[name]; float64(r.seq.rollbacks) > simSLO().Alpha*float64(r.sc.rollouts) {
			t.Errorf("sequential false rollbacks, %s: %d of %d; want <= %.0f%%", name, r.seq.rollbacks, r.sc.rollouts, 100*simSLO().Alpha)
		}
	}
	if m := results["bad: 3x error SLO"].seq.quantile(0.5); m == 0 || m > 600 {
		t.Errorf("sequential median detection at 3x error SLO = %d requests; want 1..600", m)
	}
	if r := results["bad: total outage"]; len(r.seq.sizes) != r.sc.rollouts || r.seq.quantile(1) > 10 {
		t.Errorf("sequential outage detection: %d of %d detected, worst after %d requests; want all within 10",
			len(r.seq.sizes), r.sc.rollouts, r.seq.quantile(1))
	}
	late, fresh := results["late: 0.5x then 3x errors after 10k"].seq, results["bad: 3x error SLO"].seq
	// A change detector that may not false-alarm at the SLO over Horizon
	// requests needs a threshold about log(Horizon·p1) above the step
	// test's (14.0 against 5.99 here), so its delay is about 2.3 times the
	// step test's; three times leaves room for the noise (see the package
	// doc).
	if late.quantile(0.5) == 0 || late.quantile(0.5) > 3*fresh.quantile(0.5) || late.rollbacks != results["late: 0.5x then 3x errors after 10k"].sc.rollouts {
		t.Errorf("sequential late regression: %d detected, median %d requests after the change; want all, within three times the from-start median %d",
			late.rollbacks, late.quantile(0.5), fresh.quantile(0.5))
	}
	if r := results["bad: 3x slow share (p95 over SLO)"]; r.seq.rollbacks != r.sc.rollouts {
		t.Errorf("sequential latency regression detected in %d of %d rollouts; want all", r.seq.rollbacks, r.sc.rollouts)
	}
	// And the reason for the issue: the window judge is worse on good canaries.
	if r := results["good: 0.5x SLO"]; r.win.rollbacks <= r.seq.rollbacks {
		t.Errorf("window judge false rollbacks at 0.5x SLO (%d) not above the sequential judge's (%d): the simulation no longer shows the problem",
			r.win.rollbacks, r.seq.rollbacks)
	}
}

// TestSimStepTestIsAnytimeValid checks the anytime guarantee where it is
// tightest, a canary exactly at its SLO: however often it is judged, the
// step SPRT's statistic (the error_rate gate's Value) may reach its threshold
// in at most α/4 of the rollouts (each SLO's step test gets half of that
// SLO's α/2). The CUSUM gate is left out: its guarantee holds within Horizon
// (TestSimChangeDetectorCalibration).
func TestSimStepTestIsAnytimeValid(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(1000)) // as in TestSimRollouts
	rollouts, requests := 400, uint64(20_000)
	if testing.Short() {
		rollouts = 100
	}
	slo := simSLO()
	crossed := 0
	for i := range rollouts {
		rng := rand.New(rand.NewPCG(simSeed, 1<<40|uint64(i)))
		errs := stream{rng: rng}
		errs.reset(0, simErrorSLO)
		j := judge.NewSequential(slo)
		var s proxy.Snapshot
		for s.Canary.Totals.Requests < requests {
			n := min((s.Canary.Totals.Requests/simBatch+1)*simBatch, errs.next) // every tick and every error
			s.Canary.Totals.Errors += errs.count(n)
			s.Canary.Totals.Requests = n
			s.Stable.Totals.Requests = n * simStableX
			r := j.Judge(s)
			if g := r.Gates[1]; g.Name != judge.GateErrorRate {
				t.Fatalf("gate 1 is %s; want %s", g.Name, judge.GateErrorRate)
			} else if g.Value >= g.Threshold {
				crossed++
				break
			}
		}
	}
	alpha := slo.Alpha / 4
	t.Logf("step SPRT at exactly the SLO crossed its threshold in %d of %d rollouts of %d requests (bound %.2f%%)", crossed, rollouts, requests, 100*alpha)
	if float64(crossed) > 3*alpha*float64(rollouts)+1 {
		t.Errorf("step SPRT crossed in %d of %d rollouts at the SLO; Ville bounds it at %.1f%%", crossed, rollouts, 100*alpha)
	}
}

// TestSimChangeDetectorCalibration checks the change detector's threshold
// for other SLO rates than the default: a canary exactly at its error SLO,
// judged after every error (which is the per-request CUSUM exactly), is
// rolled back by the error_rate_change gate within Horizon requests in at
// most α/4 of the rollouts, and by either error gate in at most α/2. α is
// large here so that a few hundred rollouts can tell.
func TestSimChangeDetectorCalibration(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(1000)) // as in TestSimRollouts
	const alpha, events = 0.1, 400                     // events expected within the horizon
	rollouts := 200
	if testing.Short() {
		rollouts = 60
	}
	for ti, p0 := range []float64{0.001, 0.01, 0.1, 0.4} {
		t.Run(fmt.Sprint(p0), func(t *testing.T) {
			slo := judge.SLO{ErrorRate: p0, P95: time.Second, MinRequests: 100, Alpha: alpha, Horizon: uint64(events / p0)}
			change := make([]bool, rollouts)
			any := make([]bool, rollouts)
			var wg sync.WaitGroup
			workers := runtime.GOMAXPROCS(0)
			for w := range workers {
				wg.Go(func() {
					for i := w; i < rollouts; i += workers {
						rng := rand.New(rand.NewPCG(simSeed, 2<<40|uint64(ti)<<32|uint64(i)))
						errs := stream{rng: rng}
						errs.reset(0, p0)
						j := judge.NewSequential(slo)
						var s proxy.Snapshot
						for errs.next <= slo.Horizon {
							s.Canary.Totals.Requests = errs.next
							s.Canary.Totals.Errors += errs.count(errs.next)
							s.Stable.Totals.Requests = s.Canary.Totals.Requests * simStableX
							r := j.Judge(s)
							if r.Verdict == judge.RollbackErrorRate {
								any[i] = true
								change[i] = r.Gates[2].Name == judge.GateErrorRateChange && r.Gates[2].Verdict == judge.GateFail
								break
							}
						}
					}
				})
			}
			wg.Wait()
			nChange, nAny := 0, 0
			for i := range rollouts {
				if change[i] {
					nChange++
				}
				if any[i] {
					nAny++
				}
			}
			t.Logf("error SLO %v, horizon %d, α %v: change gate failed in %d, any error gate in %d of %d rollouts at the SLO (bounds %.1f%%, %.1f%%)",
				p0, slo.Horizon, alpha, nChange, nAny, rollouts, 100*alpha/4, 100*alpha/2)
			if float64(nChange) > alpha/4*float64(rollouts) || float64(nAny) > alpha/2*float64(rollouts) {
				t.Errorf("false rollbacks at the SLO: change gate %d, any error gate %d of %d; want <= %.1f%% and %.1f%%",
					nChange, nAny, rollouts, 100*alpha/4, 100*alpha/2)
			}
		})
	}
}
