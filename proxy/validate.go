package proxy

import (
	"errors"
	"fmt"
	"github.com/canaryd/canaryd/split"
	"net/url"
	"strings"
	"time"

	"github.com/canaryd/canaryd/internal/rule"
)

// The rules of Config's values, one function a value. Each checks a value
// set explicitly (zero included); Config.Validate applies it to a field
// that is set, a zero field meaning the default. canaryd calls the same
// functions on what its environment says, so a rule is written once, here,
// and an explicit 0 is judged like any other value.

// Bounds of the values with a range.
const (
	minWindow                 = time.Second // slots of window/60 under 17ms measure nothing useful
	minMaxResponseHeaderBytes = 4 << 10     // a head nginx's smallest proxy_buffer_size holds
	maxMaxResponseHeaderBytes = 16 << 20
	minRequestBuffer          = 1 << 10
	maxRequestBuffer          = 64 << 20    // held per request in flight
	minDNSRefresh             = time.Second // every refresh asks the resolver for every name
)

// ValidateBackend checks one backend's URLs (Config.StableURLs or
// CanaryURLs): at least one; each http://, https:// or h2c:// with a host,
// without a query, fragment or credentials; one scheme for all; no URL
// twice (compared as an endpoint is picked: scheme and host case, the
// scheme's default port and trailing slashes do not make another one).
func ValidateBackend(urls []*url.URL) error {
	if len(urls) == 0 {
		return errors.New("is required")
	}
	for i, u := range urls {
		if u == nil {
			return errors.New("has a nil URL")
		}
		if u.Scheme != schemeHTTP && u.Scheme != schemeHTTPS && u.Scheme != schemeH2C {
			return fmt.Errorf("%q must start with http://, https:// or h2c://", u.Redacted())
		}
		if u.Host == "" {
			return fmt.Errorf("%q has no host", u.Redacted())
		}
		if u.RawQuery != "" || u.Fragment != "" || u.User != nil {
			return fmt.Errorf("%q must not carry a query, fragment or credentials", u.Redacted())
		}
		if u.Scheme != urls[0].Scheme {
			return fmt.Errorf("mixes %s:// and %s://: one scheme per backend", urls[0].Scheme, u.Scheme)
		}
		for _, prior := range urls[:i] {
			if urlKey(prior) == urlKey(u) {
				return fmt.Errorf("lists %q twice (as %q)", u.Redacted(), prior.Redacted())
			}
		}
	}
	return nil
}

// ValidateBackendsDiffer checks that the canary shares no URL with stable
// (compared as in ValidateBackend): the canary must be another server or
// path.
func ValidateBackendsDiffer(stable, canary []*url.URL) error {
	for _, cu := range canary {
		for _, su := range stable {
			if cu != nil && su != nil && urlKey(su) == urlKey(cu) {
				return fmt.Errorf("%q is the same backend as stable's %q: the canary must be another server or path", cu.Redacted(), su.Redacted())
			}
		}
	}
	return nil
}

// ValidateWindow checks Config.Window: at least 1s.
func ValidateWindow(d time.Duration) error { return rule.AtLeast(d, minWindow) }

// ValidateResponseHeaderTimeout checks Config.ResponseHeaderTimeout:
// positive.
func ValidateResponseHeaderTimeout(d time.Duration) error { return rule.Positive(d) }

// ValidateMaxConnsPerBackend checks Config.MaxConnsPerBackend: at least 1.
func ValidateMaxConnsPerBackend(n int) error { return rule.AtLeast(n, 1) }

// ValidateMaxResponseHeaderBytes checks Config.MaxResponseHeaderBytes:
// 4096 to 16777216 (16 MiB).
func ValidateMaxResponseHeaderBytes(n int) error {
	return rule.Between(n, minMaxResponseHeaderBytes, maxMaxResponseHeaderBytes)
}

// ValidateRequestBuffer checks Config.RequestBuffer: 1024 to 67108864
// (64 MiB).
func ValidateRequestBuffer(n int) error { return rule.Between(n, minRequestBuffer, maxRequestBuffer) }

// ValidateBodyReadTimeout checks Config.BodyReadTimeout: positive.
func ValidateBodyReadTimeout(d time.Duration) error { return rule.Positive(d) }

// ValidateHealthPath checks Config.HealthPath: empty (no health checks) or
// a path starting with /.
func ValidateHealthPath(p string) error {
	if p != "" && !strings.HasPrefix(p, "/") {
		return fmt.Errorf("%q must start with / (e.g. /healthz)", p)
	}
	return nil
}

// ValidateHealthInterval checks Config.HealthInterval: positive.
func ValidateHealthInterval(d time.Duration) error { return rule.Positive(d) }

// ValidateDNSRefresh checks Config.DNSRefresh: at least 1s.
func ValidateDNSRefresh(d time.Duration) error { return rule.AtLeast(d, minDNSRefresh) }

// ValidateEjectTime checks Config.EjectTime: positive, at most
// MaxEjectTime.
func ValidateEjectTime(d time.Duration) error {
	if d <= 0 || d > MaxEjectTime {
		return fmt.Errorf("%v must be positive and at most %v", d, MaxEjectTime)
	}
	return nil
}

// Validate reports the first missing or malformed field of c, wrapping
// ErrBadConfig.
func (c Config) Validate() error {
	var pools [2][]*url.URL
	for i, b := range []struct {
		name string
		one  *url.URL
		pool []*url.URL
	}{{"stable", c.Stable, c.StableURLs}, {"canary", c.Canary, c.CanaryURLs}} {
		if b.one != nil && len(b.pool) > 0 {
			return fmt.Errorf("%w: the %s backend is either one URL or a pool, not both", ErrBadConfig, b.name)
		}
		pools[i] = backendURLs(b.one, b.pool)
		if err := ValidateBackend(pools[i]); err != nil {
			return fmt.Errorf("%w: the %s backend URL %w", ErrBadConfig, b.name, err)
		}
	}
	if err := ValidateBackendsDiffer(pools[0], pools[1]); err != nil {
		return fmt.Errorf("%w: the stable and canary backend URLs must differ: %w", ErrBadConfig, err)
	}
	for _, f := range []struct {
		name string
		err  error
	}{
		{"window", rule.IfSet(c.Window, ValidateWindow)},
		{"response header timeout", rule.IfSet(c.ResponseHeaderTimeout, ValidateResponseHeaderTimeout)},
		{"max connections per backend", rule.IfSet(c.MaxConnsPerBackend, ValidateMaxConnsPerBackend)},
		{"max response header bytes", rule.IfSet(c.MaxResponseHeaderBytes, ValidateMaxResponseHeaderBytes)},
		{"request buffer", rule.IfSet(c.RequestBuffer, ValidateRequestBuffer)},
		{"body read timeout", rule.IfSet(c.BodyReadTimeout, ValidateBodyReadTimeout)},
		{"health path", rule.IfSet(c.HealthPath, ValidateHealthPath)},
		{"health interval", rule.IfSet(c.HealthInterval, ValidateHealthInterval)},
		{"DNS refresh", rule.IfSet(c.DNSRefresh, ValidateDNSRefresh)},
		{"eject time", rule.IfSet(c.EjectTime, ValidateEjectTime)},
	} {
		if f.err != nil {
			return fmt.Errorf("%w: %s %w", ErrBadConfig, f.name, f.err)
		}
	}
	switch {
	case c.SlowThreshold < 0:
		// The latency objective's rule is the judge's (judge.ValidateP95):
		// here a zero threshold means the default.
		return fmt.Errorf("%w: slow threshold %v must not be negative", ErrBadConfig, c.SlowThreshold)
	case c.LoadBalancer > RoundRobin:
		return fmt.Errorf("%w: unknown load balancer %d", ErrBadConfig, c.LoadBalancer)
	case c.MirrorPercent > split.MaxWeight:
		return fmt.Errorf("%w: mirror percent %s is above 100", ErrBadConfig, split.FormatPercent(c.MirrorPercent))
	case c.MirrorConcurrency < 0:
		return fmt.Errorf("%w: mirror concurrency %d must not be negative", ErrBadConfig, c.MirrorConcurrency)
	}
	for _, m := range c.MirrorMethods {
		if err := checkMirrorMethod(m); err != nil {
			return fmt.Errorf("%w: %v", ErrBadConfig, err)
		}
	}
	return nil
}
