package metricgate_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/canaryd/canaryd/guard"
	"github.com/canaryd/canaryd/guard/metricgate"
)

func TestParse(t *testing.T) {
	good := `[
	  {"name": "checkout_error_ratio", "query": "sum(rate(e[2m])) / sum(rate(c[2m]))", "max": 0.02, "for": "2m"},
	  {"name": "queue-depth.p99", "query": " max(q) ", "max": 1000, "min": 0},
	  {"name": "rate", "query": "sum(rate(c[5m]))", "min": 0.5}
	]`
	gates, err := metricgate.Parse([]byte(good))
	if err != nil {
		t.Fatal(err)
	}
	if len(gates) != 3 || gates[0].For != 2*time.Minute || *gates[0].Max != 0.02 || gates[0].Min != nil ||
		gates[1].Query != "max(q)" || *gates[1].Min != 0 || gates[2].Max != nil || gates[2].For != 0 {
		t.Errorf("Parse = %+v", gates)
	}
	for _, tt := range []struct{ in, want string }{
		{``, "not a JSON array"},
		{`{"name": "a"}`, "not a JSON array"},
		{`[]`, "no gates"},
		{`[{"name": "a", "query": "q", "max": 1}] []`, "more than one JSON value"},
		{`[{"name": "a", "query": "q", "max": 1, "labels": {}}]`, `unknown field "labels"`},
		{`[{"query": "q", "max": 1}]`, `gate 1: "name" must be 1 to 64`},
		{`[{"name": "a b", "query": "q", "max": 1}]`, `may hold only letters`},
		{`[{"name": "a", "query": " ", "max": 1}]`, `gate 1 (a): "query" is required`},
		{`[{"name": "a", "query": "q"}]`, `"max" or "min" is required`},
		{`[{"name": "a", "query": "q", "max": 1, "min": 2}]`, `"min" 2 is above "max" 1`},
		{`[{"name": "a", "query": "q", "max": 1, "for": "5"}]`, `"for" "5" is not a duration`},
		{`[{"name": "a", "query": "q", "max": 1, "for": "-1m"}]`, `"for" "-1m" is not a duration`},
		{`[{"name": "a", "query": "q", "max": "1"}]`, "not a JSON array"},
		{`[{"name": "a", "query": "q", "max": 1}, {"name": "a", "query": "r", "min": 1}]`, "gate 2 (a): the name is taken"},
		{"[" + strings.Repeat(`{"name": "a", "query": "q", "max": 1},`, 50) + `{"name": "b", "query": "q", "max": 1}]`, "51 gates; at most 50"},
	} {
		if _, err := metricgate.Parse([]byte(tt.in)); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Parse(%.60q) = %v; want an error containing %q", tt.in, err, tt.want)
		}
	}
}

// fakePrometheus answers /api/v1/query with the body set per query.
type fakePrometheus struct {
	*httptest.Server
	mu      sync.Mutex
	answers map[string]string // query -> JSON body ("" = 500 without JSON; "hang" = no answer)
	seen    []string
}

func newFakePrometheus(t *testing.T) *fakePrometheus {
	p := &fakePrometheus{answers: map[string]string{}}
	p.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != "/prom/api/v1/query" || r.Header.Get("Content-Type") != "application/x-www-form-urlencoded" {
			t.Errorf("request %s %s %v", r.Method, r.URL.Path, r.Header)
		}
		q := r.FormValue("query")
		p.mu.Lock()
		p.seen = append(p.seen, q)
		body, ok := p.answers[q]
		p.mu.Unlock()
		switch {
		case !ok || body == "":
			http.Error(w, "upstream trouble", http.StatusBadGateway)
		case body == "hang":
			<-r.Context().Done()
		case strings.Contains(body, `"error"`):
			w.WriteHeader(http.StatusBadRequest)
			fmt.Fprint(w, body)
		default:
			fmt.Fprint(w, body)
		}
	}))
	t.Cleanup(p.Close)
	return p
}

func (p *fakePrometheus) set(q, body string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.answers[q] = body
}

func vector(values ...string) string {
	var series []string
	for i, v := range values {
		series = append(series, fmt.Sprintf(`{"metric":{"pod":"p%d"},"value":[1714816800.123,%q]}`, i, v))
	}
	return `{"status":"success","data":{"resultType":"vector","result":[` + strings.Join(series, ",") + `]}}`
}

func f(v float64) *float64 { return &v }

// Each kind of answer: a value within or outside the bound (pending, then
// failing after "for"), and every way of having no usable number.
func TestCheck(t *testing.T) {
	p := newFakePrometheus(t)
	gates := []metricgate.Gate{
		{Name: "errors", Query: "errors", Max: f(0.05), For: 2 * time.Second},
		{Name: "rate", Query: "rate", Min: f(5)},
		{Name: "both", Query: "both", Min: f(1), Max: f(2)},
	}
	// A timeout a loaded machine never hits by accident (the hang case
	// waits for it once).
	s, err := metricgate.New(metricgate.Config{URL: p.URL + "/prom", Gates: gates, Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if got := s.Names(); strings.Join(got, ",") != "errors,rate,both" {
		t.Errorf("Names = %v", got)
	}
	t0 := time.Date(2026, 5, 4, 10, 0, 0, 0, time.UTC)
	check := func(at time.Duration) []guard.MetricGate {
		t.Helper()
		return s.Check(context.Background(), t0.Add(at))
	}
	p.set("errors", vector("0.01"))
	p.set("rate", `{"status":"success","data":{"resultType":"scalar","result":[1714816800,"7.5"]}}`)
	p.set("both", vector("1.5"))
	got := check(0)
	for i, want := range []string{"0.01 within its max 0.05", "7.5 within its min 5", "1.5 within [1, 2]"} {
		if got[i].Status != guard.MetricPass || got[i].Detail != want || !got[i].HasValue {
			t.Errorf("gate %s = %s %q; want pass %q", got[i].Name, got[i].Status, got[i].Detail, want)
		}
	}
	if got[0].Value != 0.01 || got[0].Threshold != 0.05 || got[1].Threshold != 5 {
		t.Errorf("values %+v", got)
	}
	p.set("errors", vector("0.31"))
	p.set("rate", vector("2"))
	p.set("both", vector("0.5"))
	got = check(time.Second)
	if got[0].Status != guard.MetricPending || got[0].Detail != "0.31 above its max 0.05 for 0s of its for 2s" {
		t.Errorf("errors outside, for not yet: %s %q", got[0].Status, got[0].Detail)
	}
	if got[1].Status != guard.MetricFail || got[1].Detail != "2 below its min 5" {
		t.Errorf("rate outside without for: %s %q; want fail at once", got[1].Status, got[1].Detail)
	}
	if got[2].Status != guard.MetricFail || got[2].Threshold != 1 {
		t.Errorf("both below its min: %+v", got[2])
	}
	if got = check(2 * time.Second); got[0].Status != guard.MetricPending {
		t.Errorf("errors outside for 1s of 2s: %s", got[0].Status)
	}
	if got = check(3 * time.Second); got[0].Status != guard.MetricFail || got[0].Detail != "0.31 above its max 0.05 for 2s (its for: 2s)" {
		t.Errorf("errors outside for 2s: %s %q; want fail", got[0].Status, got[0].Detail)
	}
	// Restart: the "for" starts again.
	s.Restart()
	if got = check(4 * time.Second); got[0].Status != guard.MetricPending {
		t.Errorf("after Restart: %s; want pending again", got[0].Status)
	}
	// No usable number: unknown, and the time outside starts again.
	for _, tt := range []struct{ body, want string }{
		{vector(), "the query returned no data"},
		{vector("1", "2"), "the query returned 2 series"},
		{vector("NaN"), "the query returned NaN, not a finite number"},
		{vector("+Inf"), "the query returned +Inf"},
		{`{"status":"error","errorType":"bad_data","error":"1:1: parse error: unexpected character"}`, "the query was refused (bad_data): 1:1: parse error"},
		{`{"status":"success","data":{"resultType":"matrix","result":[]}}`, "the query returned a matrix"},
		{"", "but 502 Bad Gateway: is CANARY_PROMETHEUS_URL its base URL?"},
		{"hang", "within 2s; holding"},
	} {
		p.set("errors", tt.body)
		got = check(5 * time.Second)
		if got[0].Status != guard.MetricUnknown || !strings.Contains(got[0].Detail, tt.want) || got[0].HasValue {
			t.Errorf("answer %.40q: %s %q; want unknown with %q", tt.body, got[0].Status, got[0].Detail, tt.want)
		}
	}
	p.set("errors", vector("0.31"))
	if got = check(6 * time.Second); got[0].Status != guard.MetricPending {
		t.Errorf("outside again after an unknown: %s; want pending (the for starts again)", got[0].Status)
	}
	p.Close()
	got = check(7 * time.Second)
	for _, g := range got {
		if g.Status != guard.MetricUnknown || !strings.Contains(g.Detail, "cannot reach Prometheus (http://127.0.0.1:") {
			t.Errorf("Prometheus gone: %s %s %q; want unknown, cannot reach", g.Name, g.Status, g.Detail)
		}
	}
}

// A password in CANARY_PROMETHEUS_URL is sent as basic authentication and
// never shown.
func TestCheckBasicAuth(t *testing.T) {
	var user, pass string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		user, pass, _ = r.BasicAuth()
		http.Error(w, "no", http.StatusUnauthorized)
	}))
	defer srv.Close()
	s, err := metricgate.New(metricgate.Config{URL: strings.Replace(srv.URL, "http://", "http://canaryd:s3cret@", 1), Gates: []metricgate.Gate{{Name: "a", Query: "q", Max: f(1)}}})
	if err != nil {
		t.Fatal(err)
	}
	got := s.Check(context.Background(), time.Now())
	if user != "canaryd" || pass != "s3cret" || strings.Contains(got[0].Detail, "s3cret") || !strings.Contains(got[0].Detail, "canaryd:xxxxx@") {
		t.Errorf("basic auth %q %q; detail %q", user, pass, got[0].Detail)
	}
	for _, bad := range []string{"", "prometheus:9090", "ftp://h", "http://h/?x=1"} {
		if _, err := metricgate.New(metricgate.Config{URL: bad, Gates: []metricgate.Gate{{Name: "a", Query: "q", Max: f(1)}}}); err == nil {
			t.Errorf("New(%q) accepted", bad)
		}
	}
}
