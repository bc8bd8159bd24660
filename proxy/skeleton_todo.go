package proxy

// TODO(proxy owner): delete this file when the real implementations exist.

import (
	"context"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/canaryd/canaryd/split"
)

// Proxy is the in-path handler. Create it with New.
type Proxy struct{}

// New builds a Proxy forwarding to cfg's backends as sp picks, registering its
// collectors with reg.
func New(cfg Config, sp *split.Splitter, log zerolog.Logger, reg prometheus.Registerer) (*Proxy, error) {
	panic("unimplemented")
}

// ServeHTTP forwards r to the backend picked for it and records the outcome.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) { panic("unimplemented") }

// Snapshot copies both backends' window and cumulative figures.
func (p *Proxy) Snapshot() Snapshot { panic("unimplemented") }

// Totals returns only the cumulative counts, cheaply (no histogram copy).
func (p *Proxy) Totals() (stable, canary Totals) { panic("unimplemented") }

// CanaryErrors delivers a value soon after a canary request fails, so the
// guard can judge at once instead of waiting for its tick. Coalesced: at most
// one value is pending; the request path takes no lock and does not allocate.
func (p *Proxy) CanaryErrors() <-chan struct{} { panic("unimplemented") }

// Count is the number of observations in the histogram.
func (h *Histogram) Count() uint64 { panic("unimplemented") }

// Quantile returns the q-quantile (0 < q <= 1); 0 for an empty histogram.
func (h *Histogram) Quantile(q float64) time.Duration { panic("unimplemented") }

// Run runs the background work (active health checks) until ctx ends.
func (p *Proxy) Run(ctx context.Context) error { panic("unimplemented") }

// Health returns both backends' active health-check figures.
func (p *Proxy) Health() (stable, canary HealthStats) { panic("unimplemented") }
