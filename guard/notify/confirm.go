package notify

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
	"unicode"

	"github.com/canaryd/canaryd/guard"
	"github.com/canaryd/canaryd/split"
)

// ConfirmConfig configures a Confirmer.
type ConfirmConfig struct {
	// URL is the confirmation endpoint (CANARY_CONFIRM_URL): http:// or
	// https://. Required.
	URL string
	// Secret signs every request like the webhook's events; empty means
	// unsigned. At least MinSecretLen bytes when set.
	Secret []byte
	// Version is canaryd's version, sent in User-Agent.
	Version string
	// Client sends the requests; nil means a client of its own. Redirects
	// are never followed.
	Client *http.Client
}

// Confirmer asks the confirmation endpoint whether the plan may advance: a
// guard.Confirmer. Its methods are safe for concurrent use.
type Confirmer struct {
	cfg    ConfirmConfig
	url    *url.URL
	client *http.Client
	agent  string
	secret secret
}

// NewConfirmer validates cfg and builds a Confirmer.
func NewConfirmer(cfg ConfirmConfig) (*Confirmer, error) {
	u, err := ParseURL(cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("notify: confirmation URL: %w", err)
	}
	if err := ValidateSecret(cfg.Secret); err != nil {
		return nil, fmt.Errorf("notify: confirmation secret: %w", err)
	}
	c := &Confirmer{cfg: cfg, url: u, client: noRedirects(cfg.Client), agent: userAgent(cfg.Version)}
	c.secret.store(cfg.Secret)
	return c, nil
}

// SetSecret replaces the signing secret, as Webhook.SetSecret.
func (c *Confirmer) SetSecret(key []byte) error { return c.secret.store(key) }

// Proposal is the JSON body a Confirmer POSTs: the advance the plan is
// ready to make.
type Proposal struct {
	// ID names this run of the step (release, step, and when its evidence
	// began): the same for every request about it.
	ID   string    `json:"id"`
	Type string    `json:"type"` // always "confirm"
	Time time.Time `json:"time"`
	// Release, Step (0-based) and Steps: where the plan stands.
	Release string `json:"release"`
	Step    int    `json:"step"`
	Steps   int    `json:"steps"`
	// ToStep and ToState are where it would go ("progressing" at the next
	// step, or "complete" at 100%); From and To the weights (percent).
	ToStep  int     `json:"to_step"`
	ToState string  `json:"to_state"`
	From    float64 `json:"from"`
	To      float64 `json:"to"`
	// ReadySince is when the step earned its observation; Observed how
	// long it has been observed healthy (seconds).
	ReadySince time.Time `json:"ready_since"`
	Observed   float64   `json:"observed_seconds"`
	// Replica asks (the one that runs the plan; "" for a single canaryd).
	Replica string `json:"replica,omitempty"`
	// Canary is the canary's window figures (as in /canary_check).
	Canary guard.BackendView `json:"canary"`
}

// ProposalOf is p as a Confirmer sends it.
func ProposalOf(p guard.Proposal) Proposal {
	id := sha256.Sum256([]byte(fmt.Sprintf("%s\x00%d\x00%s", p.Release, p.Step, p.Epoch.UTC().Format(time.RFC3339Nano))))
	return Proposal{
		ID: hex.EncodeToString(id[:16]), Type: "confirm", Time: p.At.UTC(),
		Release: p.Release, Step: p.Step, Steps: p.Steps, ToStep: p.ToStep, ToState: p.ToState.String(),
		From: split.Percent(p.FromWeight), To: split.Percent(p.ToWeight),
		ReadySince: p.ReadySince.UTC(), Observed: p.Observation.Seconds(), Replica: p.Replica, Canary: p.Canary,
	}
}

// maxReasonBytes bounds the part of a refusal's body kept in its reason.
const maxReasonBytes = 200

// Confirm POSTs p and returns nil on a 2xx answer; otherwise an error
// that is the answer's status with the start of its body ("403 Forbidden:
// waiting for QA"), or why there was none ("no answer within 10s").
func (c *Confirmer) Confirm(ctx context.Context, p guard.Proposal) error {
	var budget time.Duration // the time the caller gives it, for the reason
	if dl, ok := ctx.Deadline(); ok {
		budget = time.Until(dl)
	}
	body, err := json.Marshal(ProposalOf(p))
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url.String(), bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", c.agent)
	req.Header.Set("X-Canaryd-Event", "confirm")
	if key := c.secret.load(); len(key) > 0 {
		req.Header.Set(SignatureHeader, Sign(key, body))
	}
	resp, err := c.client.Do(req)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("no answer within %s", budget.Round(100*time.Millisecond))
		}
		return errors.New("cannot reach it: " + plain(err))
	}
	defer resp.Body.Close()
	head, _ := io.ReadAll(io.LimitReader(resp.Body, maxReasonBytes))
	io.Copy(io.Discard, io.LimitReader(resp.Body, maxAnswerBytes))
	if resp.StatusCode >= 200 && resp.StatusCode <= 299 {
		return nil
	}
	msg := resp.Status
	if s := oneLine(head); s != "" {
		msg += ": " + s
	}
	return errors.New(msg)
}

// oneLine is b as one line of printable text (control characters and
// runs of space become one space).
func oneLine(b []byte) string {
	s := strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || r == unicode.ReplacementChar {
			return ' '
		}
		return r
	}, string(b))
	return strings.Join(strings.Fields(s), " ")
}
