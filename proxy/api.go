// Package proxy is canaryd's request path: the in-path http.Handler that
// forwards each request to the backend split chose, and measures every
// request it forwards (latency, outcome) per backend into a fixed-memory
// sliding window.
//
// # Forwarding
//
// Each backend has its own httputil.ReverseProxy (Rewrite: the backend's
// URL and path prefix, X-Forwarded-For appended to the client's chain,
// X-Forwarded-Proto/-Host set; hop-by-hop headers, including those named in
// Connection, removed both ways) and its own keep-alive http.Transport.
// Bodies are streamed both ways, event streams flushed per event, and
// protocol upgrades (WebSocket) passed through. A client that goes away
// cancels the upstream request.
//
// The common case takes a leaner path (fast.go, parse.go): a bodiless GET,
// HEAD, OPTIONS or TRACE to a plain http:// backend, with the proxy's own
// transport (Config.Transport nil), is forwarded synchronously in the
// handler's goroutine over a keep-alive connection from a per-backend idle
// stack, with the same outbound headers ReverseProxy would send; a response
// of the usual shape (HTTP/1.1, Content-Length or no body) is parsed
// straight into the client's header. A reused connection that turns out
// dead before any answer byte is retried once on a new one. Everything
// else (request bodies, upgrades, Expect, https) goes through ReverseProxy.
// Both paths draw on one pool of MaxConnsPerBackend connection slots per
// backend (the Transport dials through it), and one path's idle connections
// are closed when the other waits for a slot.
//
// Failures to get a response answer 504 (timeouts) or 502 (anything else).
// A canary request that fails before any byte reached the canary (connect,
// DNS or TLS failure, request body not yet read) is retried once on stable:
// the client sees stable's answer, the canary is charged one failed request.
//
// # Measurement
//
// Per backend, every finished request is recorded, with atomics only, into
// a ring of 60 time slots covering Config.Window; a slot holds request,
// error and slow counts and a log-linear latency histogram (64 sub-buckets
// per power of two, 65µs..69s, see NumBuckets). A slot is cleared when it is
// first reused, under a mutex taken at most once per slot duration. Snapshot
// sums the slots of the last Window into an immutable copy.
//
// An error is a status >= 500 from the backend or a failure to get a
// response (ErrorKind). Latency runs from the start of ServeHTTP until the
// response is finished. Two cases are special:
//   - A protocol upgrade (101) counts as a request, never as slow, and stays
//     out of the latency histograms: its duration is a connection lifetime.
//   - A client that goes away before the response headers are sent is not
//     the backend's fault: it is counted only in canary_client_canceled_total
//     and canary_requests_total{code="499"}, not in the window or the totals.
//     A client leaving after the headers (closing an event stream, say) ends
//     an ordinary request with the backend's status.
//
// # Metrics
//
// One prometheus.Collector exports the proxy's own counters:
// canary_requests_total{backend,code}, canary_request_duration_seconds{backend},
// canary_upstream_errors_total{backend,kind} (kind: connect, dns, tls,
// timeout, reset, other), canary_client_canceled_total{backend} and, with
// health checks, canary_health_checks_total{backend,result}.
//
// # Health checks
//
// With Config.HealthPath, Run probes both backends every HealthInterval. A
// backend turns unhealthy after 2 consecutive failed probes and healthy again
// after 2 consecutive successes; an unhealthy canary is blocked in the
// splitter (split.BlockUnhealthy) until it recovers.
package proxy

import (
	"crypto/tls"
	"net/http"
	"net/url"
	"time"

	"github.com/canaryd/canaryd/split"
)

// Config configures a Proxy. Zero values mean the documented defaults.
type Config struct {
	// Stable and Canary are the backends' base URLs (http or https, with an
	// optional path prefix). Both are required and must differ.
	Stable *url.URL
	Canary *url.URL
	// Window is the sliding window over which Snapshot reports. Zero means 5m.
	Window time.Duration
	// SlowThreshold is the latency above which a request counts as slow (the
	// p95 SLO). Zero means 500ms.
	SlowThreshold time.Duration
	// Transport, if non-nil, is used for both backends and their health
	// checks (tests); ResponseHeaderTimeout, MaxConnsPerBackend and
	// TLSClientConfig then do not apply. If nil, each backend gets its own
	// http.Transport tuned for proxying (keep-alive, 512 idle connections,
	// 5s dial timeout, HTTP/2 attempted for https).
	Transport http.RoundTripper
	// ResponseHeaderTimeout bounds the wait for a backend's response headers;
	// past it the client gets 504. Zero means 60s.
	ResponseHeaderTimeout time.Duration
	// MaxConnsPerBackend caps concurrent upstream connections per backend.
	// Zero means 1024.
	MaxConnsPerBackend int
	// TLSClientConfig is used for https backends. Nil means the system roots.
	TLSClientConfig *tls.Config
	// HealthPath, if set, is probed on both backends every HealthInterval
	// (zero means 5s) by Run. A canary failing its checks gets no traffic
	// until it recovers (split.BlockUnhealthy).
	HealthPath     string
	HealthInterval time.Duration
	// AccessLog logs one line per proxied request.
	AccessLog bool
	// Redact lists secrets (the admin token) that must never reach the
	// access log: a logged path or request id containing one has it
	// replaced by "[REDACTED]". Nil means nothing to redact.
	Redact []string
	// Now is the clock. Nil means time.Now.
	Now func() time.Time
}

// Snapshot is an immutable copy of both backends' measurements, taken at At.
type Snapshot struct {
	At     time.Time
	Window time.Duration
	Stable Stats
	Canary Stats
}

// Of returns the stats of one backend.
func (s *Snapshot) Of(b split.Backend) *Stats {
	if b == split.Canary {
		return &s.Canary
	}
	return &s.Stable
}

// Stats are one backend's figures: over the sliding window, and cumulative
// since the process started.
type Stats struct {
	// Requests, Errors and Slow count requests completed within the window
	// (the current slot and the 59 before it). An error is a status >= 500
	// or a failure to get a response; slow is a latency above
	// Config.SlowThreshold. Requests whose client went away before the
	// response headers are not counted.
	Requests uint64
	Errors   uint64
	Slow     uint64
	// Latency is the window's latency histogram.
	Latency Histogram
	// Totals are cumulative since start (monotonic, never reset).
	Totals Totals
}

// Totals are cumulative counts for one backend since the process started.
type Totals struct {
	Requests uint64
	Errors   uint64
	Slow     uint64
}

// ErrorRate is Errors/Requests over the window, 0 without requests.
func (s *Stats) ErrorRate() float64 {
	if s.Requests == 0 {
		return 0
	}
	return float64(s.Errors) / float64(s.Requests)
}

// Histogram is a log-linear latency histogram (counts per bucket). Quantiles
// are accurate to within 2% relative error between 100µs and 60s (the bound
// is in fact 0.8%: buckets are at most 1/64 wide and Quantile answers a
// bucket's midpoint). Counts has NumBuckets entries (or none, when empty);
// BucketBounds gives each bucket's range. The zero value is empty.
type Histogram struct {
	Counts []uint64
}

// HealthStats are one backend's active health-check figures.
type HealthStats struct {
	// Enabled is false when no HealthPath is configured.
	Enabled bool
	// Checks and Failures count probes within the window.
	Checks   uint64
	Failures uint64
	// Healthy is the current state: false after consecutive failed probes,
	// true again after consecutive successes.
	Healthy bool
	// LastError describes the last failed probe ("" if none).
	LastError string
	// LastCheck is when the last probe finished (zero if none yet).
	LastCheck time.Time
}

// FailureRate is Failures/Checks, 0 without checks.
func (h *HealthStats) FailureRate() float64 {
	if h.Checks == 0 {
		return 0
	}
	return float64(h.Failures) / float64(h.Checks)
}
