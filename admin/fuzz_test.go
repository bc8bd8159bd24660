package admin_test

import (
	"errors"
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

// fuzzCommand fuzzes the body of POST path: no body makes the handler panic;
// a 200 means exactly one call of op, which valid checks; a 400 or 413 means
// no call; nothing else is answered.
func fuzzCommand(f *testing.F, path, op string, valid func(c call) error) {
	ctl := newFakeController()
	ts := newTestServer(f, ctl, admin.LimiterConfig{})
	f.Fuzz(func(t *testing.T, body string) {
		ctl.mu.Lock()
		ctl.calls = nil
		ctl.mu.Unlock()
		rec := ts.do(t, request{method: "POST", path: path, body: body, auth: authed()})
		calls := ctl.Calls()
		switch rec.Code {
		case http.StatusOK:
			if len(calls) != 1 || calls[0].Op != op {
				t.Fatalf("body %q: 200 with calls %+v; want one %s", body, calls, op)
			}
			if err := valid(calls[0]); err != nil {
				t.Fatalf("body %q: %+v: %v", body, calls[0], err)
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

// FuzzWeightBody: no body hands the controller a weight outside 0..10000
// hundredths. Seeds live in testdata/fuzz/FuzzWeightBody.
func FuzzWeightBody(f *testing.F) {
	f.Add(`{"weight": 25}`)
	f.Add(`{"weight": 100.01}`)
	fuzzCommand(f, "/rollout/weight", "weight", func(c call) error {
		if c.Weight > 10000 {
			return errors.New("weight above 10000 hundredths")
		}
		return nil
	})
}

// FuzzStartBody: no body hands the controller a release id or plan the
// guard would refuse. Seeds live in testdata/fuzz/FuzzStartBody.
func FuzzStartBody(f *testing.F) {
	f.Add(`{"release": "v1.0.1"}`)
	f.Add(`{"release": "v1.0.1", "steps": "5@15m,25@30m,100@1h"}`)
	fuzzCommand(f, "/rollout/start", "start", func(c call) error {
		if err := guard.ValidateRelease(c.Release); err != nil {
			return err
		}
		steps, err := guard.ParseSteps(c.Steps)
		if err == nil && guard.FormatSteps(steps) != c.Steps {
			err = errors.New("steps do not survive a round trip")
		}
		return err
	})
}
