package proxy

import (
	"context"
	"errors"
	"net/http"
	"time"
)

// The fast path: a bodiless GET, HEAD or OPTIONS to a plain http://
// backend is sent by proxy/h1 over the backend's pool, in the handler's
// goroutine, skipping httputil.ReverseProxy and http.Transport (their
// per-request clone, goroutine hand-offs and channels). The outbound
// request is the one ReverseProxy would send (h1.Target.AppendRequest);
// see the package doc of h1 for the rest. Everything else takes the
// standard path.

// forwardFast sends r to ep over its pool and relays the answer. A failure
// before anything reached the client goes to errorHandler, as on the
// standard path; one after aborts the response.
func (p *Proxy) forwardFast(rw *responseWriter, r *http.Request, ep *endpoint) {
	var err error
	if rw.wbuf, err = ep.target.AppendRequest(rw.wbuf[:0], r); err != nil {
		p.errorHandler(rw, r, err)
		return
	}
	start := rw.start
	if !p.realTime {
		start = time.Now() // deadlines need the real clock
	}
	err = ep.pool.Exchange(rw, r, rw.wbuf, start)
	switch {
	case err == nil:
	case rw.status == 0 && !rw.hijacked:
		p.errorHandler(rw, r, err)
	default:
		p.abortCopy(rw, r, err)
	}
}

// abortCopy ends a response that broke after its header was sent, as
// ReverseProxy does: by aborting the handler when running in a server.
func (p *Proxy) abortCopy(rw *responseWriter, r *http.Request, err error) {
	if !errors.Is(err, context.Canceled) && !rw.writeErr {
		p.log.Debug().Str("backend", rw.backend.String()).Err(err).Msg("read error during body copy")
	}
	if r.Context().Value(http.ServerContextKey) == nil {
		// Not in a server (a test calling ServeHTTP): no one to abort;
		// classify as ServeHTTP's recover would.
		if rw.kind == KindNone {
			rw.kind = KindReset
			if rw.writeErr || r.Context().Err() != nil {
				rw.kind = KindCanceled
			}
		}
		return
	}
	panic(http.ErrAbortHandler)
}
