package deploy_test

import (
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"strings"
)

// Paths of the files under test, relative to this package's folder (go test's
// working directory).
const (
	dashboardPath  = "grafana/canaryd.json"
	alertsPath     = "prometheus/alerts.yml"
	alertsTestPath = "prometheus/alerts_test.yml"
	promConfigPath = "prometheus/prometheus.yml"
)

// loadDashboard decodes the dashboard into a generic JSON tree.
func loadDashboard() (map[string]any, error) {
	raw, err := os.ReadFile(dashboardPath)
	if err != nil {
		return nil, fmt.Errorf("read dashboard: %w", err)
	}
	var d map[string]any
	if err := json.Unmarshal(raw, &d); err != nil {
		return nil, fmt.Errorf("decode dashboard %s: %w", dashboardPath, err)
	}
	return d, nil
}

// dashboardExpr is one PromQL expression of the dashboard and where it is.
type dashboardExpr struct {
	where string // panel title and refId, or annotation name
	expr  string // as written, with Grafana variables
}

// dashboardExprs returns every "expr" of the dashboard: panel targets
// (including panels nested in rows) and annotation queries.
func dashboardExprs(d map[string]any) []dashboardExpr {
	var out []dashboardExpr
	var walkPanels func(panels []any)
	walkPanels = func(panels []any) {
		for _, p := range panels {
			pm, _ := p.(map[string]any)
			title, _ := pm["title"].(string)
			targets, _ := pm["targets"].([]any)
			for _, t := range targets {
				tm, _ := t.(map[string]any)
				if e, ok := tm["expr"].(string); ok {
					ref, _ := tm["refId"].(string)
					out = append(out, dashboardExpr{where: fmt.Sprintf("panel %q %s", title, ref), expr: e})
				}
			}
			if nested, ok := pm["panels"].([]any); ok {
				walkPanels(nested)
			}
		}
	}
	panels, _ := d["panels"].([]any)
	walkPanels(panels)
	if ann, ok := d["annotations"].(map[string]any); ok {
		list, _ := ann["list"].([]any)
		for _, a := range list {
			am, _ := a.(map[string]any)
			if e, ok := am["expr"].(string); ok {
				name, _ := am["name"].(string)
				out = append(out, dashboardExpr{where: fmt.Sprintf("annotation %q", name), expr: e})
			}
		}
	}
	return out
}

var grafanaVar = regexp.MustCompile(`\$\{?(\w+)\}?`)

// expandGrafanaVars turns a dashboard expression into plain PromQL the way
// Grafana would for a short time range on a 1s scrape interval: interval
// variables become rangeInterval, template variables (job, instance) match
// everything.
func expandGrafanaVars(expr, rangeInterval string) string {
	return grafanaVar.ReplaceAllStringFunc(expr, func(m string) string {
		name := strings.Trim(m, "${}")
		switch name {
		case "__rate_interval", "__interval", "__range":
			return rangeInterval
		case "__interval_ms", "__range_ms":
			return "15000"
		case "__range_s":
			return "15"
		default:
			return ".*"
		}
	})
}

var alertLine = regexp.MustCompile(`(?m)^\s*-\s*alert:\s*(\w+)\s*$`)

// alertNames returns the alert names of alerts.yml in file order.
func alertNames() ([]string, error) {
	raw, err := os.ReadFile(alertsPath)
	if err != nil {
		return nil, fmt.Errorf("read alerts: %w", err)
	}
	var names []string
	for _, m := range alertLine.FindAllStringSubmatch(string(raw), -1) {
		names = append(names, m[1])
	}
	return names, nil
}

// alertsWithSeverity returns the alerts of alerts.yml whose severity label
// is severity.
func alertsWithSeverity(severity string) ([]string, error) {
	raw, err := os.ReadFile(alertsPath)
	if err != nil {
		return nil, fmt.Errorf("read alerts: %w", err)
	}
	var out []string
	for _, b := range strings.Split(string(raw), "- alert: ")[1:] {
		name := strings.TrimSpace(strings.SplitN(b, "\n", 2)[0])
		if regexp.MustCompile(`(?m)^\s*severity:\s*` + regexp.QuoteMeta(severity) + `\s*$`).MatchString(b) {
			out = append(out, name)
		}
	}
	return out, nil
}

// knownMetrics are the metric names canaryd exports (README, "Prometheus,
// Grafana and alerts", and the
// packages' collectors) plus Prometheus' own up. Dashboard and alert
// expressions may only use these.
var knownMetrics = map[string]bool{
	"canary_requests_total":                  true,
	"canary_request_duration_seconds_bucket": true,
	"canary_request_duration_seconds_count":  true,
	"canary_request_duration_seconds_sum":    true,
	"canary_upstream_errors_total":           true,
	"canary_client_canceled_total":           true,
	"canary_responses_total":                 true,
	"canary_errors_total":                    true,
	"canary_retries_total":                   true,
	"canary_failovers_total":                 true,
	"canary_grpc_responses_total":            true,
	"canary_endpoints":                       true,
	"canary_endpoint_requests_total":         true,
	"canary_endpoint_errors_total":           true,
	"canary_endpoint_in_flight":              true,
	"canary_endpoint_ejected":                true,
	"canary_endpoint_ejections_total":        true,
	"canary_endpoint_healthy":                true,
	"canary_mirror_requests_total":           true,
	"canary_mirror_errors_total":             true,
	"canary_mirror_dropped_total":            true,
	"canary_mirror_skipped_total":            true,
	"canary_mirror_in_flight":                true,
	"canary_weight_ratio":                    true,
	"canary_rollback_required":               true,
	"canary_rollbacks_total":                 true,
	"canary_integrity_verified":              true,
	"canary_integrity_status":                true,
	"canary_state_persisted":                 true,
	"canary_state_persist_failures_total":    true,
	"canary_health_checks_total":             true,
	"canary_slo_error_rate_ratio":            true,
	"canary_slo_p95_seconds":                 true,
	"canary_overall_health":                  true,
	"canary_verdict":                         true,
	"canary_step":                            true,
	"canary_store_up":                        true,
	"canary_is_leader":                       true,
	"canary_fleet_replicas":                  true,
	"canary_fleet_info":                      true,
	"canary_admin_auth_failures_total":       true,
	"canary_progress_stalled":                true,
	"canary_webhook_deliveries_total":        true,
	"canary_admin_auth_rate_limited_total":   true,
	"process_cpu_seconds_total":              true,
	"process_resident_memory_bytes":          true,
	"go_goroutines":                          true,
	"go_memstats_heap_inuse_bytes":           true,
	"up":                                     true,
}

var metricSelector = regexp.MustCompile(`\b([a-zA-Z_:][a-zA-Z0-9_:]*)\s*\{`)

// selectedMetrics returns the metric names used with a label selector
// (name{...}) in expr. Every metric in our expressions carries one.
func selectedMetrics(expr string) []string {
	var out []string
	for _, m := range metricSelector.FindAllStringSubmatch(expr, -1) {
		switch m[1] {
		case "by", "without", "on", "ignoring", "group_left", "group_right":
			continue
		}
		out = append(out, m[1])
	}
	return out
}

// splitComparison splits expr at its outermost comparison (==, !=, >, <, >=,
// <=) into the compared quantity and the threshold, dropping the operator's
// modifiers (bool, on/ignoring, group_left/group_right). It returns expr, ""
// and false when expr has no comparison at the top level.
// "rate(x[5m]) / y > on (job) z" gives "rate(x[5m]) / y" and "z".
func splitComparison(expr string) (left, right string, ok bool) {
	scanTopLevel(expr, func(i int) int {
		c := expr[i]
		if c != '=' && c != '!' && c != '>' && c != '<' {
			return i + 1
		}
		next := byte(0)
		if i+1 < len(expr) {
			next = expr[i+1]
		}
		if (c == '=' || c == '!') && next != '=' {
			return i + 1 // "=" or "!" alone is no comparison
		}
		opEnd := i + 1
		if next == '=' {
			opEnd++
		}
		left, right, ok = strings.TrimSpace(expr[:i]), stripModifiers(expr[opEnd:]), true
		return -1
	})
	if !ok {
		return expr, "", false
	}
	return left, right, true
}

// scanTopLevel calls visit with the index of every byte of expr that stands
// outside quotes and brackets (the brackets themselves excluded); visit
// returns the index to go on from, or -1 to stop.
func scanTopLevel(expr string, visit func(i int) int) {
	depth := 0
	var quote byte
	for i := 0; i < len(expr); {
		c := expr[i]
		switch {
		case quote != 0:
			if c == '\\' && quote != '`' {
				i++
			} else if c == quote {
				quote = 0
			}
			i++
		case c == '"' || c == '\'' || c == '`':
			quote = c
			i++
		case c == '(' || c == '[' || c == '{':
			depth++
			i++
		case c == ')' || c == ']' || c == '}':
			depth--
			i++
		case depth != 0:
			i++
		default:
			if i = visit(i); i < 0 {
				return
			}
		}
	}
}

var comparisonModifiers = regexp.MustCompile(`^\s*(?:bool\b\s*)?(?:(?:on|ignoring)\s*\([^)]*\)\s*)?(?:(?:group_left|group_right)\s*(?:\([^)]*\))?\s*)?`)

// stripModifiers removes a comparison's modifiers from the start of its right operand.
func stripModifiers(right string) string {
	return strings.TrimSpace(comparisonModifiers.ReplaceAllString(right, ""))
}

// setOperands splits expr at its top-level set operators (and, or, unless,
// with their on/ignoring modifiers) and returns the operands without
// enclosing parentheses; an expression without one is its own operand.
// "(a > 1) unless on (job) (b == 1)" gives "a > 1" and "b == 1".
func setOperands(expr string) []string {
	var out []string
	last := 0
	scanTopLevel(expr, func(i int) int {
		if i > 0 && isIdentByte(expr[i-1]) {
			return i + 1
		}
		for _, op := range []string{"and", "or", "unless"} {
			end := i + len(op)
			if strings.HasPrefix(expr[i:], op) && (end == len(expr) || !isIdentByte(expr[end])) {
				out = append(out, unparen(expr[last:i]))
				last = end + len(setModifiers.FindString(expr[end:]))
				return last
			}
		}
		return i + 1
	})
	return append(out, unparen(expr[last:]))
}

var setModifiers = regexp.MustCompile(`^\s*(?:(?:on|ignoring)\s*\([^)]*\))?`)

func isIdentByte(c byte) bool {
	return c == '_' || c == ':' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')
}

// unparen trims s and removes parentheses that enclose all of it.
func unparen(s string) string {
	s = strings.TrimSpace(s)
	for len(s) >= 2 && s[0] == '(' && s[len(s)-1] == ')' {
		depth := 0
		for i := 0; i < len(s); i++ {
			switch s[i] {
			case '(':
				depth++
			case ')':
				depth--
			}
			if depth == 0 && i < len(s)-1 {
				return s // the first parenthesis closes before the end
			}
		}
		s = strings.TrimSpace(s[1 : len(s)-1])
	}
	return s
}
