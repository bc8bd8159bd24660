package proxy

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/canaryd/canaryd/split"
)

// Health checking: every endpoint of a pool is probed each round. An
// endpoint starts healthy, turns unhealthy after healthFlipAfter
// consecutive failed probes and healthy again after as many consecutive
// successes. A probe is a GET of the endpoint's URL joined with
// Config.HealthPath, sent to its address; a 2xx or 3xx answer within the
// probe timeout (the smaller of the interval and 2s) is a success. A
// backend is healthy while any of its endpoints is; its round fails when no
// endpoint passes (what canary_health_checks_total and HealthStats count,
// so that one endpoint down in a pool of three, which hurts no one, does
// not read as a failing backend).
const (
	healthFlipAfter   = 2
	healthMaxTimeout  = 2 * time.Second
	healthBodyDiscard = 64 << 10
)

// probe is one endpoint's active health checks: its state and recent
// results.
type probe struct {
	url    string
	client *http.Client
	ring   healthRing
}

func newProbe(base *url.URL, path string, rt http.RoundTripper, window time.Duration) *probe {
	return &probe{
		url: base.JoinPath(path).String(),
		client: &http.Client{
			Transport: rt,
			// A redirect is an answer: 3xx counts as success, not followed.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		ring: newHealthRing(window),
	}
}

// check runs one probe and returns the error ("" on success).
func (h *probe) check(ctx context.Context, timeout time.Duration) string {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, h.url, nil)
	if err != nil {
		return err.Error()
	}
	req.Header.Set("User-Agent", "canaryd-health")
	resp, err := h.client.Do(req)
	if err != nil {
		return err.Error()
	}
	_, _ = io.CopyN(io.Discard, resp.Body, healthBodyDiscard)
	_ = resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode >= 400 {
		return fmt.Sprintf("status %d", resp.StatusCode)
	}
	return ""
}

// healthRing is a health-check state (healthy, flipping after
// healthFlipAfter contradicting results) with its results over the
// window: an endpoint's probes, or a backend's rounds.
type healthRing struct {
	slotNs int64

	mu        sync.Mutex // protects everything below
	healthy   bool
	streak    int // consecutive results contradicting healthy
	lastErr   string
	lastCheck time.Time
	ok, fail  uint64 // cumulative
	ring      [windowSlots]healthSlot
}

type healthSlot struct {
	epoch          int64
	checks, failed uint64
}

func newHealthRing(window time.Duration) healthRing {
	return healthRing{slotNs: max(int64(window)/windowSlots, 1), healthy: true}
}

// observe records a result at time at (now: nanoseconds on the window
// clock, see Proxy.since) and reports whether the health state flipped,
// and the new state.
func (h *healthRing) observe(at time.Time, now int64, errText string) (flipped, healthy bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	e := now / h.slotNs
	s := &h.ring[uint64(e)%windowSlots]
	if s.epoch != e {
		*s = healthSlot{epoch: e}
	}
	s.checks++
	h.lastCheck = at
	failed := errText != ""
	if failed {
		s.failed++
		h.fail++
		h.lastErr = errText
	} else {
		h.ok++
	}
	if failed == h.healthy { // a result contradicting the current state
		h.streak++
		if h.streak >= healthFlipAfter {
			h.healthy = !h.healthy
			h.streak = 0
			return true, h.healthy
		}
	} else {
		h.streak = 0
	}
	return false, h.healthy
}

// stats returns the figures within the window ending at now.
func (h *healthRing) stats(now int64) HealthStats {
	h.mu.Lock()
	defer h.mu.Unlock()
	st := HealthStats{Enabled: true, Healthy: h.healthy, LastError: h.lastErr, LastCheck: h.lastCheck}
	e := now / h.slotNs
	for _, s := range h.ring {
		if s.epoch <= e && s.epoch > e-windowSlots {
			st.Checks += s.checks
			st.Failures += s.failed
		}
	}
	return st
}

func (h *healthRing) cumulative() (ok, failed uint64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.ok, h.fail
}

// runHealth probes every endpoint every interval until ctx ends.
func (p *Proxy) runHealth(ctx context.Context) {
	timeout := min(p.cfg.HealthInterval, healthMaxTimeout)
	t := time.NewTicker(p.cfg.HealthInterval)
	defer t.Stop()
	for {
		p.checkOnce(ctx, timeout)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// checkOnce runs one round: it probes every endpoint of both backends
// concurrently and applies the results, per endpoint and per backend.
func (p *Proxy) checkOnce(ctx context.Context, timeout time.Duration) {
	var wg sync.WaitGroup
	for _, b := range [...]split.Backend{split.Stable, split.Canary} {
		wg.Go(func() { p.checkBackend(ctx, p.backends[b], timeout) })
	}
	wg.Wait()
}

// checkBackend probes bk's endpoints. The round fails when none passes;
// the backend is healthy while any endpoint is.
func (p *Proxy) checkBackend(ctx context.Context, bk *backend, timeout time.Duration) {
	all := bk.set.Load().all
	errs := make([]string, len(all))
	var wg sync.WaitGroup
	for i, ep := range all {
		wg.Go(func() {
			defer func() {
				if v := recover(); v != nil {
					errs[i] = fmt.Sprint("probe panicked: ", v)
					p.log.Error().Str("backend", bk.name.String()).Str("endpoint", ep.addr).Interface("panic", v).Msg("health probe panicked")
				}
			}()
			errs[i] = ep.health.check(ctx, timeout)
			bk.lim.Reclaim()
		})
	}
	wg.Wait()
	if ctx.Err() != nil {
		return // shutting down: not the backend's fault
	}
	at := p.now()
	now := p.since(at)
	passed := false
	roundErr := ""
	for i, ep := range all {
		if errs[i] == "" {
			passed = true
		} else if roundErr == "" {
			roundErr = ep.addr + ": " + errs[i]
		}
		if flipped, healthy := ep.health.ring.observe(at, now, errs[i]); flipped {
			var ev *zerolog.Event
			if healthy {
				ev = p.log.Info()
			} else {
				ev = p.log.Warn().Str("error", errs[i])
			}
			ev.Str("backend", bk.name.String()).Str("endpoint", ep.addr).Bool("healthy", healthy).Msg("endpoint health changed")
			bk.setHealthy(p, ep, healthy)
		}
	}
	if passed {
		roundErr = ""
	} else if len(all) == 1 {
		roundErr = errs[0]
	}
	wasHealthy := bk.healthy.Load()
	healthy := false
	for _, ep := range all {
		healthy = healthy || ep.healthy.Load()
	}
	bk.rounds.observe(at, now, roundErr)
	if healthy == wasHealthy {
		return
	}
	bk.healthy.Store(healthy)
	var ev *zerolog.Event
	if healthy {
		ev = p.log.Info()
	} else {
		ev = p.log.Warn().Str("error", roundErr)
	}
	ev.Str("backend", bk.name.String()).Bool("healthy", healthy).Msg("backend health changed")
	if bk.name == split.Canary {
		p.sp.Block(split.BlockUnhealthy, !healthy)
	}
}
