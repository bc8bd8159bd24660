package judge_test

import (
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/canaryd/canaryd/guard/judge"
	"github.com/canaryd/canaryd/proxy"
)

func testSLO() judge.SLO {
	return judge.SLO{ErrorRate: 0.01, P95: 500 * time.Millisecond, MinRequests: 100, Alpha: 0.01}
}

func gate(t *testing.T, r judge.Result, name string) judge.Gate {
	t.Helper()
	for _, g := range r.Gates {
		if g.Name == name {
			return g
		}
	}
	t.Fatalf("no gate %q in %+v", name, r.Gates)
	return judge.Gate{}
}

func windowSnap(n, errs, slow uint64) proxy.Snapshot {
	return proxy.Snapshot{Window: 5 * time.Minute, Canary: proxy.Stats{Requests: n, Errors: errs, Slow: slow, Totals: proxy.Totals{Requests: n, Errors: errs, Slow: slow}}}
}

func TestWindow(t *testing.T) {
	tests := []struct {
		name          string
		n, errs, slow uint64
		want          judge.Verdict
		gateVerdicts  map[string]string
		needed        uint64
	}{
		{"empty", 0, 0, 0, judge.Hold, map[string]string{"min_requests": "hold", "error_rate": "hold"}, 100},
		{"below floor even if failing", 99, 99, 99, judge.Hold, map[string]string{"min_requests": "hold", "p95_latency": "hold"}, 1},
		{"healthy", 1000, 10, 50, judge.Proceed, map[string]string{"min_requests": "pass", "error_rate": "pass", "p95_latency": "pass"}, 0},
		{"error rate just above", 1000, 11, 0, judge.RollbackErrorRate, map[string]string{"error_rate": "fail", "p95_latency": "pass"}, 0},
		{"slow share above 5%", 1000, 0, 51, judge.RollbackLatency, map[string]string{"error_rate": "pass", "p95_latency": "fail"}, 0},
		{"both: errors first", 100, 50, 50, judge.RollbackErrorRate, map[string]string{"error_rate": "fail", "p95_latency": "fail"}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			j := judge.NewWindow(testSLO())
			r := j.Judge(windowSnap(tt.n, tt.errs, tt.slow))
			if r.Verdict != tt.want {
				t.Fatalf("Judge(%d requests, %d errors, %d slow) = %s (%v); want %s", tt.n, tt.errs, tt.slow, r.Verdict, r.Reasons, tt.want)
			}
			if len(r.Reasons) == 0 {
				t.Errorf("no reasons for %s", r.Verdict)
			}
			for name, v := range tt.gateVerdicts {
				if g := gate(t, r, name); string(g.Verdict) != v {
					t.Errorf("gate %s verdict = %s (%s); want %s", name, g.Verdict, g.Detail, v)
				}
			}
			if g := gate(t, r, "min_requests"); g.Needed != tt.needed {
				t.Errorf("min_requests Needed = %d; want %d", g.Needed, tt.needed)
			}
		})
	}
	if got := judge.NewWindow(testSLO()).Name(); got != "window" {
		t.Errorf("Name() = %q; want window", got)
	}
}

// feeder grows cumulative totals as a proxy would.
type feeder struct {
	snap proxy.Snapshot
}

// add counts n canary requests with errs errors and slow slow ones, and
// stableN stable requests with stableErrs errors; stable's share of slow
// requests is the canary's.
func (f *feeder) add(n, errs, slow uint64, stableN, stableErrs uint64) proxy.Snapshot {
	c, s := &f.snap.Canary.Totals, &f.snap.Stable.Totals
	c.Requests += n
	c.Errors += errs
	c.Slow += slow
	s.Requests += stableN
	s.Errors += stableErrs
	if n > 0 {
		s.Slow += slow * stableN / n
	}
	return f.snap
}

// A dead canary is rolled back on its fourth failed request (v1: the sixth);
// three failures in a row are not yet enough, so a short burst of errors at
// the start of a step does not end it.
func TestSequentialOutageWithinAHandfulOfRequests(t *testing.T) {
	j := judge.NewSequential(testSLO())
	var f feeder
	j.Restart(f.snap)
	for i := 1; i <= 10; i++ {
		r := j.Judge(f.add(1, 1, 0, 9, 0))
		if r.Verdict == judge.RollbackErrorRate {
			if i != 4 {
				t.Errorf("outage rolled back after %d requests; want 4", i)
			}
			if g := gate(t, r, "error_rate"); g.Verdict != "fail" || g.Value < g.Threshold || g.Samples != uint64(i) {
				t.Errorf("error_rate gate = %+v; want fail with value >= threshold over %d samples", g, i)
			}
			return
		}
		if r.Verdict != judge.Hold {
			t.Fatalf("request %d of an outage: verdict %s; want hold until rollback", i, r.Verdict)
		}
	}
	t.Fatal("a total outage was not rolled back within 10 requests")
}

// Every request slower than the p95 SLO: the latency statistic concludes
// after as few requests as the error one does for an outage, when it is
// consulted (the guard judges latency on its tick, since a slow request does
// not wake it).
func TestSequentialLatencyOutage(t *testing.T) {
	j := judge.NewSequential(testSLO())
	var f feeder
	for i := 1; i <= 10; i++ {
		r := j.Judge(f.add(1, 0, 1, 9, 0))
		if r.Verdict.IsRollback() {
			if r.Verdict != judge.RollbackLatency || i > 7 {
				t.Errorf("every request slow: %s after %d requests; want rollback_latency within 7", r.Verdict, i)
			}
			t.Logf("every request slow: %s after %d requests", r.Verdict, i)
			return
		}
	}
	t.Fatal("every request slow: no rollback within 10 requests")
}

// The step tests' statistic is a function of the counts since the step
// started: judging the same requests in other batches, or the sum of
// several replicas' counts, gives the same value, which is what lets a
// fleet's leader judge the replicas' summed evidence.
func TestSequentialStepStatisticIsAFunctionOfTheCounts(t *testing.T) {
	type counts struct{ n, errs, slow uint64 }
	replicas := [3][]counts{
		{{40, 1, 3}, {60, 0, 2}, {30, 2, 0}},
		{{10, 0, 0}, {90, 3, 9}, {55, 0, 1}},
		{{70, 2, 4}, {20, 0, 0}, {45, 1, 6}},
	}
	stepGates := func(r judge.Result) (float64, float64) {
		return gate(t, r, judge.GateErrorRate).Value, gate(t, r, judge.GateP95Latency).Value
	}
	// The leader judges the replicas' sums, tick by tick.
	leader := judge.NewSequential(testSLO())
	var sum proxy.Snapshot
	var last judge.Result
	for tick := range 3 {
		for _, rep := range replicas {
			c := rep[tick]
			sum.Canary.Totals.Requests += c.n
			sum.Canary.Totals.Errors += c.errs
			sum.Canary.Totals.Slow += c.slow
			sum.Stable.Totals.Requests += 9 * c.n
		}
		last = leader.Judge(sum)
	}
	// One process sees the same requests one at a time, events first.
	single := judge.NewSequential(testSLO())
	var one proxy.Snapshot
	for range sum.Canary.Totals.Requests {
		one.Canary.Totals.Requests++
		if one.Canary.Totals.Errors < sum.Canary.Totals.Errors {
			one.Canary.Totals.Errors++
		}
		if one.Canary.Totals.Slow < sum.Canary.Totals.Slow {
			one.Canary.Totals.Slow++
		}
		one.Stable.Totals.Requests += 9
		single.Judge(one)
	}
	lastOne := single.Judge(one)
	e1, s1 := stepGates(last)
	e2, s2 := stepGates(lastOne)
	if math.Abs(e1-e2) > 1e-9 || math.Abs(s1-s2) > 1e-9 {
		t.Errorf("step statistics: summed ticks (%v, %v), one request at a time (%v, %v); want equal", e1, s1, e2, s2)
	}
	if g := gate(t, last, judge.GateErrorRate); g.Samples != sum.Canary.Totals.Requests {
		t.Errorf("error_rate samples = %d; want %d", g.Samples, sum.Canary.Totals.Requests)
	}
}

// With CompareRollback a canary within its SLO but significantly worse than
// stable by more than the margin is rolled back, with the verdict of the
// SLO compared and a reason naming the comparison; CompareHold (the
// default) holds it.
func TestSequentialCompareRollback(t *testing.T) {
	tests := []struct {
		name       string
		errs, slow uint64 // per 1000 canary requests (stable: 2 errors, 10 slow per 1000)
		want       judge.Verdict
		gate       string
	}{
		{"errors 0.8% vs 0.2%", 8, 10, judge.RollbackErrorRate, judge.GateErrorRateVsStable},
		{"slow 4% vs 1%", 2, 40, judge.RollbackLatency, judge.GateP95LatencyVsStable},
	}
	for _, tt := range tests {
		for _, mode := range []judge.Compare{judge.CompareHold, judge.CompareRollback} {
			t.Run(tt.name+"/"+mode.String(), func(t *testing.T) {
				slo := testSLO()
				slo.Compare = mode
				j := judge.NewSequential(slo)
				var f feeder
				var r judge.Result
				for range 40 {
					s := f.add(1000, tt.errs, tt.slow, 9000, 18)
					s.Stable.Totals.Slow = s.Stable.Totals.Requests / 100
					f.snap = s
					if r = j.Judge(s); r.Verdict.IsRollback() {
						break
					}
				}
				g := gate(t, r, tt.gate)
				if g.Verdict != judge.GateFail {
					t.Fatalf("gate %s = %+v; want fail", tt.gate, g)
				}
				for _, name := range []string{judge.GateErrorRate, judge.GateErrorRateChange, judge.GateP95Latency, judge.GateP95LatencyChange} {
					if g := gate(t, r, name); g.Verdict == judge.GateFail {
						t.Errorf("SLO gate %s failed (%s); the canary is within its SLO", name, g.Detail)
					}
				}
				want := tt.want
				if mode == judge.CompareHold {
					want = judge.Hold
				}
				if r.Verdict != want {
					t.Fatalf("verdict = %s (%v); want %s", r.Verdict, r.Reasons, want)
				}
				if mode == judge.CompareRollback && (len(r.Reasons) != 1 || !strings.Contains(r.Reasons[0], "worse than stable")) {
					t.Errorf("reasons = %q; want one naming the comparison with stable", r.Reasons)
				}
			})
		}
	}
}

func TestFleetShares(t *testing.T) {
	slo := testSLO()
	for _, tt := range []struct {
		replicas          int
		leaderA, replicaA float64
		leaderH, replicaH uint64
	}{
		{1, 0.005, 0.005, 100_000, 100_000},
		{3, 0.005, 0.01 / 6, 100_000, 33_334},
		{10, 0.005, 0.0005, 100_000, 10_000},
		{0, 0.005, 0.005, 100_000, 100_000}, // counts as 1
	} {
		leader, replica := slo.FleetShares(tt.replicas)
		if math.Abs(leader.Alpha-tt.leaderA) > 1e-12 || math.Abs(replica.Alpha-tt.replicaA) > 1e-12 ||
			leader.Horizon != tt.leaderH || replica.Horizon != tt.replicaH {
			t.Errorf("FleetShares(%d) = alpha %v/%v, horizon %d/%d; want %v/%v, %d/%d", tt.replicas,
				leader.Alpha, replica.Alpha, leader.Horizon, replica.Horizon, tt.leaderA, tt.replicaA, tt.leaderH, tt.replicaH)
		}
		if sum := leader.Alpha + float64(max(tt.replicas, 1))*replica.Alpha; sum > slo.Alpha+1e-12 {
			t.Errorf("FleetShares(%d): the shares sum to %v; want at most α = %v", tt.replicas, sum, slo.Alpha)
		}
		if leader.ErrorRate != slo.ErrorRate || replica.P95 != slo.P95 || replica.MinRequests != slo.MinRequests {
			t.Errorf("FleetShares(%d) changed the SLO itself: %+v, %+v", tt.replicas, leader, replica)
		}
	}
	// Zero fields take their defaults before the split.
	leader, _ := judge.SLO{ErrorRate: 0.01, P95: time.Second}.FleetShares(2)
	if leader.Alpha != judge.DefaultAlpha/2 || leader.Horizon != judge.DefaultHorizon {
		t.Errorf("FleetShares of a zero Alpha and Horizon = %v, %d; want %v, %d", leader.Alpha, leader.Horizon, judge.DefaultAlpha/2, judge.DefaultHorizon)
	}
}

func TestParseCompare(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want judge.Compare
		ok   bool
	}{
		{"hold", judge.CompareHold, true},
		{"rollback", judge.CompareRollback, true},
		{"", judge.CompareHold, false},
		{"Rollback", judge.CompareHold, false},
		{"roll back", judge.CompareHold, false},
	} {
		got, err := judge.ParseCompare(tt.in)
		if got != tt.want || (err == nil) != tt.ok || (err != nil && !errors.Is(err, judge.ErrInvalidSLO)) {
			t.Errorf("ParseCompare(%q) = %v, %v; want %v, ok %v", tt.in, got, err, tt.want, tt.ok)
		}
		if tt.ok && got.String() != tt.in {
			t.Errorf("ParseCompare(%q).String() = %q", tt.in, got.String())
		}
	}
	var zero judge.Compare
	if zero != judge.CompareHold {
		t.Error("the zero Compare is not CompareHold")
	}
}

func TestSequentialVerdicts(t *testing.T) {
	type batch struct{ n, errs, slow, stableN, stableErrs uint64 }
	repeat := func(b batch, k int) []batch {
		out := make([]batch, k)
		for i := range out {
			out[i] = b
		}
		return out
	}
	tests := []struct {
		name    string
		batches []batch
		want    judge.Verdict
		gates   map[string]string
	}{
		{"too few requests", repeat(batch{10, 0, 0, 90, 0}, 5), judge.Hold, map[string]string{"min_requests": "hold", "error_rate": "pass"}},
		{"healthy", repeat(batch{50, 0, 1, 450, 2}, 100), judge.Proceed,
			map[string]string{"min_requests": "pass", "error_rate": "pass", "error_rate_change": "pass", "p95_latency": "pass", "error_rate_vs_stable": "pass"}},
		{"above SLO, not yet conclusive", repeat(batch{50, 1, 0, 450, 4}, 4), judge.Hold, map[string]string{"error_rate": "hold"}},
		{"3x error rate", repeat(batch{100, 3, 0, 900, 5}, 20), judge.RollbackErrorRate, map[string]string{"error_rate": "fail"}},
		{"slow", repeat(batch{50, 0, 25, 450, 0}, 3), judge.RollbackLatency, map[string]string{"p95_latency": "fail", "error_rate": "pass"}},
		{"worse than stable but within SLO", repeat(batch{1000, 8, 0, 9000, 9}, 30), judge.Hold,
			map[string]string{"error_rate": "pass", "error_rate_vs_stable": "fail"}},
		{"late regression", append(repeat(batch{50, 0, 1, 450, 2}, 400), repeat(batch{50, 2, 1, 450, 2}, 20)...), judge.RollbackErrorRate,
			map[string]string{"error_rate_change": "fail", "error_rate": "pass"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			j := judge.NewSequential(testSLO())
			var f feeder
			f.add(5000, 2500, 2500, 100, 0) // before the step: must not count
			j.Restart(f.snap)
			var r judge.Result
			for _, b := range tt.batches {
				r = j.Judge(f.add(b.n, b.errs, b.slow, b.stableN, b.stableErrs))
			}
			if r.Verdict != tt.want {
				t.Fatalf("verdict = %s (%v); want %s", r.Verdict, r.Reasons, tt.want)
			}
			if len(r.Reasons) == 0 {
				t.Errorf("no reasons for %s", r.Verdict)
			}
			for name, v := range tt.gates {
				if g := gate(t, r, name); string(g.Verdict) != v {
					t.Errorf("gate %s = %s (%s); want %s", name, g.Verdict, g.Detail, v)
				}
			}
			if len(r.Gates) != 7 {
				t.Errorf("%d gates; want 7", len(r.Gates))
			}
		})
	}
}

func TestSequentialHoldSaysWhatIsNeeded(t *testing.T) {
	j := judge.NewSequential(testSLO())
	var f feeder
	r := j.Judge(f.add(40, 0, 0, 360, 0))
	if g := gate(t, r, "min_requests"); r.Verdict != judge.Hold || g.Needed != 60 {
		t.Fatalf("after 40 requests: %s, min_requests Needed %d; want hold, 60", r.Verdict, g.Needed)
	}
	// 4% errors over 200 requests: above the SLO, inconclusive, and at this
	// rate the test would conclude after more requests.
	r = j.Judge(f.add(160, 8, 0, 1440, 0))
	g := gate(t, r, "error_rate")
	if r.Verdict == judge.RollbackErrorRate {
		t.Fatalf("concluded before the test could hold: %+v", g)
	}
	if r.Verdict != judge.Hold || g.Verdict != "hold" || g.Needed == 0 {
		t.Fatalf("at 4%% over 200 requests: %s, gate %+v; want hold with Needed > 0", r.Verdict, g)
	}
	// Feeding what Needed asked for at the same rate concludes the test.
	r = j.Judge(f.add(g.Needed, g.Needed*8/200+1, 0, 9*g.Needed, 0))
	if r.Verdict != judge.RollbackErrorRate {
		t.Errorf("after the %d requests Needed said: %s (%v); want rollback_error_rate", g.Needed, r.Verdict, r.Reasons)
	}
}

func TestSequentialRestartForgetsEvidence(t *testing.T) {
	j := judge.NewSequential(testSLO())
	var f feeder
	if r := j.Judge(f.add(100, 50, 0, 900, 0)); r.Verdict != judge.RollbackErrorRate {
		t.Fatalf("50%% errors: %s; want rollback_error_rate", r.Verdict)
	}
	// The rejection is final within the step, even if later data is clean.
	if r := j.Judge(f.add(10_000, 0, 0, 90_000, 0)); r.Verdict != judge.RollbackErrorRate {
		t.Fatalf("clean data after a rejection: %s; want rollback_error_rate to stay", r.Verdict)
	}
	j.Restart(f.snap)
	r := j.Judge(f.add(0, 0, 0, 0, 0))
	if r.Verdict != judge.Hold || gate(t, r, "min_requests").Samples != 0 {
		t.Fatalf("after Restart: %s, %d samples; want hold with 0", r.Verdict, gate(t, r, "min_requests").Samples)
	}
	if r := j.Judge(f.add(200, 0, 0, 1800, 0)); r.Verdict != judge.Proceed {
		t.Errorf("200 clean requests after Restart: %s (%v); want proceed", r.Verdict, r.Reasons)
	}
}

func TestSequentialOddTotals(t *testing.T) {
	j := judge.NewSequential(testSLO())
	// Torn read: more errors than requests. Must not underflow or panic.
	r := j.Judge(proxy.Snapshot{Canary: proxy.Stats{Totals: proxy.Totals{Requests: 3, Errors: 5, Slow: 4}}})
	if g := gate(t, r, "error_rate"); g.Samples != 3 {
		t.Errorf("samples = %d; want 3", g.Samples)
	}
	// Totals going backwards (a new source): no underflow, evidence kept.
	r = j.Judge(proxy.Snapshot{Canary: proxy.Stats{Totals: proxy.Totals{Requests: 1}}})
	if g := gate(t, r, "min_requests"); g.Samples != 3 {
		t.Errorf("after totals went backwards: %d samples; want 3", g.Samples)
	}
	r = j.Judge(proxy.Snapshot{Canary: proxy.Stats{Totals: proxy.Totals{Requests: 2}}})
	if g := gate(t, r, "min_requests"); g.Samples != 4 {
		t.Errorf("after one more request: %d samples; want 4", g.Samples)
	}
	if got := j.Name(); got != "sequential" {
		t.Errorf("Name() = %q; want sequential", got)
	}
}

func TestSLOValidate(t *testing.T) {
	tests := []struct {
		name   string
		modify func(*judge.SLO)
		bad    string // substring of the error, "" for valid
	}{
		{"default", func(*judge.SLO) {}, ""},
		{"zero alpha means default", func(s *judge.SLO) { s.Alpha = 0 }, ""},
		{"zero error rate", func(s *judge.SLO) { s.ErrorRate = 0 }, "error rate"},
		{"error rate 1", func(s *judge.SLO) { s.ErrorRate = 1 }, "error rate"},
		{"no p95", func(s *judge.SLO) { s.P95 = 0 }, "p95"},
		{"alpha too big", func(s *judge.SLO) { s.Alpha = 0.5 }, "alpha"},
		{"negative margin", func(s *judge.SLO) { s.Margin = -1 }, "margin"},
		{"margin not a number", func(s *judge.SLO) { s.Margin = math.NaN() }, "margin"},
		{"margin infinite", func(s *judge.SLO) { s.Margin = math.Inf(1) }, "margin"},
		{"compare rollback", func(s *judge.SLO) { s.Compare = judge.CompareRollback }, ""},
		{"compare unknown", func(s *judge.SLO) { s.Compare = 7 }, "comparison"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := testSLO()
			tt.modify(&s)
			err := s.Validate()
			switch {
			case tt.bad == "" && err != nil:
				t.Errorf("Validate() = %v; want nil", err)
			case tt.bad != "" && (err == nil || !strings.Contains(err.Error(), tt.bad) || !errors.Is(err, judge.ErrInvalidSLO)):
				t.Errorf("Validate() = %v; want an ErrInvalidSLO naming %q", err, tt.bad)
			}
		})
	}
}

func TestDegenerateSLOsDoNotBreakTheJudges(t *testing.T) {
	for _, slo := range []judge.SLO{{}, {ErrorRate: 1, Alpha: 2, Margin: -3}, {ErrorRate: 0.9, MinRequests: 1}} {
		for _, j := range []judge.Judge{judge.NewSequential(slo), judge.NewWindow(slo)} {
			var f feeder
			r := j.Judge(f.add(100, 100, 0, 900, 0))
			for _, g := range r.Gates {
				if g.Value != g.Value || g.Threshold != g.Threshold { // NaN
					t.Errorf("%s with %+v: gate %s has NaN: %+v", j.Name(), slo, g.Name, g)
				}
			}
		}
	}
}

// FuzzSequential feeds arbitrary (possibly torn or shrinking) totals and
// checks that every result is well formed.
func FuzzSequential(f *testing.F) {
	f.Add(uint64(100), uint64(1), uint64(5), uint64(900), uint64(3), uint64(40), 0.01, false)   // healthy
	f.Add(uint64(10), uint64(10), uint64(0), uint64(90), uint64(0), uint64(0), 0.01, false)     // outage
	f.Add(uint64(3), uint64(7), uint64(9), uint64(0), uint64(0), uint64(0), 0.5, false)         // torn read
	f.Add(uint64(1), uint64(0), uint64(0), uint64(1), uint64(1), uint64(1), 0.0, false)         // degenerate SLO
	f.Add(uint64(1000), uint64(8), uint64(10), uint64(9000), uint64(2), uint64(90), 0.01, true) // worse than stable, compare rollback
	f.Fuzz(func(t *testing.T, n, errs, slow, sn, serrs, sslow uint64, rate float64, rollback bool) {
		slo := judge.SLO{ErrorRate: rate, P95: time.Second, MinRequests: 10}
		if rollback {
			slo.Compare = judge.CompareRollback
		}
		j := judge.NewSequential(slo)
		var s proxy.Snapshot
		for i := range uint64(4) {
			// Grow, then shrink on the last round.
			k := i + 1
			if i == 3 {
				k = 1
			}
			s.Canary.Totals = proxy.Totals{Requests: n * k, Errors: errs * k, Slow: slow * k}
			s.Stable.Totals = proxy.Totals{Requests: sn * k, Errors: serrs * k, Slow: sslow * k}
			r := j.Judge(s)
			switch r.Verdict {
			case judge.Proceed, judge.Hold, judge.RollbackErrorRate, judge.RollbackLatency:
			default:
				t.Fatalf("verdict %q", r.Verdict)
			}
			if len(r.Reasons) == 0 || len(r.Gates) != 7 {
				t.Fatalf("%d reasons, %d gates", len(r.Reasons), len(r.Gates))
			}
			for _, g := range r.Gates {
				if g.Value != g.Value || g.Threshold != g.Threshold || g.Detail == "" ||
					(g.Verdict != "pass" && g.Verdict != "hold" && g.Verdict != "fail") {
					t.Fatalf("malformed gate %+v", g)
				}
			}
		}
	})
}

func TestWindowQuotesTheHistogramP95(t *testing.T) {
	s := windowSnap(200, 0, 20)
	s.Canary.Latency = proxy.NewHistogram()
	for i := range 200 {
		d := 100 * time.Millisecond
		if i < 20 {
			d = 900 * time.Millisecond
		}
		s.Canary.Latency.Add(d)
	}
	r := judge.NewWindow(testSLO()).Judge(s)
	g := gate(t, r, judge.GateP95Latency)
	if r.Verdict != judge.RollbackLatency || g.Verdict != judge.GateFail || !strings.Contains(g.Detail, "histogram p95 9") {
		t.Errorf("10%% of requests at 900ms: %s, gate %+v; want rollback_latency quoting a ~900ms histogram p95", r.Verdict, g)
	}
}

// After Restart the window judge counts only the requests since, until the
// window has slid past the restart: a reset is not rolled straight back by
// the failures that caused it.
func TestWindowRestartForgetsEarlierFailures(t *testing.T) {
	w := judge.NewWindow(testSLO())
	t0 := time.Unix(1000, 0)
	bad := windowSnap(200, 50, 0)
	bad.At = t0
	if r := w.Judge(bad); r.Verdict != judge.RollbackErrorRate {
		t.Fatalf("failing window: %v; want rollback_error_rate", r.Verdict)
	}
	w.Restart(bad)
	// 150 clean requests since the restart; the window still holds the old 50 errors.
	later := windowSnap(350, 50, 0)
	later.At = t0.Add(time.Minute)
	if r := w.Judge(later); r.Verdict != judge.Proceed {
		t.Errorf("after restart, 150 clean requests: %v %v; want proceed", r.Verdict, r.Reasons)
	}
	// Too few requests since the restart: hold, not a verdict on old data.
	early := windowSnap(260, 50, 0)
	early.At = t0.Add(time.Second)
	if r := w.Judge(early); r.Verdict != judge.Hold {
		t.Errorf("after restart, 60 requests: %v; want hold", r.Verdict)
	}
	// Once the window has slid past the restart, the window's own figures count.
	slid := proxy.Snapshot{At: t0.Add(6 * time.Minute), Window: 5 * time.Minute,
		Canary: proxy.Stats{Requests: 300, Errors: 30, Totals: proxy.Totals{Requests: 650, Errors: 80}}}
	if r := w.Judge(slid); r.Verdict != judge.RollbackErrorRate {
		t.Errorf("window past the restart with 10%% errors: %v; want rollback_error_rate", r.Verdict)
	}
}
