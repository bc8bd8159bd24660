package deploy_test

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

const (
	unitPath    = "systemd/canaryd.service"
	envFilePath = "systemd/canaryd.env"
)

// unitFile is a systemd unit: section → key → values (a key may repeat).
type unitFile map[string]map[string][]string

func readUnit(t *testing.T, p string) unitFile {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	u := unitFile{}
	section := ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";"):
		case strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]"):
			section = strings.Trim(line, "[]")
			u[section] = map[string][]string{}
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok || section == "" {
				t.Fatalf("%s: %q is not key=value in a section", p, line)
			}
			u[section][k] = append(u[section][k], v)
		}
	}
	return u
}

// get is the last value of key (systemd: the last assignment wins).
func (u unitFile) get(section, key string) string {
	v := u[section][key]
	if len(v) == 0 {
		return ""
	}
	return v[len(v)-1]
}

// environment returns the Environment= assignments of [Service].
func (u unitFile) environment() map[string]string {
	env := map[string]string{}
	for _, e := range u["Service"]["Environment"] {
		k, v, _ := strings.Cut(strings.Trim(e, `"`), "=")
		env[k] = v
	}
	return env
}

// TestSystemdUnit checks the service's essentials (what starts, how it
// reloads and stops, where the state and the token live, the sandbox) and,
// where systemd-analyze exists, that systemd accepts the unit and rates its
// exposure low. CANARY_REQUIRE_SYSTEMD_ANALYZE=1 makes a missing
// systemd-analyze a failure (CI installs it).
func TestSystemdUnit(t *testing.T) {
	u := readUnit(t, unitPath)
	for _, kv := range [][2]string{
		{"ExecStart", "/usr/local/bin/canaryd serve"},
		{"ExecReload", "/bin/kill -HUP $MAINPID"},
		{"Restart", "on-failure"},
		{"DynamicUser", "yes"},
		{"StateDirectory", "canaryd"},
		{"EnvironmentFile", "/etc/canaryd/canaryd.env"},
		{"NoNewPrivileges", "yes"},
		{"ProtectSystem", "strict"},
		{"ProtectHome", "yes"},
		{"PrivateTmp", "yes"},
		{"PrivateDevices", "yes"},
		{"RestrictSUIDSGID", "yes"},
		{"CapabilityBoundingSet", "CAP_NET_BIND_SERVICE"},
	} {
		if got := u.get("Service", kv[0]); got != kv[1] {
			t.Errorf("[Service] %s=%q; want %q", kv[0], got, kv[1])
		}
	}
	if u.get("Install", "WantedBy") != "multi-user.target" {
		t.Errorf("[Install] WantedBy=%q; want multi-user.target", u.get("Install", "WantedBy"))
	}
	env := u.environment()
	if want := "%S/" + u.get("Service", "StateDirectory") + "/"; !strings.HasPrefix(env["CANARY_STATE_FILE"], want) {
		t.Errorf("CANARY_STATE_FILE=%q is not in the StateDirectory (%s…): a rollback would not survive a restart", env["CANARY_STATE_FILE"], want)
	}
	cred, _, _ := strings.Cut(u.get("Service", "LoadCredential"), ":")
	if env["CANARY_TOKEN_FILE"] != "%d/"+cred || cred == "" {
		t.Errorf("CANARY_TOKEN_FILE=%q, LoadCredential=%q; want the token as a credential file", env["CANARY_TOKEN_FILE"], u.get("Service", "LoadCredential"))
	}
	if stop, err := time.ParseDuration(u.get("Service", "TimeoutStopSec")); err != nil || stop <= 30*time.Second {
		t.Errorf("TimeoutStopSec=%q; want longer than CANARY_SHUTDOWN_TIMEOUT's 30s so a drain is never cut", u.get("Service", "TimeoutStopSec"))
	}

	// The example environment file names only variables canaryd knows, and
	// none that the unit sets itself.
	known, err := readmeVariables()
	if err != nil {
		t.Fatal(err)
	}
	envFile := readEnvFile(t, envFilePath)
	for k := range envFile {
		if !slices.Contains(known, k) {
			t.Errorf("%s: %s is not a canaryd variable; canaryd would exit 2", envFilePath, k)
		}
		if _, inUnit := env[k]; inUnit || k == "CANARY_TOKEN" {
			t.Errorf("%s sets %s, which the unit provides (token as a credential, state in the StateDirectory)", envFilePath, k)
		}
	}
	for _, k := range []string{"CANARY_STABLE_URL", "CANARY_CANARY_URL"} {
		if envFile[k] == "" {
			t.Errorf("%s does not set %s", envFilePath, k)
		}
	}

	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		msg := "systemd-analyze not installed (Debian: apt-get install systemd): the unit was checked by this test only"
		if os.Getenv("CANARY_REQUIRE_SYSTEMD_ANALYZE") == "1" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	// systemd-analyze wants ExecStart's program to exist: a stand-in.
	dir := t.TempDir()
	stub := filepath.Join(dir, "canaryd")
	if err := os.WriteFile(stub, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(unitPath)
	if err != nil {
		t.Fatal(err)
	}
	unit := filepath.Join(dir, "canaryd.service")
	if err := os.WriteFile(unit, []byte(strings.ReplaceAll(string(raw), "/usr/local/bin/canaryd", stub)), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, analyze, "verify", "--man=no", unit).CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
	out, err = exec.CommandContext(ctx, analyze, "security", "--offline=yes", unit).CombinedOutput()
	m := regexp.MustCompile(`Overall exposure level for canaryd.service: ([0-9.]+)`).FindSubmatch(out)
	if err != nil || m == nil {
		t.Logf("systemd-analyze security --offline not available here (systemd 250 or later): %v", err)
		return
	}
	exposure, _ := strconv.ParseFloat(string(m[1]), 64)
	t.Logf("systemd-analyze security: exposure %.1f", exposure)
	if exposure > 2.0 {
		t.Errorf("systemd-analyze security rates the unit's exposure %.1f; want 2.0 or less (OK)\n%s", exposure, out)
	}
}

// readEnvFile reads KEY=value lines, skipping blank lines and comments.
func readEnvFile(t *testing.T, p string) map[string]string {
	t.Helper()
	raw, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{}
	for _, line := range strings.Split(string(raw), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			t.Errorf("%s: %q is not KEY=value", p, line)
		}
		env[k] = v
	}
	return env
}
