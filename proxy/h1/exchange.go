package h1

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"
)

// maxInformational bounds the 1xx answers relayed before the final one.
const maxInformational = 10

// Exchange sends a bodiless request over one of the pool's connections and
// relays the answer to w, in the caller's goroutine.
//
// head is the request's head as Target.AppendRequest built it; start is
// when the request began, on the real clock: the response header timeout
// counts from it. A reused connection that turns out dead before any
// answer byte has the request sent again on a new connection, which is
// safe for the idempotent, bodiless requests Eligible admits.
//
// The error is a failure to get an answer or to relay it. Whether anything
// had reached the client by then is for w to tell (a status written); the
// connection is closed either way.
func (p *Pool) Exchange(w http.ResponseWriter, r *http.Request, head []byte, start time.Time) error {
	ctx := r.Context()
	now, fresh := start, false
	for {
		c, err := p.get(ctx, fresh, now)
		if err != nil {
			return err
		}
		retry, err := c.exchange(w, r, head, now)
		if err == nil || !retry || fresh {
			return err
		}
		// The backend had closed the reused connection while it was idle:
		// nothing was answered, the request may go again.
		now, fresh = time.Now(), true
	}
}

// exchange sends head over c and relays the answer. It owns c: the
// connection goes back to the pool or is closed. retry says the backend
// answered nothing at all on a reused connection.
func (c *conn) exchange(w http.ResponseWriter, r *http.Request, head []byte, now time.Time) (retry bool, err error) {
	ctx := r.Context()
	headerDeadline := now.Add(c.pool.cfg.ResponseHeaderTimeout)
	// The deadline of the previous exchange, if it is still ahead but no
	// further than a poll away, serves as well: readMore re-arms it. Under
	// load that saves a timer update per request.
	if d := c.deadline; !d.After(now) || d.After(now.Add(cancelPoll)) || d.After(headerDeadline) {
		if err := c.setDeadline(earliest(headerDeadline, now.Add(cancelPoll))); err != nil {
			c.close()
			return c.reused, err
		}
	}
	if _, err := c.nc.Write(head); err != nil {
		c.close()
		return c.reused && ctx.Err() == nil, err
	}
	// The answer takes the backend a few microseconds: reading at once
	// mostly finds nothing yet.
	y := c.pool.yield
	n, err := c.readHead(ctx, headerDeadline, y.yield(y.now()))
	if err != nil {
		nothing := c.br.Buffered() == 0
		c.close()
		return c.reused && nothing && !isTimeout(err) && ctx.Err() == nil, err
	}
	return false, c.relay(w, r, n, headerDeadline)
}

// relay relays the answer whose head (n bytes) is buffered.
func (c *conn) relay(w http.ResponseWriter, r *http.Request, n int, headerDeadline time.Time) error {
	buf, _ := c.br.Peek(n)
	ph, ok := c.parseHead(buf)
	noBody := r.Method == http.MethodHead || ph.status == http.StatusNoContent || ph.status == http.StatusNotModified
	if ok && (noBody || ph.length >= 0) {
		return c.relayParsed(w, r, ph, n, noBody)
	}
	// The general case: net/http parses it, the whole head being buffered.
	resp, err := c.readResponse(r)
	for i := 0; err == nil && resp.StatusCode < 200 && resp.StatusCode != http.StatusSwitchingProtocols; i++ {
		if i == maxInformational {
			err = fmt.Errorf("more than %d informational answers", maxInformational)
			break
		}
		// 1xx (103 Early Hints, say): pass it on, as ReverseProxy does.
		h := w.Header()
		for k, vv := range resp.Header {
			h[k] = append(h[k], vv...)
		}
		w.WriteHeader(resp.StatusCode)
		clear(h)
		if _, err = c.readHead(r.Context(), headerDeadline, -1); err == nil {
			resp, err = c.readResponse(r)
		}
	}
	if err == nil && resp.StatusCode == http.StatusSwitchingProtocols {
		err = fmt.Errorf("%w: 101 to a request that asked for no upgrade", errStatus)
	}
	if err != nil {
		c.close()
		if r.Context().Err() != nil {
			err = fmt.Errorf("%w: %w", context.Canceled, err)
		}
		return err
	}
	return c.relayResponse(w, r, resp)
}

// readResponse is http.ReadResponse refusing a status outside 100-599.
func (c *conn) readResponse(r *http.Request) (*http.Response, error) {
	resp, err := http.ReadResponse(c.br, r)
	if err == nil && (resp.StatusCode < 100 || resp.StatusCode > 599) {
		return nil, fmt.Errorf("%w: %d", errStatus, resp.StatusCode)
	}
	return resp, err
}

// relayParsed relays a common answer that parseHead parsed from the n
// bytes of its head.
func (c *conn) relayParsed(w http.ResponseWriter, r *http.Request, ph parsedHead, n int, noBody bool) error {
	c.commitHeader(w.Header())
	w.WriteHeader(ph.status)
	if noBody {
		_, _ = c.br.Discard(n)
		c.finish(!ph.close)
		return nil
	}
	if buf, _ := c.br.Peek(c.br.Buffered()); int64(len(buf)-n) >= ph.length {
		// The whole body is buffered: write it from there.
		body := buf[n : int64(n)+ph.length]
		_, werr := w.Write(body)
		_, _ = c.br.Discard(n + len(body))
		if werr != nil {
			c.close()
			return werr
		}
		c.finish(!ph.close)
		return nil
	}
	_, _ = c.br.Discard(n)
	// Body reads must not time out; watch the client instead.
	if err := c.setDeadline(time.Time{}); err != nil {
		c.close()
		return err
	}
	stop := context.AfterFunc(r.Context(), c.abort)
	err := c.copyN(w, ph.length)
	stopped := stop()
	if err != nil {
		c.close()
		return err
	}
	c.finish(!ph.close && stopped) // a client gone: the connection's deadline is spoilt
	return nil
}

// relayResponse relays a final, non-101 answer parsed by net/http.
func (c *conn) relayResponse(w http.ResponseWriter, r *http.Request, resp *http.Response) error {
	removeHopByHop(resp.Header)
	h := w.Header()
	for k, vv := range resp.Header {
		if prior, ok := h[k]; ok {
			h[k] = append(prior, vv...)
		} else {
			h[k] = vv // resp is ours alone: share, do not copy
		}
	}
	announced := len(resp.Trailer)
	if announced > 0 {
		keys := make([]string, 0, announced)
		for k := range resp.Trailer {
			keys = append(keys, k)
		}
		h.Add("Trailer", strings.Join(keys, ", "))
	}
	w.WriteHeader(resp.StatusCode)

	body := resp.Body
	// Streams (event streams, bodies of unknown length) are flushed
	// whenever the backend has nothing more buffered, as ReverseProxy
	// flushes them after every write.
	ct := resp.Header["Content-Type"]
	stream := resp.ContentLength < 0 || len(ct) > 0 && isEventStream(ct[0])
	// Once the head is read, body reads must not time out; unless the
	// whole body is already buffered, clear the deadline and watch the
	// client instead.
	var stop func() bool
	if body != http.NoBody && (resp.ContentLength < 0 || int64(c.br.Buffered()) < resp.ContentLength) {
		if err := c.setDeadline(time.Time{}); err != nil {
			c.close()
			return err
		}
		stop = context.AfterFunc(r.Context(), c.abort)
	}
	err := c.copyBody(w, body, stream)
	keep := err == nil && !resp.Close
	if stop != nil && !stop() {
		keep = false // the client went away: the connection's deadline is spoilt
	}
	if err != nil {
		c.close()
		return err
	}
	_ = body.Close() // a no-op after EOF; fills resp.Trailer
	c.finish(keep)
	if len(resp.Trailer) > 0 {
		// Force chunking, so net/http does not compute a length for a
		// short body and drop the trailers.
		flush(w)
	}
	if len(resp.Trailer) == announced {
		for k, vv := range resp.Trailer {
			h[k] = append(h[k], vv...)
		}
		return nil
	}
	for k, vv := range resp.Trailer {
		k = http.TrailerPrefix + k
		h[k] = append(h[k], vv...)
	}
	return nil
}

// copyBody copies body to w. It returns write errors and non-EOF read
// errors.
func (c *conn) copyBody(w http.ResponseWriter, body io.Reader, stream bool) error {
	buf := c.pool.cfg.Buffers.Get()
	defer c.pool.cfg.Buffers.Put(buf)
	pending := stream // the head is not flushed yet
	for {
		if pending && c.br.Buffered() == 0 {
			flush(w) // about to wait for the backend: send what we have
			pending = false
		}
		n, rerr := body.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return werr
			}
			pending = stream
		}
		if rerr == io.EOF {
			return nil
		}
		if rerr != nil {
			return rerr
		}
	}
}

// copyN copies n body bytes from c to w.
func (c *conn) copyN(w http.ResponseWriter, n int64) error {
	buf := c.pool.cfg.Buffers.Get()
	defer c.pool.cfg.Buffers.Put(buf)
	for n > 0 {
		k, rerr := c.br.Read(buf[:min(int64(len(buf)), n)])
		if k > 0 {
			n -= int64(k)
			if _, werr := w.Write(buf[:k]); werr != nil {
				return werr
			}
		}
		if rerr == io.EOF && n > 0 {
			return io.ErrUnexpectedEOF
		}
		if rerr != nil && rerr != io.EOF {
			return rerr
		}
	}
	return nil
}

// finish ends an exchange that went well: the connection goes back to the
// pool if keep is set and nothing follows the answer in its buffer, else it
// closes. (What arrives later is found by the check at reuse, clean.)
func (c *conn) finish(keep bool) {
	if c.br != c.small { // a large head's buffer: back to the small one
		keep = keep && c.br.Buffered() == 0
		c.br = c.small
	}
	if keep && c.br.Buffered() == 0 {
		c.pool.put(c)
		return
	}
	c.close()
}

func flush(w http.ResponseWriter) {
	if f, ok := w.(http.Flusher); ok {
		f.Flush()
		return
	}
	_ = http.NewResponseController(w).Flush()
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// Buffers lends 32 KiB buffers for copying bodies, to Exchange and to
// httputil.ReverseProxy (it is a BufferPool and an httputil.BufferPool).
// Boxes, which sync.Pool needs to hold a slice without allocating, are
// recycled through a second pool, so a steady state allocates nothing. The
// zero value is ready to use.
type Buffers struct {
	full  sync.Pool // *bufBox holding a buffer
	empty sync.Pool // *bufBox without one
}

type bufBox struct{ b []byte }

// copyBufferSize is the size of the buffers Buffers lends.
const copyBufferSize = 32 << 10

// Get implements BufferPool.
func (bp *Buffers) Get() []byte {
	if box, _ := bp.full.Get().(*bufBox); box != nil {
		b := box.b
		box.b = nil
		bp.empty.Put(box)
		return b
	}
	return make([]byte, copyBufferSize)
}

// Put implements BufferPool.
func (bp *Buffers) Put(b []byte) {
	box, _ := bp.empty.Get().(*bufBox)
	if box == nil {
		box = new(bufBox)
	}
	box.b = b
	bp.full.Put(box)
}
