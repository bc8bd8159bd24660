package admin_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/rs/zerolog"

	"github.com/canaryd/canaryd/admin"
	"github.com/canaryd/canaryd/guard"
	"github.com/canaryd/canaryd/guard/integrity"
	"github.com/canaryd/canaryd/guard/judge"
)

// testToken is the operate token of every test server, named
// testTokenName; readToken its read token, named readTokenName.
const (
	testToken     = "s3cret-t0ken-0123456789"
	testTokenName = "ops-alice"
	readToken     = "r3ad-only-t0ken-9876543210"
	readTokenName = "viewer"
)

// testTokens are the tokens of every test server.
func testTokens() []admin.Token {
	return []admin.Token{
		{Name: testTokenName, Role: admin.RoleOperate, Secret: testToken},
		{Name: readTokenName, Role: admin.RoleRead, Secret: readToken},
	}
}

// oneToken is a list of one operate token, named default.
func oneToken(secret string) []admin.Token {
	return []admin.Token{{Name: admin.DefaultTokenName, Role: admin.RoleOperate, Secret: secret}}
}

// call is one command the fake controller received.
type call struct {
	Op      string
	Weight  uint32
	Who     string
	Release string
	Steps   string // guard.FormatSteps of Start's steps
}

// fakeController is a Controller whose answers the test sets and which
// records every command it receives.
type fakeController struct {
	mu       sync.Mutex
	check    guard.Check
	overview guard.Overview
	health   guard.HealthSummary
	report   integrity.Report
	fleet    guard.FleetView
	ready    bool
	reason   string
	err      error // returned by every command
	calls    []call
	// tick, when set, is called before every read so figures can change
	// over time.
	tick func(f *fakeController)
}

func newFakeController() *fakeController {
	at := time.Date(2025, 5, 1, 12, 0, 0, 0, time.UTC)
	gates := []judge.Gate{
		{Name: "min_requests", Value: 1200, Threshold: 100, Unit: "requests", Samples: 1200, Verdict: "pass"},
		{Name: "error_rate", Value: 0.002, Threshold: 0.01, Unit: "ratio", Samples: 1200, Verdict: "pass"},
		{Name: "p95_latency", Value: 180, Threshold: 500, Unit: "ms", Samples: 1200, Verdict: "pass", Detail: "p95 well under the SLO"},
	}
	plan := []guard.StepView{
		{Index: 0, Weight: 5, Observe: "15m0s", Status: "done"},
		{Index: 1, Weight: 25, Observe: "30m0s", Status: "current", StartedAt: at, Remaining: "12m0s"},
		{Index: 2, Weight: 100, Observe: "1h0m0s", Status: "pending"},
	}
	history := []guard.Transition{
		{At: at.Add(-20 * time.Minute), From: 0, To: 5, FromState: "init", ToState: "progressing", Reason: "plan_start", Who: "startup"},
		{At: at, From: 5, To: 25, FromState: "progressing", ToState: "progressing", Reason: "step_complete", Who: "plan"},
	}
	stable := guard.BackendView{Requests: 9000, Errors: 9, ErrorRate: 0.001, P50Ms: 40, P95Ms: 150, P99Ms: 300}
	canary := guard.BackendView{Requests: 1200, Errors: 3, ErrorRate: 0.0025, P50Ms: 45, P95Ms: 180, P99Ms: 350}
	iv := guard.IntegrityView{Status: integrity.StatusVerified, Verified: true, Summary: "3 of 3 files verified"}
	fleet := guard.FleetView{Self: "web-2:8000", Leader: "web-1:8000", Store: "etcd", StoreOK: true, Replicas: []guard.ReplicaView{
		{ID: "web-1:8000", Leader: true, LastReportMs: 310, Requests: 5100, CanaryRequests: 620},
		{ID: "web-2:8000", LastReportMs: 80, Requests: 5100, CanaryRequests: 580},
	}}
	return &fakeController{
		check: guard.Check{
			CanaryOK: true, Recommendation: "proceed", Reasons: []string{"canary within SLO"},
			Weight: 25, State: "progressing", Release: "v1.2.3", Judge: "window", Window: "5m0s",
			SLO:    guard.SLOView{ErrorRate: 0.01, P95Ms: 500, MinRequests: 100, Window: "5m0s"},
			Stable: stable, Canary: canary, Integrity: iv, Gates: gates,
			Step:      &plan[1],
			CheckedAt: at,
			Fleet:     fleet,
		},
		fleet: fleet,
		overview: guard.Overview{
			Weight: 25, State: "progressing", Recommendation: "proceed", Release: "v1.2.3",
			Step: 1, Plan: plan, History: history,
		},
		health: guard.HealthSummary{
			OverallHealth: "healthy", Reasons: []string{}, State: "progressing", Recommendation: "proceed",
			Stable:    guard.BackendHealth{BackendView: stable, Checks: guard.HealthChecks{Enabled: true, Healthy: true, Checks: 60}},
			Canary:    guard.BackendHealth{BackendView: canary, Checks: guard.HealthChecks{Enabled: true, Healthy: true, Checks: 60, Failures: 1, FailureRate: 1.0 / 60}},
			Integrity: iv,
		},
		report: integrity.Report{
			Verified: true, Status: integrity.StatusVerified, Summary: "3 of 3 files verified",
			FilesChecked: 3, FilesTotal: 3, Failures: []integrity.Failure{}, Manifest: "/srv/release/SHA256SUMS",
			CheckedAt: at, Duration: "1.2ms",
		},
		ready: true,
	}
}

func (f *fakeController) read() {
	if f.tick != nil {
		f.tick(f)
	}
}

func (f *fakeController) Check() guard.Check {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.read()
	return f.check
}

func (f *fakeController) Overview() guard.Overview {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.read()
	return f.overview
}

func (f *fakeController) Health() guard.HealthSummary {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.read()
	return f.health
}

func (f *fakeController) Integrity() integrity.Report {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.read()
	return f.report
}

func (f *fakeController) Fleet() guard.FleetView {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.read()
	return f.fleet
}

func (f *fakeController) Ready() (bool, string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.ready, f.reason
}

func (f *fakeController) command(c call) (guard.Overview, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, c)
	if errors.Is(f.err, guard.ErrNotPersisted) {
		// The change is in force: the guard answers the new overview.
		ov := f.overview
		ov.Persisted = false
		return ov, f.err
	}
	if f.err != nil {
		return guard.Overview{}, f.err
	}
	if c.Op == "weight" {
		f.overview.Weight = float64(c.Weight) / 100
		f.overview.State = "paused"
	}
	return f.overview, nil
}

func (f *fakeController) SetWeight(w uint32, who string) (guard.Overview, error) {
	return f.command(call{Op: "weight", Weight: w, Who: who})
}
func (f *fakeController) Promote(who string) (guard.Overview, error) {
	return f.command(call{Op: "promote", Weight: 0, Who: who})
}
func (f *fakeController) Rollback(who string) (guard.Overview, error) {
	return f.command(call{Op: "rollback", Weight: 0, Who: who})
}
func (f *fakeController) Pause(who string) (guard.Overview, error) {
	return f.command(call{Op: "pause", Weight: 0, Who: who})
}
func (f *fakeController) Resume(who string) (guard.Overview, error) {
	return f.command(call{Op: "resume", Weight: 0, Who: who})
}
func (f *fakeController) Reset(who string) (guard.Overview, error) {
	return f.command(call{Op: "reset", Weight: 0, Who: who})
}

func (f *fakeController) Start(release string, steps []guard.Step, who string) (guard.Overview, error) {
	return f.command(call{Op: "start", Who: who, Release: release, Steps: guard.FormatSteps(steps)})
}
func (f *fakeController) Finish(who string) (guard.Overview, error) {
	return f.command(call{Op: "finish", Who: who})
}

func (f *fakeController) Calls() []call {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]call(nil), f.calls...)
}

// syncBuffer is a bytes.Buffer safe for the concurrent writes of a logger.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// fakeClock is a settable clock for the rate limiter.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// testServer is an admin server over a fake controller with its registry and
// captured logs.
type testServer struct {
	ctl     *fakeController
	reg     *prometheus.Registry
	logs    *syncBuffer
	clock   *fakeClock
	handler http.Handler
	srv     *admin.Server
}

func newTestServer(t testing.TB, ctl *fakeController, limit admin.LimiterConfig) *testServer {
	t.Helper()
	return newTestServerWith(t, ctl, limit, nil)
}

// newTestServerWith is newTestServer serving history at /dashboard/history.
func newTestServerWith(t testing.TB, ctl *fakeController, limit admin.LimiterConfig, history *admin.History) *testServer {
	t.Helper()
	if ctl == nil {
		ctl = newFakeController()
	}
	ts := &testServer{
		ctl:   ctl,
		reg:   prometheus.NewRegistry(),
		logs:  &syncBuffer{},
		clock: &fakeClock{now: time.Date(2025, 5, 1, 12, 0, 0, 0, time.UTC)},
	}
	if limit.Now == nil {
		limit.Now = ts.clock.Now
	}
	srv, err := admin.New(admin.Config{Tokens: testTokens(), Version: "1.2.3-test", AuthLimit: limit, History: history},
		ctl, ts.reg, zerolog.New(ts.logs).Level(zerolog.DebugLevel), ts.reg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ts.handler, ts.srv = srv.Handler(), srv
	return ts
}

// request describes one request sent straight to the handler.
type request struct {
	method, path, body string
	remote             string   // RemoteAddr; default 192.0.2.10:4321
	auth               []string // Authorization header values
	header             map[string]string
}

func (ts *testServer) do(t testing.TB, r request) *httptest.ResponseRecorder {
	t.Helper()
	var body io.Reader = http.NoBody
	if r.body != "" {
		body = strings.NewReader(r.body)
	}
	if r.method == "" {
		r.method = http.MethodGet
	}
	req := httptest.NewRequest(r.method, r.path, body)
	req.RemoteAddr = "192.0.2.10:4321"
	if r.remote != "" {
		req.RemoteAddr = r.remote
	}
	for _, a := range r.auth {
		req.Header.Add("Authorization", a)
	}
	for k, v := range r.header {
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	ts.handler.ServeHTTP(rec, req)
	return rec
}

// authed is the Authorization header with the right (operate) token.
func authed() []string { return []string{"Bearer " + testToken} }

// readAuthed is the Authorization header with the read token.
func readAuthed() []string { return []string{"Bearer " + readToken} }

// counterValue reads a counter from reg (0 when absent); labels are name=value
// pairs that must all match.
func counterValue(t testing.TB, reg prometheus.Gatherer, name string, labels ...string) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatalf("Gather: %v", err)
	}
	for _, mf := range families {
		if mf.GetName() != name {
			continue
		}
	metrics:
		for _, m := range mf.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				if !hasLabel(m, labels[i], labels[i+1]) {
					continue metrics
				}
			}
			return m.GetCounter().GetValue()
		}
	}
	return 0
}

func hasLabel(m *dto.Metric, name, value string) bool {
	for _, l := range m.GetLabel() {
		if l.GetName() == name && l.GetValue() == value {
			return true
		}
	}
	return false
}

// errorBody checks that rec carries a JSON error body and returns its message.
func errorBody(t testing.TB, rec *httptest.ResponseRecorder) string {
	t.Helper()
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q; want application/json", ct)
	}
	var e struct {
		Error string `json:"error"`
	}
	if err := decodeStrict(rec.Body.Bytes(), &e); err != nil || e.Error == "" {
		t.Errorf("body %q is not a JSON error: %v", rec.Body.String(), err)
	}
	return e.Error
}

func describe(r request) string {
	return fmt.Sprintf("%s %s body=%q", r.method, r.path, r.body)
}
