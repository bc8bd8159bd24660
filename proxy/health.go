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

// Health checking: a backend starts healthy, turns unhealthy after
// healthFlipAfter consecutive failed probes and healthy again after as many
// consecutive successes. A probe is a GET of the backend's base URL joined
// with Config.HealthPath; a 2xx or 3xx answer within the probe timeout
// (the smaller of the interval and 2s) is a success.
const (
	healthFlipAfter   = 2
	healthMaxTimeout  = 2 * time.Second
	healthBodyDiscard = 64 << 10
)

// health is one backend's active health-check state.
type health struct {
	url    string
	client *http.Client
	slotNs int64
	// reclaim is the backend limiter's Reclaim: a probe's connection goes
	// idle in the Transport. Nil with an injected Transport.
	reclaim func()

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

func newHealth(base *url.URL, path string, rt http.RoundTripper, window time.Duration) *health {
	return &health{
		url: base.JoinPath(path).String(),
		client: &http.Client{
			Transport: rt,
			// A redirect is an answer: 3xx counts as success, not followed.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		slotNs:  max(int64(window)/windowSlots, 1),
		healthy: true,
	}
}

// probe runs one check and returns the error ("" on success).
func (h *health) probe(ctx context.Context, timeout time.Duration) string {
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

// observe records a probe result at time at (now: nanoseconds on the
// window clock, see Proxy.since) and reports whether the health state
// flipped, and the new state.
func (h *health) observe(at time.Time, now int64, errText string) (flipped, healthy bool) {
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

func (h *health) stats(now int64) HealthStats {
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

func (h *health) cumulative() (ok, failed uint64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.ok, h.fail
}

// runHealth probes both backends every interval until ctx ends.
func (p *Proxy) runHealth(ctx context.Context) error {
	timeout := min(p.cfg.HealthInterval, healthMaxTimeout)
	t := time.NewTicker(p.cfg.HealthInterval)
	defer t.Stop()
	for {
		p.checkOnce(ctx, timeout)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// checkOnce probes both backends concurrently and applies the results.
func (p *Proxy) checkOnce(ctx context.Context, timeout time.Duration) {
	var wg sync.WaitGroup
	for _, b := range [...]split.Backend{split.Stable, split.Canary} {
		wg.Go(func() {
			defer func() {
				if v := recover(); v != nil {
					p.log.Error().Str("backend", b.String()).Interface("panic", v).Msg("health probe panicked")
				}
			}()
			h := p.backends[b].health
			errText := h.probe(ctx, timeout)
			if h.reclaim != nil {
				h.reclaim()
			}
			if ctx.Err() != nil {
				return // shutting down: not the backend's fault
			}
			at := p.now()
			flipped, healthy := h.observe(at, p.since(at), errText)
			if !flipped {
				return
			}
			var ev *zerolog.Event
			if healthy {
				ev = p.log.Info()
			} else {
				ev = p.log.Warn().Str("error", errText)
			}
			ev.Str("backend", b.String()).Bool("healthy", healthy).Msg("backend health changed")
			if b == split.Canary {
				p.sp.Block(split.BlockUnhealthy, !healthy)
			}
		})
	}
	wg.Wait()
}
