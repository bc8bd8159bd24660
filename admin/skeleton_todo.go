package admin

// TODO(admin owner): delete this file when the real implementations exist.

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
)

// Server is the admin API. Create it with New.
type Server struct{}

// New builds the admin API over ctl; /metrics serves gatherer; the server's
// own collectors (failed-auth counters) are registered with reg.
func New(cfg Config, ctl Controller, gatherer prometheus.Gatherer, log zerolog.Logger, reg prometheus.Registerer) (*Server, error) {
	panic("unimplemented")
}

// Handler returns the admin router.
func (s *Server) Handler() http.Handler { panic("unimplemented") }
