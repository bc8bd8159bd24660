package h1

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"
)

// Reading an answer's head.
//
// The head is read whole, and bounded, before anything parses it: readHead
// reads until the empty line that ends it, at most MaxResponseHeaderBytes,
// within the response header timeout, so a backend that sends a huge head
// or drips one costs no more than the limit and the timeout.
//
// Then the common answer (HTTP/1.1, a status of 200-599, plain field lines
// with CRLF ends, a Content-Length or no body) is parsed straight from the
// read buffer into the client's header map by parseHead: names and values
// are reused from the previous answer on the same connection when equal
// (Server, Content-Type and the like rarely change), so an answer costs one
// allocation for its values. Anything else (1xx, 101, chunked or
// close-delimited bodies, trailers, event streams, obs-fold, a Connection
// field naming other fields, bare LF line ends) goes to http.ReadResponse,
// which by then finds the whole head buffered. FuzzResponseHead holds
// parseHead to http.ReadResponse.

// ErrResponseHeaderTooLarge is an answer whose head exceeds
// PoolConfig.MaxResponseHeaderBytes.
var ErrResponseHeaderTooLarge = errors.New("backend answer header too large")

// errStatus is a final status outside 100-599 (or a 101 nobody asked for).
var errStatus = errors.New("backend answered a status outside 100-599")

// cancelPoll is how often a request waiting for an answer's head checks
// whether its client went away. Polling with a read deadline (which the
// response header timeout needs anyway) costs nothing per request, unlike
// a context.AfterFunc.
const cancelPoll = 100 * time.Millisecond

// aLongTimeAgo is a deadline in the past: setting it interrupts blocked
// I/O.
var aLongTimeAgo = time.Unix(1, 0)

// readHead reads until c.br holds a whole head and returns its length. It
// waits at most until deadline, checking every cancelPoll whether ctx
// ended. start is the yielder's time just before (y.now), if the caller
// has it (else -1).
func (c *conn) readHead(ctx context.Context, deadline time.Time, start int64) (int, error) {
	limit := c.pool.cfg.MaxResponseHeaderBytes
	searched := 0
	for {
		buf, _ := c.br.Peek(c.br.Buffered())
		if end := headEnd(buf, max(searched-2, 0)); end >= 0 {
			if end > limit {
				return 0, ErrResponseHeaderTooLarge
			}
			return end, nil
		}
		searched = len(buf)
		switch {
		case len(buf) >= limit:
			return 0, ErrResponseHeaderTooLarge
		case len(buf) == c.br.Size():
			c.grow(limit)
		default:
			if err := c.readMore(ctx, deadline, start); err != nil {
				return 0, err
			}
			start = -1
		}
	}
}

// readMore reads at least one more byte into c.br. The read deadline is
// the earlier of deadline and the next cancelPoll; one that is still
// ahead (the previous exchange's, see exchange) is kept, and re-armed
// once it passed. Times are the yielder's clock: one clock read per read
// (README, Performance); start is the time just before, if the caller has
// it (else -1).
func (c *conn) readMore(ctx context.Context, deadline time.Time, start int64) error {
	y := c.pool.yield
	end := y.since(deadline)
	for t := start; ; t = -1 {
		if t < 0 {
			t = y.now()
		}
		if t >= end {
			return fmt.Errorf("timeout awaiting response headers: %w", errHeaderTimeout)
		}
		if at := y.since(c.deadline); c.deadline.IsZero() || at <= t || at > end {
			if err := c.setDeadline(y.at(min(end, t+int64(cancelPoll)))); err != nil {
				return err
			}
		}
		_, err := c.br.Peek(c.br.Buffered() + 1)
		y.readDone(t)
		if err == nil {
			return nil
		}
		if !isTimeout(err) {
			return err
		}
		if ctx.Err() != nil {
			return fmt.Errorf("%w: client went away while waiting for the backend", context.Canceled)
		}
	}
}

// errHeaderTimeout is a timeout (net.Error) for a head not complete at the
// response header deadline.
var errHeaderTimeout = timeoutError{}

type timeoutError struct{}

func (timeoutError) Error() string   { return "deadline exceeded" }
func (timeoutError) Timeout() bool   { return true }
func (timeoutError) Temporary() bool { return true }

// grow gives c a read buffer of limit bytes for the rest of the exchange,
// holding what the small one had buffered. (finish returns to the small
// one.)
func (c *conn) grow(limit int) {
	buffered, _ := c.small.Peek(c.small.Buffered())
	pending := bytes.Clone(buffered)
	_, _ = c.small.Discard(len(buffered))
	c.br = bufio.NewReaderSize(io.MultiReader(bytes.NewReader(pending), c.nc), limit)
	_, _ = c.br.Peek(len(pending)) // from memory: one Read of the bytes.Reader
}

// field is one answer header line: the name as received, its canonical
// form and the value (trimmed).
type field struct {
	name, key, val  string
	rawName, rawVal []byte // set while parsing, pointing into the read buffer
}

// parsedHead is what the relay needs to know of a common answer.
type parsedHead struct {
	status int
	length int64 // Content-Length; -1 if none
	close  bool  // Connection: close
}

// parseHead parses the head buf (complete, as readHead returns it) of an
// answer of the common shape into c.fields (names and values pointing into
// buf). ok is false for any other shape.
func (c *conn) parseHead(buf []byte) (ph parsedHead, ok bool) {
	if len(buf) < len("HTTP/1.1 200\r\n\r\n") || string(buf[:9]) != "HTTP/1.1 " || !bytes.HasSuffix(buf, []byte("\r\n\r\n")) {
		return ph, false
	}
	d0, d1, d2 := buf[9], buf[10], buf[11]
	if d0 < '2' || d0 > '5' || d1 < '0' || d1 > '9' || d2 < '0' || d2 > '9' || (buf[12] != ' ' && buf[12] != '\r') {
		return ph, false
	}
	ph.status = int(d0-'0')*100 + int(d1-'0')*10 + int(d2-'0')
	ph.length = -1
	line := bytes.IndexByte(buf, '\n')
	if line < 1 || buf[line-1] != '\r' || bytes.IndexByte(buf[12:line-1], '\r') >= 0 || !ValidFieldValue(buf[12:line-1]) {
		return ph, false
	}
	c.fields = c.fields[:0]
	rest := buf[line+1 : len(buf)-2] // the field lines, each ending in CRLF
	for len(rest) > 0 {
		eol := bytes.IndexByte(rest, '\n')
		if eol < 1 || rest[eol-1] != '\r' {
			return ph, false // a bare LF
		}
		ln := rest[:eol-1]
		rest = rest[eol+1:]
		colon := bytes.IndexByte(ln, ':')
		if colon <= 0 || !ValidFieldName(ln[:colon]) {
			return ph, false // also catches obs-fold: a line starting with white space
		}
		name, val := ln[:colon], trimOWS(ln[colon+1:])
		if !ValidFieldValue(val) {
			return ph, false
		}
		switch {
		case equalFold(name, "Content-Length"):
			if ph.length >= 0 {
				return ph, false
			}
			var valid bool
			if ph.length, valid = parseDecimal(val); !valid {
				return ph, false
			}
		case equalFold(name, "Connection"):
			for len(val) > 0 {
				var tok []byte
				tok, val = cutComma(val)
				switch tok = trimOWS(tok); {
				case equalFold(tok, "close"):
					ph.close = true
				case equalFold(tok, "keep-alive"), len(tok) == 0:
				default:
					return ph, false // names a field to drop
				}
			}
			continue
		case equalFold(name, "Transfer-Encoding"), equalFold(name, "Trailer"):
			return ph, false
		case equalFold(name, "Content-Type"):
			if isEventStream(val) {
				return ph, false
			}
		case isHopByHop(name):
			continue
		}
		c.fields = append(c.fields, field{rawName: name, rawVal: val})
	}
	return ph, true
}

// commitHeader adds c.fields to h, reusing the strings of the previous
// answer's fields where they are equal, and keeps them for the next.
func (c *conn) commitHeader(h http.Header) {
	vals := make([]string, len(c.fields))
	for i := range c.fields {
		f := &c.fields[i]
		if i < len(c.prev) && c.prev[i].name == string(f.rawName) {
			f.name, f.key = c.prev[i].name, c.prev[i].key
			if c.prev[i].val == string(f.rawVal) {
				f.val = c.prev[i].val
			}
		}
		if f.key == "" {
			f.name = string(f.rawName)
			f.key = http.CanonicalHeaderKey(f.name)
		}
		if f.val == "" && len(f.rawVal) > 0 {
			f.val = string(f.rawVal)
		}
		f.rawName, f.rawVal = nil, nil
		vals[i] = f.val
		if prior, ok := h[f.key]; ok {
			h[f.key] = append(prior, f.val)
		} else {
			h[f.key] = vals[i : i+1 : i+1]
		}
	}
	c.prev, c.fields = c.fields, c.prev[:0]
}

// isEventStream reports whether a Content-Type is text/event-stream.
func isEventStream[T text](ct T) bool {
	for i := range len(ct) {
		if ct[i] == ';' {
			ct = ct[:i]
			break
		}
	}
	return equalFold(trimOWS(ct), "text/event-stream")
}

func earliest(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}
