package admin_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/canaryd/canaryd/admin"
	"github.com/canaryd/canaryd/guard"
)

// FuzzParseBearer: an accepted header is exactly "<bearer in any case> <token>"
// with a token of visible ASCII, and the token survives a round trip.
// Seeds live in testdata/fuzz/FuzzParseBearer.
func FuzzParseBearer(f *testing.F) {
	f.Add("Bearer abc")
	f.Add("bearer  abc")
	f.Fuzz(func(t *testing.T, header string) {
		token, ok := admin.ParseBearer(header)
		if !ok {
			if token != "" {
				t.Fatalf("ParseBearer(%q) = %q, false; want an empty token when rejected", header, token)
			}
			return
		}
		rest := strings.TrimLeft(header[min(len(header), len("Bearer ")):], " ")
		if token == "" || len(header) < len("Bearer ")+len(token) ||
			!strings.EqualFold(header[:len("Bearer ")], "Bearer ") || rest != token {
			t.Fatalf("ParseBearer(%q) = %q, true; not of the form \"Bearer <token>\"", header, token)
		}
		for _, c := range []byte(token) {
			if c <= ' ' || c >= 0x7f {
				t.Fatalf("ParseBearer(%q) accepted byte %#x in the token", header, c)
			}
		}
		if again, ok := admin.ParseBearer("Bearer " + token); !ok || again != token {
			t.Fatalf("ParseBearer(\"Bearer \"+%q) = %q, %v; want the token back", token, again, ok)
		}
	})
}

// FuzzWeightBody: no body makes the handler panic or hand the controller a
// weight outside 0..10000 hundredths; a 200 means exactly one SetWeight, any
// other answer none. Seeds live in testdata/fuzz/FuzzWeightBody.
func FuzzWeightBody(f *testing.F) {
	f.Add(`{"weight": 25}`)
	f.Add(`{"weight": 100.01}`)
	ctl := newFakeController()
	ts := newTestServer(f, ctl, admin.LimiterConfig{})
	f.Fuzz(func(t *testing.T, body string) {
		ctl.mu.Lock()
		ctl.calls = nil
		ctl.mu.Unlock()
		rec := ts.do(t, request{method: "POST", path: "/rollout/weight", body: body, auth: authed()})
		calls := ctl.Calls()
		switch rec.Code {
		case http.StatusOK:
			if len(calls) != 1 || calls[0].Op != "weight" {
				t.Fatalf("body %q: 200 with calls %+v; want one SetWeight", body, calls)
			}
			if calls[0].Weight > 10000 {
				t.Fatalf("body %q: SetWeight(%d); want at most 10000", body, calls[0].Weight)
			}
		case http.StatusBadRequest, http.StatusRequestEntityTooLarge:
			if len(calls) != 0 {
				t.Fatalf("body %q: %d with calls %+v; want none", body, rec.Code, calls)
			}
		default:
			t.Fatalf("body %q: status %d; want 200, 400 or 413", body, rec.Code)
		}
	})
}

// FuzzStartBody: no body makes the handler panic or hand the controller a
// release id or plan the guard would refuse; a 200 means exactly one Start,
// any other answer none. Seeds live in testdata/fuzz/FuzzStartBody.
func FuzzStartBody(f *testing.F) {
	f.Add(`{"release": "v1.0.1"}`)
	f.Add(`{"release": "v1.0.1", "steps": "5@15m,25@30m,100@1h"}`)
	ctl := newFakeController()
	ts := newTestServer(f, ctl, admin.LimiterConfig{})
	f.Fuzz(func(t *testing.T, body string) {
		ctl.mu.Lock()
		ctl.calls = nil
		ctl.mu.Unlock()
		rec := ts.do(t, request{method: "POST", path: "/rollout/start", body: body, auth: authed()})
		calls := ctl.Calls()
		switch rec.Code {
		case http.StatusOK:
			if len(calls) != 1 || calls[0].Op != "start" {
				t.Fatalf("body %q: 200 with calls %+v; want one Start", body, calls)
			}
			if err := guard.ValidateRelease(calls[0].Release); err != nil {
				t.Fatalf("body %q: Start(%q): %v", body, calls[0].Release, err)
			}
			if steps, err := guard.ParseSteps(calls[0].Steps); err != nil || guard.FormatSteps(steps) != calls[0].Steps {
				t.Fatalf("body %q: Start with steps %q: %v", body, calls[0].Steps, err)
			}
		case http.StatusBadRequest, http.StatusRequestEntityTooLarge:
			if len(calls) != 0 {
				t.Fatalf("body %q: %d with calls %+v; want none", body, rec.Code, calls)
			}
		default:
			t.Fatalf("body %q: status %d; want 200, 400 or 413", body, rec.Code)
		}
	})
}
