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
// Connection, removed both ways) and its own keep-alive http.Transport: the
// standard path. Bodies are streamed both ways, event streams flushed per
// event, and protocol upgrades (WebSocket) passed through. A client that
// goes away cancels the upstream request.
//
// The common case takes a leaner path, the fast path (fast.go, over the
// wire package proxy/h1): a bodiless GET, HEAD or OPTIONS to a plain
// http:// backend, with the proxy's own transport (Config.Transport nil),
// is forwarded synchronously in the handler's goroutine over a keep-alive
// connection from the backend's pool, with the same outbound request
// ReverseProxy would send; the answer's head is read whole (at most
// MaxResponseHeaderBytes) and the usual shape parsed straight into the
// client's header. A pooled connection is reused only if nothing (no byte,
// no close) arrived on it since its last answer, checked at the moment of
// reuse. Config.DisableFastPath sends everything the standard way.
//
// Both paths draw on one connection limiter per backend (MaxConnsPerBackend
// connections in all): the fast path's pool takes its slots from it, and
// the Transport dials through it.
//
// Requests are refused before any backend is asked: CONNECT and TRACE
// (405), the HTTP/2 preface PRI on HTTP/1.1 (400); and, by the framing
// guard under the server (StrictListener, StrictTLSListener) or the server
// loop that parses with it (Server), any request with ambiguous framing
// (400).
//
// # Serving
//
// The Proxy is an http.Handler. A plaintext traffic listener is best
// served by Server, proxy/h1's server loop, which reads and answers the
// common HTTP/1.1 request without net/http's server and hands the rest
// (upgrades, the HTTP/2 preface, anything unusual) to an http.Server with
// the Proxy as its handler; TLS is served by that http.Server on a
// StrictTLSListener. ServeHTTP is the same either way, and keeps nothing
// of a request after it returns (the loop reuses it).
//
// A request body is read before an upstream connection is taken: whole
// when it is at most RequestBuffer bytes (it is then sent with a
// Content-Length and can be sent again on failover), else its first
// RequestBuffer bytes, the rest streaming. The client must send each
// RequestBuffer bytes within BodyReadTimeout, or it gets 408: a slow client
// holds no upstream connection while its small body trickles in, and
// cannot hold one long with a large one. Requests whose body streams may
// hold half of MaxConnsPerBackend at most; the rest wait their turn, holding
// no connection, so uploads never take every connection.
//
// Failures to get a response answer 504 (timeouts) or 502 (anything else,
// including a status outside 100-599 and a head over
// MaxResponseHeaderBytes). A canary request that fails before any byte
// reached the canary (connect, DNS or TLS failure, request body not yet
// sent) is retried once on stable: the client sees stable's answer, the
// canary is charged one failed request.
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
// response (ErrorKind). Latency is the backend's: the time from the start
// of ServeHTTP until the response is finished, less the time spent waiting
// for the client, that is reading its body ahead (RequestBuffer), waiting in
// reads of the rest of its body, and blocked writing the response to it. A
// slow uploader or a slow reader cannot make a backend look slow. Three
// cases are special:
//   - A protocol upgrade (101) counts as a request, never as slow, and stays
//     out of the latency histograms: its duration is a connection lifetime.
//   - A client that goes away before the response headers are sent is not
//     the backend's fault: it is counted only in canary_client_canceled_total
//     and canary_requests_total{code="499"}, not in the window or the totals.
//     A client leaving after the headers (closing an event stream, say) ends
//     an ordinary request with the backend's status.
//   - A request canaryd answers itself for the client's fault (a refused
//     method 405/400, a malformed body 400, a body too slow 408: KindClient)
//     is counted only in canary_requests_total with that code.
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
	// MaxResponseHeaderBytes bounds a backend answer's head; a larger one
	// is a 502 and the backend's error, read no further. Zero means 64 KiB.
	MaxResponseHeaderBytes int
	// RequestBuffer is how much of a request body is read before an
	// upstream connection is taken: a body up to this size is read whole, a
	// larger one streams after its first RequestBuffer bytes. Zero means
	// 64 KiB.
	RequestBuffer int
	// BodyReadTimeout is how long a client may take to send each
	// RequestBuffer bytes of a request body (or the rest, if less); a slower
	// client gets 408, its own failure. (A backend that reads a body slower
	// than that, stalling the client, ends it too.) Zero means 60s.
	BodyReadTimeout time.Duration
	// DisableFastPath sends every request through httputil.ReverseProxy
	// (the standard path), to compare the two. The zero value keeps the
	// fast path on.
	DisableFastPath bool
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
	// replaced by "[REDACTED]". Nil means nothing to redact. SetRedact
	// replaces them while the proxy runs.
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
