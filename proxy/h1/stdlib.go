package h1

// Code adapted from Go's standard library (Go 1.26; BSD-style license,
// Copyright The Go Authors), because it is unexported there:
//   - from net/http/httputil/reverseproxy.go, joinURLPath,
//     singleJoiningSlash and the test of cleanQueryParams: the fast path
//     must rewrite a request exactly as httputil.ReverseProxy's SetURL and
//     Rewrite do (FuzzOutboundRequest, package proxy, holds the two paths to
//     the same output);
//   - from net/http/server.go, tlsRecordHeaderLooksLikeHTTP: TLSListener
//     answers plain HTTP on a TLS port as net/http would;
//   - for the server loop (server.go), which must make the same request of
//     the same bytes and answer as net/http's server does: from
//     net/http/header.go hasToken and isTokenBoundary, from
//     net/http/server.go foreachHeaderElement, from net/http/transfer.go
//     bodyAllowedForStatus, and from golang.org/x/net/http/httpguts (which
//     net/http vendors) ValidHostHeader and ValidTrailerHeader; the rest of
//     net/http's server logic the loop follows (chunkWriter.writeHeader,
//     finishRequest, readRequest, the chunked reader's limits) is
//     re-written there, each place naming what it follows.

import (
	"net/http"
	"net/url"
	"strings"
)

// joinURLPath joins the backend's path prefix a with the request's path b,
// keeping b's escaping (httputil's joinURLPath).
func joinURLPath(a, b *url.URL) (path, rawpath string) {
	if a.RawPath == "" && b.RawPath == "" {
		return singleJoiningSlash(a.Path, b.Path), ""
	}
	// Same as singleJoiningSlash, but uses EscapedPath to determine
	// whether a slash should be added.
	apath := a.EscapedPath()
	bpath := b.EscapedPath()
	aslash := strings.HasSuffix(apath, "/")
	bslash := strings.HasPrefix(bpath, "/")
	switch {
	case aslash && bslash:
		return a.Path + b.Path[1:], apath + bpath[1:]
	case !aslash && !bslash:
		return a.Path + "/" + b.Path, apath + "/" + bpath
	}
	return a.Path + b.Path, apath + bpath
}

// singleJoiningSlash is httputil's.
func singleJoiningSlash(a, b string) string {
	aslash := strings.HasSuffix(a, "/")
	bslash := strings.HasPrefix(b, "/")
	switch {
	case aslash && bslash:
		return a + b[1:]
	case !aslash && !bslash:
		return a + "/" + b
	}
	return a + b
}

// maxQueryParams is httputil's defaultMaxParams: a query with more
// parameters is re-encoded by ReverseProxy.
const maxQueryParams = 10000

// queryNeedsCleaning reports whether ReverseProxy's cleanQueryParams would
// rewrite the raw query s (it holds a ';' or a malformed %-escape, which
// url.ParseQuery refuses, or too many parameters). The fast path leaves
// such requests to ReverseProxy rather than copy its re-encoding. (With the
// GODEBUG setting urlmaxqueryparams, ReverseProxy re-encodes every query;
// canaryd does not set it.)
func queryNeedsCleaning(s string) bool {
	if strings.Count(s, "&")+1 > maxQueryParams {
		return true
	}
	for i := 0; i < len(s); {
		switch s[i] {
		case ';':
			return true
		case '%':
			if i+2 >= len(s) || !ishex(s[i+1]) || !ishex(s[i+2]) {
				return true
			}
			i += 3
		default:
			i++
		}
	}
	return false
}

func ishex(c byte) bool {
	switch {
	case '0' <= c && c <= '9':
		return true
	case 'a' <= c && c <= 'f':
		return true
	case 'A' <= c && c <= 'F':
		return true
	}
	return false
}

// looksLikeHTTP reports whether a TLS record header looks like a plain
// HTTP request sent to the TLS port (net/http's
// tlsRecordHeaderLooksLikeHTTP).
func looksLikeHTTP(hdr [5]byte) bool {
	switch string(hdr[:]) {
	case "GET /", "HEAD ", "POST ", "PUT /", "OPTIO":
		return true
	}
	return false
}

// hasToken reports whether token appears in v, ASCII case-insensitively,
// bounded by the start or end of v, spaces, tabs or commas (net/http's
// hasToken, which decides Expect: 100-continue and the Connection
// tokens of an answer).
func hasToken(v, token string) bool {
	if len(token) > len(v) || token == "" {
		return false
	}
	if v == token {
		return true
	}
	for sp := 0; sp <= len(v)-len(token); sp++ {
		if b := v[sp]; b != token[0] && b|0x20 != token[0] {
			continue
		}
		if sp > 0 && !isTokenBoundary(v[sp-1]) {
			continue
		}
		if endPos := sp + len(token); endPos != len(v) && !isTokenBoundary(v[endPos]) {
			continue
		}
		if equalFold(v[sp:sp+len(token)], token) {
			return true
		}
	}
	return false
}

func isTokenBoundary(b byte) bool {
	return b == ' ' || b == ',' || b == '\t'
}

// foreachHeaderElement calls fn for each non-empty element of the
// comma-separated list v, trimmed (net/http's).
func foreachHeaderElement(v string, fn func(string)) {
	v = strings.Trim(v, asciiSpace)
	if v == "" {
		return
	}
	if !strings.Contains(v, ",") {
		fn(v)
		return
	}
	for f := range strings.SplitSeq(v, ",") {
		if f = strings.Trim(f, asciiSpace); f != "" {
			fn(f)
		}
	}
}

// asciiSpace is what textproto.TrimString trims.
const asciiSpace = " \t\r\n"

func isASCIISpace(c byte) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\n' }

// bodyAllowedForStatus reports whether an answer with this status may
// have a body (net/http's).
func bodyAllowedForStatus(status int) bool {
	switch {
	case status >= 100 && status <= 199:
		return false
	case status == http.StatusNoContent:
		return false
	case status == http.StatusNotModified:
		return false
	}
	return true
}

// validHostHeader reports whether h is a Host net/http's server accepts
// (httpguts.ValidHostHeader: any byte of the URI host and port grammar).
func validHostHeader(h string) bool {
	for i := 0; i < len(h); i++ {
		if !validHostByte[h[i]] {
			return false
		}
	}
	return true
}

var validHostByte = [256]bool{
	'0': true, '1': true, '2': true, '3': true, '4': true, '5': true, '6': true, '7': true,
	'8': true, '9': true,

	'a': true, 'b': true, 'c': true, 'd': true, 'e': true, 'f': true, 'g': true, 'h': true,
	'i': true, 'j': true, 'k': true, 'l': true, 'm': true, 'n': true, 'o': true, 'p': true,
	'q': true, 'r': true, 's': true, 't': true, 'u': true, 'v': true, 'w': true, 'x': true,
	'y': true, 'z': true,

	'A': true, 'B': true, 'C': true, 'D': true, 'E': true, 'F': true, 'G': true, 'H': true,
	'I': true, 'J': true, 'K': true, 'L': true, 'M': true, 'N': true, 'O': true, 'P': true,
	'Q': true, 'R': true, 'S': true, 'T': true, 'U': true, 'V': true, 'W': true, 'X': true,
	'Y': true, 'Z': true,

	'!':  true, // sub-delims
	'$':  true, // sub-delims
	'%':  true, // pct-encoded (and used in IPv6 zones)
	'&':  true, // sub-delims
	'(':  true, // sub-delims
	')':  true, // sub-delims
	'*':  true, // sub-delims
	'+':  true, // sub-delims
	',':  true, // sub-delims
	'-':  true, // unreserved
	'.':  true, // unreserved
	':':  true, // IPv6address + Host expression's optional port
	';':  true, // sub-delims
	'=':  true, // sub-delims
	'[':  true,
	'\'': true, // sub-delims
	']':  true,
	'_':  true, // unreserved
	'~':  true, // unreserved
}

// validTrailerHeader reports whether the canonical field name may be a
// trailer (httpguts.ValidTrailerHeader, RFC 7230 §4.1.2).
func validTrailerHeader(name string) bool {
	if strings.HasPrefix(name, "If-") {
		return false
	}
	switch name {
	case "Authorization", "Cache-Control", "Connection", "Content-Encoding", "Content-Length",
		"Content-Range", "Content-Type", "Expect", "Host", "Keep-Alive", "Max-Forwards", "Pragma",
		"Proxy-Authenticate", "Proxy-Authorization", "Proxy-Connection", "Range", "Realm", "Te",
		"Trailer", "Transfer-Encoding", "Www-Authenticate":
		return false
	}
	return true
}
