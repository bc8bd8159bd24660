package proxy

import (
	"context"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"net/url"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/canaryd/canaryd/proxy/h1"
)

// Pools.
//
// A backend is a pool of endpoints: one per configured URL whose host is
// an address, one per resolved address of a URL whose host is a name. An
// endpoint has its own connections (a fast-path h1.Pool and an
// http.Transport that dials its address, so the Host and the TLS server
// name stay the URL's), all of the backend's drawing on one h1.Limiter.
//
// The endpoints that take traffic (the active set) are those neither
// ejected nor failing their health checks; when none is left, those not
// ejected; when none of those either, all. The set is an immutable slice
// swapped atomically: picking takes no lock. It changes under backend.mu,
// off the request path or at most once per ejection: when an endpoint is
// ejected, when its ejection ends (noticed by the first pick after
// nextReadmit), when its health flips, and when DNS answers differently.
//
// Ejection follows Envoy's outlier detection (consecutive_5xx with
// locally originated failures counted): EjectConsecutiveFailures failures
// in a row (a failed connection, or an answer counted as an error) eject an
// endpoint for EjectTime, doubled for each recent ejection up to
// MaxEjectTime; an ejection is forgotten for every EjectTime the endpoint
// then goes without one. At most half of a pool (rounded down) is ejected
// at once, so a pool of one is never ejected: its failures are the
// backend's, for the judge and the canary's failover to see.

// Defaults for the pool settings of Config.
const (
	DefaultDNSRefresh               = 30 * time.Second
	DefaultEjectConsecutiveFailures = 5
	DefaultEjectTime                = 30 * time.Second
	// MaxEjectTime bounds an ejection however often it repeats (Envoy's
	// max_ejection_time default).
	MaxEjectTime = 5 * time.Minute
)

// dnsTimeout bounds one resolution of a backend's names.
const dnsTimeout = 5 * time.Second

// endpoint is one address of a backend's pool.
type endpoint struct {
	bk   *backend
	url  *url.URL // the configured URL: path prefix, Host
	addr string   // host:port dialed

	rp        *httputil.ReverseProxy // the standard path
	transport *http.Transport        // nil with Config.Transport
	target    *h1.Target             // the fast path; nil when the endpoint does not qualify
	pool      *h1.Pool
	health    *probe // nil without Config.HealthPath

	inFlight    atomic.Int64
	requests    atomic.Uint64 // attempts, cumulative
	errors      atomic.Uint64
	ejections   atomic.Uint64
	consecutive atomic.Int32 // failures in a row
	// ejectedUntil is the window-clock time (Proxy.since) the current or
	// last ejection ends; the endpoint is ejected while now is before it.
	ejectedUntil atomic.Int64
	healthy      atomic.Bool // passes its health checks (true without)
	win          countWindow

	// Under bk.mu:
	ejected bool  // ejected, as the active set knows (for the readmission log)
	recent  int   // recent ejections: each doubles the next one
	lastEnd int64 // when the last ejection ended (window clock)
}

// endpointSet is a backend's pool as it stands: every endpoint, and those
// that take traffic (never empty when all is not).
type endpointSet struct {
	all    []*endpoint
	active []*endpoint
}

// endpointKey identifies an endpoint across DNS refreshes.
type endpointKey struct {
	u    *url.URL
	addr string
}

// newEndpoint builds the endpoint of u at addr for bk.
func (p *Proxy) newEndpoint(bk *backend, u *url.URL, addr string) *endpoint {
	ep := &endpoint{bk: bk, url: u, addr: addr}
	ep.healthy.Store(true)
	ep.win.init(p.cfg.Window)
	out := u
	if bk.scheme == schemeH2C {
		// HTTP/2 with prior knowledge to an http:// URL (the Transport's
		// Protocols say so); the URL the backend sees is http.
		c := *u
		c.Scheme = "http"
		out = &c
	}
	rt := p.cfg.Transport
	if rt == nil {
		t := newTransport(p.cfg, bk.scheme)
		d := &net.Dialer{Timeout: dialTimeout, KeepAlive: dialKeepAlive}
		// The endpoint's address, whatever the URL's host resolves to
		// now: the Host field and the TLS server name stay the URL's.
		dial := func(ctx context.Context, network, _ string) (net.Conn, error) {
			return d.DialContext(ctx, network, addr)
		}
		ep.transport, rt = t, t
		if bk.scheme == "http" {
			// Plaintext HTTP/1.1: the Transport's connections refuse bytes
			// no request asked for, as the fast path's (h1.GuardAnswers).
			dial, rt = h1.GuardDial(dial), h1.GuardAnswers(t)
		}
		t.DialContext = bk.lim.DialContext(dial)
		if !p.cfg.DisableFastPath && bk.scheme == "http" {
			if ep.target = h1.NewTarget(u); ep.target != nil {
				ep.pool = h1.NewPool(bk.lim, h1.PoolConfig{
					Addr:                   addr,
					ResponseHeaderTimeout:  p.cfg.ResponseHeaderTimeout,
					MaxResponseHeaderBytes: p.cfg.MaxResponseHeaderBytes,
					Buffers:                &p.buffers,
				})
			}
		}
	}
	ep.rp = p.newReverseProxy(out, rt, bk.name)
	if p.cfg.HealthPath != "" {
		ep.health = newProbe(out, p.cfg.HealthPath, rt, p.cfg.Window)
	}
	return ep
}

// retire closes an endpoint that left its pool: its idle connections now,
// its busy ones when they finish (the fast path's; the Transport's are
// closed again at the next refresh, see backend.retired).
func (ep *endpoint) retire() {
	if ep.pool != nil {
		ep.pool.Retire()
	}
	if ep.transport != nil {
		ep.transport.CloseIdleConnections()
	}
}

// closeIdle closes the idle connections of the pool's Transports: the
// limiter's way to free slots for a waiter.
func (bk *backend) closeIdle() {
	if s := bk.set.Load(); s != nil {
		for _, ep := range s.all {
			if ep.transport != nil {
				ep.transport.CloseIdleConnections()
			}
		}
	}
}

// pick chooses the endpoint for a request at now (window clock), without a
// lock: one random pair (LeastRequest) or the next in turn (RoundRobin) of
// the active set.
func (bk *backend) pick(p *Proxy, now int64) *endpoint {
	if now >= bk.nextReadmit.Load() {
		bk.readmit(p, now)
	}
	act := bk.set.Load().active
	n := uint64(len(act))
	if n == 1 {
		return act[0]
	}
	if p.cfg.LoadBalancer == RoundRobin {
		return act[(bk.rr.Add(1)-1)%n]
	}
	r := rand.Uint64()
	i := (r & math.MaxUint32) % n
	j := (r >> 32) % (n - 1)
	if j >= i {
		j++
	}
	a, b := act[i], act[j]
	if b.inFlight.Load() < a.inFlight.Load() {
		return b
	}
	return a
}

// pickOther chooses an endpoint other than failed for a retry: from the
// active set, else from those not ejected, else from all; among them, those
// whose last attempt did not fail, if any (a retry should not land on an
// endpoint failing as well). Nil when the pool has no other endpoint. Off
// the common path: it may allocate.
func (bk *backend) pickOther(p *Proxy, now int64, failed *endpoint) *endpoint {
	set := bk.set.Load()
	for _, from := range [...][]*endpoint{set.active, set.all} {
		var cands, good []*endpoint
		for _, ep := range from {
			if ep != failed && ep.ejectedUntil.Load() <= now {
				cands = append(cands, ep)
				if ep.consecutive.Load() == 0 {
					good = append(good, ep)
				}
			}
		}
		if len(cands) == 0 {
			continue
		}
		if len(good) > 0 {
			cands = good
		}
		if p.cfg.LoadBalancer == RoundRobin {
			// Without taking a turn: the retry is the failed turn's.
			return cands[bk.rr.Load()%uint64(len(cands))]
		}
		a, b := cands[rand.IntN(len(cands))], cands[rand.IntN(len(cands))]
		if b.inFlight.Load() < a.inFlight.Load() {
			return b
		}
		return a
	}
	for _, ep := range set.all {
		if ep != failed {
			return ep
		}
	}
	return nil
}

// hasOther reports whether the pool has an endpoint besides ep.
func (bk *backend) hasOther(ep *endpoint) bool {
	all := bk.set.Load().all
	return len(all) > 1 || len(all) == 1 && all[0] != ep
}

// observe counts one attempt of ep that ended at now: its figures, and its
// run of failures, which ejects it at EjectConsecutiveFailures.
func (ep *endpoint) observe(p *Proxy, now int64, failed bool) {
	ep.requests.Add(1)
	ep.win.record(now, failed)
	if !failed {
		if ep.consecutive.Load() != 0 {
			ep.consecutive.Store(0)
		}
		return
	}
	ep.errors.Add(1)
	if n := p.cfg.EjectConsecutiveFailures; n > 0 && int(ep.consecutive.Add(1)) >= n {
		ep.bk.eject(p, ep, now)
	}
}

// eject takes ep out of its pool's traffic, unless it is out already or
// half the pool is.
func (bk *backend) eject(p *Proxy, ep *endpoint, now int64) {
	bk.mu.Lock()
	defer bk.mu.Unlock()
	ep.consecutive.Store(0) // a capped ejection is tried again after as many failures
	set := bk.set.Load()
	if ep.ejectedUntil.Load() > now || !slices.Contains(set.all, ep) {
		return
	}
	ejected := 0
	for _, e := range set.all {
		if e.ejectedUntil.Load() > now {
			ejected++
		}
	}
	if 2*(ejected+1) > len(set.all) {
		bk.ctr.ejectionsCapped.Add(1)
		p.log.Debug().Str("backend", bk.name.String()).Str("endpoint", ep.addr).Int("ejected", ejected).Int("pool", len(set.all)).
			Msg("endpoint not ejected: half of its pool is ejected already")
		return
	}
	base := int64(p.cfg.EjectTime)
	if ep.recent > 0 && ep.lastEnd > 0 && now > ep.lastEnd {
		// An ejection is forgotten for every EjectTime without one.
		ep.recent = max(ep.recent-int((now-ep.lastEnd)/base), 0)
	}
	ep.recent++
	d := int64(MaxEjectTime)
	if ep.recent <= 20 {
		d = min(base<<(ep.recent-1), d)
	}
	until := now + d
	ep.ejectedUntil.Store(until)
	ep.lastEnd = until
	ep.ejected = true
	ep.ejections.Add(1)
	bk.rebuildLocked(set.all, now)
	p.log.Warn().Str("backend", bk.name.String()).Str("endpoint", ep.addr).Dur("for", time.Duration(d)).
		Int("consecutive_failures", p.cfg.EjectConsecutiveFailures).Msg("endpoint ejected from its pool")
}

// readmit returns the endpoints whose ejection ended to the active set.
func (bk *backend) readmit(p *Proxy, now int64) {
	bk.mu.Lock()
	defer bk.mu.Unlock()
	if now < bk.nextReadmit.Load() {
		return // another request did it
	}
	set := bk.set.Load()
	for _, ep := range set.all {
		if ep.ejected && ep.ejectedUntil.Load() <= now {
			ep.ejected = false
			ep.consecutive.Store(0)
			p.log.Info().Str("backend", bk.name.String()).Str("endpoint", ep.addr).Msg("endpoint readmitted to its pool")
		}
	}
	bk.rebuildLocked(set.all, now)
}

// rebuildLocked publishes all as the pool, with its active set and the
// time of the next readmission. Under bk.mu.
func (bk *backend) rebuildLocked(all []*endpoint, now int64) {
	active := make([]*endpoint, 0, len(all))
	next := int64(math.MaxInt64)
	for _, ep := range all {
		until := ep.ejectedUntil.Load()
		if until > now {
			next = min(next, until)
			continue
		}
		if ep.healthy.Load() {
			active = append(active, ep)
		}
	}
	if len(active) == 0 {
		for _, ep := range all {
			if ep.ejectedUntil.Load() <= now {
				active = append(active, ep)
			}
		}
	}
	if len(active) == 0 {
		active = all
	}
	bk.set.Store(&endpointSet{all: all, active: active})
	bk.nextReadmit.Store(next)
}

// setHealthy records an endpoint's health flip and updates the active set.
func (bk *backend) setHealthy(p *Proxy, ep *endpoint, healthy bool) {
	bk.mu.Lock()
	defer bk.mu.Unlock()
	ep.healthy.Store(healthy)
	bk.rebuildLocked(bk.set.Load().all, p.since(p.now()))
}

// hostPort returns u's host and the port to dial (the scheme's default when
// u names none).
func hostPort(u *url.URL) (host, port string) {
	host, port = u.Hostname(), u.Port()
	if port == "" {
		port = "80"
		if u.Scheme == "https" {
			port = "443"
		}
	}
	return host, port
}

// isAddress reports whether host is an IP address (nothing to resolve).
func isAddress(host string) bool {
	_, err := netip.ParseAddr(host)
	return err == nil
}

// resolves reports whether any backend URL has a name to resolve.
func (p *Proxy) resolves() bool {
	if p.cfg.Transport != nil {
		return false
	}
	for _, bk := range p.backends {
		for _, u := range bk.urls {
			if host, _ := hostPort(u); !isAddress(host) {
				return true
			}
		}
	}
	return false
}

// endpointKeys resolves bk's URLs into endpoints. A name that does not
// resolve keeps the addresses it had (cur), or, never resolved, is dialed
// by name.
func (p *Proxy) endpointKeys(ctx context.Context, bk *backend, cur *endpointSet) []endpointKey {
	var keys []endpointKey
	for _, u := range bk.urls {
		host, port := hostPort(u)
		if p.cfg.Transport != nil || isAddress(host) {
			keys = append(keys, endpointKey{u, net.JoinHostPort(host, port)})
			continue
		}
		addrs, err := p.resolver.LookupHost(ctx, host)
		if err == nil && len(addrs) > 0 {
			slices.Sort(addrs)
			for _, a := range slices.Compact(addrs) {
				keys = append(keys, endpointKey{u, net.JoinHostPort(a, port)})
			}
			continue
		}
		var kept []endpointKey
		if cur != nil {
			for _, ep := range cur.all {
				if ep.url == u {
					kept = append(kept, endpointKey{u, ep.addr})
				}
			}
		}
		if len(kept) == 0 {
			kept = append(kept, endpointKey{u, net.JoinHostPort(host, port)})
		}
		ev := p.log.Warn().Str("backend", bk.name.String()).Str("host", host)
		if err != nil {
			ev = ev.Err(err)
		}
		ev.Msg("backend host name did not resolve: keeping its previous addresses")
		keys = append(keys, kept...)
	}
	return keys
}

// apply makes keys bk's pool, keeping the endpoints (connections, figures,
// ejections) of the keys it had. It returns the endpoints added and
// removed.
func (bk *backend) apply(p *Proxy, keys []endpointKey, now int64) (added, removed []*endpoint) {
	bk.mu.Lock()
	defer bk.mu.Unlock()
	var old []*endpoint
	if s := bk.set.Load(); s != nil {
		old = s.all
	}
	byKey := make(map[endpointKey]*endpoint, len(old))
	for _, ep := range old {
		byKey[endpointKey{ep.url, ep.addr}] = ep
	}
	all := make([]*endpoint, 0, len(keys))
	for _, k := range keys {
		ep, ok := byKey[k]
		if !ok {
			ep = p.newEndpoint(bk, k.u, k.addr)
			added = append(added, ep)
		}
		delete(byKey, k)
		if !slices.Contains(all, ep) {
			all = append(all, ep)
		}
	}
	if len(added) == 0 && len(byKey) == 0 && slices.Equal(all, old) {
		return nil, nil
	}
	for _, ep := range old {
		if _, gone := byKey[endpointKey{ep.url, ep.addr}]; gone {
			removed = append(removed, ep)
		}
	}
	bk.rebuildLocked(all, now)
	bk.retired = append(bk.retired, removed...)
	return added, removed
}

// refresh resolves bk's names again and applies the answer.
func (p *Proxy) refresh(ctx context.Context, bk *backend) {
	ctx, cancel := context.WithTimeout(ctx, dnsTimeout)
	defer cancel()
	keys := p.endpointKeys(ctx, bk, bk.set.Load())
	if ctx.Err() != nil && ctx.Err() != context.DeadlineExceeded {
		return // shutting down
	}
	added, removed := bk.apply(p, keys, p.since(p.now()))
	for _, ep := range removed {
		ep.retire()
	}
	if len(added)+len(removed) > 0 {
		addrs := func(eps []*endpoint) []string {
			out := make([]string, len(eps))
			for i, ep := range eps {
				out[i] = ep.addr
			}
			return out
		}
		p.log.Info().Str("backend", bk.name.String()).Strs("added", addrs(added)).Strs("removed", addrs(removed)).
			Int("endpoints", len(bk.set.Load().all)).Msg("backend pool changed after DNS refresh")
	}
	// The Transports of endpoints removed earlier: close what went idle
	// since, and forget those with nothing in flight.
	bk.mu.Lock()
	retired := bk.retired[:0]
	for _, ep := range bk.retired {
		if ep.transport != nil {
			ep.transport.CloseIdleConnections()
		}
		if ep.inFlight.Load() > 0 {
			retired = append(retired, ep)
		}
	}
	clear(bk.retired[len(retired):])
	bk.retired = retired
	bk.mu.Unlock()
}

// runDNS resolves the backends' names every DNSRefresh until ctx ends.
func (p *Proxy) runDNS(ctx context.Context) {
	t := time.NewTicker(p.cfg.DNSRefresh)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for _, bk := range p.backends {
			func() {
				defer func() {
					if v := recover(); v != nil {
						p.log.Error().Str("backend", bk.name.String()).Interface("panic", v).Msg("DNS refresh panicked")
					}
				}()
				p.refresh(ctx, bk)
			}()
		}
	}
}

// endpointStats returns bk's endpoints' figures at now (window clock).
func (p *Proxy) endpointStats(bk *backend, now int64) []EndpointStats {
	all := bk.set.Load().all
	out := make([]EndpointStats, len(all))
	for i, ep := range all {
		st := EndpointStats{
			URL:      ep.url.Redacted(),
			Address:  ep.addr,
			Healthy:  ep.healthy.Load(),
			InFlight: ep.inFlight.Load(),
		}
		if until := ep.ejectedUntil.Load(); until > now {
			st.EjectedUntil = p.base.Add(time.Duration(until))
		}
		st.Requests, st.Errors = ep.win.read(now)
		out[i] = st
	}
	return out
}

// countWindow is an endpoint's sliding window of attempt and error counts:
// the window's ring of slots without the latency histograms.
type countWindow struct {
	slotNanos int64
	mu        sync.Mutex // serialises slot resets
	slots     [windowSlots]countSlot
}

type countSlot struct {
	epoch            atomic.Int64
	requests, errors atomic.Uint64
}

func (w *countWindow) init(d time.Duration) {
	w.slotNanos = max(int64(d)/windowSlots, 1)
	for i := range w.slots {
		w.slots[i].epoch.Store(-1 << 62)
	}
}

func (w *countWindow) record(now int64, failed bool) {
	e := now / w.slotNanos
	s := &w.slots[uint64(e)%windowSlots]
	if cur := s.epoch.Load(); cur != e {
		if cur > e {
			return // too late: the slot holds a newer epoch
		}
		w.mu.Lock()
		if s.epoch.Load() < e {
			s.requests.Store(0)
			s.errors.Store(0)
			s.epoch.Store(e)
		}
		w.mu.Unlock()
		if s.epoch.Load() != e {
			return
		}
	}
	s.requests.Add(1)
	if failed {
		s.errors.Add(1)
	}
}

func (w *countWindow) read(now int64) (requests, errors uint64) {
	e := now / w.slotNanos
	for i := range w.slots {
		s := &w.slots[i]
		if se := s.epoch.Load(); se > e || se <= e-windowSlots {
			continue
		}
		requests += s.requests.Load()
		errors += s.errors.Load()
	}
	return requests, errors
}
