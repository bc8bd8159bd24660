package split

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Sticky users.
//
// With a cookie sticky key and Config.SetCookie, a request without the
// cookie gets a fresh id, sent back in Set-Cookie, and is routed by that id
// already: a user sees one version from the first request on. An id is 128
// bits written as 32 hex digits: 96 random bits, then 32 bits that start
// at a random value and are stepped until the id's bucket falls in the
// stratum the next new user is due (below). That costs about a hundred
// 8-byte hash updates (about a microsecond) once per new user.
//
// Stratified ids: the bucket space is cut into 100 strata of 1% each, and
// the n-th new id is placed in stratum reverse(n mod 100) (its two decimal
// digits swapped: 0, 10, 20, …, 90, 1, 11, …). Any 10 consecutive new
// users then cover each tenth of the space once, and any 100 each
// percent once, so the canary's share of new users is the weight (to the
// percent, not to a binomial spread) at any weight, now and after every
// change: the buckets themselves, hence "raising the weight only moves
// users from stable to canary", are those of any other key.

// DefaultCookieMaxAge is the sticky cookie's lifetime when
// Config.CookieMaxAge is zero.
const DefaultCookieMaxAge = 24 * time.Hour

const (
	strata       = 100
	stratumWidth = Buckets / strata
	// maxMintTries bounds the search for an id in its stratum; each try
	// hits with probability 1/strata, so the bound is never reached in
	// practice ((0.99)^2000 ≈ 2e-9), and an id that misses is still a
	// valid id.
	maxMintTries = 2000
	idLen        = 32 // hex digits of a 128-bit id
)

// Choice is the splitter's decision for one request. The zero value is
// stable with nothing to set.
type Choice struct {
	// Backend is where the request goes.
	Backend Backend
	// SetCookie is the Set-Cookie field value the answer must carry: a
	// fresh sticky id for a request that had none (Config.SetCookie). Empty
	// when there is nothing to set.
	SetCookie string
}

// mint writes a fresh id into id and returns its bucket (see the package
// doc above).
func (s *Splitter) mint(id *[idLen]byte) uint32 {
	var raw [16]byte
	_, _ = rand.Read(raw[:]) // crypto/rand.Read never fails (Go 1.24+)
	n := s.mints.Add(1) - 1
	lo := (uint32(n%10)*10 + uint32(n/10%10)) * stratumWidth
	hex.Encode(id[:], raw[:])
	// The FNV state after the first 24 digits is fixed; only the last 8
	// (the counter) are hashed again per try.
	h := fnvAdd(fnvOffset, id[:24])
	ctr := binary.BigEndian.Uint32(raw[12:])
	var b uint32
	for range maxMintTries {
		var c [4]byte
		binary.BigEndian.PutUint32(c[:], ctr)
		hex.Encode(id[24:], c[:])
		b = bucketOf(fnvAdd(h, id[24:]))
		if b-lo < stratumWidth {
			break
		}
		ctr++
	}
	return b
}

// setCookie returns the Set-Cookie value for a fresh id.
func (s *Splitter) setCookie(id *[idLen]byte, secure bool) string {
	attrs := s.cookieAttrs
	if secure {
		attrs = s.cookieAttrsSecure
	}
	var sb strings.Builder
	sb.Grow(len(s.sticky) + 1 + idLen + len(attrs))
	sb.WriteString(s.sticky)
	sb.WriteByte('=')
	sb.Write(id[:])
	sb.WriteString(attrs)
	return sb.String()
}

// cookieAttributes are the attributes of the sticky cookie: the whole site,
// not readable by scripts, sent on top-level navigations from elsewhere,
// for maxAge (whole seconds).
func cookieAttributes(maxAge time.Duration, secure bool) string {
	a := "; Path=/; Max-Age=" + strconv.FormatInt(int64(maxAge/time.Second), 10) + "; HttpOnly; SameSite=Lax"
	if secure {
		a += "; Secure"
	}
	return a
}

// Choose decides where r goes, and what its answer must carry.
//
// In order: a request without the sticky cookie gets a fresh id (with
// Config.SetCookie); a blocked canary gets nothing; the override header's
// "never" and "always" decide; a request in the cohort (Config.Match) goes
// to the canary; a request with a sticky key (or the fresh id) goes by its
// bucket; the rest by the exact counter.
func (s *Splitter) Choose(r *http.Request) Choice {
	var (
		c     Choice
		key   string
		keyed bool
		fresh bool
		id    [idLen]byte
		b     uint32
	)
	if s.sticky != "" {
		key, keyed = s.key(r)
		if !keyed && s.mintCookie {
			b, fresh = s.mint(&id), true
			c.SetCookie = s.setCookie(&id, s.behindTLS(r))
		}
	}
	if s.blocked.Load() != 0 {
		return c // Stable
	}
	if s.override != "" {
		if v := r.Header[s.override]; len(v) > 0 {
			switch {
			case strings.EqualFold(v[0], "always"):
				c.Backend = Canary
				return c
			case strings.EqualFold(v[0], "never"):
				return c
			}
		}
	}
	if len(s.match) > 0 && s.inCohort(r) {
		c.Backend = Canary
		return c
	}
	w := s.weight.Load()
	switch {
	case keyed:
		c.Backend = ForBucket(Bucket(key), w)
	case fresh:
		c.Backend = ForBucket(b, w)
	default:
		c.Backend = s.next(w)
	}
	return c
}

// FNV-1a, 32 bit.
const (
	fnvOffset = 2166136261
	fnvPrime  = 16777619
)

func fnvAdd[T ~string | ~[]byte](h uint32, s T) uint32 {
	for i := 0; i < len(s); i++ {
		h ^= uint32(s[i])
		h *= fnvPrime
	}
	return h
}

// bucketOf maps an FNV hash onto [0, Buckets).
func bucketOf(h uint32) uint32 {
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
