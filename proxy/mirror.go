package proxy

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/canaryd/canaryd/split"
)

// Shadow traffic (mirroring).
//
// With MirrorPercent, that share of the requests bound for stable is also
// sent to the canary, in the background: the client gets stable's answer
// and never waits for the copy. Only the methods in MirrorMethods (GET,
// HEAD, OPTIONS by default) are copied, never a protocol upgrade or a gRPC
// call, and only with a body of at most MirrorMaxBody bytes (read ahead
// whole, see RequestBuffer); a request due a copy with a larger or
// streaming body is not copied (canary_mirror_skipped_total). Nothing is
// copied while the canary is blocked (rolled back, unhealthy).
//
// Bounded: at most MirrorConcurrency copies exist at once, queued or in
// flight. A copy is made (its header cloned, its body bytes shared) only
// once its slot is reserved; a request that finds every slot taken is not
// copied, and counted (canary_mirror_dropped_total). So a canary that
// hangs holds MirrorConcurrency copies at most (each at most MirrorMaxBody
// plus its header), until ResponseHeaderTimeout ends each one, and costs
// the clients one failed atomic add per request. A copy keeps nothing of
// the client's request (the server loop reuses it after ServeHTTP): its
// header is a clone, its body the bytes read ahead, which the proxy
// allocated for this request and never writes again.
//
// A copy goes to an endpoint of the canary's pool, through the endpoint's
// standard path (its ReverseProxy: the same outbound request, X-Forwarded-*
// included), with "X-Canaryd-Mirror: 1" added so that the canary can tell a
// copy from a user, and its answer is read and thrown away.
//
// Evidence: a copy's outcome is canary evidence like any canary request:
// it enters the canary's window and cumulative totals (Snapshot's Canary
// Stats, hence the judge's sample, a fleet's evidence and the guard's
// wake-up on a failed or slow request) and the endpoint's run of failures
// (ejection). It is recorded a second time, alone, as Snapshot's Mirror,
// so that the copies' share can be shown separately; and it stays out of
// the client-facing metrics (canary_requests_total, canary_responses_total,
// canary_errors_total, canary_request_duration_seconds), which count what
// clients sent and got, and has its own (canary_mirror_*).

// MirrorMaxBody is the largest request body a copy carries.
const MirrorMaxBody = 64 << 10

// DefaultMirrorConcurrency is the number of copies that may exist at once
// when Config.MirrorConcurrency is zero.
const DefaultMirrorConcurrency = 64

// mirrorHeader marks a copy for the canary.
const mirrorHeader = "X-Canaryd-Mirror"

// defaultMirrorMethods are copied when Config.MirrorMethods is nil: the
// safe ones, whose copies have no side effects on a well-behaved service.
var defaultMirrorMethods = [...]string{http.MethodGet, http.MethodHead, http.MethodOptions}

// ParseMirrorMethods reads a comma-separated list of request methods
// (CANARY_MIRROR_METHODS), upper-cased: "GET,HEAD,OPTIONS,POST". An empty
// s is nil, the default. CONNECT and TRACE are refused, as the proxy
// refuses them.
func ParseMirrorMethods(s string) ([]string, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	var out []string
	for _, m := range strings.Split(s, ",") {
		m = strings.ToUpper(strings.TrimSpace(m))
		if err := checkMirrorMethod(m); err != nil {
			return nil, err
		}
		if !slices.Contains(out, m) {
			out = append(out, m)
		}
	}
	return out, nil
}

func checkMirrorMethod(m string) error {
	if m == "" {
		return fmt.Errorf("an empty method in the list")
	}
	for i := 0; i < len(m); i++ {
		c := m[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return fmt.Errorf("%q is not a method (a token such as POST)", m)
		}
	}
	if m == http.MethodConnect || m == http.MethodTrace {
		return fmt.Errorf("%s is never proxied, so never copied", m)
	}
	return nil
}

// MirrorStats are the copies' figures: their window (alone; they are also
// in the canary's), and what was not copied. The zero value is mirroring
// off.
type MirrorStats struct {
	Stats
	// Percent is the configured share of stable's requests copied, in
	// hundredths of a percent (0: mirroring is off).
	Percent uint32
	// Dropped counts copies not made because MirrorConcurrency copies
	// existed already, since start.
	Dropped uint64
	// Skipped counts requests due a copy whose body was too large (or
	// streaming) to copy, since start.
	Skipped uint64
	// InFlight is the number of copies queued or being sent now.
	InFlight int64
}

// mirror is the proxy's shadow-traffic state; nil when mirroring is off.
type mirror struct {
	percent uint32
	methods []string
	limit   int64

	n     split.Exact  // over the stable requests of a mirrored method
	busy  atomic.Int64 // copies reserved: queued or in flight
	queue chan *mirrorCopy

	win      *window
	requests atomic.Uint64
	errors   atomic.Uint64
	slow     atomic.Uint64
	dropped  atomic.Uint64
	skipped  atomic.Uint64
	codes    [maxStatus]atomic.Uint64
}

func newMirror(cfg Config) *mirror {
	if cfg.MirrorPercent == 0 {
		return nil
	}
	m := &mirror{
		percent: cfg.MirrorPercent,
		methods: cfg.MirrorMethods,
		limit:   int64(cfg.MirrorConcurrency),
		win:     newWindow(cfg.Window),
	}
	if m.methods == nil {
		m.methods = defaultMirrorMethods[:]
	}
	// Never more than limit copies are reserved, so a send on the queue
	// never blocks.
	m.queue = make(chan *mirrorCopy, m.limit)
	return m
}

// mirrorCopy is what a copy needs of the client's request, owned by the
// copy alone.
type mirrorCopy struct {
	method     string
	url        url.URL
	host       string
	remoteAddr string
	tls        bool
	header     http.Header
	body       []byte // nil: no body
}

// offer makes a copy of r for the canary when one is due and a slot is
// free. It runs in the client's goroutine before r is forwarded, and does
// nothing more for most requests than a method check and a counter.
func (p *Proxy) offer(rw *responseWriter, r *http.Request) {
	m := p.mirror
	if p.sp.Blocked() != 0 || rw.grpc || !slices.Contains(m.methods, r.Method) || r.Header["Upgrade"] != nil {
		return
	}
	if !m.n.Take(m.percent) {
		return
	}
	var body []byte
	if rw.body != nil {
		if !rw.body.whole || len(rw.body.ahead) > MirrorMaxBody {
			m.skipped.Add(1)
			return
		}
		body = rw.body.ahead
	}
	if m.busy.Add(1) > m.limit {
		m.busy.Add(-1)
		m.dropped.Add(1)
		return
	}
	c := &mirrorCopy{
		method:     r.Method,
		url:        *r.URL,
		host:       r.Host,
		remoteAddr: r.RemoteAddr,
		tls:        r.TLS != nil,
		header:     r.Header.Clone(),
		body:       body,
	}
	c.url.User = nil // never forwarded: ReverseProxy builds the target URL
	c.header[mirrorHeader] = []string{"1"}
	m.queue <- c // never blocks: at most limit are reserved
}

// runMirror sends the copies until ctx ends, MirrorConcurrency at once.
func (p *Proxy) runMirror(ctx context.Context) {
	var wg sync.WaitGroup
	for range p.mirror.limit {
		wg.Go(func() {
			for {
				select {
				case <-ctx.Done():
					return
				case c := <-p.mirror.queue:
					p.sendCopy(ctx, c)
				}
			}
		})
	}
	wg.Wait()
}

// mirrorWriter takes a copy's answer: its status, the body thrown away.
type mirrorWriter struct {
	header http.Header
	status int
	kind   ErrorKind
}

func (w *mirrorWriter) Header() http.Header { return w.header }

func (w *mirrorWriter) WriteHeader(code int) {
	if w.status == 0 && code >= 200 {
		w.status = code
	}
}

func (w *mirrorWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return len(b), nil
}

// sendCopy sends c to an endpoint of the canary and records the outcome.
func (p *Proxy) sendCopy(ctx context.Context, c *mirrorCopy) {
	m := p.mirror
	defer m.busy.Add(-1)
	if p.sp.Blocked() != 0 {
		return // rolled back while it waited: nothing more goes to the canary
	}
	bk := p.backends[split.Canary]
	start := p.now()
	ep := bk.pick(p, p.since(start))
	ep.inFlight.Add(1)
	// The whole exchange is bounded, so that a canary that hangs frees the
	// slot. A server context (a nil *http.Server, never read) makes the
	// ReverseProxy abort a broken answer with http.ErrAbortHandler, as in a
	// server, rather than log about tests.
	cctx, cancel := context.WithTimeout(context.WithValue(ctx, http.ServerContextKey, (*http.Server)(nil)), p.cfg.ResponseHeaderTimeout)
	defer cancel()
	req := (&http.Request{
		Method:     c.method,
		URL:        &c.url,
		Proto:      "HTTP/1.1",
		ProtoMajor: 1,
		ProtoMinor: 1,
		Header:     c.header,
		Host:       c.host,
		RemoteAddr: c.remoteAddr,
		Body:       http.NoBody,
	}).WithContext(cctx)
	if c.tls {
		req.TLS = &tls.ConnectionState{} // for X-Forwarded-Proto
	}
	if len(c.body) > 0 {
		req.Body, req.ContentLength = io.NopCloser(bytes.NewReader(c.body)), int64(len(c.body))
	}
	w := &mirrorWriter{header: make(http.Header)}
	func() {
		defer func() {
			if v := recover(); v != nil && w.kind == KindNone {
				w.kind = KindReset // the answer broke after its header
			}
		}()
		ep.rp.ServeHTTP(w, req)
	}()
	bk.lim.Reclaim()
	if ctx.Err() != nil {
		ep.inFlight.Add(-1)
		return // shutting down: the copy proves nothing about the canary
	}
	status := w.status
	switch {
	case w.kind == KindTimeout:
		status = http.StatusGatewayTimeout
	case w.kind != KindNone && w.status == 0:
		status = http.StatusBadGateway
	case status == 0:
		status = http.StatusOK
	}
	p.recordCopy(ep, start, status, w.kind)
}

// recordCopy records a copy's outcome: as canary evidence (the canary's
// window and totals, its endpoint), and as the mirror's own.
func (p *Proxy) recordCopy(ep *endpoint, start time.Time, status int, kind ErrorKind) {
	m := p.mirror
	now := p.now()
	lat := max(now.Sub(start), 0)
	at := p.since(now)
	if status < 0 || status >= maxStatus {
		status = 0
	}
	isErr := kind != KindNone || p.errStatus[status]
	isSlow := lat > p.cfg.SlowThreshold
	bk := p.backends[split.Canary]
	bk.win.record(at, lat, isErr, isSlow, true)
	m.win.record(at, lat, isErr, isSlow, true)
	m.requests.Add(1)
	m.codes[status].Add(1)
	if isErr {
		m.errors.Add(1)
	}
	if isSlow {
		m.slow.Add(1)
	}
	ep.inFlight.Add(-1)
	ep.observe(p, at, isErr)
	if (isErr || isSlow) && p.pending.CompareAndSwap(false, true) {
		select {
		case p.canaryErrs <- struct{}{}:
		default:
		}
	}
}

// totals are the copies' cumulative counts.
func (m *mirror) totals() Totals {
	return Totals{Requests: m.requests.Load(), Errors: m.errors.Load(), Slow: m.slow.Load()}
}

// addTotals adds b to a.
func addTotals(a, b Totals) Totals {
	return Totals{Requests: a.Requests + b.Requests, Errors: a.Errors + b.Errors, Slow: a.Slow + b.Slow}
}

// mirrorStats copies the mirror's figures at window-clock now.
func (p *Proxy) mirrorStats(now int64) MirrorStats {
	m := p.mirror
	if m == nil {
		return MirrorStats{}
	}
	s := MirrorStats{Percent: m.percent, Dropped: m.dropped.Load(), Skipped: m.skipped.Load(), InFlight: m.busy.Load()}
	m.win.read(now, &s.Stats)
	s.Totals = m.totals()
	return s
}
