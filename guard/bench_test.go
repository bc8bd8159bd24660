package guard_test

import (
	"testing"
	"time"

	"github.com/canaryd/canaryd/guard"
	"github.com/canaryd/canaryd/guard/judge"
)

// benchGuard is a guard with a 3-step plan, a full history and two gates, as
// admin sees it under a polling dashboard.
func benchGuard(b *testing.B) *guard.Guard {
	b.Helper()
	cfg, clock := baseConfig(b)
	cfg.Steps = []guard.Step{{Weight: 500, Observe: time.Minute}, {Weight: 2500, Observe: time.Minute}, {Weight: 10000, Observe: time.Minute}}
	h := newHarness(b, cfg, clock)
	h.judge.set(judge.Proceed,
		judge.Gate{Name: "error_rate", Value: 0.002, Threshold: 0.01, Unit: "ratio", Samples: 5000, Verdict: "pass"},
		judge.Gate{Name: "p95_latency", Value: 120, Threshold: 500, Unit: "ms", Samples: 5000, Verdict: "pass"})
	for i := range 200 {
		h.must(h.g.SetWeight(uint32(i), "bench"))
	}
	h.must(h.g.Resume("bench"))
	return h.g
}

func BenchmarkCheck(b *testing.B) {
	g := benchGuard(b)
	b.ReportAllocs()
	for b.Loop() {
		g.Check()
	}
}

func BenchmarkOverview(b *testing.B) {
	g := benchGuard(b)
	b.ReportAllocs()
	for b.Loop() {
		g.Overview()
	}
}

func BenchmarkHealth(b *testing.B) {
	g := benchGuard(b)
	b.ReportAllocs()
	for b.Loop() {
		g.Health()
	}
}

// BenchmarkSetWeight measures one transition, dominated by the atomic,
// fsynced state-file write.
func BenchmarkSetWeight(b *testing.B) {
	g := benchGuard(b)
	b.ReportAllocs()
	w := uint32(0)
	for b.Loop() {
		w = (w + 1) % 10000
		if _, err := g.SetWeight(w, "bench"); err != nil {
			b.Fatal(err)
		}
	}
}
