package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/canaryd/canaryd/guard"
	"github.com/canaryd/canaryd/guard/notify"
)

// The integrations' variables: a bad value is exit 2 with one line naming
// it.
func TestIntegrationsConfigErrorsNameTheVariable(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	gates := write("gates.json", `[{"name": "checkout", "query": "sum(rate(x[1m]))", "min": 1}]`)
	const hook = "CANARY_WEBHOOK_URL=http://127.0.0.1:9/hook"
	const prom = "CANARY_PROMETHEUS_URL=http://127.0.0.1:9090"
	for _, tc := range []struct {
		name    string
		env     []string
		wantVar string
	}{
		{"webhook URL scheme", []string{"CANARY_WEBHOOK_URL=ftp://host/x"}, "CANARY_WEBHOOK_URL"},
		{"webhook URL without host", []string{"CANARY_WEBHOOK_URL=http:///x"}, "CANARY_WEBHOOK_URL"},
		{"short secret", []string{hook, "CANARY_WEBHOOK_SECRET=short"}, "CANARY_WEBHOOK_SECRET"},
		{"secret and its file", []string{hook, "CANARY_WEBHOOK_SECRET=0123456789abcdef", "CANARY_WEBHOOK_SECRET_FILE=" + write("s", "0123456789abcdef\n")}, "CANARY_WEBHOOK_SECRET_FILE"},
		{"secret file missing", []string{hook, "CANARY_WEBHOOK_SECRET_FILE=" + filepath.Join(dir, "nope")}, "CANARY_WEBHOOK_SECRET_FILE"},
		{"secret file empty", []string{hook, "CANARY_WEBHOOK_SECRET_FILE=" + write("empty", "\n")}, "CANARY_WEBHOOK_SECRET_FILE"},
		{"secret file short", []string{hook, "CANARY_WEBHOOK_SECRET_FILE=" + write("short", "abc\n")}, "CANARY_WEBHOOK_SECRET_FILE"},
		{"secret with nothing to sign", []string{"CANARY_WEBHOOK_SECRET=0123456789abcdef"}, "CANARY_WEBHOOK_SECRET"},
		{"format", []string{hook, "CANARY_WEBHOOK_FORMAT=teams"}, "CANARY_WEBHOOK_FORMAT"},
		{"format set but empty", []string{hook, "CANARY_WEBHOOK_FORMAT="}, "CANARY_WEBHOOK_FORMAT"},
		{"confirm URL", []string{"CANARY_CONFIRM_URL=ci.internal/confirm"}, "CANARY_CONFIRM_URL"},
		{"deadline not a duration", []string{"CANARY_PROGRESS_DEADLINE=10"}, "CANARY_PROGRESS_DEADLINE"},
		{"deadline negative", []string{"CANARY_PROGRESS_DEADLINE=-1m"}, "CANARY_PROGRESS_DEADLINE"},
		{"deadline within a step", []string{"CANARY_STEPS=5@15m,25@30m,100@1h", "CANARY_PROGRESS_DEADLINE=45m"}, "CANARY_PROGRESS_DEADLINE"},
		{"deadline action", []string{"CANARY_PROGRESS_DEADLINE=1h", "CANARY_PROGRESS_DEADLINE_ACTION=page"}, "CANARY_PROGRESS_DEADLINE_ACTION"},
		{"rollback without a deadline", []string{"CANARY_PROGRESS_DEADLINE_ACTION=rollback"}, "CANARY_PROGRESS_DEADLINE_ACTION"},
		{"gates without Prometheus", []string{"CANARY_METRIC_GATES=" + gates}, "CANARY_PROMETHEUS_URL"},
		{"Prometheus without gates", []string{prom}, "CANARY_METRIC_GATES"},
		{"Prometheus URL", []string{"CANARY_PROMETHEUS_URL=prometheus:9090", "CANARY_METRIC_GATES=" + gates}, "CANARY_PROMETHEUS_URL"},
		{"gates file missing", []string{prom, "CANARY_METRIC_GATES=" + filepath.Join(dir, "nope.json")}, "CANARY_METRIC_GATES"},
		{"gates file not JSON", []string{prom, "CANARY_METRIC_GATES=" + write("bad.json", "name: x\n")}, "CANARY_METRIC_GATES"},
		{"gate without a bound", []string{prom, "CANARY_METRIC_GATES=" + write("nobound.json", `[{"name": "a", "query": "q"}]`)}, "CANARY_METRIC_GATES"},
		{"gate named like a built-in", []string{prom, "CANARY_METRIC_GATES=" + write("builtin.json", `[{"name": "error_rate", "query": "q", "max": 1}]`)}, "CANARY_METRIC_GATES"},
		{"interval too short", []string{prom, "CANARY_METRIC_GATES=" + gates, "CANARY_METRIC_GATE_INTERVAL=100ms"}, "CANARY_METRIC_GATE_INTERVAL"},
		{"typo", []string{"CANARY_WEBHOOK_UR=http://x"}, "CANARY_WEBHOOK_UR"},
	} {
		t.Run(tc.name, func(t *testing.T) { exitsNaming(t, with(baseEnv(t), tc.env...), tc.wantVar) })
	}
}

// exitsNaming runs canaryd with env and expects exit status 2 with one
// line on stderr naming the variable.
func exitsNaming(t *testing.T, env []string, variable string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), nil, env, &stdout, &stderr)
	if code != exitConfig {
		t.Fatalf("exit = %d; want %d (stderr %q)", code, exitConfig, stderr.String())
	}
	if out := stderr.String(); strings.Count(out, "\n") != 1 || !strings.HasPrefix(out, "canaryd: "+variable+":") {
		t.Errorf("stderr = %q; want one line naming %s", out, variable)
	}
}

// Good values parse: the secret from its file, the format, the action, the
// gates.
func TestIntegrationsConfig(t *testing.T) {
	dir := t.TempDir()
	secretFile := filepath.Join(dir, "secret")
	os.WriteFile(secretFile, []byte("0123456789abcdef0123\n"), 0o600)
	gates := filepath.Join(dir, "gates.json")
	os.WriteFile(gates, []byte(`[{"name": "checkout", "query": "sum(rate(x[1m]))", "min": 1, "for": "1m"}]`), 0o600)
	c, err := loadConfig(with(baseEnv(t), "CANARY_WEBHOOK_URL=https://hooks.slack.com/services/T0/B0/X", "CANARY_WEBHOOK_SECRET_FILE="+secretFile,
		"CANARY_WEBHOOK_FORMAT=slack", "CANARY_CONFIRM_URL=http://ci.internal/confirm", "CANARY_STEPS=5@1m,100@1m",
		"CANARY_PROGRESS_DEADLINE=10m", "CANARY_PROGRESS_DEADLINE_ACTION=rollback",
		"CANARY_PROMETHEUS_URL=http://prometheus:9090", "CANARY_METRIC_GATES="+gates, "CANARY_METRIC_GATE_INTERVAL=5s"))
	if err != nil {
		t.Fatal(err)
	}
	if string(c.webhookSecret) != "0123456789abcdef0123" || c.webhookFormat != notify.FormatSlack || c.deadlineAction != guard.DeadlineRollback ||
		c.ProgressDeadline != 10*time.Minute || len(c.metricGates) != 1 || c.metricGates[0].For != time.Minute || c.MetricGateInterval != 5*time.Second {
		t.Errorf("config = secret %q, format %v, action %v, deadline %v, gates %+v, interval %v", c.webhookSecret, c.webhookFormat, c.deadlineAction,
			c.ProgressDeadline, c.metricGates, c.MetricGateInterval)
	}
	c, err = loadConfig(baseEnv(t))
	if err != nil || c.webhookSecret != nil || c.webhookFormat != notify.FormatJSON || c.deadlineAction != guard.DeadlineStall ||
		c.ProgressDeadline != 0 || c.metricGates != nil || c.MetricGateInterval != 30*time.Second {
		t.Errorf("defaults: %+v, %v", c, err)
	}
	if _, err := loadConfig(with(baseEnv(t), "CANARY_PROGRESS_DEADLINE=0")); err != nil {
		t.Errorf("CANARY_PROGRESS_DEADLINE=0 (off): %v", err)
	}
}
