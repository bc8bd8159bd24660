package deploy_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestDashboardPanels(t *testing.T) {
	d, err := loadDashboard()
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := d["schemaVersion"].(float64); v < 39 {
		t.Errorf("schemaVersion = %v; want >= 39", d["schemaVersion"])
	}
	if uid, _ := d["uid"].(string); uid != "canaryd" {
		t.Errorf("uid = %q; want canaryd (links and provisioning rely on it)", uid)
	}

	templ, _ := d["templating"].(map[string]any)
	vars, _ := templ["list"].([]any)
	var haveDS bool
	for _, v := range vars {
		vm, _ := v.(map[string]any)
		if vm["name"] == "DS_PROMETHEUS" && vm["type"] == "datasource" && vm["query"] == "prometheus" {
			haveDS = true
		}
	}
	if !haveDS {
		t.Errorf("templating has no datasource variable DS_PROMETHEUS of type prometheus")
	}

	panels, _ := d["panels"].([]any)
	if len(panels) == 0 {
		t.Fatal("dashboard has no panels")
	}
	type rect struct {
		title      string
		x, y, w, h int
	}
	var (
		ids   = map[float64]string{}
		rects []rect
	)
	allowed := []string{"stat", "timeseries", "state-timeline", "row", "bargauge", "table"}
	for _, p := range panels {
		pm, _ := p.(map[string]any)
		title, _ := pm["title"].(string)
		id, _ := pm["id"].(float64)
		if other, dup := ids[id]; dup {
			t.Errorf("panel %q: id %v already used by %q", title, id, other)
		}
		ids[id] = title
		if typ, _ := pm["type"].(string); !slices.Contains(allowed, typ) {
			t.Errorf("panel %q: type %q not in %v", title, typ, allowed)
		}
		if desc, _ := pm["description"].(string); desc == "" {
			t.Errorf("panel %q: no description", title)
		}
		if uid := datasourceUID(pm["datasource"]); uid != "${DS_PROMETHEUS}" {
			t.Errorf("panel %q: datasource uid %q; want ${DS_PROMETHEUS}", title, uid)
		}
		targets, _ := pm["targets"].([]any)
		if len(targets) == 0 {
			t.Errorf("panel %q: no targets", title)
		}
		for _, tg := range targets {
			tm, _ := tg.(map[string]any)
			if uid := datasourceUID(tm["datasource"]); uid != "${DS_PROMETHEUS}" {
				t.Errorf("panel %q target %v: datasource uid %q; want ${DS_PROMETHEUS}", title, tm["refId"], uid)
			}
		}
		gp, _ := pm["gridPos"].(map[string]any)
		r := rect{title, num(gp["x"]), num(gp["y"]), num(gp["w"]), num(gp["h"])}
		if r.w <= 0 || r.h <= 0 || r.x < 0 || r.x+r.w > 24 {
			t.Errorf("panel %q: gridPos %+v outside the 24-column grid", title, gp)
		}
		for _, o := range rects {
			if r.x < o.x+o.w && o.x < r.x+r.w && r.y < o.y+o.h && o.y < r.y+r.h {
				t.Errorf("panel %q overlaps panel %q", title, o.title)
			}
		}
		rects = append(rects, r)
	}
}

func datasourceUID(ds any) string {
	m, _ := ds.(map[string]any)
	uid, _ := m["uid"].(string)
	return uid
}

func num(v any) int {
	f, _ := v.(float64)
	return int(f)
}

func TestDashboardCoversMetrics(t *testing.T) {
	d, err := loadDashboard()
	if err != nil {
		t.Fatal(err)
	}
	exprs := dashboardExprs(d)
	used := map[string]bool{}
	for _, e := range exprs {
		if strings.TrimSpace(e.expr) == "" {
			t.Errorf("%s: empty expr", e.where)
		}
		metrics := selectedMetrics(e.expr)
		if len(metrics) == 0 {
			t.Errorf("%s: no metric selector in %q", e.where, e.expr)
		}
		for _, m := range metrics {
			if !knownMetrics[m] {
				t.Errorf("%s: unknown metric %q in %q", e.where, m, e.expr)
			}
			used[m] = true
		}
		if strings.Contains(e.expr, "rate(") && !strings.Contains(e.expr, "$__rate_interval") {
			t.Errorf("%s: rate without $__rate_interval: %q", e.where, e.expr)
		}
	}
	for _, want := range []string{
		"canary_requests_total", "canary_request_duration_seconds_bucket", "canary_upstream_errors_total",
		"canary_weight_ratio", "canary_rollback_required", "canary_rollbacks_total", "canary_integrity_status",
		"canary_health_checks_total", "canary_slo_error_rate_ratio", "canary_slo_p95_seconds",
		"canary_overall_health", "canary_verdict", "canary_step",
		"canary_store_up", "canary_is_leader", "canary_fleet_replicas",
		"canary_progress_stalled", "canary_webhook_deliveries_total",
		"canary_errors_total", "canary_endpoints", "canary_endpoint_requests_total",
		"canary_retries_total", "canary_failovers_total",
		"canary_mirror_requests_total", "canary_mirror_errors_total", "canary_mirror_dropped_total",
		"canary_mirror_skipped_total", "canary_mirror_in_flight",
	} {
		if !used[want] {
			t.Errorf("no dashboard panel shows %s", want)
		}
	}
}

func TestAlertRules(t *testing.T) {
	raw, err := os.ReadFile(alertsPath)
	if err != nil {
		t.Fatal(err)
	}
	names, err := alertNames()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"CanaryErrorRateHigh", "CanaryLatencyP95High", "CanaryRollbackRequired", "CanaryIntegrityFailed",
		"CanaryUnhealthy", "CanaryHealthCheckFailures", "CanarydDown", "CanaryRollbackManual",
		"CanaryStoreDown", "CanaryStateNotPersisted", "CanaryProgressStalled", "CanaryWebhookFailing",
	} {
		if !slices.Contains(names, want) {
			t.Errorf("alerts.yml has no alert %s (alerts: %v)", want, names)
		}
	}
	tests, err := os.ReadFile(alertsTestPath)
	if err != nil {
		t.Fatal(err)
	}
	blocks := strings.Split(string(raw), "- alert: ")[1:]
	for _, b := range blocks {
		name := strings.TrimSpace(strings.SplitN(b, "\n", 2)[0])
		t.Run(name, func(t *testing.T) {
			for _, key := range []string{"severity: ", "summary: ", "description: ", "runbook: "} {
				if !strings.Contains(b, key) {
					t.Errorf("alert %s has no %s", name, strings.TrimSpace(key))
				}
			}
			_, expr, _ := strings.Cut(b, "expr: |")
			expr, _, _ = strings.Cut(expr, "for: ")
			for _, m := range selectedMetrics(expr) {
				if !knownMetrics[m] {
					t.Errorf("alert %s uses unknown metric %q", name, m)
				}
			}
			// Each rule needs a test case where it fires (exp_alerts with
			// entries) and one where it stays quiet (exp_alerts: []).
			firing, quiet := alertTestCases(string(tests), name)
			if firing == 0 || quiet == 0 {
				t.Errorf("alerts_test.yml has %d firing and %d quiet cases for %s; want at least one of each", firing, quiet, name)
			}
		})
	}
}

// One incident, one page: the promtool cases marked "scenario: one rollback,
// one page" (one canaryd) and "scenario: a fleet of three, one rollback, one
// page" (three replicas rolled back together) must name every page-severity
// alert of alerts.yml, expect
// CanaryRollbackRequired to fire as exactly one alert and every other page to
// stay quiet; the "a rollback by hand does not page" case must expect
// CanaryRollbackRequired quiet throughout; "stable failing pages
// CanaryUnhealthy" must expect that page. A new page rule cannot slip past
// the scenarios.
func TestOneIncidentOnePage(t *testing.T) {
	pages, err := alertsWithSeverity("page")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(pages, "CanaryRollbackRequired") || slices.Contains(pages, "CanaryRollbackManual") {
		t.Fatalf("page alerts %v; want CanaryRollbackRequired and not CanaryRollbackManual", pages)
	}
	raw, err := os.ReadFile(alertsTestPath)
	if err != nil {
		t.Fatal(err)
	}
	// A case runs from its comment to the next case's "- interval:".
	scenario := func(marker string) map[string][]int {
		text := string(raw)
		start := strings.Index(text, "# scenario: "+marker)
		first := strings.Index(text[max(start, 0):], "\n  - interval:")
		if start < 0 || first < 0 {
			t.Fatalf("alerts_test.yml has no case marked %q", "# scenario: "+marker)
		}
		end := len(text)
		if next := strings.Index(text[start+first+1:], "\n  - interval:"); next >= 0 {
			end = start + first + 1 + next
		}
		return expectedAlerts(text[start:end])
	}
	// A single canaryd, and a fleet of three replicas rolled back together.
	for _, marker := range []string{"one rollback, one page", "a fleet of three, one rollback, one page"} {
		rollback := scenario(marker)
		for _, p := range pages {
			counts, ok := rollback[p]
			switch {
			case !ok:
				t.Errorf("%s: no expectation for the page %s", marker, p)
			case p == "CanaryRollbackRequired":
				if !slices.Contains(counts, 1) || slices.ContainsFunc(counts, func(n int) bool { return n > 1 }) {
					t.Errorf("%s: CanaryRollbackRequired expected %v alerts per evaluation; want exactly 1 while rolled back", marker, counts)
				}
			case slices.ContainsFunc(counts, func(n int) bool { return n != 0 }):
				t.Errorf("%s: %s expected to fire (%v); only CanaryRollbackRequired may", marker, p, counts)
			}
		}
	}
	manual := scenario("a rollback by hand does not page")
	for _, p := range pages {
		if counts, ok := manual[p]; !ok || slices.ContainsFunc(counts, func(n int) bool { return n != 0 }) {
			t.Errorf("a rollback by hand does not page: %s expectations %v (present %v); want only quiet ones", p, counts, ok)
		}
	}
	if counts := scenario("stable failing pages CanaryUnhealthy")["CanaryUnhealthy"]; !slices.Contains(counts, 1) {
		t.Errorf("stable failing: CanaryUnhealthy expected %v; want a firing case", counts)
	}
}

// expectedAlerts maps each alertname of one promtool test case to the number
// of alerts each of its eval_time entries expects.
func expectedAlerts(testCase string) map[string][]int {
	out := map[string][]int{}
	name := ""
	for _, l := range strings.Split(testCase, "\n") {
		l = strings.TrimSpace(l)
		switch {
		case strings.HasPrefix(l, "- eval_time:"):
			name = ""
		case strings.HasPrefix(l, "alertname: "):
			name = strings.TrimPrefix(l, "alertname: ")
			out[name] = append(out[name], 0)
		case name != "" && strings.HasPrefix(l, "- exp_labels:"):
			out[name][len(out[name])-1]++
		}
	}
	return out
}

// alertTestCases counts the alert_rule_test entries of a promtool test file
// that expect name to fire and those that expect it quiet.
func alertTestCases(tests, name string) (firing, quiet int) {
	lines := strings.Split(tests, "\n")
	for i, l := range lines {
		if strings.TrimSpace(l) != "alertname: "+name || i+1 == len(lines) {
			continue
		}
		switch strings.TrimSpace(lines[i+1]) {
		case "exp_alerts: []":
			quiet++
		case "exp_alerts:":
			firing++
		}
	}
	return firing, quiet
}

func TestPromtool(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("promtool not on PATH; install Prometheus (Debian: apt-get install prometheus) to check the rules")
	}
	names, err := alertNames()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"check config", []string{"check", "config", promConfigPath}, "SUCCESS"},
		{"check rules", []string{"check", "rules", alertsPath}, fmt.Sprintf("SUCCESS: %d rules found", len(names))},
		{"test rules", []string{"test", "rules", alertsTestPath}, "SUCCESS"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			out, err := exec.CommandContext(ctx, promtool, tt.args...).CombinedOutput()
			if err != nil || !strings.Contains(string(out), tt.want) {
				t.Fatalf("promtool %s: %v; want %q in output:\n%s", strings.Join(tt.args, " "), err, tt.want, out)
			}
		})
	}
}

func TestSplitComparison(t *testing.T) {
	tests := []struct {
		expr      string
		wantLeft  string
		wantRight string
		wantOK    bool
	}{
		{`up{job="canaryd"} == 0`, `up{job="canaryd"}`, `0`, true},
		{`sum(rate(a{code=~"5.."}[5m])) / sum(rate(a[5m])) > 0.05`, `sum(rate(a{code=~"5.."}[5m])) / sum(rate(a[5m]))`, `0.05`, true},
		{`(x > 1) or on (job) (y == 1)`, `(x > 1) or on (job) (y == 1)`, ``, false},
		{`a{l!="x"} >= 2`, `a{l!="x"}`, `2`, true},
		{`a{l="x>y"} <= bool 2`, `a{l="x>y"}`, `2`, true},
		{`a != 1`, `a`, `1`, true},
		{`(a / b) > on (job, instance) (max by (job, instance) (slo) or 0.01)`, `(a / b)`, `(max by (job, instance) (slo) or 0.01)`, true},
		{`a > on (job) group_left (verdict) b`, `a`, `b`, true},
		{`rate(a[5m])`, `rate(a[5m])`, ``, false},
	}
	for _, tt := range tests {
		left, right, ok := splitComparison(tt.expr)
		if left != tt.wantLeft || right != tt.wantRight || ok != tt.wantOK {
			t.Errorf("splitComparison(%q) = %q, %q, %v; want %q, %q, %v", tt.expr, left, right, ok, tt.wantLeft, tt.wantRight, tt.wantOK)
		}
	}
}

func TestSetOperands(t *testing.T) {
	tests := []struct {
		expr string
		want []string
	}{
		{`up == 0`, []string{`up == 0`}},
		{`(a > 1) unless on (job, instance) (b == 1)`, []string{`a > 1`, `b == 1`}},
		{`(max by (job, verdict) (v{verdict=~"rollback_.*"}) == 1) and on (job) (max by (job) (r) == 1)`,
			[]string{`max by (job, verdict) (v{verdict=~"rollback_.*"}) == 1`, `max by (job) (r) == 1`}},
		{`(x / y) > on (job) (max(s) or 0 * z + 0.01) unless on (job) (r == 1)`,
			[]string{`(x / y) > on (job) (max(s) or 0 * z + 0.01)`, `r == 1`}},
		{`a{l="x or y"} or b`, []string{`a{l="x or y"}`, `b`}},
		{`sort_desc(a) > 1`, []string{`sort_desc(a) > 1`}},
		{`(a) + (b)`, []string{`(a) + (b)`}},
	}
	for _, tt := range tests {
		if got := setOperands(tt.expr); !slices.Equal(got, tt.want) {
			t.Errorf("setOperands(%q) = %q; want %q", tt.expr, got, tt.want)
		}
	}
}

func TestExpandGrafanaVars(t *testing.T) {
	tests := []struct {
		expr string
		want string
	}{
		{`rate(x{job=~"$job"}[$__rate_interval])`, `rate(x{job=~".*"}[15s])`},
		{`increase(x{instance=~"${instance}"}[$__range])`, `increase(x{instance=~".*"}[15s])`},
		{`max(x)`, `max(x)`},
	}
	for _, tt := range tests {
		if got := expandGrafanaVars(tt.expr, "15s"); got != tt.want {
			t.Errorf("expandGrafanaVars(%q) = %q; want %q", tt.expr, got, tt.want)
		}
	}
}
