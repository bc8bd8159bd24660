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

// simOut keeps the simulation's markdown tables: go test ./guard/judge -run
// Sim -sim.out /tmp/sim.md (TestSimFleet appends its table).
var simOut = flag.String("sim.out", "", "also write the simulation tables to this file")

// The simulated service: the defaults of the README, a canary getting 10%
// of the traffic at 50 canary requests per second.
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

// simRollouts scales a full run's rollout count: a fifth with -short, a
// third under the race detector (see raceBuild). Rollout i has the same
// seed in every run, so a smaller run simulates the first rollouts of the
// full one.
func simRollouts(full int) int {
	switch {
	case testing.Short():
		return max(full/5, 1)
	case raceBuild:
		return max(full/3, 1)
	}
	return full
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
	rollouts          int // in a full run
	wantVerdict       judge.Verdict

	// The targets for the sequential judge, as in the README's table (zero:
	// none).
	falseAtMost  float64 // good: share of rollouts falsely rolled back
	medianAtMost uint64  // bad: median canary requests to the rollback
	missedAtMost float64 // bad: share not rolled back within simMax
	worstAtMost  uint64  // bad: every rollout within this many requests
	target       string  // the targets, as printed
}

// outcome is one judge's fate in one rollout.
type outcome struct {
	verdict judge.Verdict // Hold if it never rolled back
	at      uint64        // canary requests at the rollback (after the change for late scenarios)
	early   bool          // rolled back before a late regression began
	gate    string        // the first failing gate
	replica bool          // fleet: a replica's own judge, not the leader's, rolled back
}

// simScenarios lists the canaries of TestSimRollouts with their targets.
// Both good canaries are at the stated multiple of both SLOs at once, the
// worst case for the union of the gates; a canary that breaks one SLO keeps
// the other at half its SLO.
func simScenarios() []scenario {
	const errV, latV = judge.RollbackErrorRate, judge.RollbackLatency
	return []scenario{
		{name: "good: 0.5x both SLOs", err: 0.5, slow: 0.5, good: true, rollouts: 1000, falseAtMost: 0.001, target: "≤ 0.1% false rollbacks"},
		{name: "good: exactly at both SLOs", err: 1, slow: 1, good: true, rollouts: 600, falseAtMost: 0.01, target: "≤ α = 1% false rollbacks"},
		{name: "errors 1.5x SLO", err: 1.5, slow: 0.5, rollouts: 200, wantVerdict: errV, medianAtMost: 15_000, missedAtMost: 0.05, target: "median ≤ 15,000; ≤ 5% missed"},
		{name: "errors 2x SLO", err: 2, slow: 0.5, rollouts: 200, wantVerdict: errV, medianAtMost: 2_500, target: "median ≤ 2,500"},
		{name: "errors 3x SLO", err: 3, slow: 0.5, rollouts: 1000, wantVerdict: errV, medianAtMost: 500, target: "median ≤ 500"},
		{name: "errors 10x SLO", err: 10, slow: 0.5, rollouts: 500, wantVerdict: errV, medianAtMost: 80, target: "median ≤ 80"},
		{name: "errors: total outage", err: 1 / simErrorSLO, slow: 0.5, rollouts: 500, wantVerdict: errV, worstAtMost: 7, target: "≤ 7"},
		{name: "errors: 0.5x, then 3x after 10k", err: 0.5, slow: 0.5, late: true, lateErr: 3, lateSlow: 0.5, rollouts: 500, wantVerdict: errV,
			medianAtMost: 1_000, missedAtMost: 0, target: "median ≤ 1,000 after the change"},
		{name: "slow share 1.5x SLO", err: 0.5, slow: 1.5, rollouts: 200, wantVerdict: latV, medianAtMost: 15_000, missedAtMost: 0.05, target: "median ≤ 15,000; ≤ 5% missed"},
		{name: "slow share 2x SLO", err: 0.5, slow: 2, rollouts: 200, wantVerdict: latV, medianAtMost: 2_500, target: "median ≤ 2,500"},
		{name: "slow share 3x SLO", err: 0.5, slow: 3, rollouts: 500, wantVerdict: latV, medianAtMost: 500, target: "median ≤ 500"},
		{name: "slow share 10x SLO", err: 0.5, slow: 10, rollouts: 500, wantVerdict: latV, medianAtMost: 80, target: "median ≤ 80"},
		// Every request slow: a slow canary request wakes the guard like a
		// failed one, so the statistic concludes within a handful.
		{name: "slow share: every request slow", err: 0.5, slow: 1 / judge.SlowShare, rollouts: 500, wantVerdict: latV, worstAtMost: 7,
			target: "≤ 7"},
		{name: "slow share: 0.5x, then 3x after 10k", err: 0.5, slow: 0.5, late: true, lateErr: 0.5, lateSlow: 3, rollouts: 500, wantVerdict: latV,
			medianAtMost: 1_000, missedAtMost: 0, target: "median ≤ 1,000 after the change"},
	}
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

// newStreams returns the four event streams of a rollout: canary errors and
// slow requests, stable errors and slow requests, at the given rates.
func newStreams(rng *rand.Rand, canaryErr, canarySlow, stableErr, stableSlow float64) (errs, slow, sErrs, sSlow *stream) {
	errs, slow, sErrs, sSlow = &stream{rng: rng}, &stream{rng: rng}, &stream{rng: rng}, &stream{rng: rng}
	errs.reset(0, canaryErr)
	slow.reset(0, canarySlow)
	sErrs.reset(0, stableErr)
	sSlow.reset(0, stableSlow)
	return errs, slow, sErrs, sSlow
}

func errRate(m float64) float64  { return math.Min(1, m*simErrorSLO) }
func slowRate(m float64) float64 { return math.Min(1, m*judge.SlowShare) }

// firstFailingGate names the gate behind a rollback.
func firstFailingGate(r judge.Result) string {
	for _, g := range r.Gates {
		if g.Verdict == judge.GateFail {
			return g.Name
		}
	}
	return ""
}

type checkpoint struct{ n, errs, slow uint64 }

// simulate runs one rollout against both judges, judging every simBatch
// canary requests and at once after every failed or slow canary request (as
// the guard does: the proxy wakes it),
// until both rolled back or simMax canary requests.
func simulate(sc scenario, rng *rand.Rand) (seq, win outcome) {
	slo := simSLO()
	judges := []judge.Judge{judge.NewSequential(slo), judge.NewWindow(slo)}
	outs := []outcome{{verdict: judge.Hold}, {verdict: judge.Hold}}
	done := []bool{false, false}
	judges[0].Restart(proxy.Snapshot{})

	errs, slow, sErrs, sSlow := newStreams(rng, errRate(sc.err), slowRate(sc.slow), errRate(0.5), slowRate(0.5))

	ring := make([]checkpoint, simWindow/simBatch+2)
	var n, e, sl, se, ssl uint64
	for n < simMax && !(done[0] && done[1]) {
		target := min((n/simBatch+1)*simBatch, errs.next, slow.next, simMax)
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
			r := j.Judge(snap)
			if !r.Verdict.IsRollback() {
				continue
			}
			done[i] = true
			outs[i] = outcome{verdict: r.Verdict, at: n, gate: firstFailingGate(r)}
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
	rollouts                    int
	rollbacks, early, wrongKind int
	byReplica                   int
	sizes                       []uint64
	gates                       map[string]int // good canaries: false rollbacks by gate
}

func (s summary) quantile(q float64) uint64 {
	if len(s.sizes) == 0 {
		return 0
	}
	i := int(math.Ceil(q*float64(len(s.sizes)))) - 1
	return s.sizes[max(i, 0)]
}

// missed is the share of rollouts never rolled back (nor early).
func (s summary) missed() float64 {
	return float64(s.rollouts-s.rollbacks-s.early) / float64(s.rollouts)
}

// medianAll is the median over all rollouts, a missed one counting as
// never: 0 when more than half were missed.
func (s summary) medianAll() uint64 {
	i := (s.rollouts+1)/2 - 1
	if i >= len(s.sizes) {
		return math.MaxUint64
	}
	return s.sizes[i]
}

func summarise(sc scenario, outs []outcome) summary {
	s := summary{rollouts: len(outs), gates: map[string]int{}}
	for _, o := range outs {
		switch {
		case o.verdict == judge.Hold:
		case o.early:
			s.early++
		default:
			s.rollbacks++
			s.sizes = append(s.sizes, o.at)
			s.gates[o.gate]++
			if o.replica {
				s.byReplica++
			}
			if sc.wantVerdict != "" && o.verdict != sc.wantVerdict {
				s.wrongKind++
			}
		}
	}
	slices.Sort(s.sizes)
	return s
}

// parallel runs f(i) for i in [0, n) on every core.
func parallel(n int, f func(i int)) {
	var wg sync.WaitGroup
	workers := runtime.GOMAXPROCS(0)
	for w := range workers {
		wg.Go(func() {
			for i := w; i < n; i += workers {
				f(i)
			}
		})
	}
	wg.Wait()
}

func runScenario(sc scenario, idx int) (seq, win summary) {
	rollouts := simRollouts(sc.rollouts)
	seqOut := make([]outcome, rollouts)
	winOut := make([]outcome, rollouts)
	parallel(rollouts, func(i int) {
		rng := rand.New(rand.NewPCG(simSeed, uint64(idx)<<32|uint64(i)))
		seqOut[i], winOut[i] = simulate(sc, rng)
	})
	return summarise(sc, seqOut), summarise(sc, winOut)
}

// aboveBound reports whether k events in n rollouts show a probability
// above bound: more than three standard deviations above n·bound. The
// calibration tests measure a probability that is meant to come close to
// its bound, so an exact comparison would fail on sampling noise alone.
func aboveBound(k, n int, bound float64) bool {
	return float64(k) > float64(n)*bound+3*math.Sqrt(float64(n)*bound*(1-bound))
}

func pct(k, of int) string { return fmt.Sprintf("%.2f%%", 100*float64(k)/float64(of)) }

// thousands formats n as 12,345.
func thousands(n uint64) string {
	s := fmt.Sprint(n)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

func cell(sc scenario, s summary) string {
	switch {
	case sc.good:
		out := "false rollback " + pct(s.rollbacks, s.rollouts)
		if s.rollbacks > 0 {
			names := make([]string, 0, len(s.gates))
			for name, k := range s.gates {
				names = append(names, fmt.Sprintf("%s %d", name, k))
			}
			slices.Sort(names)
			out += " (" + strings.Join(names, ", ") + ")"
		}
		return out
	case sc.late:
		return fmt.Sprintf("median %s, p90 %s after the change (%s missed; %s rolled back before it)",
			thousands(s.quantile(0.5)), thousands(s.quantile(0.9)), pct(s.rollouts-s.rollbacks-s.early, s.rollouts), pct(s.early, s.rollouts))
	}
	missed := ""
	if s.rollbacks < s.rollouts {
		missed = fmt.Sprintf(" (%s missed)", pct(s.rollouts-s.rollbacks, s.rollouts))
	}
	return fmt.Sprintf("median %s, p90 %s%s", thousands(s.quantile(0.5)), thousands(s.quantile(0.9)), missed)
}

// writeTable logs a table and writes it to -sim.out (appending after the
// first table of a run) or a temporary file.
func writeTable(t *testing.T, table string, appendTo bool) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "sim.md")
	if *simOut != "" {
		path = *simOut
	}
	flags := os.O_CREATE | os.O_WRONLY | os.O_TRUNC
	if appendTo {
		flags = os.O_CREATE | os.O_WRONLY | os.O_APPEND
	}
	f, err := os.OpenFile(path, flags, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(table + "\n"); err != nil {
		t.Fatal(err)
	}
}

// checkTargets asserts a scenario's targets on the sequential judge's
// summary.
func checkTargets(t *testing.T, sc scenario, s summary) {
	t.Helper()
	if s.wrongKind > 0 {
		t.Errorf("%s: %d rollbacks gave the wrong verdict; want %s", sc.name, s.wrongKind, sc.wantVerdict)
	}
	if sc.good {
		if float64(s.rollbacks) > sc.falseAtMost*float64(s.rollouts) {
			t.Errorf("%s: %d false rollbacks in %d rollouts; want at most %.1f%%", sc.name, s.rollbacks, s.rollouts, 100*sc.falseAtMost)
		}
		return
	}
	if sc.medianAtMost > 0 && s.medianAll() > sc.medianAtMost {
		t.Errorf("%s: median %d canary requests to the rollback (missed counting as never); want at most %d", sc.name, s.medianAll(), sc.medianAtMost)
	}
	if (sc.missedAtMost > 0 || sc.late) && s.missed() > sc.missedAtMost {
		t.Errorf("%s: %.2f%% missed within %d requests; want at most %.0f%%", sc.name, 100*s.missed(), simMax, 100*sc.missedAtMost)
	}
	if sc.worstAtMost > 0 && (s.rollbacks < s.rollouts || s.quantile(1) > sc.worstAtMost) {
		t.Errorf("%s: %d of %d rolled back, the slowest after %d requests; want all within %d", sc.name, s.rollbacks, s.rollouts, s.quantile(1), sc.worstAtMost)
	}
}

// TestSimRollouts runs thousands of simulated rollouts through both judges
// and checks the sequential judge against its targets (see the
// package doc for the table it prints).
func TestSimRollouts(t *testing.T) {
	// Millions of judgements allocate a lot of short-lived garbage over a
	// tiny live heap; collecting less often halves the test's run time.
	defer debug.SetGCPercent(debug.SetGCPercent(1000))
	start := time.Now()
	scs := simScenarios()
	total := 0
	for _, sc := range scs {
		total += simRollouts(sc.rollouts)
	}
	var table strings.Builder
	fmt.Fprintf(&table, "| canary (%d rollouts of up to %s canary requests, judged every %d requests and after each failed or slow request) | sequential | window (%s-request window) | target (sequential) |\n|---|---|---|---|\n",
		total, thousands(simMax), simBatch, thousands(simWindow))
	results := map[string][2]summary{}
	for i, sc := range scs {
		seq, win := runScenario(sc, i)
		results[sc.name] = [2]summary{seq, win}
		fmt.Fprintf(&table, "| %s (%d) | %s | %s | %s |\n", sc.name, seq.rollouts, cell(sc, seq), cell(sc, win), sc.target)
		checkTargets(t, sc, seq)
	}
	out := table.String()
	t.Logf("simulation in %v:\n%s", time.Since(start).Round(time.Millisecond), out)
	writeTable(t, out, false)

	// And the reason for the sequential judge: the window judge rolls back
	// good canaries.
	if r := results["good: 0.5x both SLOs"]; r[1].rollbacks <= r[0].rollbacks {
		t.Errorf("window judge false rollbacks at 0.5x SLO (%d) not above the sequential judge's (%d): the simulation no longer shows the problem",
			r[1].rollbacks, r[0].rollbacks)
	}
}

// A fleet: R replicas share the canary's traffic evenly (round
// robin), each serving what a single instance serves (50 canary requests a
// second), so the fleet serves R times as much. Each replica judges its own
// evidence at its share of α and a leader judges the sum of all replicas'
// evidence at α/2 (judge.SLO.FleetShares); the first of them to conclude
// rolls the fleet back.

// fleetScenarios are the canaries of TestSimFleet.
func fleetScenarios() []scenario {
	return []scenario{
		{name: "good: 0.5x both SLOs", err: 0.5, slow: 0.5, good: true, rollouts: 100, falseAtMost: 0.01},
		{name: "good: exactly at both SLOs", err: 1, slow: 1, good: true, rollouts: 400, falseAtMost: 0.01},
		{name: "errors 3x SLO", err: 3, slow: 0.5, rollouts: 1000, wantVerdict: judge.RollbackErrorRate},
		{name: "errors: total outage", err: 1 / simErrorSLO, slow: 0.5, rollouts: 500, wantVerdict: judge.RollbackErrorRate},
	}
}

// simulateFleet runs one rollout of up to simMax fleet-wide canary requests
// through a fleet of replicas (0: a single instance, judged at the whole
// α). Every judge ticks once a second, every simBatch canary requests of
// each replica; a canary error is judged at once by the replica that saw it
// and by the leader (replicas publish their evidence at once after a canary
// error). Detection is counted in fleet-wide canary requests.
func simulateFleet(sc scenario, replicas int, rng *rand.Rand) outcome {
	slo := simSLO()
	r := max(replicas, 1)
	var judges []judge.Judge // [0] the leader (or the single instance), [1+k] replica k
	if replicas == 0 {
		judges = []judge.Judge{judge.NewSequential(slo)}
	} else {
		leader, replica := slo.FleetShares(replicas)
		judges = append(judges, judge.NewSequential(leader))
		for range replicas {
			judges = append(judges, judge.NewSequential(replica))
		}
	}
	// Request i (1-based) of either backend goes to replica (i-1) mod r;
	// share is how many of the first count requests replica k got.
	share := func(count uint64, k int) uint64 {
		if count <= uint64(k) {
			return 0
		}
		return (count-uint64(k)-1)/uint64(r) + 1
	}
	canary := make([]proxy.Totals, r) // Errors and Slow per replica
	stable := make([]proxy.Totals, r)
	assign := func(s *stream, upTo uint64, of []proxy.Totals, count func(t *proxy.Totals)) (k uint64) {
		for s.next <= upTo {
			count(&of[int((s.next-1)%uint64(r))])
			s.next += s.gap()
			k++
		}
		return k
	}
	addErr := func(t *proxy.Totals) { t.Errors++ }
	addSlow := func(t *proxy.Totals) { t.Slow++ }

	errs, slow, sErrs, sSlow := newStreams(rng, errRate(sc.err), slowRate(sc.slow), errRate(0.5), slowRate(0.5))

	tickEvery := uint64(simBatch * r)
	var n, e, sl, se, ssl uint64
	for n < simMax {
		target := min((n/tickEvery+1)*tickEvery, errs.next, simMax)
		erred := errs.next == target
		e += assign(errs, target, canary, addErr)
		sl += assign(slow, target, canary, addSlow)
		se += assign(sErrs, target*simStableX, stable, addErr)
		ssl += assign(sSlow, target*simStableX, stable, addSlow)
		n = target
		tick := n%tickEvery == 0
		verdictOf := func(i int, s proxy.Snapshot) (outcome, bool) {
			res := judges[i].Judge(s)
			if !res.Verdict.IsRollback() {
				return outcome{}, false
			}
			return outcome{verdict: res.Verdict, at: n, gate: firstFailingGate(res), replica: i > 0}, true
		}
		// The leader (or the single instance) judges the fleet's sum.
		sum := proxy.Snapshot{
			Canary: proxy.Stats{Totals: proxy.Totals{Requests: n, Errors: e, Slow: sl}},
			Stable: proxy.Stats{Totals: proxy.Totals{Requests: n * simStableX, Errors: se, Slow: ssl}},
		}
		if o, ok := verdictOf(0, sum); ok {
			return o
		}
		if replicas <= 1 {
			// A single replica's own judge sees what the leader sees, at
			// the same share of α, and would conclude at the same moment:
			// judging it too would change nothing.
			continue
		}
		for k := range r {
			if !tick && !(erred && int((n-1)%uint64(r)) == k) {
				continue
			}
			own := proxy.Snapshot{
				Canary: proxy.Stats{Totals: proxy.Totals{Requests: share(n, k), Errors: canary[k].Errors, Slow: canary[k].Slow}},
				Stable: proxy.Stats{Totals: proxy.Totals{Requests: share(n*simStableX, k), Errors: stable[k].Errors, Slow: stable[k].Slow}},
			}
			if o, ok := verdictOf(1+k, own); ok {
				return o
			}
		}
	}
	return outcome{verdict: judge.Hold}
}

// TestSimFleet checks the promise for a fleet: a canary that meets
// its SLO is falsely rolled back with probability at most α with 1, 3 and
// 10 replicas, and a 3x breach is caught after about as many fleet-wide
// canary requests as a single instance needs (at most 1.3 times).
func TestSimFleet(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(1000)) // as in TestSimRollouts
	start := time.Now()
	fleets := []int{0, 1, 3, 10}
	var table strings.Builder
	table.WriteString("| canary (rollouts of up to 100,000 fleet-wide canary requests) | single instance (α) | 1 replica | 3 replicas | 10 replicas |\n|---|---|---|---|---|\n")
	medians := map[string][]uint64{}
	for si, sc := range fleetScenarios() {
		rollouts := simRollouts(sc.rollouts)
		fmt.Fprintf(&table, "| %s (%d) |", sc.name, rollouts)
		for _, replicas := range fleets {
			outs := make([]outcome, rollouts)
			parallel(rollouts, func(i int) {
				// The same seeds for every fleet size: the fleets see
				// the same requests, only judged differently.
				rng := rand.New(rand.NewPCG(simSeed, 3<<40|uint64(si)<<32|uint64(i)))
				outs[i] = simulateFleet(sc, replicas, rng)
			})
			s := summarise(sc, outs)
			c := cell(sc, s)
			if replicas > 1 && s.rollbacks > 0 {
				c += fmt.Sprintf("; a replica first in %s", pct(s.byReplica, s.rollbacks))
			}
			fmt.Fprintf(&table, " %s |", c)
			medians[sc.name] = append(medians[sc.name], s.medianAll())
			name := fmt.Sprintf("%s, %d replicas", sc.name, replicas)
			checkTargets(t, scenario{name: name, good: sc.good, falseAtMost: sc.falseAtMost, wantVerdict: sc.wantVerdict}, s)
			if !sc.good && s.rollbacks != s.rollouts {
				t.Errorf("%s: %d of %d rolled back; want all", name, s.rollbacks, s.rollouts)
			}
		}
		table.WriteString("\n")
	}
	m := medians["errors 3x SLO"]
	fmt.Fprintf(&table, "\nMedian fleet-wide canary requests to roll back a canary at 3x its error SLO, relative to a single instance: 1 replica %.2f, 3 replicas %.2f, 10 replicas %.2f; 3 replicas relative to 1: %.2f.\n",
		float64(m[1])/float64(m[0]), float64(m[2])/float64(m[0]), float64(m[3])/float64(m[0]), float64(m[2])/float64(m[1]))
	out := table.String()
	t.Logf("fleet simulation in %v:\n%s", time.Since(start).Round(time.Millisecond), out)
	writeTable(t, out, true)
	if float64(m[2]) > 1.3*float64(m[0]) || float64(m[2]) > 1.3*float64(m[1]) {
		t.Errorf("3 replicas need a median of %d fleet-wide canary requests at 3x SLO, a single instance %d, one replica %d; want at most 1.3 times either",
			m[2], m[0], m[1])
	}
}

// TestSimStepTestIsAnytimeValid checks the anytime guarantee where it is
// tightest, a canary exactly at its SLO: however often it is judged, the
// step test's statistic (the error_rate gate's Value) may reach its
// threshold in at most α/4 of the rollouts (each SLO's step test gets half
// of that SLO's α/2). α is large so that a few hundred rollouts can tell
// the mixture's true level from the bound; within 20,000 requests it comes
// close to it. The CUSUM gate is left out: its
// guarantee holds within Horizon (TestSimChangeDetectorCalibration).
func TestSimStepTestIsAnytimeValid(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(1000)) // as in TestSimRollouts
	const alpha = 0.2
	rollouts, requests := simRollouts(600), uint64(20_000)
	slo := simSLO()
	slo.Alpha = alpha
	crossed := make([]bool, rollouts)
	parallel(rollouts, func(i int) {
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
				panic("gate 1 is " + g.Name)
			} else if g.Value >= g.Threshold {
				crossed[i] = true
				return
			}
		}
	})
	k := 0
	for _, c := range crossed {
		if c {
			k++
		}
	}
	t.Logf("step test at exactly the SLO crossed its threshold in %d of %d rollouts of %d requests (bound %.1f%%)", k, rollouts, requests, 100*alpha/4)
	if aboveBound(k, rollouts, alpha/4) {
		t.Errorf("step test crossed in %d of %d rollouts at the SLO; Ville bounds it at %.1f%%", k, rollouts, 100*alpha/4)
	}
}

// TestSimChangeDetectorCalibration checks the change detector's threshold
// for other SLO rates than the default: for a canary exactly at its error
// SLO, judged after every error (which is the per-request CUSUM exactly),
// the CUSUM statistic (the error_rate_change gate's Value, computed on even
// after another gate concluded) reaches its threshold within Horizon
// requests in at most α/4 of the rollouts, and the error gates together
// roll back at most α/2. α is large here so that a few hundred rollouts can
// tell.
func TestSimChangeDetectorCalibration(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(1000)) // as in TestSimRollouts
	const alpha, events = 0.1, 400                     // events expected within the horizon
	rollouts := simRollouts(300)
	for ti, p0 := range []float64{0.001, 0.01, 0.1, 0.4} {
		t.Run(fmt.Sprint(p0), func(t *testing.T) {
			slo := judge.SLO{ErrorRate: p0, P95: time.Second, MinRequests: 100, Alpha: alpha, Horizon: uint64(events / p0)}
			change := make([]bool, rollouts)
			any := make([]bool, rollouts)
			parallel(rollouts, func(i int) {
				rng := rand.New(rand.NewPCG(simSeed, 2<<40|uint64(ti)<<32|uint64(i)))
				errs := stream{rng: rng}
				errs.reset(0, p0)
				j := judge.NewSequential(slo)
				var s proxy.Snapshot
				for errs.next <= slo.Horizon && !change[i] {
					s.Canary.Totals.Requests = errs.next
					s.Canary.Totals.Errors += errs.count(errs.next)
					s.Stable.Totals.Requests = s.Canary.Totals.Requests * simStableX
					r := j.Judge(s)
					any[i] = any[i] || r.Verdict == judge.RollbackErrorRate
					if g := r.Gates[2]; g.Name != judge.GateErrorRateChange {
						panic("gate 2 is " + g.Name)
					} else {
						change[i] = g.Value >= g.Threshold
					}
				}
			})
			nChange, nAny := 0, 0
			for i := range rollouts {
				if change[i] {
					nChange++
				}
				if any[i] {
					nAny++
				}
			}
			t.Logf("error SLO %v, horizon %d, α %v: the CUSUM reached its threshold in %d, the error gates rolled back %d of %d rollouts at the SLO (bounds %.1f%%, %.1f%%)",
				p0, slo.Horizon, alpha, nChange, nAny, rollouts, 100*alpha/4, 100*alpha/2)
			if aboveBound(nChange, rollouts, alpha/4) || aboveBound(nAny, rollouts, alpha/2) {
				t.Errorf("false rollbacks at the SLO: CUSUM %d, any error gate %d of %d; want <= %.1f%% and %.1f%%",
					nChange, nAny, rollouts, 100*alpha/4, 100*alpha/2)
			}
		})
	}
}

// TestSimCompareRollback measures the comparison with stable under
// CompareRollback: a canary exactly at the margin (1.5 times stable's rates,
// well within its SLO) is rolled back by a comparison gate in at most its
// share of α, α/6, of the rollouts (α is large so that a few hundred
// rollouts can tell; the conditional test is exact for rare events, and at
// a 3% slow share this checks that it is near enough), and a canary at 3
// times stable's error rate, still within its SLO, is rolled back at the
// defaults.
func TestSimCompareRollback(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(1000)) // as in TestSimRollouts
	run := func(seed uint64, slo judge.SLO, rollouts int, requests uint64, canaryErr, canarySlow, stableErr, stableSlow float64) []outcome {
		outs := make([]outcome, rollouts)
		parallel(rollouts, func(i int) {
			rng := rand.New(rand.NewPCG(simSeed, seed<<40|uint64(i)))
			errs, slow, sErrs, sSlow := newStreams(rng, canaryErr, canarySlow, stableErr, stableSlow)
			j := judge.NewSequential(slo)
			var s proxy.Snapshot
			outs[i] = outcome{verdict: judge.Hold}
			for s.Canary.Totals.Requests < requests {
				n := min((s.Canary.Totals.Requests/simBatch+1)*simBatch, errs.next, requests)
				s.Canary.Totals = proxy.Totals{Requests: n, Errors: s.Canary.Totals.Errors + errs.count(n), Slow: s.Canary.Totals.Slow + slow.count(n)}
				s.Stable.Totals = proxy.Totals{Requests: n * simStableX, Errors: s.Stable.Totals.Errors + sErrs.count(n*simStableX),
					Slow: s.Stable.Totals.Slow + sSlow.count(n*simStableX)}
				if r := j.Judge(s); r.Verdict.IsRollback() {
					outs[i] = outcome{verdict: r.Verdict, at: n, gate: firstFailingGate(r)}
					return
				}
			}
		})
		return outs
	}

	const alpha = 0.3
	slo := simSLO()
	slo.Alpha, slo.Compare = alpha, judge.CompareRollback
	rollouts := simRollouts(600)
	outs := run(4, slo, rollouts, 20_000, 0.006, 0.03, 0.004, 0.02)
	byGate := map[string]int{}
	for _, o := range outs {
		if o.verdict.IsRollback() {
			byGate[o.gate]++
		}
	}
	t.Logf("canary at 1.5x stable (errors 0.6%% vs 0.4%%, slow 3%% vs 2%%), α %v, %d rollouts of 20,000 requests: rollbacks by gate %v (bound for each comparison gate %.1f%%)",
		alpha, rollouts, byGate, 100*alpha/6)
	for _, name := range []string{judge.GateErrorRateVsStable, judge.GateP95LatencyVsStable} {
		if aboveBound(byGate[name], rollouts, alpha/6) {
			t.Errorf("%s rolled back %d of %d canaries at the margin; want at most %.1f%%", name, byGate[name], rollouts, 100*alpha/6)
		}
	}

	// At the defaults: 0.75% errors against stable's 0.25%, within the 1% SLO.
	slo = simSLO()
	slo.Compare = judge.CompareRollback
	rollouts = simRollouts(300)
	s := summarise(scenario{wantVerdict: judge.RollbackErrorRate}, run(5, slo, rollouts, simMax, 0.0075, 0.025, 0.0025, 0.025))
	t.Logf("CANARY_COMPARE=rollback, canary 0.75%% errors vs stable 0.25%% (SLO 1%%), %d rollouts: median %s, p90 %s canary requests to the rollback (%s not rolled back within %s); gates %v",
		rollouts, thousands(s.quantile(0.5)), thousands(s.quantile(0.9)), pct(rollouts-s.rollbacks, rollouts), thousands(simMax), s.gates)
	if s.wrongKind > 0 || s.rollbacks < rollouts*9/10 || s.gates[judge.GateErrorRateVsStable] < s.rollbacks*9/10 {
		t.Errorf("compare rollback at 3x stable: %d of %d rolled back (%d with the wrong verdict), gates %v; want at least 90%%, by %s",
			s.rollbacks, rollouts, s.wrongKind, s.gates, judge.GateErrorRateVsStable)
	}
}
