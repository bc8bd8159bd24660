package main

// End-to-end tests: the canaryd binary, built once, serving on loopback in
// front of httptest backends.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

const testToken = "e2e-token-0123456789abcdef"

var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "canaryd-e2e-")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "canaryd")
	args := []string{"build", "-o", binary}
	if raceBuild {
		args = append(args, "-race")
	}
	out, err := exec.Command("go", append(args, ".")...).CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "building canaryd: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// syncBuffer collects a process's output safely across goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// instance is one running canaryd process.
type instance struct {
	t       *testing.T
	cmd     *exec.Cmd
	traffic string // http://127.0.0.1:port
	admin   string
	logs    *syncBuffer
	done    chan struct{}
	exit    int
}

// backend is an httptest server that counts its hits.
type backend struct {
	*httptest.Server
	hits atomic.Int64
}

func newBackend(t *testing.T, name string, h http.HandlerFunc) *backend {
	return newBackendWith(t, name, h, nil)
}

// newBackendWith is newBackend with a chance to configure the server before
// it starts.
func newBackendWith(t *testing.T, name string, h http.HandlerFunc, configure func(*http.Server)) *backend {
	b := &backend{}
	b.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" {
			io.WriteString(w, "ok")
			return
		}
		b.hits.Add(1)
		if h != nil {
			h(w, r)
			return
		}
		fmt.Fprintf(w, "%s\n", name)
	}))
	if configure != nil {
		configure(b.Config)
	}
	b.Start()
	t.Cleanup(b.Close)
	return b
}

func testEnv(t *testing.T, stable, canary *backend, extra ...string) []string {
	env := []string{
		"CANARY_STABLE_URL=" + stable.URL,
		"CANARY_CANARY_URL=" + canary.URL,
		"CANARY_TOKEN=" + testToken,
		"CANARY_LISTEN=127.0.0.1:0",
		"CANARY_ADMIN_LISTEN=127.0.0.1:0",
		"CANARY_STATE_FILE=" + filepath.Join(t.TempDir(), "state.json"),
		"CANARY_EVAL_INTERVAL=50ms",
		"CANARY_SHUTDOWN_TIMEOUT=10s",
		"PATH=" + os.Getenv("PATH"),
	}
	if v := os.Getenv("CANARY_E2E_FAST_PATH"); v != "" {
		// `make test-fast-path-off`: every test on net/http's server and
		// the standard path, unless it sets CANARY_FAST_PATH itself.
		env = append(env, "CANARY_FAST_PATH="+v)
	}
	return with(env, extra...)
}

// start runs canaryd with env and waits until it serves.
func start(t *testing.T, env []string, args ...string) *instance {
	t.Helper()
	in := &instance{t: t, logs: &syncBuffer{}, done: make(chan struct{})}
	in.cmd = exec.Command(binary, args...)
	in.cmd.Env = env
	pr, pw := io.Pipe()
	in.cmd.Stderr = io.MultiWriter(in.logs, pw)
	in.cmd.Stdout = in.logs
	if err := in.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		in.cmd.Wait()
		in.exit = in.cmd.ProcessState.ExitCode()
		pw.Close()
		close(in.done)
	}()
	t.Cleanup(func() {
		in.cmd.Process.Kill()
		<-in.done
		if t.Failed() {
			t.Logf("canaryd output:\n%s", in.logs.String())
		}
	})
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			var line struct {
				Message string `json:"message"`
				Traffic string `json:"traffic"`
				Admin   string `json:"admin"`
			}
			if json.Unmarshal(sc.Bytes(), &line) == nil && line.Message == "canaryd serving" {
				in.traffic, in.admin = line.Traffic, line.Admin
				close(ready)
				break
			}
		}
		io.Copy(io.Discard, pr)
	}()
	select {
	case <-ready:
	case <-in.done:
		t.Fatalf("canaryd exited %d before serving:\n%s", in.exit, in.logs.String())
	case <-time.After(15 * time.Second):
		t.Fatalf("canaryd did not start:\n%s", in.logs.String())
	}
	return in
}

// stop sends SIGTERM and waits for the exit status.
func (in *instance) stop() int {
	in.t.Helper()
	in.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-in.done:
	case <-time.After(20 * time.Second):
		in.t.Fatal("canaryd did not stop after SIGTERM")
	}
	return in.exit
}

var client = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}

// adminDo sends method path with token (none when "") and body (none when
// "") to the admin listener, and returns the response (its body read and
// closed) and the body.
func (in *instance) adminDo(method, path, token, body string) (*http.Response, []byte) {
	in.t.Helper()
	req, _ := http.NewRequest(method, in.admin+path, strings.NewReader(body))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := client.Do(req)
	if err != nil {
		in.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return resp, raw
}

func (in *instance) adminGet(path, token string) (*http.Response, []byte) {
	in.t.Helper()
	return in.adminDo(http.MethodGet, path, token, "")
}

func (in *instance) adminPost(path string) (int, []byte) {
	in.t.Helper()
	resp, body := in.adminDo(http.MethodPost, path, testToken, "")
	return resp.StatusCode, body
}

type checkBody struct {
	CanaryOK       bool     `json:"canary_ok"`
	Recommendation string   `json:"recommendation"`
	Reasons        []string `json:"reasons"`
	Weight         float64  `json:"weight"`
	State          string   `json:"state"`
	Canary         struct {
		Requests  uint64  `json:"requests"`
		Errors    uint64  `json:"errors"`
		ErrorRate float64 `json:"error_rate"`
		P95Ms     float64 `json:"p95_ms"`
	} `json:"canary"`
	Gates []struct {
		Name    string `json:"name"`
		Verdict string `json:"verdict"`
	} `json:"gates"`
}

func (in *instance) check() checkBody {
	in.t.Helper()
	resp, body := in.adminGet("/canary_check", testToken)
	if resp.StatusCode != 200 {
		in.t.Fatalf("/canary_check = %d %s", resp.StatusCode, body)
	}
	var c checkBody
	if err := json.Unmarshal(body, &c); err != nil {
		in.t.Fatalf("/canary_check body %s: %v", body, err)
	}
	return c
}

// send makes n requests to the traffic listener from a few workers and
// returns how many answered with each status.
func (in *instance) send(n int) map[int]int {
	in.t.Helper()
	var mu sync.Mutex
	codes := map[int]int{}
	jobs := make(chan int)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range jobs {
				resp, err := client.Get(in.traffic + "/work")
				code := 0
				if err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					code = resp.StatusCode
				}
				mu.Lock()
				codes[code]++
				mu.Unlock()
			}
		})
	}
	for i := range n {
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	return codes
}

// waitFor polls /canary_check until cond holds, sending traffic meanwhile.
func (in *instance) waitFor(what string, traffic int, cond func(checkBody) bool) checkBody {
	in.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		c := in.check()
		if cond(c) {
			return c
		}
		if time.Now().After(deadline) {
			in.t.Fatalf("timed out waiting for %s; last check %+v", what, c)
		}
		if traffic > 0 {
			in.send(traffic)
		} else {
			time.Sleep(50 * time.Millisecond)
		}
	}
}

func TestE2EAuth(t *testing.T) {
	in := start(t, testEnv(t, newBackend(t, "stable", nil), newBackend(t, "canary", nil)))
	for _, tc := range []struct {
		name, token string
		want        int
	}{{"no token", "", 401}, {"wrong token", "wrong-token-0123456789abc", 401}, {"right token", testToken, 200}} {
		resp, body := in.adminGet("/canary_check", tc.token)
		if resp.StatusCode != tc.want {
			t.Errorf("%s: status %d; want %d", tc.name, resp.StatusCode, tc.want)
		}
		if tc.want == 401 {
			if !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Bearer") {
				t.Errorf("%s: WWW-Authenticate = %q", tc.name, resp.Header.Get("WWW-Authenticate"))
			}
			var e map[string]any
			if json.Unmarshal(body, &e) != nil || e["error"] == nil {
				t.Errorf("%s: body %s is not a JSON error", tc.name, body)
			}
		}
	}
	for _, path := range []string{"/healthz", "/readyz", "/metrics"} {
		if resp, _ := in.adminGet(path, ""); resp.StatusCode != 200 {
			t.Errorf("GET %s without token = %d; want 200", path, resp.StatusCode)
		}
	}
	for _, path := range []string{"/dashboard/health_summary", "/dashboard/canary_overview", "/dashboard/integrity_details"} {
		if resp, _ := in.adminGet(path, ""); resp.StatusCode != 401 {
			t.Errorf("GET %s without token = %d; want 401", path, resp.StatusCode)
		}
		if resp, _ := in.adminGet(path, testToken); resp.StatusCode != 200 {
			t.Errorf("GET %s = %d; want 200", path, resp.StatusCode)
		}
	}
	_, body := in.adminGet("/dashboard/integrity_details", testToken)
	if !bytes.Contains(body, []byte(`"DISABLED"`)) {
		t.Errorf("integrity without manifest = %s; want status DISABLED", body)
	}
	if in.stop() != 0 {
		t.Errorf("exit after SIGTERM = %d; want 0", in.exit)
	}
	if strings.Contains(in.logs.String(), testToken) {
		t.Error("the token appears in the logs")
	}
}

// TestE2EWrongTokensDoNotLockOutTheRightOne: behind a load balancer every
// client shares one address; a client with a stale token must not lock the
// operators out of the admin API.
func TestE2EWrongTokensDoNotLockOutTheRightOne(t *testing.T) {
	in := start(t, testEnv(t, newBackend(t, "stable", nil), newBackend(t, "canary", nil)))
	limited := 0
	for range 30 {
		resp, _ := in.adminGet("/canary_check", "stale-token-0123456789abc")
		switch resp.StatusCode {
		case http.StatusUnauthorized:
		case http.StatusTooManyRequests:
			limited++
		default:
			t.Fatalf("wrong token = %d; want 401 or 429", resp.StatusCode)
		}
	}
	if limited == 0 {
		t.Error("30 wrong tokens from one address were never limited (429)")
	}
	if resp, body := in.adminGet("/canary_check", testToken); resp.StatusCode != http.StatusOK {
		t.Fatalf("right token after 30 wrong ones from the same address = %d %s; want 200", resp.StatusCode, body)
	}
	if code, body := in.adminPost("/rollout/rollback"); code != http.StatusOK {
		t.Fatalf("POST /rollout/rollback after wrong tokens = %d %s; want 200", code, body)
	}
}

func TestE2ESplitIsExact(t *testing.T) {
	stable, canary := newBackend(t, "stable", nil), newBackend(t, "canary", nil)
	in := start(t, testEnv(t, stable, canary, "CANARY_WEIGHT=10", "CANARY_SLO_MIN_REQUESTS=100000"))
	codes := in.send(10000)
	if codes[200] != 10000 {
		t.Fatalf("answers = %v; want 10000 × 200", codes)
	}
	if got := canary.hits.Load(); got != 1000 {
		t.Errorf("canary hits = %d of 10000; want 1000", got)
	}
	if got := stable.hits.Load(); got != 9000 {
		t.Errorf("stable hits = %d of 10000; want 9000", got)
	}
	// /metrics agrees with the backends and parses.
	resp, body := in.adminGet("/metrics", "")
	if resp.StatusCode != 200 {
		t.Fatalf("/metrics = %d", resp.StatusCode)
	}
	parser := expfmt.NewTextParser(model.LegacyValidation)
	families, err := parser.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("/metrics does not parse: %v", err)
	}
	total := map[string]float64{}
	for _, m := range families["canary_requests_total"].GetMetric() {
		for _, l := range m.GetLabel() {
			if l.GetName() == "backend" {
				total[l.GetValue()] += m.GetCounter().GetValue()
			}
		}
	}
	if total["canary"] != 1000 || total["stable"] != 9000 {
		t.Errorf("canary_requests_total = %v; want canary 1000, stable 9000", total)
	}
	for _, name := range []string{"canary_request_duration_seconds", "canary_weight_ratio", "canary_rollback_required",
		"canary_rollbacks_total", "canary_integrity_status", "canary_slo_error_rate_ratio", "canary_slo_p95_seconds",
		"canary_state_persisted", "canary_state_persist_failures_total"} {
		if families[name] == nil {
			t.Errorf("/metrics lacks %s", name)
		}
	}
}

func TestE2ERollbackOnErrors(t *testing.T) {
	for _, judgeName := range []string{"window", "sequential"} {
		t.Run(judgeName, func(t *testing.T) {
			var fixed atomic.Bool
			stable := newBackend(t, "stable", nil)
			canary := newBackend(t, "canary", func(w http.ResponseWriter, r *http.Request) {
				if fixed.Load() {
					io.WriteString(w, "fixed")
					return
				}
				http.Error(w, "broken", http.StatusInternalServerError)
			})
			in := start(t, testEnv(t, stable, canary, "CANARY_JUDGE="+judgeName, "CANARY_WEIGHT=20", "CANARY_SLO_MIN_REQUESTS=20"))
			c := in.waitFor("rollback_error_rate", 50, func(c checkBody) bool { return c.Recommendation == "rollback_error_rate" })
			if c.CanaryOK || c.Weight != 0 || len(c.Reasons) == 0 || len(c.Gates) == 0 {
				t.Errorf("after rollback: %+v; want canary_ok false, weight 0, reasons and gates", c)
			}
			before := canary.hits.Load()
			codes := in.send(500)
			if after := canary.hits.Load(); after != before {
				t.Errorf("canary got %d requests after the rollback", after-before)
			}
			if codes[200] != 500 {
				t.Errorf("answers after rollback = %v; want 500 × 200", codes)
			}
			// Fixed and reset: the failures before the reset do not roll it back again.
			fixed.Store(true)
			if code, body := in.adminPost("/rollout/reset"); code != 200 {
				t.Fatalf("reset = %d %s", code, body)
			}
			in.send(200)
			time.Sleep(200 * time.Millisecond)
			if c := in.check(); !c.CanaryOK || c.Weight != 20 {
				t.Errorf("after fix and reset: %+v; want canary_ok at weight 20", c)
			}
		})
	}
}

func TestE2ERollbackOnLatency(t *testing.T) {
	stable := newBackend(t, "stable", nil)
	canary := newBackend(t, "canary", func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(30 * time.Millisecond)
		io.WriteString(w, "slow")
	})
	in := start(t, testEnv(t, stable, canary, "CANARY_JUDGE=window", "CANARY_WEIGHT=50",
		"CANARY_SLO_MIN_REQUESTS=20", "CANARY_SLO_P95=10ms"))
	c := in.waitFor("rollback_latency", 40, func(c checkBody) bool { return c.Recommendation == "rollback_latency" })
	if c.CanaryOK || c.Weight != 0 || c.Canary.P95Ms < 10 {
		t.Errorf("after latency rollback: %+v", c)
	}
}

func TestE2EHoldBelowFloor(t *testing.T) {
	stable, canary := newBackend(t, "stable", nil), newBackend(t, "canary", nil)
	in := start(t, testEnv(t, stable, canary, "CANARY_JUDGE=window", "CANARY_SLO_MIN_REQUESTS=1000"))
	in.send(200)
	time.Sleep(200 * time.Millisecond)
	c := in.check()
	if c.Recommendation != "hold" || !c.CanaryOK {
		t.Errorf("below the floor: recommendation %q canary_ok %v; want hold, true", c.Recommendation, c.CanaryOK)
	}
}

func TestE2ERollbackSurvivesRestart(t *testing.T) {
	stable, canary := newBackend(t, "stable", nil), newBackend(t, "canary", nil)
	env := testEnv(t, stable, canary, "CANARY_RELEASE=v2", "CANARY_WEIGHT=50")
	in := start(t, env)
	if code, body := in.adminPost("/rollout/rollback"); code != 200 {
		t.Fatalf("POST /rollout/rollback = %d %s", code, body)
	}
	if c := in.check(); c.Recommendation != "rollback_manual" || c.Weight != 0 {
		t.Fatalf("after manual rollback: %+v", c)
	}
	if code := in.stop(); code != 0 {
		t.Fatalf("exit = %d", code)
	}
	in = start(t, env)
	c := in.check()
	if c.Recommendation != "rollback_manual" || c.Weight != 0 || c.CanaryOK {
		t.Errorf("after restart: %+v; want still rolled back", c)
	}
	before := canary.hits.Load()
	in.send(200)
	if canary.hits.Load() != before {
		t.Error("a rolled-back canary got traffic after a restart")
	}
	// Reset clears it; a new release would too.
	if code, body := in.adminPost("/rollout/reset"); code != 200 {
		t.Fatalf("POST /rollout/reset = %d %s", code, body)
	}
	if c := in.check(); c.Weight != 50 || !c.CanaryOK {
		t.Errorf("after reset: %+v; want weight 50", c)
	}
	in.stop()
	in = start(t, with(env, "CANARY_RELEASE=v3"))
	if c := in.check(); c.Weight != 50 {
		t.Errorf("new release: weight %v; want 50", c.Weight)
	}
}

func TestE2EGracefulShutdown(t *testing.T) {
	release := make(chan struct{})
	slow := func(w http.ResponseWriter, r *http.Request) {
		<-release
		io.WriteString(w, "finished")
	}
	stable, canary := newBackend(t, "stable", slow), newBackend(t, "canary", slow)
	in := start(t, testEnv(t, stable, canary))
	type result struct {
		code int
		body string
		err  error
	}
	got := make(chan result, 1)
	go func() {
		resp, err := client.Get(in.traffic + "/slow")
		if err != nil {
			got <- result{err: err}
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		got <- result{code: resp.StatusCode, body: string(b)}
	}()
	deadline := time.Now().Add(5 * time.Second)
	for stable.hits.Load()+canary.hits.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	in.cmd.Process.Signal(syscall.SIGTERM)
	time.Sleep(200 * time.Millisecond) // the process is draining now
	close(release)
	r := <-got
	if r.err != nil || r.code != 200 || r.body != "finished" {
		t.Errorf("in-flight request across SIGTERM = %d %q %v; want 200 finished", r.code, r.body, r.err)
	}
	<-in.done
	if in.exit != 0 {
		t.Errorf("exit = %d; want 0", in.exit)
	}
}

func TestE2ECheckCommand(t *testing.T) {
	stable := newBackend(t, "stable", nil)
	canary := newBackend(t, "canary", nil)
	in := start(t, testEnv(t, stable, canary, "CANARY_SLO_MIN_REQUESTS=10", "CANARY_JUDGE=window", "CANARY_WEIGHT=50"))
	in.send(100)
	in.waitFor("proceed", 20, func(c checkBody) bool { return c.Recommendation == "proceed" })
	runCheck := func() (int, string, string) {
		cmd := exec.CommandContext(context.Background(), binary, "check")
		cmd.Env = []string{"CANARY_ADMIN_URL=" + in.admin, "CANARY_TOKEN=" + testToken}
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		cmd.Run()
		return cmd.ProcessState.ExitCode(), out.String(), errb.String()
	}
	code, out, _ := runCheck()
	if code != 0 || !strings.HasPrefix(out, "proceed ") || strings.Count(out, "\n") != 1 {
		t.Errorf("check while healthy: exit %d, %q", code, out)
	}
	in.adminPost("/rollout/rollback")
	code, out, _ = runCheck()
	if code != 1 || !strings.HasPrefix(out, "rollback_manual ") {
		t.Errorf("check after rollback: exit %d, %q", code, out)
	}
	if strings.Contains(out, testToken) {
		t.Error("canaryd check printed the token")
	}
	cmd := exec.Command(binary, "check")
	cmd.Env = []string{"CANARY_ADMIN_URL=" + in.admin, "CANARY_TOKEN=wrong-token-0123456789abc"}
	if out, _ := cmd.CombinedOutput(); cmd.ProcessState.ExitCode() != exitConfig {
		t.Errorf("check with a wrong token: exit %d, %q; want %d", cmd.ProcessState.ExitCode(), out, exitConfig)
	}
	in.stop()
	code, _, errOut := runCheck()
	if code != exitNoReply || errOut == "" {
		t.Errorf("check without a server: exit %d, %q", code, errOut)
	}
}

func execCanaryd(env []string, args ...string) *exec.Cmd {
	cmd := exec.Command(binary, args...)
	cmd.Env = env
	return cmd
}

// /metrics is clean under `promtool check metrics` (skipped without promtool).
func TestE2EPromtoolCheckMetrics(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("promtool not installed (apt-get install prometheus)")
	}
	stable := newBackend(t, "stable", nil)
	canary := newBackend(t, "canary", func(w http.ResponseWriter, r *http.Request) { http.Error(w, "x", 500) })
	in := start(t, testEnv(t, stable, canary, "CANARY_HEALTH_PATH=/healthz", "CANARY_HEALTH_INTERVAL=100ms", "CANARY_WEIGHT=30"))
	in.send(300)
	in.adminGet("/canary_check", "wrong-token-0123456789")
	time.Sleep(300 * time.Millisecond)
	_, body := in.adminGet("/metrics", "")
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = bytes.NewReader(body)
	out, err := cmd.CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) != 0 {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
}
