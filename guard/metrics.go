package guard

import (
	"fmt"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/canaryd/canaryd/guard/integrity"
	"github.com/canaryd/canaryd/guard/judge"
	"github.com/canaryd/canaryd/split"
)

// metrics are the guard's collectors, set from the facts after every
// evaluation, transition and save (never read back for decisions).
type metrics struct {
	weight            prometheus.Gauge
	rollbackRequired  prometheus.Gauge
	rollbacks         *prometheus.CounterVec
	integrityVerified *prometheus.GaugeVec // no labels: absent while integrity is disabled
	integrityStatus   *prometheus.GaugeVec
	sloErrorRate      prometheus.Gauge
	sloP95            prometheus.Gauge
	overall           *prometheus.GaugeVec
	verdict           *prometheus.GaugeVec
	step              prometheus.Gauge
	persisted         prometheus.Gauge
	persistFailures   prometheus.Counter
	storeUp           prometheus.Gauge
	isLeader          prometheus.Gauge
	fleetReplicas     prometheus.Gauge
	fleetInfo         *prometheus.GaugeVec
	stalled           prometheus.Gauge
}

// integrityStatuses are the values of canary_integrity_status{status}.
var integrityStatuses = []string{integrity.StatusVerified, integrity.StatusFailed, integrity.StatusDisabled}

// newMetrics builds the collectors and registers them with reg (nil: not
// registered). fleet, replica and store label canary_fleet_info.
func newMetrics(reg prometheus.Registerer, slo judge.SLO, fleet, replica, store string) (*metrics, error) {
	m := &metrics{
		weight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "canary_weight_ratio", Help: "Share of requests the canary is meant to receive (0..1).",
		}),
		rollbackRequired: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "canary_rollback_required", Help: "1 while the canary is rolled back, else 0.",
		}),
		rollbacks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "canary_rollbacks_total", Help: "Rollbacks this process decided, by reason.",
		}, []string{"reason"}),
		integrityVerified: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "canary_integrity_verified", Help: "1 when the last release-file check VERIFIED, 0 when it FAILED; absent while integrity checking is DISABLED.",
		}, nil),
		integrityStatus: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "canary_integrity_status", Help: "1 on the release-file check's current status (verified, failed, disabled), 0 on the others.",
		}, []string{"status"}),
		sloErrorRate: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "canary_slo_error_rate_ratio", Help: "Configured maximum canary error rate (objective).",
		}),
		sloP95: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "canary_slo_p95_seconds", Help: "Configured maximum canary p95 latency (objective).",
		}),
		overall: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "canary_overall_health", Help: "1 on the current overall health status, 0 on the others.",
		}, []string{"status"}),
		verdict: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "canary_verdict", Help: "1 on the current recommendation, 0 on the others.",
		}, []string{"verdict"}),
		step: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "canary_step", Help: "Index of the plan's current step (0-based), -1 without a plan.",
		}),
		persisted: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "canary_state_persisted", Help: "1 while the rollout state in force is saved in the state store, 0 while a change waits to be saved.",
		}),
		persistFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "canary_state_persist_failures_total", Help: "Saves of the rollout state that failed (each is retried until one succeeds).",
		}),
		storeUp: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "canary_store_up", Help: "1 while the rollout store (etcd, or the state file) answers, 0 while it does not.",
		}),
		isLeader: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "canary_is_leader", Help: "1 while this replica leads its fleet (judges the fleet's evidence and runs the plan); a single canaryd always leads.",
		}),
		fleetReplicas: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "canary_fleet_replicas", Help: "Live replicas of the fleet as this replica sees them (1 for a single canaryd).",
		}),
		fleetInfo: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "canary_fleet_info", Help: "Always 1: the fleet this canaryd belongs to (its etcd prefix, or its replica id alone), its replica id and its store, for aggregating across replicas.",
		}, []string{"fleet", "replica", "store"}),
	}
	m.stalled = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "canary_progress_stalled", Help: "1 while the current step has not advanced within the progress deadline (CANARY_PROGRESS_DEADLINE), else 0.",
	})
	m.fleetInfo.WithLabelValues(fleet, replica, store).Set(1)
	for _, r := range RollbackReasons() {
		m.rollbacks.WithLabelValues(string(r))
	}
	m.sloErrorRate.Set(slo.ErrorRate)
	m.sloP95.Set(slo.P95.Seconds())
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.weight, m.rollbackRequired, m.rollbacks, m.integrityVerified, m.integrityStatus,
		m.sloErrorRate, m.sloP95, m.overall, m.verdict, m.step, m.persisted, m.persistFailures,
		m.storeUp, m.isLeader, m.fleetReplicas, m.fleetInfo, m.stalled} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register metrics: %w", err)
		}
	}
	return m, nil
}

// updateMetricsLocked sets the gauges from the facts as of the last
// evaluation.
func (g *Guard) updateMetricsLocked() {
	if g.m != nil {
		f := g.factsLocked(g.stableHealth, g.canaryHealth)
		g.m.update(&f)
	}
}

// update sets the gauges from f.
func (m *metrics) update(f *facts) {
	m.weight.Set(float64(f.rec.Weight) / split.MaxWeight)
	m.rollbackRequired.Set(b2f(f.rec.State == StateRolledBack))
	switch f.integ.Status {
	case integrity.StatusDisabled, "":
		m.integrityVerified.Reset()
	default:
		m.integrityVerified.WithLabelValues().Set(b2f(f.integ.Status == integrity.StatusVerified))
	}
	for _, s := range integrityStatuses {
		m.integrityStatus.WithLabelValues(strings.ToLower(s)).Set(b2f(s == f.integ.Status))
	}
	status, _ := f.overallHealth()
	for _, s := range []string{healthHealthy, healthDegraded, healthUnhealthy} {
		m.overall.WithLabelValues(s).Set(b2f(s == status))
	}
	rec := recommendation(f)
	for _, v := range Recommendations() {
		m.verdict.WithLabelValues(string(v)).Set(b2f(v == rec))
	}
	if len(f.rec.Plan.Steps) == 0 {
		m.step.Set(-1)
	} else {
		m.step.Set(float64(f.rec.Step))
	}
	m.persisted.Set(b2f(f.persisted))
	m.storeUp.Set(b2f(f.fleet.storeErr == nil))
	m.isLeader.Set(b2f(f.fleet.leading))
	m.fleetReplicas.Set(float64(f.fleet.live))
	m.stalled.Set(b2f(f.stalled()))
}

// b2f is 1 for true, 0 for false.
func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
