//go:build integration

package deploy_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// integrationToken is the admin token of the canaryd under test.
const integrationToken = "integration-test-token-0123456789"

// TestPrometheusIntegration runs canaryd between two loopback backends, sends
// it bounded load, lets a real Prometheus scrape it with alerts.yml loaded, and
// asks that Prometheus every expression of the dashboard and of the alert
// rules: each must be valid PromQL and return data from canaryd's metrics.
func TestPrometheusIntegration(t *testing.T) {
	promBin, err := exec.LookPath("prometheus")
	if err != nil {
		if os.Getenv("CANARY_REQUIRE_PROMETHEUS") == "1" {
			t.Fatalf("prometheus not on PATH and CANARY_REQUIRE_PROMETHEUS=1: %v", err)
		}
		t.Skip("prometheus not on PATH: skipping the real-Prometheus test (install it, e.g. apt-get install prometheus; set CANARY_REQUIRE_PROMETHEUS=1 to make this a failure)")
	}
	testDeadline := time.Now().Add(85 * time.Second)
	ctx, cancel := context.WithDeadline(context.Background(), testDeadline)
	t.Cleanup(cancel)

	tmp := t.TempDir()
	canaryd := buildCanaryd(ctx, t, tmp)

	stable := httptest.NewServer(backendHandler("stable", 0, 0, nil))
	t.Cleanup(stable.Close)
	// The canary answers every 20th request with 500 and fails every 8th
	// health check, so the error and health panels have data; /reset
	// requests are cut off without an answer (an upstream error). Once
	// broken, it answers every request with 500.
	var canaryBroken atomic.Bool
	canary := httptest.NewServer(backendHandler("canary", 20, 8, &canaryBroken))
	t.Cleanup(canary.Close)

	listen, admin := freeAddr(t), freeAddr(t)
	adminURL := "http://" + admin
	canarydExited := startCanaryd(t, canaryd, tmp, []string{
		"CANARY_STABLE_URL=" + stable.URL,
		"CANARY_CANARY_URL=" + canary.URL,
		"CANARY_TOKEN=" + integrationToken,
		"CANARY_LISTEN=" + listen,
		"CANARY_ADMIN_LISTEN=" + admin,
		"CANARY_STATE_FILE=" + filepath.Join(tmp, "state.json"),
		"CANARY_WEIGHT=30",
		// Copies of stable's requests too, for the shadow-traffic panels.
		"CANARY_MIRROR_PERCENT=50",
		"CANARY_JUDGE=window",
		// A lenient SLO: the guard rolls back by itself only once the test
		// breaks the canary.
		"CANARY_SLO_ERROR_RATE=0.5",
		"CANARY_SLO_P95=5s",
		"CANARY_SLO_MIN_REQUESTS=20",
		"CANARY_HEALTH_PATH=/healthz",
		"CANARY_HEALTH_INTERVAL=1s",
		"CANARY_LOG_LEVEL=warn",
	})
	waitFor(ctx, t, "canaryd admin /healthz answers 200", func() (bool, string) {
		select {
		case <-canarydExited:
			t.Fatalf("canaryd exited at start (a configuration error exits 2)")
		default:
		}
		resp, err := httpGet(adminURL + "/healthz")
		if err != nil {
			return false, err.Error()
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, resp.Status
	})

	sent := startLoad(ctx, t, "http://"+listen, 200, 45*time.Second)
	// Three admin requests with a wrong token feed canary_admin_auth_failures_total.
	for range 3 {
		adminRequest(t, http.MethodGet, adminURL+"/canary_check", "wrong-token-wrong-token")
	}

	promURL := startPrometheus(ctx, t, promBin, tmp, admin)
	waitFor(ctx, t, `Prometheus scrapes canaryd (up == 1)`, func() (bool, string) {
		res, err := promQuery(promURL, `up{job="canaryd"} == 1`)
		return err == nil && len(res) > 0, fmt.Sprint(res, err)
	})
	// Both backends' traffic, the canary's 5xx and its failed health checks
	// must be in Prometheus before the expressions are judged.
	for _, q := range []string{
		`canary_requests_total{backend="stable"}`,
		`canary_requests_total{backend="canary", code=~"5.."}`,
		`canary_upstream_errors_total{backend="canary"} > 0`,
		`canary_health_checks_total{backend="canary", result="failure"} > 0`,
	} {
		waitFor(ctx, t, "Prometheus has "+q, func() (bool, string) {
			res, err := promQuery(promURL, q)
			return err == nil && len(res) > 0, fmt.Sprint(res, err)
		})
	}

	// A rollback by hand does not page: CanaryRollbackManual (a ticket,
	// for: 30m) is pending, CanaryRollbackRequired stays away in the same
	// evaluation of the group.
	if code := adminRequest(t, http.MethodPost, adminURL+"/rollout/rollback", integrationToken); code != http.StatusOK {
		t.Errorf("POST /rollout/rollback = %d; want 200", code)
	}
	t.Run("a rollback by hand does not page", func(t *testing.T) {
		waitFor(ctx, t, "CanaryRollbackManual pending and no CanaryRollbackRequired", func() (bool, string) {
			alerts, err := promAlerts(promURL)
			if err != nil {
				return false, err.Error()
			}
			manual := false
			for _, a := range alerts {
				if a.Labels["alertname"] == "CanaryRollbackRequired" {
					t.Fatalf("a rollback by hand raised CanaryRollbackRequired: %+v", a)
				}
				manual = manual || (a.Labels["alertname"] == "CanaryRollbackManual" && a.Labels["severity"] == "ticket")
			}
			return manual, fmt.Sprintf("alerts: %+v", alerts)
		})
	})

	// The operator resets; then the canary breaks and the guard rolls it
	// back by itself: one page, with the reason and the figures.
	if code := adminRequest(t, http.MethodPost, adminURL+"/rollout/reset", integrationToken); code != http.StatusOK {
		t.Errorf("POST /rollout/reset = %d; want 200", code)
	}
	waitFor(ctx, t, "Prometheus sees the reset (canary_rollback_required == 0)", func() (bool, string) {
		res, err := promQuery(promURL, `canary_rollback_required == 0`)
		return err == nil && len(res) > 0, fmt.Sprint(res, err)
	})
	canaryBroken.Store(true)
	t.Run("a rollback by the guard pages once", func(t *testing.T) {
		waitFor(ctx, t, "CanaryRollbackRequired firing with verdict rollback_error_rate, and no other page", func() (bool, string) {
			alerts, err := promAlerts(promURL)
			if err != nil {
				return false, err.Error()
			}
			var pages []promAlert
			for _, a := range alerts {
				if a.State == "firing" && a.Labels["severity"] == "page" {
					pages = append(pages, a)
				}
			}
			if len(pages) != 1 || pages[0].Labels["alertname"] != "CanaryRollbackRequired" || pages[0].Labels["verdict"] != "rollback_error_rate" {
				return false, fmt.Sprintf("firing pages: %+v", pages)
			}
			ev := pages[0].Annotations["evidence"]
			if !strings.Contains(ev, "requests, error rate ") || !strings.Contains(ev, "% (SLO 50%)") || strings.Contains(ev, "n/a") {
				t.Errorf("evidence annotation %q; want the canary's figures", ev)
			}
			t.Logf("page: %s / %s", pages[0].Annotations["summary"], ev)
			return true, ""
		})
	})
	canaryBroken.Store(false)

	t.Run("rules loaded and healthy", func(t *testing.T) {
		names, err := alertNames()
		if err != nil {
			t.Fatal(err)
		}
		waitFor(ctx, t, "every rule of alerts.yml loaded and evaluated with health ok", func() (bool, string) {
			rules, err := promRules(promURL)
			if err != nil {
				return false, err.Error()
			}
			var loaded []string
			var bad []string
			for _, r := range rules {
				loaded = append(loaded, r.Name)
				if r.Health != "ok" {
					bad = append(bad, fmt.Sprintf("%s: health %q %s", r.Name, r.Health, r.LastError))
				}
			}
			slices.Sort(loaded)
			want := slices.Sorted(slices.Values(names))
			if !slices.Equal(loaded, want) {
				return false, fmt.Sprintf("loaded %v; want %v", loaded, want)
			}
			return len(bad) == 0, strings.Join(bad, "; ")
		})
	})

	t.Run("alert expressions return data", func(t *testing.T) {
		rules, err := promRules(promURL)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rules {
			// In each operand of the rule (split at and/or/unless), the
			// compared quantity (left of the threshold) and a threshold that
			// is an expression (the SLO gauges) must have data whenever
			// canaryd runs; an operand without a comparison must itself
			// return data.
			t.Run(r.Name, func(t *testing.T) {
				for _, operand := range setOperands(r.Query) {
					left, right, split := splitComparison(operand)
					n := assertData(ctx, t, promURL, left)
					t.Logf("%d series for %s", n, left)
					if _, err := strconv.ParseFloat(right, 64); split && err != nil {
						n := assertData(ctx, t, promURL, right)
						t.Logf("%d series for threshold %s", n, right)
					}
				}
			})
		}
	})

	t.Run("dashboard expressions return data", func(t *testing.T) {
		d, err := loadDashboard()
		if err != nil {
			t.Fatal(err)
		}
		exprs := dashboardExprs(d)
		if len(exprs) == 0 {
			t.Fatal("no expressions found in the dashboard")
		}
		for _, e := range exprs {
			q := expandGrafanaVars(e.expr, "15s")
			t.Run(e.where, func(t *testing.T) {
				n := assertData(ctx, t, promURL, q)
				t.Logf("%d series for %s", n, q)
			})
		}
	})
	t.Logf("load generator sent %d requests", sent.Load())
}

// buildCanaryd builds ./cmd/canaryd from the module root into dir.
func buildCanaryd(ctx context.Context, t *testing.T, dir string) string {
	t.Helper()
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("module root %s: %v", root, err)
	}
	bin := filepath.Join(dir, "canaryd")
	goBin := filepath.Join(os.Getenv("GOROOT"), "bin", "go")
	if _, err := os.Stat(goBin); err != nil {
		goBin = "go"
	}
	buildCtx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(buildCtx, goBin, "build", "-o", bin, "./cmd/canaryd")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/canaryd: %v\n%s", err, out)
	}
	return bin
}

// backendHandler answers "<name> ok"; with failEvery > 0 every failEvery-th
// request gets 500, with healthFailEvery > 0 every healthFailEvery-th
// /healthz gets 503; while broken (if not nil) is set, every request but
// /healthz gets 500. Requests to /reset are hijacked and closed unanswered.
func backendHandler(name string, failEvery, healthFailEvery uint64, broken *atomic.Bool) http.Handler {
	var requests, probes atomic.Uint64
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/healthz":
			if n := probes.Add(1); healthFailEvery > 0 && n%healthFailEvery == 0 {
				http.Error(w, "probe failure", http.StatusServiceUnavailable)
				return
			}
			io.WriteString(w, "ok\n")
		case "/reset":
			hj, ok := w.(http.Hijacker)
			if !ok {
				http.Error(w, "no hijacker", http.StatusInternalServerError)
				return
			}
			conn, _, err := hj.Hijack()
			if err == nil {
				conn.Close()
			}
		default:
			if n := requests.Add(1); (failEvery > 0 && n%failEvery == 0) || (broken != nil && broken.Load()) {
				http.Error(w, name+" failure", http.StatusInternalServerError)
				return
			}
			io.WriteString(w, name+" ok\n")
		}
	})
}

// freeAddr returns a loopback address with a port that was free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// startCanaryd runs bin with only the given CANARY_* variables (the caller's
// own CANARY_* environment is dropped), stops it at cleanup and returns a
// channel closed when it exits.
func startCanaryd(t *testing.T, bin, dir string, env []string) <-chan struct{} {
	t.Helper()
	cmd := exec.Command(bin)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "CANARY_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, env...)
	cmd.Dir = dir
	return startProcess(t, "canaryd", cmd, filepath.Join(dir, "canaryd.log"))
}

// startProcess starts cmd with its output in logPath and returns a channel
// closed when it exits. At cleanup it stops the process (SIGINT, then SIGKILL
// after 5s), fails the test if it had exited by itself, and shows its log
// when the test failed.
func startProcess(t *testing.T, name string, cmd *exec.Cmd, logPath string) <-chan struct{} {
	t.Helper()
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		logFile.Close()
		t.Fatalf("start %s: %v", name, err)
	}
	exited := make(chan struct{})
	var waitErr error
	go func() {
		waitErr = cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		select {
		case <-exited:
			t.Errorf("%s exited before the test ended: %v", name, waitErr)
		default:
			_ = cmd.Process.Signal(os.Interrupt)
			select {
			case <-exited:
			case <-time.After(5 * time.Second):
				_ = cmd.Process.Kill()
				<-exited
			}
		}
		logFile.Close()
		if t.Failed() {
			if out, err := os.ReadFile(logPath); err == nil {
				t.Logf("%s log (last 4 KiB):\n%s", name, tail(out, 4096))
			}
		}
	})
	return exited
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

// startLoad sends GET requests to base at perSecond for at most d (and no
// longer than ctx or the test). One request in 25 goes to /reset. It returns
// the running count of requests sent.
func startLoad(ctx context.Context, t *testing.T, base string, perSecond int, d time.Duration) *atomic.Int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, d)
	var (
		sent atomic.Int64
		wg   sync.WaitGroup
	)
	client := &http.Client{Timeout: 2 * time.Second}
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(time.Second / time.Duration(perSecond))
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			n := sent.Add(1)
			path := "/api/items/" + strconv.FormatInt(n%50, 10)
			if n%25 == 0 {
				path = "/reset"
			}
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+path, nil)
			if err != nil {
				continue
			}
			if resp, err := client.Do(req); err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		}
	}()
	t.Cleanup(func() {
		cancel()
		wg.Wait()
	})
	return &sent
}

// adminRequest sends an admin API request with a bearer token and returns
// the status code (0 on a transport error, which fails the test).
func adminRequest(t *testing.T, method, u, token string) int {
	t.Helper()
	req, err := http.NewRequest(method, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	client := &http.Client{Timeout: 5 * time.Second}
	resp, err := client.Do(req)
	if err != nil {
		t.Errorf("%s %s: %v", method, u, err)
		return 0
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, resp.Body)
	return resp.StatusCode
}

// startPrometheus writes a config that scrapes canaryd's admin listener every
// second and loads alerts.yml, starts Prometheus on a free loopback port and
// returns its base URL once it is ready.
func startPrometheus(ctx context.Context, t *testing.T, bin, dir, adminAddr string) string {
	t.Helper()
	rules, err := filepath.Abs(alertsPath)
	if err != nil {
		t.Fatal(err)
	}
	cfg := fmt.Sprintf(`global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
rule_files:
  - %q
scrape_configs:
  - job_name: canaryd
    metrics_path: /metrics
    static_configs:
      - targets: [%q]
`, rules, adminAddr)
	cfgPath := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	addr := freeAddr(t)
	cmd := exec.Command(bin,
		"--config.file="+cfgPath,
		"--storage.tsdb.path="+filepath.Join(dir, "tsdb"),
		"--web.listen-address="+addr,
		"--log.level=warn",
	)
	exited := startProcess(t, "prometheus", cmd, filepath.Join(dir, "prometheus.log"))
	base := "http://" + addr
	waitFor(ctx, t, "Prometheus /-/ready answers 200", func() (bool, string) {
		select {
		case <-exited:
			t.Fatalf("prometheus exited at start")
		default:
		}
		resp, err := httpGet(base + "/-/ready")
		if err != nil {
			return false, err.Error()
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, resp.Status
	})
	return base
}

// waitFor polls cond every 250ms until it holds; it fails the test with
// cond's last detail when ctx ends or 30s have passed.
func waitFor(ctx context.Context, t *testing.T, what string, cond func() (bool, string)) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	var detail string
	for {
		var ok bool
		if ok, detail = cond(); ok {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("timed out waiting until %s: %s", what, detail)
		case <-tick.C:
		}
	}
}

// errBadQuery marks an expression Prometheus rejects: retrying cannot help.
type errBadQuery struct{ msg string }

func (e errBadQuery) Error() string { return e.msg }

// promQuery runs an instant query and returns the labels of the result
// series that have a number (NaN, as from 0/0, does not count).
func promQuery(base, q string) ([]map[string]string, error) {
	resp, err := httpGet(base + "/api/v1/query?query=" + url.QueryEscape(q))
	if err != nil {
		return nil, fmt.Errorf("query: %w", err)
	}
	defer resp.Body.Close()
	var body struct {
		Status    string `json:"status"`
		ErrorType string `json:"errorType"`
		Error     string `json:"error"`
		Data      struct {
			ResultType string          `json:"resultType"`
			Result     json.RawMessage `json:"result"`
		} `json:"data"`
	}
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("read query answer: %w", err)
	}
	if err := json.Unmarshal(raw, &body); err != nil {
		return nil, fmt.Errorf("decode query answer %q: %w", raw, err)
	}
	if body.Status != "success" {
		if body.ErrorType == "bad_data" {
			return nil, errBadQuery{fmt.Sprintf("prometheus rejects %q: %s", q, body.Error)}
		}
		return nil, fmt.Errorf("query %q: %s: %s", q, body.ErrorType, body.Error)
	}
	if body.Data.ResultType != "vector" {
		return nil, fmt.Errorf("query %q: result type %s; want vector", q, body.Data.ResultType)
	}
	var series []struct {
		Metric map[string]string `json:"metric"`
		Value  [2]any            `json:"value"`
	}
	if err := json.Unmarshal(body.Data.Result, &series); err != nil {
		return nil, fmt.Errorf("decode result of %q: %w", q, err)
	}
	var out []map[string]string
	for _, s := range series {
		v, _ := s.Value[1].(string)
		if f, err := strconv.ParseFloat(v, 64); err == nil && !math.IsNaN(f) {
			out = append(out, s.Metric)
		}
	}
	return out, nil
}

// assertData waits until q returns at least one series with a number and
// returns how many;
// an expression Prometheus rejects fails at once.
func assertData(ctx context.Context, t *testing.T, base, q string) int {
	t.Helper()
	var n int
	waitFor(ctx, t, "a non-empty result for "+q, func() (bool, string) {
		res, err := promQuery(base, q)
		if bad, ok := err.(errBadQuery); ok {
			t.Fatal(bad.msg)
		}
		n = len(res)
		return err == nil && n > 0, fmt.Sprintf("%d series, err %v", n, err)
	})
	return n
}

// promRule is one rule of /api/v1/rules.
type promRule struct {
	Name      string `json:"name"`
	Query     string `json:"query"`
	Health    string `json:"health"`
	LastError string `json:"lastError"`
	Type      string `json:"type"`
	State     string `json:"state"`
}

func promRules(base string) ([]promRule, error) {
	var body struct {
		Status string `json:"status"`
		Data   struct {
			Groups []struct {
				Name  string     `json:"name"`
				File  string     `json:"file"`
				Rules []promRule `json:"rules"`
			} `json:"groups"`
		} `json:"data"`
	}
	if err := getJSON(base+"/api/v1/rules", &body); err != nil {
		return nil, err
	}
	var out []promRule
	for _, g := range body.Data.Groups {
		out = append(out, g.Rules...)
	}
	return out, nil
}

// promAlert is one alert of /api/v1/alerts.
type promAlert struct {
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations"`
	State       string            `json:"state"`
}

func promAlerts(base string) ([]promAlert, error) {
	var body struct {
		Data struct {
			Alerts []promAlert `json:"alerts"`
		} `json:"data"`
	}
	if err := getJSON(base+"/api/v1/alerts", &body); err != nil {
		return nil, err
	}
	return body.Data.Alerts, nil
}

// httpGet is http.Get with a 2s timeout, so that a stuck server fails a poll
// instead of hanging the test.
func httpGet(u string) (*http.Response, error) {
	client := &http.Client{Timeout: 2 * time.Second}
	return client.Get(u)
}

func getJSON(u string, v any) error {
	resp, err := httpGet(u)
	if err != nil {
		return fmt.Errorf("get %s: %w", u, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("read %s: %w", u, err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("get %s: %s: %s", u, resp.Status, bytes.TrimSpace(raw))
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return fmt.Errorf("decode %s: %w", u, err)
	}
	return nil
}
