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
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/canaryd/canaryd/split"
)

// Defaults for the zero values of Config.
const (
	DefaultWindow                = 5 * time.Minute
	DefaultSlowThreshold         = 500 * time.Millisecond
	DefaultResponseHeaderTimeout = 60 * time.Second
	DefaultMaxConnsPerBackend    = 1024
	DefaultHealthInterval        = 5 * time.Second
)

// Transport tuning for the per-backend http.Transport.
const (
	dialTimeout         = 5 * time.Second
	dialKeepAlive       = 30 * time.Second
	maxIdleConnsPerHost = 512
	idleConnTimeout     = 90 * time.Second
	tlsHandshakeTimeout = 10 * time.Second
	copyBufferSize      = 32 << 10
)

// statusClientClosed is logged and counted (code="499", after nginx) for a
// request whose client went away before the response headers were sent.
const statusClientClosed = 499

// ErrBadConfig is wrapped by every Config validation error.
var ErrBadConfig = errors.New("invalid proxy configuration")

// Validate reports a missing or malformed field of c.
func (c Config) Validate() error {
	for _, b := range []struct {
		name string
		u    *url.URL
	}{{"stable", c.Stable}, {"canary", c.Canary}} {
		if b.u == nil {
			return fmt.Errorf("%w: the %s backend URL is required", ErrBadConfig, b.name)
		}
		if b.u.Scheme != "http" && b.u.Scheme != "https" {
			return fmt.Errorf("%w: the %s backend URL %q must start with http:// or https://", ErrBadConfig, b.name, b.u.Redacted())
		}
		if b.u.Host == "" {
			return fmt.Errorf("%w: the %s backend URL %q has no host", ErrBadConfig, b.name, b.u.Redacted())
		}
	}
	if c.Stable.String() == c.Canary.String() {
		return fmt.Errorf("%w: the stable and canary backend URLs must differ", ErrBadConfig)
	}
	switch {
	case c.Window < 0:
		return fmt.Errorf("%w: window %v must not be negative", ErrBadConfig, c.Window)
	case c.SlowThreshold < 0:
		return fmt.Errorf("%w: slow threshold %v must not be negative", ErrBadConfig, c.SlowThreshold)
	case c.ResponseHeaderTimeout < 0:
		return fmt.Errorf("%w: response header timeout %v must not be negative", ErrBadConfig, c.ResponseHeaderTimeout)
	case c.MaxConnsPerBackend < 0:
		return fmt.Errorf("%w: max connections per backend %d must not be negative", ErrBadConfig, c.MaxConnsPerBackend)
	case c.HealthInterval < 0:
		return fmt.Errorf("%w: health interval %v must not be negative", ErrBadConfig, c.HealthInterval)
	case c.HealthPath != "" && c.HealthPath[0] != '/':
		return fmt.Errorf("%w: health path %q must start with /", ErrBadConfig, c.HealthPath)
	}
	return nil
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
	backends [2]*backend // indexed by split.Backend

	writers sync.Pool // *responseWriter
	buffers bufferPool

	canaryErrs chan struct{}
	pending    atomic.Bool // a value is (or is about to be) in canaryErrs

	idPrefix string        // random, per process: request ids are idPrefix-counter
	ids      atomic.Uint64 // request id counter
}

// backend is one upstream: its proxy, transport and measurements.
type backend struct {
	name   split.Backend
	rp     *httputil.ReverseProxy
	up     *upstream // the fast path; nil when the backend does not qualify
	win    *window
	ctr    counters
	health *health // nil without Config.HealthPath
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
	}
	p.base = p.now()
	p.writers.New = func() any { return new(responseWriter) }
	for _, b := range [...]split.Backend{split.Stable, split.Canary} {
		target := cfg.Stable
		if b == split.Canary {
			target = cfg.Canary
		}
		bk := &backend{name: b, win: newWindow(cfg.Window)}
		rt := cfg.Transport
		if rt == nil {
			bk.up = newUpstream(cfg, target)
			t := newTransport(cfg, target.Scheme == "https")
			if bk.up != nil {
				t.DialContext = bk.up.dialShared
				bk.up.closeTransportIdle = t.CloseIdleConnections
			}
			rt = t
		}
		bk.rp = &httputil.ReverseProxy{
			Rewrite: func(pr *httputil.ProxyRequest) {
				pr.SetURL(target)
				// Append to, rather than replace, the client's chain.
				if prior := pr.In.Header["X-Forwarded-For"]; len(prior) > 0 {
					pr.Out.Header["X-Forwarded-For"] = prior
				}
				pr.SetXForwarded()
			},
			Transport:    rt,
			BufferPool:   &p.buffers,
			ErrorHandler: p.errorHandler,
			ErrorLog:     stdlog.New(p.log.With().Str("backend", b.String()).Logger(), "", 0),
		}
		if cfg.HealthPath != "" {
			bk.health = newHealth(target, cfg.HealthPath, rt, cfg.Window)
		}
		p.backends[b] = bk
	}
	if reg != nil {
		if err := reg.Register(newCollector(p)); err != nil {
			return nil, fmt.Errorf("register proxy metrics: %w", err)
		}
	}
	return p, nil
}

// newTransport returns a transport tuned for proxying to one backend:
// long-lived keep-alive connections, bounded per backend.
func newTransport(cfg Config, https bool) *http.Transport {
	d := &net.Dialer{Timeout: dialTimeout, KeepAlive: dialKeepAlive}
	t := &http.Transport{
		DialContext:           d.DialContext,
		MaxIdleConns:          0, // no overall limit; per host below
		MaxIdleConnsPerHost:   maxIdleConnsPerHost,
		MaxConnsPerHost:       cfg.MaxConnsPerBackend,
		IdleConnTimeout:       idleConnTimeout,
		TLSHandshakeTimeout:   tlsHandshakeTimeout,
		ResponseHeaderTimeout: cfg.ResponseHeaderTimeout,
		ExpectContinueTimeout: time.Second,
		ForceAttemptHTTP2:     https,
		// A proxy passes encodings through: no Accept-Encoding of its own,
		// no transparent decompression (as the fast path).
		DisableCompression: true,
	}
	if cfg.TLSClientConfig != nil {
		t.TLSClientConfig = cfg.TLSClientConfig.Clone()
	}
	return t
}

// ServeHTTP forwards r to the backend picked for it and records the outcome.
//
// Latency is measured from the start of ServeHTTP until the response is
// finished (the body fully copied). Protocol upgrades (101, WebSocket) are
// counted as requests but kept out of the latency histogram: their duration
// is the connection's lifetime, not a response time.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rw := p.writers.Get().(*responseWriter)
	rw.w, rw.req = w, r
	rw.start = p.now()
	rw.backend = p.sp.Pick(r)
	if r.Body != nil && r.Body != http.NoBody && r.ContentLength != 0 {
		// Tracked for the canary's failover, and ended at its length for
		// http.Transport (see bodyTracker).
		rw.body = &bodyTracker{rc: r.Body, remaining: r.ContentLength}
		r.Body = rw.body
	}
	defer func() {
		if v := recover(); v != nil {
			// A stream that broke after the headers were sent
			// (http.ErrAbortHandler) or a panic further down.
			switch {
			case rw.kind != KindNone:
			case rw.writeErr || r.Context().Err() != nil:
				rw.kind = KindCanceled
			case v == http.ErrAbortHandler: //nolint:errorlint // panics carry the sentinel itself
				rw.kind = KindReset
			default:
				rw.kind = KindOther
			}
			p.finish(rw)
			panic(v)
		}
	}()
	p.forward(rw, r, rw.backend)
	if rw.failover {
		// The canary could not be reached and nothing was sent: count the
		// failed attempt against the canary and let stable answer.
		p.record(rw, split.Canary, http.StatusBadGateway, rw.kind)
		rw.failover, rw.retried = false, true
		rw.backend, rw.kind, rw.status = split.Stable, KindNone, 0
		rw.start = p.now()
		p.forward(rw, r, split.Stable)
	}
	p.finish(rw)
}

// forward sends r to backend b: over the fast path when both qualify, else
// through the backend's ReverseProxy.
func (p *Proxy) forward(rw *responseWriter, r *http.Request, b split.Backend) {
	bk := p.backends[b]
	if bk.up != nil && fastEligible(r) {
		p.forwardFast(rw, r, bk.up)
		return
	}
	bk.rp.ServeHTTP(rw, r)
}

// finish records the request's final outcome and returns rw to the pool.
func (p *Proxy) finish(rw *responseWriter) {
	status := rw.status
	if status == 0 {
		status = http.StatusOK // what net/http sends for an empty answer
	}
	if rw.kind == KindCanceled && rw.status == 0 {
		status = statusClientClosed
	}
	p.record(rw, rw.backend, status, rw.kind)
	rw.reset()
	p.writers.Put(rw)
}

// record counts one attempt on backend b.
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
	bk := p.backends[b]
	c := &bk.ctr
	if status < 0 || status >= maxStatus {
		status = 0
	}
	c.codes[status].Add(1)
	if p.cfg.AccessLog {
		p.accessLog(rw, b, status, kind, lat)
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
	isErr := kind != KindNone || status >= 500
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
	if isErr && b == split.Canary && p.pending.CompareAndSwap(false, true) {
		select {
		case p.canaryErrs <- struct{}{}:
		default:
		}
	}
}

// redact replaces every configured secret in s.
func (p *Proxy) redact(s string) string {
	for _, secret := range p.cfg.Redact {
		if secret != "" && strings.Contains(s, secret) {
			s = strings.ReplaceAll(s, secret, "[REDACTED]")
		}
	}
	return s
}

func (p *Proxy) accessLog(rw *responseWriter, b split.Backend, status int, kind ErrorKind, lat time.Duration) {
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
	if kind != KindNone {
		ev = ev.Str("error_kind", kind.String())
	}
	if rw.retried {
		ev = ev.Bool("failover", true)
	}
	ev.Msg("request")
}

// errorHandler is every backend's ReverseProxy.ErrorHandler: it classifies
// the failure, asks for a failover when the canary could not be reached, and
// otherwise answers 504 (timeouts) or 502.
func (p *Proxy) errorHandler(w http.ResponseWriter, out *http.Request, err error) {
	rw, ok := w.(*responseWriter)
	if !ok { // not reached through ServeHTTP
		http.Error(w, http.StatusText(http.StatusBadGateway), http.StatusBadGateway)
		return
	}
	kind := classify(err, rw.req.Context().Err() != nil)
	rw.kind = kind
	if kind == KindCanceled {
		return // nobody is listening
	}
	if kind.beforeRequest() && rw.backend == split.Canary && !rw.retried && rw.status == 0 &&
		(rw.body == nil || !rw.body.read.Load()) {
		rw.failover = true
		return
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
	return s
}

// Totals returns only the cumulative counts, cheaply (no histogram copy). It
// also re-arms CanaryErrors.
func (p *Proxy) Totals() (stable, canary Totals) {
	p.pending.Store(false)
	return p.backends[split.Stable].ctr.totals(), p.backends[split.Canary].ctr.totals()
}

// CanaryErrors delivers a value soon after a canary request fails, so the
// guard can judge at once instead of waiting for its tick. Coalesced: at most
// one value is pending; the request path takes no lock and does not allocate.
// After a value was sent, the next one is sent only once Snapshot or Totals
// has been called (the receiver is expected to take a snapshot).
func (p *Proxy) CanaryErrors() <-chan struct{} { return p.canaryErrs }

// Run runs the background work (active health checks) until ctx ends. It
// returns nil when ctx ends, after closing the idle upstream connections
// of the fast path.
func (p *Proxy) Run(ctx context.Context) error {
	defer func() {
		for _, bk := range p.backends {
			if bk.up != nil {
				bk.up.shutdown()
			}
			if t, ok := bk.rp.Transport.(*http.Transport); ok && p.cfg.Transport == nil {
				t.CloseIdleConnections()
			}
		}
	}()
	if p.cfg.HealthPath == "" {
		<-ctx.Done()
		return nil
	}
	return p.runHealth(ctx)
}

// Health returns both backends' active health-check figures.
func (p *Proxy) Health() (stable, canary HealthStats) {
	if p.cfg.HealthPath == "" {
		return HealthStats{Healthy: true}, HealthStats{Healthy: true}
	}
	now := p.since(p.now())
	return p.backends[split.Stable].health.stats(now), p.backends[split.Canary].health.stats(now)
}

// bufferPool lends ReverseProxy its copy buffers. Boxes (which sync.Pool
// needs to hold a slice without allocating) are recycled through a second
// pool, so a steady state allocates nothing.
type bufferPool struct {
	full  sync.Pool // *bufBox holding a buffer
	empty sync.Pool // *bufBox without one
}

type bufBox struct{ b []byte }

// Get implements httputil.BufferPool.
func (bp *bufferPool) Get() []byte {
	if box, _ := bp.full.Get().(*bufBox); box != nil {
		b := box.b
		box.b = nil
		bp.empty.Put(box)
		return b
	}
	return make([]byte, copyBufferSize)
}

// Put implements httputil.BufferPool.
func (bp *bufferPool) Put(b []byte) {
	box, _ := bp.empty.Get().(*bufBox)
	if box == nil {
		box = new(bufBox)
	}
	box.b = b
	bp.full.Put(box)
}
