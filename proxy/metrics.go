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

	codes  [maxStatus]atomic.Uint64
	kinds  [numKinds]atomic.Uint64
	durBkt [len(durationBounds) + 1]atomic.Uint64 // non-cumulative; last is +Inf
	durSum atomic.Int64                           // nanoseconds
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

// collector exports the proxy's own counters; nothing on the request path
// touches a Prometheus metric.
type collector struct {
	p *Proxy

	requests *prometheus.Desc
	duration *prometheus.Desc
	upstream *prometheus.Desc
	canceled *prometheus.Desc
	health   *prometheus.Desc
}

func newCollector(p *Proxy) *collector {
	return &collector{
		p: p,
		requests: prometheus.NewDesc("canary_requests_total",
			"Proxied requests by backend and response status code (499: the client went away before the response).",
			[]string{"backend", "code"}, nil),
		duration: prometheus.NewDesc("canary_request_duration_seconds",
			"Time from receiving a request until its response was finished, by backend (protocol upgrades and canceled requests excluded).",
			[]string{"backend"}, nil),
		upstream: prometheus.NewDesc("canary_upstream_errors_total",
			"Failures to get a response from a backend, by kind (connect, dns, tls, timeout, reset, other).",
			[]string{"backend", "kind"}, nil),
		canceled: prometheus.NewDesc("canary_client_canceled_total",
			"Requests whose client went away before the response headers were sent (not backend errors).",
			[]string{"backend"}, nil),
		health: prometheus.NewDesc("canary_health_checks_total",
			"Active health check probes by backend and result (success or failure).",
			[]string{"backend", "result"}, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.requests
	ch <- c.duration
	ch <- c.upstream
	ch <- c.canceled
	ch <- c.health
}

// Collect implements prometheus.Collector.
func (c *collector) Collect(ch chan<- prometheus.Metric) {
	for _, b := range [...]split.Backend{split.Stable, split.Canary} {
		name := b.String()
		ctr := &c.p.backends[b].ctr
		for code := range ctr.codes {
			if v := ctr.codes[code].Load(); v > 0 {
				label := strconv.Itoa(code)
				if code == 0 {
					label = "000"
				}
				ch <- prometheus.MustNewConstMetric(c.requests, prometheus.CounterValue, float64(v), name, label)
			}
		}
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
		if h := c.p.backends[b].health; h != nil {
			ok, failed := h.cumulative()
			ch <- prometheus.MustNewConstMetric(c.health, prometheus.CounterValue, float64(ok), name, "success")
			ch <- prometheus.MustNewConstMetric(c.health, prometheus.CounterValue, float64(failed), name, "failure")
		}
	}
}
