package main

// The metric gates end to end: a real Prometheus (Debian's prometheus)
// scrapes a tiny exporter the test controls every second, and canaryd's
// gates query it. Skipped without the prometheus binary, unless
// CANARY_REQUIRE_PROMETHEUS=1 (CI) makes that a failure.

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// promServer is a Prometheus process on a loopback port it keeps across
// restarts.
type promServer struct {
	t    *testing.T
	bin  string
	dir  string
	addr string
	cmd  *exec.Cmd
	done chan struct{}
}

// startPrometheus runs Prometheus scraping target every second, or skips
// the test without the binary.
func startPrometheus(t *testing.T, target string) *promServer {
	t.Helper()
	bin, err := exec.LookPath("prometheus")
	if err != nil {
		if os.Getenv("CANARY_REQUIRE_PROMETHEUS") == "1" {
			t.Fatalf("prometheus not on PATH and CANARY_REQUIRE_PROMETHEUS=1: %v", err)
		}
		t.Skip("prometheus not on PATH (apt-get install prometheus; CANARY_REQUIRE_PROMETHEUS=1 makes this a failure)")
	}
	dir := t.TempDir()
	cfg := fmt.Sprintf("global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: app\n    static_configs:\n      - targets: [%q]\n", target)
	if err := os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	p := &promServer{t: t, bin: bin, dir: dir, addr: addr}
	p.start()
	t.Cleanup(p.stop)
	return p
}

func (p *promServer) url() string { return "http://" + p.addr }

// start runs the process and waits until it is ready.
func (p *promServer) start() {
	p.t.Helper()
	p.cmd = exec.Command(p.bin, "--config.file="+filepath.Join(p.dir, "prometheus.yml"), "--storage.tsdb.path="+filepath.Join(p.dir, "tsdb"),
		"--web.listen-address="+p.addr, "--log.level=warn")
	logs := &syncBuffer{}
	p.cmd.Stdout, p.cmd.Stderr = logs, logs
	if err := p.cmd.Start(); err != nil {
		p.t.Fatal(err)
	}
	p.done = make(chan struct{})
	go func() { p.cmd.Wait(); close(p.done) }()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if resp, err := http.Get(p.url() + "/-/ready"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		select {
		case <-p.done:
			p.t.Fatalf("prometheus exited at start:\n%s", logs.String())
		default:
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("prometheus not ready:\n%s", logs.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// stop ends the process (SIGTERM, then SIGKILL after 10 s).
func (p *promServer) stop() {
	if p.cmd == nil {
		return
	}
	p.cmd.Process.Signal(os.Interrupt)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		p.cmd.Process.Kill()
		<-p.done
	}
	p.cmd = nil
}

// gateBody is a gate of /canary_check with its figures.
type gateBody struct {
	Name      string  `json:"name"`
	Value     float64 `json:"value"`
	Threshold float64 `json:"threshold"`
	Unit      string  `json:"unit"`
	Verdict   string  `json:"verdict"`
	Detail    string  `json:"detail"`
}

// checkWithGates is /canary_check with the gates' figures.
func (in *instance) checkWithGates() (checkBody, map[string]gateBody) {
	in.t.Helper()
	_, body := in.adminGet("/canary_check", testToken)
	var c checkBody
	var g struct {
		Gates []gateBody `json:"gates"`
	}
	if json.Unmarshal(body, &c) != nil || json.Unmarshal(body, &g) != nil {
		in.t.Fatalf("/canary_check %s", body)
	}
	gates := map[string]gateBody{}
	for _, x := range g.Gates {
		gates[x.Name] = x
	}
	return c, gates
}

// TestE2EMetricGatesWithPrometheus: a gate on a series the test controls
// passes while it is within its bound; with Prometheus stopped the gates
// hold, naming why, and never roll back; a gate whose query has no data
// holds; once Prometheus scrapes a value above the bound for the gate's
// "for", canary is rolled back with rollback_metric naming the gate.
func TestE2EMetricGatesWithPrometheus(t *testing.T) {
	var ratio atomic.Uint64
	ratio.Store(math.Float64bits(0.01))
	exporter := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		fmt.Fprintf(w, "# HELP app_checkout_error_ratio Failed checkouts, as a share.\n# TYPE app_checkout_error_ratio gauge\napp_checkout_error_ratio{track=\"canary\"} %g\n",
			math.Float64frombits(ratio.Load()))
	}))
	defer exporter.Close()
	prom := startPrometheus(t, strings.TrimPrefix(exporter.URL, "http://"))
	gatesFile := filepath.Join(t.TempDir(), "gates.json")
	os.WriteFile(gatesFile, []byte(`[
	  {"name": "checkout_errors", "query": "max(app_checkout_error_ratio{track=\"canary\"})", "max": 0.05, "for": "2s"},
	  {"name": "refunds", "query": "sum(app_refunds_total)", "min": 0}
	]`), 0o600)
	stable, canary := newBackend(t, "stable", nil), newBackend(t, "canary", nil)
	in := start(t, testEnv(t, stable, canary, "CANARY_WEIGHT=10", "CANARY_PROMETHEUS_URL="+prom.url(),
		"CANARY_METRIC_GATES="+gatesFile, "CANARY_METRIC_GATE_INTERVAL=1s"))

	waitGate := func(what string, cond func(c checkBody, g map[string]gateBody) bool) (checkBody, map[string]gateBody) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for {
			c, g := in.checkWithGates()
			if cond(c, g) {
				return c, g
			}
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s: %+v %+v", what, c, g)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	// Within the bound: pass, with the value; the query without data holds.
	_, g := waitGate("checkout_errors passing", func(_ checkBody, g map[string]gateBody) bool { return g["checkout_errors"].Verdict == "pass" })
	if ce := g["checkout_errors"]; ce.Value != 0.01 || ce.Threshold != 0.05 || ce.Unit != "metric" || ce.Detail != "0.01 within its max 0.05" {
		t.Errorf("checkout_errors gate %+v", ce)
	}
	if r := g["refunds"]; r.Verdict != "hold" || !strings.Contains(r.Detail, "no data") {
		t.Errorf("refunds gate (no series) %+v; want hold, no data", r)
	}

	// Prometheus stopped, the metric now bad: hold, reason named, no rollback.
	prom.stop()
	ratio.Store(math.Float64bits(0.5))
	c, _ := waitGate("checkout_errors holding", func(_ checkBody, g map[string]gateBody) bool {
		return g["checkout_errors"].Verdict == "hold" && strings.Contains(g["checkout_errors"].Detail, "cannot reach Prometheus")
	})
	if !slices.ContainsFunc(c.Reasons, func(r string) bool {
		return strings.HasPrefix(r, "metric gate checkout_errors (unknown): cannot reach Prometheus (http://127.0.0.1:")
	}) {
		t.Errorf("reasons %q; want the gate and why it holds", c.Reasons)
	}
	_, body := in.adminGet("/dashboard/health_summary", testToken)
	if !strings.Contains(string(body), "metric gate checkout_errors (unknown): cannot reach Prometheus") || !strings.Contains(string(body), `"degraded"`) {
		t.Errorf("health summary %s; want degraded naming the gate", body)
	}
	for range 5 { // 5 s: more than twice the gate's "for", five checks
		time.Sleep(time.Second)
		if c := in.check(); c.State != "fixed" || c.Weight != 10 || !c.CanaryOK {
			t.Fatalf("with Prometheus stopped: %+v; want a hold, never a rollback", c)
		}
	}

	// Prometheus back: it scrapes 0.5 > 0.05, for 2 s: rollback_metric.
	prom.start()
	began := time.Now()
	_, g = waitGate("the gate seeing 0.5", func(c checkBody, g map[string]gateBody) bool {
		return g["checkout_errors"].Value == 0.5 || c.State == "rolled_back"
	})
	seen := time.Now()
	c = in.waitFor("rollback_metric", 0, func(c checkBody) bool { return c.Recommendation != "hold" })
	if c.Recommendation != "rollback_metric" || c.CanaryOK || c.Weight != 0 || c.State != "rolled_back" {
		t.Fatalf("after the metric went bad: %+v; want rollback_metric at 0", c)
	}
	if !strings.Contains(c.Reasons[0], "rollback_metric: metric gate checkout_errors: 0.5 above its max 0.05 for ") {
		t.Errorf("reasons %q; want the gate named", c.Reasons)
	}
	_, body = in.adminGet("/dashboard/canary_overview", testToken)
	var ov struct {
		Rollback struct {
			Reason string     `json:"reason"`
			Detail string     `json:"detail"`
			Gates  []gateBody `json:"gates"`
		} `json:"rollback"`
	}
	json.Unmarshal(body, &ov)
	if ov.Rollback.Reason != "rollback_metric" || !strings.HasPrefix(ov.Rollback.Detail, "metric gate checkout_errors: 0.5 above its max 0.05") ||
		!slices.ContainsFunc(ov.Rollback.Gates, func(g gateBody) bool { return g.Name == "checkout_errors" && g.Verdict == "fail" && g.Value == 0.5 }) {
		t.Errorf("rollback record %+v; want rollback_metric naming the failing gate", ov.Rollback)
	}
	if v, _ := in.metricValue("canary_rollbacks_total", "reason", "rollback_metric"); v != 1 {
		t.Errorf("canary_rollbacks_total{reason=rollback_metric} = %v; want 1", v)
	}
	t.Logf("Prometheus back and ready: the gate saw 0.5 (%s) %v later, and the canary was rolled back %v after that (the gate's for: 2s, checks every 1s, scrapes every 1s)",
		g["checkout_errors"].Verdict, seen.Sub(began).Round(10*time.Millisecond), time.Since(seen).Round(10*time.Millisecond))
}

// syncBuffer's twin for a process's output is in e2e_test.go; io.Writer
// is all startPrometheus needs.
var _ io.Writer = (*syncBuffer)(nil)
