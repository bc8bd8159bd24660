package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/canaryd/canaryd/admin"
	"github.com/canaryd/canaryd/guard/judge"
)

func baseEnv(t *testing.T) []string {
	return []string{
		"CANARY_STABLE_URL=http://127.0.0.1:9001",
		"CANARY_CANARY_URL=http://127.0.0.1:9002",
		"CANARY_TOKEN=0123456789abcdef0123",
		"CANARY_STATE_FILE=" + filepath.Join(t.TempDir(), "state.json"),
	}
}

func with(env []string, kv ...string) []string {
	out := append([]string(nil), env...)
	for _, s := range kv {
		k, _, _ := strings.Cut(s, "=")
		filtered := out[:0]
		for _, e := range out {
			if !strings.HasPrefix(e, k+"=") {
				filtered = append(filtered, e)
			}
		}
		out = filtered
		if strings.Contains(s, "=") {
			out = append(out, s)
		}
	}
	return out
}

func TestConfigErrorsNameTheVariable(t *testing.T) {
	dir := t.TempDir()
	shortTokenFile := filepath.Join(dir, "short")
	os.WriteFile(shortTokenFile, []byte("short\n"), 0o600)
	for _, tc := range []struct {
		name    string
		env     []string // changes to the base environment; "KEY" alone unsets
		wantVar string
	}{
		{"missing stable", []string{"CANARY_STABLE_URL"}, "CANARY_STABLE_URL"},
		{"missing canary", []string{"CANARY_CANARY_URL"}, "CANARY_CANARY_URL"},
		{"bad stable scheme", []string{"CANARY_STABLE_URL=ftp://x"}, "CANARY_STABLE_URL"},
		{"same backends", []string{"CANARY_CANARY_URL=http://127.0.0.1:9001"}, "CANARY_CANARY_URL"},
		{"missing token", []string{"CANARY_TOKEN"}, "CANARY_TOKEN"},
		{"short token", []string{"CANARY_TOKEN=short"}, "CANARY_TOKEN"},
		{"token with a space", []string{"CANARY_TOKEN=0123456789 abcdef0123"}, "CANARY_TOKEN"},
		{"token not ASCII", []string{"CANARY_TOKEN=0123456789abcdefé"}, "CANARY_TOKEN"},
		{"token file missing", []string{"CANARY_TOKEN", "CANARY_TOKEN_FILE=" + filepath.Join(dir, "nope")}, "CANARY_TOKEN_FILE"},
		{"token file short", []string{"CANARY_TOKEN", "CANARY_TOKEN_FILE=" + shortTokenFile}, "CANARY_TOKEN_FILE"},
		{"weight not a number", []string{"CANARY_WEIGHT=ten"}, "CANARY_WEIGHT"},
		{"weight set but empty", []string{"CANARY_WEIGHT="}, "CANARY_WEIGHT"},
		{"p95 set but empty", []string{"CANARY_SLO_P95="}, "CANARY_SLO_P95"},
		{"weight too high", []string{"CANARY_WEIGHT=101"}, "CANARY_WEIGHT"},
		{"weight too precise", []string{"CANARY_WEIGHT=1.001"}, "CANARY_WEIGHT"},
		{"steps falling", []string{"CANARY_STEPS=25@1m,5@1m"}, "CANARY_STEPS"},
		{"steps no duration", []string{"CANARY_STEPS=5"}, "CANARY_STEPS"},
		{"steps zero duration", []string{"CANARY_STEPS=5@0s"}, "CANARY_STEPS"},
		{"error rate not a number", []string{"CANARY_SLO_ERROR_RATE=lots"}, "CANARY_SLO_ERROR_RATE"},
		{"error rate above one", []string{"CANARY_SLO_ERROR_RATE=1.5"}, "CANARY_SLO_ERROR_RATE"},
		{"p95 not a duration", []string{"CANARY_SLO_P95=fast"}, "CANARY_SLO_P95"},
		{"p95 without unit", []string{"CANARY_SLO_P95=500"}, "CANARY_SLO_P95"},
		{"window negative", []string{"CANARY_SLO_WINDOW=-5m"}, "CANARY_SLO_WINDOW"},
		{"min requests negative", []string{"CANARY_SLO_MIN_REQUESTS=-1"}, "CANARY_SLO_MIN_REQUESTS"},
		{"eval interval bad", []string{"CANARY_EVAL_INTERVAL=often"}, "CANARY_EVAL_INTERVAL"},
		{"sticky bad", []string{"CANARY_STICKY_KEY=query:x"}, "CANARY_STICKY_KEY"},
		{"override bad", []string{"CANARY_OVERRIDE_HEADER=X Canary"}, "CANARY_OVERRIDE_HEADER"},
		{"judge bad", []string{"CANARY_JUDGE=vibes"}, "CANARY_JUDGE"},
		{"alpha bad", []string{"CANARY_ALPHA=2"}, "CANARY_ALPHA"},
		{"alpha one half", []string{"CANARY_ALPHA=0.5"}, "CANARY_ALPHA"},
		{"compare bad", []string{"CANARY_COMPARE=strict"}, "CANARY_COMPARE"},
		{"compare capitalised", []string{"CANARY_COMPARE=Rollback"}, "CANARY_COMPARE"},
		{"compare set but empty", []string{"CANARY_COMPARE="}, "CANARY_COMPARE"},
		{"compare margin zero", []string{"CANARY_COMPARE_MARGIN=0"}, "CANARY_COMPARE_MARGIN"},
		{"compare margin negative", []string{"CANARY_COMPARE_MARGIN=-0.5"}, "CANARY_COMPARE_MARGIN"},
		{"compare margin as a percentage", []string{"CANARY_COMPARE_MARGIN=50%"}, "CANARY_COMPARE_MARGIN"},
		{"compare margin infinite", []string{"CANARY_COMPARE_MARGIN=+Inf"}, "CANARY_COMPARE_MARGIN"},
		{"compare margin not a number", []string{"CANARY_COMPARE_MARGIN=NaN"}, "CANARY_COMPARE_MARGIN"},
		{"access log bad", []string{"CANARY_ACCESS_LOG=maybe"}, "CANARY_ACCESS_LOG"},
		{"log level bad", []string{"CANARY_LOG_LEVEL=loud"}, "CANARY_LOG_LEVEL"},
		{"log format bad", []string{"CANARY_LOG_FORMAT=xml"}, "CANARY_LOG_FORMAT"},
		{"listen bad", []string{"CANARY_LISTEN=8080"}, "CANARY_LISTEN"},
		{"health path bad", []string{"CANARY_HEALTH_PATH=healthz"}, "CANARY_HEALTH_PATH"},
		{"tls half", []string{"CANARY_TLS_CERT_FILE=/x.pem"}, "CANARY_TLS_KEY_FILE"},
		{"ca missing", []string{"CANARY_UPSTREAM_CA_FILE=" + filepath.Join(dir, "nope.pem")}, "CANARY_UPSTREAM_CA_FILE"},
		{"shutdown bad", []string{"CANARY_SHUTDOWN_TIMEOUT=soon"}, "CANARY_SHUTDOWN_TIMEOUT"},
		{"request buffer too small", []string{"CANARY_REQUEST_BUFFER=100"}, "CANARY_REQUEST_BUFFER"},
		{"request buffer not a number", []string{"CANARY_REQUEST_BUFFER=64k"}, "CANARY_REQUEST_BUFFER"},
		{"body read timeout zero", []string{"CANARY_BODY_READ_TIMEOUT=0s"}, "CANARY_BODY_READ_TIMEOUT"},
		{"body read timeout without unit", []string{"CANARY_BODY_READ_TIMEOUT=60"}, "CANARY_BODY_READ_TIMEOUT"},
		{"response header cap too small", []string{"CANARY_MAX_RESPONSE_HEADER_BYTES=1024"}, "CANARY_MAX_RESPONSE_HEADER_BYTES"},
		{"response header cap too large", []string{"CANARY_MAX_RESPONSE_HEADER_BYTES=1000000000"}, "CANARY_MAX_RESPONSE_HEADER_BYTES"},
		{"fast path not on or off", []string{"CANARY_FAST_PATH=true"}, "CANARY_FAST_PATH"},
		{"fast path set but empty", []string{"CANARY_FAST_PATH="}, "CANARY_FAST_PATH"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(context.Background(), nil, with(baseEnv(t), tc.env...), &stdout, &stderr)
			if code != exitConfig {
				t.Fatalf("exit = %d; want %d (stderr %q)", code, exitConfig, stderr.String())
			}
			out := stderr.String()
			if strings.Count(out, "\n") != 1 || !strings.Contains(out, tc.wantVar) {
				t.Errorf("stderr = %q; want one line naming %s", out, tc.wantVar)
			}
			if strings.Contains(out, "0123456789abcdef0123") {
				t.Errorf("stderr echoes the token: %q", out)
			}
		})
	}
}

func TestConfigDefaults(t *testing.T) {
	c, err := loadConfig(baseEnv(t))
	if err != nil {
		t.Fatal(err)
	}
	if c.Listen != ":8080" || c.AdminListen != ":8000" || c.weight != 1000 || c.Judge != "sequential" ||
		c.SLOP95.String() != "500ms" || c.SLOWindow.String() != "5m0s" || c.SLOMinRequests != 100 ||
		c.compare != judge.CompareHold || c.CompareMargin != 0.5 {
		t.Errorf("defaults = %+v", c)
	}
}

func TestConfigCompare(t *testing.T) {
	c, err := loadConfig(with(baseEnv(t), "CANARY_COMPARE=rollback", "CANARY_COMPARE_MARGIN=0.25"))
	if err != nil {
		t.Fatal(err)
	}
	if c.compare != judge.CompareRollback || c.CompareMargin != 0.25 {
		t.Errorf("CANARY_COMPARE=rollback, CANARY_COMPARE_MARGIN=0.25: compare %v, margin %v", c.compare, c.CompareMargin)
	}
}

// The request-path variables: their defaults, and CANARY_FAST_PATH's two
// values.
func TestRequestPathConfig(t *testing.T) {
	c, err := loadConfig(baseEnv(t))
	if err != nil {
		t.Fatal(err)
	}
	if c.RequestBuffer != 64<<10 || c.BodyReadTimeout.String() != "1m0s" || c.MaxResponseHeaderBytes != 64<<10 || !c.FastPath {
		t.Errorf("defaults: request buffer %d, body read timeout %v, response header cap %d, fast path %v; want 65536, 1m0s, 65536, on",
			c.RequestBuffer, c.BodyReadTimeout, c.MaxResponseHeaderBytes, c.FastPath)
	}
	c, err = loadConfig(with(baseEnv(t), "CANARY_FAST_PATH=off", "CANARY_REQUEST_BUFFER=1024", "CANARY_BODY_READ_TIMEOUT=5s"))
	if err != nil {
		t.Fatal(err)
	}
	if c.FastPath || c.RequestBuffer != 1024 || c.BodyReadTimeout.String() != "5s" {
		t.Errorf("CANARY_FAST_PATH=off, CANARY_REQUEST_BUFFER=1024, CANARY_BODY_READ_TIMEOUT=5s: fast path %v, %d, %v", c.FastPath, c.RequestBuffer, c.BodyReadTimeout)
	}
}

func TestTokenFile(t *testing.T) {
	f := filepath.Join(t.TempDir(), "token")
	os.WriteFile(f, []byte("file-token-0123456789\n"), 0o600)
	c, err := loadConfig(with(baseEnv(t), "CANARY_TOKEN", "CANARY_TOKEN_FILE="+f))
	if err != nil {
		t.Fatal(err)
	}
	if len(c.tokens) != 1 || c.tokens[0].Secret != "file-token-0123456789" || c.tokens[0].Name != "default" || c.tokens[0].Role != admin.RoleOperate {
		t.Errorf("tokens from CANARY_TOKEN_FILE = %+v; want the file's token as the operate token default", c.tokens)
	}
	if _, err := loadConfig(with(baseEnv(t), "CANARY_TOKEN_FILE="+f)); err == nil {
		t.Error("both CANARY_TOKEN and CANARY_TOKEN_FILE accepted")
	}
}

func TestUnknownCommand(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), []string{"frobnicate"}, nil, &stdout, &stderr); code != exitConfig {
		t.Errorf("exit = %d; want %d", code, exitConfig)
	}
	if code := run(context.Background(), []string{"version"}, nil, &stdout, &stderr); code != exitOK || !strings.HasPrefix(stdout.String(), "canaryd ") {
		t.Errorf("version: exit %d, %q", code, stdout.String())
	}
}

func TestPprofMustBeLoopback(t *testing.T) {
	if _, err := loadConfig(with(baseEnv(t), "CANARY_PPROF_LISTEN=0.0.0.0:6060")); err == nil || !strings.Contains(err.Error(), "CANARY_PPROF_LISTEN") {
		t.Errorf("pprof on all interfaces: %v; want an error naming CANARY_PPROF_LISTEN", err)
	}
	if _, err := loadConfig(with(baseEnv(t), "CANARY_PPROF_LISTEN=127.0.0.1:6060")); err != nil {
		t.Errorf("pprof on loopback: %v", err)
	}
}

// An unknown CANARY_* variable stops every command that reads the
// environment with exit 2 and one line naming it, with the closest known
// name when it looks like a typo.
func TestUnknownVariable(t *testing.T) {
	for _, tc := range []struct {
		set, want string // want "" = no suggestion
	}{
		{"CANARY_WIEGHT=50", "CANARY_WEIGHT"},
		{"CANARY_WEIGHTS=50", "CANARY_WEIGHT"},
		{"CANARY_SLO_P59=1s", "CANARY_SLO_P95"},
		{"CANARY_TOKENFILE=/x", "CANARY_TOKEN_FILE"},
		{"CANARY_ADMN_URL=http://x", "CANARY_ADMIN_URL"},
		{"CANARY_HEALTHPATH=/h", "CANARY_HEALTH_PATH"},
		{"CANARY_STABEL_URL=http://x", "CANARY_STABLE_URL"},
		{"CANARY_SOMETHING_ELSE_ENTIRELY=1", ""},
	} {
		name, _, _ := strings.Cut(tc.set, "=")
		for _, cmd := range [][]string{nil, {"check"}, {"rollout", "status"}, {"verify", "m"}} {
			var stdout, stderr bytes.Buffer
			code := run(context.Background(), cmd, with(baseEnv(t), tc.set), &stdout, &stderr)
			out := stderr.String()
			if code != exitConfig || strings.Count(out, "\n") != 1 || !strings.HasPrefix(out, "canaryd: "+name+": unknown variable") {
				t.Errorf("%v with %s: exit %d, %q; want 2 and one line naming %s", cmd, tc.set, code, out, name)
			}
			suggestion := "did you mean " + tc.want + "?"
			if tc.want != "" && !strings.Contains(out, suggestion) {
				t.Errorf("%v with %s: %q; want %q", cmd, tc.set, out, suggestion)
			}
			if tc.want == "" && strings.Contains(out, "did you mean") {
				t.Errorf("%v with %s: %q suggests a name for a variable that is no typo", cmd, tc.set, out)
			}
		}
	}
}

// The known names are every tag of the config struct: the server's and the
// clients' (CANARY_ADMIN_URL in a server's environment file is fine), and
// Kubernetes' service links for a Service named canary pass.
func TestKnownVariablesPass(t *testing.T) {
	env := with(baseEnv(t), "CANARY_ADMIN_URL=http://127.0.0.1:8000",
		"CANARY_SERVICE_HOST=10.0.0.1", "CANARY_SERVICE_PORT=80", "CANARY_SERVICE_PORT_HTTP=80",
		"CANARY_PORT=tcp://10.0.0.1:80", "CANARY_PORT_80_TCP=tcp://10.0.0.1:80",
		"CANARY_PORT_80_TCP_PROTO=tcp", "CANARY_PORT_80_TCP_PORT=80", "CANARY_PORT_80_TCP_ADDR=10.0.0.1",
		"CANARY_STABLE_SERVICE_HOST=10.0.0.2", "CANARY_STABLE_PORT=tcp://10.0.0.2:80")
	if _, err := loadConfig(env); err != nil {
		t.Errorf("loadConfig: %v", err)
	}
	for _, v := range knownVariables() {
		if v.Help == "" || v.Group == "" {
			t.Errorf("%s has no help or group tag (config struct)", v.Name)
		}
	}
	// A CANARY_PORT that is not a service link is refused.
	if _, err := loadConfig(with(baseEnv(t), "CANARY_PORT=8080")); err == nil || !strings.Contains(err.Error(), "CANARY_PORT") {
		t.Errorf("CANARY_PORT=8080: %v; want an error naming it", err)
	}
}

func TestEditDistance(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want int
	}{
		{"", "", 0}, {"WEIGHT", "WEIGHT", 0}, {"WIEGHT", "WEIGHT", 1}, {"WEIGT", "WEIGHT", 1},
		{"WEIGHTS", "WEIGHT", 1}, {"WAIGHT", "WEIGHT", 1}, {"", "ABC", 3}, {"CA", "ABC", 3}, {"TOKEN", "STEPS", 5},
	} {
		if got := editDistance(tc.a, tc.b); got != tc.want {
			t.Errorf("editDistance(%q, %q) = %d; want %d", tc.a, tc.b, got, tc.want)
		}
	}
}

// Stable and canary are compared after normalisation: scheme and host case,
// the scheme's default port and trailing slashes do not make another backend.
func TestBackendsCompareNormalised(t *testing.T) {
	for _, tc := range []struct {
		stable, canary string
		same           bool
	}{
		{"http://h:9301", "http://h:9301/", true},
		{"http://h:9301", "HTTP://H:9301", true},
		{"http://h", "http://h:80/", true},
		{"https://h", "https://H:443", true},
		{"http://h/api", "http://h/api/", true},
		{"http://[::1]:80/", "http://[::1]", true},
		{"http://h", "https://h", false},
		{"http://h:80", "http://h:8080", false},
		{"https://h:80", "https://h", false},
		{"http://h/api", "http://h/api2", false},
		{"http://h/a", "http://h/A", false},
		{"http://[::1]", "http://[::2]", false},
	} {
		_, err := loadConfig(with(baseEnv(t), "CANARY_STABLE_URL="+tc.stable, "CANARY_CANARY_URL="+tc.canary))
		gotSame := err != nil && strings.Contains(err.Error(), "same backend")
		if gotSame != tc.same {
			t.Errorf("stable %q, canary %q: error %v; want same backend = %v", tc.stable, tc.canary, err, tc.same)
		}
		if err != nil && !gotSame {
			t.Errorf("stable %q, canary %q: unexpected error %v", tc.stable, tc.canary, err)
		}
	}
}

// --help, -h, help and COMMAND -h print usage to stdout and exit 0, with no
// environment at all (check -h must not ask for a token first).
func TestHelp(t *testing.T) {
	var names []string
	for _, cmd := range commands() {
		names = append(names, cmd.name)
	}
	for _, args := range [][]string{{"--help"}, {"-h"}, {"help"}, {"serve", "-h"}} {
		var stdout, stderr bytes.Buffer
		if code := run(context.Background(), args, nil, &stdout, &stderr); code != exitOK || stderr.Len() != 0 {
			t.Fatalf("%v: exit %d, stderr %q", args, code, stderr.String())
		}
		out := stdout.String()
		for _, n := range names {
			if !strings.Contains(out, "canaryd "+n) && !(n == "serve" && strings.Contains(out, "canaryd [serve]")) {
				t.Errorf("%v does not list the command %s", args, n)
			}
		}
		// Every variable, in the struct's order, under its group.
		pos, group := 0, ""
		for _, v := range knownVariables() {
			if v.Group != group {
				group = v.Group
				i := strings.Index(out[pos:], "\n  "+group+"\n")
				if i < 0 {
					t.Errorf("%v: group %q missing or out of order", args, group)
					break
				}
				pos += i
			}
			i := strings.Index(out[pos:], v.Name+" ")
			if i < 0 {
				t.Errorf("%v: %s missing or out of order", args, v.Name)
				break
			}
			pos += i
		}
		for _, s := range exitStatuses {
			if !strings.Contains(out, fmt.Sprintf("  %d  %s", s.code, s.meaning)) {
				t.Errorf("%v lacks exit status %d", args, s.code)
			}
		}
	}
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"check", "-h"}, []string{"Usage: canaryd check", "-wait", "-strict", "CANARY_ADMIN_URL", "CANARY_TOKEN_FILE"}},
		{[]string{"check", "--help"}, []string{"Usage: canaryd check"}},
		{[]string{"help", "check"}, []string{"Usage: canaryd check"}},
		{[]string{"rollout", "-h"}, []string{"Usage: canaryd rollout", "promote", "start RELEASE", "-steps", "CANARY_TOKEN"}},
		{[]string{"rollout", "weight", "-h"}, []string{"Usage: canaryd rollout"}},
		{[]string{"verify", "-h"}, []string{"Usage: canaryd verify", "CANARY_INTEGRITY_MANIFEST", "CANARY_INTEGRITY_ROOT"}},
		{[]string{"demo", "-h"}, []string{"Usage: canaryd demo", "-duration"}},
		{[]string{"version", "-h"}, []string{"Usage: canaryd version"}},
	} {
		var stdout, stderr bytes.Buffer
		code := run(context.Background(), tc.args, nil, &stdout, &stderr)
		if code != exitOK || stderr.Len() != 0 {
			t.Errorf("%v: exit %d, stderr %q; want 0 and nothing on stderr", tc.args, code, stderr.String())
		}
		for _, w := range tc.want {
			if !strings.Contains(stdout.String(), w) {
				t.Errorf("%v: output lacks %q:\n%s", tc.args, w, stdout.String())
			}
		}
	}
}

// Unknown flags, commands, verbs and stray arguments exit 2 with one line.
func TestUsageErrors(t *testing.T) {
	env := with(baseEnv(t), "CANARY_ADMIN_URL=http://127.0.0.1:1")
	for _, args := range [][]string{
		{"--frobnicate"}, {"serve", "-x"}, {"serve", "extra"}, {"frobnicate"},
		{"check", "--nope"}, {"check", "extra"}, {"check", "--wait", "-1s"}, {"check", "--until", "soon", "--wait", "1s"},
		{"check", "-o", "yaml"}, {"rollout"}, {"rollout", "fly"}, {"rollout", "weight"}, {"rollout", "weight", "ten"},
		{"rollout", "promote", "now"}, {"rollout", "start"}, {"rollout", "pause", "--steps", "5@1m"}, {"rollout", "-o", "xml", "status"},
		{"verify", "a", "b", "c"}, {"verify", "--deep"}, {"demo", "-rate", "0"}, {"demo", "-x"}, {"version", "-x"}, {"version", "extra"},
	} {
		var stdout, stderr bytes.Buffer
		code := run(context.Background(), args, env, &stdout, &stderr)
		if code != exitConfig || strings.Count(stderr.String(), "\n") != 1 {
			t.Errorf("%v: exit %d, stderr %q; want 2 and one line", args, code, stderr.String())
		}
	}
}

func TestParseFlagsInterspersed(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want []string
		o    string
	}{
		{[]string{"weight", "25", "-o", "json"}, []string{"weight", "25"}, "json"},
		{[]string{"-o", "json", "weight", "25"}, []string{"weight", "25"}, "json"},
		{[]string{"weight", "-o=json", "25"}, []string{"weight", "25"}, "json"},
		{[]string{"weight", "--", "-5"}, []string{"weight", "-5"}, "text"},
		{nil, nil, "text"},
	} {
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		o := fs.String("o", "text", "")
		got, _, ok := parseFlags(fs, cli{stdout: io.Discard, stderr: io.Discard}, tc.args, func(io.Writer) {})
		if !ok || !slices.Equal(got, tc.want) || *o != tc.o {
			t.Errorf("parseFlags(%q) = %q, -o %q, ok %v; want %q, -o %q", tc.args, got, *o, ok, tc.want, tc.o)
		}
	}
}

// canaryd version prints the version make build / make release stamp in,
// and "dev" without one (go test never stamps a commit).
func TestVersion(t *testing.T) {
	for _, args := range [][]string{{"version"}, {"--version"}} {
		var stdout, stderr bytes.Buffer
		if code := run(context.Background(), args, nil, &stdout, &stderr); code != exitOK || stdout.String() != "canaryd dev\n" {
			t.Errorf("%v without a stamped version: exit %d, %q; want canaryd dev", args, code, stdout.String())
		}
	}
	version = "v9.8.7"
	defer func() { version = "" }()
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), []string{"version"}, nil, &stdout, &stderr); code != exitOK || stdout.String() != "canaryd v9.8.7\n" {
		t.Errorf("version: exit %d, %q; want canaryd v9.8.7", code, stdout.String())
	}
}

// CANARY_COMPARE and CANARY_COMPARE_MARGIN reach the judge: a canary within
// its error SLO (0.67% against 1%) but failing where stable never does is
// rolled back with rollback, held with hold, and the reason quotes the
// configured margin.
func TestConfigCompareReachesTheJudge(t *testing.T) {
	for _, tt := range []struct{ mode, want, says string }{
		{"rollback", "rollback_error_rate", "rolling back"},
		{"hold", "hold", "holding"},
	} {
		t.Run(tt.mode, func(t *testing.T) {
			var n atomic.Int64
			stable := newBackend(t, "stable", nil)
			canary := newBackend(t, "canary", func(w http.ResponseWriter, r *http.Request) {
				if n.Add(1)%150 == 0 {
					http.Error(w, "broken", http.StatusInternalServerError)
					return
				}
				io.WriteString(w, "canary")
			})
			in := start(t, testEnv(t, stable, canary, "CANARY_WEIGHT=50", "CANARY_COMPARE="+tt.mode, "CANARY_COMPARE_MARGIN=0.25"))
			c := in.waitFor("the comparison with stable to fail", 500, func(c checkBody) bool {
				for _, g := range c.Gates {
					if g.Name == "error_rate_vs_stable" && g.Verdict == "fail" {
						return true
					}
				}
				return c.Recommendation == "rollback_error_rate"
			})
			if c.Recommendation != tt.want || !strings.Contains(strings.Join(c.Reasons, " "), "worse than stable by more than 25.00%; "+tt.says) {
				t.Errorf("CANARY_COMPARE=%s: recommendation %s, reasons %q; want %s saying %q with the 25%% margin",
					tt.mode, c.Recommendation, c.Reasons, tt.want, tt.says)
			}
		})
	}
}

// The bounds of the values a package owns, from both sides: the value at a
// bound is accepted, the next one refused naming the variable (the rule is
// the owner's; canaryd only names the variable).
func TestConfigBoundaries(t *testing.T) {
	for _, tc := range []struct {
		name, ok, bad string
	}{
		{"CANARY_SLO_ERROR_RATE", "0.99", "0"},
		{"CANARY_SLO_P95", "1ms", "0s"},
		{"CANARY_SLO_WINDOW", "1s", "999ms"},
		{"CANARY_SLO_MIN_REQUESTS", "1", "0"},
		{"CANARY_EVAL_INTERVAL", "1ms", "0s"},
		{"CANARY_INTEGRITY_INTERVAL", "1ms", "-1s"},
		{"CANARY_JUDGE", "window", "Window"},
		{"CANARY_ALPHA", "0.49", "0"},
		{"CANARY_COMPARE_MARGIN", "10", "0"},
		{"CANARY_HEALTH_INTERVAL", "1ms", "0s"},
		{"CANARY_HEALTH_PATH", "/", "h"},
		{"CANARY_UPSTREAM_TIMEOUT", "1ms", "0s"},
		{"CANARY_MAX_CONNS_PER_BACKEND", "1", "0"},
		{"CANARY_MAX_RESPONSE_HEADER_BYTES", "4096", "4095"},
		{"CANARY_MAX_RESPONSE_HEADER_BYTES", "16777216", "16777217"},
		{"CANARY_REQUEST_BUFFER", "1024", "1023"},
		{"CANARY_REQUEST_BUFFER", "67108864", "67108865"},
		{"CANARY_BODY_READ_TIMEOUT", "1ms", "-1ms"},
		{"CANARY_DNS_REFRESH", "1s", "999ms"},
		{"CANARY_EJECT_CONSECUTIVE_FAILURES", "0", "-1"},
		{"CANARY_EJECT_TIME", "5m", "5m1s"},
		{"CANARY_STICKY_KEY", "header:X-User", "header:"},
		{"CANARY_OVERRIDE_HEADER", "X-Canary", "X-Canary:"},
		{"CANARY_MAX_HEADER_BYTES", "4096", "4095"},
		{"CANARY_SHUTDOWN_TIMEOUT", "0s", "-1s"},
		{"CANARY_PROGRESS_DEADLINE", "0s", "-1s"},
	} {
		if _, err := loadConfig(with(baseEnv(t), tc.name+"="+tc.ok)); err != nil {
			t.Errorf("%s=%s: %v; want it accepted", tc.name, tc.ok, err)
		}
		var stdout, stderr bytes.Buffer
		code := run(context.Background(), nil, with(baseEnv(t), tc.name+"="+tc.bad), &stdout, &stderr)
		if out := stderr.String(); code != exitConfig || strings.Count(out, "\n") != 1 || !strings.HasPrefix(out, "canaryd: "+tc.name+": ") {
			t.Errorf("%s=%s: exit %d, %q; want 2 and one line naming %s", tc.name, tc.bad, code, out, tc.name)
		}
	}
	// The pairs: a deadline longer than every step, and rollback only with
	// a deadline.
	for _, tc := range []struct {
		env  []string
		want string // "" = accepted
	}{
		{[]string{"CANARY_STEPS=5@10m,50@20m", "CANARY_PROGRESS_DEADLINE=21m"}, ""},
		{[]string{"CANARY_STEPS=5@10m,50@20m", "CANARY_PROGRESS_DEADLINE=20m"}, "CANARY_PROGRESS_DEADLINE"},
		{[]string{"CANARY_PROGRESS_DEADLINE=1m", "CANARY_PROGRESS_DEADLINE_ACTION=rollback"}, ""},
		{[]string{"CANARY_PROGRESS_DEADLINE_ACTION=rollback"}, "CANARY_PROGRESS_DEADLINE_ACTION"},
	} {
		_, err := loadConfig(with(baseEnv(t), tc.env...))
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%v: %v; want it accepted", tc.env, err)
		case tc.want != "" && (err == nil || !strings.HasPrefix(err.Error(), tc.want+": ")):
			t.Errorf("%v: %v; want an error naming %s", tc.env, err, tc.want)
		}
	}
}
