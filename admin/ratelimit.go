package admin

import (
	"container/list"
	"math"
	"sync"
	"time"
)

// Defaults of the failed-authentication limiter (see LimiterConfig).
const (
	// DefaultFailureBurst is how many failed attempts an address may make
	// at once.
	DefaultFailureBurst = 10
	// DefaultFailureRate is how many further failed attempts per second an
	// address earns back.
	DefaultFailureRate = 1.0
	// DefaultMaxAddresses bounds the addresses remembered; past it the
	// least recently failed one is forgotten.
	DefaultMaxAddresses = 10000
)

// LimiterConfig configures the failed-authentication limiter. Zero values
// mean the defaults above; Now nil means time.Now.
type LimiterConfig struct {
	Burst        int
	Rate         float64
	MaxAddresses int
	Now          func() time.Time
}

// failureLimiter is a token bucket per client address that only failed
// authentications drain: each address may fail Burst times at once and earns
// back Rate attempts per second. Each wrong guess takes a token under the
// lock, so even concurrent guesses cannot exceed the budget. While its bucket
// holds less than one token, the address's wrong guesses are answered 429; a
// correct token is never refused (see requireBearer). Memory is bounded by
// MaxAddresses; the address whose last failure is oldest is evicted first
// (its bucket is the fullest, so forgetting it costs an attacker the least).
type failureLimiter struct {
	burst float64
	rate  float64
	max   int
	now   func() time.Time

	mu sync.Mutex // protects byHost and order
	// byHost maps an address to its element in order.
	byHost map[string]*list.Element
	// order holds *bucket values, least recently failed first.
	order *list.List
}

type bucket struct {
	host   string
	tokens float64
	at     time.Time // when tokens was last brought up to date
}

func newFailureLimiter(cfg LimiterConfig) *failureLimiter {
	l := &failureLimiter{
		burst:  float64(cfg.Burst),
		rate:   cfg.Rate,
		max:    cfg.MaxAddresses,
		now:    cfg.Now,
		byHost: make(map[string]*list.Element),
		order:  list.New(),
	}
	if cfg.Burst <= 0 {
		l.burst = DefaultFailureBurst
	}
	if cfg.Rate <= 0 || math.IsNaN(cfg.Rate) || math.IsInf(cfg.Rate, 0) {
		l.rate = DefaultFailureRate
	}
	if cfg.MaxAddresses <= 0 {
		l.max = DefaultMaxAddresses
	}
	if l.now == nil {
		l.now = time.Now
	}
	return l
}

// refill brings b up to date at now.
func (l *failureLimiter) refill(b *bucket, now time.Time) {
	if elapsed := now.Sub(b.at).Seconds(); elapsed > 0 {
		b.tokens = math.Min(l.burst, b.tokens+elapsed*l.rate)
	}
	b.at = now
}

// Take spends one attempt of host's budget for a failed authentication.
// When none is left it returns false and how long until one is.
func (l *failureLimiter) Take(host string) (wait time.Duration, ok bool) {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	e, found := l.byHost[host]
	if !found {
		for l.order.Len() >= l.max {
			oldest := l.order.Front()
			delete(l.byHost, oldest.Value.(*bucket).host)
			l.order.Remove(oldest)
		}
		l.byHost[host] = l.order.PushBack(&bucket{host: host, tokens: l.burst - 1, at: now})
		return 0, true
	}
	b := e.Value.(*bucket)
	l.refill(b, now)
	l.order.MoveToBack(e)
	if b.tokens < 1 {
		return time.Duration((1 - b.tokens) / l.rate * float64(time.Second)), false
	}
	b.tokens--
	return 0, true
}

// retryAfterSeconds rounds a wait up to whole seconds, at least one, for the
// Retry-After header.
func retryAfterSeconds(wait time.Duration) int {
	s := int(math.Ceil(wait.Seconds()))
	if s < 1 {
		return 1
	}
	return s
}
