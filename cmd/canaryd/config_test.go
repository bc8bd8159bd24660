package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
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
		c.SLOP95.String() != "500ms" || c.SLOWindow.String() != "5m0s" || c.SLOMinRequests != 100 {
		t.Errorf("defaults = %+v", c)
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
	if c.Token != "file-token-0123456789" {
		t.Errorf("token from file = %q", c.Token)
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
