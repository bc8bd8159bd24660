package h1

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
)

// The fast path's outbound request.
//
// It is the request httputil.ReverseProxy sends with canaryd's Rewrite
// (SetURL to the backend, the client's X-Forwarded-For chain kept and
// appended to, SetXForwarded) over an http.Transport with compression off:
// the backend's path prefix joined the same way, Host the backend's host,
// hop-by-hop fields (and those named in Connection) removed, "Te: trailers"
// kept, X-Forwarded-For appended to the client's chain,
// X-Forwarded-Host/-Proto set, Forwarded removed, no Go User-Agent added,
// and no length: the Transport sends "Content-Length: 0" without a body only
// for POST, PUT and PATCH, which the fast path does not take. Field order
// may differ (the Transport sorts them); FuzzOutboundRequest (package proxy)
// holds the two to the same request line and fields.

// errInvalidRequest is a request that cannot be written as HTTP/1.1 (a
// control character in a field or the target); http.Transport refuses it
// too.
var errInvalidRequest = errors.New("invalid outbound request")

// Target is one backend URL as the fast path sends to it. Create it with
// NewTarget.
type Target struct {
	url  *url.URL
	host string // the Host field: the URL's host, as ReverseProxy's SetURL sends it
	addr string // host:port to dial
}

// NewTarget returns the fast path's target for u, or nil when the fast path
// cannot serve u: not http://, user information, or a host that
// http.Transport would rewrite (IDNA, an IPv6 zone).
func NewTarget(u *url.URL) *Target {
	if u.Scheme != "http" || u.Opaque != "" || u.User != nil {
		return nil
	}
	for i := range len(u.Host) {
		if c := u.Host[i]; c <= ' ' || c >= 0x7f || c == '%' {
			return nil
		}
	}
	port := u.Port()
	if port == "" {
		port = "80"
	}
	return &Target{url: u, host: u.Host, addr: net.JoinHostPort(u.Hostname(), port)}
}

// Addr returns the host:port the target's URL names.
func (t *Target) Addr() string { return t.addr }

// Eligible reports whether r can take the fast path: a bodiless GET, HEAD
// or OPTIONS in origin form, asking for no upgrade or 100-continue, with a
// query ReverseProxy would not re-encode. (Other methods could not be sent
// again safely when a reused connection turns out dead.)
func Eligible(r *http.Request) bool {
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
	default:
		return false
	}
	if r.ContentLength != 0 || len(r.TransferEncoding) != 0 || r.URL.Opaque != "" || r.URL.Host != "" {
		return false
	}
	if _, ok := r.Header["Upgrade"]; ok {
		return false
	}
	if _, ok := r.Header["Expect"]; ok {
		return false
	}
	return !queryNeedsCleaning(r.URL.RawQuery)
}

// skipOutbound reports whether AppendRequest leaves out the inbound field
// k (a header map key): it writes its own Host, User-Agent, Te,
// X-Forwarded-* and length, or none (the hop-by-hop fields, Forwarded).
// Keys match exactly, as ReverseProxy's Header.Del of the same names does.
func skipOutbound(k string) bool {
	switch k {
	case "Host", "User-Agent", "Content-Length", "Forwarded", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto":
		return true
	}
	for _, h := range hopHeaders {
		if k == h {
			return true
		}
	}
	return false
}

// AppendRequest appends the head of the request to send to t for r (which
// Eligible admitted) to b.
func (t *Target) AppendRequest(b []byte, r *http.Request) ([]byte, error) {
	h := r.Header
	for k, vv := range h {
		if !ValidFieldName(k) {
			return b, fmt.Errorf("%w: field name %q", errInvalidRequest, k)
		}
		for _, v := range vv {
			if !ValidFieldValue(v) {
				return b, fmt.Errorf("%w: field %s", errInvalidRequest, k)
			}
		}
	}
	if !ValidFieldValue(r.Host) {
		return b, fmt.Errorf("%w: Host", errInvalidRequest)
	}
	b = append(b, r.Method...)
	b = append(b, ' ')
	start := len(b)
	out := *r.URL
	out.Path, out.RawPath = joinURLPath(t.url, r.URL)
	if t.url.RawQuery == "" || r.URL.RawQuery == "" {
		out.RawQuery = t.url.RawQuery + r.URL.RawQuery
	} else {
		out.RawQuery = t.url.RawQuery + "&" + r.URL.RawQuery
	}
	path := out.EscapedPath()
	if path == "" {
		path = "/"
	}
	b = append(b, path...)
	if out.ForceQuery || out.RawQuery != "" {
		b = append(b, '?')
		b = append(b, out.RawQuery...)
	}
	for _, c := range b[start:] {
		if c <= ' ' || c == 0x7f {
			return b, fmt.Errorf("%w: control character or space in the target", errInvalidRequest)
		}
	}
	b = append(b, " HTTP/1.1\r\nHost: "...)
	b = append(b, t.host...)
	b = append(b, "\r\n"...)
	if ua := h["User-Agent"]; len(ua) > 0 && ua[0] != "" {
		b = appendField(b, "User-Agent", ua[0])
	}
	conn := h["Connection"]
	for k, vv := range h {
		if skipOutbound(k) || len(conn) > 0 && namedIn(conn, k) {
			continue
		}
		for _, v := range vv {
			b = appendField(b, k, v)
		}
	}
	if valuesContain(h["Te"], "trailers") {
		b = append(b, "Te: trailers\r\n"...)
	}
	if clientIP, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		b = append(b, "X-Forwarded-For: "...)
		for _, v := range h["X-Forwarded-For"] {
			b = append(b, v...)
			b = append(b, ", "...)
		}
		b = append(b, clientIP...)
		b = append(b, "\r\n"...)
	}
	b = appendField(b, "X-Forwarded-Host", r.Host)
	if r.TLS == nil {
		b = append(b, "X-Forwarded-Proto: http\r\n\r\n"...)
	} else {
		b = append(b, "X-Forwarded-Proto: https\r\n\r\n"...)
	}
	return b, nil
}

// namedIn reports whether the Connection field values conn name the field
// k, as httputil.ReverseProxy's removal (Header.Del of each token) decides.
func namedIn(conn []string, k string) bool {
	for _, v := range conn {
		for len(v) > 0 {
			var tok string
			tok, v = cutComma(v)
			if tok = trimOWS(tok); tok != "" && canonicalIs(tok, k) {
				return true
			}
		}
	}
	return false
}

// canonicalIs reports whether http.CanonicalHeaderKey(s) == k, without
// allocating: a token is canonicalized (upper case first and after each
// '-', lower case elsewhere); anything else is left as it is.
func canonicalIs(s, k string) bool {
	if len(s) != len(k) {
		return false
	}
	for i := range len(s) {
		if !tchar(s[i]) {
			return s == k
		}
	}
	upper := true
	for i := range len(s) {
		c := s[i]
		if upper {
			c = upperCase(c)
		} else {
			c = lower(c)
		}
		if c != k[i] {
			return false
		}
		upper = c == '-'
	}
	return true
}

func upperCase(c byte) byte {
	if 'a' <= c && c <= 'z' {
		return c - ('a' - 'A')
	}
	return c
}

func appendField(b []byte, k, v string) []byte {
	b = append(b, k...)
	b = append(b, ": "...)
	b = append(b, trimOWS(v)...)
	return append(b, "\r\n"...)
}
