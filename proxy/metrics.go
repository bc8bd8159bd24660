package proxy

import (
	"strconv"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/canaryd/canaryd/split"
)

// durationBounds (a read-only table) are the upper bounds of canary_request_duration_seconds
// (prometheus.DefBuckets: 5ms .. 10s, 0.5s exactly so the default p95 SLO
// is a bucket boundary).
var durationBounds = [...]time.Duration{
	5 * time.Millisecond, 10 * time.Millisecond, 25 * time.Millisecond,
	50 * time.Millisecond, 100 * time.Millisecond, 250 * time.Millisecond,
	500 * time.Millisecond, time.Second, 2500 * time.Millisecond,
	5 * time.Second, 10 * time.Second,
}

// maxStatus bounds the status codes counted per code; others count as 0.
const maxStatus = 1000

// counters are one backend's cumulative figures, all atomics: they are fed
// on the request path and read by Totals and the Prometheus collector.
type counters struct {
	requests atomic.Uint64 // requests recorded in the window (not canceled)
	errors   atomic.Uint64
	slow     atomic.Uint64
	canceled atomic.Uint64

	codes   [maxStatus]atomic.Uint64 // attempts by status
	answers [maxStatus]atomic.Uint64 // client answers by status (this backend's last attempts)
	kinds   [numKinds]atomic.Uint64
	grpc    [numGRPCCodes]atomic.Uint64

	retries         atomic.Uint64                          // requests sent again to another endpoint of this backend
	failovers       atomic.Uint64                          // canary requests sent to stable instead
	ejectionsCapped atomic.Uint64                          // ejections refused: half the pool was out
	durBkt          [len(durationBounds) + 1]atomic.Uint64 // non-cumulative; last is +Inf
	durSum          atomic.Int64                           // nanoseconds
}

func (c *counters) observeDuration(d time.Duration) {
	i := 0
	for i < len(durationBounds) && d > durationBounds[i] {
		i++
	}
	c.durBkt[i].Add(1)
	c.durSum.Add(int64(d))
}

func (c *counters) totals() Totals {
	return Totals{Requests: c.requests.Load(), Errors: c.errors.Load(), Slow: c.slow.Load()}
}

// maxEndpointSeries bounds the per-endpoint series of each backend: the
// first maxEndpointSeries endpoints of a pool (in its order) have their
// own, the rest share endpoint="other". With a name that resolves to
// ever-new addresses, a backend's endpoint series stay at most
// maxEndpointSeries+1 per metric, and an endpoint that leaves the pool
// leaves the metrics.
const maxEndpointSeries = 32

// otherEndpoints is the endpoint label of the endpoints past the cap.
const otherEndpoints = "other"

// collector exports the proxy's own counters; nothing on the request path
// touches a Prometheus metric.
type collector struct {
	p *Proxy

	requests  *prometheus.Desc
	answers   *prometheus.Desc
	errors    *prometheus.Desc
	duration  *prometheus.Desc
	upstream  *prometheus.Desc
	canceled  *prometheus.Desc
	retries   *prometheus.Desc
	failovers *prometheus.Desc
	grpc      *prometheus.Desc
	health    *prometheus.Desc

	endpoints   *prometheus.Desc
	epRequests  *prometheus.Desc
	epErrors    *prometheus.Desc
	epInFlight  *prometheus.Desc
	epEjected   *prometheus.Desc
	epEjections *prometheus.Desc
	epHealthy   *prometheus.Desc

	mirrorRequests *prometheus.Desc
	mirrorErrors   *prometheus.Desc
	mirrorDropped  *prometheus.Desc
	mirrorSkipped  *prometheus.Desc
	mirrorInFlight *prometheus.Desc
}

func newCollector(p *Proxy) *collector {
	ep := []string{"backend", "endpoint"}
	return &collector{
		p: p,
		requests: prometheus.NewDesc("canary_requests_total",
			"Attempts by backend and status code: each request sent to a backend, a retried or failed-over request once per attempt (502/504: the attempt got no answer; 499: the client went away before the response).",
			[]string{"backend", "code"}, nil),
		answers: prometheus.NewDesc("canary_responses_total",
			"Answers sent to clients, one per client request, by the backend whose answer it was and status code.",
			[]string{"backend", "code"}, nil),
		errors: prometheus.NewDesc("canary_errors_total",
			"Attempts that count as errors, as the judge counts them: no answer, an HTTP status in CANARY_ERROR_STATUSES or a gRPC status in CANARY_GRPC_ERROR_CODES.",
			[]string{"backend"}, nil),
		duration: prometheus.NewDesc("canary_request_duration_seconds",
			"Time from receiving a request until its response was finished, by backend (protocol upgrades and canceled requests excluded; a gRPC call until its answer's headers).",
			[]string{"backend"}, nil),
		upstream: prometheus.NewDesc("canary_upstream_errors_total",
			"Failures to get a response from a backend, by kind (connect, dns, tls, timeout, reset, other).",
			[]string{"backend", "kind"}, nil),
		canceled: prometheus.NewDesc("canary_client_canceled_total",
			"Requests whose client went away before the response headers were sent (not backend errors).",
			[]string{"backend"}, nil),
		retries: prometheus.NewDesc("canary_retries_total",
			"Requests sent again to another endpoint of the same backend after their connection failed.",
			[]string{"backend"}, nil),
		failovers: prometheus.NewDesc("canary_failovers_total",
			"Canary requests sent to stable instead because the canary could not be reached (the failed attempt stays in canary_requests_total).",
			nil, nil),
		grpc: prometheus.NewDesc("canary_grpc_responses_total",
			"gRPC answers by backend and gRPC status (grpc-status of the headers or trailers).",
			[]string{"backend", "grpc_code"}, nil),
		health: prometheus.NewDesc("canary_health_checks_total",
			"Active health check rounds by backend and result: a round fails when no endpoint of the pool passes its probe.",
			[]string{"backend", "result"}, nil),
		endpoints: prometheus.NewDesc("canary_endpoints",
			"Endpoints of each backend's pool by state: healthy (takes traffic), unhealthy (fails its health checks), ejected.",
			[]string{"backend", "state"}, nil),
		epRequests: prometheus.NewDesc("canary_endpoint_requests_total",
			"Attempts sent to each endpoint (the first 32 of a pool; endpoint=\"other\" for the rest).", ep, nil),
		epErrors: prometheus.NewDesc("canary_endpoint_errors_total",
			"Attempts of each endpoint that count as errors.", ep, nil),
		epInFlight: prometheus.NewDesc("canary_endpoint_in_flight",
			"Requests each endpoint is serving now.", ep, nil),
		epEjected: prometheus.NewDesc("canary_endpoint_ejected",
			"1 while the endpoint is ejected from its pool (for endpoint=\"other\", how many are).", ep, nil),
		epEjections: prometheus.NewDesc("canary_endpoint_ejections_total",
			"Times each endpoint was ejected after consecutive failures.", ep, nil),
		epHealthy: prometheus.NewDesc("canary_endpoint_healthy",
			"1 while the endpoint passes its health checks, or without checks (for endpoint=\"other\", how many do).", ep, nil),
		mirrorRequests: prometheus.NewDesc("canary_mirror_requests_total",
			"Mirrored copies of stable's requests sent to the canary (shadow traffic), by the canary's status code (502/504: no answer). Canary evidence for the judge, not in canary_requests_total.",
			[]string{"code"}, nil),
		mirrorErrors: prometheus.NewDesc("canary_mirror_errors_total",
			"Mirrored copies that count as errors, as the judge counts them.", nil, nil),
		mirrorDropped: prometheus.NewDesc("canary_mirror_dropped_total",
			"Copies not made because the most copies allowed at once were queued or in flight (the canary is slow, or traffic high).", nil, nil),
		mirrorSkipped: prometheus.NewDesc("canary_mirror_skipped_total",
			"Requests due a copy that were not copied because their body is over 64 KiB or streams.", nil, nil),
		mirrorInFlight: prometheus.NewDesc("canary_mirror_in_flight",
			"Copies queued or being sent to the canary now.", nil, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.requests, c.answers, c.errors, c.duration, c.upstream, c.canceled,
		c.retries, c.failovers, c.grpc, c.health, c.endpoints,
		c.epRequests, c.epErrors, c.epInFlight, c.epEjected, c.epEjections, c.epHealthy,
		c.mirrorRequests, c.mirrorErrors, c.mirrorDropped, c.mirrorSkipped, c.mirrorInFlight} {
		ch <- d
	}
}

// codeLabel is a status code's label value.
func codeLabel(code int) string {
	if code == 0 {
		return "000"
	}
	return strconv.Itoa(code)
}

// Collect implements prometheus.Collector.
func (c *collector) Collect(ch chan<- prometheus.Metric) {
	now := c.p.since(c.p.now())
	for _, b := range [...]split.Backend{split.Stable, split.Canary} {
		name := b.String()
		bk := c.p.backends[b]
		ctr := &bk.ctr
		for code := range ctr.codes {
			if v := ctr.codes[code].Load(); v > 0 {
				ch <- prometheus.MustNewConstMetric(c.requests, prometheus.CounterValue, float64(v), name, codeLabel(code))
			}
			if v := ctr.answers[code].Load(); v > 0 {
				ch <- prometheus.MustNewConstMetric(c.answers, prometheus.CounterValue, float64(v), name, codeLabel(code))
			}
		}
		ch <- prometheus.MustNewConstMetric(c.errors, prometheus.CounterValue, float64(ctr.errors.Load()), name)
		var (
			count   uint64
			buckets = make(map[float64]uint64, len(durationBounds))
		)
		for i := range ctr.durBkt {
			count += ctr.durBkt[i].Load()
			if i < len(durationBounds) {
				buckets[durationBounds[i].Seconds()] = count
			}
		}
		sum := time.Duration(ctr.durSum.Load()).Seconds()
		ch <- prometheus.MustNewConstHistogram(c.duration, count, sum, buckets, name)
		for k := firstUpstreamKind; k <= lastUpstreamKind; k++ {
			ch <- prometheus.MustNewConstMetric(c.upstream, prometheus.CounterValue, float64(ctr.kinds[k].Load()), name, k.String())
		}
		ch <- prometheus.MustNewConstMetric(c.canceled, prometheus.CounterValue, float64(ctr.canceled.Load()), name)
		ch <- prometheus.MustNewConstMetric(c.retries, prometheus.CounterValue, float64(ctr.retries.Load()), name)
		for code := range ctr.grpc {
			if v := ctr.grpc[code].Load(); v > 0 {
				ch <- prometheus.MustNewConstMetric(c.grpc, prometheus.CounterValue, float64(v), name, grpcCodeNames[code])
			}
		}
		if c.p.cfg.HealthPath != "" {
			ok, failed := bk.rounds.cumulative()
			ch <- prometheus.MustNewConstMetric(c.health, prometheus.CounterValue, float64(ok), name, "success")
			ch <- prometheus.MustNewConstMetric(c.health, prometheus.CounterValue, float64(failed), name, "failure")
		}
		c.collectEndpoints(ch, bk, name, now)
	}
	ch <- prometheus.MustNewConstMetric(c.failovers, prometheus.CounterValue, float64(c.p.backends[split.Canary].ctr.failovers.Load()))
	c.collectMirror(ch)
}

// collectMirror exports the shadow traffic's counters; zeros (and no
// per-code series) when mirroring is off, so that dashboards and rules
// find the series either way.
func (c *collector) collectMirror(ch chan<- prometheus.Metric) {
	var errs, dropped, skipped uint64
	var inFlight int64
	if m := c.p.mirror; m != nil {
		for code := range m.codes {
			if v := m.codes[code].Load(); v > 0 {
				ch <- prometheus.MustNewConstMetric(c.mirrorRequests, prometheus.CounterValue, float64(v), codeLabel(code))
			}
		}
		errs, dropped, skipped, inFlight = m.errors.Load(), m.dropped.Load(), m.skipped.Load(), m.busy.Load()
	}
	ch <- prometheus.MustNewConstMetric(c.mirrorErrors, prometheus.CounterValue, float64(errs))
	ch <- prometheus.MustNewConstMetric(c.mirrorDropped, prometheus.CounterValue, float64(dropped))
	ch <- prometheus.MustNewConstMetric(c.mirrorSkipped, prometheus.CounterValue, float64(skipped))
	ch <- prometheus.MustNewConstMetric(c.mirrorInFlight, prometheus.GaugeValue, float64(inFlight))
}

// endpointFigures are what the metrics show of one endpoint, or of the
// endpoints past the cap summed.
type endpointFigures struct {
	requests, errors, ejections uint64
	inFlight                    int64
	ejected, healthy            int
}

func (f *endpointFigures) add(g endpointFigures) {
	f.requests += g.requests
	f.errors += g.errors
	f.ejections += g.ejections
	f.inFlight += g.inFlight
	f.ejected += g.ejected
	f.healthy += g.healthy
}

func oneIf(v bool) int {
	if v {
		return 1
	}
	return 0
}

// collectEndpoints exports bk's pool: the count by state, and each
// endpoint's series up to maxEndpointSeries (the rest summed as "other").
func (c *collector) collectEndpoints(ch chan<- prometheus.Metric, bk *backend, name string, now int64) {
	emit := func(label string, f endpointFigures) {
		ch <- prometheus.MustNewConstMetric(c.epRequests, prometheus.CounterValue, float64(f.requests), name, label)
		ch <- prometheus.MustNewConstMetric(c.epErrors, prometheus.CounterValue, float64(f.errors), name, label)
		ch <- prometheus.MustNewConstMetric(c.epEjections, prometheus.CounterValue, float64(f.ejections), name, label)
		ch <- prometheus.MustNewConstMetric(c.epInFlight, prometheus.GaugeValue, float64(f.inFlight), name, label)
		ch <- prometheus.MustNewConstMetric(c.epEjected, prometheus.GaugeValue, float64(f.ejected), name, label)
		ch <- prometheus.MustNewConstMetric(c.epHealthy, prometheus.GaugeValue, float64(f.healthy), name, label)
	}
	var (
		healthy, unhealthy, ejected int
		other                       endpointFigures
		seen                        = map[string]int{}
	)
	all := bk.set.Load().all
	for i, ep := range all {
		f := endpointFigures{
			requests: ep.requests.Load(), errors: ep.errors.Load(), ejections: ep.ejections.Load(),
			inFlight: ep.inFlight.Load(),
			ejected:  oneIf(ep.ejectedUntil.Load() > now), healthy: oneIf(ep.healthy.Load()),
		}
		switch {
		case f.ejected == 1:
			ejected++
		case f.healthy == 0:
			unhealthy++
		default:
			healthy++
		}
		if i >= maxEndpointSeries {
			other.add(f)
			continue
		}
		// Two URLs may name one address (two host names of one server):
		// label values stay distinct.
		label := ep.addr
		if n := seen[ep.addr]; n > 0 {
			label += "#" + strconv.Itoa(n+1)
		}
		seen[ep.addr]++
		emit(label, f)
	}
	if len(all) > maxEndpointSeries {
		emit(otherEndpoints, other)
	}
	ch <- prometheus.MustNewConstMetric(c.endpoints, prometheus.GaugeValue, float64(healthy), name, "healthy")
	ch <- prometheus.MustNewConstMetric(c.endpoints, prometheus.GaugeValue, float64(unhealthy), name, "unhealthy")
	ch <- prometheus.MustNewConstMetric(c.endpoints, prometheus.GaugeValue, float64(ejected), name, "ejected")
}
