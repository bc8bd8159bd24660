package proxy_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	"github.com/prometheus/common/expfmt"
)

// (prometheus/testutil itself needs github.com/kylelemons/godebug, which is
// not in go.sum; promlint and expfmt do the same job here.)

// gatherText renders the named metric families in the text format.
func gatherText(t testing.TB, reg *prometheus.Registry, names ...string) string {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("Gather: %v", err)
	}
	var b strings.Builder
	for _, mf := range mfs {
		for _, n := range names {
			if mf.GetName() == n {
				if _, err := expfmt.MetricFamilyToText(&b, mf); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	return b.String()
}

// seriesCount is the number of series of the named family.
func seriesCount(t testing.TB, reg *prometheus.Registry, name string) int {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("Gather: %v", err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return len(mf.GetMetric())
		}
	}
	return 0
}

// metricValue returns the value of the counter (or histogram count) of name
// with exactly the given labels, 0 if absent.
func metricValue(t testing.TB, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("Gather: %v", err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			if len(m.GetLabel()) != len(labels) {
				continue
			}
			for _, lp := range m.GetLabel() {
				if labels[lp.GetName()] != lp.GetValue() {
					continue next
				}
			}
			if h := m.GetHistogram(); h != nil {
				return float64(h.GetSampleCount())
			}
			if g := m.GetGauge(); g != nil {
				return g.GetValue()
			}
			return m.GetCounter().GetValue()
		}
	}
	return 0
}

func TestMetrics(t *testing.T) {
	p, _, reg := func() (http.Handler, any, *prometheus.Registry) {
		p, _, _, reg := newFakeProxy(t, 10, nil)
		return p, nil, reg
	}()
	do(p, "stable", 200, 3*time.Millisecond)
	do(p, "stable", 200, 300*time.Millisecond)
	do(p, "stable", 404, 20*time.Second)
	do(p, "canary", 503, 500*time.Millisecond)

	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("Gather: %v", err)
	}
	if problems, err := promlint.NewWithMetricFamilies(mfs).Lint(); err != nil || len(problems) > 0 {
		t.Errorf("lint: %v %v", problems, err)
	}
	want := `# HELP canary_errors_total Attempts that count as errors, as the judge counts them: no answer, an HTTP status in CANARY_ERROR_STATUSES or a gRPC status in CANARY_GRPC_ERROR_CODES.
# TYPE canary_errors_total counter
canary_errors_total{backend="canary"} 1
canary_errors_total{backend="stable"} 0
# HELP canary_request_duration_seconds Time from receiving a request until its response was finished, by backend (protocol upgrades and canceled requests excluded; a gRPC call until its answer's headers).
# TYPE canary_request_duration_seconds histogram
canary_request_duration_seconds_bucket{backend="canary",le="0.005"} 0
canary_request_duration_seconds_bucket{backend="canary",le="0.01"} 0
canary_request_duration_seconds_bucket{backend="canary",le="0.025"} 0
canary_request_duration_seconds_bucket{backend="canary",le="0.05"} 0
canary_request_duration_seconds_bucket{backend="canary",le="0.1"} 0
canary_request_duration_seconds_bucket{backend="canary",le="0.25"} 0
canary_request_duration_seconds_bucket{backend="canary",le="0.5"} 1
canary_request_duration_seconds_bucket{backend="canary",le="1"} 1
canary_request_duration_seconds_bucket{backend="canary",le="2.5"} 1
canary_request_duration_seconds_bucket{backend="canary",le="5"} 1
canary_request_duration_seconds_bucket{backend="canary",le="10"} 1
canary_request_duration_seconds_bucket{backend="canary",le="+Inf"} 1
canary_request_duration_seconds_sum{backend="canary"} 0.5
canary_request_duration_seconds_count{backend="canary"} 1
canary_request_duration_seconds_bucket{backend="stable",le="0.005"} 1
canary_request_duration_seconds_bucket{backend="stable",le="0.01"} 1
canary_request_duration_seconds_bucket{backend="stable",le="0.025"} 1
canary_request_duration_seconds_bucket{backend="stable",le="0.05"} 1
canary_request_duration_seconds_bucket{backend="stable",le="0.1"} 1
canary_request_duration_seconds_bucket{backend="stable",le="0.25"} 1
canary_request_duration_seconds_bucket{backend="stable",le="0.5"} 2
canary_request_duration_seconds_bucket{backend="stable",le="1"} 2
canary_request_duration_seconds_bucket{backend="stable",le="2.5"} 2
canary_request_duration_seconds_bucket{backend="stable",le="5"} 2
canary_request_duration_seconds_bucket{backend="stable",le="10"} 2
canary_request_duration_seconds_bucket{backend="stable",le="+Inf"} 3
canary_request_duration_seconds_sum{backend="stable"} 20.303
canary_request_duration_seconds_count{backend="stable"} 3
# HELP canary_requests_total Attempts by backend and status code: each request sent to a backend, a retried or failed-over request once per attempt (502/504: the attempt got no answer; 499: the client went away before the response).
# TYPE canary_requests_total counter
canary_requests_total{backend="canary",code="503"} 1
canary_requests_total{backend="stable",code="200"} 2
canary_requests_total{backend="stable",code="404"} 1
# HELP canary_responses_total Answers sent to clients, one per client request, by the backend whose answer it was and status code.
# TYPE canary_responses_total counter
canary_responses_total{backend="canary",code="503"} 1
canary_responses_total{backend="stable",code="200"} 2
canary_responses_total{backend="stable",code="404"} 1
`
	if got := gatherText(t, reg, "canary_requests_total", "canary_request_duration_seconds", "canary_responses_total", "canary_errors_total"); got != want {
		t.Errorf("metrics:\n%s\nwant:\n%s", got, want)
	}
	// 6 kinds x 2 backends, all exported even at zero.
	if n := seriesCount(t, reg, "canary_upstream_errors_total"); n != 12 {
		t.Errorf("canary_upstream_errors_total series = %d; want 12", n)
	}
	if n := seriesCount(t, reg, "canary_health_checks_total"); n != 0 {
		t.Errorf("canary_health_checks_total series without health checks = %d; want 0", n)
	}
}
