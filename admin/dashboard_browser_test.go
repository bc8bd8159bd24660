package admin_test

import (
	"context"
	"fmt"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/canaryd/canaryd/admin"
	"github.com/canaryd/canaryd/guard"
	"github.com/canaryd/canaryd/guard/integrity"
	"github.com/canaryd/canaryd/guard/judge"
	"github.com/canaryd/canaryd/proxy"
	"github.com/canaryd/canaryd/split"
)

// The dashboard page in a real browser (browser_test.go drives it). Two
// tests: TestDashboardInBrowser renders a fake controller's answers (every
// case, exactly), TestDashboardIncident runs an incident against the real
// guard, proxy and splitter with real traffic: steering from the page,
// a rollback by the guard, and the admin server going away and coming back.

// pageURL is the dashboard with token in the fragment (never sent).
func pageURL(base, token string) string {
	return base + "/dashboard#token=" + url.QueryEscape(token)
}

// changingController is a fake whose figures move on every read, as a live
// canary's do.
func changingController() *fakeController {
	ctl := newFakeController()
	ctl.tick = func(f *fakeController) {
		f.check.Canary.Requests += 37
		f.check.Stable.Requests += 331
		f.check.Canary.P95Ms += 3
		f.check.Stable.P95Ms += 1
		f.health.Canary.Requests = f.check.Canary.Requests
	}
	return ctl
}

// evidence is the text of the evidence line of gate under the element
// selector.
func evidence(p *page, selector, gate string) string {
	p.t.Helper()
	return p.text(selector + ` li[data-gate="` + gate + `"]`)
}

func TestDashboardInBrowser(t *testing.T) {
	b := startBrowser(t)

	t.Run("token in fragment", func(t *testing.T) {
		ctl := changingController()
		ctl.overview.History = append(ctl.overview.History, guard.Transition{
			At: ctl.check.CheckedAt.Add(time.Minute), From: 25, To: 25, FromState: "progressing", ToState: "paused",
			Reason: "pause", Who: "127.0.0.1:40000",
		})
		ctl.check.Gates[0].Verdict, ctl.check.Gates[0].Needed = judge.GateHold, 40
		ts := newTestServer(t, ctl, admin.LimiterConfig{})
		srv := httptest.NewServer(ts.handler)
		t.Cleanup(srv.Close)

		p := b.openPage(t, "fragment", pageURL(srv.URL, testToken))
		p.waitFor("the figures", `document.getElementById("weight").textContent === "25 %"`)
		for sel, want := range map[string]string{
			"#recommendation": "proceed", "#state": "progressing", "#overall-health": "healthy",
			"#integrity-status": "VERIFIED", "#integrity-summary": "3 of 3 files verified", "#session": "ops-alice · operate",
			"#release": "release v1.2.3",
		} {
			if got := p.text(sel); got != want {
				t.Errorf("%s = %q; want %q", sel, got, want)
			}
		}
		for id, want := range map[string]int{"gates": 3, "history": 3, "plan": 3, "integrity-failures": 0, "slo-rows": 3, "fleet": 2} {
			if got := value[int](p, `document.getElementById("`+id+`").rows.length`); got != want {
				t.Errorf("#%s has %d rows; want %d", id, got, want)
			}
		}
		html := value[string](p, `document.documentElement.outerHTML`)
		for _, want := range []string{"p95_latency", "step_complete", "127.0.0.1:40000", "progressing → paused", "web-2:8000 (this one)", "etcd store, answering"} {
			if !strings.Contains(html, want) {
				t.Errorf("page lacks %q", want)
			}
		}
		// The objectives in words, each gate's evidence as a sentence.
		for _, c := range []struct{ gate, want string }{
			{"min_requests", "Canary requests: holding: about 40 more requests needed"},
			{"error_rate", "Errors over the window: passing"},
			{"p95_latency", "Slow requests over the window: passing"},
		} {
			if got := evidence(p, "#slo-rows", c.gate); !strings.HasPrefix(got, c.want) {
				t.Errorf("evidence of %s = %q; want it to start %q", c.gate, got, c.want)
			}
		}
		for sel, want := range map[string]string{
			`#slo-rows tr[data-objective="errors"] td:nth-child(1)`:  "Error rate at most 1%",
			`#slo-rows tr[data-objective="latency"] td:nth-child(1)`: "p95 latency at most 500 ms",
			`#slo-rows tr[data-objective="count"] td:nth-child(2)`:   "1,200 canary requests in the window",
		} {
			if got := p.text(sel); !strings.HasPrefix(got, want) {
				t.Errorf("%s = %q; want it to start %q", sel, got, want)
			}
		}
		// The raw statistics are there, folded away, not the headline.
		if p.visible("#gates") {
			t.Errorf("the gates' statistics are shown unfolded; want them behind a <details>")
		}
		if !p.visible("#board") || p.visible("#login") || p.visible("#rollback") || p.visible("#stale") {
			t.Errorf("want the board shown, and neither the form, the rollback nor the stale banner")
		}
		if strings.Contains(html, testToken) || strings.Contains(value[string](p, "location.href"), testToken) {
			t.Errorf("the token appears in the page or its address")
		}
		// It keeps polling: each poll reads the controller 4 times (37
		// canary requests each).
		ctl.mu.Lock()
		base := ctl.check.Canary.Requests
		ctl.mu.Unlock()
		waitUntil(t, "two more polls", func() bool {
			ctl.mu.Lock()
			defer ctl.mu.Unlock()
			return ctl.check.Canary.Requests >= base+2*4*37
		})
		secretsAbsent(t, ts, "", nil)
		p.noProblems()
	})

	t.Run("wrong token", func(t *testing.T) {
		srv := httptest.NewServer(newTestServer(t, nil, admin.LimiterConfig{}).handler)
		t.Cleanup(srv.Close)
		p := b.openPage(t, "wrong", pageURL(srv.URL, "wrong-token-0123456789"))
		p.waitFor("the token to be refused", `document.getElementById("message").textContent.includes("not accepted")`)
		if !p.visible("#token-form") || p.visible("#board") {
			t.Errorf("want the token form again, not the board")
		}
		p.noProblems()
	})

	t.Run("no token", func(t *testing.T) {
		ts := newTestServer(t, nil, admin.LimiterConfig{})
		srv := httptest.NewServer(ts.handler)
		t.Cleanup(srv.Close)
		p := b.openPage(t, "none", srv.URL+"/dashboard")
		p.waitFor("the token form", `document.getElementById("token-form").getClientRects().length > 0`)
		time.Sleep(2 * time.Second) // more than a poll interval
		if got := counterValue(t, ts.reg, "canary_admin_auth_failures_total", "reason", "missing"); got != 0 {
			t.Errorf("the page sent %v requests without a token; want none", got)
		}
		if p.visible("#board") {
			t.Errorf("the board is shown without a token")
		}
		p.noProblems()
	})

	t.Run("rollback snapshot", func(t *testing.T) {
		bad := newFakeController()
		at := time.Date(2025, 5, 1, 12, 2, 11, 0, time.UTC)
		bad.check.CanaryOK, bad.check.Recommendation, bad.check.State = false, "rollback_error_rate", "rolled_back"
		bad.check.Judge = "sequential"
		bad.check.Weight, bad.overview.Weight, bad.overview.State = 0, 0, "rolled_back"
		bad.overview.RollbackRequired, bad.overview.RollbackReason = true, "rollback_error_rate"
		bad.overview.Rollback = &guard.RollbackRecord{
			At: at, Reason: "rollback_error_rate", Who: "guard",
			Canary: guard.BackendView{Requests: 400, Errors: 12, ErrorRate: 0.031, P50Ms: 44, P95Ms: 170, P99Ms: 410},
			Gates: []judge.Gate{
				{Name: "min_requests", Value: 389, Threshold: 100, Unit: "requests", Samples: 389, Verdict: judge.GatePass},
				{Name: "error_rate", Value: 6.3, Threshold: 5.99, Unit: "log_lr", Samples: 389, Verdict: judge.GateFail},
				{Name: "p95_latency", Value: -2, Threshold: 5.99, Unit: "log_lr", Samples: 389, Verdict: judge.GatePass},
				{Name: "p95_latency_vs_stable", Value: 6, Threshold: 5.3, Unit: "log_lr", Samples: 389, Verdict: judge.GateFail},
			},
		}
		bad.health.OverallHealth = "degraded"
		bad.report.Verified, bad.report.Status = false, "FAILED"
		bad.report.Failures = []integrity.Failure{{Path: "bin/app", Problem: "checksum mismatch"}, {Path: "static/<b>x</b>.js", Problem: "missing"}}
		srv := httptest.NewServer(newTestServer(t, bad, admin.LimiterConfig{}).handler)
		t.Cleanup(srv.Close)

		p := b.openPage(t, "snapshot", pageURL(srv.URL, testToken))
		p.waitFor("the rollback", `document.getElementById("rollback").getClientRects().length > 0`)
		for sel, want := range map[string]string{
			"#weight": "0 %", "#recommendation": "rollback_error_rate", "#integrity-status": "FAILED",
			"#rollback-title": "Rolled back at 2025-05-01 12:02:11 by canaryd's guard",
		} {
			if got := p.text(sel); got != want {
				t.Errorf("%s = %q; want %q", sel, got, want)
			}
		}
		for _, c := range []struct{ gate, want string }{
			{"error_rate", "Errors since this step started: failed at 2025-05-01 12:02:11 after 389 requests (observed 3.1% against 1% over the last 5 min)"},
			{"p95_latency_vs_stable", "Slow requests compared with stable: failed at 2025-05-01 12:02:11 after 389 requests (observed p95 170 ms over the last 5 min)"},
			{"p95_latency", "Slow requests since this step started: passing"},
		} {
			if got := evidence(p, "#rollback-gates", c.gate); !strings.HasPrefix(got, c.want) {
				t.Errorf("snapshot evidence of %s = %q; want it to start %q", c.gate, got, c.want)
			}
		}
		if got := p.text("#rollback-figures"); !strings.Contains(got, "400") || !strings.Contains(got, "3.1%") || !strings.Contains(got, "410 ms") {
			t.Errorf("snapshot figures = %q; want the canary's 400 requests, 3.1%% and 410 ms", got)
		}
		if got := value[int](p, `document.getElementById("integrity-failures").rows.length`); got != 2 {
			t.Errorf("#integrity-failures has %d rows; want 2", got)
		}
		// Data is rendered as text, never as markup.
		if html := value[string](p, `document.documentElement.outerHTML`); !strings.Contains(html, "static/&lt;b&gt;x&lt;/b&gt;.js") {
			t.Errorf("the failure path was not escaped")
		}
		s := p.screenshot("dashboard-snapshot", "#rollback")
		if n := s.count(s.rect(t, "#rollback", 0, 1), badRed); n < 200 {
			t.Errorf("%s: the rollback snapshot has %d red pixels; want its red frame (200 or more)", s.file, n)
		}
		p.noProblems()
	})

	t.Run("history on load", func(t *testing.T) {
		ctl := newFakeController()
		start := time.Now().Add(-time.Hour).Truncate(time.Second)
		clock := &fakeClock{now: start}
		h, err := admin.NewHistory(ctl, admin.HistoryConfig{Now: clock.Now})
		if err != nil {
			t.Fatal(err)
		}
		for i := range 720 {
			clock.Advance(5 * time.Second)
			hourOfFigures(ctl, i)
			h.Sample()
		}
		srv := httptest.NewServer(newTestServerWith(t, ctl, admin.LimiterConfig{}, h).handler)
		t.Cleanup(srv.Close)

		p := b.openPage(t, "history", pageURL(srv.URL, testToken))
		p.waitFor("the hour of history", `document.getElementById("charts").dataset.historyPoints === "720"`)
		charts := []string{"#chart-rate", "#chart-errors", "#chart-p50", "#chart-p95", "#chart-p99"}
		s := p.screenshot("dashboard-history", append(charts, "#chart-weight")...)
		for _, c := range charts {
			all, first := s.rect(t, c, 0, 1), s.rect(t, c, 0.04, 0.2)
			if n := s.count(all, stableBlue); n < 100 {
				t.Errorf("%s: %s has %d stable-blue pixels; want a stable line", s.file, c, n)
			}
			if n := s.count(all, canaryOrange); n < 100 {
				t.Errorf("%s: %s has %d canary-orange pixels; want a canary line", s.file, c, n)
			}
			// The hour is drawn at once: the left of the chart, 50 to 60
			// minutes ago, has both lines.
			if n, m := s.count(first, stableBlue), s.count(first, canaryOrange); n < 10 || m < 10 {
				t.Errorf("%s: %s has %d stable and %d canary pixels in its first minutes; want the history drawn", s.file, c, n, m)
			}
		}
		if n := s.count(s.rect(t, "#chart-weight", 0, 1), canaryOrange); n < 100 {
			t.Errorf("%s: the weight chart has %d canary-orange pixels; want the weight line", s.file, n)
		}
		for _, legend := range []string{"#legend-errors", "#legend-p95"} {
			if got := p.text(legend); !strings.Contains(got, "stable") || !strings.Contains(got, "canary") || !strings.Contains(got, "SLO") {
				t.Errorf("%s = %q; want stable, canary and the SLO", legend, got)
			}
		}

		// It keeps polling, for the new points only.
		clock.Advance(5 * time.Second)
		hourOfFigures(ctl, 720)
		h.Sample()
		newest := h.Since(clock.Now().Add(-time.Second)).Points[0].Time.Format(time.RFC3339Nano)
		p.waitFor("the new point", `document.getElementById("charts").dataset.lastPoint === "`+newest+`"`)
		if got := value[string](p, `document.getElementById("charts").dataset.historyPoints`); got != "720" {
			t.Errorf("the page holds %s points; want the last hour's 720", got)
		}
		p.noProblems()
	})

	t.Run("controls by role", func(t *testing.T) {
		ctl := newFakeController()
		srv := httptest.NewServer(newTestServer(t, ctl, admin.LimiterConfig{}).handler)
		t.Cleanup(srv.Close)
		controls := []string{"#ctl-pause", "#ctl-resume", "#ctl-promote", "#ctl-rollback", "#ctl-reset", "#ctl-finish", "#ctl-weight", "#ctl-start", "#weight-input"}

		read := b.openPage(t, "read", pageURL(srv.URL, readToken))
		read.waitFor("the session", `document.getElementById("session").textContent === "viewer · read"`)
		read.waitFor("the figures", `document.getElementById("weight").textContent === "25 %"`)
		for _, c := range controls {
			if read.visible(c) {
				t.Errorf("read token: %s is shown; want no controls", c)
			}
		}
		rs := read.screenshot("dashboard-read", "#board")

		op := b.openPage(t, "operate", pageURL(srv.URL, testToken))
		op.waitFor("the session", `document.getElementById("session").textContent === "ops-alice · operate"`)
		for _, c := range controls {
			if !op.visible(c) {
				t.Errorf("operate token: %s is not shown", c)
			}
		}
		ops := op.screenshot("dashboard-operate", "#controls", "#board")
		if n := ops.count(ops.rect(t, "#controls", 0, 1), badRed); n < 20 {
			t.Errorf("%s: the controls have %d red pixels; want the red Roll back button", ops.file, n)
		}
		if rh, oh := rs.rects["#board"].Dy(), ops.rects["#board"].Dy(); oh <= rh {
			t.Errorf("the board is %d px high for operate and %d for read; want the controls to take room", oh, rh)
		}
		// A cancelled confirmation sends nothing.
		op.click("#ctl-rollback")
		op.waitFor("the confirmation", `document.getElementById("confirm").open`)
		if got := op.text("#confirm-title"); got != "Roll the canary back now?" {
			t.Errorf("confirmation title = %q", got)
		}
		op.click("#confirm-cancel")
		op.waitFor("the confirmation to close", `!document.getElementById("confirm").open`)
		if calls := ctl.Calls(); len(calls) != 0 {
			t.Errorf("after cancel the controller got %+v; want nothing", calls)
		}
		read.noProblems()
		op.noProblems()
	})
}

// hourOfFigures sets ctl's figures for the i-th 5-second point of an hour:
// steady stable, a canary at 5% then 25%, with a bump of errors and latency
// 40 minutes ago.
func hourOfFigures(ctl *fakeController, i int) {
	ctl.mu.Lock()
	defer ctl.mu.Unlock()
	wobble := func(k float64) float64 { return 1 + 0.08*math.Sin(float64(i)/k) }
	c := &ctl.check
	c.Weight, c.Recommendation = 25, "proceed"
	if i < 180 {
		c.Weight, c.Recommendation = 5, "hold"
	}
	bump := 0.0
	if i >= 220 && i < 280 {
		bump = 1
	}
	stableRate, canaryRate := 90*(1-c.Weight/100)*wobble(23), 90*c.Weight/100*wobble(17)
	c.Stable = guard.BackendView{Requests: uint64(stableRate * 300), ErrorRate: 0.0012 * wobble(7),
		P50Ms: 40 * wobble(11), P95Ms: 150 * wobble(13), P99Ms: 310 * wobble(19)}
	c.Canary = guard.BackendView{Requests: uint64(canaryRate * 300), ErrorRate: (0.002 + 0.006*bump) * wobble(5),
		P50Ms: 45 * wobble(9), P95Ms: (180 + 120*bump) * wobble(12), P99Ms: (350 + 200*bump) * wobble(15)}
	c.Stable.Errors = uint64(float64(c.Stable.Requests) * c.Stable.ErrorRate)
	c.Canary.Errors = uint64(float64(c.Canary.Requests) * c.Canary.ErrorRate)
}

// incident is the real thing in one process: two backends, the splitter,
// the proxy with real traffic through it, the guard and the history, and
// an admin server that can be stopped and started again on its address.
type incident struct {
	guard   *guard.Guard
	split   *split.Splitter
	broken  atomic.Bool // the canary answers 500
	handler http.Handler

	mu       sync.Mutex
	addr     string
	adminSrv *http.Server
}

func newIncident(t *testing.T) *incident {
	t.Helper()
	in := &incident{}
	backend := func(name string, slow time.Duration) *httptest.Server {
		n := atomic.Int64{}
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			i := n.Add(1)
			time.Sleep(slow + time.Duration(i%7)*time.Millisecond)
			if name == "canary" && in.broken.Load() {
				http.Error(w, "broken", http.StatusInternalServerError)
				return
			}
			fmt.Fprintln(w, name)
		}))
		t.Cleanup(srv.Close)
		return srv
	}
	stableURL, _ := url.Parse(backend("stable", 2*time.Millisecond).URL)
	canaryURL, _ := url.Parse(backend("canary", 4*time.Millisecond).URL)
	log, reg := zerolog.Nop(), prometheus.NewRegistry()
	var err error
	if in.split, err = split.New(split.Config{}, 1000); err != nil {
		t.Fatal(err)
	}
	px, err := proxy.New(proxy.Config{Stable: stableURL, Canary: canaryURL, Window: time.Minute}, in.split, log, reg)
	if err != nil {
		t.Fatal(err)
	}
	in.guard, err = guard.New(guard.Config{
		Release: "v2.0.0",
		Steps:   []guard.Step{{Weight: 1000, Observe: time.Hour}, {Weight: 5000, Observe: time.Hour}, {Weight: 10000, Observe: time.Hour}},
		SLO:     judge.SLO{ErrorRate: 0.01, P95: 500 * time.Millisecond, MinRequests: 20},
		Window:  time.Minute, EvalInterval: 200 * time.Millisecond,
		StateFile: filepath.Join(t.TempDir(), "state.json"),
	}, px, in.split, log, reg)
	if err != nil {
		t.Fatal(err)
	}
	hist, err := admin.NewHistory(in.guard, admin.HistoryConfig{Every: time.Second, Span: 5 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	adm, err := admin.New(admin.Config{Tokens: testTokens(), Version: "incident", History: hist}, in.guard, reg, log, reg)
	if err != nil {
		t.Fatal(err)
	}
	in.handler = adm.Handler()

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, run := range []func(context.Context) error{in.guard.Run, px.Run, hist.Run} {
		wg.Go(func() { _ = run(ctx) })
	}
	front := httptest.NewServer(px)
	wg.Go(func() { traffic(ctx, front.URL) })
	t.Cleanup(func() {
		cancel()
		wg.Wait()
		front.Close()
		in.stopAdmin()
	})
	in.startAdmin(t, "127.0.0.1:0")
	return in
}

// traffic sends about 60 requests a second through the proxy until ctx
// ends.
func traffic(ctx context.Context, front string) {
	client := &http.Client{Timeout: 10 * time.Second}
	tick := time.NewTicker(16 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			client.CloseIdleConnections()
			return
		case <-tick.C:
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, front+"/", nil)
		if res, err := client.Do(req); err == nil {
			res.Body.Close()
		}
	}
}

// startAdmin serves the admin API on addr (the same address again after a
// stop: the page's URL stays valid).
func (in *incident) startAdmin(t *testing.T, addr string) {
	t.Helper()
	var ln net.Listener
	var err error
	waitUntil(t, "the admin address "+addr+" to be free", func() bool {
		ln, err = net.Listen("tcp", addr)
		return err == nil
	})
	srv := &http.Server{Handler: in.handler, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	in.mu.Lock()
	defer in.mu.Unlock()
	in.addr, in.adminSrv = ln.Addr().String(), srv
}

// stopAdmin closes the admin server and every connection to it.
func (in *incident) stopAdmin() {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.adminSrv != nil {
		_ = in.adminSrv.Close()
		in.adminSrv = nil
	}
}

func (in *incident) url() string {
	in.mu.Lock()
	defer in.mu.Unlock()
	return "http://" + in.addr
}

// confirm clicks a control, checks that it only asked, then confirms. With
// a name, it takes a screenshot of the question.
func confirm(t *testing.T, p *page, in *incident, control, title string, name ...string) {
	t.Helper()
	before := len(in.guard.Overview().History)
	p.click(control)
	p.waitFor("the confirmation of "+control, `document.getElementById("confirm").open`)
	if got := p.text("#confirm-title"); got != title {
		t.Errorf("%s: confirmation title = %q; want %q", control, got, title)
	}
	for _, n := range name {
		s := p.screenshotWindow(n, "#confirm")
		if r := s.rect(t, "#confirm", 0, 1); r.Dx() < 200 || s.count(r, badRed) < 50 {
			t.Errorf("%s: the confirmation is %v with %d red pixels; want a dialog with a red button", s.file, r, s.count(r, badRed))
		}
	}
	if n := len(in.guard.Overview().History); n != before {
		t.Fatalf("%s changed the rollout before the confirmation (%d → %d transitions)", control, before, n)
	}
	p.click("#confirm-ok")
	p.waitFor("the confirmation to close", `!document.getElementById("confirm").open`)
}

// resultIs waits until the page shows the answer to its last command.
func resultIs(p *page, prefix string) {
	p.t.Helper()
	p.waitFor("the answer "+prefix, `document.getElementById("control-result-text").textContent.startsWith(`+strconv.Quote(prefix)+`)`)
}

func TestDashboardIncident(t *testing.T) {
	b := startBrowser(t)
	in := newIncident(t)
	p := b.openPage(t, "incident", pageURL(in.url(), testToken))
	p.waitFor("the rollout", `document.getElementById("state").textContent === "progressing" && document.getElementById("weight").textContent === "10 %"`)
	p.waitFor("the history", `Number(document.getElementById("charts").dataset.historyPoints) >= 2`)

	// Steering: each command asks first, then really changes the rollout,
	// and the page shows the API's answer.
	confirm(t, p, in, "#ctl-pause", "Pause the plan?")
	resultIs(p, "pause: done (200 OK). The rollout is now paused at 10 %")
	if o := in.guard.Overview(); o.State != "paused" || !strings.HasPrefix(o.History[len(o.History)-1].Who, testTokenName+" (127.0.0.1") {
		t.Errorf("after pause: state %s, last who %q; want paused by %s", o.State, o.History[len(o.History)-1].Who, testTokenName)
	}
	p.typeInto("#weight-input", "25")
	confirm(t, p, in, "#ctl-weight", "Set the weight to 25%?")
	resultIs(p, "weight: done (200 OK). The rollout is now paused at 25 %")
	waitUntil(t, "the splitter at 25%", func() bool { return in.split.Weight() == 2500 })
	p.waitFor("the new weight", `document.getElementById("weight").textContent === "25 %"`)
	confirm(t, p, in, "#ctl-resume", "Resume the plan?")
	resultIs(p, "resume: done (200 OK). The rollout is now progressing at ")
	if o := in.guard.Overview(); o.State != "progressing" {
		t.Errorf("after resume: %s; want progressing", o.State)
	}

	confirm(t, p, in, "#ctl-rollback", "Roll the canary back now?", "dashboard-confirm")
	resultIs(p, "rollback: done (200 OK). The rollout is now rolled_back at 0 %")
	if o := in.guard.Overview(); o.State != "rolled_back" || in.split.Blocked() == 0 {
		t.Errorf("after rollback: state %s, splitter blocked %d; want rolled_back and blocked", o.State, in.split.Blocked())
	}
	p.waitFor("the manual rollback", `document.getElementById("rollback-title").textContent.startsWith("Rolled back at ")`)
	if got := p.text("#rollback-summary"); !strings.Contains(got, "rolled back by hand (rollback_manual)") {
		t.Errorf("rollback summary = %q; want rolled back by hand", got)
	}
	// Refused in this state: the API's JSON error is shown, nothing changes.
	confirm(t, p, in, "#ctl-promote", "Promote the canary now?")
	resultIs(p, "promote: refused (409 Conflict): ")
	if got := p.text("#control-result-text"); !strings.Contains(got, "rolled back") {
		t.Errorf("answer = %q; want the API's reason", got)
	}
	if o := in.guard.Overview(); o.State != "rolled_back" {
		t.Errorf("after a refused promote: %s; want rolled_back", o.State)
	}
	confirm(t, p, in, "#ctl-reset", "Reset the rollout?")
	resultIs(p, "reset: done (200 OK). The rollout is now progressing at 10 %")
	p.waitFor("the snapshot to go", `document.getElementById("rollback").getClientRects().length === 0`)

	// The canary breaks: the guard rolls it back, and the page shows the
	// evidence as it stood then, until a reset.
	in.broken.Store(true)
	waitUntil(t, "the guard's rollback", func() bool { return in.guard.Overview().State == "rolled_back" })
	in.broken.Store(false)
	rb := in.guard.Overview().Rollback
	if rb == nil || rb.Reason != "rollback_error_rate" || rb.Who != "guard" {
		t.Fatalf("rollback record = %+v; want the guard's, for the error rate", rb)
	}
	p.waitFor("the guard's rollback", `document.getElementById("rollback-title").textContent.includes("by canaryd's guard")`)
	at := rb.At.UTC().Format("15:04:05")
	if got := p.text("#rollback-title"); !regexp.MustCompile(`^Rolled back at (\d{4}-\d\d-\d\d )?` + at + ` by canaryd's guard$`).MatchString(got) {
		t.Errorf("rollback title = %q; want the guard's rollback at %s", got, at)
	}
	var failed judge.Gate
	for _, g := range rb.Gates {
		if g.Name == "error_rate" {
			failed = g
		}
	}
	if failed.Verdict != judge.GateFail {
		t.Fatalf("the record's error_rate gate = %+v; want failed", failed)
	}
	sentence := regexp.MustCompile(`^Errors since this step started: failed at (\d{4}-\d\d-\d\d )?` + at + ` after ` +
		regexp.QuoteMeta(humanInt(failed.Samples)) + ` requests \(observed ([0-9.]+)% against 1% over the last 1 min\)`)
	got := evidence(p, "#rollback-gates", "error_rate")
	m := sentence.FindStringSubmatch(got)
	if m == nil {
		t.Fatalf("the snapshot's error_rate evidence = %q; want it to match %s", got, sentence)
	}
	// The page rounds to 3 significant digits or fewer.
	if observed, _ := strconv.ParseFloat(m[2], 64); math.Abs(observed-rb.Canary.ErrorRate*100) > 0.05 {
		t.Errorf("observed %v%%; want the record's %.3f%%", observed, rb.Canary.ErrorRate*100)
	}
	// The objectives now tell the same story, at the same time.
	if got := evidence(p, "#slo-rows", "error_rate"); !strings.Contains(got, "failed at ") || !strings.Contains(got, at+" after ") {
		t.Errorf("the objectives' error_rate evidence = %q; want it failed at the rollback's %s", got, at)
	}
	p.waitFor("the rollback on the charts", `document.getElementById("charts").dataset.lastPoint > "`+rb.At.UTC().Format(time.RFC3339)+`"`)
	s := p.screenshot("dashboard-rollback", "#rollback", "#charts", "#chart-errors")
	if n := s.count(s.rect(t, "#rollback", 0, 1), badRed); n < 200 {
		t.Errorf("%s: the snapshot has %d red pixels; want its red frame", s.file, n)
	}
	if n := s.count(s.rect(t, "#chart-errors", 0, 1), badRed); n < 20 {
		t.Errorf("%s: the error chart has %d red pixels; want the rollback marked", s.file, n)
	}
	if n := s.colourful(s.rect(t, "#charts", 0, 1)); n < 500 {
		t.Errorf("%s: the charts have %d coloured pixels; want lines", s.file, n)
	}

	// canaryd goes away: the page greys out and says since when; it comes
	// back by itself.
	in.stopAdmin()
	p.waitFor("the stale state", `document.body.classList.contains("stale") && document.getElementById("stale").getClientRects().length > 0`)
	banner := p.text("#stale")
	if !regexp.MustCompile(`^Stale: no answer from canaryd since (\d{4}-\d\d-\d\d )?\d\d:\d\d:\d\d \(\d+ s ago\)\. Everything below is as of `).MatchString(banner) {
		t.Errorf("stale banner = %q", banner)
	}
	if got := p.text("#conn"); !strings.HasPrefix(got, "STALE since ") {
		t.Errorf("#conn = %q; want STALE since …", got)
	}
	if !value[bool](p, `document.getElementById("ctl-reset").disabled`) {
		t.Errorf("the controls stay enabled while canaryd does not answer")
	}
	p.waitFor("a second failed poll", `/ 2 polls failed/.test(document.getElementById("stale").textContent) || / [3-9] polls failed/.test(document.getElementById("stale").textContent)`)
	s = p.screenshot("dashboard-stale", "#stale", "#charts", "#board")
	if n := s.colourful(s.rect(t, "#board", 0, 1)); n != 0 {
		t.Errorf("%s: the stale board has %d coloured pixels; want it greyed out", s.file, n)
	}
	if n := s.count(s.rect(t, "#stale", 0, 1), badRed); n < 200 {
		t.Errorf("%s: the stale banner has %d red pixels; want its red frame", s.file, n)
	}

	in.startAdmin(t, strings.TrimPrefix(in.url(), "http://"))
	p.waitFor("the recovery", `!document.body.classList.contains("stale") && document.getElementById("stale").getClientRects().length === 0 && document.getElementById("conn").textContent.startsWith("live")`)
	s = p.screenshot("dashboard-recovered", "#charts")
	if n := s.colourful(s.rect(t, "#charts", 0, 1)); n < 500 {
		t.Errorf("%s: the charts have %d coloured pixels after the recovery; want them in colour again", s.file, n)
	}
	if !p.visible("#rollback") {
		t.Errorf("the rollback snapshot is gone before a reset")
	}

	// A new release from the page clears the rollback and its snapshot.
	p.typeInto("#release-input", "v2.0.1")
	p.typeInto("#steps-input", "20@1h,100@1h")
	confirm(t, p, in, "#ctl-start", "Start release v2.0.1?")
	resultIs(p, "start: done (200 OK). The rollout is now progressing at 20 %, release v2.0.1.")
	if o := in.guard.Overview(); o.Release != "v2.0.1" || o.State != "progressing" || in.split.Weight() != 2000 {
		t.Errorf("after start: release %q state %s splitter %d; want v2.0.1 progressing at 2000", o.Release, o.State, in.split.Weight())
	}
	p.waitFor("the snapshot to go", `document.getElementById("rollback").getClientRects().length === 0 && document.getElementById("release").textContent === "release v2.0.1"`)
	p.noProblems()
}

// humanInt writes n as the page does (en-US grouping: 1,234).
func humanInt(n uint64) string {
	s := strconv.FormatUint(n, 10)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}
