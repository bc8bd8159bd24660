package proxy

import (
	"bufio"
	"net"
	"net/http"
	"time"

	"github.com/canaryd/canaryd/split"
)

// responseWriter wraps the client's ResponseWriter for one request: it
// captures the status and byte count, times the writes that wait for the
// client, and carries the request's outcome from the ReverseProxy's
// ErrorHandler back to ServeHTTP. Instances are pooled per Proxy; none is
// referenced after ServeHTTP returns.
type responseWriter struct {
	w       http.ResponseWriter
	req     *http.Request // the inbound request
	body    *requestBody  // non-nil for a request with a body
	start   time.Time     // when the current attempt started
	backend split.Backend
	status  int
	bytes   int64
	kind    ErrorKind

	// wait is the time spent in writes to the client (blocked when it
	// reads slowly), measured on clock (the real monotonic clock) when
	// timed is set; latency leaves it out.
	wait  time.Duration
	clock time.Time
	timed bool

	wbuf []byte // the fast path's outbound request head, reused across requests

	// endpoint is the endpoint of the attempt in progress (nil before one
	// is picked, and once the attempt is recorded).
	endpoint *endpoint
	// retry is the ErrorHandler's request to send the request again, and
	// where; poolRetried and failedOver say which retries it had.
	retry       retry
	poolRetried bool
	failedOver  bool
	attempts    int // attempts before the current one

	// grpc marks a gRPC call (HTTP/2, Content-Type application/grpc…);
	// headerAt is when its answer's headers were written (on clock, when
	// timed).
	grpc     bool
	headerAt time.Time

	hijacked bool // a protocol upgrade (101) took the connection over
	writeErr bool // writing to the client failed

	// setCookie is a fresh sticky id's Set-Cookie value (split.Choice),
	// added to the final answer's header as it is written; "" when none.
	setCookie string
}

func (rw *responseWriter) reset() {
	*rw = responseWriter{wbuf: rw.wbuf[:0]}
}

// Header implements http.ResponseWriter.
func (rw *responseWriter) Header() http.Header { return rw.w.Header() }

// WriteHeader implements http.ResponseWriter. Informational (1xx) headers
// other than 101 pass through without becoming the recorded status, and
// never to an HTTP/1.0 client (RFC 9110 §15.2).
func (rw *responseWriter) WriteHeader(code int) {
	if code < 200 && code != http.StatusSwitchingProtocols && !rw.req.ProtoAtLeast(1, 1) {
		return
	}
	if rw.status == 0 && (code >= 200 || code == http.StatusSwitchingProtocols) {
		rw.status = code
		rw.answered()
		rw.addCookie()
	}
	rw.w.WriteHeader(code)
}

// addCookie adds the fresh sticky id's Set-Cookie to the answer's header,
// once. It is called as the final answer's header is committed rather than
// before forwarding: an informational answer's header is cleared after it
// is sent.
func (rw *responseWriter) addCookie() {
	if rw.setCookie != "" {
		rw.w.Header().Add("Set-Cookie", rw.setCookie)
		rw.setCookie = ""
	}
}

// answered notes when a gRPC call's answer began.
func (rw *responseWriter) answered() {
	if rw.grpc && rw.timed {
		rw.headerAt = time.Now()
	}
}

// unbufferedWrite is how much of an answer a server buffers before any of
// it is written to the client: net/http's bufferBeforeChunkingSize (2 KiB),
// which the server loop's pendMax matches; HTTP/2's buffer is 4 KiB.
const unbufferedWrite = 2 << 10

// Write implements http.ResponseWriter.
func (rw *responseWriter) Write(b []byte) (int, error) {
	if rw.status == 0 {
		rw.status = http.StatusOK
		rw.answered()
		rw.addCookie()
	}
	// The time a write waits for the client is not the backend's. The
	// first unbufferedWrite bytes of an answer only fill the server's
	// buffer (the loop's, net/http's, HTTP/2's are all larger): they cannot
	// wait, and are not timed, which saves two clock reads per small answer.
	timed := rw.timed && rw.bytes+int64(len(b)) > unbufferedWrite
	var t0 time.Duration
	if timed {
		t0 = time.Since(rw.clock)
	}
	n, err := rw.w.Write(b)
	if timed {
		rw.wait += time.Since(rw.clock) - t0
	}
	rw.bytes += int64(n)
	if err != nil {
		rw.writeErr = true
	}
	return n, err
}

// Flush implements http.Flusher, so streamed responses (SSE) reach the
// client as they come.
func (rw *responseWriter) Flush() {
	var t0 time.Duration
	if rw.timed {
		t0 = time.Since(rw.clock)
	}
	if f, ok := rw.w.(http.Flusher); ok {
		f.Flush()
	} else {
		_ = http.NewResponseController(rw.w).Flush()
	}
	if rw.timed {
		rw.wait += time.Since(rw.clock) - t0
	}
}

// Hijack implements http.Hijacker for protocol upgrades (WebSocket); the
// request is then recorded with status 101.
func (rw *responseWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	// ReverseProxy writes the 101 itself from this header map.
	rw.addCookie()
	c, brw, err := http.NewResponseController(rw.w).Hijack()
	if err == nil {
		rw.hijacked = true
		rw.status = http.StatusSwitchingProtocols
	}
	return c, brw, err
}

// Unwrap returns the client's ResponseWriter, for http.ResponseController.
func (rw *responseWriter) Unwrap() http.ResponseWriter { return rw.w }
