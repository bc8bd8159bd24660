package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/caarlos0/env/v11"
	"github.com/rs/zerolog"

	"github.com/canaryd/canaryd/admin"
	"github.com/canaryd/canaryd/guard"
	"github.com/canaryd/canaryd/guard/etcdstore"
	"github.com/canaryd/canaryd/guard/judge"
	"github.com/canaryd/canaryd/guard/metricgate"
	"github.com/canaryd/canaryd/guard/notify"
	"github.com/canaryd/canaryd/proxy"
	"github.com/canaryd/canaryd/split"
)

// config is every CANARY_* variable, parsed once. It is the one list of
// variables: the unknown-variable check, `canaryd --help` and the README's
// configuration table (checked by TestREADMEConfigurationTable) all follow it.
//
// Adding a variable is one line here, in the group it belongs to (a
// `_ struct{} group:"…"` line starts a group), with `env` and a short
// `help`; its default in defaults when a package owns the value (the
// package's exported Default…), or an `envDefault` tag when only canaryd
// itself has a use for it (a listener's address, a log setting); then its
// validation in loadConfig (a value a package owns: the package's
// Validate… function in loadConfig's table, which names the variable), and
// a row in the README table under the same group.
type config struct {
	_           struct{} `group:"Backends and listeners"`
	StableURL   string   `env:"CANARY_STABLE_URL,required" help:"stable backend: a URL or a comma-separated pool of URLs, http://, https:// or h2c:// (one scheme per backend), a path prefix allowed"`
	CanaryURL   string   `env:"CANARY_CANARY_URL,required" help:"canary backend, the same way; must share no URL with stable"`
	Listen      string   `env:"CANARY_LISTEN" envDefault:":8080" help:"traffic listener (every path is proxied)"`
	H2C         bool     `env:"CANARY_H2C" envDefault:"false" help:"the traffic listener also accepts plaintext HTTP/2 (prior knowledge, as gRPC clients send it)"`
	AdminListen string   `env:"CANARY_ADMIN_LISTEN" envDefault:":8000" help:"admin listener (API, /metrics, /dashboard)"`

	_                        struct{}      `group:"Pools"`
	LB                       string        `env:"CANARY_LB" help:"how a backend's pool picks an endpoint: least_request (two random choices, fewer in flight) or round_robin"`
	DNSRefresh               time.Duration `env:"CANARY_DNS_REFRESH" help:"backend host names are resolved again this often; each address is an endpoint"`
	EjectConsecutiveFailures int           `env:"CANARY_EJECT_CONSECUTIVE_FAILURES" help:"failures in a row (connect failures or errors) that eject an endpoint from its pool; 0 = never"`
	EjectTime                time.Duration `env:"CANARY_EJECT_TIME" help:"how long a first ejection lasts; each repeat doubles it, up to 5m"`

	_ struct{} `group:"Admin API and command line"`
	// ClientConfig holds the variables canaryd check and canaryd rollout
	// read as well.
	ClientConfig
	TokensFile string `env:"CANARY_TOKENS_FILE" help:"named admin tokens, a line NAME ROLE TOKEN each (roles read, operate); reloaded on change and SIGHUP"`

	_              struct{} `group:"Rollout"`
	Weight         string   `env:"CANARY_WEIGHT" envDefault:"10" help:"percent of requests sent to the canary, 0-100, two decimals"`
	Steps          string   `env:"CANARY_STEPS" help:"staged plan weight@observe,… e.g. 5@15m,25@30m,100@1h; empty = fixed weight"`
	Release        string   `env:"CANARY_RELEASE" help:"release id; a new id starts a fresh rollout"`
	StickyKey      string   `env:"CANARY_STICKY_KEY" help:"cookie:NAME or header:NAME: the same value always gets the same backend"`
	OverrideHeader string   `env:"CANARY_OVERRIDE_HEADER" help:"header whose value always/never forces the canary"`
	StateFile      string   `env:"CANARY_STATE_FILE" envDefault:"canaryd-state.json" help:"rollout state, written atomically, read at start"`

	_               struct{}      `group:"Cohorts, sticky users and shadow traffic"`
	Match           string        `env:"CANARY_MATCH" help:"cohort: comma-separated header:NAME=VALUE, header:NAME~REGEX, cookie:NAME=VALUE, path:/PREFIX, cidr:NET; a match goes to the canary at any weight"`
	TrustedProxies  string        `env:"CANARY_TRUSTED_PROXIES" help:"networks or addresses of proxies whose X-Forwarded-For (cidr conditions) and X-Forwarded-Proto are believed"`
	StickySetCookie bool          `env:"CANARY_STICKY_SET_COOKIE" envDefault:"false" help:"true: a request without the CANARY_STICKY_KEY cookie gets a fresh id in Set-Cookie, routed by it at once"`
	StickyMaxAge    time.Duration `env:"CANARY_STICKY_MAX_AGE" help:"Max-Age of that cookie (whole seconds)"`
	MirrorPercent   string        `env:"CANARY_MIRROR_PERCENT" envDefault:"0" help:"percent of stable's requests also sent to the canary in the background (shadow traffic), 0-100"`
	MirrorMethods   string        `env:"CANARY_MIRROR_METHODS" help:"methods copied (default GET,HEAD,OPTIONS), e.g. GET,HEAD,OPTIONS,POST"`

	_                struct{}      `group:"Fleet"`
	EtcdEndpoints    string        `env:"CANARY_ETCD_ENDPOINTS" help:"comma-separated etcd client URLs; set, the rollout lives in etcd (CANARY_STATE_FILE unused)"`
	EtcdPrefix       string        `env:"CANARY_ETCD_PREFIX" help:"key prefix: the replicas with the same prefix are one fleet"`
	EtcdCAFile       string        `env:"CANARY_ETCD_CA_FILE" help:"CA bundle (PEM) etcd's certificate is checked against"`
	EtcdCertFile     string        `env:"CANARY_ETCD_CERT_FILE" help:"client certificate (PEM) for etcd"`
	EtcdKeyFile      string        `env:"CANARY_ETCD_KEY_FILE" help:"its private key (PEM)"`
	EtcdUsername     string        `env:"CANARY_ETCD_USERNAME" help:"etcd user name"`
	EtcdPasswordFile string        `env:"CANARY_ETCD_PASSWORD_FILE" help:"file holding the etcd password (trailing newline trimmed)"`
	EtcdLeaseTTL     time.Duration `env:"CANARY_ETCD_LEASE_TTL" help:"a replica's lease in etcd: a dead leader is replaced within this"`
	ReplicaID        string        `env:"CANARY_REPLICA_ID" help:"this replica's name in the fleet (default: host name and admin port)"`

	_              struct{}      `group:"Judging"`
	SLOErrorRate   float64       `env:"CANARY_SLO_ERROR_RATE" envDefault:"0.01" help:"maximum canary error rate (fraction)"`
	SLOP95         time.Duration `env:"CANARY_SLO_P95" help:"maximum canary p95 latency"`
	SLOWindow      time.Duration `env:"CANARY_SLO_WINDOW" help:"sliding window of the figures and the window judge"`
	SLOMinRequests uint64        `env:"CANARY_SLO_MIN_REQUESTS" envDefault:"100" help:"canary requests before a proceed verdict"`
	EvalInterval   time.Duration `env:"CANARY_EVAL_INTERVAL" help:"how often the guard judges"`
	Judge          string        `env:"CANARY_JUDGE" envDefault:"sequential" help:"sequential (anytime-valid tests) or window (thresholds)"`
	Alpha          float64       `env:"CANARY_ALPHA" help:"most probability of rolling back a canary that meets its SLO"`
	Compare        string        `env:"CANARY_COMPARE" envDefault:"hold" help:"a canary significantly worse than stable within its SLO: hold the plan, or rollback"`
	CompareMargin  float64       `env:"CANARY_COMPARE_MARGIN" help:"how much worse than stable the comparison tolerates, as a fraction (0.5 = 50%)"`
	ErrorStatuses  string        `env:"CANARY_ERROR_STATUSES" help:"HTTP statuses that count as errors: classes and codes, e.g. 5xx,429"`
	GRPCErrorCodes string        `env:"CANARY_GRPC_ERROR_CODES" help:"gRPC statuses that count as errors, numbers or names"`

	_                 struct{}      `group:"Release integrity"`
	IntegrityManifest string        `env:"CANARY_INTEGRITY_MANIFEST" help:"sha256sum manifest of the canary's release files"`
	IntegrityRoot     string        `env:"CANARY_INTEGRITY_ROOT" help:"folder the manifest's paths are rooted at (default: the manifest's folder)"`
	IntegrityInterval time.Duration `env:"CANARY_INTEGRITY_INTERVAL" help:"re-verification period"`

	_                      struct{}      `group:"Integrations"`
	WebhookURL             string        `env:"CANARY_WEBHOOK_URL" help:"POST a JSON event for every rollout transition here (http:// or https://)"`
	WebhookSecret          string        `env:"CANARY_WEBHOOK_SECRET" help:"sign webhook and confirmation bodies (X-Canaryd-Signature: sha256=HMAC), 16+ characters"`
	WebhookSecretFile      string        `env:"CANARY_WEBHOOK_SECRET_FILE" help:"file holding the secret instead (trailing newline trimmed)"`
	WebhookFormat          string        `env:"CANARY_WEBHOOK_FORMAT" envDefault:"json" help:"json (canaryd's event) or slack (an incoming-webhook message)"`
	ConfirmURL             string        `env:"CANARY_CONFIRM_URL" help:"asked before each step advance and complete: a 2xx answer proceeds, anything else holds"`
	ProgressDeadline       time.Duration `env:"CANARY_PROGRESS_DEADLINE" help:"a step that has not advanced within this is stalled (or rolled back); empty or 0 = off"`
	ProgressDeadlineAction string        `env:"CANARY_PROGRESS_DEADLINE_ACTION" envDefault:"stall" help:"stall (a reason, a metric, an alert) or rollback (rollback_deadline)"`
	PrometheusURL          string        `env:"CANARY_PROMETHEUS_URL" help:"Prometheus base URL the metric gates are queried at"`
	MetricGates            string        `env:"CANARY_METRIC_GATES" help:"JSON file of metric gates: [{name, query, max and/or min, for}]"`
	MetricGateInterval     time.Duration `env:"CANARY_METRIC_GATE_INTERVAL" help:"how often the metric gates are checked"`

	_              struct{} `group:"TLS"`
	TLSCertFile    string   `env:"CANARY_TLS_CERT_FILE" help:"certificate (PEM) for TLS on both listeners; reloaded on change and SIGHUP"`
	TLSKeyFile     string   `env:"CANARY_TLS_KEY_FILE" help:"its private key (PEM)"`
	UpstreamCAFile string   `env:"CANARY_UPSTREAM_CA_FILE" help:"CA bundle (PEM) for https:// backends (default: system roots)"`

	_              struct{}      `group:"Health checks"`
	HealthPath     string        `env:"CANARY_HEALTH_PATH" help:"active health check path on every endpoint of both backends, e.g. /healthz; empty = off"`
	HealthInterval time.Duration `env:"CANARY_HEALTH_INTERVAL" help:"active health check period"`

	_         struct{} `group:"Logging"`
	AccessLog bool     `env:"CANARY_ACCESS_LOG" envDefault:"false" help:"one log line per proxied request"`
	LogLevel  string   `env:"CANARY_LOG_LEVEL" envDefault:"info" help:"trace, debug, info, warn or error"`
	LogFormat string   `env:"CANARY_LOG_FORMAT" envDefault:"json" help:"json or console"`

	_                      struct{}      `group:"Limits and timeouts"`
	ShutdownTimeout        time.Duration `env:"CANARY_SHUTDOWN_TIMEOUT" envDefault:"30s" help:"how long SIGTERM waits for in-flight requests"`
	ReadHeaderTimeout      time.Duration `env:"CANARY_READ_HEADER_TIMEOUT" envDefault:"10s" help:"a client must send its request headers within this"`
	IdleTimeout            time.Duration `env:"CANARY_IDLE_TIMEOUT" envDefault:"75s" help:"idle keep-alive client connections are closed after this"`
	MaxHeaderBytes         int           `env:"CANARY_MAX_HEADER_BYTES" envDefault:"65536" help:"larger request headers are answered 431"`
	UpstreamTimeout        time.Duration `env:"CANARY_UPSTREAM_TIMEOUT" help:"wait for a backend's response headers; then 504"`
	MaxConnsPerBackend     int           `env:"CANARY_MAX_CONNS_PER_BACKEND" help:"cap on concurrent upstream connections per backend"`
	MaxResponseHeaderBytes int           `env:"CANARY_MAX_RESPONSE_HEADER_BYTES" help:"a backend answer with a larger header block is a 502 and the backend's error"`
	RequestBuffer          int           `env:"CANARY_REQUEST_BUFFER" help:"request body bytes read before an upstream connection is taken"`
	BodyReadTimeout        time.Duration `env:"CANARY_BODY_READ_TIMEOUT" help:"a client must send each CANARY_REQUEST_BUFFER bytes of a body within this"`
	FastPath               onOff         `env:"CANARY_FAST_PATH" envDefault:"on" help:"off serves plaintext traffic with net/http's server and every request through the standard path (httputil.ReverseProxy)"`

	_           struct{} `group:"Profiling"`
	PprofListen string   `env:"CANARY_PPROF_LISTEN" help:"loopback host:port serving /debug/pprof/; empty = off"`

	// Derived by loadConfig.
	stable, canary []*url.URL
	lb             proxy.LoadBalancer
	errorStatuses  proxy.StatusSet
	grpcErrorCodes proxy.GRPCCodes
	weight         uint32
	steps          []guard.Step
	compare        judge.Compare
	level          zerolog.Level
	upstreamTLS    *tls.Config
	tlsEnabled     bool
	tokens         []admin.Token     // every admin token, the default one first
	tokenStamp     string            // the token files' stamp when tokens were read
	etcd           *etcdstore.Config // nil: single instance with the state file
	webhookSecret  []byte            // CANARY_WEBHOOK_SECRET or its file; nil: unsigned
	webhookFormat  notify.Format
	deadlineAction guard.DeadlineAction
	metricGates    []metricgate.Gate // nil: no metric gates
	match          []split.Condition // the cohort; nil: none
	trustedProxies []netip.Prefix
	mirrorPercent  uint32   // hundredths of a percent
	mirrorMethods  []string // nil: the default
}

// tokenSources are the variables the admin tokens come from.
func (c *config) tokenSources() tokenSources {
	return tokenSources{token: c.Token, tokenFile: c.TokenFile, tokensFile: c.TokensFile}
}

// ClientConfig is what the command-line clients (canaryd check, canaryd
// rollout) read; the server reads the token from it too.
type ClientConfig struct {
	Token     string `env:"CANARY_TOKEN" help:"admin API bearer token, 16+ visible ASCII characters (or CANARY_TOKEN_FILE); canaryd serves it as the operate token named default"`
	TokenFile string `env:"CANARY_TOKEN_FILE" help:"file holding the token (trailing newline trimmed)"`
	AdminURL  string `env:"CANARY_ADMIN_URL" envDefault:"http://127.0.0.1:8000" help:"where canaryd check and canaryd rollout find a running canaryd"`
}

// configError names the variable that is wrong; main prints it on one line
// and exits 2.
type configError struct {
	Var string
	Err error
}

func (e *configError) Error() string { return e.Var + ": " + e.Err.Error() }
func (e *configError) Unwrap() error { return e.Err }

func bad(name string, format string, args ...any) error {
	return &configError{Var: name, Err: fmt.Errorf(format, args...)}
}

// variable is one CANARY_* variable as declared by a struct tag.
type variable struct {
	Name     string
	Default  string // "" when it has none
	Required bool
	Help     string
	Group    string
}

// variablesOf lists the tagged variables of the struct s (embedded
// structs included) in declaration order, each with the group its nearest
// preceding `_ struct{} group:"…"` field names.
func variablesOf(s reflect.Value) []variable {
	var out []variable
	var walk func(s reflect.Value, group string) string
	walk = func(s reflect.Value, group string) string {
		t := s.Type()
		for i := range t.NumField() {
			f := t.Field(i)
			if g, ok := f.Tag.Lookup("group"); ok && f.Name == "_" {
				group = g
				continue
			}
			if f.Anonymous && f.Type.Kind() == reflect.Struct {
				group = walk(s.Field(i), group)
				continue
			}
			tag, ok := f.Tag.Lookup("env")
			if !ok {
				continue
			}
			name, opts, _ := strings.Cut(tag, ",")
			v := variable{Name: name, Help: f.Tag.Get("help"), Group: group}
			v.Default = f.Tag.Get("envDefault")
			if _, tagged := f.Tag.Lookup("envDefault"); !tagged {
				v.Default = formatDefault(s.Field(i))
			}
			v.Required = strings.Contains(","+opts+",", ",required,")
			out = append(out, v)
		}
		return group
	}
	walk(s, "")
	return out
}

// formatDefault writes a default set in defaults as the environment would
// spell it ("" for none): durations the short way (5m, not 5m0s).
func formatDefault(f reflect.Value) string {
	if f.IsZero() {
		return ""
	}
	switch x := f.Interface().(type) {
	case time.Duration:
		s := x.String()
		if strings.HasSuffix(s, "m0s") {
			s = strings.TrimSuffix(s, "0s")
		}
		if strings.HasSuffix(s, "h0m") {
			s = strings.TrimSuffix(s, "0m")
		}
		return s
	case float64:
		return strconv.FormatFloat(x, 'g', -1, 64)
	}
	return fmt.Sprint(f.Interface())
}

// defaults is the configuration before the environment is read. A value
// that a package owns comes from that package, so that it is written once:
// the package's zero-value behaviour, canaryd's default, `canaryd --help`
// and the README's table (checked against this) cannot disagree.
func defaults() config {
	return config{
		LB:                       proxy.LeastRequest.String(),
		DNSRefresh:               proxy.DefaultDNSRefresh,
		EjectConsecutiveFailures: proxy.DefaultEjectConsecutiveFailures,
		EjectTime:                proxy.DefaultEjectTime,
		StickyMaxAge:             split.DefaultCookieMaxAge,
		EtcdPrefix:               etcdstore.DefaultPrefix,
		EtcdLeaseTTL:             etcdstore.DefaultLeaseTTL,
		// The latency SLO is the proxy's threshold for a slow request.
		SLOP95:                 proxy.DefaultSlowThreshold,
		SLOWindow:              proxy.DefaultWindow,
		EvalInterval:           guard.DefaultEvalInterval,
		Alpha:                  judge.DefaultAlpha,
		CompareMargin:          judge.DefaultMargin,
		ErrorStatuses:          proxy.StatusSet{}.String(),
		GRPCErrorCodes:         proxy.DefaultGRPCErrorCodes.String(),
		IntegrityInterval:      guard.DefaultIntegrityInterval,
		MetricGateInterval:     guard.DefaultMetricGateInterval,
		HealthInterval:         proxy.DefaultHealthInterval,
		UpstreamTimeout:        proxy.DefaultResponseHeaderTimeout,
		MaxConnsPerBackend:     proxy.DefaultMaxConnsPerBackend,
		MaxResponseHeaderBytes: proxy.DefaultMaxResponseHeaderBytes,
		RequestBuffer:          proxy.DefaultRequestBuffer,
		BodyReadTimeout:        proxy.DefaultBodyReadTimeout,
	}
}

// knownVariables is every variable canaryd reads, from config's tags: the
// server's, and the clients' (embedded in config).
func knownVariables() []variable { return variablesOf(reflect.ValueOf(defaults())) }

// varPrefix marks the variables canaryd owns; any other one with this prefix
// is a typo or a leftover, and refused.
const varPrefix = "CANARY_"

// checkUnknown refuses a CANARY_* variable that canaryd does not read,
// suggesting the closest known name. Kubernetes' service links for a
// Service called "canary…" (CANARY_SERVICE_HOST, CANARY_PORT_80_TCP, …) are
// not canaryd's and pass.
func checkUnknown(envMap map[string]string) error {
	known := knownVariables()
	names := make(map[string]bool, len(known))
	for _, v := range known {
		names[v.Name] = true
	}
	var unknown []string
	for k, val := range envMap {
		if strings.HasPrefix(k, varPrefix) && !names[k] && !isServiceLink(k, val) {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) == 0 {
		return nil
	}
	// The first in alphabetical order, so the message does not depend on the
	// map's order.
	name := unknown[0]
	for _, u := range unknown[1:] {
		name = min(name, u)
	}
	more := ""
	if len(unknown) > 1 {
		more = fmt.Sprintf(" (and %d more unknown CANARY_* variables)", len(unknown)-1)
	}
	if s := closest(name, known); s != "" {
		return bad(name, "unknown variable; did you mean %s?%s", s, more)
	}
	return bad(name, "unknown variable; canaryd --help lists them all%s", more)
}

// isServiceLink reports whether name=value is one of the variables
// Kubernetes injects for a Service (docker links' format): NAME_SERVICE_HOST,
// NAME_SERVICE_PORT[_PORTNAME], NAME_PORT=tcp://…, NAME_PORT_80_TCP[_PROTO|_PORT|_ADDR].
func isServiceLink(name, value string) bool {
	if strings.HasSuffix(name, "_SERVICE_HOST") || strings.Contains(name, "_SERVICE_PORT") {
		return true
	}
	// NAME_PORT_80_TCP, then _PROTO, _PORT or _ADDR
	for i := strings.Index(name, "_PORT_"); i >= 0; {
		parts := strings.Split(name[i+len("_PORT_"):], "_")
		if len(parts) >= 2 && len(parts) <= 3 && allDigits(parts[0]) &&
			(parts[1] == "TCP" || parts[1] == "UDP" || parts[1] == "SCTP") &&
			(len(parts) == 2 || parts[2] == "PROTO" || parts[2] == "PORT" || parts[2] == "ADDR") {
			return true
		}
		next := strings.Index(name[i+1:], "_PORT_")
		if next < 0 {
			break
		}
		i += 1 + next
	}
	return strings.HasSuffix(name, "_PORT") && strings.Contains(value, "://")
}

func allDigits(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range []byte(s) {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// closest returns the known name nearest to name by edit distance
// (transpositions count once) when it is near enough to be a typo, else "".
func closest(name string, known []variable) string {
	suffix := strings.TrimPrefix(name, varPrefix)
	best, bestDist := "", len(suffix)
	for _, v := range known {
		d := editDistance(suffix, strings.TrimPrefix(v.Name, varPrefix))
		if d < bestDist {
			best, bestDist = v.Name, d
		}
	}
	// Two edits, more for long names: CANARY_WIEGHT → CANARY_WEIGHT (1),
	// CANARY_SLO_P59 → CANARY_SLO_P95 (1), CANARY_HEALTHPATH → … (1).
	if bestDist <= max(2, len(suffix)/4) {
		return best
	}
	return ""
}

// editDistance is the optimal-string-alignment distance between a and b:
// insertions, deletions, substitutions and adjacent transpositions.
func editDistance(a, b string) int {
	prev2 := make([]int, len(b)+1)
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				cur[j] = min(cur[j], prev2[j-2]+1)
			}
		}
		prev2, prev, cur = prev, cur, prev2
	}
	return prev[len(b)]
}

// parseEnv fills the tagged fields of v from environ (KEY=value entries),
// translating caarlos0/env's errors, which name struct fields, into errors
// naming the variable. Any CANARY_* variable canaryd does not know is an
// error first, whatever v is: a typo must never fall back to a default.
func parseEnv(v any, environ []string) error {
	envMap := env.ToMap(environ)
	if err := checkUnknown(envMap); err != nil {
		return err
	}
	// A variable that has a default but is set to nothing is a mistake
	// (CANARY_WEIGHT= from a template with a missing value), not a request
	// for the default.
	for _, f := range variablesOf(reflect.ValueOf(v).Elem()) {
		if val, set := envMap[f.Name]; set && val == "" && f.Default != "" {
			return bad(f.Name, "is set but empty; unset it to use the default (%s)", f.Default)
		}
	}
	err := env.ParseWithOptions(v, env.Options{Environment: envMap})
	if err == nil {
		return nil
	}
	var agg env.AggregateError
	errs := []error{err}
	if errors.As(err, &agg) {
		errs = agg.Errors
	}
	first := errs[0]
	var (
		notSet env.VarIsNotSetError
		empty  env.EmptyVarError
		perr   env.ParseError
	)
	switch {
	case errors.As(first, &notSet):
		return bad(notSet.Key, "required but not set")
	case errors.As(first, &empty):
		return bad(empty.Key, "must not be empty")
	case errors.As(first, &perr):
		name := perr.Name
		if f, ok := reflect.TypeOf(v).Elem().FieldByName(perr.Name); ok {
			name, _, _ = strings.Cut(f.Tag.Get("env"), ",")
		}
		return bad(name, "%q is not a valid %s", envMap[name], kindName(perr.Type))
	}
	return fmt.Errorf("configuration: %w", first)
}

// onOff is a switch written on or off (CANARY_FAST_PATH).
type onOff bool

// UnmarshalText implements encoding.TextUnmarshaler for caarlos0/env.
func (o *onOff) UnmarshalText(b []byte) error {
	switch string(b) {
	case "on":
		*o = true
	case "off":
		*o = false
	default:
		return fmt.Errorf("%q is not on or off", b)
	}
	return nil
}

func kindName(t reflect.Type) string {
	switch {
	case t == reflect.TypeFor[onOff]():
		return "switch (on or off)"
	case t == reflect.TypeFor[time.Duration]():
		return "duration (e.g. 500ms, 5m)"
	case t.Kind() == reflect.Bool:
		return "boolean (true or false)"
	case t.Kind() == reflect.Float64:
		return "number"
	case t.Kind() >= reflect.Int && t.Kind() <= reflect.Uint64:
		return "whole number"
	}
	return t.String()
}

// loadConfig parses and validates the environment. Every error names its
// variable.
func loadConfig(environ []string) (*config, error) {
	d := defaults()
	c := &d
	if err := parseEnv(c, environ); err != nil {
		return nil, err
	}
	var err error
	if c.stable, err = backendURLs("CANARY_STABLE_URL", c.StableURL); err != nil {
		return nil, err
	}
	if c.canary, err = backendURLs("CANARY_CANARY_URL", c.CanaryURL); err != nil {
		return nil, err
	}
	if err := proxy.ValidateBackendsDiffer(c.stable, c.canary); err != nil {
		return nil, bad("CANARY_CANARY_URL", "%v", err)
	}
	if c.lb, err = proxy.ParseLoadBalancer(c.LB); err != nil {
		return nil, bad("CANARY_LB", "%v", err)
	}
	if c.errorStatuses, err = proxy.ParseStatusSet(c.ErrorStatuses); err != nil {
		return nil, bad("CANARY_ERROR_STATUSES", "%v", err)
	}
	if c.grpcErrorCodes, err = proxy.ParseGRPCCodes(c.GRPCErrorCodes); err != nil {
		return nil, bad("CANARY_GRPC_ERROR_CODES", "%v", err)
	}
	c.tokenStamp = c.tokenSources().stamp()
	if c.tokens, err = c.tokenSources().read(); err != nil {
		return nil, err
	}
	for name, addr := range map[string]string{"CANARY_LISTEN": c.Listen, "CANARY_ADMIN_LISTEN": c.AdminListen} {
		if _, _, err := net.SplitHostPort(addr); err != nil {
			return nil, bad(name, "%q is not a host:port address", addr)
		}
	}
	if c.PprofListen != "" {
		if host, _, err := net.SplitHostPort(c.PprofListen); err != nil || !isLoopback(host) {
			return nil, bad("CANARY_PPROF_LISTEN", "%q must be a loopback host:port (profiles expose internals)", c.PprofListen)
		}
	}
	if _, port, _ := net.SplitHostPort(c.Listen); c.Listen == c.AdminListen && port != "0" {
		return nil, bad("CANARY_ADMIN_LISTEN", "must differ from CANARY_LISTEN")
	}
	if c.weight, err = split.ParsePercent(c.Weight); err != nil {
		return nil, bad("CANARY_WEIGHT", "%v", err)
	}
	if c.Steps != "" {
		if c.steps, err = guard.ParseSteps(c.Steps); err != nil {
			return nil, bad("CANARY_STEPS", "%v", err)
		}
	}
	// The rules of the values a package owns are that package's; an
	// explicit 0 is judged like any value (a zero field there means the
	// default, which the environment spells by leaving the variable unset).
	for _, v := range []struct {
		name string
		err  error
	}{
		{"CANARY_SLO_ERROR_RATE", judge.ValidateErrorRate(c.SLOErrorRate)},
		{"CANARY_SLO_P95", judge.ValidateP95(c.SLOP95)},
		{"CANARY_SLO_WINDOW", proxy.ValidateWindow(c.SLOWindow)},
		{"CANARY_SLO_MIN_REQUESTS", judge.ValidateMinRequests(c.SLOMinRequests)},
		{"CANARY_EVAL_INTERVAL", guard.ValidateEvalInterval(c.EvalInterval)},
		{"CANARY_INTEGRITY_INTERVAL", guard.ValidateIntegrityInterval(c.IntegrityInterval)},
		{"CANARY_JUDGE", guard.ValidateJudge(c.Judge)},
		{"CANARY_ALPHA", judge.ValidateAlpha(c.Alpha)},
		{"CANARY_COMPARE_MARGIN", judge.ValidateMargin(c.CompareMargin)},
		{"CANARY_HEALTH_INTERVAL", proxy.ValidateHealthInterval(c.HealthInterval)},
		{"CANARY_HEALTH_PATH", proxy.ValidateHealthPath(c.HealthPath)},
		{"CANARY_UPSTREAM_TIMEOUT", proxy.ValidateResponseHeaderTimeout(c.UpstreamTimeout)},
		{"CANARY_MAX_CONNS_PER_BACKEND", proxy.ValidateMaxConnsPerBackend(c.MaxConnsPerBackend)},
		{"CANARY_MAX_RESPONSE_HEADER_BYTES", proxy.ValidateMaxResponseHeaderBytes(c.MaxResponseHeaderBytes)},
		{"CANARY_REQUEST_BUFFER", proxy.ValidateRequestBuffer(c.RequestBuffer)},
		{"CANARY_BODY_READ_TIMEOUT", proxy.ValidateBodyReadTimeout(c.BodyReadTimeout)},
		{"CANARY_DNS_REFRESH", proxy.ValidateDNSRefresh(c.DNSRefresh)},
		{"CANARY_EJECT_TIME", proxy.ValidateEjectTime(c.EjectTime)},
		{"CANARY_STICKY_KEY", split.ValidateStickyKey(c.StickyKey)},
		{"CANARY_OVERRIDE_HEADER", split.ValidateOverrideHeader(c.OverrideHeader)},
	} {
		if v.err != nil {
			return nil, bad(v.name, "%v", v.err)
		}
	}
	// canaryd's own values.
	switch {
	case c.ShutdownTimeout < 0:
		return nil, bad("CANARY_SHUTDOWN_TIMEOUT", "must not be negative")
	case c.StateFile == "":
		return nil, bad("CANARY_STATE_FILE", "must not be empty")
	case c.ReadHeaderTimeout <= 0:
		return nil, bad("CANARY_READ_HEADER_TIMEOUT", "must be positive")
	case c.IdleTimeout <= 0:
		return nil, bad("CANARY_IDLE_TIMEOUT", "must be positive")
	case c.MaxHeaderBytes < 4096:
		return nil, bad("CANARY_MAX_HEADER_BYTES", "must be at least 4096")
	case c.EjectConsecutiveFailures < 0:
		// 0 spells "never" here (ejectAfter), a negative count nothing.
		return nil, bad("CANARY_EJECT_CONSECUTIVE_FAILURES", "must not be negative (0 = never eject)")
	}
	if c.compare, err = judge.ParseCompare(c.Compare); err != nil {
		return nil, bad("CANARY_COMPARE", "%q must be hold or rollback", c.Compare)
	}
	if err := loadCohorts(c); err != nil {
		return nil, err
	}
	if c.IntegrityManifest != "" && c.IntegrityRoot == "" {
		c.IntegrityRoot = filepath.Dir(c.IntegrityManifest)
	}
	if c.level, err = zerolog.ParseLevel(strings.ToLower(c.LogLevel)); err != nil || c.LogLevel == "" {
		return nil, bad("CANARY_LOG_LEVEL", "%q must be one of trace, debug, info, warn, error", c.LogLevel)
	}
	if c.LogFormat != "json" && c.LogFormat != "console" {
		return nil, bad("CANARY_LOG_FORMAT", "%q must be json or console", c.LogFormat)
	}
	if (c.TLSCertFile == "") != (c.TLSKeyFile == "") {
		return nil, bad("CANARY_TLS_KEY_FILE", "CANARY_TLS_CERT_FILE and CANARY_TLS_KEY_FILE go together")
	}
	if c.TLSCertFile != "" {
		if _, err := tls.LoadX509KeyPair(c.TLSCertFile, c.TLSKeyFile); err != nil {
			return nil, bad("CANARY_TLS_CERT_FILE", "cannot load the key pair: %v", err)
		}
		c.tlsEnabled = true
		if c.H2C {
			return nil, bad("CANARY_H2C", "is for a plaintext traffic listener; with TLS (CANARY_TLS_CERT_FILE) clients get HTTP/2 by ALPN: unset CANARY_H2C")
		}
	}
	if err := loadFleet(c); err != nil {
		return nil, err
	}
	if err := loadIntegrations(c); err != nil {
		return nil, err
	}
	if c.UpstreamCAFile != "" {
		pem, err := os.ReadFile(c.UpstreamCAFile)
		if err != nil {
			return nil, bad("CANARY_UPSTREAM_CA_FILE", "%v", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, bad("CANARY_UPSTREAM_CA_FILE", "%s holds no PEM certificate", c.UpstreamCAFile)
		}
		c.upstreamTLS = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	return c, nil
}

// loadFleet checks the fleet's variables and, with CANARY_ETCD_ENDPOINTS,
// prepares the etcd store's configuration (the replica id is completed
// when the admin listener is bound).
func loadFleet(c *config) error {
	if c.ReplicaID != "" {
		if err := etcdstore.ValidateReplicaID(c.ReplicaID); err != nil {
			return bad("CANARY_REPLICA_ID", "%v", err)
		}
	}
	if c.EtcdEndpoints == "" {
		for name, v := range map[string]string{"CANARY_ETCD_CA_FILE": c.EtcdCAFile, "CANARY_ETCD_CERT_FILE": c.EtcdCertFile,
			"CANARY_ETCD_KEY_FILE": c.EtcdKeyFile, "CANARY_ETCD_USERNAME": c.EtcdUsername, "CANARY_ETCD_PASSWORD_FILE": c.EtcdPasswordFile} {
			if v != "" {
				return bad(name, "is set but CANARY_ETCD_ENDPOINTS is not: set the endpoints to run a fleet, or unset it")
			}
		}
		return nil
	}
	e := &etcdstore.Config{Prefix: c.EtcdPrefix, LeaseTTL: c.EtcdLeaseTTL}
	https := false
	for _, ep := range strings.Split(c.EtcdEndpoints, ",") {
		ep = strings.TrimSpace(ep)
		if err := etcdstore.ValidateEndpoint(ep); err != nil {
			return bad("CANARY_ETCD_ENDPOINTS", "%v", err)
		}
		https = https || strings.HasPrefix(ep, "https://")
		e.Endpoints = append(e.Endpoints, ep)
	}
	if err := etcdstore.ValidatePrefix(c.EtcdPrefix); err != nil {
		return bad("CANARY_ETCD_PREFIX", "%v", err)
	}
	if err := etcdstore.ValidateLeaseTTL(c.EtcdLeaseTTL); err != nil {
		return bad("CANARY_ETCD_LEASE_TTL", "%v", err)
	}
	tlsFiles := c.EtcdCAFile != "" || c.EtcdCertFile != "" || c.EtcdKeyFile != ""
	if tlsFiles && !https {
		return bad("CANARY_ETCD_ENDPOINTS", "%q uses http:// but etcd TLS files are set: use https:// endpoints", c.EtcdEndpoints)
	}
	if https {
		e.TLS = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	if c.EtcdCAFile != "" {
		pem, err := os.ReadFile(c.EtcdCAFile)
		if err != nil {
			return bad("CANARY_ETCD_CA_FILE", "%v", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return bad("CANARY_ETCD_CA_FILE", "%s holds no PEM certificate", c.EtcdCAFile)
		}
		e.TLS.RootCAs = pool
	}
	if (c.EtcdCertFile == "") != (c.EtcdKeyFile == "") {
		return bad("CANARY_ETCD_KEY_FILE", "CANARY_ETCD_CERT_FILE and CANARY_ETCD_KEY_FILE go together")
	}
	if c.EtcdCertFile != "" {
		pair, err := tls.LoadX509KeyPair(c.EtcdCertFile, c.EtcdKeyFile)
		if err != nil {
			return bad("CANARY_ETCD_CERT_FILE", "cannot load the key pair: %v", err)
		}
		e.TLS.Certificates = []tls.Certificate{pair}
	}
	if (c.EtcdUsername == "") != (c.EtcdPasswordFile == "") {
		return bad("CANARY_ETCD_PASSWORD_FILE", "CANARY_ETCD_USERNAME and CANARY_ETCD_PASSWORD_FILE go together")
	}
	if c.EtcdPasswordFile != "" {
		b, err := os.ReadFile(c.EtcdPasswordFile)
		if err != nil {
			return bad("CANARY_ETCD_PASSWORD_FILE", "cannot read the password: %v", err)
		}
		e.Username, e.Password = c.EtcdUsername, strings.TrimRight(string(b), "\r\n")
		if e.Password == "" {
			return bad("CANARY_ETCD_PASSWORD_FILE", "%s is empty", c.EtcdPasswordFile)
		}
	}
	c.etcd = e
	return nil
}

// loadIntegrations checks the webhook, confirmation, deadline and metric
// gate variables and reads the secret and the gates file.
func loadIntegrations(c *config) error {
	if c.WebhookURL != "" {
		if _, err := notify.ParseURL(c.WebhookURL); err != nil {
			return bad("CANARY_WEBHOOK_URL", "%v", err)
		}
	}
	if c.ConfirmURL != "" {
		if _, err := notify.ParseURL(c.ConfirmURL); err != nil {
			return bad("CANARY_CONFIRM_URL", "%v", err)
		}
	}
	secretVar := "CANARY_WEBHOOK_SECRET"
	switch {
	case c.WebhookSecret != "" && c.WebhookSecretFile != "":
		return bad("CANARY_WEBHOOK_SECRET_FILE", "set CANARY_WEBHOOK_SECRET or CANARY_WEBHOOK_SECRET_FILE, not both")
	case c.WebhookSecretFile != "":
		secretVar = "CANARY_WEBHOOK_SECRET_FILE"
		var err error
		if c.webhookSecret, err = readSecretFile(c.WebhookSecretFile); err != nil {
			return bad(secretVar, "%v", err)
		}
	case c.WebhookSecret != "":
		c.webhookSecret = []byte(c.WebhookSecret)
	}
	if c.webhookSecret != nil {
		if err := notify.ValidateSecret(c.webhookSecret); err != nil {
			return bad(secretVar, "%v", err)
		}
		if c.WebhookURL == "" && c.ConfirmURL == "" {
			return bad(secretVar, "is set but neither CANARY_WEBHOOK_URL nor CANARY_CONFIRM_URL is: nothing to sign")
		}
	}
	var err error
	if c.webhookFormat, err = notify.ParseFormat(c.WebhookFormat); err != nil {
		return bad("CANARY_WEBHOOK_FORMAT", "%q must be json or slack", c.WebhookFormat)
	}
	if c.deadlineAction, err = guard.ParseDeadlineAction(c.ProgressDeadlineAction); err != nil {
		return bad("CANARY_PROGRESS_DEADLINE_ACTION", "%q must be stall or rollback", c.ProgressDeadlineAction)
	}
	if err := guard.ValidateProgressDeadline(c.ProgressDeadline, c.steps); err != nil {
		return bad("CANARY_PROGRESS_DEADLINE", "%v", err)
	}
	if err := guard.ValidateDeadlineAction(c.deadlineAction, c.ProgressDeadline); err != nil {
		return bad("CANARY_PROGRESS_DEADLINE_ACTION", "%v: set CANARY_PROGRESS_DEADLINE", err)
	}
	switch {
	case c.MetricGates != "" && c.PrometheusURL == "":
		return bad("CANARY_PROMETHEUS_URL", "required with CANARY_METRIC_GATES: the Prometheus the gates are queried at")
	case c.MetricGates == "" && c.PrometheusURL != "":
		return bad("CANARY_METRIC_GATES", "required with CANARY_PROMETHEUS_URL: the file of gates to check")
	case c.MetricGates == "":
		return nil
	}
	if err := metricgate.ValidateInterval(c.MetricGateInterval); err != nil {
		return bad("CANARY_METRIC_GATE_INTERVAL", "%v", err)
	}
	if c.metricGates, err = metricgate.Load(c.MetricGates); err != nil {
		return bad("CANARY_METRIC_GATES", "%v", err)
	}
	names := make([]string, len(c.metricGates))
	for i, g := range c.metricGates {
		names[i] = g.Name
	}
	if err := guard.ValidateGateNames(names); err != nil {
		return bad("CANARY_METRIC_GATES", "%s: %v", c.MetricGates, err)
	}
	if err := metricgate.ValidateURL(c.PrometheusURL); err != nil {
		return bad("CANARY_PROMETHEUS_URL", "%v", err)
	}
	return nil
}

// backendURLs decodes a backend: one URL or a comma-separated pool; the
// proxy's rule (proxy.ValidateBackend) says which are fine.
func backendURLs(name, raw string) ([]*url.URL, error) {
	var urls []*url.URL
	for item := range strings.SplitSeq(raw, ",") {
		item = strings.TrimSpace(item)
		u, err := url.Parse(item)
		if err != nil {
			return nil, bad(name, "%q is not a URL such as http://host:port (a pool: URLs separated by commas)", item)
		}
		u.Scheme = strings.ToLower(u.Scheme)
		urls = append(urls, u)
	}
	if err := proxy.ValidateBackend(urls); err != nil {
		return nil, bad(name, "%v", err)
	}
	return urls, nil
}

// loadToken returns the admin token from CANARY_TOKEN or CANARY_TOKEN_FILE.
func loadToken(token, file string) (string, error) {
	switch {
	case token != "" && file != "":
		return "", bad("CANARY_TOKEN_FILE", "set CANARY_TOKEN or CANARY_TOKEN_FILE, not both")
	case file != "":
		b, err := os.ReadFile(file)
		if err != nil {
			return "", bad("CANARY_TOKEN_FILE", "cannot read the token: %v", err)
		}
		token = strings.TrimRight(string(b), "\r\n")
	case token == "":
		return "", bad("CANARY_TOKEN", "required (or CANARY_TOKEN_FILE)")
	}
	// The admin package owns the token's rules (length, characters).
	if err := admin.ValidateSecret(token); err != nil {
		name := "CANARY_TOKEN"
		if file != "" {
			name = "CANARY_TOKEN_FILE"
		}
		return "", bad(name, "%v", err)
	}
	return token, nil
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// readSecretFile reads a secret kept in a file, its trailing newline
// trimmed; an empty one is an error.
func readSecretFile(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("cannot read the secret: %w", err)
	}
	b = []byte(strings.TrimRight(string(b), "\r\n"))
	if len(b) == 0 {
		return nil, fmt.Errorf("%s is empty", path)
	}
	return b, nil
}

// loadCohorts reads the cohort, the sticky cookie and the mirror's
// variables.
func loadCohorts(c *config) error {
	splitErr := func(err error) string {
		return strings.TrimPrefix(err.Error(), split.ErrBadConfig.Error()+": ")
	}
	var err error
	if c.match, err = split.ParseMatch(c.Match); err != nil {
		return bad("CANARY_MATCH", "%s", splitErr(err))
	}
	if c.trustedProxies, err = split.ParseTrustedProxies(c.TrustedProxies); err != nil {
		return bad("CANARY_TRUSTED_PROXIES", "%s", splitErr(err))
	}
	if c.StickySetCookie && !strings.HasPrefix(strings.ToLower(c.StickyKey), "cookie:") {
		return bad("CANARY_STICKY_SET_COOKIE", "needs CANARY_STICKY_KEY=cookie:NAME, the cookie to set (CANARY_STICKY_KEY is %q)", c.StickyKey)
	}
	if err := split.ValidateCookieMaxAge(c.StickyMaxAge); err != nil {
		return bad("CANARY_STICKY_MAX_AGE", "%v", err)
	}
	if c.mirrorPercent, err = split.ParsePercent(c.MirrorPercent); err != nil {
		return bad("CANARY_MIRROR_PERCENT", "%v", err)
	}
	if c.mirrorMethods, err = proxy.ParseMirrorMethods(c.MirrorMethods); err != nil {
		return bad("CANARY_MIRROR_METHODS", "%v", err)
	}
	return nil
}
