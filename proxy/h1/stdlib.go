package h1

// Code adapted from Go's standard library (Go 1.26; BSD-style license,
// Copyright The Go Authors), because it is unexported there:
//   - from net/http/httputil/reverseproxy.go, joinURLPath,
//     singleJoiningSlash and the test of cleanQueryParams: the fast path
//     must rewrite a request exactly as httputil.ReverseProxy's SetURL and
//     Rewrite do (FuzzOutboundRequest, package proxy, holds the two paths to
//     the same output);
//   - from net/http/server.go, tlsRecordHeaderLooksLikeHTTP: TLSListener
//     answers plain HTTP on a TLS port as net/http would.

import (
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
