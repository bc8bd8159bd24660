package proxy

import (
	"context"
	"net"
	"net/http"

	"github.com/canaryd/canaryd/proxy/h1"
)

// Server serves a plaintext traffic listener with the server loop of
// proxy/h1 (see its Server): the common HTTP/1.1 request is read, parsed
// once by the framing guard's parser and answered without net/http's
// server, which serves what the loop hands over (upgrades, the HTTP/2
// preface, anything unusual) unchanged, through the framing guard. The
// handler is Fallback's, normally the Proxy: its ServeHTTP is the same on
// both. Create it with NewServer.
type Server struct {
	loop *h1.Server
}

// ServerConfig configures a Server.
type ServerConfig struct {
	// Fallback is the traffic listener's net/http server, its Handler the
	// Proxy. Required. It serves the connections the loop hands over, and
	// its ReadHeaderTimeout, IdleTimeout, MaxHeaderBytes (431 beyond) and
	// ErrorLog apply to the loop's connections too.
	Fallback *http.Server
	// Rejected, if not nil, is told the reason of each request refused
	// for ambiguous framing (as StrictListener's).
	Rejected func(reason string)
	// HTTP2PriorKnowledge hands a connection that opens with the HTTP/2
	// preface to Fallback unguarded, to serve as plaintext HTTP/2
	// (Fallback.Protocols must then include UnencryptedHTTP2). The zero
	// value refuses the preface 400, as the framing guard does.
	HTTP2PriorKnowledge bool
}

// NewServer returns the server loop for cfg.
func NewServer(cfg ServerConfig) *Server {
	return &Server{loop: h1.NewServer(h1.ServerConfig{
		Fallback:            cfg.Fallback,
		Guard:               h1.GuardConfig{Rejected: cfg.Rejected},
		HTTP2PriorKnowledge: cfg.HTTP2PriorKnowledge,
	})}
}

// Serve serves ln until Shutdown or Close (then it returns
// http.ErrServerClosed), as http.Server.Serve.
func (s *Server) Serve(ln net.Listener) error { return s.loop.Serve(ln) }

// Shutdown stops accepting, closes idle connections and waits for the
// requests in flight, the loop's and Fallback's, until ctx ends, as
// http.Server.Shutdown.
func (s *Server) Shutdown(ctx context.Context) error { return s.loop.Shutdown(ctx) }

// Close closes the listener and every connection at once.
func (s *Server) Close() error { return s.loop.Close() }
