package admin

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/canaryd/canaryd/guard"
	"github.com/canaryd/canaryd/guard/judge"
)

// History defaults.
const (
	// DefaultHistoryEvery is the time between two points of a History.
	DefaultHistoryEvery = 5 * time.Second
	// DefaultHistorySpan is how far back a History reaches.
	DefaultHistorySpan = time.Hour
	// maxHistoryPoints bounds the memory of one History whatever its
	// configuration: a day at one point a second.
	maxHistoryPoints = 86400
	// maxFailingGates bounds the gates a History remembers as failing (the
	// judges have 7).
	maxFailingGates = 32
)

// ErrHistoryConfig is returned by NewHistory for an unusable configuration.
var ErrHistoryConfig = errors.New("invalid history configuration")

// HistoryConfig configures a History. The zero value is one point every 5s
// for the last hour (720 points), on the wall clock.
type HistoryConfig struct {
	// Every is the time between two points. Zero means DefaultHistoryEvery.
	Every time.Duration
	// Span is how far back the history reaches: it holds Span/Every points
	// (at most 86,400), in memory allocated once. Zero means
	// DefaultHistorySpan.
	Span time.Duration
	// Now is the clock. Nil means time.Now.
	Now func() time.Time
}

// Checker is what a History samples (a *guard.Guard).
type Checker interface {
	// Check returns the guard's verdict and figures as of its last
	// evaluation.
	Check() guard.Check
}

// History is the server-side memory of the figures the dashboard charts: a
// ring of points, one every HistoryConfig.Every, each the guard's view at
// that moment (weight, verdict, state, both backends' figures over the
// sliding window). A new dashboard tab reads the last hour at once instead
// of starting with empty charts. It also remembers since when each gate has
// been failing, so the page can say when a gate failed.
//
// Its memory is fixed at creation; it takes one point per tick of Run (or
// per Sample) and never more. Safe for concurrent use.
type History struct {
	src   Checker
	every time.Duration
	span  time.Duration
	now   func() time.Time

	mu      sync.Mutex // protects everything below
	ring    []HistoryPoint
	next    int // the slot the next point goes to
	held    int // points in the ring, up to len(ring)
	window  string
	failing map[string]GateFailure
}

// HistoryPoint is one point of the history: the guard's view at Time.
type HistoryPoint struct {
	Time           time.Time            `json:"time"`
	Weight         float64              `json:"weight"`
	Recommendation guard.Recommendation `json:"recommendation"`
	State          string               `json:"state"`
	// Stable and Canary are the backends' figures over the sliding window
	// ending at Time (HistoryView.Window long).
	Stable guard.BackendView `json:"stable"`
	Canary guard.BackendView `json:"canary"`
}

// GateFailure says since when a gate has been failing without a break.
type GateFailure struct {
	Name string `json:"name"`
	// Since is the guard's evaluation time of the first sample that saw the
	// gate fail: the failure happened within one Every before it.
	Since time.Time `json:"since"`
	// Samples is the gate's sample count (canary requests) at that sample.
	Samples uint64 `json:"samples"`
}

// HistoryView is the body of GET /dashboard/history.
type HistoryView struct {
	// Now is the server's time of the answer, so that a client can place
	// the points on its own clock.
	Now time.Time `json:"now"`
	// Interval and Span are the configuration ("5s", "1h0m0s").
	Interval string `json:"interval"`
	Span     string `json:"span"`
	// Window is the sliding window the points' figures cover ("5m0s"), ""
	// before the first point.
	Window string `json:"window"`
	// Points are oldest first.
	Points []HistoryPoint `json:"points"`
	// GateFailures lists the gates failing at the latest point, by name.
	GateFailures []GateFailure `json:"gate_failures"`
}

// NewHistory returns an empty history of src's figures.
func NewHistory(src Checker, cfg HistoryConfig) (*History, error) {
	if src == nil {
		return nil, errors.New("admin: history: nil source")
	}
	every, span := cfg.Every, cfg.Span
	if every == 0 {
		every = DefaultHistoryEvery
	}
	if span == 0 {
		span = DefaultHistorySpan
	}
	if every < 0 || span < every {
		return nil, fmt.Errorf("%w: every %v must be positive and at most the span %v", ErrHistoryConfig, every, span)
	}
	points := span / every
	if points > maxHistoryPoints {
		return nil, fmt.Errorf("%w: span %v at one point every %v is %d points, more than %d", ErrHistoryConfig, span, every, points, maxHistoryPoints)
	}
	now := cfg.Now
	if now == nil {
		now = time.Now
	}
	return &History{
		src: src, every: every, span: span, now: now,
		ring:    make([]HistoryPoint, points),
		failing: make(map[string]GateFailure),
	}, nil
}

// Run takes a point at once and then every HistoryConfig.Every until ctx
// ends; it returns nil.
func (h *History) Run(ctx context.Context) error {
	tick := time.NewTicker(h.every)
	defer tick.Stop()
	for {
		h.Sample()
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// Sample takes one point now from the source; the oldest point makes room
// once the ring is full.
func (h *History) Sample() {
	c := h.src.Check()
	at := h.now()
	h.mu.Lock()
	defer h.mu.Unlock()
	h.ring[h.next] = HistoryPoint{
		Time:           at,
		Weight:         c.Weight,
		Recommendation: c.Recommendation,
		State:          c.State,
		Stable:         c.Stable,
		Canary:         c.Canary,
	}
	h.next = (h.next + 1) % len(h.ring)
	h.held = min(h.held+1, len(h.ring))
	h.window = c.Window

	seen := c.CheckedAt
	if seen.IsZero() || seen.After(at) {
		seen = at
	}
	// A gate that passes again, or is gone (a judge restarted at a new
	// step), is forgotten: its next failure is a new one.
	for name := range h.failing {
		if !gateFails(c.Gates, name) {
			delete(h.failing, name)
		}
	}
	for _, g := range c.Gates {
		if g.Verdict != judge.GateFail {
			continue
		}
		if _, ok := h.failing[g.Name]; !ok && len(h.failing) < maxFailingGates {
			h.failing[g.Name] = GateFailure{Name: g.Name, Since: seen, Samples: g.Samples}
		}
	}
}

func gateFails(gates []judge.Gate, name string) bool {
	for _, g := range gates {
		if g.Name == name {
			return g.Verdict == judge.GateFail
		}
	}
	return false
}

// Since returns the points taken after t (all of them for the zero time),
// oldest first, with the gates failing now.
func (h *History) Since(t time.Time) HistoryView {
	now := h.now()
	h.mu.Lock()
	defer h.mu.Unlock()
	v := HistoryView{
		Now:          now,
		Interval:     h.every.String(),
		Span:         h.span.String(),
		Window:       h.window,
		Points:       []HistoryPoint{},
		GateFailures: make([]GateFailure, 0, len(h.failing)),
	}
	first := h.next - h.held
	if first < 0 {
		first += len(h.ring)
	}
	for i := range h.held {
		p := h.ring[(first+i)%len(h.ring)]
		if p.Time.After(t) {
			v.Points = append(v.Points, p)
		}
	}
	for _, f := range h.failing {
		v.GateFailures = append(v.GateFailures, f)
	}
	slices.SortFunc(v.GateFailures, func(a, b GateFailure) int { return strings.Compare(a.Name, b.Name) })
	return v
}

// historyView answers GET /dashboard/history: the points taken after the
// query's since (an RFC 3339 time; every point without it), so that a page
// loads the last hour once and then asks only for what is new.
func (s *Server) historyView(w http.ResponseWriter, r *http.Request) {
	var since time.Time
	if q := r.URL.Query().Get("since"); q != "" {
		t, err := time.Parse(time.RFC3339Nano, q)
		if err != nil {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("since %q is not an RFC 3339 time (e.g. 2026-11-27T14:02:11Z)", q))
			return
		}
		since = t
	}
	if s.cfg.History == nil {
		writeJSON(w, http.StatusOK, HistoryView{Now: time.Now(), Points: []HistoryPoint{}, GateFailures: []GateFailure{}})
		return
	}
	writeJSON(w, http.StatusOK, s.cfg.History.Since(since))
}
