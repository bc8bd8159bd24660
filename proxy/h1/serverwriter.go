package h1

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// response is the loop's http.ResponseWriter (and http.Flusher), one per
// connection, reused. It answers as net/http's response writer does
// (net/http/server.go, chunkWriter.writeHeader): the header as it was at
// WriteHeader, sent with the first body bytes; a body of at most pendMax
// bytes held back so that a handler finishing within it gets a
// Content-Length (else chunking on HTTP/1.1, a close on HTTP/1.0); Date
// added, Content-Type sniffed when absent, the Connection field and the
// connection's fate decided as net/http decides them; trailers declared
// in Trailer or set with http.TrailerPrefix sent after the last chunk.
// Unlike net/http, the fields are written in the header map's order, not
// sorted.
//
// Everything goes through one output buffer, sent when full, on Flush
// and when the handler returns: a common answer is one write.
type response struct {
	c      *serverConn
	req    *http.Request
	rq     *request
	body   *body       // the request's, nil without one
	header http.Header // the handler's; reused, cleared after each request

	status      int
	wroteHeader bool // a final status is set
	committed   bool // the status line and fields are in out (or sent)
	handlerDone bool
	dead        bool // refused or broken: nothing more goes out
	werr        error

	wants10KeepAlive, wantsClose bool // set by newRequest
	isHEAD, is11                 bool
	expectContinue               bool // the request asked for 100-continue
	contentLength                int64
	written                      int64
	chunking                     bool
	closeAfter                   bool

	// The header as it was at WriteHeader, serialized: fields holds all
	// but Content-Length, Transfer-Encoding and Connection, which the
	// answer's framing decides on, in their own buffers.
	fields, clLines, teLines, connLines []byte
	hasCL, hasTE, hasConn               bool // the keys are present
	hasType, hasEncoding, hasDate       bool
	firstCL, te, conn                   string // first values
	upgrade                             bool   // an Upgrade field
	trailers                            []string
	prefixed                            bool // keys with http.TrailerPrefix

	out *[]byte // what is to be sent; lent by the server while a request is answered

	// A 100 Continue is written by whichever goroutine reads the body
	// first, and must not interleave with the answer.
	canContinue atomic.Bool
	continueMu  sync.Mutex
}

// errDead is the error of a write to an answer that cannot go out any
// more (the request was refused, or the connection broke).
var errDead = errors.New("h1: the connection is closed")

// start prepares w for c's current request.
func (w *response) start(c *serverConn, req *http.Request, rq *request) {
	w.c, w.req, w.rq, w.body = c, req, rq, rq.body
	if w.header == nil {
		w.header = make(http.Header)
	}
	w.isHEAD = req.Method == http.MethodHead
	w.is11 = req.ProtoMinor >= 1
	w.contentLength = -1
	if rq.body != nil && rq.body.expectContinue {
		w.expectContinue = true
		w.canContinue.Store(true)
	}
}

// reset clears w after a request.
func (w *response) reset() {
	clear(w.header)
	if w.out != nil {
		w.c.srv.putOut(w.out)
	}
	c, h := w.c, w.header
	fields, cl, te, conn, trailers := w.fields[:0], w.clLines[:0], w.teLines[:0], w.connLines[:0], w.trailers[:0]
	wants10, wantsClose := w.wants10KeepAlive, w.wantsClose
	*w = response{c: c, header: h, fields: fields, clLines: cl, teLines: te, connLines: conn, trailers: trailers}
	w.wants10KeepAlive, w.wantsClose = wants10, wantsClose
	c.pend = c.pend[:0]
}

// Header implements http.ResponseWriter.
func (w *response) Header() http.Header { return w.header }

// WriteHeader implements http.ResponseWriter.
func (w *response) WriteHeader(code int) {
	if w.wroteHeader {
		w.c.srv.logf("http: superfluous response.WriteHeader call")
		return
	}
	if code < 100 || code > 999 {
		panic(fmt.Sprintf("invalid WriteHeader code %v", code))
	}
	if code < 101 || code > 199 {
		w.disableContinue()
	}
	if code >= 100 && code <= 199 && code != http.StatusSwitchingProtocols {
		w.informational(code)
		return
	}
	w.wroteHeader = true
	w.status = code
	w.snapshot()
	if cl := w.firstCL; cl != "" {
		v, err := strconv.ParseInt(cl, 10, 64)
		if err == nil && v >= 0 {
			w.contentLength = v
		} else {
			w.c.srv.logf("http: invalid Content-Length of %q", cl)
			w.header.Del("Content-Length")
		}
	}
}

// informational sends a 1xx answer at once, with the current fields but
// those of a body.
func (w *response) informational(code int) {
	if w.dead {
		return
	}
	w.lendOut()
	out := appendStatusLine(*w.out, w.is11, code)
	for k, vv := range w.header {
		if k == "Content-Length" || k == "Transfer-Encoding" {
			continue
		}
		out = appendFieldLines(out, k, vv)
	}
	*w.out = append(out, "\r\n"...)
	w.send(nil)
}

// snapshot serializes the header as it is now (net/http clones it at
// WriteHeader: later changes but trailers do not count).
func (w *response) snapshot() {
	bodyAllowed := bodyAllowedForStatus(w.status)
	for k, vv := range w.header {
		switch k {
		case "Content-Length":
			w.hasCL = true
			if len(vv) > 0 {
				w.firstCL = vv[0]
			}
			if bodyAllowed {
				w.clLines = appendFieldLines(w.clLines, k, vv)
			}
			continue
		case "Transfer-Encoding":
			w.hasTE = true
			if len(vv) > 0 {
				w.te = vv[0]
			}
			if bodyAllowed {
				w.teLines = appendFieldLines(w.teLines, k, vv)
			}
			continue
		case "Connection":
			w.hasConn = true
			if len(vv) > 0 {
				w.conn = vv[0]
			}
			w.connLines = appendFieldLines(w.connLines, k, vv)
			continue
		case "Content-Type":
			w.hasType = true
			if w.status == http.StatusNotModified {
				continue
			}
		case "Content-Encoding":
			w.hasEncoding = len(vv) > 0 && vv[0] != ""
		case "Date":
			w.hasDate = true
		case "Upgrade":
			w.upgrade = len(vv) > 0 && vv[0] != ""
		case "Trailer":
			for _, v := range vv {
				foreachHeaderElement(v, w.declareTrailer)
			}
		default:
			if strings.HasPrefix(k, http.TrailerPrefix) {
				w.prefixed = true
				continue
			}
		}
		w.fields = appendFieldLines(w.fields, k, vv)
	}
}

func (w *response) declareTrailer(k string) {
	k = http.CanonicalHeaderKey(k)
	if !validTrailerHeader(k) {
		return
	}
	w.trailers = append(w.trailers, k)
}

// Write implements http.ResponseWriter.
func (w *response) Write(p []byte) (int, error) {
	if w.canContinue.Load() {
		w.disableContinue()
	}
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if len(p) == 0 {
		return 0, nil
	}
	if !bodyAllowedForStatus(w.status) {
		return 0, http.ErrBodyNotAllowed
	}
	w.written += int64(len(p))
	if w.contentLength != -1 && w.written > w.contentLength {
		return 0, http.ErrContentLength
	}
	if w.dead {
		return 0, errDead
	}
	if !w.committed {
		pend := w.c.pend
		if len(pend)+len(p) <= pendMax {
			if pend == nil {
				pend = make([]byte, 0, pendMax)
			}
			w.c.pend = append(pend, p...)
			return len(p), nil
		}
		// Past what is held back (net/http's bufio.Writer before its
		// chunkWriter): the header goes with the first bytes.
		if len(pend) == 0 {
			w.commit(p)
			w.writeBody(p)
		} else {
			k := pendMax - len(pend)
			w.c.pend = append(pend, p[:k]...)
			w.commit(w.c.pend)
			w.writeBody(w.c.pend)
			w.c.pend = w.c.pend[:0]
			w.writeBody(p[k:])
		}
	} else {
		w.writeBody(p)
	}
	if w.werr != nil {
		return 0, w.werr
	}
	return len(p), nil
}

// Flush implements http.Flusher: the header and what is buffered go out.
func (w *response) Flush() {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if w.dead {
		return
	}
	if !w.committed {
		w.commit(w.c.pend)
		w.writeBody(w.c.pend)
		w.c.pend = w.c.pend[:0]
	}
	w.send(nil)
}

// SetReadDeadline sets the connection's read deadline, for the handler's
// reads of the body (http.ResponseController).
func (w *response) SetReadDeadline(t time.Time) error {
	w.c.deadlineMoved.Store(true)
	return w.c.nc.SetReadDeadline(t)
}

// SetWriteDeadline sets the connection's write deadline
// (http.ResponseController).
func (w *response) SetWriteDeadline(t time.Time) error { return w.c.nc.SetWriteDeadline(t) }

// commit puts the status line and the fields into out, deciding the
// framing and the connection's fate from the snapshot, the request and p,
// the first body bytes (net/http's chunkWriter.writeHeader).
func (w *response) commit(p []byte) {
	w.committed = true
	keepAlives := !w.c.srv.inShutdown.Load()
	bodyAllowed := bodyAllowedForStatus(w.status)
	trailers := len(w.trailers) > 0 || w.prefixed
	var autoLength bool
	if w.handlerDone && !trailers && !w.hasTE && bodyAllowed && !w.hasCL && (!w.isHEAD || len(p) > 0) {
		w.contentLength = int64(len(p))
		autoLength = true
	}
	if w.wants10KeepAlive && keepAlives && w.firstCL != "" && w.conn == "keep-alive" {
		w.closeAfter = false
	}
	hasCL := w.contentLength != -1
	var connection string // a Connection field canaryd adds
	if w.wants10KeepAlive && (w.isHEAD || hasCL || !bodyAllowed) {
		if !w.hasConn {
			connection = "keep-alive"
		}
	} else if !w.is11 || w.wantsClose {
		w.closeAfter = true
	}
	if w.conn == "close" || !keepAlives {
		w.closeAfter = true
	}
	if w.expectContinue && !w.body.sawEOF.Load() {
		w.closeAfter = true
	}
	if w.req.ContentLength != 0 && !w.closeAfter && w.body != nil && !w.body.discard() {
		w.closeAfter = true
		w.connLines = w.connLines[:0]
		connection = "close"
	}
	var contentType string
	if bodyAllowed && !w.hasEncoding && !w.hasType && !w.hasTE && len(p) > 0 {
		contentType = http.DetectContentType(p)
	}
	clLines, teLines := w.clLines, w.teLines
	if hasCL && w.hasTE && w.te != "identity" {
		w.c.srv.logf("http: WriteHeader called with both Transfer-Encoding of %q and a Content-Length of %d", w.te, w.contentLength)
		clLines, hasCL = nil, false
	}
	var transferEncoding string
	switch {
	case w.isHEAD || !bodyAllowed || w.status == http.StatusNoContent, hasCL:
		teLines = nil
	case w.is11:
		if w.hasTE && w.te == "identity" {
			w.chunking = false
			w.closeAfter = true
			teLines = nil
		} else {
			w.chunking = true
			transferEncoding = "chunked"
			if w.hasTE && w.te == "chunked" {
				teLines = nil
			}
		}
	default:
		w.closeAfter = true
		teLines = nil
	}
	if w.chunking {
		clLines = nil
	}
	connLines := w.connLines
	if w.closeAfter && (!keepAlives || !hasToken(w.conn, "close")) && !(w.status == http.StatusSwitchingProtocols && w.upgrade && valuesContain(w.header["Connection"], "Upgrade")) {
		connLines = nil
		if w.is11 {
			connection = "close"
		}
	}

	w.lendOut()
	out := appendStatusLine(*w.out, w.is11, w.status)
	out = append(out, w.fields...)
	out = append(out, clLines...)
	out = append(out, teLines...)
	out = append(out, connLines...)
	if !w.hasDate {
		out = append(out, w.c.srv.dates.line(time.Now())...)
	}
	if autoLength {
		out = append(out, "Content-Length: "...)
		out = strconv.AppendInt(out, w.contentLength, 10)
		out = append(out, "\r\n"...)
	}
	if contentType != "" {
		out = append(out, "Content-Type: "...)
		out = append(out, contentType...)
		out = append(out, "\r\n"...)
	}
	if connection != "" {
		out = append(out, "Connection: "...)
		out = append(out, connection...)
		out = append(out, "\r\n"...)
	}
	if transferEncoding != "" {
		out = append(out, "Transfer-Encoding: chunked\r\n"...)
	}
	*w.out = append(out, "\r\n"...)
}

// writeBody frames p (a chunk, when chunking) into out; a large p is sent
// from where it is.
func (w *response) writeBody(p []byte) {
	if len(p) == 0 || w.isHEAD || w.dead {
		return
	}
	out := *w.out
	if w.chunking {
		out = strconv.AppendInt(out, int64(len(p)), 16)
		out = append(out, "\r\n"...)
	}
	if len(p) >= outBufferSize {
		*w.out = out
		w.send(p)
		out = *w.out
	} else {
		out = append(out, p...)
	}
	if w.chunking {
		out = append(out, "\r\n"...)
	}
	*w.out = out
	if len(out) >= outBufferSize {
		w.send(nil)
	}
}

// finish ends the answer after the handler returned and reports whether
// the connection can carry another request (net/http's finishRequest and
// shouldReuseConnection).
func (w *response) finish() bool {
	w.handlerDone = true
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if w.dead {
		return false
	}
	if !w.committed {
		w.commit(w.c.pend)
		w.writeBody(w.c.pend)
	}
	if w.chunking {
		out := append(*w.out, "0\r\n"...)
		out = w.appendTrailers(out)
		*w.out = append(out, "\r\n"...)
	}
	w.send(nil)
	switch {
	case w.closeAfter, w.werr != nil, w.dead:
		return false
	case !w.isHEAD && w.contentLength != -1 && bodyAllowedForStatus(w.status) && w.contentLength != w.written:
		return false // too few bytes: the client would read the next answer as this one's
	}
	return true
}

// appendTrailers appends the trailer fields: those set with
// http.TrailerPrefix, before or after the header went out, and those
// declared (net/http's finalTrailers).
func (w *response) appendTrailers(out []byte) []byte {
	for k, vv := range w.header {
		if kk, ok := strings.CutPrefix(k, http.TrailerPrefix); ok {
			out = appendFieldLines(out, kk, vv)
		}
	}
	for _, k := range w.trailers {
		out = appendFieldLines(out, k, w.header[k])
	}
	return out
}

// abort ends an answer after the handler panicked: what was committed
// goes out, the rest does not, and the connection closes.
func (w *response) abort() {
	if w.committed && !w.dead {
		w.send(nil)
	}
	w.dead = true
}

// refuse answers a request whose body the guard's rules refuse: 400 as
// the guard answers, when nothing of the answer was sent yet, and the
// connection closed at once either way.
func (w *response) refuse(fe FramingError) {
	if f := w.c.srv.cfg.Guard.Rejected; f != nil {
		f(string(fe))
	}
	if w.expectContinue {
		w.continueMu.Lock()
		defer w.continueMu.Unlock()
	}
	if !w.committed {
		_ = writeRefusal(w.c.nc, string(fe))
	}
	w.dead = true
	_ = w.c.nc.Close()
}

// lendOut makes sure w has an output buffer.
func (w *response) lendOut() {
	if w.out == nil {
		w.out = w.c.srv.getOut()
	}
}

// send writes out, then p if not nil, to the connection. A failed write
// ends the request's context, as net/http's does.
func (w *response) send(p []byte) {
	if w.werr != nil || w.dead {
		*w.out = (*w.out)[:0]
		return
	}
	if w.expectContinue {
		w.continueMu.Lock()
		defer w.continueMu.Unlock()
	}
	var err error
	switch out := *w.out; {
	case p != nil && len(out) > 0:
		bufs := net.Buffers{out, p}
		_, err = bufs.WriteTo(w.c.nc)
	case p != nil:
		_, err = w.c.nc.Write(p)
	case len(out) > 0:
		_, err = w.c.nc.Write(out)
	}
	*w.out = (*w.out)[:0]
	if err != nil {
		w.werr = err
		w.rq.ctx.clientGone()
	}
}

// writeContinue sends 100 Continue, once, unless the answer began.
func (w *response) writeContinue() {
	if !w.canContinue.Load() {
		return
	}
	w.continueMu.Lock()
	defer w.continueMu.Unlock()
	if !w.canContinue.Load() || w.dead {
		return
	}
	w.canContinue.Store(false)
	_, _ = io.WriteString(w.c.nc, "HTTP/1.1 100 Continue\r\n\r\n")
}

func (w *response) disableContinue() {
	if !w.canContinue.Load() {
		return
	}
	w.continueMu.Lock()
	w.canContinue.Store(false)
	w.continueMu.Unlock()
}

// appendStatusLine appends an HTTP/1.x status line (net/http's
// writeStatusLine).
func appendStatusLine(b []byte, is11 bool, code int) []byte {
	if is11 {
		b = append(b, "HTTP/1.1 "...)
	} else {
		b = append(b, "HTTP/1.0 "...)
	}
	if text := http.StatusText(code); text != "" {
		b = strconv.AppendInt(b, int64(code), 10)
		b = append(b, ' ')
		b = append(b, text...)
		return append(b, "\r\n"...)
	}
	return fmt.Appendf(b, "%03d status code %d\r\n", code, code)
}

// appendFieldLines appends one line per value of the field k, as
// net/http writes a header: a key that is not a token is dropped, CR and
// LF in a value become spaces, and values are trimmed.
func appendFieldLines(b []byte, k string, vv []string) []byte {
	if !ValidFieldName(k) {
		return b
	}
	for _, v := range vv {
		// Trimming first and replacing after is the same: CR and LF are
		// among the trimmed.
		i, j := 0, len(v)
		for i < j && isASCIISpace(v[i]) {
			i++
		}
		for j > i && isASCIISpace(v[j-1]) {
			j--
		}
		b = append(b, k...)
		b = append(b, ": "...)
		start := len(b)
		b = append(b, v[i:j]...)
		for x := start; x < len(b); x++ {
			if b[x] == '\r' || b[x] == '\n' {
				b[x] = ' '
			}
		}
		b = append(b, "\r\n"...)
	}
	return b
}

// writeRefusal writes the framing guard's answer to a refused request:
// 400 with the reason as a JSON error, closing.
func writeRefusal(w io.Writer, reason string) error {
	body := `{"error":"bad request: ` + reason + `"}` + "\n"
	_, err := io.WriteString(w, "HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: "+
		strconv.Itoa(len(body))+"\r\n\r\n"+body)
	return err
}
