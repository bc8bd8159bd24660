package admin_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/canaryd/canaryd/admin"
	"github.com/canaryd/canaryd/guard"
	"github.com/canaryd/canaryd/guard/judge"
)

// steppedHistory is a history over ctl on ts's clock, every 5s for span.
func steppedHistory(t *testing.T, ctl admin.Checker, clock *fakeClock, span time.Duration) *admin.History {
	t.Helper()
	h, err := admin.NewHistory(ctl, admin.HistoryConfig{Every: 5 * time.Second, Span: span, Now: clock.Now})
	if err != nil {
		t.Fatalf("NewHistory: %v", err)
	}
	return h
}

func TestNewHistoryValidates(t *testing.T) {
	ctl := newFakeController()
	for _, tt := range []struct {
		name string
		cfg  admin.HistoryConfig
		want int // points; -1: an error
	}{
		{"defaults", admin.HistoryConfig{}, 720},
		{"a minute of seconds", admin.HistoryConfig{Every: time.Second, Span: time.Minute}, 60},
		{"negative every", admin.HistoryConfig{Every: -time.Second}, -1},
		{"span below every", admin.HistoryConfig{Every: time.Minute, Span: time.Second}, -1},
		{"too many points", admin.HistoryConfig{Every: time.Millisecond, Span: time.Hour}, -1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			clock := &fakeClock{now: time.Date(2025, 5, 1, 12, 0, 0, 0, time.UTC)}
			tt.cfg.Now = clock.Now
			h, err := admin.NewHistory(ctl, tt.cfg)
			if tt.want < 0 {
				if !errors.Is(err, admin.ErrHistoryConfig) {
					t.Fatalf("NewHistory(%+v) = %v; want ErrHistoryConfig", tt.cfg, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("NewHistory(%+v) = %v", tt.cfg, err)
			}
			// Fill it twice over: it keeps exactly its capacity.
			for range 2 * tt.want {
				clock.Advance(time.Second)
				h.Sample()
			}
			if got := len(h.Since(time.Time{}).Points); got != tt.want {
				t.Errorf("points = %d; want %d", got, tt.want)
			}
		})
	}
	if _, err := admin.NewHistory(nil, admin.HistoryConfig{}); err == nil {
		t.Errorf("NewHistory(nil) = nil error; want one")
	}
}

// TestHistoryRing: the history keeps the newest Span/Every points, oldest
// first, each the guard's view at its time; Since returns only newer ones.
func TestHistoryRing(t *testing.T) {
	ctl := newFakeController()
	n := uint64(0)
	ctl.tick = func(f *fakeController) {
		n++
		f.check.Canary.Requests = n
		f.check.Weight = float64(n % 100)
	}
	clock := &fakeClock{now: time.Date(2025, 5, 1, 12, 0, 0, 0, time.UTC)}
	h := steppedHistory(t, ctl, clock, time.Minute) // 12 points
	if v := h.Since(time.Time{}); len(v.Points) != 0 || v.Window != "" || v.Interval != "5s" || v.Span != "1m0s" {
		t.Fatalf("empty history = %+v", v)
	}
	for range 30 {
		clock.Advance(5 * time.Second)
		h.Sample()
	}
	v := h.Since(time.Time{})
	if len(v.Points) != 12 {
		t.Fatalf("%d points; want 12", len(v.Points))
	}
	for i, p := range v.Points {
		wantN := uint64(19 + i)
		wantAt := time.Date(2025, 5, 1, 12, 0, 0, 0, time.UTC).Add(time.Duration(wantN) * 5 * time.Second)
		if p.Canary.Requests != wantN || !p.Time.Equal(wantAt) || p.Weight != float64(wantN%100) {
			t.Errorf("point %d = {time %v, canary requests %d, weight %v}; want {%v, %d, %v}", i, p.Time, p.Canary.Requests, p.Weight, wantAt, wantN, wantN%100)
		}
		if p.Recommendation != "proceed" || p.State != "progressing" || p.Stable.Requests != 9000 {
			t.Errorf("point %d = %+v; want the check's verdict, state and stable figures", i, p)
		}
	}
	if v.Window != "5m0s" || !v.Now.Equal(clock.Now()) {
		t.Errorf("window %q now %v; want 5m0s and the clock's time", v.Window, v.Now)
	}
	since := v.Points[9].Time
	if got := h.Since(since).Points; len(got) != 2 || !got[0].Time.After(since) {
		t.Errorf("Since(point 9) = %d points; want the 2 after it", len(got))
	}
	if got := h.Since(clock.Now()).Points; len(got) != 0 {
		t.Errorf("Since(now) = %d points; want none", len(got))
	}
}

// TestHistorySampleAllocatesNothing: the memory is fixed once created.
func TestHistorySampleAllocatesNothing(t *testing.T) {
	ctl := newFakeController()
	clock := &fakeClock{now: time.Date(2025, 5, 1, 12, 0, 0, 0, time.UTC)}
	h := steppedHistory(t, ctl, clock, time.Hour)
	if allocs := testing.AllocsPerRun(2000, h.Sample); allocs != 0 {
		t.Errorf("Sample allocates %v times; want 0", allocs)
	}
}

// TestHistoryGateFailures: a gate is failing since the evaluation of the
// first sample that saw it fail, with its sample count then, until it
// passes again.
func TestHistoryGateFailures(t *testing.T) {
	ctl := newFakeController()
	clock := &fakeClock{now: time.Date(2025, 5, 1, 12, 0, 0, 0, time.UTC)}
	h := steppedHistory(t, ctl, clock, time.Hour)
	set := func(verdict judge.GateVerdict, samples uint64) {
		ctl.mu.Lock()
		defer ctl.mu.Unlock()
		ctl.check.Gates = []judge.Gate{
			{Name: "min_requests", Verdict: judge.GatePass, Samples: samples},
			{Name: "error_rate_vs_stable", Verdict: verdict, Samples: samples, Unit: "log_lr"},
		}
		ctl.check.CheckedAt = clock.Now().Add(-time.Second)
	}
	step := func(verdict judge.GateVerdict, samples uint64) []admin.GateFailure {
		clock.Advance(5 * time.Second)
		set(verdict, samples)
		h.Sample()
		return h.Since(clock.Now()).GateFailures
	}
	if got := step(judge.GatePass, 100); len(got) != 0 {
		t.Fatalf("gate failures = %+v; want none", got)
	}
	failedAt := clock.Now().Add(4 * time.Second)
	got := step(judge.GateFail, 140)
	want := []admin.GateFailure{{Name: "error_rate_vs_stable", Since: failedAt, Samples: 140}}
	if len(got) != 1 || got[0] != want[0] {
		t.Fatalf("gate failures = %+v; want %+v", got, want)
	}
	if got := step(judge.GateFail, 300); len(got) != 1 || got[0] != want[0] {
		t.Errorf("still failing: %+v; want the first failure %+v", got, want)
	}
	if got := step(judge.GatePass, 400); len(got) != 0 {
		t.Errorf("passing again: %+v; want none", got)
	}
	if got := step(judge.GateFail, 500); len(got) != 1 || got[0].Samples != 500 {
		t.Errorf("failing again: %+v; want a new failure at 500 samples", got)
	}
}

func TestHistoryRunSamplesAtOnceAndStops(t *testing.T) {
	h, err := admin.NewHistory(newFakeController(), admin.HistoryConfig{Every: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- h.Run(ctx) }()
	deadline := time.Now().Add(10 * time.Second)
	for len(h.Since(time.Time{}).Points) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("Run took no point at start")
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run = %v; want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not stop with its context")
	}
}

// TestHistoryEndpoint: GET /dashboard/history needs a token (any role),
// answers the points after since, and refuses a since that is not a time.
func TestHistoryEndpoint(t *testing.T) {
	ctl := newFakeController()
	clock := &fakeClock{now: time.Date(2025, 5, 1, 12, 0, 0, 0, time.UTC)}
	h := steppedHistory(t, ctl, clock, time.Hour)
	for range 3 {
		clock.Advance(5 * time.Second)
		h.Sample()
	}
	ts := newTestServerWith(t, ctl, admin.LimiterConfig{}, h)

	if rec := ts.do(t, request{path: "/dashboard/history"}); rec.Code != http.StatusUnauthorized {
		t.Errorf("without a token: %d; want 401", rec.Code)
	}
	var all admin.HistoryView
	for _, auth := range [][]string{authed(), readAuthed()} {
		rec := ts.do(t, request{path: "/dashboard/history", auth: auth})
		if rec.Code != http.StatusOK || rec.Header().Get("Cache-Control") != "no-store" {
			t.Fatalf("GET /dashboard/history: %d %v", rec.Code, rec.Header())
		}
		if err := decodeStrict(rec.Body.Bytes(), &all); err != nil {
			t.Fatalf("body %s: %v", rec.Body, err)
		}
		if len(all.Points) != 3 || all.Interval != "5s" || all.Span != "1h0m0s" || all.Window != "5m0s" || all.GateFailures == nil {
			t.Errorf("history = %+v; want 3 points every 5s over 1h", all)
		}
	}
	since := all.Points[0].Time.Format(time.RFC3339Nano)
	rec := ts.do(t, request{path: "/dashboard/history?since=" + url.QueryEscape(since), auth: readAuthed()})
	var newer admin.HistoryView
	if err := json.Unmarshal(rec.Body.Bytes(), &newer); err != nil || len(newer.Points) != 2 {
		t.Errorf("since %s: %d points (%v); want 2", since, len(newer.Points), err)
	}
	for _, bad := range []string{"yesterday", "1700000000", "2025-05-01 12:00:00"} {
		rec := ts.do(t, request{path: "/dashboard/history?since=" + url.QueryEscape(bad), auth: readAuthed()})
		if rec.Code != http.StatusBadRequest || !strings.Contains(errorBody(t, rec), "RFC 3339") {
			t.Errorf("since=%q: %d %s; want 400 naming RFC 3339", bad, rec.Code, rec.Body)
		}
	}
	if rec := ts.do(t, request{method: http.MethodPost, path: "/dashboard/history", auth: authed()}); rec.Code != http.StatusMethodNotAllowed {
		t.Errorf("POST: %d; want 405", rec.Code)
	}

	// Without a history the endpoint answers, with no points.
	bare := newTestServer(t, ctl, admin.LimiterConfig{})
	rec = bare.do(t, request{path: "/dashboard/history", auth: authed()})
	var none admin.HistoryView
	if err := decodeStrict(rec.Body.Bytes(), &none); err != nil || rec.Code != http.StatusOK || none.Points == nil || len(none.Points) != 0 {
		t.Errorf("no history: %d %s (%v); want 200 with no points", rec.Code, rec.Body, err)
	}
}

// The guard is what cmd samples; keep the contracts in step.
var _ admin.Checker = (*guard.Guard)(nil)

// BenchmarkHistory: taking a point, and answering a new tab's GET
// /dashboard/history with a full hour (720 points).
func BenchmarkHistory(b *testing.B) {
	ctl := newFakeController()
	clock := &fakeClock{now: time.Date(2025, 5, 1, 12, 0, 0, 0, time.UTC)}
	h, err := admin.NewHistory(ctl, admin.HistoryConfig{Now: clock.Now})
	if err != nil {
		b.Fatal(err)
	}
	b.Run("Sample", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			clock.Advance(5 * time.Second)
			h.Sample()
		}
	})
	for range 720 {
		clock.Advance(5 * time.Second)
		h.Sample()
	}
	ts := newTestServerWith(b, ctl, admin.LimiterConfig{}, h)
	b.Run("GET hour", func(b *testing.B) {
		b.ReportAllocs()
		var size int
		for b.Loop() {
			rec := ts.do(b, request{path: "/dashboard/history", auth: readAuthed()})
			if rec.Code != http.StatusOK {
				b.Fatalf("%d %s", rec.Code, rec.Body)
			}
			size = rec.Body.Len()
		}
		b.ReportMetric(float64(size), "body-bytes")
	})
}
