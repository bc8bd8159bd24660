package admin

import (
	"crypto/sha256"
	"crypto/subtle"
	"net"
	"net/http"
	"strconv"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
)

// Values of WWW-Authenticate (RFC 6750 §3): a request without credentials
// gets the bare challenge, one with bad credentials also names the error.
const (
	challengeMissing = `Bearer realm="canaryd"`
	challengeInvalid = `Bearer realm="canaryd", error="invalid_token"`
)

// Reasons an authentication failed, used as the "reason" label of
// canary_admin_auth_failures_total.
const (
	authMissing   = "missing"
	authMalformed = "malformed"
	authInvalid   = "invalid"
)

// ParseBearer extracts the token from an Authorization header value of the
// form "Bearer <token>". The scheme is case-insensitive; one or more spaces
// separate it from the token (RFC 6750 §2.1), and the token is one non-empty run of visible
// ASCII characters (no spaces, tabs or control characters). ok is false for
// anything else.
func ParseBearer(header string) (token string, ok bool) {
	scheme, token, found := strings.Cut(header, " ")
	token = strings.TrimLeft(token, " ") // RFC 6750 §2.1: "Bearer" 1*SP b64token
	if !found || !strings.EqualFold(scheme, "Bearer") || token == "" {
		return "", false
	}
	for i := 0; i < len(token); i++ {
		if c := token[i]; c <= ' ' || c >= 0x7f {
			return "", false
		}
	}
	return token, true
}

// tokenChecker compares presented tokens with the configured one in constant
// time. Both sides are hashed first so that neither the comparison nor its
// timing depends on the configured token's length.
type tokenChecker struct {
	want [sha256.Size]byte
}

func newTokenChecker(token string) tokenChecker {
	return tokenChecker{want: sha256.Sum256([]byte(token))}
}

// equal reports whether got is the configured token.
func (c tokenChecker) equal(got string) bool {
	sum := sha256.Sum256([]byte(got))
	return subtle.ConstantTimeCompare(sum[:], c.want[:]) == 1
}

// authMetrics are the failed-authentication counters.
type authMetrics struct {
	failures    *prometheus.CounterVec
	rateLimited prometheus.Counter
}

func newAuthMetrics(reg prometheus.Registerer) (authMetrics, error) {
	m := authMetrics{
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "canary_admin_auth_failures_total",
			Help: "Admin API requests rejected with 401, by reason (missing, malformed, invalid).",
		}, []string{"reason"}),
		rateLimited: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "canary_admin_auth_rate_limited_total",
			Help: "Admin API requests answered 429 because their address failed authentication too often.",
		}),
	}
	for _, r := range []string{authMissing, authMalformed, authInvalid} {
		m.failures.WithLabelValues(r)
	}
	for _, c := range []prometheus.Collector{m.failures, m.rateLimited} {
		if err := reg.Register(c); err != nil {
			return authMetrics{}, err
		}
	}
	return m, nil
}

// clientHost is the host part of r.RemoteAddr: the peer of the TCP
// connection. X-Forwarded-For and friends are deliberately ignored, since
// any client can write them.
func clientHost(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// requireBearer is the authentication middleware: it lets a request through
// only with the right Bearer token. The token is always compared (in constant
// time) first: a correct token is never refused, whatever failed before it
// from the same address, because behind a load balancer or on a shared CI
// runner many clients share one address and one client with a stale token
// must not lock the operators out. Wrong guesses drain the address's budget;
// past it they are answered 429 (with Retry-After) instead of 401, and are
// not logged one by one. Brute force is kept out by the token's length
// (MinTokenLength characters), not by the limiter. Neither the token nor the
// Authorization header is ever logged or echoed.
func requireBearer(check tokenChecker, limiter *failureLimiter, m authMetrics, log zerolog.Logger) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			reason := authReason(check, r.Header.Values("Authorization"))
			if reason == "" {
				next.ServeHTTP(w, r)
				return
			}
			host := clientHost(r)
			if reason != authMissing {
				// A wrong guess: it costs the address one attempt.
				if wait, allowed := limiter.Take(host); !allowed {
					m.rateLimited.Inc()
					log.Debug().Str("remote", host).Str("path", r.URL.Path).Msg("admin request rate limited after failed authentication")
					w.Header().Set("Retry-After", strconv.Itoa(retryAfterSeconds(wait)))
					writeError(w, http.StatusTooManyRequests, "too many failed authentication attempts; retry later")
					return
				}
			}
			m.failures.WithLabelValues(reason).Inc()
			log.Warn().Str("remote", host).Str("method", r.Method).Str("path", r.URL.Path).
				Str("reason", reason).Msg("admin request failed authentication")
			if reason == authMissing {
				w.Header().Set("WWW-Authenticate", challengeMissing)
				writeError(w, http.StatusUnauthorized, "missing bearer token")
				return
			}
			w.Header().Set("WWW-Authenticate", challengeInvalid)
			if reason == authMalformed {
				writeError(w, http.StatusUnauthorized, "malformed Authorization header; want \"Bearer <token>\"")
				return
			}
			writeError(w, http.StatusUnauthorized, "invalid bearer token")
		})
	}
}

// authReason checks the Authorization header values: "" for the right
// token, else why not (authMissing, authMalformed, authInvalid).
func authReason(check tokenChecker, values []string) string {
	switch {
	case len(values) == 0:
		return authMissing
	case len(values) > 1:
		return authMalformed
	}
	token, ok := ParseBearer(values[0])
	switch {
	case !ok:
		return authMalformed
	case !check.equal(token):
		return authInvalid
	}
	return ""
}
