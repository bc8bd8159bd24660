package judge_test

import (
	"testing"
	"time"

	"github.com/canaryd/canaryd/guard/judge"
	"github.com/canaryd/canaryd/proxy"
)

// BenchmarkJudge measures one judgement of a healthy canary, as the guard
// makes every second and after every canary error.
func BenchmarkJudge(b *testing.B) {
	slo := judge.SLO{ErrorRate: 0.01, P95: 500 * time.Millisecond, MinRequests: 100}
	for _, j := range []judge.Judge{judge.NewSequential(slo), judge.NewWindow(slo)} {
		b.Run(j.Name(), func(b *testing.B) {
			b.ReportAllocs()
			var s proxy.Snapshot
			var i uint64
			for b.Loop() {
				i++
				s.Canary.Totals = proxy.Totals{Requests: 50 * i, Errors: i / 4, Slow: i}
				s.Stable.Totals = proxy.Totals{Requests: 450 * i, Errors: i, Slow: 10 * i}
				s.Canary.Requests, s.Canary.Errors, s.Canary.Slow = min(50*i, 15000), 0, 0
				_ = j.Judge(s)
			}
		})
	}
}
