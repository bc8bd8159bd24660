package judge_test

import (
	"errors"
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

func TestSequentialOutageWithinAHandfulOfRequests(t *testing.T) {
	j := judge.NewSequential(testSLO())
	var f feeder
	j.Restart(f.snap)
	for i := 1; i <= 10; i++ {
		r := j.Judge(f.add(1, 1, 0, 9, 0))
		if r.Verdict == judge.RollbackErrorRate {
			if i > 6 {
				t.Errorf("outage rolled back after %d requests; want <= 6", i)
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
	f.Add(uint64(100), uint64(1), uint64(5), uint64(900), uint64(3), uint64(40), 0.01) // healthy
	f.Add(uint64(10), uint64(10), uint64(0), uint64(90), uint64(0), uint64(0), 0.01)   // outage
	f.Add(uint64(3), uint64(7), uint64(9), uint64(0), uint64(0), uint64(0), 0.5)       // torn read
	f.Add(uint64(1), uint64(0), uint64(0), uint64(1), uint64(1), uint64(1), 0.0)       // degenerate SLO
	f.Fuzz(func(t *testing.T, n, errs, slow, sn, serrs, sslow uint64, rate float64) {
		j := judge.NewSequential(judge.SLO{ErrorRate: rate, P95: time.Second, MinRequests: 10})
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
