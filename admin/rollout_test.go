package admin_test

import (
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"strings"
	"testing"

	"github.com/canaryd/canaryd/admin"
	"github.com/canaryd/canaryd/guard"
)

func TestRolloutWeight(t *testing.T) {
	tests := []struct {
		body       string
		wantStatus int
		wantWeight uint32 // when 200
	}{
		{`{"weight": 25}`, 200, 2500},
		{`{"weight":2.5}`, 200, 250},
		{`{"weight": 12.34}`, 200, 1234},
		{`{"weight": 0}`, 200, 0},
		{`{"weight": 100}`, 200, 10000},
		{`{"weight": 12.50}`, 200, 1250},
		{`{"weight": 1e1}`, 400, 0}, // one grammar (split.ParsePercent): no exponents
		{`{"weight": 2.5e1}`, 400, 0},
		{`{"weight": -0}`, 400, 0},
		{" \n{ \"weight\" : 5 }\n ", 200, 500},
		{`{"weight": 100.001}`, 400, 0},
		{`{"weight": 101}`, 400, 0},
		{`{"weight": -1}`, 400, 0},
		{`{"weight": 12.345}`, 400, 0},
		{`{"weight": "25"}`, 400, 0},
		{`{"weight": null}`, 400, 0},
		{`{"weight": true}`, 400, 0},
		{`{"weight": [25]}`, 400, 0},
		{`{"weight": {"value": 25}}`, 400, 0},
		{`{}`, 400, 0},
		{``, 400, 0},
		{`null`, 400, 0},
		{`25`, 400, 0},
		{`[25]`, 400, 0},
		{`{"Weight": 25}`, 400, 0},
		{`{"weight": 25, "reason": "x"}`, 400, 0},
		{`{"reason": "x", "weight": 25}`, 400, 0},
		{`{"weight": 25, "weight": 30}`, 400, 0},
		{`{"weight": 25}{}`, 400, 0},
		{`{"weight": 25} x`, 400, 0},
		{`{"weight": 25`, 400, 0},
		{`{"weight" 25}`, 400, 0},
		{`{"weight": 25,}`, 400, 0},
		{`{"weight": 025}`, 400, 0},
		{`{"weight": NaN}`, 400, 0},
		{`weight=25`, 400, 0},
		{`<weight>25</weight>`, 400, 0},
	}
	for _, tt := range tests {
		t.Run(tt.body, func(t *testing.T) {
			ctl := newFakeController()
			ts := newTestServer(t, ctl, admin.LimiterConfig{})
			before := ctl.Overview()
			rec := ts.do(t, request{method: "POST", path: "/rollout/weight", body: tt.body, auth: authed()})
			if rec.Code != tt.wantStatus {
				t.Fatalf("POST /rollout/weight %q = %d; want %d (body %q)", tt.body, rec.Code, tt.wantStatus, rec.Body)
			}
			calls := ctl.Calls()
			if tt.wantStatus != http.StatusOK {
				errorBody(t, rec)
				if len(calls) != 0 {
					t.Errorf("controller received %+v; want nothing", calls)
				}
				if after := ctl.Overview(); !reflect.DeepEqual(after, before) {
					t.Errorf("overview changed to %+v", after)
				}
				return
			}
			want := []call{{Op: "weight", Weight: tt.wantWeight, Who: "ops-alice (192.0.2.10)"}}
			if !reflect.DeepEqual(calls, want) {
				t.Errorf("calls = %+v; want %+v", calls, want)
			}
			var ov guard.Overview
			if err := decodeStrict(rec.Body.Bytes(), &ov); err != nil {
				t.Fatalf("decode %q: %v", rec.Body, err)
			}
			if ov.Weight != float64(tt.wantWeight)/100 || ov.State != "paused" {
				t.Errorf("answer weight %v state %q; want %v paused", ov.Weight, ov.State, float64(tt.wantWeight)/100)
			}
		})
	}
}

func TestRolloutCommands(t *testing.T) {
	conflict := fmt.Errorf("promote while rolled back: %w", guard.ErrConflict)
	invalid := fmt.Errorf("weight above the plan: %w", guard.ErrInvalid)
	broken := errors.New("write state file: disk full")
	tests := []struct {
		path       string
		body       string
		ctlErr     error
		wantStatus int
		wantOp     string // "" = no call
	}{
		{"/rollout/promote", "", nil, 200, "promote"},
		{"/rollout/rollback", "{}", nil, 200, "rollback"},
		{"/rollout/pause", " { \n } ", nil, 200, "pause"},
		{"/rollout/resume", "\n", nil, 200, "resume"},
		{"/rollout/reset", "{}", nil, 200, "reset"},
		{"/rollout/finish", "", nil, 200, "finish"},
		{"/rollout/finish", `{"release": "v1"}`, nil, 400, ""},
		{"/rollout/finish", "", conflict, 409, "finish"},
		{"/rollout/promote", `{"step": 2}`, nil, 400, ""},
		{"/rollout/promote", `null`, nil, 400, ""},
		{"/rollout/promote", `[]`, nil, 400, ""},
		{"/rollout/promote", `{}{}`, nil, 400, ""},
		{"/rollout/reset", `please`, nil, 400, ""},
		{"/rollout/promote", "", conflict, 409, "promote"},
		{"/rollout/resume", "", invalid, 400, "resume"},
		{"/rollout/rollback", "", broken, 500, "rollback"},
		{"/rollout/weight", `{"weight": 5}`, conflict, 409, "weight"},
		{"/rollout/weight", `{"weight": 5}`, invalid, 400, "weight"},
		{"/rollout/promote", strings.Repeat(" ", admin.MaxBodyBytes+1), nil, 413, ""},
		{"/rollout/weight", `{"weight": 5}` + strings.Repeat(" ", admin.MaxBodyBytes), nil, 413, ""},
	}
	for _, tt := range tests {
		name := fmt.Sprintf("%s %.20q %v", tt.path, tt.body, tt.ctlErr)
		t.Run(name, func(t *testing.T) {
			ctl := newFakeController()
			ctl.err = tt.ctlErr
			ts := newTestServer(t, ctl, admin.LimiterConfig{})
			rec := ts.do(t, request{method: "POST", path: tt.path, body: tt.body, auth: authed(), remote: "[2001:db8::1]:5555"})
			if rec.Code != tt.wantStatus {
				t.Fatalf("POST %s = %d; want %d (body %q)", name, rec.Code, tt.wantStatus, rec.Body)
			}
			calls := ctl.Calls()
			switch {
			case tt.wantOp == "" && len(calls) != 0:
				t.Errorf("controller received %+v; want nothing", calls)
			case tt.wantOp != "" && (len(calls) != 1 || calls[0].Op != tt.wantOp || calls[0].Who != "ops-alice (2001:db8::1)"):
				t.Errorf("controller received %+v; want one %s by ops-alice (2001:db8::1)", calls, tt.wantOp)
			}
			if tt.wantStatus != http.StatusOK {
				msg := errorBody(t, rec)
				if tt.ctlErr != nil && msg != tt.ctlErr.Error() {
					t.Errorf("error = %q; want %q", msg, tt.ctlErr)
				}
				return
			}
			var ov guard.Overview
			if err := decodeStrict(rec.Body.Bytes(), &ov); err != nil {
				t.Fatalf("decode %q: %v", rec.Body, err)
			}
			if !reflect.DeepEqual(ov, ctl.Overview()) {
				t.Errorf("answer %+v; want the controller's overview", ov)
			}
		})
	}
}

// TestRolloutNeedsToken: no command reaches the controller without the token.
func TestRolloutNeedsToken(t *testing.T) {
	ctl := newFakeController()
	ts := newTestServer(t, ctl, admin.LimiterConfig{Burst: 100})
	for _, p := range []string{"weight", "promote", "rollback", "pause", "resume", "reset", "start", "finish"} {
		for _, auth := range [][]string{nil, {"Bearer nope-nope-nope-nope"}} {
			rec := ts.do(t, request{method: "POST", path: "/rollout/" + p, body: `{"weight": 5}`, auth: auth})
			if rec.Code != http.StatusUnauthorized {
				t.Errorf("POST /rollout/%s with %q = %d; want 401", p, auth, rec.Code)
			}
		}
	}
	if calls := ctl.Calls(); len(calls) != 0 {
		t.Errorf("controller received %+v; want nothing", calls)
	}
}

func TestRolloutStart(t *testing.T) {
	tests := []struct {
		body       string
		wantStatus int
		want       call // when 200
	}{
		{`{"release": "v1.0.1"}`, 200, call{Op: "start", Release: "v1.0.1"}},
		{`{"release": "v1.0.1", "steps": "5@15m,25@30m,100@1h"}`, 200, call{Op: "start", Release: "v1.0.1", Steps: "5@15m0s,25@30m0s,100@1h0m0s"}},
		{`{"steps": "0@10m, 5@15m", "release": "2026-05-01 build 7"}`, 200, call{Op: "start", Release: "2026-05-01 build 7", Steps: "0@10m0s,5@15m0s"}},
		{`{"release": ""}`, 400, call{}},
		{`{"release": "v1\nv2"}`, 400, call{}},
		{`{"release": 5}`, 400, call{}},
		{`{"release": null}`, 400, call{}},
		{`{}`, 400, call{}},
		{``, 400, call{}},
		{`{"release": "v2", "steps": ""}`, 400, call{}},
		{`{"release": "v2", "steps": "25@1m,5@1m"}`, 400, call{}},
		{`{"release": "v2", "steps": "1e1@1m"}`, 400, call{}},
		{`{"release": "v2", "steps": ["5@1m"]}`, 400, call{}},
		{`{"release": "v2", "steps": 5}`, 400, call{}},
		{`{"release": "v2", "weight": 5}`, 400, call{}},
		{`{"release": "v2", "release": "v3"}`, 400, call{}},
		{`{"release": "v2"} {}`, 400, call{}},
		{`{"release": "` + strings.Repeat("v", 129) + `"}`, 400, call{}},
	}
	for _, tt := range tests {
		t.Run(tt.body, func(t *testing.T) {
			ctl := newFakeController()
			ts := newTestServer(t, ctl, admin.LimiterConfig{})
			rec := ts.do(t, request{method: "POST", path: "/rollout/start", body: tt.body, auth: authed()})
			if rec.Code != tt.wantStatus {
				t.Fatalf("POST /rollout/start %q = %d; want %d (body %q)", tt.body, rec.Code, tt.wantStatus, rec.Body)
			}
			calls := ctl.Calls()
			if tt.wantStatus != http.StatusOK {
				errorBody(t, rec)
				if len(calls) != 0 {
					t.Errorf("controller received %+v; want nothing", calls)
				}
				return
			}
			tt.want.Who = "ops-alice (192.0.2.10)"
			if len(calls) != 1 || calls[0] != tt.want {
				t.Errorf("calls = %+v; want %+v", calls, tt.want)
			}
		})
	}
}

// TestRolloutNotPersisted: a command that is in force but not saved is a
// 503 whose body is the new overview (persisted false) with the error.
func TestRolloutNotPersisted(t *testing.T) {
	for _, path := range []string{"/rollout/rollback", "/rollout/weight", "/rollout/start", "/rollout/finish"} {
		ctl := newFakeController()
		ctl.err = fmt.Errorf("%w: the change is in force but saving it failed: read-only file system", guard.ErrNotPersisted)
		ts := newTestServer(t, ctl, admin.LimiterConfig{})
		body := map[string]string{"/rollout/weight": `{"weight": 5}`, "/rollout/start": `{"release": "v9"}`}[path]
		rec := ts.do(t, request{method: "POST", path: path, body: body, auth: authed()})
		if rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Retry-After") == "" {
			t.Fatalf("POST %s = %d Retry-After %q; want 503 with Retry-After", path, rec.Code, rec.Header().Get("Retry-After"))
		}
		var got struct {
			guard.Overview
			Error string `json:"error"`
		}
		if err := decodeStrict(rec.Body.Bytes(), &got); err != nil {
			t.Fatalf("decode %q: %v", rec.Body, err)
		}
		if got.Persisted || got.State != "progressing" || !strings.Contains(got.Error, "read-only file system") || !strings.Contains(got.Error, "in force") {
			t.Errorf("POST %s body = %s; want the overview, persisted false, and the error", path, rec.Body)
		}
		if calls := ctl.Calls(); len(calls) != 1 {
			t.Errorf("POST %s: calls %+v; want one", path, calls)
		}
	}
}

// TestRolloutStoreUnavailable: a replica that has not read its fleet's
// rollout yet refuses commands with 503 and Retry-After (nothing changed).
func TestRolloutStoreUnavailable(t *testing.T) {
	ctl := newFakeController()
	ctl.err = fmt.Errorf("%w: this replica could not read it from the etcd store since it started", guard.ErrStoreUnavailable)
	ts := newTestServer(t, ctl, admin.LimiterConfig{})
	rec := ts.do(t, request{method: "POST", path: "/rollout/promote", auth: authed()})
	if rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Retry-After") == "" {
		t.Fatalf("POST /rollout/promote = %d Retry-After %q; want 503 with Retry-After", rec.Code, rec.Header().Get("Retry-After"))
	}
	var got struct {
		Error string `json:"error"`
	}
	if err := decodeStrict(rec.Body.Bytes(), &got); err != nil || !strings.Contains(got.Error, "etcd store") {
		t.Errorf("body %s (%v); want a JSON error naming the store", rec.Body, err)
	}
}
