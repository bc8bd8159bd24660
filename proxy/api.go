// Package proxy is canaryd's request path: the in-path http.Handler that
// forwards each request to the backend split chose, and measures every
// request it forwards (latency, outcome) per backend into a fixed-memory
// sliding window.
//
// CONTRACT SKELETON: the exported names in this file are the contract other
// packages are written against. Bodies are filled in by the proxy owner.
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
	// Transport, if non-nil, is used for both backends (tests). If nil, each
	// backend gets its own http.Transport tuned for proxying.
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
	// Requests, Errors and Slow count requests completed within the window.
	// An error is a status >= 500 or a failure to get a response.
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
// are accurate to within 2% relative error between 100µs and 60s.
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
