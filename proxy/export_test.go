package proxy

import (
	"net/http"
	"time"
)

// Window exposes the unexported sliding window to the external tests and
// benchmarks (this file is compiled only with them).
type Window = window

// NewWindow is newWindow.
func NewWindow(d time.Duration) *Window { return newWindow(d) }

// Record is window.record.
func (w *window) Record(now int64, lat time.Duration, isErr, isSlow bool) {
	w.record(now, lat, isErr, isSlow, true)
}

// Read is window.read.
func (w *window) Read(now int64) Stats {
	var st Stats
	w.read(now, &st)
	return st
}

// Classify is classify.
func Classify(err error, inboundGone bool) ErrorKind { return classify(err, inboundGone) }

// Measure runs the measurement path of one request as ServeHTTP does around
// forwarding: pick the backend, then record the outcome.
func (p *Proxy) Measure(r *http.Request, status int) {
	rw := p.writers.Get().(*responseWriter)
	rw.req = r
	rw.start = p.now()
	rw.backend = p.sp.Pick(r)
	rw.status = status
	p.finish(rw)
}
