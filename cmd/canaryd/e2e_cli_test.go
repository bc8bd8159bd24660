package main

// End-to-end tests of the command line: configuration mistakes, start-up
// failures, signals, canaryd rollout and canaryd check --wait, each against
// the real binary.

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// runBinary runs canaryd with exactly env (nil: an empty environment, never
// the test's own, whose CANARY_REQUIRE_* switches canaryd would refuse) and
// args to completion (at most a minute) and returns its exit status and
// output.
func runBinary(t *testing.T, env []string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Env = append([]string{}, env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(time.Minute):
		cmd.Process.Kill()
		<-done
		t.Fatalf("canaryd %v did not finish within a minute", args)
	}
	return cmd.ProcessState.ExitCode(), out.String(), errb.String()
}

// clientEnv is the environment of canaryd check and canaryd rollout against in.
func (in *instance) clientEnv(extra ...string) []string {
	return with([]string{"CANARY_ADMIN_URL=" + in.admin, "CANARY_TOKEN=" + testToken}, extra...)
}

// oneLine checks that s is exactly one line starting with prefix.
func oneLine(t *testing.T, what, s, prefix string) {
	t.Helper()
	if strings.Count(s, "\n") != 1 || !strings.HasPrefix(s, prefix) {
		t.Errorf("%s: %q; want one line starting %q", what, s, prefix)
	}
}

// A typo in a variable stops canaryd with exit 2, one line naming it and the
// variable it probably meant, before anything else happens.
func TestE2EUnknownVariable(t *testing.T) {
	stable, canary := newBackend(t, "stable", nil), newBackend(t, "canary", nil)
	env := testEnv(t, stable, canary, "CANARY_WIEGHT=50")
	code, stdout, stderr := runBinary(t, env)
	if code != exitConfig || stdout != "" {
		t.Errorf("exit %d, stdout %q; want 2 and nothing on stdout", code, stdout)
	}
	oneLine(t, "stderr", stderr, "canaryd: CANARY_WIEGHT: unknown variable; did you mean CANARY_WEIGHT?")
}

// A port in use is one line naming the variable, with a hint; no JSON log
// line, no state file.
func TestE2EPortInUse(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	stable, canary := newBackend(t, "stable", nil), newBackend(t, "canary", nil)
	for _, name := range []string{"CANARY_LISTEN", "CANARY_ADMIN_LISTEN", "CANARY_PPROF_LISTEN"} {
		env := testEnv(t, stable, canary, name+"="+busy.Addr().String())
		code, _, stderr := runBinary(t, env)
		if code != exitConfig {
			t.Errorf("%s in use: exit %d; want 2", name, code)
		}
		oneLine(t, name+" in use", stderr, "canaryd: "+name+": "+busy.Addr().String()+" is already in use")
		if !strings.Contains(stderr, "hint:") || strings.Contains(stderr, "{") {
			t.Errorf("%s in use: %q; want a hint and no JSON", name, stderr)
		}
		for _, kv := range env {
			if f, ok := strings.CutPrefix(kv, "CANARY_STATE_FILE="); ok {
				if _, err := os.Stat(f); !os.IsNotExist(err) {
					t.Errorf("%s in use: the state file was touched (%v)", name, err)
				}
			}
		}
	}
}

// check -h answers with check's usage, not with a missing token.
func TestE2ECheckHelp(t *testing.T) {
	code, stdout, stderr := runBinary(t, nil, "check", "-h")
	if code != exitOK || stderr != "" || !strings.Contains(stdout, "Usage: canaryd check") || !strings.Contains(stdout, "-wait") {
		t.Errorf("check -h: exit %d, stdout %q, stderr %q; want check's usage", code, stdout, stderr)
	}
	code, stdout, _ = runBinary(t, nil, "--help")
	for _, want := range []string{"canaryd rollout", "canaryd check", "CANARY_WEIGHT", "Exit status:"} {
		if code != exitOK || !strings.Contains(stdout, want) {
			t.Errorf("--help: exit %d, output lacks %q", code, want)
		}
	}
}

// SIGHUP under load: no request fails, the process keeps serving, and a
// rotated certificate is served afterwards, even one the modification-time
// watcher cannot see (copied with its old time).
func TestE2ESighupReloadsUnderLoad(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile, first := selfSigned(t, dir, 1)
	stable, canary := newBackend(t, "stable", nil), newBackend(t, "canary", nil)
	in := start(t, testEnv(t, stable, canary, "CANARY_TLS_CERT_FILE="+certFile, "CANARY_TLS_KEY_FILE="+keyFile))

	var ok, failed atomic.Int64
	var lastErr atomic.Value
	stopLoad := make(chan struct{})
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Go(func() {
			// Half the workers reuse connections, half open one per request.
			tr := &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, DisableKeepAlives: i%2 == 1}
			defer tr.CloseIdleConnections()
			cl := &http.Client{Transport: tr, Timeout: 10 * time.Second}
			for {
				select {
				case <-stopLoad:
					return
				default:
				}
				resp, err := cl.Get(in.traffic + "/load")
				if err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
				if err != nil || resp.StatusCode != http.StatusOK {
					failed.Add(1)
					lastErr.Store(err)
					continue
				}
				ok.Add(1)
			}
		})
	}
	serial := func() int64 {
		tr := &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}
		defer tr.CloseIdleConnections()
		resp, err := (&http.Client{Transport: tr, Timeout: 5 * time.Second}).Get(in.traffic + "/")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.TLS.PeerCertificates[0].SerialNumber.Int64()
	}
	waitUntil(t, "load running", func() bool { return ok.Load() > 50 })
	for range 5 {
		if err := in.cmd.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	waitUntil(t, "a reload logged", func() bool { return strings.Contains(in.logs.String(), "SIGHUP: reloaded TLS certificate") })

	// Rotate with files older than the ones loaded: only SIGHUP sees them.
	selfSigned(t, dir, 2)
	old := time.Now().Add(-time.Hour)
	for _, f := range []string{certFile, keyFile} {
		if err := os.Chtimes(f, old, old); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(1500 * time.Millisecond) // more than one tick of the watcher
	if got := serial(); got != first.SerialNumber.Int64() {
		t.Fatalf("serial %d before SIGHUP; want %d (the watcher should not see an older file)", got, first.SerialNumber.Int64())
	}
	in.cmd.Process.Signal(syscall.SIGHUP)
	waitUntil(t, "certificate 2 served after SIGHUP", func() bool { return serial() == 2 })
	if !strings.Contains(in.logs.String(), "(serial 2,") {
		t.Errorf("the reload log does not name the new certificate:\n%s", in.logs.String())
	}
	before := ok.Load()
	waitUntil(t, "load still served", func() bool { return ok.Load() > before+50 })
	close(stopLoad)
	wg.Wait()
	t.Logf("%d requests across 6 SIGHUPs, %d failed", ok.Load(), failed.Load())
	if n := failed.Load(); n != 0 {
		t.Errorf("%d requests failed across SIGHUP (last: %v)", n, lastErr.Load())
	}
	if code := in.stop(); code != 0 {
		t.Errorf("exit after SIGTERM = %d; want 0", code)
	}
}

// overviewOf decodes canaryd rollout -o json's output.
func overviewOf(t *testing.T, out string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(out), &m); err != nil {
		t.Fatalf("rollout -o json printed %q: %v", out, err)
	}
	return m
}

// Every canaryd rollout verb against a running canaryd, with the exit
// statuses of the README's table.
func TestE2ERolloutCommands(t *testing.T) {
	stable, canary := newBackend(t, "stable", nil), newBackend(t, "canary", nil)
	in := start(t, testEnv(t, stable, canary, "CANARY_STEPS=5@1h,25@1h,100@1h", "CANARY_RELEASE=v1"))
	env := in.clientEnv()
	for _, tc := range []struct {
		args       []string
		code       int
		wantStdout []string // with -o text
		weight     float64  // from -o json; -1: not checked
		state      string
	}{
		{[]string{"status"}, 0, []string{"release v1: progressing at weight 5%", "plan: 5% for 1h0m0s current"}, 5, "progressing"},
		{[]string{"promote"}, 0, []string{"release v1: progressing at weight 25%", "last change:"}, 25, "progressing"},
		{[]string{"pause"}, 0, []string{"paused at weight 25%"}, 25, "paused"},
		{[]string{"pause"}, exitFail, nil, -1, ""},
		{[]string{"resume"}, 0, []string{"progressing at weight 25%"}, 25, "progressing"},
		{[]string{"weight", "12.5"}, 0, []string{"paused at weight 12.5%"}, 12.5, "paused"},
		{[]string{"weight", "150"}, exitConfig, nil, -1, ""},
		{[]string{"weight", "--", "-1"}, exitConfig, nil, -1, ""},
		{[]string{"rollback"}, 0, []string{"rolled_back at weight 0%", "rolled back: rollback_manual by"}, 0, "rolled_back"},
		{[]string{"promote"}, exitFail, nil, -1, ""},
		{[]string{"reset"}, 0, []string{"progressing at weight 5%"}, 5, "progressing"},
	} {
		// Each step once as text; the read-only and the failing ones also
		// as JSON, which must then show the same state.
		code, stdout, stderr := runBinary(t, env, append([]string{"rollout"}, tc.args...)...)
		if code != tc.code {
			t.Fatalf("rollout %v: exit %d; want %d\nstdout %s\nstderr %s", tc.args, code, tc.code, stdout, stderr)
		}
		if code != 0 {
			oneLine(t, "rollout "+strings.Join(tc.args, " "), stderr, "canaryd rollout "+tc.args[0]+": ")
			continue
		}
		for _, w := range tc.wantStdout {
			if !strings.Contains(stdout, w) {
				t.Errorf("rollout %v: output lacks %q:\n%s", tc.args, w, stdout)
			}
		}
		code, stdout, _ = runBinary(t, env, "rollout", "status", "-o", "json")
		m := overviewOf(t, stdout)
		if code != 0 || m["weight"] != tc.weight || m["state"] != tc.state {
			t.Errorf("after rollout %v: status -o json exit %d, weight %v state %v; want %v %v", tc.args, code, m["weight"], m["state"], tc.weight, tc.state)
		}
	}
	// A verb's own JSON answer is the overview.
	if code, stdout, _ := runBinary(t, env, "rollout", "pause", "-o", "json"); code != 0 || overviewOf(t, stdout)["state"] != "paused" {
		t.Errorf("rollout pause -o json: exit %d, %s", code, stdout)
	}
	code, _, stderr := runBinary(t, with(env, "CANARY_TOKEN=wrong-token-0123456789abc"), "rollout", "status")
	if code != exitConfig || !strings.Contains(stderr, "401") {
		t.Errorf("wrong token: exit %d, %q; want 2 naming the 401", code, stderr)
	}
	if strings.Contains(stderr, testToken) {
		t.Error("canaryd rollout printed the token")
	}
	in.stop()
	code, _, stderr = runBinary(t, env, "rollout", "status")
	if code != exitNoReply {
		t.Errorf("no server: exit %d, %q; want 3", code, stderr)
	}
	oneLine(t, "no server", stderr, "canaryd rollout status: no answer from ")
}

// rollout start and finish follow the admin API's contract: POST
// /rollout/start {"release", "steps"} and POST /rollout/finish, each
// answering the overview, finish leaving the state "finished".
func TestE2ERolloutStartFinish(t *testing.T) {
	stable, canary := newBackend(t, "stable", nil), newBackend(t, "canary", nil)
	in := start(t, testEnv(t, stable, canary, "CANARY_STEPS=5@1h,100@1h", "CANARY_RELEASE=v1"))
	env := in.clientEnv()
	code, stdout, stderr := runBinary(t, env, "rollout", "start", "v2", "--steps", "10@1h,100@1h", "-o", "json")
	if code != 0 {
		t.Fatalf("rollout start v2: exit %d\nstdout %s\nstderr %s", code, stdout, stderr)
	}
	if m := overviewOf(t, stdout); m["release"] != "v2" || m["weight"] != 10.0 {
		t.Errorf("after start v2: release %v weight %v; want v2 at 10", m["release"], m["weight"])
	}
	code, stdout, stderr = runBinary(t, env, "rollout", "finish")
	if code != 0 || !strings.Contains(stdout, "release v2: finished") {
		t.Errorf("rollout finish: exit %d\nstdout %s\nstderr %s; want release v2: finished", code, stdout, stderr)
	}
}

// checkProcess is canaryd check --wait running in the background.
type checkProcess struct {
	cmd            *exec.Cmd
	stdout, stderr *syncBuffer
	done           chan struct{}
}

func startCheck(t *testing.T, env []string, args ...string) *checkProcess {
	t.Helper()
	p := &checkProcess{stdout: &syncBuffer{}, stderr: &syncBuffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(binary, append([]string{"check"}, args...)...)
	p.cmd.Env = env
	p.cmd.Stdout, p.cmd.Stderr = p.stdout, p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() { p.cmd.Process.Kill(); <-p.done })
	return p
}

// finishWithTraffic sends traffic through in until p exits (at most 40s)
// and returns its exit status.
func (p *checkProcess) finishWithTraffic(t *testing.T, in *instance) int {
	t.Helper()
	deadline := time.After(40 * time.Second)
	for {
		select {
		case <-p.done:
			return p.cmd.ProcessState.ExitCode()
		case <-deadline:
			t.Fatalf("canaryd check did not finish\nstdout %s\nstderr %s", p.stdout.String(), p.stderr.String())
		default:
		}
		if in != nil {
			in.send(20)
		} else {
			time.Sleep(50 * time.Millisecond)
		}
	}
}

// check --wait exits 0 on proceed, 1 on a rollback, 4 when the time runs
// out, 3 when canaryd never answered; without --wait, --strict makes hold 4.
func TestE2ECheckWait(t *testing.T) {
	t.Run("proceed exits 0", func(t *testing.T) {
		stable, canary := newBackend(t, "stable", nil), newBackend(t, "canary", nil)
		in := start(t, testEnv(t, stable, canary, "CANARY_JUDGE=window", "CANARY_SLO_MIN_REQUESTS=20", "CANARY_WEIGHT=50"))
		p := startCheck(t, in.clientEnv(), "--wait", "60s", "--interval", "100ms")
		// No traffic yet: it holds and says so, then traffic brings proceed.
		waitUntil(t, "progress while holding", func() bool {
			return strings.Contains(p.stderr.String(), "hold weight=50%") && strings.Contains(p.stderr.String(), "waiting for proceed")
		})
		if code := p.finishWithTraffic(t, in); code != exitOK {
			t.Errorf("exit %d; want 0\nstdout %s\nstderr %s", code, p.stdout.String(), p.stderr.String())
		}
		oneLine(t, "stdout", p.stdout.String(), "proceed weight=50% ")
	})
	t.Run("rollback exits 1", func(t *testing.T) {
		stable := newBackend(t, "stable", nil)
		canary := newBackend(t, "canary", func(w http.ResponseWriter, r *http.Request) { http.Error(w, "broken", 500) })
		in := start(t, testEnv(t, stable, canary, "CANARY_JUDGE=window", "CANARY_SLO_MIN_REQUESTS=20", "CANARY_WEIGHT=50"))
		p := startCheck(t, in.clientEnv(), "--wait", "60s", "--interval", "100ms")
		if code := p.finishWithTraffic(t, in); code != exitFail {
			t.Errorf("exit %d; want 1\nstdout %s\nstderr %s", code, p.stdout.String(), p.stderr.String())
		}
		oneLine(t, "stdout", p.stdout.String(), "rollback_error_rate weight=0% ")
	})
	t.Run("hold until the time runs out exits 4", func(t *testing.T) {
		stable, canary := newBackend(t, "stable", nil), newBackend(t, "canary", nil)
		in := start(t, testEnv(t, stable, canary, "CANARY_JUDGE=window", "CANARY_SLO_MIN_REQUESTS=100000"))
		began := time.Now()
		code, stdout, stderr := runBinary(t, in.clientEnv(), "check", "--wait", "1500ms", "--interval", "200ms")
		if code != exitNotYet || !strings.HasPrefix(stdout, "hold ") || !strings.Contains(stderr, "no verdict within 1.5s") {
			t.Errorf("exit %d, stdout %q, stderr %q; want 4 and the last hold", code, stdout, stderr)
		}
		if d := time.Since(began); d < 1500*time.Millisecond {
			t.Errorf("gave up after %v; want at least the 1.5s asked", d)
		}
		if code, stdout, _ := runBinary(t, in.clientEnv(), "check", "--strict"); code != exitNotYet || !strings.HasPrefix(stdout, "hold ") {
			t.Errorf("check --strict on hold: exit %d, %q; want 4", code, stdout)
		}
		if code, stdout, _ := runBinary(t, in.clientEnv(), "check"); code != exitOK || !strings.HasPrefix(stdout, "hold ") {
			t.Errorf("check on hold: exit %d, %q; want 0", code, stdout)
		}
		code, stdout, _ = runBinary(t, in.clientEnv(), "check", "-o", "json")
		var m map[string]any
		if code != exitOK || json.Unmarshal([]byte(stdout), &m) != nil || m["recommendation"] != "hold" {
			t.Errorf("check -o json: exit %d, %q; want the /canary_check JSON", code, stdout)
		}
	})
	t.Run("no answer at all exits 3", func(t *testing.T) {
		dead, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := dead.Addr().String()
		dead.Close()
		code, _, stderr := runBinary(t, []string{"CANARY_ADMIN_URL=http://" + addr, "CANARY_TOKEN=" + testToken}, "check", "--wait", "1s", "--interval", "200ms")
		if code != exitNoReply || !strings.Contains(stderr, "no answer within 1s") {
			t.Errorf("exit %d, %q; want 3", code, stderr)
		}
	})
}

// canaryd verify names the full path it looked at and the root.
func TestE2EVerifyNamesWhereItLooked(t *testing.T) {
	manifest := filepath.Join(testdata, "release.sha256")
	code, stdout, _ := runBinary(t, nil, "verify", manifest) // root defaults to testdata/, not testdata/release
	root, _ := filepath.Abs(testdata)
	for _, want := range []string{
		"root " + root + "\n",
		"FAILED index.html: missing (looked at " + filepath.Join(root, "index.html") + ")",
		"hint: none of the manifest's files is under " + root,
	} {
		if !strings.Contains(stdout, want) {
			t.Errorf("verify %s: output lacks %q:\n%s", manifest, want, stdout)
		}
	}
	if code != exitFail {
		t.Errorf("exit %d; want 1", code)
	}
}

// The admin API shows the same path in /dashboard/integrity_details.
func TestE2EIntegrityFailureNamesTheFile(t *testing.T) {
	root, _ := filepath.Abs(filepath.Join(testdata, "release"))
	stable, canary := newBackend(t, "stable", nil), newBackend(t, "canary", nil)
	in := start(t, testEnv(t, stable, canary, "CANARY_INTEGRITY_MANIFEST="+filepath.Join(testdata, "release-tampered.sha256"),
		"CANARY_INTEGRITY_ROOT="+filepath.Join(testdata, "release")))
	var rep struct {
		Failures []struct{ Path, Problem, File string } `json:"failures"`
	}
	waitUntil(t, "an integrity failure", func() bool {
		_, body := in.adminGet("/dashboard/integrity_details", testToken)
		json.Unmarshal(body, &rep)
		return len(rep.Failures) > 0
	})
	if f := rep.Failures[0]; f.Path != "index.html" || f.File != filepath.Join(root, "index.html") {
		t.Errorf("failure %+v; want index.html looked at %s", f, filepath.Join(root, "index.html"))
	}
}

// canaryd demo runs its backends, canaryd and traffic, and stops cleanly at
// the end of -duration.
func TestE2EDemoRunsAndStops(t *testing.T) {
	code, stdout, stderr := runBinary(t, []string{"CANARY_LISTEN=127.0.0.1:0", "CANARY_ADMIN_LISTEN=127.0.0.1:0"},
		"demo", "-duration", "3s", "-healthy", "1s", "-rate", "50")
	if code != exitOK || !strings.Contains(stdout, "canaryd demo: done after") || !strings.Contains(stdout, "requests sent") {
		t.Errorf("demo: exit %d\nstdout %s\nstderr %s", code, stdout, stderr)
	}
}
