package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"time"

	"github.com/caarlos0/env/v11"
	"github.com/rs/zerolog"

	"github.com/canaryd/canaryd/admin"
	"github.com/canaryd/canaryd/guard"
	"github.com/canaryd/canaryd/split"
)

// config is every CANARY_* variable of DESIGN §2, parsed once.
type config struct {
	StableURL         string        `env:"CANARY_STABLE_URL,required"`
	CanaryURL         string        `env:"CANARY_CANARY_URL,required"`
	Token             string        `env:"CANARY_TOKEN"`
	TokenFile         string        `env:"CANARY_TOKEN_FILE"`
	Listen            string        `env:"CANARY_LISTEN" envDefault:":8080"`
	AdminListen       string        `env:"CANARY_ADMIN_LISTEN" envDefault:":8000"`
	Weight            string        `env:"CANARY_WEIGHT" envDefault:"10"`
	Steps             string        `env:"CANARY_STEPS"`
	Release           string        `env:"CANARY_RELEASE"`
	SLOErrorRate      float64       `env:"CANARY_SLO_ERROR_RATE" envDefault:"0.01"`
	SLOP95            time.Duration `env:"CANARY_SLO_P95" envDefault:"500ms"`
	SLOWindow         time.Duration `env:"CANARY_SLO_WINDOW" envDefault:"5m"`
	SLOMinRequests    uint64        `env:"CANARY_SLO_MIN_REQUESTS" envDefault:"100"`
	EvalInterval      time.Duration `env:"CANARY_EVAL_INTERVAL" envDefault:"1s"`
	StickyKey         string        `env:"CANARY_STICKY_KEY"`
	OverrideHeader    string        `env:"CANARY_OVERRIDE_HEADER"`
	StateFile         string        `env:"CANARY_STATE_FILE" envDefault:"canaryd-state.json"`
	IntegrityManifest string        `env:"CANARY_INTEGRITY_MANIFEST"`
	IntegrityRoot     string        `env:"CANARY_INTEGRITY_ROOT"`
	IntegrityInterval time.Duration `env:"CANARY_INTEGRITY_INTERVAL" envDefault:"5m"`
	Judge             string        `env:"CANARY_JUDGE" envDefault:"sequential"`
	Alpha             float64       `env:"CANARY_ALPHA" envDefault:"0.01"`
	ShutdownTimeout   time.Duration `env:"CANARY_SHUTDOWN_TIMEOUT" envDefault:"30s"`
	AdminURL          string        `env:"CANARY_ADMIN_URL" envDefault:"http://127.0.0.1:8000"`
	TLSCertFile       string        `env:"CANARY_TLS_CERT_FILE"`
	TLSKeyFile        string        `env:"CANARY_TLS_KEY_FILE"`
	UpstreamCAFile    string        `env:"CANARY_UPSTREAM_CA_FILE"`
	HealthPath        string        `env:"CANARY_HEALTH_PATH"`
	HealthInterval    time.Duration `env:"CANARY_HEALTH_INTERVAL" envDefault:"5s"`
	AccessLog         bool          `env:"CANARY_ACCESS_LOG" envDefault:"false"`
	LogLevel          string        `env:"CANARY_LOG_LEVEL" envDefault:"info"`
	LogFormat         string        `env:"CANARY_LOG_FORMAT" envDefault:"json"`

	// Limits beyond DESIGN §2, with the defaults an nginx operator expects.
	ReadHeaderTimeout  time.Duration `env:"CANARY_READ_HEADER_TIMEOUT" envDefault:"10s"`
	IdleTimeout        time.Duration `env:"CANARY_IDLE_TIMEOUT" envDefault:"75s"`
	MaxHeaderBytes     int           `env:"CANARY_MAX_HEADER_BYTES" envDefault:"65536"`
	UpstreamTimeout    time.Duration `env:"CANARY_UPSTREAM_TIMEOUT" envDefault:"60s"`
	MaxConnsPerBackend int           `env:"CANARY_MAX_CONNS_PER_BACKEND" envDefault:"1024"`

	// The request path against hostile clients and backends (issue 10),
	// and the fast path's switch.
	MaxResponseHeaderBytes int           `env:"CANARY_MAX_RESPONSE_HEADER_BYTES" envDefault:"65536"`
	RequestBuffer          int           `env:"CANARY_REQUEST_BUFFER" envDefault:"65536"`
	BodyReadTimeout        time.Duration `env:"CANARY_BODY_READ_TIMEOUT" envDefault:"60s"`
	FastPath               onOff         `env:"CANARY_FAST_PATH" envDefault:"on"`

	// PprofListen serves net/http/pprof for profiling under load; empty = off.
	PprofListen string `env:"CANARY_PPROF_LISTEN"`

	// Derived by load.
	stable, canary *url.URL
	weight         uint32
	steps          []guard.Step
	level          zerolog.Level
	upstreamTLS    *tls.Config
	tlsEnabled     bool
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

// parseEnv fills the tagged fields of v from environ (KEY=value entries),
// translating caarlos0/env's errors, which name struct fields, into errors
// naming the variable.
func parseEnv(v any, environ []string) error {
	envMap := make(map[string]string, len(environ))
	for _, kv := range environ {
		if k, val, ok := strings.Cut(kv, "="); ok {
			envMap[k] = val
		}
	}
	// A variable that has a default but is set to nothing is a mistake
	// (CANARY_WEIGHT= from a template with a missing value), not a request
	// for the default.
	t := reflect.TypeOf(v).Elem()
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("env"), ",")
		if val, set := envMap[name]; set && val == "" && f.Tag.Get("envDefault") != "" {
			return bad(name, "is set but empty; unset it to use the default (%s)", f.Tag.Get("envDefault"))
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
	case t == reflect.TypeOf(onOff(false)):
		return "switch (on or off)"
	case t == reflect.TypeOf(time.Duration(0)):
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
	c := &config{}
	if err := parseEnv(c, environ); err != nil {
		return nil, err
	}
	var err error
	if c.stable, err = backendURL("CANARY_STABLE_URL", c.StableURL); err != nil {
		return nil, err
	}
	if c.canary, err = backendURL("CANARY_CANARY_URL", c.CanaryURL); err != nil {
		return nil, err
	}
	if c.stable.String() == c.canary.String() {
		return nil, bad("CANARY_CANARY_URL", "must differ from CANARY_STABLE_URL")
	}
	if c.Token, err = loadToken(c.Token, c.TokenFile); err != nil {
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
	if c.weight, err = split.ParseWeight(c.Weight); err != nil {
		return nil, bad("CANARY_WEIGHT", "%v", err)
	}
	if c.Steps != "" {
		if c.steps, err = guard.ParseSteps(c.Steps); err != nil {
			return nil, bad("CANARY_STEPS", "%v", err)
		}
	}
	switch {
	case !(c.SLOErrorRate > 0 && c.SLOErrorRate < 1):
		return nil, bad("CANARY_SLO_ERROR_RATE", "%v must be a fraction between 0 and 1 (e.g. 0.01)", c.SLOErrorRate)
	case c.SLOP95 <= 0:
		return nil, bad("CANARY_SLO_P95", "must be positive")
	case c.SLOWindow < time.Second:
		return nil, bad("CANARY_SLO_WINDOW", "must be at least 1s")
	case c.SLOMinRequests < 1:
		return nil, bad("CANARY_SLO_MIN_REQUESTS", "must be at least 1")
	case c.EvalInterval <= 0:
		return nil, bad("CANARY_EVAL_INTERVAL", "must be positive")
	case c.IntegrityInterval <= 0:
		return nil, bad("CANARY_INTEGRITY_INTERVAL", "must be positive")
	case c.Judge != "sequential" && c.Judge != "window":
		return nil, bad("CANARY_JUDGE", "%q must be sequential or window", c.Judge)
	case !(c.Alpha > 0 && c.Alpha < 0.5):
		return nil, bad("CANARY_ALPHA", "%v must be a probability between 0 and 0.5 (e.g. 0.01)", c.Alpha)
	case c.ShutdownTimeout < 0:
		return nil, bad("CANARY_SHUTDOWN_TIMEOUT", "must not be negative")
	case c.HealthInterval <= 0:
		return nil, bad("CANARY_HEALTH_INTERVAL", "must be positive")
	case c.HealthPath != "" && !strings.HasPrefix(c.HealthPath, "/"):
		return nil, bad("CANARY_HEALTH_PATH", "%q must start with /", c.HealthPath)
	case c.StateFile == "":
		return nil, bad("CANARY_STATE_FILE", "must not be empty")
	case c.ReadHeaderTimeout <= 0:
		return nil, bad("CANARY_READ_HEADER_TIMEOUT", "must be positive")
	case c.IdleTimeout <= 0:
		return nil, bad("CANARY_IDLE_TIMEOUT", "must be positive")
	case c.MaxHeaderBytes < 4096:
		return nil, bad("CANARY_MAX_HEADER_BYTES", "must be at least 4096")
	case c.UpstreamTimeout <= 0:
		return nil, bad("CANARY_UPSTREAM_TIMEOUT", "must be positive")
	case c.MaxConnsPerBackend < 1:
		return nil, bad("CANARY_MAX_CONNS_PER_BACKEND", "must be at least 1")
	case c.MaxResponseHeaderBytes < 4096 || c.MaxResponseHeaderBytes > 16<<20:
		return nil, bad("CANARY_MAX_RESPONSE_HEADER_BYTES", "must be between 4096 and 16777216")
	case c.RequestBuffer < 1024 || c.RequestBuffer > 64<<20:
		return nil, bad("CANARY_REQUEST_BUFFER", "must be between 1024 and 67108864")
	case c.BodyReadTimeout <= 0:
		return nil, bad("CANARY_BODY_READ_TIMEOUT", "must be positive")
	}
	if err := (split.Config{StickyKey: c.StickyKey}).Validate(); err != nil {
		return nil, bad("CANARY_STICKY_KEY", "%q must be cookie:NAME or header:NAME", c.StickyKey)
	}
	if err := (split.Config{OverrideHeader: c.OverrideHeader}).Validate(); err != nil {
		return nil, bad("CANARY_OVERRIDE_HEADER", "%q is not a valid header name", c.OverrideHeader)
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

func backendURL(name, raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, bad(name, "%q must be an http:// or https:// URL with a host", raw)
	}
	if u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return nil, bad(name, "%q must not carry a query, fragment or credentials", raw)
	}
	return u, nil
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
		if len(token) < 16 {
			return "", bad("CANARY_TOKEN_FILE", "the token must be at least 16 characters")
		}
	case token == "":
		return "", bad("CANARY_TOKEN", "required (or CANARY_TOKEN_FILE)")
	case len(token) < 16:
		return "", bad("CANARY_TOKEN", "must be at least 16 characters")
	}
	if err := (admin.Config{Token: token}).Validate(); err != nil {
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
