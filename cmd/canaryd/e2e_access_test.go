package main

// End-to-end tests of admin access: named tokens with roles
// (CANARY_TOKENS_FILE), their rotation without a restart, and the command
// line with a read token, against the real binary.

import (
	"encoding/json"
	"net/http"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Tokens of the access tests, all of one length so that a rewrite in place
// keeps the file's size.
const (
	aliceToken1 = "alice-token-1-0123456789"
	aliceToken2 = "alice-token-2-0123456789"
	aliceToken3 = "alice-token-3-0123456789"
	aliceToken4 = "alice-token-4-0123456789"
	aliceToken5 = "alice-token-5-0123456789"
	bobToken    = "bob-token-00-0123456789x"
	ciToken     = "ci-read-token-0123456789"
)

// status is the status of GET /canary_check with token.
func (in *instance) status(token string) int {
	in.t.Helper()
	resp, _ := in.adminGet("/canary_check", token)
	return resp.StatusCode
}

// noSecretsIn fails when one of the tokens shows up in s.
func noSecretsIn(t *testing.T, what, s string, secrets ...string) {
	t.Helper()
	for _, secret := range secrets {
		if strings.Contains(s, secret) {
			t.Errorf("%s contains the token %.8s…", what, secret)
		}
	}
}

// rolloutCalls are the /rollout/… calls with bodies they accept.
var rolloutCalls = []struct{ path, body string }{
	{"/rollout/weight", `{"weight": 2}`},
	{"/rollout/promote", ""},
	{"/rollout/rollback", ""},
	{"/rollout/pause", ""},
	{"/rollout/resume", "{}"},
	{"/rollout/reset", ""},
	{"/rollout/start", `{"release": "v2"}`},
	{"/rollout/finish", ""},
}

// A read token reads every GET endpoint and gets 403 on every /rollout/…
// call, which changes nothing; an operate token steers, and the history
// names the token. CANARY_TOKEN and CANARY_TOKENS_FILE are set together.
func TestE2EAccessRoles(t *testing.T) {
	dir := t.TempDir()
	tokens := writeFile(t, dir, "tokens", "# team\nops-alice operate "+aliceToken1+"\nci read "+ciToken+"\n")
	stable, canary := newBackend(t, "stable", nil), newBackend(t, "canary", nil)
	in := start(t, testEnv(t, stable, canary, "CANARY_TOKENS_FILE="+tokens, "CANARY_STEPS=5@1h,50@1h", "CANARY_RELEASE=v1"))
	in.send(50)

	for _, path := range []string{"/canary_check", "/dashboard/health_summary", "/dashboard/canary_overview",
		"/dashboard/integrity_details", "/dashboard/session", "/dashboard", "/dashboard/assets/app.js", "/healthz", "/readyz", "/metrics"} {
		for _, method := range []string{http.MethodGet, http.MethodHead} {
			if resp, body := in.adminDo(method, path, ciToken, ""); resp.StatusCode != http.StatusOK {
				t.Errorf("%s %s with the read token = %d %s; want 200", method, path, resp.StatusCode, body)
			}
		}
	}
	for token, want := range map[string]string{
		ciToken:     `{"name":"ci","role":"read"}`,
		aliceToken1: `{"name":"ops-alice","role":"operate"}`,
		testToken:   `{"name":"default","role":"operate"}`,
	} {
		if resp, body := in.adminGet("/dashboard/session", token); resp.StatusCode != 200 || strings.TrimSpace(string(body)) != want {
			t.Errorf("GET /dashboard/session = %d %s; want 200 %s", resp.StatusCode, body, want)
		}
	}

	before := in.overview()
	for _, c := range rolloutCalls {
		resp, body := in.adminDo(http.MethodPost, c.path, ciToken, c.body)
		code, header := resp.StatusCode, resp.Header
		var e struct{ Error string }
		if code != http.StatusForbidden || json.Unmarshal(body, &e) != nil ||
			e.Error != `token "ci" has the read role; POST `+c.path+` needs the operate role` || header.Get("Content-Type") != "application/json" {
			t.Errorf("POST %s with the read token = %d %s; want 403 with a JSON error naming the token and the role", c.path, code, body)
		}
		if h := header.Get("WWW-Authenticate"); h != "" {
			t.Errorf("POST %s: 403 with WWW-Authenticate %q", c.path, h)
		}
	}
	if after := in.overview(); len(after.History) != len(before.History) || after.State != before.State || after.Weight != before.Weight {
		t.Errorf("the read token's calls changed the rollout: %+v → %+v", before, after)
	}
	if v, _ := in.metricValue("canary_admin_auth_failures_total", "reason", "forbidden"); v != float64(len(rolloutCalls)) {
		t.Errorf(`canary_admin_auth_failures_total{reason="forbidden"} = %v; want %d`, v, len(rolloutCalls))
	}
	if v, _ := in.metricValue("canary_admin_auth_rate_limited_total"); v != 0 {
		t.Errorf("canary_admin_auth_rate_limited_total = %v; want 0 (a 403 is no failed guess)", v)
	}
	for role, want := range map[string]float64{"read": 1, "operate": 2} {
		if v, _ := in.metricValue("canary_admin_tokens", "role", role); v != want {
			t.Errorf("canary_admin_tokens{role=%q} = %v; want %v", role, v, want)
		}
	}

	// Every call with an operate token; the history names the token.
	applied := map[string]int{}
	for i, c := range rolloutCalls {
		token, name := aliceToken1, "ops-alice"
		if i%2 == 1 {
			token, name = testToken, "default"
		}
		resp, body := in.adminDo(http.MethodPost, c.path, token, c.body)
		code := resp.StatusCode
		if code != http.StatusOK && code != http.StatusConflict {
			t.Errorf("POST %s with %s's operate token = %d %s; want it applied (or 409)", c.path, name, code, body)
			continue
		}
		if code != http.StatusOK {
			continue
		}
		applied[name]++
		var o overviewBody
		json.Unmarshal(body, &o)
		if last := o.History[len(o.History)-1]; last.Who != name+" (127.0.0.1)" {
			t.Errorf("POST %s: history who = %q; want %q", c.path, last.Who, name+" (127.0.0.1)")
		}
	}
	if applied["ops-alice"] == 0 || applied["default"] == 0 {
		t.Errorf("commands applied per token: %v; want some by each", applied)
	}
	if !strings.Contains(in.logs.String(), `"token":"ops-alice","who":"ops-alice (127.0.0.1)"`) {
		t.Error("no command log line names the token ops-alice")
	}

	// The command line with a read token: check and rollout status work,
	// a steering verb exits 2 saying an operate token is needed.
	readEnv := in.clientEnv("CANARY_TOKEN=" + ciToken)
	if code, stdout, stderr := runBinary(t, readEnv, "check"); code != exitOK || stdout == "" {
		t.Errorf("check with the read token: exit %d, %q %q; want 0", code, stdout, stderr)
	}
	if code, stdout, stderr := runBinary(t, readEnv, "rollout", "status"); code != exitOK || !strings.Contains(stdout, "release v2") {
		t.Errorf("rollout status with the read token: exit %d, %q %q; want 0 and the rollout", code, stdout, stderr)
	}
	for _, verb := range [][]string{{"pause"}, {"weight", "5"}, {"start", "v3"}, {"finish"}} {
		code, stdout, stderr := runBinary(t, readEnv, append([]string{"rollout"}, verb...)...)
		if code != exitConfig || stdout != "" {
			t.Errorf("rollout %s with the read token: exit %d, stdout %q; want 2 and nothing", verb[0], code, stdout)
		}
		oneLine(t, "rollout "+verb[0]+" with the read token", stderr, "canaryd rollout "+verb[0]+": POST "+in.admin+"/rollout/")
		if !strings.Contains(stderr, `answered 403 Forbidden: token "ci" has the read role`) || !strings.HasSuffix(stderr, "(this needs an operate token in CANARY_TOKEN or CANARY_TOKEN_FILE)\n") {
			t.Errorf("rollout %s with the read token: %q; want the 403 and the hint", verb[0], stderr)
		}
	}
	// An operate token in CANARY_TOKEN_FILE steers, and the summary names it.
	aliceFile := writeFile(t, dir, "alice", aliceToken1+"\n")
	code, stdout, stderr := runBinary(t, in.clientEnv("CANARY_TOKEN", "CANARY_TOKEN_FILE="+aliceFile), "rollout", "start", "v3")
	if code != exitOK || !strings.Contains(stdout, `started release "v3"`) || !strings.Contains(stdout, "by ops-alice (127.0.0.1)") {
		t.Errorf("rollout start with ops-alice's token file: exit %d, %q %q; want 0 and the change by ops-alice", code, stdout, stderr)
	}
	noSecretsIn(t, "canaryd's output", in.logs.String(), aliceToken1, ciToken, testToken)
}

// revokedWithin waits until token is refused (401) and returns how long it
// took from since; it fails the test if that never happens within 10 s.
func (in *instance) revokedWithin(what, token string, since time.Time) time.Duration {
	in.t.Helper()
	for in.status(token) != http.StatusUnauthorized {
		if time.Since(since) > 10*time.Second {
			in.t.Fatalf("%s: the old token still works after 10 s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return time.Since(since)
}

// Rotating CANARY_TOKENS_FILE without a restart: by atomic rename and by a
// rewrite in place, each revoking the old token within 2 s; a file that
// turns bad is refused and the tokens in force stay; SIGHUP reloads at once
// what the watcher cannot see.
func TestE2ETokenRotation(t *testing.T) {
	dir := t.TempDir()
	tokens := writeFile(t, dir, "tokens", "ops-alice operate "+aliceToken1+"\nci read "+ciToken+"\n")
	stable, canary := newBackend(t, "stable", nil), newBackend(t, "canary", nil)
	in := start(t, testEnv(t, stable, canary, "CANARY_TOKEN", "CANARY_TOKENS_FILE="+tokens))
	if in.status(aliceToken1) != 200 || in.status(ciToken) != 200 || in.status(testToken) != 401 {
		t.Fatalf("at start: ops-alice %d, ci %d, CANARY_TOKEN unset %d; want 200, 200, 401", in.status(aliceToken1), in.status(ciToken), in.status(testToken))
	}
	all := []string{aliceToken1, aliceToken2, aliceToken3, aliceToken4, aliceToken5, bobToken, ciToken}

	// Atomic rename: ops-alice gets a new token, ops-bob comes.
	writeAtomic(t, tokens, []byte("ops-alice operate "+aliceToken2+"\nci read "+ciToken+"\nops-bob operate "+bobToken+"\n"))
	took := in.revokedWithin("atomic rename", aliceToken1, time.Now())
	t.Logf("atomic rename: the old token was refused after %v", took.Round(time.Millisecond))
	if took > 2*time.Second {
		t.Errorf("atomic rename: the old token was refused after %v; want within 2s", took)
	}
	if in.status(aliceToken2) != 200 || in.status(bobToken) != 200 || in.status(ciToken) != 200 {
		t.Errorf("after the rename: new ops-alice %d, ops-bob %d, ci %d; want 200", in.status(aliceToken2), in.status(bobToken), in.status(ciToken))
	}
	waitUntil(t, "the reload logged", func() bool {
		return strings.Contains(in.logs.String(), `"added":["ops-bob"],"removed":[],"rotated":["ops-alice"]`)
	})

	// Rewrite in place (same inode): ops-alice's token again, ops-bob goes.
	before, err := os.Stat(tokens)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(tokens, []byte("ops-alice operate "+aliceToken3+"\nci read "+ciToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	took = in.revokedWithin("rewrite in place", aliceToken2, time.Now())
	t.Logf("rewrite in place: the old token was refused after %v", took.Round(time.Millisecond))
	if took > 2*time.Second {
		t.Errorf("rewrite in place: the old token was refused after %v; want within 2s", took)
	}
	if after, _ := os.Stat(tokens); !os.SameFile(before, after) {
		t.Fatal("os.WriteFile replaced the file; the test wants a rewrite in place")
	}
	waitUntil(t, "ops-bob revoked", func() bool { return in.status(bobToken) == 401 })
	if in.status(aliceToken3) != 200 {
		t.Errorf("after the rewrite: ops-alice's new token = %d; want 200", in.status(aliceToken3))
	}

	// A file that turns bad is refused; the tokens in force stay.
	bad := "ops-alice operate " + aliceToken4 + "\nci admin " + ciToken + "\n"
	writeAtomic(t, tokens, []byte(bad))
	waitUntil(t, "the bad file refused", func() bool {
		return strings.Contains(in.logs.String(), "admin token file changed but is refused; the tokens in force stay")
	})
	if !strings.Contains(in.logs.String(), "CANARY_TOKENS_FILE: "+tokens+": line 2: role must be read or operate") {
		t.Errorf("the refusal does not name the variable and the line:\n%s", in.logs.String())
	}
	if in.status(aliceToken3) != 200 || in.status(ciToken) != 200 || in.status(aliceToken4) != 401 {
		t.Errorf("after a bad file: ops-alice's token in force %d, ci %d, the bad file's token %d; want 200, 200, 401",
			in.status(aliceToken3), in.status(ciToken), in.status(aliceToken4))
	}
	if v, _ := in.metricValue("canary_admin_tokens", "role", "operate"); v != 1 {
		t.Errorf("canary_admin_tokens{role=operate} = %v after a refused file; want 1", v)
	}

	// SIGHUP: a good file that keeps the bad one's inode, size and time, so
	// only the signal can find it.
	stat, _ := os.Stat(tokens)
	good := "ops-alice operate " + aliceToken5 + "\nci read  " + ciToken + "\n"
	if len(good) != len(bad) {
		t.Fatalf("test bug: %d and %d bytes", len(good), len(bad))
	}
	if err := os.WriteFile(tokens, []byte(good), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(tokens, stat.ModTime(), stat.ModTime()); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1500 * time.Millisecond) // three looks of the watcher
	if in.status(aliceToken3) != 200 || in.status(aliceToken5) != 401 {
		t.Fatalf("the watcher saw a file with the same inode, size and time (ops-alice old %d, new %d); the SIGHUP check needs it not to",
			in.status(aliceToken3), in.status(aliceToken5))
	}
	sent := time.Now()
	if err := in.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	took = in.revokedWithin("SIGHUP", aliceToken3, sent)
	t.Logf("SIGHUP: the old token was refused after %v", took.Round(time.Millisecond))
	if in.status(aliceToken5) != 200 {
		t.Errorf("after SIGHUP: ops-alice's new token = %d; want 200", in.status(aliceToken5))
	}
	waitUntil(t, "the SIGHUP line", func() bool {
		return strings.Contains(in.logs.String(), "SIGHUP: reloaded admin tokens (2 in force; new token for ops-alice); other settings need a restart")
	})
	noSecretsIn(t, "canaryd's output", in.logs.String(), all...)
	if code := in.stop(); code != 0 {
		t.Errorf("exit after SIGTERM = %d; want 0", code)
	}
}

// CANARY_TOKEN_FILE, the default token's file, is reloaded too; the command
// line reads the rotated file on its next run.
func TestE2EDefaultTokenFileRotation(t *testing.T) {
	dir := t.TempDir()
	file := writeFile(t, dir, "token", aliceToken1+"\n")
	stable, canary := newBackend(t, "stable", nil), newBackend(t, "canary", nil)
	in := start(t, testEnv(t, stable, canary, "CANARY_TOKEN", "CANARY_TOKEN_FILE="+file))
	env := in.clientEnv("CANARY_TOKEN", "CANARY_TOKEN_FILE="+file)
	if code, _, stderr := runBinary(t, env, "rollout", "weight", "5"); code != exitOK {
		t.Fatalf("rollout weight 5 with the token file: exit %d, %q", code, stderr)
	}
	writeAtomic(t, file, []byte(aliceToken2+"\n"))
	took := in.revokedWithin("CANARY_TOKEN_FILE renamed", aliceToken1, time.Now())
	if took > 2*time.Second {
		t.Errorf("the old default token was refused after %v; want within 2s", took)
	}
	code, stdout, stderr := runBinary(t, env, "rollout", "weight", "7")
	if code != exitOK || !strings.Contains(stdout, "by default (127.0.0.1)") {
		t.Errorf("rollout weight 7 with the rotated file: exit %d, %q %q; want 0, by default (127.0.0.1)", code, stdout, stderr)
	}
	noSecretsIn(t, "canaryd's output", in.logs.String(), aliceToken1, aliceToken2)
}

// A bad tokens file at start: exit 2 and one line naming CANARY_TOKENS_FILE
// and the line, never a token.
func TestE2EBadTokensFileAtStart(t *testing.T) {
	dir := t.TempDir()
	stable, canary := newBackend(t, "stable", nil), newBackend(t, "canary", nil)
	for _, tt := range []struct{ name, content, want string }{
		{"unknown role", "ops-alice operate " + aliceToken1 + "\nci admin " + ciToken + "\n", "line 2: role must be read or operate"},
		{"columns swapped", aliceToken1 + " operate ops-alice\n", "line 1: token is 9 characters long"},
		{"duplicate token", "a operate " + aliceToken1 + "\nb read " + aliceToken1 + "\n", "line 2: the token is the same as the one of line 1"},
		{"the name default", "default read " + aliceToken1 + "\n", `line 1: the name is already used by token "default"`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := writeFile(t, dir, strings.ReplaceAll(tt.name, " ", "-"), tt.content)
			code, stdout, stderr := runBinary(t, testEnv(t, stable, canary, "CANARY_TOKENS_FILE="+f))
			if code != exitConfig || stdout != "" {
				t.Errorf("exit %d, stdout %q; want 2 and nothing", code, stdout)
			}
			oneLine(t, "stderr", stderr, "canaryd: CANARY_TOKENS_FILE: "+f+": "+tt.want)
			noSecretsIn(t, "stderr", stderr, aliceToken1, ciToken, testToken)
		})
	}
}
