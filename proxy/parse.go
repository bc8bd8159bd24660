package proxy

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"time"
	"unsafe"
)

// The common response, parsed without http.ReadResponse.
//
// A backend's answer to a bodiless GET is nearly always the same shape: an
// HTTP/1.1 status line, a few plain header lines, a Content-Length (or no
// body at all), everything in one TCP segment. copyParsed handles exactly
// that shape straight from the connection's buffer into the client's
// header map: field names and values are reused from the previous response
// on the same connection when they are equal (Server, Content-Type and the
// like rarely change), so a response costs one allocation for its values
// instead of a dozen. Anything else (1xx, 101, chunked or close-delimited
// bodies, trailers, event streams, an obs-folded line, a Connection header
// naming other fields, a header not yet fully received, bare LF line ends)
// is left unread for http.ReadResponse.

// field is one response header line: the name as received, its canonical
// form and the value (trimmed).
type field struct {
	name, key, val  string
	rawName, rawVal []byte // set while parsing, pointing into the read buffer
}

// parsedResponse is what copyParsed needs to know of a response.
type parsedResponse struct {
	status    int
	length    int64 // Content-Length; -1 if none
	close     bool  // Connection: close
	headerLen int
}

// copyParsed copies the response waiting in uc's buffer to rw if it has the
// common shape, and reports whether it did. When it did, uc has been
// returned to the idle stack or closed.
func (p *Proxy) copyParsed(rw *responseWriter, r *http.Request, uc *upConn) bool {
	buf, _ := uc.br.Peek(uc.br.Buffered())
	pr, ok := uc.parseHeader(buf)
	if !ok {
		return false
	}
	noBody := r.Method == http.MethodHead || pr.status == http.StatusNoContent || pr.status == http.StatusNotModified
	if !noBody && pr.length < 0 {
		return false // delimited by the connection's close
	}
	uc.commitHeader(rw.Header())
	rw.WriteHeader(pr.status)
	if noBody {
		_, _ = uc.br.Discard(pr.headerLen)
		uc.finish(!pr.close)
		return true
	}
	if avail := int64(len(buf) - pr.headerLen); avail >= pr.length {
		// The whole body is buffered: write it from there.
		body := buf[pr.headerLen : int64(pr.headerLen)+pr.length]
		_, werr := rw.Write(body)
		_, _ = uc.br.Discard(pr.headerLen + len(body))
		if werr != nil {
			uc.close()
			p.abortCopy(rw, r, werr)
			return true
		}
		uc.finish(!pr.close)
		return true
	}
	_, _ = uc.br.Discard(pr.headerLen)
	if err := uc.setDeadline(time.Time{}); err != nil {
		uc.close()
		p.abortCopy(rw, r, err)
		return true
	}
	stop := context.AfterFunc(r.Context(), uc.abort)
	err := p.copyN(rw, uc, pr.length)
	stopped := stop()
	if err != nil {
		uc.close()
		p.abortCopy(rw, r, err)
		return true
	}
	uc.finish(!pr.close && stopped)
	return true
}

// finish returns uc to the idle stack if keep is set and nothing
// unexpected follows the response, else closes it. Its idle time counts
// from now, not from the start of the exchange: the idle stack is ordered
// by idle time, and a long response must not make a fresh connection look
// stale (popIdle drops everything below a stale one).
func (uc *upConn) finish(keep bool) {
	if keep && uc.br.Buffered() == 0 {
		uc.up.put(uc, time.Now())
		return
	}
	uc.close()
}

// copyN copies n body bytes from uc to rw.
func (p *Proxy) copyN(rw *responseWriter, uc *upConn, n int64) error {
	buf := p.buffers.Get()
	defer p.buffers.Put(buf)
	for n > 0 {
		k, rerr := uc.br.Read(buf[:min(int64(len(buf)), n)])
		if k > 0 {
			n -= int64(k)
			if _, werr := rw.Write(buf[:k]); werr != nil {
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

// parseHeader parses the status line and header of a response of the
// common shape from buf into uc.fields (names and values pointing into
// buf). ok is false for anything else.
func (uc *upConn) parseHeader(buf []byte) (pr parsedResponse, ok bool) {
	end := bytes.Index(buf, []byte("\r\n\r\n"))
	if end < 0 || len(buf) < len("HTTP/1.1 200\r\n") || string(buf[:9]) != "HTTP/1.1 " {
		return pr, false
	}
	pr.headerLen = end + 4
	pr.length = -1
	d0, d1, d2 := buf[9], buf[10], buf[11]
	if d0 < '2' || d0 > '5' || d1 < '0' || d1 > '9' || d2 < '0' || d2 > '9' || (buf[12] != ' ' && buf[12] != '\r') {
		return pr, false
	}
	pr.status = int(d0-'0')*100 + int(d1-'0')*10 + int(d2-'0')
	line := bytes.IndexByte(buf, '\n')
	if bytes.IndexByte(buf[:line], 0) >= 0 {
		return pr, false
	}
	uc.fields = uc.fields[:0]
	rest := buf[line+1 : end+2] // the header lines, each ending in CRLF
	for len(rest) > 0 {
		eol := bytes.IndexByte(rest, '\n')
		if eol < 1 || rest[eol-1] != '\r' {
			return pr, false // a bare LF
		}
		ln := rest[:eol-1]
		rest = rest[eol+1:]
		colon := bytes.IndexByte(ln, ':')
		if colon <= 0 || !validName(bytesString(ln[:colon])) {
			return pr, false // also catches obs-fold: a line starting with white space
		}
		name, val := ln[:colon], trimOWS(ln[colon+1:])
		if !validValue(bytesString(val)) {
			return pr, false
		}
		switch {
		case asciiEqualFold(bytesString(name), "Content-Length"):
			if pr.length >= 0 {
				return pr, false
			}
			if pr.length = parseLength(val); pr.length < 0 {
				return pr, false
			}
		case asciiEqualFold(bytesString(name), "Connection"):
			for tok := range bytes.SplitSeq(val, []byte(",")) {
				switch t := bytesString(trimOWS(tok)); {
				case asciiEqualFold(t, "close"):
					pr.close = true
				case asciiEqualFold(t, "keep-alive"), t == "":
				default:
					return pr, false // names a field to drop
				}
			}
			continue
		case asciiEqualFold(bytesString(name), "Transfer-Encoding"),
			asciiEqualFold(bytesString(name), "Trailer"):
			return pr, false
		case asciiEqualFold(bytesString(name), "Content-Type"):
			if isEventStream([]string{bytesString(val)}) {
				return pr, false
			}
		case asciiEqualFold(bytesString(name), "Keep-Alive"),
			asciiEqualFold(bytesString(name), "Proxy-Connection"),
			asciiEqualFold(bytesString(name), "Proxy-Authenticate"),
			asciiEqualFold(bytesString(name), "Proxy-Authorization"),
			asciiEqualFold(bytesString(name), "Te"),
			asciiEqualFold(bytesString(name), "Upgrade"):
			continue // hop-by-hop
		}
		uc.fields = append(uc.fields, field{rawName: name, rawVal: val})
	}
	return pr, true
}

// commitHeader adds uc.fields to h, reusing the strings of the previous
// response's fields where they are equal, and keeps them for the next.
func (uc *upConn) commitHeader(h http.Header) {
	vals := make([]string, len(uc.fields))
	for i := range uc.fields {
		f := &uc.fields[i]
		if i < len(uc.prev) && uc.prev[i].name == string(f.rawName) {
			f.name, f.key = uc.prev[i].name, uc.prev[i].key
			if uc.prev[i].val == string(f.rawVal) {
				f.val = uc.prev[i].val
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
	uc.prev, uc.fields = uc.fields, uc.prev[:0]
}

// parseLength parses a Content-Length value; -1 if malformed.
func parseLength(v []byte) int64 {
	if len(v) == 0 || len(v) > 18 {
		return -1
	}
	var n int64
	for _, c := range v {
		if c < '0' || c > '9' {
			return -1
		}
		n = n*10 + int64(c-'0')
	}
	return n
}

// trimOWS trims optional white space (SP, HTAB) from both ends of b.
func trimOWS(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}

// bytesString views b as a string without copying, for comparisons and
// checks only: the result must not be kept.
func bytesString(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }
