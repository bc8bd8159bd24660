package h1

import (
	"net/http"
	"strings"
)

// hopHeaders are the hop-by-hop fields: they describe one connection, not
// the message, and are never forwarded in either direction (RFC 9110
// §7.6.1). It is httputil.ReverseProxy's list, so both paths drop the same
// fields; "Proxy-Connection" is non-standard but still sent by some clients.
// Fields named in Connection are hop-by-hop too (see removeHopByHop).
var hopHeaders = [...]string{
	"Connection",
	"Proxy-Connection",
	"Keep-Alive",
	"Proxy-Authenticate",
	"Proxy-Authorization",
	"Te",
	"Trailer",
	"Transfer-Encoding",
	"Upgrade",
}

// isHopByHop reports whether name (any case) is one of hopHeaders.
func isHopByHop[T text](name T) bool {
	for _, h := range hopHeaders {
		if equalFold(name, h) {
			return true
		}
	}
	return false
}

// removeHopByHop deletes the hop-by-hop fields of h, and those named in its
// Connection field, as httputil.ReverseProxy does.
func removeHopByHop(h http.Header) {
	for _, v := range h["Connection"] {
		for tok := range strings.SplitSeq(v, ",") {
			if tok = trimOWS(tok); tok != "" {
				h.Del(tok)
			}
		}
	}
	for _, k := range hopHeaders {
		delete(h, k)
	}
}
