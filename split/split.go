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
// An override header (for example X-Canary: always|never) forces a backend,
// so an operator can try the canary before it takes any share of traffic.
//
// Blocking the canary (a rollback, or failing health checks) overrides all of
// the above: a blocked canary gets no request, whatever the weight, key or
// override.
package split

import (
	"errors"
	"fmt"
	"net/http"
	"net/textproto"
	"strings"
	"sync/atomic"
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
// key and no override header.
type Config struct {
	// StickyKey is "cookie:NAME" or "header:NAME". Empty means no stickiness.
	StickyKey string
	// OverrideHeader names a request header whose value "always" or "never"
	// forces the canary or the stable backend. Empty means no override.
	OverrideHeader string
}

// Validate reports a malformed StickyKey or OverrideHeader, wrapping
// ErrBadConfig.
func (c Config) Validate() error {
	if err := ValidateStickyKey(c.StickyKey); err != nil {
		return fmt.Errorf("%w: sticky key %w", ErrBadConfig, err)
	}
	if err := ValidateOverrideHeader(c.OverrideHeader); err != nil {
		return fmt.Errorf("%w: override header %w", ErrBadConfig, err)
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

	weight  atomic.Uint32 // hundredths of a percent, 0..MaxWeight
	blocked atomic.Uint32 // Block* bits
	n       atomic.Uint64 // picks made by the exact counter
}

// New returns a Splitter at the given weight (hundredths of a percent; values
// above MaxWeight are clamped).
func New(cfg Config, weight uint32) (*Splitter, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cookie, name, _ := parseSticky(cfg.StickyKey)
	s := &Splitter{cookie: cookie, sticky: name}
	if cfg.OverrideHeader != "" {
		s.override = textproto.CanonicalMIMEHeaderKey(cfg.OverrideHeader)
	}
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

// Pick chooses the backend for r.
func (s *Splitter) Pick(r *http.Request) Backend {
	if s.blocked.Load() != 0 {
		return Stable
	}
	if s.override != "" {
		if v := r.Header[s.override]; len(v) > 0 {
			switch {
			case strings.EqualFold(v[0], "always"):
				return Canary
			case strings.EqualFold(v[0], "never"):
				return Stable
			}
		}
	}
	w := s.weight.Load()
	if s.sticky != "" {
		if key, ok := s.key(r); ok {
			return ForBucket(Bucket(key), w)
		}
	}
	return s.next(w)
}

// next is the exact counter: pick n goes to the canary when the running
// total floor(n·w/MaxWeight) steps up.
func (s *Splitter) next(w uint32) Backend {
	if w == 0 {
		return Stable
	}
	if w >= MaxWeight {
		return Canary
	}
	n := s.n.Add(1) - 1
	// Reduce modulo the period so the products cannot overflow; the
	// sequence is periodic with period MaxWeight.
	n %= MaxWeight
	if (n+1)*uint64(w)/MaxWeight > n*uint64(w)/MaxWeight {
		return Canary
	}
	return Stable
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
// finaliser. It never
// allocates.
func Bucket(key string) uint32 {
	const (
		offset = 2166136261
		prime  = 16777619
	)
	h := uint32(offset)
	for i := 0; i < len(key); i++ {
		h ^= uint32(key[i])
		h *= prime
	}
	// FNV's high bits mix poorly for short, similar keys ("user-1",
	// "user-2"); murmur3's finaliser spreads them before multiply-shift
	// maps the hash onto [0, Buckets) without a division.
	h ^= h >> 16
	h *= 0x85ebca6b
	h ^= h >> 13
	h *= 0xc2b2ae35
	h ^= h >> 16
	return uint32((uint64(h) * Buckets) >> 32)
}

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
