package admin_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/go-chi/chi/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/canaryd/canaryd/admin"
)

// Secrets of the tokens-file tests; none may appear in an error.
const (
	secretA = "aaaa-0123456789-aaaa"
	secretB = "bbbb-0123456789-bbbb"
)

func TestParseTokens(t *testing.T) {
	good := "# canaryd admin tokens\n\nops-alice operate " + secretA + "\r\n  ci\tread\t" + secretB + "  \n# end\n"
	list, err := admin.ParseTokens([]byte(good))
	want := []admin.Token{{Name: "ops-alice", Role: admin.RoleOperate, Secret: secretA}, {Name: "ci", Role: admin.RoleRead, Secret: secretB}}
	if err != nil || fmt.Sprint(list) != fmt.Sprint(want) {
		t.Fatalf("ParseTokens(good) = %v, %v; want %v", list, err, want)
	}

	def := admin.Token{Name: admin.DefaultTokenName, Role: admin.RoleOperate, Secret: "dddd-0123456789-dddd"}
	tests := []struct {
		name, file string
		taken      []admin.Token
		wantErr    string
	}{
		{"empty", "", nil, "holds no token"},
		{"only comments", "# nothing\n\n", nil, "holds no token"},
		{"two fields", "\nops " + secretA + "\n", nil, "line 2: want NAME ROLE TOKEN separated by spaces, found 2 fields"},
		{"token alone", "\n" + secretA + "\n", nil, "line 2: want NAME ROLE TOKEN separated by spaces, found 1 field (a token needs a name and a role before it)"},
		{"four fields", "ops operate " + secretA + " extra\n", nil, "line 1: want NAME ROLE TOKEN"},
		{"trailing comment is a field", "ops operate " + secretA + " # note\n", nil, "line 1: want NAME ROLE TOKEN separated by spaces, found 5 fields"},
		{"unknown role", "ops admin " + secretA + "\n", nil, "line 1: role must be read or operate"},
		{"role in capitals", "ops READ " + secretA + "\n", nil, "line 1: role must be read or operate"},
		{"columns swapped", secretA + " " + secretB + " ops\n", nil, "line 1: role must be read or operate"},
		{"short token", "ops operate short-token\n", nil, "line 1: token is 11 characters long; it must have at least 16"},
		{"non-ASCII token", "ops operate " + secretA + "é\n", nil, "line 1: token must consist of visible ASCII"},
		{"bad name", "ops/alice operate " + secretA + "\n", nil, "line 1: name may hold only"},
		{"long name", strings.Repeat("n", 65) + " operate " + secretA + "\n", nil, "line 1: name must have 1 to 64 characters"},
		{"duplicate name", "ops operate " + secretA + "\n#\nops read " + secretB + "\n", nil, "line 3: the name is already used by line 1"},
		{"duplicate token", "ops operate " + secretA + "\nci read " + secretA + "\n", nil, "line 2: the token is the same as the one of line 1"},
		{"name of the default token", "default read " + secretA + "\n", []admin.Token{def}, `line 1: the name is already used by token "default" (given outside the file)`},
		{"token of the default token", "ops read " + def.Secret + "\n", []admin.Token{def}, `line 1: the token is the same as the one of token "default" (given outside the file)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			list, err := admin.ParseTokens([]byte(tt.file), tt.taken...)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("ParseTokens(%q) = %v, %v; want an error containing %q", tt.file, list, err, tt.wantErr)
			}
			for _, s := range []string{secretA, secretB, def.Secret, "short-token"} {
				if strings.Contains(err.Error(), s) {
					t.Errorf("error %q contains a token", err)
				}
			}
		})
	}

	// The default token and the file's together.
	list, err = admin.ParseTokens([]byte(good), def)
	if err != nil || len(list) != 2 || list[0].Name != "ops-alice" {
		t.Errorf("ParseTokens(good, default) = %v, %v; want the file's 2 tokens", list, err)
	}
}

// FuzzParseTokens: an accepted file yields valid, unique tokens that a
// server accepts; a refused one's error never contains a field that could
// be a token (16 characters or more).
func FuzzParseTokens(f *testing.F) {
	f.Add([]byte("ops operate " + secretA + "\nci read " + secretB + "\n"))
	f.Add([]byte("# c\r\n\r\nops\toperate\t" + secretA + "\r\n"))
	f.Add([]byte(secretA + " read ops\n"))
	f.Add([]byte("ops operate " + secretA + "\nops read " + secretB + "\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		list, err := admin.ParseTokens(data)
		if err != nil {
			for _, field := range strings.Fields(string(data)) {
				if len(field) >= admin.MinTokenLength && strings.Contains(err.Error(), field) {
					t.Fatalf("ParseTokens(%q): error %q contains the field %q", data, err, field)
				}
			}
			return
		}
		if _, err := admin.NewTokens(list); err != nil {
			t.Fatalf("ParseTokens(%q) accepted %d tokens that NewTokens refuses: %v", data, len(list), err)
		}
	})
}

// Every route that changes something refuses a read token with 403 and a
// JSON error; every GET accepts it. The routes are walked, so a route added
// later is held to the rule too.
func TestRolesOnEveryRoute(t *testing.T) {
	ts := newTestServer(t, nil, admin.LimiterConfig{})
	var posts, gets int
	err := chi.Walk(ts.handler.(chi.Routes), func(method, route string, _ http.Handler, _ ...func(http.Handler) http.Handler) error {
		if strings.Contains(route, "{") {
			route = strings.ReplaceAll(route, "{name}", "app.js")
		}
		switch method {
		case http.MethodGet, http.MethodHead:
			gets++
			if rec := ts.do(t, request{method: method, path: route, auth: readAuthed()}); rec.Code >= 300 && rec.Code != http.StatusMovedPermanently {
				t.Errorf("%s %s with a read token = %d; want it served", method, route, rec.Code)
			}
		default:
			posts++
			rec := ts.do(t, request{method: method, path: route, body: "{}", auth: readAuthed()})
			if rec.Code != http.StatusForbidden {
				t.Errorf("%s %s with a read token = %d; want 403", method, route, rec.Code)
				return nil
			}
			msg := errorBody(t, rec)
			if want := `token "viewer" has the read role; ` + method + " " + route + " needs the operate role"; msg != want {
				t.Errorf("%s %s: error %q; want %q", method, route, msg, want)
			}
			if h := rec.Header().Get("WWW-Authenticate"); h != "" {
				t.Errorf("%s %s: 403 with WWW-Authenticate %q; want none", method, route, h)
			}
			if rec := ts.do(t, request{method: method, path: route, body: "{}", auth: authed()}); rec.Code == http.StatusForbidden || rec.Code == http.StatusUnauthorized {
				t.Errorf("%s %s with an operate token = %d", method, route, rec.Code)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if posts != 8 || gets < 2*9 {
		t.Errorf("walked %d GET/HEAD and %d other routes; want every route (8 under /rollout/)", gets, posts)
	}
	for _, c := range ts.ctl.Calls() {
		if c.Who != "ops-alice (192.0.2.10)" {
			t.Errorf("command %s by %q; only the operate token's commands may reach the controller", c.Op, c.Who)
		}
	}
	if got := counterValue(t, ts.reg, "canary_admin_auth_failures_total", "reason", "forbidden"); got != float64(posts) {
		t.Errorf(`canary_admin_auth_failures_total{reason="forbidden"} = %v; want %d`, got, posts)
	}
	if !strings.Contains(ts.logs.String(), `"token":"viewer","role":"read"`) {
		t.Errorf("no log line names the forbidden token: %s", ts.logs)
	}
	secretsAbsent(t, ts, "", nil)
}

// A 403 costs the address nothing in the failed-authentication limiter:
// after many forbidden requests a wrong token is still answered 401, not
// 429, and the right token passes.
func TestForbiddenDoesNotDrainTheLimiter(t *testing.T) {
	ts := newTestServer(t, nil, admin.LimiterConfig{})
	for i := range 3 * admin.DefaultFailureBurst {
		if rec := ts.do(t, request{method: "POST", path: "/rollout/pause", auth: readAuthed()}); rec.Code != http.StatusForbidden {
			t.Fatalf("forbidden request %d = %d; want 403", i+1, rec.Code)
		}
	}
	if rec := ts.do(t, request{path: "/canary_check", auth: []string{"Bearer wrong-token-0123456789"}}); rec.Code != http.StatusUnauthorized {
		t.Errorf("a wrong token after 30 forbidden requests = %d; want 401 (not limited)", rec.Code)
	}
	if got := counterValue(t, ts.reg, "canary_admin_auth_rate_limited_total"); got != 0 {
		t.Errorf("canary_admin_auth_rate_limited_total = %v; want 0", got)
	}
}

func TestSession(t *testing.T) {
	ts := newTestServer(t, nil, admin.LimiterConfig{})
	for _, tt := range []struct {
		auth []string
		want string
	}{
		{authed(), `{"name":"ops-alice","role":"operate"}`},
		{readAuthed(), `{"name":"viewer","role":"read"}`},
	} {
		rec := ts.do(t, request{path: "/dashboard/session", auth: tt.auth})
		if rec.Code != 200 || strings.TrimSpace(rec.Body.String()) != tt.want || rec.Header().Get("Cache-Control") != "no-store" {
			t.Errorf("GET /dashboard/session = %d %s (Cache-Control %q); want 200 %s, no-store", rec.Code, rec.Body, rec.Header().Get("Cache-Control"), tt.want)
		}
	}
	if rec := ts.do(t, request{path: "/dashboard/session"}); rec.Code != 401 {
		t.Errorf("GET /dashboard/session without a token = %d; want 401", rec.Code)
	}
}

// Many tokens: each one is found, with its own name and role.
func TestManyTokens(t *testing.T) {
	var list []admin.Token
	for i := range 50 {
		list = append(list, admin.Token{Name: fmt.Sprintf("t%02d", i), Role: admin.Role(i % 2), Secret: fmt.Sprintf("secret-%02d-0123456789", i)})
	}
	srv, err := admin.New(admin.Config{Tokens: list}, newFakeController(), prometheus.NewRegistry(), zerolog.Nop(), nil)
	if err != nil {
		t.Fatal(err)
	}
	ts := &testServer{handler: srv.Handler()}
	for _, tok := range list {
		rec := ts.do(t, request{path: "/dashboard/session", auth: []string{"Bearer " + tok.Secret}})
		var got struct{ Name, Role string }
		if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil || got.Name != tok.Name || got.Role != tok.Role.String() {
			t.Errorf("session of %s = %d %s; want %s %s", tok.Name, rec.Code, rec.Body, tok.Name, tok.Role)
		}
	}
}

func TestSetTokens(t *testing.T) {
	ts := newTestServer(t, nil, admin.LimiterConfig{})
	status := func(secret string) int {
		return ts.do(t, request{path: "/canary_check", auth: []string{"Bearer " + secret}}).Code
	}
	gauge := func(role string) float64 {
		t.Helper()
		families, _ := ts.reg.Gather()
		for _, mf := range families {
			if mf.GetName() == "canary_admin_tokens" {
				for _, m := range mf.GetMetric() {
					if hasLabel(m, "role", role) {
						return m.GetGauge().GetValue()
					}
				}
			}
		}
		t.Fatalf("no canary_admin_tokens{role=%q}", role)
		return 0
	}
	if gauge("read") != 1 || gauge("operate") != 1 {
		t.Errorf("canary_admin_tokens = read %v, operate %v; want 1, 1", gauge("read"), gauge("operate"))
	}

	// ops-alice gets a new token, viewer goes, ci comes, as a read token.
	next := []admin.Token{
		{Name: testTokenName, Role: admin.RoleOperate, Secret: secretA},
		{Name: "ci", Role: admin.RoleRead, Secret: secretB},
		{Name: "bot", Role: admin.RoleRead, Secret: "cccc-0123456789-cccc"},
	}
	change, err := ts.srv.SetTokens(next)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := change.String(), "added bot, ci; removed viewer; new token for ops-alice"; got != want {
		t.Errorf("change = %q; want %q", got, want)
	}
	for secret, want := range map[string]int{testToken: 401, readToken: 401, secretA: 200, secretB: 200} {
		if got := status(secret); got != want {
			t.Errorf("after SetTokens, a token of the %s = %d; want %d", map[bool]string{true: "new set", false: "old set"}[want == 200], got, want)
		}
	}
	if gauge("read") != 2 || gauge("operate") != 1 {
		t.Errorf("canary_admin_tokens = read %v, operate %v; want 2, 1", gauge("read"), gauge("operate"))
	}

	// A bad set is refused whole; the tokens in force stay.
	for _, bad := range [][]admin.Token{
		nil,
		{{Name: "x", Role: admin.RoleOperate, Secret: "short"}},
		{{Name: "x", Role: admin.RoleOperate, Secret: secretA}, {Name: "x", Role: admin.RoleRead, Secret: secretB}},
		{{Name: "x", Role: admin.RoleOperate, Secret: secretA}, {Name: "y", Role: admin.RoleRead, Secret: secretA}},
	} {
		if _, err := ts.srv.SetTokens(bad); err == nil {
			t.Errorf("SetTokens(%d bad tokens) accepted", len(bad))
		} else if strings.Contains(err.Error(), secretA) || strings.Contains(err.Error(), secretB) {
			t.Errorf("SetTokens error %q contains a token", err)
		}
	}
	if status(secretA) != 200 || status(secretB) != 200 {
		t.Error("a refused SetTokens changed the tokens in force")
	}

	// Role change of a kept name, same token.
	next[1].Role = admin.RoleOperate
	change, err = ts.srv.SetTokens(next)
	if err != nil || change.String() != "new role for ci" {
		t.Errorf("role change = %q, %v; want \"new role for ci\"", change, err)
	}
	if rec := ts.do(t, request{method: "POST", path: "/rollout/pause", auth: []string{"Bearer " + secretB}}); rec.Code != 200 {
		t.Errorf("ci, now operate, POST /rollout/pause = %d; want 200", rec.Code)
	}
	if change, _ := ts.srv.SetTokens(next); !change.IsZero() || change.String() != "no change" {
		t.Errorf("the same set again: change %q; want none", change)
	}
}

// The logs of a command name the token and the address, never the token
// itself.
func TestCommandLogsNameTheToken(t *testing.T) {
	ts := newTestServer(t, nil, admin.LimiterConfig{})
	if rec := ts.do(t, request{method: "POST", path: "/rollout/pause", auth: authed(), remote: "10.0.0.5:4000"}); rec.Code != 200 {
		t.Fatalf("POST /rollout/pause = %d", rec.Code)
	}
	logs := ts.logs.String()
	if !strings.Contains(logs, `"token":"ops-alice","who":"ops-alice (10.0.0.5)"`) {
		t.Errorf("the command's log line does not name the token and who: %s", logs)
	}
	if c := ts.ctl.Calls(); len(c) != 1 || c[0].Who != "ops-alice (10.0.0.5)" {
		t.Errorf("calls = %+v; want one pause by \"ops-alice (10.0.0.5)\"", c)
	}
	secretsAbsent(t, ts, "", nil)
}
