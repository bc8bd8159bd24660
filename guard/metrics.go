package guard

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/canaryd/canaryd/guard/integrity"
	"github.com/canaryd/canaryd/guard/judge"
)

// Overall health values.
const (
	healthHealthy   = "healthy"
	healthDegraded  = "degraded"
	healthUnhealthy = "unhealthy"
)

// metrics are the guard's collectors, set after every evaluation and
// transition (never read back for decisions).
type metrics struct {
	weight            prometheus.Gauge
	rollbackRequired  prometheus.Gauge
	rollbacks         *prometheus.CounterVec
	integrityVerified prometheus.Gauge
	sloErrorRate      prometheus.Gauge
	sloP95            prometheus.Gauge
	overall           *prometheus.GaugeVec
	verdict           *prometheus.GaugeVec
	step              prometheus.Gauge
}

// newMetrics builds the collectors and registers them with reg (nil: not
// registered).
func newMetrics(reg prometheus.Registerer, slo judge.SLO) (*metrics, error) {
	m := &metrics{
		weight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "canary_weight_ratio", Help: "Share of requests the canary is meant to receive (0..1).",
		}),
		rollbackRequired: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "canary_rollback_required", Help: "1 while the canary is rolled back, else 0.",
		}),
		rollbacks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "canary_rollbacks_total", Help: "Rollbacks since start, by reason.",
		}, []string{"reason"}),
		integrityVerified: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "canary_integrity_verified", Help: "0 when the last release-file check FAILED; 1 when VERIFIED or DISABLED.",
		}),
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
	}
	for _, r := range rollbackReasons() {
		m.rollbacks.WithLabelValues(r)
	}
	m.sloErrorRate.Set(slo.ErrorRate)
	m.sloP95.Set(slo.P95.Seconds())
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.weight, m.rollbackRequired, m.rollbacks, m.integrityVerified,
		m.sloErrorRate, m.sloP95, m.overall, m.verdict, m.step} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register metrics: %w", err)
		}
	}
	return m, nil
}

// updateMetricsLocked sets the gauges from the current state.
func (g *Guard) updateMetricsLocked() {
	m := g.m
	if m == nil {
		return // during New, before the collectors exist
	}
	m.weight.Set(float64(g.weight) / fullWeight)
	m.rollbackRequired.Set(b2f(g.state == StateRolledBack))
	m.integrityVerified.Set(b2f(g.integ.Status != integrity.StatusFailed))
	status, _ := g.healthLocked()
	for _, s := range []string{healthHealthy, healthDegraded, healthUnhealthy} {
		m.overall.WithLabelValues(s).Set(b2f(s == status))
	}
	rec := g.recommendationLocked()
	for _, v := range allRecommendations() {
		m.verdict.WithLabelValues(v).Set(b2f(v == rec))
	}
	if len(g.cfg.Steps) == 0 {
		m.step.Set(-1)
	} else {
		m.step.Set(float64(g.step))
	}
}

// b2f is 1 for true, 0 for false.
func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
