package admin_test

import (
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/canaryd/canaryd/admin"
)

const (
	challengeMissing = `Bearer realm="canaryd"`
	challengeInvalid = `Bearer realm="canaryd", error="invalid_token"`
)

func TestParseBearer(t *testing.T) {
	tests := []struct {
		header    string
		wantToken string
		wantOK    bool
	}{
		{"Bearer abc", "abc", true},
		{"bearer abc", "abc", true},
		{"BEARER abc.def-ghi_jkl~mno+pqr/st==", "abc.def-ghi_jkl~mno+pqr/st==", true},
		{"Bearer !$&'()*", "!$&'()*", true},
		{"", "", false},
		{"Bearer", "", false},
		{"Bearer ", "", false},
		{"Bearer  abc", "abc", true},
		{"Bearer abc ", "", false},
		{"Bearer abc def", "", false},
		{" Bearer abc", "", false},
		{"Bearer\tabc", "", false},
		{"Bearer abc\tdef", "", false},
		{"Bearer abc\x00", "", false},
		{"Bearer abc\x7f", "", false},
		{"Bearer abcé", "", false},
		{"Basic YWxhZGRpbjpvcGVuc2VzYW1l", "", false},
		{"Bearerabc", "", false},
		{"Token abc", "", false},
	}
	for _, tt := range tests {
		token, ok := admin.ParseBearer(tt.header)
		if token != tt.wantToken || ok != tt.wantOK {
			t.Errorf("ParseBearer(%q) = %q, %v; want %q, %v", tt.header, token, ok, tt.wantToken, tt.wantOK)
		}
	}
}

func TestAuth(t *testing.T) {
	tests := []struct {
		name          string
		auth          []string
		wantStatus    int
		wantChallenge string
		wantReason    string // failure metric label
	}{
		{"right token", authed(), 200, "", ""},
		{"lower-case scheme", []string{"bearer " + testToken}, 200, "", ""},
		{"upper-case scheme", []string{"BEARER " + testToken}, 200, "", ""},
		{"no header", nil, 401, challengeMissing, "missing"},
		{"empty header", []string{""}, 401, challengeInvalid, "malformed"},
		{"wrong token", []string{"Bearer wrong-token-0123456789"}, 401, challengeInvalid, "invalid"},
		{"token prefix", []string{"Bearer " + testToken[:len(testToken)-1]}, 401, challengeInvalid, "invalid"},
		{"token plus a character", []string{"Bearer " + testToken + "x"}, 401, challengeInvalid, "invalid"},
		{"basic scheme", []string{"Basic " + testToken}, 401, challengeInvalid, "malformed"},
		{"two spaces (RFC 6750 allows 1*SP)", []string{"Bearer  " + testToken}, 200, "", ""},
		{"trailing word", []string{"Bearer " + testToken + " extra"}, 401, challengeInvalid, "malformed"},
		{"no scheme", []string{testToken}, 401, challengeInvalid, "malformed"},
		{"two headers", []string{"Bearer " + testToken, "Bearer " + testToken}, 401, challengeInvalid, "malformed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ts := newTestServer(t, nil, admin.LimiterConfig{})
			rec := ts.do(t, request{path: "/canary_check", auth: tt.auth})
			if rec.Code != tt.wantStatus {
				t.Fatalf("GET /canary_check with %q = %d; want %d", tt.name, rec.Code, tt.wantStatus)
			}
			if got := rec.Header().Get("WWW-Authenticate"); got != tt.wantChallenge {
				t.Errorf("WWW-Authenticate = %q; want %q", got, tt.wantChallenge)
			}
			if tt.wantStatus != 200 {
				errorBody(t, rec)
				if got := counterValue(t, ts.reg, "canary_admin_auth_failures_total", "reason", tt.wantReason); got != 1 {
					t.Errorf("canary_admin_auth_failures_total{reason=%q} = %v; want 1", tt.wantReason, got)
				}
			}
			secretsAbsent(t, ts, rec.Body.String(), rec.Header())
		})
	}
}

// TestTokenNeverLeaks sends the right token and near misses to every
// protected endpoint and checks that neither answers nor logs carry it.
func TestTokenNeverLeaks(t *testing.T) {
	ts := newTestServer(t, nil, admin.LimiterConfig{Burst: 1000})
	paths := []string{"/canary_check", "/dashboard/health_summary", "/dashboard/canary_overview", "/dashboard/integrity_details", "/dashboard/fleet"}
	auths := [][]string{authed(), {"Bearer " + testToken + "x"}, {"bearer  " + testToken}, {"Basic " + testToken}, {testToken}}
	var bodies strings.Builder
	for _, p := range paths {
		for _, a := range auths {
			rec := ts.do(t, request{path: p, auth: a})
			bodies.WriteString(rec.Body.String())
			secretsAbsent(t, ts, rec.Body.String(), rec.Header())
		}
	}
	for _, p := range []string{"/rollout/weight", "/rollout/pause"} {
		for _, a := range auths {
			rec := ts.do(t, request{method: "POST", path: p, body: `{"weight": "` + testToken + `"}`, auth: a})
			secretsAbsent(t, ts, rec.Body.String(), rec.Header())
		}
	}
	if !strings.Contains(ts.logs.String(), "failed authentication") {
		t.Fatalf("logs %q record no failed authentication; the leak check saw nothing", ts.logs)
	}
}

// secretsAbsent fails when the token (or any 8-character piece of its start,
// which the Authorization header's value contains too) shows up in a
// response or in the logs.
func secretsAbsent(t *testing.T, ts *testServer, body string, header http.Header) {
	t.Helper()
	for where, s := range map[string]string{"body": body, "logs": ts.logs.String()} {
		if strings.Contains(s, testToken) || strings.Contains(s, testToken[:8]) {
			t.Errorf("the token appears in the %s: %q", where, s)
		}
	}
	for k, vs := range header {
		for _, v := range vs {
			if strings.Contains(v, testToken[:8]) {
				t.Errorf("header %s: %q carries the token", k, v)
			}
		}
	}
}

func TestRateLimit(t *testing.T) {
	ts := newTestServer(t, nil, admin.LimiterConfig{})
	const attacker, bystander = "198.51.100.7:5000", "203.0.113.9:6000"
	wrong := []string{"Bearer wrong-token-0123456789"}
	get := func(remote string, auth []string) int {
		t.Helper()
		return ts.do(t, request{path: "/canary_check", remote: remote, auth: auth}).Code
	}

	for i := range admin.DefaultFailureBurst {
		if code := get(attacker, wrong); code != http.StatusUnauthorized {
			t.Fatalf("failure %d = %d; want 401", i+1, code)
		}
	}
	// Past the burst: a wrong token is 429; the right token still passes,
	// from any port of that address (a shared address must not lock the
	// operators out).
	rec := ts.do(t, request{path: "/canary_check", remote: attacker, auth: wrong})
	if rec.Code != http.StatusTooManyRequests {
		t.Fatalf("after the burst, wrong token = %d; want 429", rec.Code)
	}
	if got := rec.Header().Get("Retry-After"); got != "1" {
		t.Errorf("Retry-After = %q; want 1", got)
	}
	errorBody(t, rec)
	if code := get("198.51.100.7:5001", authed()); code != http.StatusOK {
		t.Errorf("after the burst, right token = %d; want 200", code)
	}
	if code := get(attacker, wrong); code != http.StatusTooManyRequests {
		t.Errorf("after the burst, wrong token = %d; want 429", code)
	}
	if got := counterValue(t, ts.reg, "canary_admin_auth_rate_limited_total"); got != 2 {
		t.Errorf("canary_admin_auth_rate_limited_total = %v; want 2", got)
	}
	if got := counterValue(t, ts.reg, "canary_admin_auth_failures_total", "reason", "invalid"); got != admin.DefaultFailureBurst {
		t.Errorf("canary_admin_auth_failures_total{reason=invalid} = %v; want %d (limited requests are counted as limited only)", got, admin.DefaultFailureBurst)
	}

	// Other addresses are not affected; X-Forwarded-For is not believed.
	if code := get(bystander, authed()); code != http.StatusOK {
		t.Errorf("bystander = %d; want 200", code)
	}
	rec = ts.do(t, request{path: "/canary_check", remote: bystander, auth: wrong, header: map[string]string{"X-Forwarded-For": "198.51.100.7"}})
	if rec.Code != http.StatusUnauthorized {
		t.Errorf("bystander claiming X-Forwarded-For of the attacker = %d; want 401", rec.Code)
	}
	rec = ts.do(t, request{path: "/canary_check", remote: attacker, auth: wrong, header: map[string]string{"X-Forwarded-For": "203.0.113.9"}})
	if rec.Code != http.StatusTooManyRequests {
		t.Errorf("attacker claiming X-Forwarded-For of the bystander = %d; want 429", rec.Code)
	}

	// One attempt per second is earned back.
	ts.clock.Advance(time.Second)
	if code := get(attacker, wrong); code != http.StatusUnauthorized {
		t.Errorf("a second later = %d; want 401", code)
	}
	if code := get(attacker, wrong); code != http.StatusTooManyRequests {
		t.Errorf("right after the earned attempt = %d; want 429", code)
	}
	ts.clock.Advance(10 * time.Second)
	if code := get(attacker, wrong); code != http.StatusUnauthorized {
		t.Errorf("ten seconds later, wrong token = %d; want 401", code)
	}

	// Missing credentials are answered but do not drain the budget.
	for range 3 * admin.DefaultFailureBurst {
		if code := get(bystander, nil); code != http.StatusUnauthorized {
			t.Fatalf("no header = %d; want 401", code)
		}
	}
}

func TestRateLimitRetryAfter(t *testing.T) {
	ts := newTestServer(t, nil, admin.LimiterConfig{Burst: 2, Rate: 0.1})
	for range 2 {
		ts.do(t, request{path: "/canary_check", auth: []string{"Bearer nope"}})
	}
	rec := ts.do(t, request{path: "/canary_check", auth: []string{"Bearer nope"}})
	if rec.Code != http.StatusTooManyRequests || rec.Header().Get("Retry-After") != "10" {
		t.Errorf("limited = %d, Retry-After %q; want 429, 10", rec.Code, rec.Header().Get("Retry-After"))
	}
	if code := ts.do(t, request{path: "/canary_check", auth: authed()}).Code; code != http.StatusOK {
		t.Errorf("limited address, right token = %d; want 200", code)
	}
	ts.clock.Advance(9500 * time.Millisecond)
	rec = ts.do(t, request{path: "/canary_check", auth: []string{"Bearer nope"}})
	if rec.Code != http.StatusTooManyRequests || rec.Header().Get("Retry-After") != "1" {
		t.Errorf("limited after 9.5s = %d, Retry-After %q; want 429, 1", rec.Code, rec.Header().Get("Retry-After"))
	}
}

// TestRateLimitMemoryBounded: past MaxAddresses the address that tried
// longest ago is forgotten; one that keeps trying stays limited.
func TestRateLimitMemoryBounded(t *testing.T) {
	ts := newTestServer(t, nil, admin.LimiterConfig{MaxAddresses: 3})
	fail := func(host string) int {
		return ts.do(t, request{path: "/canary_check", remote: host + ":1", auth: []string{"Bearer nope"}}).Code
	}
	steps := []struct {
		host string
		want int
	}{
		{"10.0.0.1", 429}, // after its burst (below)
		{"10.0.0.2", 401},
		{"10.0.0.3", 401},
		{"10.0.0.1", 429}, // remembered: 3 addresses
		{"10.0.0.4", 401}, // evicts 10.0.0.2, the least recently active
		{"10.0.0.1", 429},
		{"10.0.0.5", 401}, // evicts 10.0.0.3
		{"10.0.0.6", 401}, // evicts 10.0.0.4
		{"10.0.0.7", 401}, // evicts 10.0.0.1
		{"10.0.0.1", 401}, // forgotten: a fresh budget
	}
	for range admin.DefaultFailureBurst {
		fail("10.0.0.1")
	}
	for i, s := range steps {
		if got := fail(s.host); got != s.want {
			t.Fatalf("step %d: %s = %d; want %d", i, s.host, got, s.want)
		}
	}
}

// TestRateLimitConcurrent: simultaneous guesses cannot overdraw the budget.
func TestRateLimitConcurrent(t *testing.T) {
	ts := newTestServer(t, nil, admin.LimiterConfig{})
	const guesses = 64
	codes := make(chan int, guesses)
	var wg sync.WaitGroup
	for range guesses {
		wg.Go(func() {
			codes <- ts.do(t, request{path: "/canary_check", auth: []string{"Bearer nope"}}).Code
		})
	}
	wg.Wait()
	close(codes)
	count := map[int]int{}
	for c := range codes {
		count[c]++
	}
	if count[401] != admin.DefaultFailureBurst || count[429] != guesses-admin.DefaultFailureBurst {
		t.Errorf("%d concurrent wrong guesses got %v; want %d × 401, the rest 429", guesses, count, admin.DefaultFailureBurst)
	}
}
