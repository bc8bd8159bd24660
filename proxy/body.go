package proxy

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Request bodies.
//
// A slow client must not hold an upstream connection: nginx reads a whole
// body before it connects upstream (proxy_request_buffering) for that
// reason. canaryd reads RequestBuffer bytes of it first: a small body
// whole, a large one its first RequestBuffer bytes, the rest streaming.
// Each RequestBuffer bytes must arrive within BodyReadTimeout (set as the
// read deadline of the client's connection or stream), so a client
// dripping bytes gets 408 after one window at most, be it before or while
// an upstream connection is held. That is nginx's client_body_timeout, per
// RequestBuffer bytes rather than per read: a per-read timeout lets one
// byte every few seconds hold a connection for ever.

// readDeadliner is how the read deadline of a request's connection (or
// HTTP/2 stream) is set: net/http's ResponseWriters implement it (it is
// what http.ResponseController calls).
type readDeadliner interface {
	SetReadDeadline(time.Time) error
}

// errBodyTimeout marks a body the client sent too slowly.
var errBodyTimeout = errors.New("request body not received within the body read timeout")

// requestBody is the body of one request as the proxy forwards it: the
// bytes read ahead, then the rest from the client. It is the outbound
// request's Body on either path; a transport goroutine may read it after
// ServeHTTP returned, so it is allocated per request, never pooled.
type requestBody struct {
	src   io.ReadCloser // the client's body
	ahead []byte        // read before any upstream connection was taken
	whole bool          // ahead is the whole body

	dl      readDeadliner // nil: deadlines cannot be set (not in a server)
	timeout time.Duration
	window  int // bytes per timeout window (RequestBuffer)

	// The reader's state, used by one goroutine at a time (the transport's).
	off       int   // read position in ahead
	armed     bool  // a window's deadline is set
	inWindow  int   // bytes received in the current window
	remaining int64 // bytes of src left, for a known length; negative: unknown

	sent atomic.Bool  // a byte went to a transport: the request cannot go elsewhere
	wait atomic.Int64 // nanoseconds spent waiting in reads of src

	mu  sync.Mutex
	err error // the client's failure to send the body, if any
}

// readAhead reads the first RequestBuffer bytes of r's body (all of it, if
// no more) under the body read timeout, and makes r's Body the
// requestBody that forwards it. A body read whole is sent with its length.
func (p *Proxy) readAhead(rw *responseWriter, r *http.Request) (*requestBody, error) {
	b := &requestBody{src: r.Body, timeout: p.cfg.BodyReadTimeout, window: p.cfg.RequestBuffer, remaining: r.ContentLength}
	b.dl, _ = rw.w.(readDeadliner)
	n := p.cfg.RequestBuffer
	if r.ContentLength > 0 && r.ContentLength <= int64(n) {
		n = int(r.ContentLength)
	}
	b.arm()
	buf := make([]byte, 0, min(n, 4<<10))
	for len(buf) < n {
		if len(buf) == cap(buf) {
			buf = slices.Grow(buf, min(cap(buf), n-len(buf)))
		}
		k, err := b.src.Read(buf[len(buf):min(cap(buf), n)])
		buf = buf[:len(buf)+k]
		if err == io.EOF {
			b.whole = true
			break
		}
		if err != nil {
			b.disarm()
			return nil, b.fail(err)
		}
	}
	if r.ContentLength >= 0 && int64(len(buf)) == r.ContentLength {
		b.whole = true
	}
	b.ahead = buf
	b.inWindow = len(buf)
	if b.remaining > 0 {
		b.remaining -= int64(len(buf))
	}
	if b.whole || b.inWindow >= b.window {
		b.disarm()
	}
	r.Body = b
	// canaryd answered any 100-continue by reading: the backend need not.
	r.Header.Del("Expect")
	if b.whole {
		r.ContentLength = int64(len(buf))
		if r.Trailer == nil {
			r.TransferEncoding = nil
		} else {
			r.ContentLength = -1 // chunked, to carry the trailers
		}
		if len(buf) == 0 {
			r.Body, r.ContentLength = http.NoBody, 0
		}
	}
	return b, nil
}

// Read implements io.Reader for the transports: the bytes read ahead, then
// the client's.
func (b *requestBody) Read(p []byte) (int, error) {
	if b.off < len(b.ahead) {
		n := copy(p, b.ahead[b.off:])
		b.off += n
		b.markSent()
		return n, nil
	}
	if b.whole || b.remaining == 0 {
		// A known length is ended here, without another Read of the
		// server's body: http.Transport reads once more to check for
		// excess, and by then net/http may have closed the body (it does
		// when it writes the answer's header), failing that Read and
		// tearing the upstream connection down mid-answer.
		return 0, io.EOF
	}
	if b.remaining > 0 && int64(len(p)) > b.remaining {
		p = p[:b.remaining]
	}
	b.arm()
	t0 := time.Now()
	n, err := b.src.Read(p)
	b.wait.Add(int64(time.Since(t0)))
	if n > 0 {
		b.markSent()
		if b.inWindow += n; b.inWindow >= b.window {
			b.armed = false // the next Read opens a new window
		}
	}
	if b.remaining > 0 {
		b.remaining -= int64(n)
		if b.remaining == 0 && err == nil {
			err = io.EOF
		}
	}
	switch {
	case err == io.EOF:
		b.disarm()
	case err != nil:
		b.disarm()
		err = b.fail(err)
	}
	return n, err
}

// Close implements io.Closer; the client's body is net/http's to close.
func (b *requestBody) Close() error { return nil }

// rewind makes the body readable again from its start, for a failover: it
// must not have been sent.
func (b *requestBody) rewind() { b.off = 0 }

// replay returns the body read whole, again, for the Transport
// (http.Request.GetBody); what it reads counts as sent.
func (b *requestBody) replay() (io.ReadCloser, error) {
	return &replayBody{b: b, r: bytes.NewReader(b.ahead)}, nil
}

// replayBody is a body read whole, sent again.
type replayBody struct {
	b *requestBody
	r *bytes.Reader
}

func (rb *replayBody) Read(p []byte) (int, error) {
	n, err := rb.r.Read(p)
	if n > 0 {
		rb.b.markSent()
	}
	return n, err
}

func (rb *replayBody) Close() error { return nil }

func (b *requestBody) markSent() {
	if !b.sent.Load() {
		b.sent.Store(true)
	}
}

// arm opens a window: the next window bytes must arrive within the
// timeout.
func (b *requestBody) arm() {
	if b.armed || b.dl == nil {
		return
	}
	b.armed, b.inWindow = true, 0
	_ = b.dl.SetReadDeadline(time.Now().Add(b.timeout))
}

// disarm clears the deadline: the body is over (net/http's background read
// of the connection, which starts then, must not time out while the answer
// streams).
func (b *requestBody) disarm() {
	if b.dl != nil {
		_ = b.dl.SetReadDeadline(time.Time{})
	}
	b.armed = false
}

// fail records the client's failure to send the body and returns it, a
// timeout as errBodyTimeout.
func (b *requestBody) fail(err error) error {
	if isTimeout(err) {
		err = errBodyTimeout
	}
	b.mu.Lock()
	if b.err == nil {
		b.err = err
	}
	b.mu.Unlock()
	return err
}

// failure returns the client's failure to send the body, if any.
func (b *requestBody) failure() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.err
}
