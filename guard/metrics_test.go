package guard_test

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	"github.com/prometheus/common/expfmt"

	"github.com/canaryd/canaryd/guard"
	"github.com/canaryd/canaryd/guard/judge"
)

func TestMetrics(t *testing.T) {
	cfg, clock := baseConfig(t)
	cfg.Steps = []guard.Step{{Weight: 500, Observe: time.Minute}, {Weight: 2500, Observe: time.Minute}}
	cfg.ReplicaID = "web-1:8000"
	h := newHarness(t, cfg, clock)
	h.judge.set(judge.Proceed)
	h.start()

	mfs, err := h.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	if problems, err := promlint.NewWithMetricFamilies(mfs).Lint(); err != nil || len(problems) > 0 {
		t.Fatalf("lint: %v %+v", err, problems)
	}
	series := map[string]int{}
	for _, mf := range mfs {
		series[mf.GetName()] = len(mf.GetMetric())
	}
	if series["canary_verdict"] != 9 || series["canary_rollbacks_total"] != 6 || series["canary_overall_health"] != 3 ||
		series["canary_integrity_status"] != 3 || series["canary_integrity_verified"] != 0 || series["canary_progress_stalled"] != 1 {
		t.Errorf("series per family = %v; want 9 verdicts, 6 rollback reasons, 3 health and 3 integrity statuses, no integrity_verified while disabled, the stalled gauge", series)
	}

	h.must(h.g.Promote("admin"))
	h.judge.set(judge.RollbackLatency)
	h.wake()

	// Issue 16: the rolled-back canary is degraded (stable is healthy), and
	// with integrity off canary_integrity_verified is absent (the API says
	// DISABLED, not verified) while canary_integrity_status says disabled.
	want := `
# HELP canary_fleet_info Always 1: the fleet this canaryd belongs to (its etcd prefix, or its replica id alone), its replica id and its store, for aggregating across replicas.
# TYPE canary_fleet_info gauge
canary_fleet_info{fleet="web-1:8000",replica="web-1:8000",store="file"} 1
# HELP canary_fleet_replicas Live replicas of the fleet as this replica sees them (1 for a single canaryd).
# TYPE canary_fleet_replicas gauge
canary_fleet_replicas 1
# HELP canary_integrity_status 1 on the release-file check's current status (verified, failed, disabled), 0 on the others.
# TYPE canary_integrity_status gauge
canary_integrity_status{status="disabled"} 1
canary_integrity_status{status="failed"} 0
canary_integrity_status{status="verified"} 0
# HELP canary_is_leader 1 while this replica leads its fleet (judges the fleet's evidence and runs the plan); a single canaryd always leads.
# TYPE canary_is_leader gauge
canary_is_leader 1
# HELP canary_overall_health 1 on the current overall health status, 0 on the others.
# TYPE canary_overall_health gauge
canary_overall_health{status="degraded"} 1
canary_overall_health{status="healthy"} 0
canary_overall_health{status="unhealthy"} 0
# HELP canary_progress_stalled 1 while the current step has not advanced within the progress deadline (CANARY_PROGRESS_DEADLINE), else 0.
# TYPE canary_progress_stalled gauge
canary_progress_stalled 0
# HELP canary_rollback_required 1 while the canary is rolled back, else 0.
# TYPE canary_rollback_required gauge
canary_rollback_required 1
# HELP canary_rollbacks_total Rollbacks this process decided, by reason.
# TYPE canary_rollbacks_total counter
canary_rollbacks_total{reason="rollback_deadline"} 0
canary_rollbacks_total{reason="rollback_error_rate"} 0
canary_rollbacks_total{reason="rollback_integrity"} 0
canary_rollbacks_total{reason="rollback_latency"} 1
canary_rollbacks_total{reason="rollback_manual"} 0
canary_rollbacks_total{reason="rollback_metric"} 0
# HELP canary_slo_error_rate_ratio Configured maximum canary error rate (objective).
# TYPE canary_slo_error_rate_ratio gauge
canary_slo_error_rate_ratio 0.01
# HELP canary_slo_p95_seconds Configured maximum canary p95 latency (objective).
# TYPE canary_slo_p95_seconds gauge
canary_slo_p95_seconds 0.5
# HELP canary_state_persist_failures_total Saves of the rollout state that failed (each is retried until one succeeds).
# TYPE canary_state_persist_failures_total counter
canary_state_persist_failures_total 0
# HELP canary_state_persisted 1 while the rollout state in force is saved in the state store, 0 while a change waits to be saved.
# TYPE canary_state_persisted gauge
canary_state_persisted 1
# HELP canary_step Index of the plan's current step (0-based), -1 without a plan.
# TYPE canary_step gauge
canary_step 1
# HELP canary_store_up 1 while the rollout store (etcd, or the state file) answers, 0 while it does not.
# TYPE canary_store_up gauge
canary_store_up 1
# HELP canary_verdict 1 on the current recommendation, 0 on the others.
# TYPE canary_verdict gauge
canary_verdict{verdict="complete"} 0
canary_verdict{verdict="hold"} 0
canary_verdict{verdict="proceed"} 0
canary_verdict{verdict="rollback_deadline"} 0
canary_verdict{verdict="rollback_error_rate"} 0
canary_verdict{verdict="rollback_integrity"} 0
canary_verdict{verdict="rollback_latency"} 1
canary_verdict{verdict="rollback_manual"} 0
canary_verdict{verdict="rollback_metric"} 0
# HELP canary_weight_ratio Share of requests the canary is meant to receive (0..1).
# TYPE canary_weight_ratio gauge
canary_weight_ratio 0
`
	if got := gatherText(t, h.reg); got != strings.TrimLeft(want, "\n") {
		t.Errorf("metrics:\n%s\nwant:\n%s", got, want)
	}

	h.must(h.g.Reset("admin"))
	h.judge.set(judge.Proceed)
	h.wake()
	want = `
# HELP canary_step Index of the plan's current step (0-based), -1 without a plan.
# TYPE canary_step gauge
canary_step 0
# HELP canary_weight_ratio Share of requests the canary is meant to receive (0..1).
# TYPE canary_weight_ratio gauge
canary_weight_ratio 0.05
`
	if got := gatherText(t, h.reg, "canary_weight_ratio", "canary_step"); got != strings.TrimLeft(want, "\n") {
		t.Errorf("metrics:\n%s\nwant:\n%s", got, want)
	}
}

// gatherText renders the named metric families (all if none) in the text
// format, in the order the registry returns them (sorted by name).
func gatherText(t *testing.T, reg *prometheus.Registry, names ...string) string {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, mf := range mfs {
		if len(names) > 0 && !slices.Contains(names, mf.GetName()) {
			continue
		}
		if _, err := expfmt.MetricFamilyToText(&b, mf); err != nil {
			t.Fatal(err)
		}
	}
	return b.String()
}
