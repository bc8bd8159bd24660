// Package proxy is canaryd's request path: the in-path http.Handler that
// forwards each request to the backend split chose, to an endpoint of that
// backend's pool, and measures every request it forwards (latency,
// outcome) per backend into a fixed-memory sliding window.
//
// # Forwarding
//
// A backend is a pool of endpoints (pool.go): one per configured URL, or
// per address a URL's host name resolves to (resolved again every
// DNSRefresh; the Host sent stays the name's). Within the backend,
// LoadBalancer picks the endpoint: LeastRequest (two at random, the one
// with fewer requests in flight) or RoundRobin, over the endpoints that
// take traffic, without a lock. An endpoint has its own
// httputil.ReverseProxy (Rewrite: the URL and its path prefix,
// X-Forwarded-For appended to the client's chain, X-Forwarded-Proto/-Host
// set; hop-by-hop headers, including those named in Connection, removed
// both ways) over its own keep-alive http.Transport that dials its address:
// the standard path. Bodies are streamed both ways, event streams flushed
// per event, protocol upgrades (WebSocket) passed through, and a client
// that goes away cancels the upstream request. h2c:// URLs speak HTTP/2
// with prior knowledge (net/http's Transport.Protocols), for gRPC (grpc.go).
//
// The common case takes a leaner path, the fast path (fast.go, over the
// wire package proxy/h1): a bodiless GET, HEAD or OPTIONS to a plain
// http:// endpoint, with the proxy's own transport (Config.Transport nil),
// is forwarded synchronously in the handler's goroutine over a keep-alive
// connection from the endpoint's pool, with the same outbound request
// ReverseProxy would send; the answer's head is read whole (at most
// MaxResponseHeaderBytes) and the usual shape parsed straight into the
// client's header. A pooled connection is reused only if nothing (no byte,
// no close) arrived on it since its last answer, checked at the moment of
// reuse. Config.DisableFastPath sends everything the standard way.
//
// Every endpoint of a backend, on both paths, draws on one connection
// limiter (MaxConnsPerBackend connections in all): the fast path's pools
// take their slots from it, and the Transports dial through it.
//
// Requests are refused before any backend is asked: CONNECT and TRACE
// (405), the HTTP/2 preface PRI on HTTP/1.1 (400); and, by the framing
// guard under the server (StrictListener, StrictTLSListener) or the server
// loop that parses with it (Server), any request with ambiguous framing
// (400). StrictH2CListener lets a connection that opens with the HTTP/2
// preface through to a server that serves plaintext HTTP/2
// (ServerConfig.HTTP2PriorKnowledge does the same in the loop).
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
// Content-Length and can be sent again on a retry), else its first
// RequestBuffer bytes, the rest streaming. The client must send each
// RequestBuffer bytes within BodyReadTimeout, or it gets 408: a slow client
// holds no upstream connection while its small body trickles in, and
// cannot hold one long with a large one. Requests whose body streams may
// hold half of MaxConnsPerBackend at most; the rest wait their turn, holding
// no connection, so uploads never take every connection. A gRPC call's body
// is not read ahead (grpc.go).
//
// # Failures, retries, ejection
//
// Failures to get a response answer 504 (timeouts) or 502 (anything else,
// including a status outside 100-599 and a head over
// MaxResponseHeaderBytes). Nothing having reached the client yet, a request
// may go again (retryOf): a request whose connection to an endpoint failed
// (connect, DNS, TLS), or an idempotent bodiless one whose connection was
// reset before the answer's head, goes once to another endpoint of the same
// backend; then a canary request whose connection failed goes to stable
// (the failover). A body partly sent never goes again. Every failed attempt
// is recorded against its backend and endpoint, as evidence, before the
// next one.
//
// An endpoint with EjectConsecutiveFailures failures in a row (a failed
// connection or an answer counted as an error) is ejected from its pool
// for EjectTime, doubling with each recent ejection up to MaxEjectTime, as
// Envoy's outlier detection does; never more than half a pool at once.
// With HealthPath, every endpoint is probed; a failing one takes no traffic
// while another of its pool passes.
//
// # Measurement
//
// Per backend, every attempt is recorded, with atomics only, into a ring
// of 60 time slots covering Config.Window; a slot holds request, error and
// slow counts and a log-linear latency histogram (64 sub-buckets per power
// of two, 65µs..69s, see NumBuckets). A slot is cleared when it is first
// reused, under a mutex taken at most once per slot duration. Snapshot
// sums the slots of the last Window into an immutable copy. Each endpoint
// keeps the same ring of counts, without the histogram.
//
// An error is a failure to get a response (ErrorKind), an answer whose
// status is in ErrorStatuses (5xx by default), or a gRPC answer whose
// grpc-status is in GRPCErrorCodes. Latency is the backend's: the time from
// the start of the attempt until the response is finished, less the time
// spent waiting for the client, that is reading its body ahead
// (RequestBuffer), waiting in reads of the rest of its body, and blocked
// writing the response to it. A slow uploader or a slow reader cannot make
// a backend look slow. Four cases are special:
//   - A protocol upgrade (101) counts as a request, never as slow, and stays
//     out of the latency histograms: its duration is a connection lifetime.
//   - A gRPC call's latency is the time to its answer's headers (grpc.go).
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
// One prometheus.Collector exports the proxy's own counters. Attempts (a
// request retried or failed over counts once per attempt, as the judge
// sees it): canary_requests_total{backend,code},
// canary_errors_total{backend}, canary_request_duration_seconds{backend},
// canary_upstream_errors_total{backend,kind} (kind: connect, dns, tls,
// timeout, reset, other), canary_grpc_responses_total{backend,grpc_code}.
// Client answers, one per client request:
// canary_responses_total{backend,code}. What went again:
// canary_retries_total{backend}, canary_failovers_total. And
// canary_client_canceled_total{backend}, with health checks
// canary_health_checks_total{backend,result} (rounds), and the pools:
// canary_endpoints{backend,state} and per endpoint
// (canary_endpoint_requests_total, _errors_total, _in_flight, _ejected,
// _ejections_total, _healthy, labelled backend and endpoint, at most
// maxEndpointSeries endpoints per backend, the rest as endpoint="other").
// Shadow traffic (mirror.go), kept out of all of the above:
// canary_mirror_requests_total{code}, canary_mirror_errors_total,
// canary_mirror_dropped_total, canary_mirror_skipped_total,
// canary_mirror_in_flight.
//
// # Cohorts, sticky cookies, shadow traffic
//
// The split's Choice may carry a fresh sticky id: its Set-Cookie is added
// to the client's answer as the answer's header is committed (an
// informational answer's header is not kept). With MirrorPercent, a share
// of the requests bound for stable is copied to the canary in the
// background, bounded, and the copies' outcomes are canary evidence
// (mirror.go has the details).
//
// # Health checks
//
// With Config.HealthPath, Run probes every endpoint of both backends every
// HealthInterval. An endpoint turns unhealthy after 2 consecutive failed
// probes and healthy again after 2 consecutive successes; a backend is
// healthy while any of its endpoints is, and an unhealthy canary is
// blocked in the splitter (split.BlockUnhealthy) until one recovers.
package proxy

import (
	"crypto/tls"
	"net/http"
	"net/url"
	"time"

	"github.com/canaryd/canaryd/split"
)

// Config configures a Proxy. Zero values mean the documented defaults; a
// value that is set must pass its field's Validate… function
// (ValidateRequestBuffer, …), which Validate applies.
type Config struct {
	// Stable and Canary are the backends' base URLs (http, https or h2c,
	// with an optional path prefix) when each is one URL. A backend is
	// either one URL here or a pool in StableURLs/CanaryURLs, not both;
	// both backends are required and share no endpoint URL.
	Stable *url.URL
	Canary *url.URL
	// StableURLs and CanaryURLs are the backends as pools: each URL (one
	// scheme per backend, each URL distinct) is an endpoint, and a URL whose
	// host is a name is one endpoint per address the name resolves to (see
	// DNSRefresh). Nil means the backend is the single URL in Stable
	// (Canary).
	StableURLs []*url.URL
	CanaryURLs []*url.URL
	// LoadBalancer chooses an endpoint within a backend's pool. The zero
	// value is LeastRequest.
	LoadBalancer LoadBalancer
	// DNSRefresh is how often Run resolves the host names of the backend
	// URLs again (an IP address is not resolved). Zero means 30s. With
	// Transport set nothing is resolved: the Transport dials.
	DNSRefresh time.Duration
	// Resolver resolves the host names. Nil means net.DefaultResolver
	// (tests inject their own).
	Resolver Resolver
	// EjectConsecutiveFailures is how many failures in a row (a connect
	// failure, or an answer counted as an error) eject an endpoint from its
	// pool, as Envoy's outlier detection does. Zero means 5; negative means
	// never.
	EjectConsecutiveFailures int
	// EjectTime is how long a first ejection lasts; each repeat doubles it,
	// up to MaxEjectTime. Zero means 30s.
	EjectTime time.Duration
	// ErrorStatuses are the HTTP statuses that count as errors. The zero
	// value means 5xx.
	ErrorStatuses StatusSet
	// GRPCErrorCodes are the gRPC statuses (grpc-status) that count as
	// errors. The zero value means DefaultGRPCErrorCodes: UNKNOWN,
	// DEADLINE_EXCEEDED, UNIMPLEMENTED, INTERNAL, UNAVAILABLE, DATA_LOSS.
	GRPCErrorCodes GRPCCodes
	// Window is the sliding window over which Snapshot reports. Zero means 5m.
	Window time.Duration
	// SlowThreshold is the latency above which a request counts as slow (the
	// p95 SLO). Zero means 500ms.
	SlowThreshold time.Duration
	// Transport, if non-nil, is used for every endpoint and its health
	// checks (tests); ResponseHeaderTimeout, MaxConnsPerBackend and
	// TLSClientConfig then do not apply, and host names are not resolved.
	// If nil, each endpoint gets its own http.Transport tuned for proxying
	// (keep-alive, 512 idle connections, 5s dial timeout, HTTP/2 attempted
	// for https, HTTP/2 only for h2c), dialing the endpoint's address.
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
	// MirrorPercent is the share of the requests bound for stable that is
	// also sent to the canary in the background (shadow traffic, mirror.go),
	// in hundredths of a percent, 0..10000 (split.ParsePercent reads it).
	// Zero means no mirroring.
	MirrorPercent uint32
	// MirrorMethods are the request methods that may be copied. Nil means
	// GET, HEAD and OPTIONS.
	MirrorMethods []string
	// MirrorConcurrency is how many copies may exist at once, queued or in
	// flight; a request finding none free is not copied (dropped, and
	// counted). Zero means DefaultMirrorConcurrency.
	MirrorConcurrency int
	// TLSClientConfig is used for https backends. Nil means the system roots.
	TLSClientConfig *tls.Config
	// HealthPath, if set, is probed on every endpoint of both backends
	// every HealthInterval (zero means 5s) by Run. An endpoint failing its
	// checks gets no traffic while another of its pool passes; a canary
	// none of whose endpoints passes gets no traffic until one recovers
	// (split.BlockUnhealthy).
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
	// Canary is the canary's evidence: the clients' canary requests and the
	// mirrored copies (Mirror), together.
	Canary Stats
	// Mirror are the mirrored copies alone (zero without mirroring).
	Mirror MirrorStats
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
	// (the current slot and the 59 before it). An error is a status in
	// Config.ErrorStatuses (5xx by default), a gRPC status in
	// Config.GRPCErrorCodes or a failure to get a response; slow is a latency above
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

// HealthStats are one backend's active health-check figures, and its
// pool's endpoints.
type HealthStats struct {
	// Enabled is false when no HealthPath is configured.
	Enabled bool
	// Checks and Failures count check rounds within the window: a round
	// probes every endpoint of the pool and fails when none passes (for a
	// pool of one, a round is a probe).
	Checks   uint64
	Failures uint64
	// Healthy is the current state: true while any endpoint passes its
	// checks (an endpoint turns unhealthy after consecutive failed probes,
	// healthy again after consecutive successes). Always true without
	// checks.
	Healthy bool
	// LastError describes the last failed round ("" if none).
	LastError string
	// LastCheck is when the last round finished (zero if none yet).
	LastCheck time.Time
	// Endpoints are the pool's endpoints as they are now, in the order of
	// the configured URLs (a name's addresses sorted). Filled with or
	// without health checks.
	Endpoints []EndpointStats
}

// EndpointStats are one endpoint's state and figures.
type EndpointStats struct {
	// URL is the configured URL the endpoint comes from (its host, a name
	// or an address, is the Host sent), without credentials.
	URL string
	// Address is the host:port dialed: an address the URL's name resolved
	// to, or the name itself while it has never resolved.
	Address string
	// Healthy is false while the endpoint fails its active checks (always
	// true without checks).
	Healthy bool
	// EjectedUntil is when the endpoint's current ejection ends; zero when
	// it is not ejected.
	EjectedUntil time.Time
	// InFlight is the number of requests it is serving now.
	InFlight int64
	// Requests and Errors count its attempts within the window (an error as
	// in Stats).
	Requests uint64
	Errors   uint64
}

// FailureRate is Failures/Checks, 0 without checks.
func (h *HealthStats) FailureRate() float64 {
	if h.Checks == 0 {
		return 0
	}
	return float64(h.Failures) / float64(h.Checks)
}
