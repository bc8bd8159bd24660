package notify_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/canaryd/canaryd/guard"
	"github.com/canaryd/canaryd/guard/notify"
)

var proposal = guard.Proposal{Release: "v1", Epoch: time.Date(2026, 5, 4, 10, 0, 0, 0, time.UTC), Step: 0, Steps: 3, ToStep: 1,
	ToState: guard.StateProgressing, FromWeight: 500, ToWeight: 2500, ReadySince: time.Date(2026, 5, 4, 10, 15, 0, 0, time.UTC),
	At: time.Date(2026, 5, 4, 10, 15, 3, 0, time.UTC), Observation: 15 * time.Minute, Canary: guard.BackendView{Requests: 900, Errors: 1}}

// The endpoint's answer decides: 2xx accepts, anything else is refused
// with the status and the start of the body, a redirect is not followed,
// a hang is cut by the context; every request is signed.
func TestConfirmer(t *testing.T) {
	answer := make(chan func(http.ResponseWriter), 1)
	var last notify.Proposal
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if !notify.Verify(secret, body, r.Header.Get("X-Canaryd-Signature")) || r.Header.Get("X-Canaryd-Event") != "confirm" {
			t.Errorf("request headers %v", r.Header)
		}
		json.Unmarshal(body, &last)
		(<-answer)(w)
	}))
	defer srv.Close()
	c, err := notify.NewConfirmer(notify.ConfirmConfig{URL: srv.URL + "/confirm", Secret: secret})
	if err != nil {
		t.Fatal(err)
	}
	ask := func(f func(http.ResponseWriter), timeout time.Duration) error {
		answer <- f
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		return c.Confirm(ctx, proposal)
	}
	if err := ask(func(w http.ResponseWriter) { w.WriteHeader(http.StatusOK) }, 5*time.Second); err != nil {
		t.Errorf("200: %v; want accepted", err)
	}
	if last.Release != "v1" || last.Step != 0 || last.ToStep != 1 || last.ToState != "progressing" || last.From != 5 || last.To != 25 ||
		last.Observed != 900 || last.Canary.Requests != 900 || last.Type != "confirm" || len(last.ID) != 32 {
		t.Errorf("proposal sent %+v", last)
	}
	err = ask(func(w http.ResponseWriter) { http.Error(w, "waiting for\nQA sign-off", http.StatusForbidden) }, 5*time.Second)
	if err == nil || err.Error() != "403 Forbidden: waiting for QA sign-off" {
		t.Errorf("403: %v", err)
	}
	err = ask(func(w http.ResponseWriter) {
		w.Header().Set("Location", "/elsewhere")
		w.WriteHeader(http.StatusFound)
	}, 5*time.Second)
	if err == nil || !strings.HasPrefix(err.Error(), "302 Found") {
		t.Errorf("302: %v; want refused, not followed", err)
	}
	err = ask(func(w http.ResponseWriter) { time.Sleep(300 * time.Millisecond) }, 50*time.Millisecond)
	if err == nil || err.Error() != "no answer within 0s" && !strings.HasPrefix(err.Error(), "no answer within") {
		t.Errorf("a hang: %v; want no answer", err)
	}
	srv.Close()
	if err := c.Confirm(context.Background(), proposal); err == nil || strings.Contains(err.Error(), "/confirm") || !strings.HasPrefix(err.Error(), "cannot reach it: ") {
		t.Errorf("endpoint gone: %v; want an error that does not show the URL's path", err)
	}
}
