package proxy

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/canaryd/canaryd/split"
)

// responseWriter wraps the client's ResponseWriter for one request: it
// captures the status and byte count and carries the request's outcome from
// the ReverseProxy's ErrorHandler back to ServeHTTP. Instances are pooled
// per Proxy; none is referenced after ServeHTTP returns.
type responseWriter struct {
	w       http.ResponseWriter
	req     *http.Request // the inbound request
	body    *bodyTracker  // non-nil for a request with a body
	start   time.Time     // when the current attempt started
	backend split.Backend
	status  int
	bytes   int64
	kind    ErrorKind

	hijacked bool // a protocol upgrade (101) took the connection over
	writeErr bool // writing to the client failed
	failover bool // the ErrorHandler asks ServeHTTP to retry on stable
	retried  bool // this request already failed over
}

func (rw *responseWriter) reset() {
	*rw = responseWriter{}
}

// Header implements http.ResponseWriter.
func (rw *responseWriter) Header() http.Header { return rw.w.Header() }

// WriteHeader implements http.ResponseWriter. Informational (1xx) headers
// other than 101 pass through without becoming the recorded status.
func (rw *responseWriter) WriteHeader(code int) {
	if rw.status == 0 && (code >= 200 || code == http.StatusSwitchingProtocols) {
		rw.status = code
	}
	rw.w.WriteHeader(code)
}

// Write implements http.ResponseWriter.
func (rw *responseWriter) Write(b []byte) (int, error) {
	if rw.status == 0 {
		rw.status = http.StatusOK
	}
	n, err := rw.w.Write(b)
	rw.bytes += int64(n)
	if err != nil {
		rw.writeErr = true
	}
	return n, err
}

// Flush implements http.Flusher, so streamed responses (SSE) reach the
// client as they come.
func (rw *responseWriter) Flush() {
	if f, ok := rw.w.(http.Flusher); ok {
		f.Flush()
		return
	}
	_ = http.NewResponseController(rw.w).Flush()
}

// Hijack implements http.Hijacker for protocol upgrades (WebSocket); the
// request is then recorded with status 101.
func (rw *responseWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, brw, err := http.NewResponseController(rw.w).Hijack()
	if err == nil {
		rw.hijacked = true
		rw.status = http.StatusSwitchingProtocols
	}
	return c, brw, err
}

// Unwrap returns the client's ResponseWriter, for http.ResponseController.
func (rw *responseWriter) Unwrap() http.ResponseWriter { return rw.w }

// bodyTracker wraps a request's body to tell whether any byte of it was
// consumed, which rules out retrying a canary request on stable.
//
// It also ends a body of known length with io.EOF as soon as that length
// is read, without another Read of the server's body. http.Transport reads
// once more after the length to check for excess; by then the backend may
// have answered and net/http, writing that answer's header, closed the
// fully read request body, so the extra Read failed ("invalid Read on
// closed Body") and the Transport tore down the connection mid-response.
//
// It is allocated per request (not pooled): a transport goroutine may still
// hold it after the handler returns.
type bodyTracker struct {
	rc        io.ReadCloser
	remaining int64       // bytes left of a known length; negative: unknown. Reader's goroutine only.
	read      atomic.Bool // set by whichever goroutine reads the first byte
}

func (b *bodyTracker) Read(p []byte) (int, error) {
	if b.remaining == 0 {
		return 0, io.EOF
	}
	if b.remaining > 0 && int64(len(p)) > b.remaining {
		p = p[:b.remaining]
	}
	n, err := b.rc.Read(p)
	if n > 0 && !b.read.Load() {
		b.read.Store(true)
	}
	if b.remaining > 0 {
		b.remaining -= int64(n)
		if b.remaining == 0 && err == nil {
			err = io.EOF
		}
	}
	return n, err
}

func (b *bodyTracker) Close() error { return b.rc.Close() }
