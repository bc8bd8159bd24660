package admin_test

import (
	"bytes"
	"context"
	"image"
	"image/png"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/canaryd/canaryd/admin"
	"github.com/canaryd/canaryd/guard"
	"github.com/canaryd/canaryd/guard/integrity"
)

// chromiumPath finds a Chromium-family browser on PATH.
func chromiumPath(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Skip("no chromium, chromium-browser or google-chrome on PATH; skipping the dashboard browser test")
	return ""
}

// runChromium runs headless Chromium on pageURL with extra flags for budget
// of the page's (virtual) time and returns its standard output.
func runChromium(t *testing.T, browser, pageURL string, budget time.Duration, extra ...string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	args := []string{
		"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--disable-extensions", "--disable-dev-shm-usage", "--mute-audio",
		"--user-data-dir=" + t.TempDir(),
		"--virtual-time-budget=" + strconv.FormatInt(budget.Milliseconds(), 10),
	}
	args = append(append(args, extra...), pageURL)
	cmd := exec.CommandContext(ctx, browser, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s: %v\nstderr:\n%s", browser, err, stderr.String())
	}
	return stdout.Bytes()
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

// element returns the text inside the element with the given id in a dumped
// DOM (elements without nested tags only).
func element(dom, id string) string {
	m := regexp.MustCompile(`id="` + regexp.QuoteMeta(id) + `"[^>]*>([^<]*)<`).FindStringSubmatch(dom)
	if m == nil {
		return "<no element #" + id + ">"
	}
	return m[1]
}

// tbodyRows counts the rows of the tbody with the given id.
func tbodyRows(dom, id string) int {
	m := regexp.MustCompile(`(?s)<tbody id="` + regexp.QuoteMeta(id) + `">(.*?)</tbody>`).FindStringSubmatch(dom)
	if m == nil {
		return -1
	}
	return strings.Count(m[1], "<tr")
}

// isHidden reports whether the element with the given id carries the hidden
// attribute.
func isHidden(dom, id string) bool {
	m := regexp.MustCompile(`<[a-z]+ id="` + regexp.QuoteMeta(id) + `"([^>]*)>`).FindStringSubmatch(dom)
	return m != nil && regexp.MustCompile(`\bhidden\b`).MatchString(m[1])
}

func TestDashboardInBrowser(t *testing.T) {
	browser := chromiumPath(t)
	ctl := changingController()
	ctl.overview.History = append(ctl.overview.History, guard.Transition{
		At: ctl.check.CheckedAt.Add(time.Minute), From: 25, To: 25, FromState: "progressing", ToState: "paused",
		Reason: "pause", Who: "127.0.0.1:40000",
	})
	ts := newTestServer(t, ctl, admin.LimiterConfig{})
	srv := httptest.NewServer(ts.handler)
	t.Cleanup(srv.Close)

	t.Run("token in fragment", func(t *testing.T) {
		// The token travels in the fragment, which browsers never send.
		dom := string(runChromium(t, browser, srv.URL+"/dashboard#token="+url.QueryEscape(testToken), 4*time.Second, "--dump-dom"))
		checks := []struct {
			what, got, want string
		}{
			{"#weight", element(dom, "weight"), "25 %"},
			{"#recommendation", element(dom, "recommendation"), "proceed"},
			{"#state", element(dom, "state"), "progressing"},
			{"#overall-health", element(dom, "overall-health"), "healthy"},
			{"#integrity-status", element(dom, "integrity-status"), "VERIFIED"},
			{"#integrity-summary", element(dom, "integrity-summary"), "3 of 3 files verified"},
		}
		for _, c := range checks {
			if c.got != c.want {
				t.Errorf("%s = %q; want %q", c.what, c.got, c.want)
			}
		}
		for id, want := range map[string]int{"gates": 3, "history": 3, "plan": 3, "integrity-failures": 0, "fleet": 2} {
			if got := tbodyRows(dom, id); got != want {
				t.Errorf("#%s has %d rows; want %d", id, got, want)
			}
		}
		for _, want := range []string{"p95_latency", "step_complete", "127.0.0.1:40000", "progressing → paused", "web-2:8000 (this one)", "etcd store, answering"} {
			if !strings.Contains(dom, want) {
				t.Errorf("page lacks %q", want)
			}
		}
		if isHidden(dom, "board") || !isHidden(dom, "login") {
			t.Errorf("board hidden %v, login hidden %v; want the board shown and the form hidden", isHidden(dom, "board"), isHidden(dom, "login"))
		}
		if strings.Contains(dom, testToken) {
			t.Errorf("the token appears in the page")
		}
		ctl.mu.Lock()
		reads := ctl.check.Canary.Requests
		ctl.mu.Unlock()
		// Each poll reads the controller 4 times (37 canary requests each).
		if polls := (reads - 1200) / 37 / 4; polls < 2 {
			t.Errorf("the page polled %d times in 4 s; want at least 2", polls)
		} else {
			t.Logf("the page polled %d times in 4 s", polls)
		}
		secretsAbsent(t, ts, "", nil)
	})

	t.Run("wrong token", func(t *testing.T) {
		dom := string(runChromium(t, browser, srv.URL+"/dashboard#token=wrong-token-0123456789", 1500*time.Millisecond, "--dump-dom"))
		if got := element(dom, "message"); !strings.Contains(got, "not accepted") {
			t.Errorf("#message = %q; want the token to be refused", got)
		}
		if isHidden(dom, "login") || !isHidden(dom, "board") {
			t.Errorf("login hidden %v, board hidden %v; want the form shown again", isHidden(dom, "login"), isHidden(dom, "board"))
		}
		if !strings.Contains(dom, `id="token-form"`) {
			t.Errorf("page lacks #token-form")
		}
	})

	t.Run("no token", func(t *testing.T) {
		before := counterValue(t, ts.reg, "canary_admin_auth_failures_total", "reason", "missing")
		dom := string(runChromium(t, browser, srv.URL+"/dashboard", time.Second, "--dump-dom"))
		if isHidden(dom, "login") || !isHidden(dom, "board") {
			t.Errorf("login hidden %v, board hidden %v; want the form", isHidden(dom, "login"), isHidden(dom, "board"))
		}
		if got := counterValue(t, ts.reg, "canary_admin_auth_failures_total", "reason", "missing"); got != before {
			t.Errorf("the page sent %v requests without a token; want none", got-before)
		}
	})

	t.Run("rolled back", func(t *testing.T) {
		bad := newFakeController()
		bad.check.CanaryOK, bad.check.Recommendation = false, "rollback_integrity"
		bad.check.Weight, bad.overview.Weight = 0, 0
		bad.overview.RollbackRequired, bad.overview.RollbackReason = true, "rollback_integrity"
		bad.health.OverallHealth = "unhealthy"
		bad.report.Verified, bad.report.Status = false, "FAILED"
		bad.report.Failures = []integrity.Failure{{Path: "bin/app", Problem: "checksum mismatch"}, {Path: "static/<b>x</b>.js", Problem: "missing"}}
		badSrv := httptest.NewServer(newTestServer(t, bad, admin.LimiterConfig{}).handler)
		t.Cleanup(badSrv.Close)
		dom := string(runChromium(t, browser, badSrv.URL+"/dashboard#token="+url.QueryEscape(testToken), 1500*time.Millisecond, "--dump-dom"))
		for id, want := range map[string]string{
			"weight": "0 %", "recommendation": "rollback_integrity", "overall-health": "unhealthy",
			"integrity-status": "FAILED", "rollback-reason": "Rollback required: rollback_integrity",
		} {
			if got := element(dom, id); got != want {
				t.Errorf("#%s = %q; want %q", id, got, want)
			}
		}
		if got := tbodyRows(dom, "integrity-failures"); got != 2 {
			t.Errorf("#integrity-failures has %d rows; want 2", got)
		}
		// Data is rendered as text, never as markup.
		if !strings.Contains(dom, "static/&lt;b&gt;x&lt;/b&gt;.js") {
			t.Errorf("the failure path was not escaped")
		}
		if isHidden(dom, "rollback-reason") {
			t.Errorf("#rollback-reason is hidden; want it shown")
		}
	})

	t.Run("screenshot", func(t *testing.T) {
		file := filepath.Join(t.TempDir(), "dashboard.png")
		runChromium(t, browser, srv.URL+"/dashboard#token="+url.QueryEscape(testToken), 2500*time.Millisecond,
			"--screenshot="+file, "--window-size=1280,1000", "--hide-scrollbars")
		raw, err := os.ReadFile(file)
		if err != nil {
			t.Fatalf("no screenshot: %v", err)
		}
		img, err := png.Decode(bytes.NewReader(raw))
		if err != nil {
			t.Fatalf("screenshot is not a PNG: %v", err)
		}
		if b := img.Bounds(); b.Dx() != 1280 || b.Dy() != 1000 {
			t.Errorf("screenshot is %dx%d; want 1280x1000", b.Dx(), b.Dy())
		}
		if n := distinctColors(img, 64); n < 8 {
			t.Errorf("screenshot has %d distinct colours; want a drawn page (at least 8)", n)
		}
		t.Logf("screenshot: %d bytes", len(raw))
		if dir := os.Getenv("CANARYD_SCREENSHOT_DIR"); dir != "" {
			_ = os.WriteFile(filepath.Join(dir, "dashboard.png"), raw, 0o644)
		}
	})
}

// distinctColors counts distinct colours up to limit, sampling every 4th
// pixel.
func distinctColors(img image.Image, limit int) int {
	seen := map[[4]uint32]bool{}
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y += 4 {
		for x := b.Min.X; x < b.Max.X; x += 4 {
			r, g, bl, a := img.At(x, y).RGBA()
			seen[[4]uint32{r, g, bl, a}] = true
			if len(seen) >= limit {
				return len(seen)
			}
		}
	}
	return len(seen)
}
