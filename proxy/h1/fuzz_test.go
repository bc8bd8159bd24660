package h1

// Differential fuzz targets: each private parser against the standard
// library's. Seed corpora are in testdata/fuzz/<target>; `make fuzz` runs
// every target, `go test` runs the seeds.

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/textproto"
	"reflect"
	"strings"
	"testing"
	"time"
)

// smuggling are request streams from the smuggling and protocol tests:
// the seeds every request-side target starts from.
var smuggling = []string{
	"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
	"GET /a HTTP/1.1\r\nHost: a\r\n\r\nGET /b HTTP/1.1\r\nHost: a\r\n\r\n",
	"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
	"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nabcde",
	"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc",
	"GET /x HTTP/1.1\r\nHost: a\r\nX-A: b\r\n c\r\n\r\n",
	"POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
	"GET /x HTTP/1.1\r\nHost: a\r\nContent-Length : 0\r\n\r\n",
	"GET /x HTTP/1.1\r\n\r\n",
	"GET /lf HTTP/1.1\nHost: a\n\n",
	"GET /lf HTTP/1.1\r\nHost: a\n\r\n",
	"POST /a HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello" +
		"POST /b HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nworld\r\n3\r\n!!!\r\n0\r\nX-Trailer: t\r\n\r\n" +
		"\r\nGET /c HTTP/1.1\r\nHost: a\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3;name=\"v;x\"\r\nabc\r\n0;e\r\nX-T: 1\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
	"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nhiGET / HTTP/1.1\r\nHost: a\r\n\r\n",
	"POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n+1\r\nX\r\n0\r\n\r\n",
	"POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n-0\r\n\r\n",
	"POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n1 ;x\r\nX\r\n0\r\n\r\n",
	"POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n1 \r\nX\r\n0\r\n\r\n",
	"POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nX\r\n0\r\n\r\n",
	"POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0x1\r\nX\r\n0\r\n\r\n",
	"POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n1\nX\r\n0\r\n\r\n",
	"POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nXY0\r\n\r\n",
	"POST /c HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
	"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\nPOST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
	"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
	"TRACE /t HTTP/1.1\r\nHost: a\r\nCookie: secret\r\n\r\n",
	"GET /up HTTP/1.1\r\nHost: a\r\nUpgrade: foo\r\nConnection: upgrade\r\n\r\nGET /x HTTP/1.1\r\nHost: a\nX-Bare: lf\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\nCookie: " + strings.Repeat("x", 2000) + "\r\nContent-Length: 0\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 005\r\n\r\nhello",
	"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\nhello",
	"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked\r\n\r\n1\r\na\r\n0\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX-T: 1\r\n t\r\n\r\n",
	"GET / HTTP/1.2\r\nHost: a\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nok\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
	"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n",
}

// httpRequest is what net/http made of one request of a stream.
type httpRequest struct {
	end int // offset just after it, body included
}

// parseStream reads the requests of raw as net/http's server would, until
// it would refuse one: it returns the requests it accepted.
func parseStream(raw []byte) []httpRequest {
	r := bytes.NewReader(raw)
	br := bufio.NewReader(r)
	var (
		out        []httpRequest
		lastMethod string
	)
	for {
		if lastMethod == http.MethodPost {
			// net/http tolerates up to 4 CR or LF bytes after a POST.
			peek, _ := br.Peek(4)
			n := 0
			for n < len(peek) && (peek[n] == '\r' || peek[n] == '\n') {
				n++
			}
			_, _ = br.Discard(n)
		}
		at := len(raw) - r.Len() - br.Buffered()
		req, err := http.ReadRequest(br)
		if err != nil || !serverAccepts(req, raw[at:]) {
			return out
		}
		if _, err := io.Copy(io.Discard, req.Body); err != nil {
			return out
		}
		lastMethod = req.Method
		out = append(out, httpRequest{end: len(raw) - r.Len() - br.Buffered()})
	}
}

// serverAccepts applies the checks net/http's server adds to ReadRequest,
// for the request ReadRequest read from the start of raw. (ReadRequest
// drops the Host field, which the server checks: its fields are read again
// from raw, with net/textproto, as the server reads them.)
func serverAccepts(req *http.Request, raw []byte) bool {
	if req.ProtoMajor != 1 && !(req.ProtoMajor == 2 && req.ProtoMinor == 0 && req.Method == "PRI" && req.RequestURI == "*") {
		return false
	}
	tp := textproto.NewReader(bufio.NewReader(bytes.NewReader(raw)))
	if _, err := tp.ReadLine(); err != nil {
		return false
	}
	fields, err := tp.ReadMIMEHeader()
	if err != nil {
		return false
	}
	hosts, haveHost := fields["Host"]
	if req.ProtoAtLeast(1, 1) && (!haveHost || len(hosts) == 0) && req.Method != "PRI" && req.Method != http.MethodConnect {
		return false
	}
	if len(hosts) == 1 && !validHostHeader(hosts[0]) {
		return false
	}
	for k, vv := range req.Header {
		if !ValidFieldName(k) {
			return false
		}
		for _, v := range vv {
			if !ValidFieldValue(v) {
				return false
			}
		}
	}
	return true
}

// guardStream runs the guard's scanner over raw, split into reads of step
// bytes, and returns where it saw each request end and why it refused, if
// it did.
func guardStream(raw []byte, step int) (ends []int, refusal error) {
	s := scanner{maxHead: DefaultMaxHeadBytes}
	for i := 0; i < len(raw); i += step {
		chunk := raw[i:min(i+step, len(raw))]
		if step == 1 {
			before := s.messages
			if err := s.scan(chunk); err != nil {
				return ends, err
			}
			if s.messages > before {
				ends = append(ends, i+1)
			}
			continue
		}
		if err := s.scan(chunk); err != nil {
			return nil, err
		}
	}
	return ends, nil
}

// FuzzRequestFraming holds the framing guard to net/http's request parser.
// Whatever the guard lets through must be framed by net/http exactly as the
// guard framed it (no desynchronisation, hence no smuggling); a request
// net/http accepts may be refused only for an ambiguity, never for being
// malformed in a way net/http would have refused anyway (which would mean
// the guard misreads clean traffic). The guard's verdict must not depend
// on how the stream is split into reads.
func FuzzRequestFraming(f *testing.F) {
	for _, s := range smuggling {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		if len(raw) > 64<<10 {
			return
		}
		ends, refusal := guardStream(raw, 1)
		if _, whole := guardStream(raw, len(raw)+1); whole != refusal {
			t.Fatalf("verdict depends on the reads: byte by byte %v, at once %v", refusal, whole)
		}
		accepted := parseStream(raw)
		for i := 0; i < len(ends) && i < len(accepted); i++ {
			if ends[i] != accepted[i].end {
				t.Fatalf("request %d: the guard framed it to end at %d, net/http at %d", i, ends[i], accepted[i].end)
			}
		}
		if len(accepted) <= len(ends) {
			return // the guard framed everything net/http accepts as net/http did
		}
		if refusal == nil {
			t.Fatalf("net/http read %d requests, the guard saw %d end and passed the rest as unfinished", len(accepted), len(ends))
		}
		// net/http accepts the request the guard refused: only for an
		// ambiguity the request really has.
		start := 0
		if len(ends) > 0 {
			start = ends[len(ends)-1]
		}
		msg := raw[start:accepted[len(ends)].end]
		if !justified(refusal, msg) {
			t.Fatalf("the guard refused %q (%v), which net/http accepts and which has no such ambiguity", msg, refusal)
		}
	})
}

// justified reports whether refusing msg, a request net/http accepts, for
// reason is right: msg really has that ambiguity, or breaks RFC 9112's
// grammar where net/http is lenient. The checks are deliberately simple
// and independent of the guard's parser.
func justified(reason error, msg []byte) bool {
	msg = bytes.TrimLeft(msg, "\r\n")
	line, _, _ := bytes.Cut(msg, []byte("\n"))
	head, _, _ := bytes.Cut(msg, []byte("\n\r\n"))
	lower := bytes.ToLower(head)
	chunked := bytes.Contains(lower, []byte("\ntransfer-encoding"))
	switch reason {
	case errBareLF:
		return bareLF(msg)
	case errObsFold:
		return bytes.Contains(msg, []byte("\n ")) || bytes.Contains(msg, []byte("\n\t"))
	case errLengthAndChunked:
		return bytes.Contains(lower, []byte("\ncontent-length")) && chunked
	case errContentLength, errConflictingLength:
		return bytes.Contains(lower, []byte("\ncontent-length"))
	case errTransferEncoding, errChunkedHTTP10, errChunkSize:
		return chunked
	case errFieldName, errSpaceBeforeColon:
		return chunked // a trailer: net/http checks no trailer names
	case errPriorKnowledge:
		return bytes.HasPrefix(msg, []byte("PRI "))
	case errRequestLine:
		parts := bytes.Split(bytes.TrimSuffix(line, []byte("\r")), []byte(" "))
		if len(parts) != 3 || len(parts[0]) == 0 || len(parts[1]) == 0 {
			return true
		}
		return bytes.ContainsFunc(parts[1], func(r rune) bool { return r <= ' ' || r == 0x7f })
	case errVersion:
		_, version, _ := bytes.Cut(bytes.TrimSuffix(line, []byte("\r")), []byte(" HTTP/"))
		return len(version) != 3 || version[0] != '1'
	}
	return false
}

// bareLF reports whether b has an LF not preceded by CR.
func bareLF(b []byte) bool {
	for i, c := range b {
		if c == '\n' && (i == 0 || b[i-1] != '\r') {
			return true
		}
	}
	return false
}

// FuzzResponseHead holds the common-answer parser to http.ReadResponse:
// when parseHead takes an answer, net/http must read the same status,
// length, connection fate and fields (hop-by-hop ones removed).
func FuzzResponseHead(f *testing.F) {
	for _, s := range []string{
		"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok",
		"HTTP/1.1 201 Created\r\ncontent-type:  text/x \t\r\nx-multi: a\r\nX-Multi: b\r\ncontent-length: 3\r\n\r\nabc",
		"HTTP/1.1 404\r\nContent-Length: 0\r\n\r\n",
		"HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\nProxy-Authenticate: x\r\nUpgrade: h2\r\nContent-Length: 1\r\n\r\nx",
		"HTTP/1.1 200 OK\r\nConnection: X-Private\r\nX-Private: secret\r\nX-Public: yes\r\nContent-Length: 1\r\n\r\nx",
		"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\nx",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil close",
		"HTTP/1.1 200 OK\r\nX-Folded: a\r\n b\r\nContent-Length: 1\r\n\r\nx",
		"HTTP/1.1 200 OK\nX-Lf: yes\nContent-Length: 1\n\nx",
		"HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\nx",
		"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx",
		"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Length: 4\r\n\r\nbusy",
		"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n",
		"HTTP/1.1 304 Not Modified\r\nEtag: \"v1\"\r\n\r\n",
		"HTTP/1.1 600 Odd\r\nContent-Length: 2\r\n\r\nok",
		"HTTP/1.1 099 Odd\r\nContent-Length: 0\r\n\r\n",
		"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\npage",
		"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\ndata: x\n\n",
		"HTTP/1.1 200 OK\r\nContent-Length: +1\r\n\r\nx",
		"HTTP/1.1 200 OK\r\nX: a\x00b\r\nContent-Length: 1\r\n\r\nx",
	} {
		f.Add([]byte(s), false)
		f.Add([]byte(s), true)
	}
	f.Fuzz(func(t *testing.T, raw []byte, head bool) {
		end := headEnd(raw, 0)
		if end < 0 {
			return
		}
		var c conn
		ph, ok := c.parseHead(raw[:end])
		if !ok {
			return // left to http.ReadResponse
		}
		noBody := head || ph.status == http.StatusNoContent || ph.status == http.StatusNotModified
		if !noBody && ph.length < 0 {
			return // delimited by the close: left to http.ReadResponse (see relay)
		}
		method := http.MethodGet
		if head {
			method = http.MethodHead
		}
		req := &http.Request{Method: method}
		resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(raw)), req)
		if err != nil {
			t.Fatalf("parseHead took %q, http.ReadResponse refused it: %v", raw[:end], err)
		}
		if resp.StatusCode != ph.status {
			t.Fatalf("status %d; net/http %d", ph.status, resp.StatusCode)
		}
		if resp.Close != ph.close {
			t.Fatalf("close %v; net/http %v", ph.close, resp.Close)
		}
		if !noBody && resp.ContentLength != ph.length {
			t.Fatalf("length %d; net/http %d", ph.length, resp.ContentLength)
		}
		got := http.Header{}
		c.commitHeader(got)
		removeHopByHop(resp.Header)
		if len(got) == 0 && len(resp.Header) == 0 {
			return
		}
		if !reflect.DeepEqual(got, resp.Header) {
			t.Fatalf("fields %q; net/http %q", got, resp.Header)
		}
	})
}

// FuzzFieldValidators holds ValidFieldName and ValidFieldValue to the checks
// http.Transport makes before it sends a request.
func FuzzFieldValidators(f *testing.F) {
	for _, s := range []string{"X-Ok", "X Bad", "", "X:y", "é", "x\x00", "Tab\tValue", "a\r\nInjected: yes", "~!#$%&'*+-.^_`|"} {
		f.Add(s, s)
	}
	tr := &http.Transport{DialContext: func(context.Context, string, string) (net.Conn, error) {
		return nil, errors.New("no dial")
	}}
	f.Fuzz(func(t *testing.T, name, value string) {
		if name == "" || name == "Host" {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://x.test/", nil)
		req.Header[name] = []string{value}
		_, err := tr.RoundTrip(req)
		if ctx.Err() != nil {
			t.Fatalf("RoundTrip with field %q: %q hung: %v", name, value, err)
		}
		msg := ""
		if err != nil {
			msg = err.Error()
		}
		badName := strings.Contains(msg, "invalid header field name")
		badValue := strings.Contains(msg, "invalid header field value")
		if ValidFieldName(name) == badName {
			t.Fatalf("ValidFieldName(%q) = %v; http.Transport: %v", name, ValidFieldName(name), err)
		}
		if !badName && ValidFieldValue(value) == badValue {
			t.Fatalf("ValidFieldValue(%q) = %v; http.Transport: %v", value, ValidFieldValue(value), err)
		}
	})
}
