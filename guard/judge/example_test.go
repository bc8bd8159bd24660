package judge_test

import (
	"fmt"
	"time"

	"github.com/canaryd/canaryd/guard/judge"
	"github.com/canaryd/canaryd/proxy"
)

// A canary whose every request fails is rolled back on its fourth request;
// each gate explains itself.
func ExampleNewSequential() {
	j := judge.NewSequential(judge.SLO{ErrorRate: 0.01, P95: 500 * time.Millisecond, MinRequests: 100})
	var s proxy.Snapshot
	j.Restart(s)
	var r judge.Result
	for r.Verdict != judge.RollbackErrorRate {
		s.Canary.Totals.Requests++
		s.Canary.Totals.Errors++
		s.Stable.Totals.Requests += 9
		r = j.Judge(s)
	}
	fmt.Println(r.Verdict, "after", s.Canary.Totals.Requests, "requests:", r.Reasons[0])
	for _, g := range r.Gates {
		fmt.Printf("%-22s %-5s value %6.2f threshold %6.2f %-8s samples %d\n", g.Name, g.Verdict, g.Value, g.Threshold, g.Unit, g.Samples)
	}
	// Output:
	// rollback_error_rate after 4 requests: 4 of 4 requests failed (100.00%) since the step started; SLO 1.00%: above the SLO, concluded after 4 requests
	// min_requests           hold  value   4.00 threshold 100.00 requests samples 4
	// error_rate             fail  value   7.35 threshold   5.99 log_lr   samples 4
	// error_rate_change      pass  value   4.39 threshold  13.18 log_lr   samples 4
	// p95_latency            pass  value  -0.50 threshold   5.99 log_lr   samples 4
	// p95_latency_change     pass  value   0.00 threshold  14.88 log_lr   samples 0
	// error_rate_vs_stable   pass  value   2.24 threshold   5.30 log_lr   samples 4
	// p95_latency_vs_stable  pass  value   0.00 threshold   5.30 log_lr   samples 4
}
