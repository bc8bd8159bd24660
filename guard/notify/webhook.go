package notify

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/canaryd/canaryd/guard"
)

// Format is the shape of a webhook's body. The zero value is FormatJSON.
type Format uint8

// The formats (CANARY_WEBHOOK_FORMAT).
const (
	// FormatJSON: canaryd's event (see the package doc).
	FormatJSON Format = iota
	// FormatSlack: a Slack incoming-webhook message ("text" and "blocks").
	FormatSlack
)

// String is "json" or "slack".
func (f Format) String() string {
	if f == FormatSlack {
		return "slack"
	}
	return "json"
}

// ParseFormat reads CANARY_WEBHOOK_FORMAT.
func ParseFormat(s string) (Format, error) {
	switch s {
	case "json":
		return FormatJSON, nil
	case "slack":
		return FormatSlack, nil
	}
	return FormatJSON, fmt.Errorf("format %q must be json or slack", s)
}

// Defaults for zero Config values.
const (
	DefaultQueueSize      = 1000
	DefaultRetryFor       = 10 * time.Minute
	DefaultFirstBackoff   = 500 * time.Millisecond
	DefaultMaxBackoff     = time.Minute
	DefaultAttemptTimeout = 10 * time.Second
	DefaultDrainTimeout   = 5 * time.Second
)

// maxAnswerBytes bounds what is read of an answer's body.
const maxAnswerBytes = 64 << 10

// Config configures a Webhook. Zero values mean the documented defaults.
type Config struct {
	// URL is where events are POSTed (CANARY_WEBHOOK_URL): http:// or
	// https://. Required.
	URL string
	// Secret signs every body (X-Canaryd-Signature); empty means unsigned.
	// At least MinSecretLen bytes when set.
	Secret []byte
	// Format is the body's shape; the zero value is FormatJSON.
	Format Format
	// Version is canaryd's version, sent in User-Agent ("canaryd/VERSION");
	// "" sends "canaryd".
	Version string
	// QueueSize bounds the events waiting to be delivered; zero means
	// DefaultQueueSize. When full, the oldest waiting event is dropped.
	QueueSize int
	// RetryFor is how long an event is retried after its first attempt;
	// zero means DefaultRetryFor.
	RetryFor time.Duration
	// FirstBackoff and MaxBackoff bound the wait between attempts, which
	// doubles from the first to the maximum; zero means the defaults.
	FirstBackoff, MaxBackoff time.Duration
	// AttemptTimeout bounds one attempt; zero means DefaultAttemptTimeout.
	AttemptTimeout time.Duration
	// DrainTimeout bounds the last attempts at shutdown; zero means
	// DefaultDrainTimeout.
	DrainTimeout time.Duration
	// Client sends the requests; nil means a client of its own. Redirects
	// are never followed.
	Client *http.Client
	// Metrics counts the deliveries; nil means they are not counted.
	Metrics *Metrics
}

// Webhook delivers guard.Notices to an HTTP endpoint: a guard.Notifier.
// Create it with New, run it with Run; Notify is safe for concurrent use.
type Webhook struct {
	cfg    Config
	url    *url.URL
	client *http.Client
	log    zerolog.Logger
	agent  string
	wake   chan struct{}
	secret secret

	// mu protects queue and dropped.
	mu sync.Mutex
	// queue holds the events waiting, oldest first.
	queue []guard.Notice
	// dropped counts events dropped because the queue was full (for the
	// log's rate limit).
	dropped uint64
}

// Validate reports the first problem with c as a sentence.
func (c Config) Validate() error {
	if _, err := ParseURL(c.URL); err != nil {
		return fmt.Errorf("webhook URL: %w", err)
	}
	if err := ValidateSecret(c.Secret); err != nil {
		return fmt.Errorf("webhook secret: %w", err)
	}
	if c.QueueSize < 0 || c.RetryFor < 0 || c.FirstBackoff < 0 || c.MaxBackoff < 0 || c.AttemptTimeout < 0 || c.DrainTimeout < 0 {
		return errors.New("webhook queue size and durations must not be negative")
	}
	return nil
}

// New validates cfg and builds a Webhook.
func New(cfg Config, log zerolog.Logger) (*Webhook, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("notify: %w", err)
	}
	u, _ := ParseURL(cfg.URL)
	if cfg.QueueSize == 0 {
		cfg.QueueSize = DefaultQueueSize
	}
	if cfg.RetryFor == 0 {
		cfg.RetryFor = DefaultRetryFor
	}
	if cfg.FirstBackoff == 0 {
		cfg.FirstBackoff = DefaultFirstBackoff
	}
	if cfg.MaxBackoff == 0 {
		cfg.MaxBackoff = DefaultMaxBackoff
	}
	if cfg.AttemptTimeout == 0 {
		cfg.AttemptTimeout = DefaultAttemptTimeout
	}
	if cfg.DrainTimeout == 0 {
		cfg.DrainTimeout = DefaultDrainTimeout
	}
	w := &Webhook{
		cfg:    cfg,
		url:    u,
		client: noRedirects(cfg.Client),
		log:    log.With().Str("component", "webhook").Str("endpoint", redact(u)).Logger(),
		agent:  userAgent(cfg.Version),
		wake:   make(chan struct{}, 1),
	}
	w.secret.store(cfg.Secret)
	return w, nil
}

// noRedirects is c (or a client of its own) that never follows a redirect:
// a POST is not replayed elsewhere, and a 3xx is the endpoint's answer.
func noRedirects(c *http.Client) *http.Client {
	if c == nil {
		c = &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()}
	} else {
		cc := *c
		c = &cc
	}
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return c
}

func userAgent(version string) string {
	if version == "" {
		return "canaryd"
	}
	return "canaryd/" + version
}

// Notify queues n for delivery and returns at once. When the queue is full
// the oldest waiting event is dropped (counted, logged).
func (w *Webhook) Notify(n guard.Notice) {
	w.mu.Lock()
	var lost *guard.Notice
	if len(w.queue) >= w.cfg.QueueSize {
		first := w.queue[0]
		lost = &first
		copy(w.queue, w.queue[1:])
		w.queue = w.queue[:len(w.queue)-1]
		w.dropped++
	}
	w.queue = append(w.queue, n)
	dropped := w.dropped
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
	if lost != nil {
		w.cfg.Metrics.count(ResultDropped)
		if dropped == 1 || dropped%100 == 0 {
			w.log.Error().Str("id", lost.ID).Str("type", string(lost.Kind)).Uint64("dropped", dropped).Int("queue", w.cfg.QueueSize).
				Msg("webhook queue full: the oldest waiting event was dropped (the endpoint does not keep up)")
		}
	}
}

// Pending is the number of events waiting to be delivered (the one being
// delivered not included).
func (w *Webhook) Pending() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.queue)
}

// pop takes the oldest waiting event.
func (w *Webhook) pop() (guard.Notice, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.queue) == 0 {
		return guard.Notice{}, false
	}
	n := w.queue[0]
	w.queue = w.queue[1:]
	return n, true
}

// pushFront puts back an event whose delivery was cut short by shutdown.
func (w *Webhook) pushFront(n guard.Notice) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.queue = append([]guard.Notice{n}, w.queue...)
}

// Run delivers the queued events in order until ctx ends; then it makes a
// last attempt at those still waiting (within DrainTimeout) and returns
// nil.
func (w *Webhook) Run(ctx context.Context) error {
	for {
		n, ok := w.pop()
		if !ok {
			select {
			case <-ctx.Done():
				w.drain()
				return nil
			case <-w.wake:
				continue
			}
		}
		if !w.deliver(ctx, n) {
			w.pushFront(n)
			w.drain()
			return nil
		}
	}
}

// outcome is what one attempt came to.
type outcome uint8

const (
	delivered outcome = iota
	retry
	rejected
)

// deliver sends n until it is delivered, rejected or expired (true), or ctx
// ends first (false).
func (w *Webhook) deliver(ctx context.Context, n guard.Notice) bool {
	body, err := encode(w.cfg.Format, n)
	if err != nil {
		w.cfg.Metrics.count(ResultRejected)
		w.log.Error().Err(err).Str("id", n.ID).Msg("webhook event cannot be encoded; dropped")
		return true
	}
	first := time.Now()
	backoff := w.cfg.FirstBackoff
	for attempt := 1; ; attempt++ {
		actx, cancel := context.WithTimeout(ctx, w.cfg.AttemptTimeout)
		out, why, after := w.post(actx, n, body)
		cancel()
		switch out {
		case delivered:
			w.cfg.Metrics.count(ResultDelivered)
			ev := w.log.Debug()
			if attempt > 1 {
				ev = w.log.Info()
			}
			ev.Str("id", n.ID).Str("type", string(n.Kind)).Int("attempts", attempt).Msg("webhook event delivered")
			return true
		case rejected:
			w.cfg.Metrics.count(ResultRejected)
			w.log.Error().Str("id", n.ID).Str("type", string(n.Kind)).Int("attempts", attempt).Str("answer", why).
				Msg("webhook event rejected by the endpoint; not retried")
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		wait := backoff
		if after > wait {
			wait = min(after, w.cfg.MaxBackoff)
		}
		if time.Since(first)+wait > w.cfg.RetryFor {
			w.cfg.Metrics.count(ResultExpired)
			w.log.Error().Str("id", n.ID).Str("type", string(n.Kind)).Int("attempts", attempt).Str("answer", why).
				Dur("retried_for", time.Since(first)).Msg("webhook event given up: the endpoint did not accept it in time")
			return true
		}
		w.cfg.Metrics.count(ResultRetried)
		if attempt <= 3 || attempt%10 == 0 {
			w.log.Warn().Str("id", n.ID).Str("type", string(n.Kind)).Int("attempt", attempt).Str("answer", why).
				Dur("retry_in", wait).Msg("webhook attempt failed; retrying")
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return false
		case <-t.C:
		}
		backoff = min(2*backoff, w.cfg.MaxBackoff)
	}
}

// post makes one attempt: its outcome, what the endpoint answered (or why
// it did not) and the Retry-After it asked for (0 if none).
func (w *Webhook) post(ctx context.Context, n guard.Notice, body []byte) (outcome, string, time.Duration) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.url.String(), bytes.NewReader(body))
	if err != nil {
		return rejected, err.Error(), 0
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", w.agent)
	req.Header.Set("X-Canaryd-Event", string(n.Kind))
	req.Header.Set("X-Canaryd-Delivery", n.ID)
	if key := w.secret.load(); len(key) > 0 {
		req.Header.Set(SignatureHeader, Sign(key, body))
	}
	resp, err := w.client.Do(req)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return retry, fmt.Sprintf("no answer within %s", w.cfg.AttemptTimeout), 0
		}
		return retry, plain(err), 0
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, maxAnswerBytes))
	resp.Body.Close()
	switch c := resp.StatusCode; {
	case c >= 200 && c <= 299:
		return delivered, resp.Status, 0
	case c == http.StatusRequestTimeout, c == http.StatusTooEarly, c == http.StatusTooManyRequests, c >= 500:
		return retry, resp.Status, retryAfter(resp.Header.Get("Retry-After"))
	}
	return rejected, resp.Status, 0
}

// retryAfter reads a Retry-After of whole seconds (0 when absent or in
// another form).
func retryAfter(v string) time.Duration {
	s, err := strconv.Atoi(v)
	if err != nil || s < 0 {
		return 0
	}
	return time.Duration(s) * time.Second
}

// drain makes one attempt at each event still waiting, within
// DrainTimeout; those not delivered are dropped.
func (w *Webhook) drain() {
	ctx, cancel := context.WithTimeout(context.Background(), w.cfg.DrainTimeout)
	defer cancel()
	lost := 0
	for {
		n, ok := w.pop()
		if !ok {
			break
		}
		if ctx.Err() == nil {
			if body, err := encode(w.cfg.Format, n); err == nil {
				actx, acancel := context.WithTimeout(ctx, w.cfg.AttemptTimeout)
				out, _, _ := w.post(actx, n, body)
				acancel()
				if out == delivered {
					w.cfg.Metrics.count(ResultDelivered)
					continue
				}
			}
		}
		w.cfg.Metrics.count(ResultDropped)
		lost++
	}
	if lost > 0 {
		w.log.Warn().Int("events", lost).Msg("stopping: webhook events not delivered are dropped")
	}
}

// The results of canary_webhook_deliveries_total.
const (
	ResultDelivered = "delivered"
	ResultRetried   = "retried"
	ResultRejected  = "rejected"
	ResultExpired   = "expired"
	ResultDropped   = "dropped"
)

// Metrics counts webhook deliveries: canary_webhook_deliveries_total{result}.
// A nil *Metrics counts nothing.
type Metrics struct {
	deliveries *prometheus.CounterVec
}

// NewMetrics builds the counter, every result at 0, and registers it with
// reg (nil: not registered). cmd creates it whether or not a webhook is
// configured, so that dashboards always find the series.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "canary_webhook_deliveries_total",
		Help: "Webhook events by result: delivered, retried (an attempt failed), rejected (a final non-2xx answer), expired (given up after retrying), dropped (queue full, or stopped).",
	}, []string{"result"})}
	for _, r := range []string{ResultDelivered, ResultRetried, ResultRejected, ResultExpired, ResultDropped} {
		m.deliveries.WithLabelValues(r)
	}
	if reg != nil {
		if err := reg.Register(m.deliveries); err != nil {
			return nil, fmt.Errorf("register webhook metrics: %w", err)
		}
	}
	return m, nil
}

func (m *Metrics) count(result string) {
	if m != nil {
		m.deliveries.WithLabelValues(result).Inc()
	}
}

// SetSecret replaces the signing secret (a rotated secret file, on SIGHUP):
// every delivery attempt from now on, retries of earlier events included,
// is signed with it. An invalid secret is refused and the old one kept;
// an empty one stops signing.
func (w *Webhook) SetSecret(key []byte) error { return w.secret.store(key) }
