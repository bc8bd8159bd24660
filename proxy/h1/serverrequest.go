package h1

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"net/textproto"
	"net/url"
	"sync"
	"sync/atomic"
	"time"
)

// The loop's requests: what ParseRequestHead parsed, made into the
// *http.Request net/http's server would have made of the same bytes
// (http.ReadRequest and the checks of its server; FuzzServerRequest holds
// the two equal), with a body reader that frames the body by the guard's
// rules.

// request is what a request needs besides the *http.Request (which is
// the connection's, copied anew each time): its context, URL and body.
// The connection reuses it for the next request unless someone waited on
// the context (a goroutine may still hold that one); a body is allocated
// per request.
type request struct {
	ctx  requestContext
	url  url.URL
	body *body // nil without a body
}

// maxReusedFields bounds what a connection keeps for the next request
// (the header map, its values, the field strings): a request with more
// fields gets its own, let go after it.
const maxReusedFields = 32

// newRequest builds c.req from c.head, or reports false for a request the
// loop leaves to net/http (see Server).
func (c *serverConn) newRequest() (*request, bool) {
	h := &c.head
	if h.Upgrade || h.Minor > 1 || len(h.Target) == 0 || h.Target[0] != '/' || string(h.Method) == http.MethodConnect {
		return nil, false
	}
	if string(h.Target) != c.target {
		target := string(h.Target)
		u, err := url.ParseRequestURI(target)
		if err != nil {
			return nil, false
		}
		c.target, c.url = target, *u
	}
	header, host, ok := c.header()
	if !ok {
		return nil, false
	}
	rq := c.spare
	if rq == nil {
		rq = new(request)
	}
	c.spare = nil
	*rq = request{url: c.url}
	tmpl := http.Request{
		Method:     method(h.Method),
		URL:        &rq.url,
		ProtoMajor: 1,
		ProtoMinor: h.Minor,
		Proto:      "HTTP/1.1",
		Header:     header,
		Body:       http.NoBody,
		Host:       host,
		RemoteAddr: c.remoteAddr,
		RequestURI: c.target,
	}
	if h.Minor == 0 {
		tmpl.Proto = "HTTP/1.0"
	}
	conn := header["Connection"]
	var firstConn string
	if len(conn) > 0 {
		firstConn = conn[0]
	}
	hasClose := valuesContain(conn, "close")
	tmpl.Close = hasClose || h.Minor == 0 && !valuesContain(conn, "keep-alive")
	switch h.Framing {
	case Length:
		tmpl.ContentLength = h.Length
		if h.Length > 0 {
			rq.body = &body{c: c, remaining: h.Length}
		}
	case Chunked:
		tmpl.ContentLength = -1
		tmpl.TransferEncoding = []string{"chunked"}
		rq.body = &body{c: c, chunked: true, trailer: &c.req.Trailer}
		delete(header, "Transfer-Encoding")
		if tr, ok := header["Trailer"]; ok {
			declared, ok := declaredTrailer(tr)
			if !ok {
				return nil, false // net/http answers 400 bad trailer key
			}
			tmpl.Trailer = declared
			delete(header, "Trailer")
		}
	}
	if ex := header["Expect"]; len(ex) > 0 && ex[0] != "" {
		switch {
		case !hasToken(ex[0], "100-continue"):
			return nil, false // net/http answers 417
		case h.Minor >= 1 && rq.body != nil:
			rq.body.expectContinue = true
		}
	}
	if p := header["Pragma"]; len(p) > 0 && p[0] == "no-cache" {
		if _, ok := header["Cache-Control"]; !ok {
			header["Cache-Control"] = []string{"no-cache"}
		}
	}
	if rq.body != nil {
		tmpl.Body = rq.body
	}
	rq.ctx = requestContext{Context: c.ctx, c: c}
	// A copy with the context set, without an allocation (WithContext
	// is inlined and its copy does not escape).
	c.req = *tmpl.WithContext(&rq.ctx)
	c.resp.wants10KeepAlive = h.Minor == 0 && hasToken(firstConn, "keep-alive")
	c.resp.wantsClose = tmpl.Close || hasToken(firstConn, "close")
	c.watchMu.Lock()
	c.wantWatch, c.bodyDone = nil, rq.body == nil
	c.watchMu.Unlock()
	return rq, true
}

// header builds the request's header map from c.head's fields, as
// net/textproto would, and returns the Host. ok is false for a Host field
// missing (HTTP/1.1), repeated or malformed: net/http answers those.
func (c *serverConn) header() (h http.Header, host string, ok bool) {
	fields := c.head.Fields
	if h = c.hdr; h == nil || len(fields) > maxReusedFields {
		h = make(http.Header, len(fields))
	} else {
		clear(h)
	}
	if len(fields) <= maxReusedFields {
		c.hdr = h
	}
	var vals []string
	switch {
	case len(fields) > maxReusedFields:
		vals = make([]string, len(fields))
	case cap(c.vals) < len(fields):
		c.vals = make([]string, len(fields), maxReusedFields)
		fallthrough
	default:
		vals = c.vals[:len(fields)]
	}
	c.cur = c.cur[:0]
	hosts := 0
	for i, f := range fields {
		var pf prevField
		if i < len(c.prev) && c.prev[i].name == string(f.Name) {
			pf.name, pf.key = c.prev[i].name, c.prev[i].key
			if c.prev[i].val == string(f.Value) {
				pf.val = c.prev[i].val
			}
		}
		if pf.key == "" {
			pf.name = string(f.Name)
			pf.key = canonicalKey(pf.name)
		}
		if pf.val == "" && len(f.Value) > 0 {
			pf.val = string(f.Value)
		}
		c.cur = append(c.cur, pf)
		if pf.key == "Host" {
			hosts++
			host = pf.val
			continue
		}
		vals[i] = pf.val
		if prior, ok := h[pf.key]; ok {
			h[pf.key] = append(prior, pf.val)
		} else {
			h[pf.key] = vals[i : i+1 : i+1]
		}
	}
	c.prev, c.cur = c.cur, c.prev
	if len(c.prev) > maxReusedFields {
		c.prev, c.cur = nil, nil // a rare large request: keep nothing of it
	}
	switch {
	case hosts > 1, hosts == 0 && c.head.Minor >= 1, hosts == 1 && !validHostHeader(host):
		return nil, "", false
	}
	if cl := h["Content-Length"]; len(cl) > 1 {
		h["Content-Length"] = cl[:1] // the same value repeated (the parser refused others)
	}
	return h, host, true
}

// canonicalKey is textproto.CanonicalMIMEHeaderKey for a token, returning
// name itself when it is canonical already.
func canonicalKey(name string) string {
	upper := true
	for i := range len(name) {
		c := name[i]
		if upper && 'a' <= c && c <= 'z' || !upper && 'A' <= c && c <= 'Z' {
			return textproto.CanonicalMIMEHeaderKey(name)
		}
		upper = c == '-'
	}
	return name
}

// method returns the method's string, without allocating for the common
// ones.
func method(m []byte) string {
	switch string(m) {
	case http.MethodGet:
		return http.MethodGet
	case http.MethodHead:
		return http.MethodHead
	case http.MethodPost:
		return http.MethodPost
	case http.MethodPut:
		return http.MethodPut
	case http.MethodPatch:
		return http.MethodPatch
	case http.MethodDelete:
		return http.MethodDelete
	case http.MethodOptions:
		return http.MethodOptions
	}
	return string(m)
}

// declaredTrailer is net/http's fixTrailer for a chunked request: the
// declared trailer fields, with nil values; ok is false for a key that may
// not be a trailer.
func declaredTrailer(vv []string) (http.Header, bool) {
	t := make(http.Header)
	ok := true
	for _, v := range vv {
		foreachHeaderElement(v, func(key string) {
			key = http.CanonicalHeaderKey(key)
			switch key {
			case "Transfer-Encoding", "Trailer", "Content-Length":
				ok = false
			}
			t[key] = nil
		})
	}
	if len(t) == 0 {
		return nil, ok
	}
	return t, ok
}

// body is a request body of the loop, read from the connection's buffer
// and socket. Framing is the guard's: a Content-Length, or chunks with
// strict sizes (parseChunkSize), CRLF after each chunk's data and trailer
// lines as field lines. A framing error is answered as the guard answers
// it (400, the connection closed); a body that ends early, or breaks one
// of net/http's own limits (chunk overhead, trailer size), is an error for
// the handler, as on net/http.
type body struct {
	c              *serverConn
	chunked        bool
	expectContinue bool // the first Read sends 100 Continue
	trailer        *http.Header

	mu        sync.Mutex // protects the rest; reads may come from any goroutine, close from the loop
	remaining int64      // of the body (Length), or of the current chunk's data
	state     chunkState
	excess    int64 // chunk overhead beyond what net/http tolerates
	err       error // sticky: io.EOF once read whole
	closed    bool

	sawEOF atomic.Bool // read whole; readable without mu
}

type chunkState uint8

const (
	chunkSize chunkState = iota
	chunkData
	chunkEnd
	chunkTrailer
)

// Net/http's limits on chunked bodies (net/http/internal/chunked.go and
// transfer.go, with its 4 KiB read buffer): a chunk-size line of 4096
// bytes at most with its CRLF, trailers within 4096 bytes, and at most 16 KiB of chunk overhead beyond 16 bytes per
// chunk and twice its data.
const (
	maxTrailerBytes = 4096
	maxChunkExcess  = 16 << 10
)

var (
	errChunkExcess  = errors.New("chunked encoding contains too much non-data")
	errLongTrailer  = errors.New("http: suspiciously long trailer after chunked body")
	errChunkTooLong = errors.New("header line too long")
)

func (b *body) Read(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return 0, http.ErrBodyReadAfterClose
	}
	if b.err != nil {
		return 0, b.err
	}
	if b.expectContinue {
		b.expectContinue = false
		b.c.resp.writeContinue()
	}
	var n int
	var err error
	if b.chunked {
		n, err = b.readChunked(p)
	} else {
		n, err = b.readLength(p)
	}
	if err != nil {
		b.err = err
		if err == io.EOF {
			b.sawEOF.Store(true)
			b.c.bodyRead()
		}
		var fe FramingError
		if errors.As(err, &fe) {
			// As the guard: 400 at once, the connection closed.
			b.c.resp.refuse(fe)
			b.err = io.ErrUnexpectedEOF
			err = b.err
		}
	}
	return n, err
}

// readLength reads a body of known length.
func (b *body) readLength(p []byte) (int, error) {
	if b.remaining == 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > b.remaining {
		p = p[:b.remaining]
	}
	n, err := b.c.readBody(p)
	b.remaining -= int64(n)
	switch {
	case b.remaining == 0:
		return n, io.EOF
	case err == io.EOF:
		return n, io.ErrUnexpectedEOF
	}
	return n, err
}

// readChunked reads chunk data, going through sizes, chunk ends and
// trailers as they come; it returns as soon as it has data.
func (b *body) readChunked(p []byte) (int, error) {
	c := b.c
	for {
		switch b.state {
		case chunkSize:
			line, err := c.readLine(maxChunkLine)
			if err != nil {
				return 0, err
			}
			size, err := parseChunkSize(line[:len(line)-2])
			if err != nil {
				return 0, err
			}
			b.excess += int64(len(line)) - 16 - 2*size
			b.excess = max(b.excess, 0)
			if b.excess > maxChunkExcess {
				return 0, errChunkExcess
			}
			if size == 0 {
				b.state = chunkTrailer
				continue
			}
			b.state, b.remaining = chunkData, size
		case chunkData:
			if len(p) == 0 {
				return 0, nil
			}
			if int64(len(p)) > b.remaining {
				p = p[:b.remaining]
			}
			n, err := c.readBody(p)
			b.remaining -= int64(n)
			if b.remaining == 0 {
				b.state = chunkEnd
			}
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return n, err
		case chunkEnd:
			for c.w-c.r < 2 {
				if err := c.fillBody(); err != nil {
					if err == io.EOF {
						err = io.ErrUnexpectedEOF
					}
					return 0, err
				}
			}
			if c.buf[c.r] != '\r' || c.buf[c.r+1] != '\n' {
				return 0, errChunkEnd
			}
			c.r += 2
			b.state = chunkSize
		case chunkTrailer:
			return 0, b.readTrailer()
		}
	}
}

// readTrailer reads the trailer section after the last chunk, through its
// empty line, into the request's Trailer (net/http's mergeSetHeader), and
// returns io.EOF.
func (b *body) readTrailer() error {
	c := b.c
	total := 0
	var t http.Header
	for {
		line, err := c.readLine(maxTrailerBytes - total)
		if errors.Is(err, errChunkTooLong) {
			return errLongTrailer
		}
		if err != nil {
			return err
		}
		total += len(line)
		if len(line) == 2 {
			break
		}
		name, value, err := parseFieldLine(line[:len(line)-2])
		if err != nil {
			return err
		}
		if t == nil {
			t = make(http.Header)
		}
		key := canonicalKey(string(name))
		t[key] = append(t[key], string(value))
	}
	if t != nil {
		if *b.trailer == nil {
			*b.trailer = t
		} else {
			for k, vv := range t {
				(*b.trailer)[k] = vv
			}
		}
	}
	return io.EOF
}

func (b *body) Close() error { return nil } // the loop closes it after the handler

// eof reports whether the body was read whole.
func (b *body) eof() bool { return b.sawEOF.Load() }

// close ends the body after the handler: what the handler left unread is
// read and dropped (up to maxPostHandlerReadBytes), unless the answer
// closes the connection anyway; a read in progress elsewhere (a transport
// still sending it) is cut off.
func (b *body) close() {
	if !b.mu.TryLock() {
		b.c.setDeadline(aLongTimeAgo)
		b.mu.Lock()
		b.c.resp.closeAfter = true
	}
	defer b.mu.Unlock()
	b.closed = true
}

// discard reads and drops the rest of the body, up to
// maxPostHandlerReadBytes, and reports whether it reached the end. It is
// called before the answer's header is sent, as net/http does it: some
// clients send their whole request before they read the answer.
func (b *body) discard() (ended bool) {
	if !b.mu.TryLock() {
		return false // a transport is reading it: leave it and close
	}
	closed, err := b.closed, b.err
	b.mu.Unlock()
	if closed || err != nil {
		return err == io.EOF
	}
	// A client that neither sends the rest nor reads the answer is idle.
	b.c.setReadDeadline(max(b.c.srv.idleTimeout, time.Second))
	n, err := io.CopyN(io.Discard, b, maxPostHandlerReadBytes+1)
	return err == io.EOF && n <= maxPostHandlerReadBytes
}

// readBody reads body bytes into p: from the buffer, or straight from the
// socket when the buffer is empty and p large.
func (c *serverConn) readBody(p []byte) (int, error) {
	if c.r < c.w {
		n := copy(p, c.buf[c.r:c.w])
		c.r += n
		return n, nil
	}
	if len(p) >= len(c.buf) {
		n, err := c.nc.Read(p)
		if n > 0 {
			err = nil
		}
		return n, err
	}
	c.r, c.w = 0, 0
	if err := c.fillBody(); err != nil {
		return 0, err
	}
	n := copy(p, c.buf[c.r:c.w])
	c.r += n
	return n, nil
}

// fillBody reads more into the buffer for a body; the end of the stream
// is io.EOF.
func (c *serverConn) fillBody() error {
	err := c.fill(-1)
	if errors.Is(err, errHeadOverLimit) {
		err = errChunkTooLong
	}
	return err
}

// readLine returns the next line of the buffer through its LF, reading
// more as needed; a line of limit bytes or more without its LF is
// errChunkTooLong, one without CR before the LF errBareLF (net/http's
// chunk lines: CRLF only, no CR elsewhere).
func (c *serverConn) readLine(limit int) ([]byte, error) {
	searched := 0
	for {
		b := c.buf[c.r:c.w]
		if i := bytes.IndexByte(b[searched:], '\n'); i >= 0 {
			end := searched + i + 1
			if end > limit {
				return nil, errChunkTooLong
			}
			line := b[:end]
			if end < 2 || line[end-2] != '\r' {
				return nil, errBareLF
			}
			c.r += end
			return line, nil
		}
		searched = len(b)
		if len(b) >= limit {
			return nil, errChunkTooLong
		}
		if err := c.fillBody(); err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
	}
}
