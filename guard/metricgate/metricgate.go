// Package metricgate checks the operator's gates on the application's own
// metrics (CANARY_METRIC_GATES): each gate is a PromQL query evaluated
// against a Prometheus server's HTTP API (CANARY_PROMETHEUS_URL,
// POST /api/v1/query), whose one number must stay at most its max and/or
// at least its min. A Set implements guard.MetricGates; cmd builds it.
//
// # The gates file
//
// A JSON array of gates (no YAML, so no dependency):
//
//	[
//	  {"name": "checkout_error_ratio",
//	   "query": "sum(rate(checkout_errors_total{track=\"canary\"}[2m])) / sum(rate(checkout_total{track=\"canary\"}[2m]))",
//	   "max": 0.02, "for": "2m"},
//	  {"name": "queue_depth", "query": "max(queue_depth{track=\"canary\"})", "max": 1000, "for": "5m"},
//	  {"name": "checkout_rate", "query": "sum(rate(checkout_total{track=\"canary\"}[5m]))", "min": 0.5}
//	]
//
// name: 1 to 64 letters, digits, '_', '-' or '.', unique, and not the name
// of a gate canaryd shows itself (error_rate, integrity, …); query: PromQL
// that returns one number (an instant vector of one series, or a scalar);
// max and/or min: the bound (inclusive: a value equal to it is within);
// for: a Go duration (default 0), how long the value must stay outside the
// bound, at every check, before the gate fails. At most 50 gates. Unknown
// fields are refused.
//
// # What a check concludes
//
//   - pass: the value is within the bound;
//   - pending: outside, for less than "for" (the plan holds);
//   - fail: outside at every check for "for" (the guard rolls back,
//     rollback_metric);
//   - unknown: no usable number: Prometheus unreachable or slow (more
//     than Config.Timeout), an error answer (a bad query), no series,
//     several series, NaN or an infinity. The plan holds; the canary is
//     never rolled back for it, and the time outside the bound starts
//     again afterwards.
package metricgate

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/canaryd/canaryd/guard"
	"github.com/canaryd/canaryd/internal/rule"
)

// Bounds of a gates file.
const (
	// MaxGates bounds the number of gates.
	MaxGates = 50
	// maxNameLen bounds a gate's name.
	maxNameLen = 64
	// DefaultTimeout bounds one query when Config.Timeout is zero.
	DefaultTimeout = 10 * time.Second
	// maxAnswerBytes bounds what is read of Prometheus's answer.
	maxAnswerBytes = 4 << 20
	// minInterval keeps the gates from asking Prometheus more than once a
	// second.
	minInterval = time.Second
)

// Gate is one gate of the file.
type Gate struct {
	Name  string
	Query string
	// Max and Min are the bound; at least one is set.
	Max, Min *float64
	// For is how long the value must stay outside the bound before the gate
	// fails; zero fails at the first check outside it.
	For time.Duration
}

// gateJSON is a gate as the file spells it.
type gateJSON struct {
	Name  string   `json:"name"`
	Query string   `json:"query"`
	Max   *float64 `json:"max"`
	Min   *float64 `json:"min"`
	For   string   `json:"for"`
}

// Load reads and checks the gates file at path.
func Load(path string) ([]Gate, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	gates, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return gates, nil
}

// Parse reads and checks a gates file's content. Errors name the gate by
// its position and name.
func Parse(data []byte) ([]Gate, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var raw []gateJSON
	if err := dec.Decode(&raw); err != nil {
		return nil, fmt.Errorf("not a JSON array of gates ({\"name\", \"query\", \"max\" or \"min\", \"for\"}): %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("more than one JSON value: the file is one array of gates")
	}
	switch {
	case len(raw) == 0:
		return nil, errors.New("no gates: the array is empty")
	case len(raw) > MaxGates:
		return nil, fmt.Errorf("%d gates; at most %d", len(raw), MaxGates)
	}
	seen := map[string]bool{}
	gates := make([]Gate, 0, len(raw))
	for i, r := range raw {
		g, err := r.gate()
		if err != nil {
			name := ""
			if r.Name != "" {
				name = fmt.Sprintf(" (%s)", r.Name)
			}
			return nil, fmt.Errorf("gate %d%s: %w", i+1, name, err)
		}
		if seen[g.Name] {
			return nil, fmt.Errorf("gate %d (%s): the name is taken by an earlier gate", i+1, g.Name)
		}
		seen[g.Name] = true
		gates = append(gates, g)
	}
	return gates, nil
}

// gate checks one gate of the file.
func (r gateJSON) gate() (Gate, error) {
	g := Gate{Name: r.Name, Query: strings.TrimSpace(r.Query), Max: r.Max, Min: r.Min}
	if err := validName(r.Name); err != nil {
		return g, err
	}
	if g.Query == "" {
		return g, errors.New(`"query" is required: PromQL that returns one number`)
	}
	if g.Max == nil && g.Min == nil {
		return g, errors.New(`"max" or "min" is required (or both)`)
	}
	for _, b := range []*float64{g.Max, g.Min} {
		if b != nil && (math.IsNaN(*b) || math.IsInf(*b, 0)) {
			return g, errors.New("a bound must be a finite number")
		}
	}
	if g.Max != nil && g.Min != nil && *g.Min > *g.Max {
		return g, fmt.Errorf(`"min" %g is above "max" %g: no value could pass`, *g.Min, *g.Max)
	}
	if r.For != "" {
		d, err := time.ParseDuration(r.For)
		if err != nil || d < 0 {
			return g, fmt.Errorf(`"for" %q is not a duration such as 2m`, r.For)
		}
		g.For = d
	}
	return g, nil
}

// validName checks a gate's name: 1 to 64 letters, digits, '_', '-', '.'.
func validName(n string) error {
	if n == "" || len(n) > maxNameLen {
		return fmt.Errorf(`"name" must be 1 to %d characters`, maxNameLen)
	}
	for _, c := range n {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.') {
			return fmt.Errorf(`"name" %q may hold only letters, digits, '_', '-' and '.'`, n)
		}
	}
	return nil
}

// Config configures a Set.
type Config struct {
	// URL is the Prometheus server's base URL (CANARY_PROMETHEUS_URL), e.g.
	// http://prometheus:9090 or https://host/prometheus; user info in it is
	// sent as basic authentication. Required.
	URL string
	// Gates are the gates (Load). At least one.
	Gates []Gate
	// Timeout bounds one query; zero means DefaultTimeout. A query that
	// takes longer is unknown.
	Timeout time.Duration
	// Client sends the queries; nil means a client of its own.
	Client *http.Client
}

// Set checks a list of gates against one Prometheus: a guard.MetricGates.
// Its methods are safe for concurrent use.
type Set struct {
	cfg    Config
	query  *url.URL
	shown  string
	client *http.Client

	// mu protects outside.
	mu sync.Mutex
	// outside holds, per gate, since when its value has been outside the
	// bound at every check (absent: within, or unknown).
	outside map[string]time.Time
}

// ValidateURL checks Config.URL: an http:// or https:// base URL with a
// host, without a query or fragment.
func ValidateURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return fmt.Errorf("the Prometheus URL %q must be an http:// or https:// base URL with a host (no query)", redactURL(u))
	}
	return nil
}

// ValidateInterval checks how often a Set is checked (the guard's
// Config.MetricGateInterval): at least 1s, so that Prometheus is not
// asked every gate's query more often than once a second.
func ValidateInterval(d time.Duration) error { return rule.AtLeast(d, minInterval) }

// New validates cfg and builds a Set.
func New(cfg Config) (*Set, error) {
	if err := ValidateURL(cfg.URL); err != nil {
		return nil, fmt.Errorf("metricgate: %w", err)
	}
	u, _ := url.Parse(cfg.URL)
	if len(cfg.Gates) == 0 {
		return nil, errors.New("metricgate: no gates")
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
	}
	client := cfg.Client
	if client == nil {
		client = &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()}
	}
	return &Set{cfg: cfg, query: u.JoinPath("api", "v1", "query"), shown: redactURL(u), client: client, outside: map[string]time.Time{}}, nil
}

// redactURL shows u without its password.
func redactURL(u *url.URL) string {
	if u == nil {
		return "(not a URL)"
	}
	return u.Redacted()
}

// Names lists the gates in the configured order.
func (s *Set) Names() []string {
	names := make([]string, len(s.cfg.Gates))
	for i, g := range s.cfg.Gates {
		names[i] = g.Name
	}
	return names
}

// Restart forgets since when each gate has been outside its bound.
func (s *Set) Restart() {
	s.mu.Lock()
	defer s.mu.Unlock()
	clear(s.outside)
}

// Check queries every gate at once (in parallel, each within
// Config.Timeout and ctx) and returns their states as of now, in the
// configured order.
func (s *Set) Check(ctx context.Context, now time.Time) []guard.MetricGate {
	type answer struct {
		v   float64
		err error
	}
	answers := make([]answer, len(s.cfg.Gates))
	var wg sync.WaitGroup
	for i, g := range s.cfg.Gates {
		wg.Go(func() {
			qctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
			defer cancel()
			v, err := s.value(qctx, g.Query)
			answers[i] = answer{v, err}
		})
	}
	wg.Wait()
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]guard.MetricGate, len(s.cfg.Gates))
	for i, g := range s.cfg.Gates {
		out[i] = s.judge(g, answers[i].v, answers[i].err, now)
	}
	return out
}

// judge concludes one gate from its query's answer (s.mu held).
func (s *Set) judge(g Gate, v float64, err error, now time.Time) guard.MetricGate {
	m := guard.MetricGate{Name: g.Name}
	if g.Max != nil {
		m.Threshold = *g.Max
	} else {
		m.Threshold = *g.Min
	}
	if err != nil {
		delete(s.outside, g.Name)
		m.Status, m.Detail = guard.MetricUnknown, err.Error()+"; holding (never a rollback for want of a value)"
		return m
	}
	m.Value, m.HasValue = v, true
	var broken string
	switch {
	case g.Max != nil && v > *g.Max:
		m.Threshold, broken = *g.Max, fmt.Sprintf("%s above its max %s", num(v), num(*g.Max))
	case g.Min != nil && v < *g.Min:
		m.Threshold, broken = *g.Min, fmt.Sprintf("%s below its min %s", num(v), num(*g.Min))
	}
	if broken == "" {
		delete(s.outside, g.Name)
		m.Status, m.Detail = guard.MetricPass, num(v)+" within "+bound(g)
		return m
	}
	since, ok := s.outside[g.Name]
	if !ok {
		since = now
		s.outside[g.Name] = now
	}
	out := max(now.Sub(since), 0)
	switch {
	case out >= g.For && g.For == 0:
		m.Status, m.Detail = guard.MetricFail, broken
	case out >= g.For:
		m.Status, m.Detail = guard.MetricFail, fmt.Sprintf("%s for %s (its for: %s)", broken, out.Round(time.Millisecond), g.For)
	default:
		m.Status, m.Detail = guard.MetricPending, fmt.Sprintf("%s for %s of its for %s", broken, out.Round(time.Millisecond), g.For)
	}
	return m
}

// num formats a value or bound.
func num(v float64) string { return strconv.FormatFloat(v, 'g', -1, 64) }

// bound describes g's bound.
func bound(g Gate) string {
	switch {
	case g.Max != nil && g.Min != nil:
		return fmt.Sprintf("[%s, %s]", num(*g.Min), num(*g.Max))
	case g.Max != nil:
		return "its max " + num(*g.Max)
	}
	return "its min " + num(*g.Min)
}

// apiAnswer is the envelope of Prometheus's /api/v1/query answer.
type apiAnswer struct {
	Status    string `json:"status"`
	ErrorType string `json:"errorType"`
	Error     string `json:"error"`
	Data      struct {
		ResultType string          `json:"resultType"`
		Result     json.RawMessage `json:"result"`
	} `json:"data"`
}

// value runs query and returns its one number, or why there is none.
func (s *Set) value(ctx context.Context, query string) (float64, error) {
	form := url.Values{"query": {query}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.query.String(), strings.NewReader(form.Encode()))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	resp, err := s.client.Do(req)
	if err != nil {
		var ue *url.Error
		switch {
		case errors.Is(err, context.DeadlineExceeded):
			return 0, fmt.Errorf("no answer from Prometheus (%s) within %s", s.shown, s.cfg.Timeout)
		case errors.As(err, &ue):
			err = ue.Err
		}
		return 0, fmt.Errorf("cannot reach Prometheus (%s): %v", s.shown, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswerBytes+1))
	if err != nil {
		return 0, fmt.Errorf("reading the answer of Prometheus (%s): %v", s.shown, err)
	}
	if len(body) > maxAnswerBytes {
		return 0, fmt.Errorf("the answer of Prometheus is over %d MiB: the query returns too many series (aggregate it to one number)", maxAnswerBytes>>20)
	}
	var a apiAnswer
	if err := json.Unmarshal(body, &a); err != nil || a.Status == "" {
		return 0, fmt.Errorf("not an API answer from Prometheus (%s) but %s: is CANARY_PROMETHEUS_URL its base URL?", s.shown, resp.Status)
	}
	if a.Status != "success" {
		return 0, fmt.Errorf("the query was refused (%s): %s", a.ErrorType, a.Error)
	}
	return decodeResult(a.Data.ResultType, a.Data.Result)
}

// decodeResult takes the one number of an instant query's result.
func decodeResult(typ string, raw json.RawMessage) (float64, error) {
	var sample [2]json.RawMessage
	switch typ {
	case "scalar":
		if err := json.Unmarshal(raw, &sample); err != nil {
			return 0, fmt.Errorf("the scalar answer does not parse: %v", err)
		}
	case "vector":
		var series []struct {
			Metric map[string]string  `json:"metric"`
			Value  [2]json.RawMessage `json:"value"`
		}
		if err := json.Unmarshal(raw, &series); err != nil {
			return 0, fmt.Errorf("the vector answer does not parse: %v", err)
		}
		switch len(series) {
		case 0:
			return 0, errors.New("the query returned no data (no series)")
		case 1:
			sample = series[0].Value
		default:
			return 0, fmt.Errorf("the query returned %d series; a gate needs one number (aggregate it: sum, max, …)", len(series))
		}
	default:
		return 0, fmt.Errorf("the query returned a %s; a gate needs an instant vector of one series or a scalar", typ)
	}
	var text string
	if err := json.Unmarshal(sample[1], &text); err != nil {
		return 0, fmt.Errorf("the sample's value does not parse: %v", err)
	}
	v, err := strconv.ParseFloat(text, 64)
	if err != nil {
		return 0, fmt.Errorf("the sample's value %q is not a number", text)
	}
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return 0, fmt.Errorf("the query returned %s, not a finite number", text)
	}
	return v, nil
}
