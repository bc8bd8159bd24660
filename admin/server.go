package admin

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"

	"github.com/go-chi/chi/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/rs/zerolog"

	"github.com/canaryd/canaryd/guard"
	"github.com/canaryd/canaryd/guard/integrity"
)

// MaxBodyBytes is the largest request body the admin API reads; larger ones
// are answered 413.
const MaxBodyBytes = 64 << 10

// Server is the admin API. Create it with New; it holds no goroutines of its
// own (serve Handler with an http.Server).
type Server struct {
	cfg     Config
	ctl     Controller
	log     zerolog.Logger
	limiter *failureLimiter
	router  *chi.Mux
	metrics authMetrics
	// tokens is the set in force; SetTokens swaps it, and every request
	// reads it without a lock.
	tokens atomic.Pointer[Tokens]
}

// Validate reports the first problem with cfg as a sentence a user
// understands.
func (c Config) Validate() error {
	if _, err := NewTokens(c.Tokens); err != nil {
		return fmt.Errorf("admin tokens: %w", err)
	}
	return nil
}

// New builds the admin API over ctl; /metrics serves gatherer; the server's
// own collectors (refused-request counters, tokens gauge) are registered
// with reg. A nil reg
// means the collectors are not registered anywhere.
func New(cfg Config, ctl Controller, gatherer prometheus.Gatherer, log zerolog.Logger, reg prometheus.Registerer) (*Server, error) {
	tokens, err := NewTokens(cfg.Tokens)
	if err != nil {
		return nil, fmt.Errorf("admin: tokens: %w", err)
	}
	if ctl == nil {
		return nil, errors.New("admin: nil controller")
	}
	if gatherer == nil {
		return nil, errors.New("admin: nil gatherer")
	}
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	metrics, err := newAuthMetrics(reg)
	if err != nil {
		return nil, fmt.Errorf("admin: register collectors: %w", err)
	}
	cfg.Tokens = nil // kept as hashes in s.tokens only
	s := &Server{
		cfg:     cfg,
		ctl:     ctl,
		log:     log.With().Str("component", "admin").Logger(),
		limiter: newFailureLimiter(cfg.AuthLimit),
		metrics: metrics,
	}
	s.tokens.Store(tokens)
	metrics.setTokens(tokens)
	s.router = s.routes(gatherer, metrics)
	return s, nil
}

// SetTokens replaces the tokens in force with list, for every request from
// now on, and says which names changed. An invalid list (see Config.Tokens)
// is refused with an error and the tokens in force stay. Safe for
// concurrent use.
func (s *Server) SetTokens(list []Token) (TokenChange, error) {
	tokens, err := NewTokens(list)
	if err != nil {
		return TokenChange{}, err
	}
	old := s.tokens.Swap(tokens)
	s.metrics.setTokens(tokens)
	return diffTokens(old, tokens), nil
}

// Handler returns the admin router.
func (s *Server) Handler() http.Handler { return s.router }

func (s *Server) routes(gatherer prometheus.Gatherer, metrics authMetrics) *chi.Mux {
	r := chi.NewRouter()
	r.NotFound(func(w http.ResponseWriter, _ *http.Request) {
		writeError(w, http.StatusNotFound, "no such endpoint")
	})
	r.MethodNotAllowed(func(w http.ResponseWriter, req *http.Request) {
		w.Header().Set("Allow", strings.Join(allowedMethods(r, req.URL.Path), ", "))
		writeError(w, http.StatusMethodNotAllowed, fmt.Sprintf("method %s is not allowed here", req.Method))
	})

	get := func(r chi.Router, path string, h http.HandlerFunc) {
		r.Get(path, h)
		r.Head(path, h)
	}
	get(r, "/healthz", s.healthz)
	get(r, "/readyz", s.readyz)
	get(r, "/metrics", promhttp.HandlerFor(gatherer, promhttp.HandlerOpts{
		ErrorLog:      promLogger{s.log},
		ErrorHandling: promhttp.ContinueOnError,
	}).ServeHTTP)
	get(r, "/dashboard", serveDashboardPage)
	get(r, "/dashboard/", func(w http.ResponseWriter, req *http.Request) {
		http.Redirect(w, req, "/dashboard", http.StatusMovedPermanently)
	})
	get(r, "/dashboard/assets/{name}", serveDashboardAsset)

	r.Group(func(r chi.Router) {
		r.Use(requireBearer(s.tokens.Load, s.limiter, metrics, s.log))
		// Reading takes any token (the read role).
		get(r, "/canary_check", s.canaryCheck)
		get(r, "/dashboard/history", s.historyView)
		get(r, "/dashboard/health_summary", s.healthSummary)
		get(r, "/dashboard/canary_overview", s.canaryOverview)
		get(r, "/dashboard/integrity_details", s.integrityDetails)
		get(r, "/dashboard/fleet", s.fleet)
		get(r, "/dashboard/session", s.session)
		// Steering takes an operate token.
		r.Group(func(r chi.Router) {
			r.Use(requireRole(RoleOperate, metrics, s.log))
			r.Post("/rollout/weight", s.setWeight)
			r.Post("/rollout/promote", s.rolloutCommand("promote", s.ctl.Promote))
			r.Post("/rollout/rollback", s.rolloutCommand("rollback", s.ctl.Rollback))
			r.Post("/rollout/pause", s.rolloutCommand("pause", s.ctl.Pause))
			r.Post("/rollout/resume", s.rolloutCommand("resume", s.ctl.Resume))
			r.Post("/rollout/reset", s.rolloutCommand("reset", s.ctl.Reset))
			r.Post("/rollout/start", s.start)
			r.Post("/rollout/finish", s.rolloutCommand("finish", s.ctl.Finish))
		})
	})
	return r
}

// allowedMethods lists the methods mux routes for path, for the Allow header
// of a 405.
func allowedMethods(mux *chi.Mux, path string) []string {
	var allowed []string
	for _, m := range []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete} {
		if mux.Match(chi.NewRouteContext(), m, path) {
			allowed = append(allowed, m)
		}
	}
	return allowed
}

// healthz answers GET /healthz: the process is alive.
func (s *Server) healthz(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, struct {
		Status  string `json:"status"`
		Version string `json:"version"`
	}{"ok", s.cfg.Version})
}

// readyz answers GET /readyz: 200 while canaryd should receive traffic,
// 503 with the controller's reason otherwise.
func (s *Server) readyz(w http.ResponseWriter, _ *http.Request) {
	ready, reason := s.ctl.Ready()
	status := http.StatusOK
	if !ready {
		status = http.StatusServiceUnavailable
	}
	writeJSON(w, status, struct {
		Ready  bool   `json:"ready"`
		Reason string `json:"reason,omitempty"`
	}{ready, reason})
}

// session answers GET /dashboard/session: the name and role of the token
// the request carries, so that the page shows controls to operate tokens
// only (the API enforces the roles whatever the page shows).
func (s *Server) session(w http.ResponseWriter, r *http.Request) {
	id, _ := identityOf(r)
	writeJSON(w, http.StatusOK, struct {
		Name string `json:"name"`
		Role Role   `json:"role"`
	}{id.name, id.role})
}

// canaryCheck answers GET /canary_check with the guard's verdict, figures
// and gates, and canaryd's version.
func (s *Server) canaryCheck(w http.ResponseWriter, _ *http.Request) {
	c := s.ctl.Check()
	c.Version = s.cfg.Version
	c.Reasons = nonNil(c.Reasons)
	c.Gates = nonNil(c.Gates)
	c.Fleet.Replicas = nonNil(c.Fleet.Replicas)
	writeJSON(w, http.StatusOK, c)
}

// healthSummary answers GET /dashboard/health_summary.
func (s *Server) healthSummary(w http.ResponseWriter, _ *http.Request) {
	h := s.ctl.Health()
	h.Reasons = nonNil(h.Reasons)
	writeJSON(w, http.StatusOK, h)
}

// canaryOverview answers GET /dashboard/canary_overview: state, step plan
// and history.
func (s *Server) canaryOverview(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, normalizeOverview(s.ctl.Overview()))
}

// integrityDetails answers GET /dashboard/integrity_details with the last
// integrity report.
func (s *Server) integrityDetails(w http.ResponseWriter, _ *http.Request) {
	rep := s.ctl.Integrity()
	rep.Failures = nonNil(rep.Failures)
	if rep.Status == "" {
		rep.Status = integrity.StatusDisabled
	}
	writeJSON(w, http.StatusOK, rep)
}

// fleet answers GET /dashboard/fleet: the replicas, the leader and the
// store, as /canary_check's "fleet" object.
func (s *Server) fleet(w http.ResponseWriter, _ *http.Request) {
	f := s.ctl.Fleet()
	f.Replicas = nonNil(f.Replicas)
	writeJSON(w, http.StatusOK, f)
}

// normalizeOverview turns nil lists into empty ones so that clients always
// see arrays.
func normalizeOverview(o guard.Overview) guard.Overview {
	o.Plan = nonNil(o.Plan)
	o.History = nonNil(o.History)
	return o
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// writeJSON writes v as the JSON body of a response that must not be cached.
func writeJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		status = http.StatusInternalServerError
		body = []byte(`{"error":"cannot encode the response"}`)
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write(append(body, '\n'))
}

// writeError writes the JSON error body {"error": msg}.
func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, struct {
		Error string `json:"error"`
	}{msg})
}

// promLogger hands promhttp's encoding errors to zerolog.
type promLogger struct{ log zerolog.Logger }

// Println logs v as one error line.
func (l promLogger) Println(v ...any) {
	l.log.Error().Msg(strings.TrimSuffix(fmt.Sprintln(v...), "\n"))
}
