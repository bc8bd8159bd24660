package proxy

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	stdlog "log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/canaryd/canaryd/proxy/h1"
	"github.com/canaryd/canaryd/split"
)

// Defaults for the zero values of Config. Those of the wire are the wire
// package's.
const (
	DefaultWindow                = 5 * time.Minute
	DefaultSlowThreshold         = 500 * time.Millisecond
	DefaultResponseHeaderTimeout = h1.DefaultResponseHeaderTimeout
	DefaultMaxConnsPerBackend    = 1024
	DefaultHealthInterval        = 5 * time.Second
	// DefaultMaxResponseHeaderBytes bounds an answer's head (Go's Transport
	// allows 10 MB, nginx's proxy_buffer_size 4-8 KiB).
	DefaultMaxResponseHeaderBytes = h1.DefaultMaxResponseHeaderBytes
	// DefaultRequestBuffer and DefaultBodyReadTimeout are nginx's
	// client_body_buffer_size (8-16k there) scaled to today's payloads, and
	// its client_body_timeout.
	DefaultRequestBuffer   = 64 << 10
	DefaultBodyReadTimeout = 60 * time.Second
)

// Transport tuning for the per-backend http.Transport: as the fast path's
// pools.
const (
	dialTimeout         = h1.DefaultDialTimeout
	dialKeepAlive       = h1.DefaultKeepAlive
	maxIdleConnsPerHost = h1.DefaultMaxIdle
	idleConnTimeout     = h1.DefaultIdleTimeout
	tlsHandshakeTimeout = 10 * time.Second
)

// statusClientClosed is logged and counted (code="499", after nginx) for a
// request whose client went away before the response headers were sent.
const statusClientClosed = 499

// ErrBadConfig is wrapped by every Config validation error.
var ErrBadConfig = errors.New("invalid proxy configuration")

// URL schemes of a backend.
const (
	schemeHTTP  = "http"
	schemeHTTPS = "https"
	// schemeH2C is HTTP/2 without TLS, with prior knowledge (RFC 9113
	// §3.3): gRPC and HTTP/2 backends that do not terminate TLS.
	schemeH2C = "h2c"
)

// backendURLs returns the URLs of backend name: its pool, or its one URL.
func backendURLs(one *url.URL, pool []*url.URL) []*url.URL {
	if len(pool) > 0 {
		return pool
	}
	if one != nil {
		return []*url.URL{one}
	}
	return nil
}

// urlKey is u as far as it picks an endpoint: scheme and host in lower case,
// the path without a trailing slash.
func urlKey(u *url.URL) string {
	host, port := hostPort(u)
	return strings.ToLower(u.Scheme) + "://" + strings.ToLower(net.JoinHostPort(host, port)) + strings.TrimRight(u.EscapedPath(), "/")
}

// withDefaults returns c with its zero values replaced by the defaults.
func (c Config) withDefaults() Config {
	if c.Window == 0 {
		c.Window = DefaultWindow
	}
	if c.SlowThreshold == 0 {
		c.SlowThreshold = DefaultSlowThreshold
	}
	if c.ResponseHeaderTimeout == 0 {
		c.ResponseHeaderTimeout = DefaultResponseHeaderTimeout
	}
	if c.MaxConnsPerBackend == 0 {
		c.MaxConnsPerBackend = DefaultMaxConnsPerBackend
	}
	if c.HealthInterval == 0 {
		c.HealthInterval = DefaultHealthInterval
	}
	if c.MaxResponseHeaderBytes == 0 {
		c.MaxResponseHeaderBytes = DefaultMaxResponseHeaderBytes
	}
	if c.RequestBuffer == 0 {
		c.RequestBuffer = DefaultRequestBuffer
	}
	if c.BodyReadTimeout == 0 {
		c.BodyReadTimeout = DefaultBodyReadTimeout
	}
	if c.DNSRefresh == 0 {
		c.DNSRefresh = DefaultDNSRefresh
	}
	if c.EjectConsecutiveFailures == 0 {
		c.EjectConsecutiveFailures = DefaultEjectConsecutiveFailures
	}
	if c.EjectTime == 0 {
		c.EjectTime = DefaultEjectTime
	}
	if c.MirrorConcurrency == 0 {
		c.MirrorConcurrency = DefaultMirrorConcurrency
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// Proxy is the in-path handler. Create it with New. It is safe for
// concurrent use; its request path takes no lock.
type Proxy struct {
	cfg      Config
	sp       *split.Splitter
	log      zerolog.Logger
	now      func() time.Time
	realTime bool        // now is time.Now: latencies can be read off the monotonic clock alone
	base     time.Time   // window epochs count from here, on the monotonic clock
	clock    time.Time   // the real clock at New: client waits are timed against it
	backends [2]*backend // indexed by split.Backend
	resolver Resolver

	errStatus [maxStatus]bool // Config.ErrorStatuses, as a table for the request path

	writers sync.Pool // *responseWriter
	buffers h1.Buffers

	canaryErrs chan struct{}
	pending    atomic.Bool // a value is (or is about to be) in canaryErrs

	secrets atomic.Pointer[[]string] // what the access log redacts (SetRedact)

	idPrefix string        // random, per process: request ids are idPrefix-counter
	ids      atomic.Uint64 // request id counter

	mirror *mirror // shadow traffic; nil when off
}

// backend is one upstream, a pool of endpoints (pool.go), and its
// measurements.
type backend struct {
	name   split.Backend
	scheme string     // of every URL
	urls   []*url.URL // as configured
	// lim caps the connections of the whole pool: every endpoint's fast
	// path pool and Transport draw on it.
	lim *h1.Limiter
	// uploads holds a token per request whose body streams (larger than
	// RequestBuffer): they hold their upstream connection as long as the
	// client takes to send the body, so they may have half of
	// MaxConnsPerBackend at most, and slow uploads, however many, leave
	// the other half to everyone else.
	uploads chan struct{}
	win     *window
	ctr     counters

	set         atomic.Pointer[endpointSet]
	nextReadmit atomic.Int64  // window clock: the earliest end of an ejection (MaxInt64: none)
	rr          atomic.Uint64 // RoundRobin's turn
	// healthy is true while any endpoint passes its health checks; rounds
	// are the backend's check rounds.
	healthy atomic.Bool
	rounds  healthRing

	mu      sync.Mutex  // serialises changes of set (ejections, readmissions, health flips, DNS)
	retired []*endpoint // left the pool with requests in flight; under mu
}

// New builds a Proxy forwarding to cfg's backends as sp picks, registering its
// collectors with reg.
func New(cfg Config, sp *split.Splitter, logger zerolog.Logger, reg prometheus.Registerer) (*Proxy, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if sp == nil {
		return nil, fmt.Errorf("%w: a splitter is required", ErrBadConfig)
	}
	realTime := cfg.Now == nil
	cfg = cfg.withDefaults()
	var idb [6]byte
	_, _ = rand.Read(idb[:])
	p := &Proxy{
		cfg:        cfg,
		sp:         sp,
		log:        logger.With().Str("component", "proxy").Logger(),
		now:        cfg.Now,
		realTime:   realTime,
		canaryErrs: make(chan struct{}, 1),
		idPrefix:   hex.EncodeToString(idb[:]),
		mirror:     newMirror(cfg),
	}
	p.base = p.now()
	p.SetRedact(cfg.Redact)
	p.clock = time.Now()
	p.writers.New = func() any { return new(responseWriter) }
	p.resolver = cfg.Resolver
	if p.resolver == nil {
		p.resolver = net.DefaultResolver
	}
	for c := range p.errStatus {
		p.errStatus[c] = cfg.ErrorStatuses.Contains(c)
	}
	ctx, cancel := context.WithTimeout(context.Background(), dnsTimeout)
	defer cancel()
	for _, b := range [...]split.Backend{split.Stable, split.Canary} {
		urls := backendURLs(cfg.Stable, cfg.StableURLs)
		if b == split.Canary {
			urls = backendURLs(cfg.Canary, cfg.CanaryURLs)
		}
		bk := &backend{
			name: b, scheme: urls[0].Scheme, urls: urls,
			win:     newWindow(cfg.Window),
			uploads: make(chan struct{}, max(cfg.MaxConnsPerBackend/2, 1)),
			rounds:  newHealthRing(cfg.Window),
		}
		bk.healthy.Store(true)
		// One limiter per backend, for every endpoint and both paths: the
		// Transports dial through it, the fast path's pools draw on it.
		bk.lim = h1.NewLimiter(cfg.MaxConnsPerBackend, bk.closeIdle)
		p.backends[b] = bk
		// The first resolution is here, so that traffic starts on the
		// right addresses; Run refreshes them.
		bk.apply(p, p.endpointKeys(ctx, bk, nil), p.since(p.now()))
	}
	if reg != nil {
		if err := reg.Register(newCollector(p)); err != nil {
			return nil, fmt.Errorf("register proxy metrics: %w", err)
		}
	}
	return p, nil
}

// errBadStatus is a backend answer with a status outside 100-599.
var errBadStatus = errors.New("backend answered a status outside 100-599")

// newReverseProxy returns the standard path to target over rt.
func (p *Proxy) newReverseProxy(target *url.URL, rt http.RoundTripper, b split.Backend) *httputil.ReverseProxy {
	return &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			// Append to, rather than replace, the client's chain.
			if prior := pr.In.Header["X-Forwarded-For"]; len(prior) > 0 {
				pr.Out.Header["X-Forwarded-For"] = prior
			}
			pr.SetXForwarded()
			if body, ok := pr.In.Body.(*requestBody); ok && body.whole && pr.Out.Body != nil && pr.Out.Trailer == nil {
				// A body read whole can go again: the Transport sends
				// the request on another connection when its write was
				// refused before any byte (a spoilt connection, see
				// h1.GuardAnswers), as it does a bodiless one.
				pr.Out.GetBody = body.replay
			}
		},
		ModifyResponse: func(resp *http.Response) error {
			if resp.StatusCode < 100 || resp.StatusCode > 599 {
				return fmt.Errorf("%w: %d", errBadStatus, resp.StatusCode)
			}
			return nil
		},
		Transport:    rt,
		BufferPool:   &p.buffers,
		ErrorHandler: p.errorHandler,
		ErrorLog:     stdlog.New(p.log.With().Str("backend", b.String()).Logger(), "", 0),
	}
}

// newTransport returns a transport tuned for proxying to one endpoint:
// long-lived keep-alive connections, bounded per backend (the dialer is the
// caller's, through the backend's limiter).
func newTransport(cfg Config, scheme string) *http.Transport {
	t := &http.Transport{
		MaxIdleConns:           0, // no overall limit; per host below
		MaxIdleConnsPerHost:    maxIdleConnsPerHost,
		MaxConnsPerHost:        cfg.MaxConnsPerBackend,
		IdleConnTimeout:        idleConnTimeout,
		TLSHandshakeTimeout:    tlsHandshakeTimeout,
		ResponseHeaderTimeout:  cfg.ResponseHeaderTimeout,
		MaxResponseHeaderBytes: int64(cfg.MaxResponseHeaderBytes),
		ExpectContinueTimeout:  time.Second,
		ForceAttemptHTTP2:      scheme == schemeHTTPS,
		// A proxy passes encodings through: no Accept-Encoding of its own,
		// no transparent decompression (as the fast path).
		DisableCompression: true,
	}
	if scheme == schemeH2C {
		// Prior knowledge: HTTP/2 from the first byte, no HTTP/1.1 at all
		// (net/http's own h2c, Go 1.24+; no golang.org/x/net).
		t.Protocols = new(http.Protocols)
		t.Protocols.SetUnencryptedHTTP2(true)
	}
	if cfg.TLSClientConfig != nil {
		t.TLSClientConfig = cfg.TLSClientConfig.Clone()
	}
	return t
}

// ServeHTTP forwards r to the backend picked for it and records the outcome.
//
// Latency is measured from the start of ServeHTTP until the response is
// finished (the body fully copied), less the time spent waiting for the
// client (see the package doc). Protocol upgrades (101, WebSocket) are
// counted as requests but kept out of the latency histogram: their duration
// is the connection's lifetime, not a response time.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rw := p.writers.Get().(*responseWriter)
	rw.w, rw.req = w, r
	rw.start = p.now()
	if p.realTime {
		rw.clock, rw.timed = p.clock, true
	}
	if r.TLS == nil {
		// HTTP/1.1 over TLS reaches net/http through the framing guard,
		// which hides the TLS connection (see StrictTLSListener).
		r.TLS = h1.TLSState(r.Context())
	}
	choice := p.sp.Choose(r)
	rw.backend, rw.setCookie = choice.Backend, choice.SetCookie
	defer func() {
		if v := recover(); v != nil {
			// A stream that broke after the headers were sent
			// (http.ErrAbortHandler) or a panic further down.
			switch {
			case rw.kind != KindNone:
			case rw.body != nil && rw.body.failure() != nil:
				rw.kind = KindClient
			case rw.writeErr || r.Context().Err() != nil:
				rw.kind = KindCanceled
			case v == http.ErrAbortHandler:
				rw.kind = KindReset
			default:
				rw.kind = KindOther
			}
			p.finish(rw)
			panic(v)
		}
	}()
	if p.refused(rw, r) {
		p.finish(rw)
		return
	}
	rw.grpc = isGRPC(r)
	if r.Body != nil && r.Body != http.NoBody && r.ContentLength != 0 {
		if rw.grpc {
			// A gRPC call's messages stream both ways, each side waiting
			// for the other's: nothing is read ahead (see grpc.go).
			rw.body = streamBody(r)
		} else {
			b, err := p.readAhead(rw, r)
			if err != nil {
				p.clientBodyFailed(rw, r, err)
				p.finish(rw)
				return
			}
			rw.body = b
			rw.start = p.now() // the upload read ahead is the client's time
		}
	}
	if p.mirror != nil && rw.backend == split.Stable {
		p.offer(rw, r)
	}
	p.forward(rw, r, rw.backend, nil)
	for rw.retry != retryNone {
		// The attempt failed before anything reached the client, and the
		// request can go again: count the failed attempt against its
		// backend and endpoint, then send it to another endpoint of the
		// same backend, or from the canary to stable.
		failed, next := rw.endpoint, rw.retry
		p.record(rw, rw.backend, http.StatusBadGateway, rw.kind)
		rw.retry, rw.kind, rw.status, rw.wait = retryNone, KindNone, 0, 0
		rw.attempts++
		if rw.body != nil {
			rw.body.rewind()
		}
		rw.start = p.now()
		if next == retryFailover {
			p.backends[split.Canary].ctr.failovers.Add(1)
			rw.failedOver, rw.poolRetried = true, false
			rw.backend, failed = split.Stable, nil
		} else {
			p.backends[rw.backend].ctr.retries.Add(1)
			rw.poolRetried = true
		}
		p.forward(rw, r, rw.backend, failed)
	}
	p.finish(rw)
}

// refused answers the requests a front door does not forward: CONNECT and
// TRACE (405, as nginx), and the HTTP/2 preface on HTTP/1.1 (400; the
// framing guard refuses it first on a guarded listener).
func (p *Proxy) refused(rw *responseWriter, r *http.Request) bool {
	switch {
	case r.Method == http.MethodConnect || r.Method == http.MethodTrace:
		rw.Header().Set("Allow", "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS")
		p.clientError(rw, http.StatusMethodNotAllowed, "method "+r.Method+" is not allowed")
	case r.Method == "PRI": // a real HTTP/2 preface never reaches a handler
		p.clientError(rw, http.StatusBadRequest, "HTTP/2 prior knowledge (PRI) on an HTTP/1.1 connection")
	default:
		return false
	}
	return true
}

// clientBodyFailed answers a request whose body the client failed to send:
// 408 when too slow, nothing when it went away, else 400.
func (p *Proxy) clientBodyFailed(rw *responseWriter, r *http.Request, err error) {
	switch {
	case errors.Is(err, errBodyTimeout):
		rw.Header().Set("Connection", "close")
		p.clientError(rw, http.StatusRequestTimeout, "request body not received in time")
	case r.Context().Err() != nil:
		rw.kind = KindCanceled
	default:
		rw.Header().Set("Connection", "close")
		p.clientError(rw, http.StatusBadRequest, "malformed or incomplete request body")
	}
}

// clientError answers status with a JSON error for a request failed by its
// client (KindClient).
func (p *Proxy) clientError(rw *responseWriter, status int, msg string) {
	rw.kind = KindClient
	if rw.status != 0 || rw.hijacked {
		return // too late to answer
	}
	h := rw.Header()
	h.Set("Content-Type", "application/json")
	h.Set("X-Content-Type-Options", "nosniff")
	rw.WriteHeader(status)
	_, _ = rw.Write([]byte(`{"error":` + strconv.Quote(msg) + "}\n"))
}

// forward sends r to an endpoint of backend b (another than failed, for a
// retry): over the fast path when both qualify, else through the
// endpoint's ReverseProxy.
func (p *Proxy) forward(rw *responseWriter, r *http.Request, b split.Backend, failed *endpoint) {
	bk := p.backends[b]
	if rw.body != nil && !rw.body.whole && !rw.grpc {
		select {
		case bk.uploads <- struct{}{}:
			defer func() { <-bk.uploads }()
		case <-r.Context().Done():
			rw.kind = KindCanceled
			return
		}
	}
	now := p.since(rw.start)
	var ep *endpoint
	if failed != nil {
		ep = bk.pickOther(p, now, failed)
	}
	if ep == nil {
		ep = bk.pick(p, now)
	}
	rw.endpoint = ep
	ep.inFlight.Add(1)
	if ep.pool != nil && h1.Eligible(r) {
		p.forwardFast(rw, r, ep)
		return
	}
	ep.rp.ServeHTTP(rw, r)
	// The Transport's connection went idle (or closed) just now: if a
	// request waits for a connection slot, it may take it.
	bk.lim.Reclaim()
}

// finish records the request's final outcome (its last attempt, and the
// answer the client got) and returns rw to the pool.
func (p *Proxy) finish(rw *responseWriter) {
	status := rw.status
	if status == 0 {
		status = http.StatusOK // what net/http sends for an empty answer
	}
	if rw.kind == KindCanceled && rw.status == 0 {
		status = statusClientClosed
	}
	p.record(rw, rw.backend, status, rw.kind)
	if status < 0 || status >= maxStatus {
		status = 0
	}
	p.backends[rw.backend].ctr.answers[status].Add(1)
	rw.reset()
	p.writers.Put(rw)
}

// record counts one attempt on backend b (at rw.endpoint, if it got that
// far): canary_requests_total, the window the judge reads, the endpoint's
// figures and run of failures.
func (p *Proxy) record(rw *responseWriter, b split.Backend, status int, kind ErrorKind) {
	var (
		lat time.Duration
		at  int64 // the window clock's now (see since)
	)
	if p.realTime {
		// One monotonic clock read instead of a full time.Now.
		lat = time.Since(rw.start)
		at = max(int64(rw.start.Sub(p.base)+lat), 0)
	} else {
		now := p.now()
		lat = now.Sub(rw.start)
		at = p.since(now)
	}
	switch {
	case rw.grpc && rw.timed && !rw.headerAt.IsZero():
		// A gRPC call's latency is the time to its answer's headers: the
		// whole call for a unary one, the first answer for a stream,
		// never the stream's lifetime (see grpc.go).
		lat = max(rw.headerAt.Sub(rw.start), 0)
	case rw.timed:
		// The backend's latency: without the waits for the client.
		wait := rw.wait
		if rw.body != nil {
			wait += time.Duration(rw.body.wait.Load())
		}
		lat = max(lat-wait, 0)
	}
	bk := p.backends[b]
	c := &bk.ctr
	if status < 0 || status >= maxStatus {
		status = 0
	}
	c.codes[status].Add(1)
	ep := rw.endpoint
	if ep != nil {
		rw.endpoint = nil
		ep.inFlight.Add(-1)
	}
	grpcCode := -1
	if rw.grpc && (kind == KindNone || kind == KindCanceled && status != statusClientClosed) {
		grpcCode = grpcStatus(rw, status, kind == KindCanceled)
	}
	if p.cfg.AccessLog {
		p.accessLog(rw, b, ep, status, kind, lat, grpcCode)
	}
	if kind == KindClient {
		return // canaryd answered the client's fault itself
	}
	if kind == KindCanceled {
		if status == statusClientClosed {
			c.canceled.Add(1)
			return
		}
		// The client left after the headers were sent (a closed SSE stream,
		// say): an ordinary request, not the backend's failure.
		kind = KindNone
	}
	isErr := kind != KindNone || p.errStatus[status]
	if grpcCode >= 0 {
		c.grpc[grpcCode].Add(1)
		isErr = isErr || p.cfg.GRPCErrorCodes.Contains(grpcCode)
	}
	hist := !rw.hijacked
	isSlow := hist && lat > p.cfg.SlowThreshold
	bk.win.record(at, lat, isErr, isSlow, hist)
	c.requests.Add(1)
	if kind != KindNone {
		c.kinds[kind].Add(1)
	}
	if isErr {
		c.errors.Add(1)
	}
	if isSlow {
		c.slow.Add(1)
	}
	if hist {
		c.observeDuration(lat)
	}
	if ep != nil {
		ep.observe(p, at, isErr)
	}
	// A failed or slow canary request wakes the guard: evidence against the
	// canary is judged at once, not at the next tick (a canary whose every
	// request is slow is caught within a handful of requests, like one whose
	// every request fails).
	if (isErr || isSlow) && b == split.Canary && p.pending.CompareAndSwap(false, true) {
		select {
		case p.canaryErrs <- struct{}{}:
		default:
		}
	}
}

// SetRedact replaces the secrets the access log redacts (Config.Redact), for
// admin tokens rotated while canaryd runs.
func (p *Proxy) SetRedact(secrets []string) {
	secrets = slices.Clone(secrets)
	p.secrets.Store(&secrets)
}

// redact replaces every configured secret in s.
func (p *Proxy) redact(s string) string {
	for _, secret := range *p.secrets.Load() {
		if secret != "" && strings.Contains(s, secret) {
			s = strings.ReplaceAll(s, secret, "[REDACTED]")
		}
	}
	return s
}

func (p *Proxy) accessLog(rw *responseWriter, b split.Backend, ep *endpoint, status int, kind ErrorKind, lat time.Duration, grpcCode int) {
	ev := p.log.Info()
	if id := rw.req.Header.Get("X-Request-Id"); id != "" {
		ev = ev.Str("request_id", p.redact(id))
	} else {
		ev = ev.Str("request_id", p.idPrefix+"-"+strconv.FormatUint(p.ids.Add(1), 10))
	}
	ev = ev.Str("backend", b.String()).
		Str("method", rw.req.Method).
		Str("path", p.redact(rw.req.URL.Path)). // never the query: it may carry tokens
		Int("status", status).
		Float64("duration_ms", float64(lat.Microseconds())/1000).
		Int64("bytes", rw.bytes)
	if ep != nil {
		ev = ev.Str("endpoint", ep.addr)
	}
	if kind != KindNone {
		ev = ev.Str("error_kind", kind.String())
	}
	if grpcCode >= 0 {
		ev = ev.Int("grpc_status", grpcCode)
	}
	if rw.attempts > 0 {
		ev = ev.Int("attempt", rw.attempts+1)
	}
	if rw.failedOver {
		ev = ev.Bool("failover", true)
	}
	ev.Msg("request")
}

// errorHandler is every backend's ReverseProxy.ErrorHandler: it classifies
// the failure, asks for a failover when the canary could not be reached, and
// otherwise answers 504 (timeouts) or 502.
func (p *Proxy) errorHandler(w http.ResponseWriter, out *http.Request, err error) {
	rw, ok := w.(*responseWriter)
	if !ok {
		if mw, ok := w.(*mirrorWriter); ok { // a mirrored copy (mirror.go)
			mw.kind = classify(err, false)
			return
		}
		// not reached through ServeHTTP
		http.Error(w, http.StatusText(http.StatusBadGateway), http.StatusBadGateway)
		return
	}
	if rw.body != nil {
		if berr := rw.body.failure(); berr != nil {
			// The client failed to send its body: the upstream request
			// failed for that, not for the backend.
			p.clientBodyFailed(rw, rw.req, berr)
			return
		}
	}
	kind := classify(err, rw.req.Context().Err() != nil)
	rw.kind = kind
	if kind == KindCanceled {
		return // nobody is listening
	}
	if rw.status == 0 && !rw.hijacked {
		if rw.retry = p.retryOf(rw, kind); rw.retry != retryNone {
			return // ServeHTTP sends it again
		}
	}
	if rw.status != 0 || rw.hijacked {
		return // too late to answer
	}
	p.log.Debug().Str("backend", rw.backend.String()).Str("kind", kind.String()).Err(err).Msg("upstream error")
	status := http.StatusBadGateway
	if kind == KindTimeout {
		status = http.StatusGatewayTimeout
	}
	h := rw.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	rw.WriteHeader(status)
	_, _ = rw.Write([]byte(http.StatusText(status) + "\n"))
}

// retry says where a failed attempt goes next.
type retry uint8

const (
	retryNone     retry = iota
	retryInPool         // to another endpoint of the same backend
	retryFailover       // from the canary to stable
)

// retryOf decides whether the attempt that failed with kind (nothing having
// reached the client) is sent again, and where. A request whose connection
// failed (connect, DNS, TLS) goes once to another endpoint of its backend,
// then from the canary to stable; an idempotent bodiless request (GET,
// HEAD, OPTIONS) whose connection was reset before the answer's head goes
// once to another endpoint (nginx's proxy_next_upstream error). A body
// partly sent cannot go again.
func (p *Proxy) retryOf(rw *responseWriter, kind ErrorKind) retry {
	if rw.body != nil && rw.body.sent.Load() {
		return retryNone
	}
	connFailed := kind.beforeRequest()
	reset := kind == KindReset && rw.body == nil && idempotent(rw.req.Method)
	switch {
	case (connFailed || reset) && !rw.poolRetried && rw.endpoint != nil && p.backends[rw.backend].hasOther(rw.endpoint):
		return retryInPool
	case connFailed && rw.backend == split.Canary && !rw.failedOver:
		return retryFailover
	}
	return retryNone
}

func idempotent(method string) bool {
	return method == http.MethodGet || method == http.MethodHead || method == http.MethodOptions
}

// since returns t as nanoseconds since p.base (never negative). Window slots
// are keyed by it rather than by wall-clock time so that a wall clock
// stepping back does not freeze the window.
func (p *Proxy) since(t time.Time) int64 {
	return max(int64(t.Sub(p.base)), 0)
}

// Snapshot copies both backends' window and cumulative figures. It also
// re-arms CanaryErrors.
func (p *Proxy) Snapshot() Snapshot {
	p.pending.Store(false)
	now := p.now()
	s := Snapshot{At: now, Window: p.cfg.Window}
	for _, b := range [...]split.Backend{split.Stable, split.Canary} {
		st := s.Of(b)
		bk := p.backends[b]
		bk.win.read(p.since(now), st)
		st.Totals = bk.ctr.totals()
	}
	if p.mirror != nil {
		s.Mirror = p.mirrorStats(p.since(now))
		s.Canary.Totals = addTotals(s.Canary.Totals, s.Mirror.Totals)
	}
	return s
}

// Totals returns only the cumulative counts, cheaply (no histogram copy);
// the canary's include the mirrored copies. It also re-arms CanaryErrors.
func (p *Proxy) Totals() (stable, canary Totals) {
	p.pending.Store(false)
	canary = p.backends[split.Canary].ctr.totals()
	if p.mirror != nil {
		canary = addTotals(canary, p.mirror.totals())
	}
	return p.backends[split.Stable].ctr.totals(), canary
}

// CanaryErrors delivers a value soon after a canary request fails or is
// slower than Config.SlowThreshold, so the
// guard can judge at once instead of waiting for its tick. Coalesced: at most
// one value is pending; the request path takes no lock and does not allocate.
// After a value was sent, the next one is sent only once Snapshot or Totals
// has been called (the receiver is expected to take a snapshot).
func (p *Proxy) CanaryErrors() <-chan struct{} { return p.canaryErrs }

// Run runs the background work until ctx ends: the active health checks of
// every endpoint, and the DNS refresh of the backends' host names. It
// returns nil when ctx ends, after closing the idle upstream connections.
func (p *Proxy) Run(ctx context.Context) error {
	defer func() {
		for _, bk := range p.backends {
			for _, ep := range bk.set.Load().all {
				if ep.pool != nil {
					ep.pool.Close()
				}
				if ep.transport != nil {
					ep.transport.CloseIdleConnections()
				}
			}
		}
	}()
	var wg sync.WaitGroup
	if p.resolves() {
		wg.Go(func() { p.runDNS(ctx) })
	}
	if p.cfg.HealthPath != "" {
		wg.Go(func() { p.runHealth(ctx) })
	}
	if p.mirror != nil {
		wg.Go(func() { p.runMirror(ctx) })
	}
	<-ctx.Done()
	wg.Wait()
	return nil
}

// Health returns both backends' active health-check figures, with their
// pools' endpoints.
func (p *Proxy) Health() (stable, canary HealthStats) {
	now := p.since(p.now())
	of := func(bk *backend) HealthStats {
		st := HealthStats{Healthy: true}
		if p.cfg.HealthPath != "" {
			st = bk.rounds.stats(now)
			st.Healthy = bk.healthy.Load()
		}
		st.Endpoints = p.endpointStats(bk, now)
		return st
	}
	return of(p.backends[split.Stable]), of(p.backends[split.Canary])
}
