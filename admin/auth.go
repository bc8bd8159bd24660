package admin

import (
	"context"
	"fmt"
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

// Reasons a request was refused, used as the "reason" label of
// canary_admin_auth_failures_total: the first three are failed
// authentications (401), authForbidden a valid token without the role the
// endpoint needs (403).
const (
	authMissing   = "missing"
	authMalformed = "malformed"
	authInvalid   = "invalid"
	authForbidden = "forbidden"
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

// authMetrics are the refused-request counters and the loaded tokens.
type authMetrics struct {
	failures    *prometheus.CounterVec
	rateLimited prometheus.Counter
	tokens      *prometheus.GaugeVec
}

func newAuthMetrics(reg prometheus.Registerer) (authMetrics, error) {
	m := authMetrics{
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "canary_admin_auth_failures_total",
			Help: "Admin API requests refused, by reason: missing, malformed or invalid token (401), forbidden (403: a valid token without the role the endpoint needs).",
		}, []string{"reason"}),
		rateLimited: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "canary_admin_auth_rate_limited_total",
			Help: "Admin API requests answered 429 because their address failed authentication too often.",
		}),
		tokens: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "canary_admin_tokens",
			Help: "Admin tokens in force, by role (read, operate).",
		}, []string{"role"}),
	}
	for _, r := range []string{authMissing, authMalformed, authInvalid, authForbidden} {
		m.failures.WithLabelValues(r)
	}
	for _, c := range []prometheus.Collector{m.failures, m.rateLimited, m.tokens} {
		if err := reg.Register(c); err != nil {
			return authMetrics{}, err
		}
	}
	return m, nil
}

// setTokens shows t in the tokens gauge.
func (m authMetrics) setTokens(t *Tokens) {
	for _, r := range []Role{RoleRead, RoleOperate} {
		m.tokens.WithLabelValues(r.String()).Set(float64(t.Count(r)))
	}
}

// identity is the token a request authenticated with.
type identity struct {
	name string
	role Role
}

// identityKey is the request context key of the caller's identity.
type identityKey struct{}

// identityOf is the identity requireBearer put in r's context; ok is false
// on a route without authentication.
func identityOf(r *http.Request) (id identity, ok bool) {
	id, ok = r.Context().Value(identityKey{}).(identity)
	return id, ok
}

// whoOf is the caller as the history and the logs name it: the token's
// name and the client's address, "ops-alice (10.0.0.5)".
func whoOf(r *http.Request) string {
	id, _ := identityOf(r)
	return id.name + " (" + clientHost(r) + ")"
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
// only with one of the tokens tokens() returns, and puts the token's name
// and role in the request's context (identityOf). The token is always
// compared (in constant time) first: a correct token is never refused,
// whatever failed before it from the same address, because behind a load
// balancer or on a shared CI runner many clients share one address and one
// client with a stale token must not lock the operators out. Wrong guesses
// drain the address's budget; past it they are answered 429 (with
// Retry-After) instead of 401, and are not logged one by one. Brute force is kept out by the token's length
// (MinTokenLength characters), not by the limiter. Neither the token nor the
// Authorization header is ever logged or echoed.
func requireBearer(tokens func() *Tokens, limiter *failureLimiter, m authMetrics, log zerolog.Logger) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			id, reason := authenticate(tokens(), r.Header.Values("Authorization"))
			if reason == "" {
				next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), identityKey{}, id)))
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

// authenticate checks the Authorization header values against tokens: the
// token's identity and "" when it is one of them, else why not
// (authMissing, authMalformed, authInvalid).
func authenticate(tokens *Tokens, values []string) (identity, string) {
	switch {
	case len(values) == 0:
		return identity{}, authMissing
	case len(values) > 1:
		return identity{}, authMalformed
	}
	token, ok := ParseBearer(values[0])
	if !ok {
		return identity{}, authMalformed
	}
	name, role, ok := tokens.lookup(token)
	if !ok {
		return identity{}, authInvalid
	}
	return identity{name: name, role: role}, ""
}

// requireRole is the authorization middleware, after requireBearer: a
// token whose role does not allow need is answered 403 with a JSON error
// naming the token and the role needed. It costs the address nothing in the
// failed-authentication limiter: the token is valid, so the caller is no
// guesser, and a correct token is never refused for its address's sake.
func requireRole(need Role, m authMetrics, log zerolog.Logger) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			id, ok := identityOf(r)
			if ok && id.role.Allows(need) {
				next.ServeHTTP(w, r)
				return
			}
			m.failures.WithLabelValues(authForbidden).Inc()
			log.Warn().Str("token", id.name).Str("role", id.role.String()).Str("remote", clientHost(r)).
				Str("method", r.Method).Str("path", r.URL.Path).Msg("admin request forbidden: the token's role does not allow it")
			writeError(w, http.StatusForbidden, fmt.Sprintf("token %q has the %s role; %s %s needs the %s role",
				id.name, id.role, r.Method, r.URL.Path, need))
		})
	}
}
