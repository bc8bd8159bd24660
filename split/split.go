// Package split chooses, for one request, whether it goes to the stable or the
// canary backend.
//
// The choice is a pure function of the request and three atomically swapped
// values: the canary weight, the canary block flags and a pick counter. It
// takes no lock and allocates nothing.
//
// # Algorithm
//
// The weight is kept in hundredths of a percent (0..10000, 0.01% steps).
// Without a sticky key the split is exact rather than random: pick number n
// (counted from zero) goes to the canary when floor((n+1)·w/10000) exceeds
// floor(n·w/10000). This is Bresenham's line drawn over the request stream:
// canary picks are spread evenly, any 10,000 consecutive picks at a constant
// weight w contain exactly w canary picks, and any prefix of N picks contains
// floor(N·w/10000) of them. The cost is one atomic add and two
// multiplications, O(1).
//
// With a sticky key (a cookie or a header) the key is hashed (FNV-1a, 32 bit, with
// murmur3's finaliser) into one of 10,000 buckets and bucket b goes to the canary when b < w. The
// same key therefore always lands on the same backend at a given weight, and
// raising the weight only moves keys from stable to canary, never back.
// Requests without the key fall back to the exact counter.
//
// With Config.SetCookie, a request without the sticky cookie gets a fresh
// id in Set-Cookie and is routed by it at once (sticky.go), so each user
// sees one version for the whole rollout.
//
// An override header (for example X-Canary: always|never) forces a backend,
// so an operator can try the canary before it takes any share of traffic.
// A cohort (Config.Match: headers, cookies, path prefixes, client networks;
// cohort.go) goes to the canary whatever the weight, so a plan can start at
// weight 0 and learn from the people who chose to meet the release first.
// The override's "never" beats the cohort.
//
// Blocking the canary (a rollback, or failing health checks) overrides all of
// the above: a blocked canary gets no request, whatever the weight, key,
// cohort or override.
//
// Without a cohort and without SetCookie, Pick costs what it did: one
// length check more, no allocation.
package split

import (
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"net/textproto"
	"strings"
	"sync/atomic"
	"time"
)

// Backend names one of the two upstreams.
type Backend uint8

const (
	// Stable is the current version of the service.
	Stable Backend = 0
	// Canary is the new version being released.
	Canary Backend = 1
)

// String returns "stable" or "canary", the value of the backend label.
func (b Backend) String() string {
	if b == Canary {
		return "canary"
	}
	return "stable"
}

// MaxWeight is 100% in the splitter's unit, hundredths of a percent.
const MaxWeight = 10000

// Buckets is the number of sticky-key buckets; bucket b < weight is canary.
const Buckets = MaxWeight

// Block reasons. A canary with any reason set gets no traffic.
const (
	// BlockRollback is set while the rollout is rolled back.
	BlockRollback uint32 = 1 << iota
	// BlockUnhealthy is set while the canary fails its active health checks.
	BlockUnhealthy
)

// ErrBadConfig is wrapped by every Config validation error.
var ErrBadConfig = errors.New("invalid split configuration")

// Config is the static part of a Splitter. The zero value is valid: no sticky
// key, no override header, no cohort.
type Config struct {
	// StickyKey is "cookie:NAME" or "header:NAME". Empty means no stickiness.
	StickyKey string
	// OverrideHeader names a request header whose value "always" or "never"
	// forces the canary or the stable backend. Empty means no override.
	OverrideHeader string
	// Match is the cohort (ParseMatch): a request matching any condition
	// goes to the canary whatever the weight. Nil means no cohort.
	Match []Condition
	// TrustedProxies are the peers whose X-Forwarded-For (for cidr
	// conditions) and X-Forwarded-Proto (for the cookie's Secure attribute)
	// are believed (ParseTrustedProxies). Nil means none: the peer is the
	// client.
	TrustedProxies []netip.Prefix
	// SetCookie gives a request without the sticky cookie a fresh id in
	// Set-Cookie (Choose), routed by it at once. It needs a cookie
	// StickyKey. False means ids come only from the clients.
	SetCookie bool
	// CookieMaxAge is the Max-Age of that cookie, in whole seconds. Zero
	// means DefaultCookieMaxAge (24h).
	CookieMaxAge time.Duration
}

// Validate reports a malformed field, wrapping ErrBadConfig.
func (c Config) Validate() error {
	if err := ValidateStickyKey(c.StickyKey); err != nil {
		return fmt.Errorf("%w: sticky key %w", ErrBadConfig, err)
	}
	if err := ValidateOverrideHeader(c.OverrideHeader); err != nil {
		return fmt.Errorf("%w: override header %w", ErrBadConfig, err)
	}
	for i, m := range c.Match {
		if m.kind == 0 {
			return fmt.Errorf("%w: cohort condition %d is empty (use ParseMatch)", ErrBadConfig, i+1)
		}
	}
	for _, p := range c.TrustedProxies {
		if !p.IsValid() {
			return fmt.Errorf("%w: a trusted proxy network is invalid", ErrBadConfig)
		}
	}
	if cookie, _, _ := parseSticky(c.StickyKey); c.SetCookie && !cookie {
		return fmt.Errorf("%w: setting the sticky cookie needs a sticky key cookie:NAME (it is %q)", ErrBadConfig, c.StickyKey)
	}
	if c.CookieMaxAge != 0 {
		if err := ValidateCookieMaxAge(c.CookieMaxAge); err != nil {
			return fmt.Errorf("%w: the sticky cookie's max age %w", ErrBadConfig, err)
		}
	}
	return nil
}

// ValidateCookieMaxAge checks Config.CookieMaxAge when set: Max-Age is a
// whole number of seconds, at least one.
func ValidateCookieMaxAge(d time.Duration) error {
	if d < time.Second || d%time.Second != 0 {
		return fmt.Errorf("%v must be a whole number of seconds, at least 1s (e.g. 24h)", d)
	}
	return nil
}

// ValidateStickyKey checks Config.StickyKey: empty, cookie:NAME or
// header:NAME.
func ValidateStickyKey(s string) error {
	_, _, err := parseSticky(s)
	return err
}

// ValidateOverrideHeader checks Config.OverrideHeader: empty or a header
// name.
func ValidateOverrideHeader(h string) error {
	if h != "" && !validToken(h) {
		return fmt.Errorf("%q is not a valid header name", h)
	}
	return nil
}

func parseSticky(s string) (cookie bool, name string, err error) {
	if s == "" {
		return false, "", nil
	}
	kind, name, ok := strings.Cut(s, ":")
	if !ok || name == "" || !validToken(name) {
		return false, "", fmt.Errorf("%q must be cookie:NAME or header:NAME", s)
	}
	switch strings.ToLower(kind) {
	case "cookie":
		return true, name, nil
	case "header":
		return false, textproto.CanonicalMIMEHeaderKey(name), nil
	}
	return false, "", fmt.Errorf("%q must be cookie:NAME or header:NAME", s)
}

// validToken reports whether s is an RFC 9110 token (a valid header or cookie name).
func validToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// Splitter picks a backend per request. It is safe for concurrent use; its
// methods take no lock.
type Splitter struct {
	cookie   bool   // the sticky key is a cookie (else a header)
	sticky   string // cookie name or canonical header name; "" = none
	override string // canonical override header name; "" = none

	match      []Condition    // the cohort; read-only
	needClient bool           // a cidr condition: the client address is needed
	proxies    []netip.Prefix // trusted proxies; read-only

	mintCookie        bool   // Config.SetCookie
	cookieAttrs       string // "; Path=/; Max-Age=…" of the Set-Cookie value
	cookieAttrsSecure string // the same with "; Secure"
	mints             atomic.Uint64

	weight  atomic.Uint32 // hundredths of a percent, 0..MaxWeight
	blocked atomic.Uint32 // Block* bits
	n       Exact         // the exact counter of picks
}

// New returns a Splitter at the given weight (hundredths of a percent; values
// above MaxWeight are clamped).
func New(cfg Config, weight uint32) (*Splitter, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cookie, name, _ := parseSticky(cfg.StickyKey)
	s := &Splitter{cookie: cookie, sticky: name, mintCookie: cfg.SetCookie}
	if cfg.OverrideHeader != "" {
		s.override = textproto.CanonicalMIMEHeaderKey(cfg.OverrideHeader)
	}
	s.match = append([]Condition(nil), cfg.Match...)
	for _, m := range s.match {
		s.needClient = s.needClient || m.kind == ClientCIDR
	}
	s.proxies = append([]netip.Prefix(nil), cfg.TrustedProxies...)
	maxAge := cfg.CookieMaxAge
	if maxAge == 0 {
		maxAge = DefaultCookieMaxAge
	}
	s.cookieAttrs, s.cookieAttrsSecure = cookieAttributes(maxAge, false), cookieAttributes(maxAge, true)
	s.SetWeight(weight)
	return s, nil
}

// SetWeight swaps the canary weight (hundredths of a percent). Every pick that
// starts after SetWeight returns sees the new weight.
func (s *Splitter) SetWeight(w uint32) {
	s.weight.Store(min(w, MaxWeight))
}

// Weight returns the canary weight in hundredths of a percent.
func (s *Splitter) Weight() uint32 { return s.weight.Load() }

// Block sets or clears one of the Block* reasons. While any reason is set, no
// request goes to the canary.
func (s *Splitter) Block(reason uint32, on bool) {
	if on {
		s.blocked.Or(reason)
	} else {
		s.blocked.And(^reason)
	}
}

// Blocked returns the Block* reasons currently set.
func (s *Splitter) Blocked() uint32 { return s.blocked.Load() }

// Pick chooses the backend for r: Choose's backend (a fresh sticky id it
// mints is routed by, and not returned).
func (s *Splitter) Pick(r *http.Request) Backend { return s.Choose(r).Backend }

// next is the exact counter: pick n goes to the canary when the running
// total floor(n·w/MaxWeight) steps up.
func (s *Splitter) next(w uint32) Backend {
	if s.n.Take(w) {
		return Canary
	}
	return Stable
}

// Exact is the exact counter (Bresenham's line over a stream of events): of
// any 10,000 consecutive calls of Take at a constant w, exactly w return
// true, spread evenly. The zero value is ready; it is safe for concurrent
// use and takes no lock.
type Exact struct {
	n atomic.Uint64
}

// Take reports whether this event, at share w (hundredths of a percent),
// is one of those taken.
func (e *Exact) Take(w uint32) bool {
	if w == 0 {
		return false
	}
	if w >= MaxWeight {
		return true
	}
	n := e.n.Add(1) - 1
	// Reduce modulo the period so the products cannot overflow; the
	// sequence is periodic with period MaxWeight.
	n %= MaxWeight
	return (n+1)*uint64(w)/MaxWeight > n*uint64(w)/MaxWeight
}

// key returns the sticky key's value in r, if present and non-empty.
func (s *Splitter) key(r *http.Request) (string, bool) {
	if s.cookie {
		return cookieValue(r.Header["Cookie"], s.sticky)
	}
	v := r.Header[s.sticky]
	if len(v) == 0 || v[0] == "" {
		return "", false
	}
	return v[0], true
}

// cookieValue finds the first non-empty cookie called name in Cookie header
// lines without allocating (http.Request.Cookie parses every cookie).
func cookieValue(lines []string, name string) (string, bool) {
	for _, line := range lines {
		for len(line) > 0 {
			var part string
			part, line, _ = strings.Cut(line, ";")
			part = strings.TrimSpace(part)
			k, v, ok := strings.Cut(part, "=")
			if !ok || k != name {
				continue
			}
			if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
				v = v[1 : len(v)-1]
			}
			if v != "" {
				return v, true
			}
		}
	}
	return "", false
}

// Bucket hashes a sticky key into [0, Buckets) with 32-bit FNV-1a and murmur3's
// finaliser. It never allocates.
func Bucket(key string) uint32 { return bucketOf(fnvAdd(fnvOffset, key)) }

// ForBucket returns the backend of a sticky bucket at weight w: the canary
// owns buckets [0, w).
func ForBucket(bucket, w uint32) Backend {
	if bucket < w {
		return Canary
	}
	return Stable
}

// Percent converts hundredths of a percent back into a percentage.
func Percent(w uint32) float64 { return float64(w) / 100 }

// SetRolledBack blocks (true) or unblocks the canary for a rollback; it is
// the guard's handle on the splitter.
func (s *Splitter) SetRolledBack(on bool) { s.Block(BlockRollback, on) }
