package main

// End-to-end tests of the integrations (README, "Integrations"): webhook
// events, the confirmation gate, the progress deadline; the metric gates'
// test with a real Prometheus is in e2e_metricgate_test.go.

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/canaryd/canaryd/guard/notify"
)

const hookSecret = "e2e-webhook-secret-0123456789"

// hookEvent is a webhook event as a receiver decodes it: the history
// entry's fields, and the event's own.
type hookEvent struct {
	historyEntry
	ID       string `json:"id"`
	Type     string `json:"type"`
	Step     int    `json:"step"`
	Steps    int    `json:"steps"`
	Rollback *struct {
		Reason string `json:"reason"`
		Detail string `json:"detail"`
	} `json:"rollback"`
}

// hookReceiver is a webhook endpoint on loopback. It verifies every
// request's signature, records every attempt, and answers as its mode
// says: 200, 503, or not at all (hang, until the test ends).
type hookReceiver struct {
	*httptest.Server
	t    *testing.T
	mode atomic.Int32
	hang chan struct{}

	mu       sync.Mutex
	attempts []hookEvent // every request, in arrival order
	answered []int       // the status each attempt got (0: none, it hung)
	accepted []hookEvent // the events answered 2xx, in arrival order
	badSigs  int
}

const (
	hookOK = iota
	hook503
	hookHang
)

func newHookReceiver(t *testing.T) *hookReceiver {
	r := &hookReceiver{t: t, hang: make(chan struct{})}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		var ev hookEvent
		decodeErr := json.Unmarshal(body, &ev)
		mode := r.mode.Load()
		r.mu.Lock()
		if decodeErr != nil || !notify.Verify([]byte(hookSecret), body, req.Header.Get("X-Canaryd-Signature")) ||
			req.Header.Get("X-Canaryd-Delivery") != ev.ID || req.Header.Get("X-Canaryd-Event") != ev.Type {
			r.badSigs++
			t.Errorf("webhook request %s with headers %v: signature, id or type do not match (%v)", body, req.Header, decodeErr)
		}
		r.attempts = append(r.attempts, ev)
		i := len(r.answered)
		r.answered = append(r.answered, 0)
		r.mu.Unlock()
		switch mode {
		case hookHang:
			select {
			case <-r.hang:
			case <-req.Context().Done():
			}
			return
		case hook503:
			w.WriteHeader(http.StatusServiceUnavailable)
		default:
			w.WriteHeader(http.StatusOK)
		}
		r.mu.Lock()
		defer r.mu.Unlock()
		r.answered[i] = http.StatusServiceUnavailable
		if mode == hookOK {
			r.answered[i] = http.StatusOK
			r.accepted = append(r.accepted, ev)
		}
	}))
	t.Cleanup(func() {
		close(r.hang)
		r.Close()
	})
	return r
}

func (r *hookReceiver) snapshot() (attempts, accepted []hookEvent) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.attempts), slices.Clone(r.accepted)
}

// historyEntry is one transition of /dashboard/canary_overview.
type historyEntry struct {
	Time      time.Time `json:"time"`
	From      float64   `json:"from"`
	To        float64   `json:"to"`
	FromState string    `json:"from_state"`
	ToState   string    `json:"to_state"`
	Reason    string    `json:"reason"`
	Who       string    `json:"who"`
	Release   string    `json:"release"`
	Replica   string    `json:"replica"`
}

func (in *instance) history() []historyEntry {
	in.t.Helper()
	_, body := in.adminGet("/dashboard/canary_overview", testToken)
	var o struct {
		History []historyEntry `json:"history"`
	}
	if err := json.Unmarshal(body, &o); err != nil {
		in.t.Fatalf("overview %s: %v", body, err)
	}
	return o.History
}

// describes reports whether ev is the event of history entry h.
func (ev hookEvent) describes(h historyEntry) bool {
	e := ev.historyEntry
	return e.Time.Equal(h.Time) && e.withoutTime() == h.withoutTime()
}

// withoutTime is h with its time zeroed (times compare with Equal).
func (h historyEntry) withoutTime() historyEntry {
	h.Time = time.Time{}
	return h
}

// checkEventsMatchHistory: the accepted events are the history, entry by
// entry, in order, each id once.
func checkEventsMatchHistory(t *testing.T, accepted []hookEvent, history []historyEntry, wantTypes []string) {
	t.Helper()
	ids := map[string]int{}
	var types []string
	for _, ev := range accepted {
		ids[ev.ID]++
		types = append(types, ev.Type)
	}
	for id, n := range ids {
		if n > 1 {
			t.Errorf("event %s accepted %d times; want once", id, n)
		}
	}
	if strings.Join(types, " ") != strings.Join(wantTypes, " ") {
		t.Errorf("events accepted: %v; want %v", types, wantTypes)
	}
	if len(accepted) != len(history) {
		t.Fatalf("%d events accepted for %d transitions in the history", len(accepted), len(history))
	}
	for i, h := range history {
		if !accepted[i].describes(h) {
			t.Errorf("event %d = %+v; want the history entry %+v", i, accepted[i], h)
		}
	}
}

// TestE2EWebhookEvents: a staged rollout, then operators' commands; the
// receiver gets one signed event per transition, in order; while it
// answers 503 it sees the same event again, and after it recovers no id is
// accepted twice.
func TestE2EWebhookEvents(t *testing.T) {
	recv := newHookReceiver(t)
	stable, canary := newBackend(t, "stable", nil), newBackend(t, "canary", nil)
	in := start(t, testEnv(t, stable, canary, "CANARY_STEPS=5@1s,25@1s,100@1s", "CANARY_SLO_MIN_REQUESTS=5", "CANARY_RELEASE=v1",
		"CANARY_WEBHOOK_URL="+recv.URL+"/hooks/canaryd", "CANARY_WEBHOOK_SECRET="+hookSecret))
	in.waitFor("complete", 100, func(c checkBody) bool { return c.Recommendation == "complete" })
	waitUntil(t, "4 events accepted", func() bool { _, acc := recv.snapshot(); return len(acc) == 4 })

	// The receiver fails: the rollback's event is retried (same id), the
	// reset's waits behind it.
	recv.mode.Store(hook503)
	if code, body := in.adminPost("/rollout/rollback"); code != http.StatusOK {
		t.Fatalf("rollback = %d %s", code, body)
	}
	if code, body := in.adminPost("/rollout/reset"); code != http.StatusOK {
		t.Fatalf("reset = %d %s", code, body)
	}
	waitUntil(t, "3 attempts while answering 503", func() bool { att, _ := recv.snapshot(); return len(att) >= 4+3 })
	recv.mode.Store(hookOK)
	waitUntil(t, "6 events accepted", func() bool { _, acc := recv.snapshot(); return len(acc) == 6 })
	if code, body := in.adminPost("/rollout/finish"); code != http.StatusOK {
		t.Fatalf("finish = %d %s", code, body)
	}
	waitUntil(t, "7 events accepted", func() bool { _, acc := recv.snapshot(); return len(acc) == 7 })

	attempts, accepted := recv.snapshot()
	checkEventsMatchHistory(t, accepted, in.history(), []string{"started", "step", "step", "complete", "rolled_back", "reset", "finished"})
	rollbackID := accepted[4].ID
	retries := 0
	for _, a := range attempts[4:] {
		if a.ID == rollbackID {
			retries++
		}
	}
	if retries < 3 || attempts[4].ID != rollbackID {
		t.Errorf("the rollback's event was attempted %d times (attempts from the failure on: %d); want at least 3, first", retries, len(attempts)-4)
	}
	if rb := accepted[4].Rollback; rb == nil || rb.Reason != "rollback_manual" || accepted[4].Who != "default (127.0.0.1)" {
		t.Errorf("rolled_back event %+v; want the rollback record, who the token and address", accepted[4])
	}
	if ev := accepted[1]; ev.Who != "plan" || ev.Step != 1 || ev.Steps != 3 || ev.From != 5 || ev.To != 25 || ev.Release != "v1" {
		t.Errorf("step event %+v; want the plan's step 2 of 3, 5%% to 25%%, release v1", ev)
	}
	// The receiver records an event before its answer reaches canaryd:
	// the last one is counted a moment later.
	var delivered, retried float64
	waitUntil(t, "7 counted as delivered", func() bool {
		delivered, _ = in.metricValue("canary_webhook_deliveries_total", "result", "delivered")
		return delivered >= 7
	})
	retried, _ = in.metricValue("canary_webhook_deliveries_total", "result", "retried")
	if delivered != 7 || retried < 3 {
		t.Errorf("canary_webhook_deliveries_total: delivered %v, retried %v; want 7 and at least 3", delivered, retried)
	}
	t.Logf("%d events accepted, %d attempts, the rollback's event attempted %d times", len(accepted), len(attempts), retries)
}

// TestE2EWebhookSlack: the Slack format reaches the receiver as a message
// with text and blocks, signed.
func TestE2EWebhookSlack(t *testing.T) {
	var mu sync.Mutex
	var msgs []map[string]any
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var m map[string]any
		if json.Unmarshal(body, &m) != nil || !notify.Verify([]byte(hookSecret), body, r.Header.Get("X-Canaryd-Signature")) {
			t.Errorf("slack message %s: not JSON or not signed", body)
		}
		mu.Lock()
		msgs = append(msgs, m)
		mu.Unlock()
	}))
	defer srv.Close()
	in := start(t, testEnv(t, newBackend(t, "stable", nil), newBackend(t, "canary", nil), "CANARY_RELEASE=v7",
		"CANARY_WEBHOOK_URL="+srv.URL+"/services/T0/B0/XXXX", "CANARY_WEBHOOK_SECRET="+hookSecret, "CANARY_WEBHOOK_FORMAT=slack"))
	in.adminPost("/rollout/rollback")
	waitUntil(t, "2 messages", func() bool { mu.Lock(); defer mu.Unlock(); return len(msgs) == 2 })
	mu.Lock()
	defer mu.Unlock()
	if text, _ := msgs[1]["text"].(string); text != ":rotating_light: Release v7 rolled back: rollback_manual" {
		t.Errorf("text = %q", text)
	}
	if blocks, _ := msgs[1]["blocks"].([]any); len(blocks) != 4 {
		t.Errorf("blocks = %v; want 4 (headline, fields, the canary's figures, context)", msgs[1]["blocks"])
	}
	if strings.Contains(in.logs.String(), "XXXX") {
		t.Error("the webhook URL's path (Slack's secret) appears in the logs")
	}
}

// TestE2EWebhookHangingReceiver: a receiver that never answers does not
// slow the request path, the admin API or the judge. The proxy's p99 is
// measured on two canaryd side by side, one without a webhook and one
// whose receiver hangs while its rollout changes 20 times a second,
// interleaved over rounds.
func TestE2EWebhookHangingReceiver(t *testing.T) {
	recv := newHookReceiver(t)
	recv.mode.Store(hookHang)
	var broken atomic.Bool
	stable := newBackend(t, "stable", nil)
	canary := newBackend(t, "canary", func(w http.ResponseWriter, r *http.Request) {
		if broken.Load() {
			http.Error(w, "broken", http.StatusInternalServerError)
			return
		}
		io.WriteString(w, "canary")
	})
	extra := []string{"CANARY_WEIGHT=10", "CANARY_SLO_MIN_REQUESTS=1000000", "CANARY_ACCESS_LOG=false"}
	base := start(t, testEnv(t, stable, canary, extra...))
	hooked := start(t, testEnv(t, stable, canary, append(extra, "CANARY_WEBHOOK_URL="+recv.URL, "CANARY_WEBHOOK_SECRET="+hookSecret)...))

	// The hooked canaryd's rollout changes all the time: every change is an
	// event the hanging receiver never takes.
	stop := make(chan struct{})
	var commands sync.WaitGroup
	var slowest atomic.Int64
	commands.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
			began := time.Now()
			code, body := hooked.postJSONRaw("/rollout/weight", fmt.Sprintf(`{"weight": %d}`, 5+i%10))
			if code != http.StatusOK {
				t.Errorf("weight = %d %s", code, body)
				return
			}
			if d := time.Since(began); d > time.Duration(slowest.Load()) {
				slowest.Store(int64(d))
			}
		}
	})
	measure := func(in *instance, n int) []time.Duration {
		var mu sync.Mutex
		var ds []time.Duration
		var wg sync.WaitGroup
		for range 4 {
			wg.Go(func() {
				for range n / 4 {
					began := time.Now()
					resp, err := client.Get(in.traffic + "/work")
					d := time.Since(began)
					if err != nil {
						t.Errorf("request: %v", err)
						return
					}
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					mu.Lock()
					ds = append(ds, d)
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		return ds
	}
	measure(base, 400) // warm both up
	measure(hooked, 400)
	var without, with []time.Duration
	for range 5 {
		without = append(without, measure(base, 2000)...)
		with = append(with, measure(hooked, 2000)...)
	}
	close(stop)
	commands.Wait()
	p50a, p99a := percentile(without, 0.50), percentile(without, 0.99)
	p50b, p99b := percentile(with, 0.50), percentile(with, 0.99)
	attempts, _ := recv.snapshot()
	events := len(hooked.history())
	t.Logf("proxy latency over %d requests each: without a webhook p50 %v p99 %v; receiver hanging p50 %v p99 %v (%.2fx); %d transitions, %d attempts reached the receiver; slowest weight command %v",
		len(without), p50a.Round(time.Microsecond), p99a.Round(time.Microsecond), p50b.Round(time.Microsecond), p99b.Round(time.Microsecond),
		float64(p99b)/float64(p99a), events, len(attempts), time.Duration(slowest.Load()).Round(time.Microsecond))
	// Generous: the bound only catches a request path that waits for the
	// receiver (10 s per attempt), not the noise of a shared machine.
	if limit := 3*p99a + 50*time.Millisecond; p99b > limit {
		t.Errorf("p99 with a hanging receiver %v; want at most %v (3x without, %v, plus 50ms)", p99b, limit, p99a)
	}
	if d := time.Duration(slowest.Load()); d > 2*time.Second {
		t.Errorf("the slowest weight command took %v with a hanging receiver; want well under the receiver's 10s timeout", d)
	}
	// The judge is not held up either: a broken canary is rolled back.
	hooked.adminPost("/rollout/reset")
	broken.Store(true)
	hooked.waitFor("rollback", 50, func(c checkBody) bool { return c.Recommendation == "rollback_error_rate" })
	// Nor is shutdown, beyond the last attempts' 5 s. (The client's spare
	// connections are closed first: net/http's Shutdown waits up to 5 s
	// for a connection that never sent a request.)
	client.CloseIdleConnections()
	began := time.Now()
	if code := hooked.stop(); code != 0 {
		t.Errorf("exit after SIGTERM with a hanging receiver = %d; want 0", code)
	}
	t.Logf("stopped %v after SIGTERM with events queued for a hanging receiver", time.Since(began).Round(time.Millisecond))
	if d := time.Since(began); d > 12*time.Second {
		t.Errorf("SIGTERM took %v with a hanging receiver; want about 5 s at most (the last attempts)", d)
	}
}

// postJSONRaw posts body and returns the status and raw answer.
func (in *instance) postJSONRaw(path, body string) (int, string) {
	in.t.Helper()
	resp, raw := in.adminDo(http.MethodPost, path, testToken, body)
	return resp.StatusCode, string(raw)
}

// TestE2EConfirmationGate: the endpoint answers 403 and the plan holds at
// its step, with reason awaiting_confirmation, asked again and again; a
// later 200 lets it advance, and the plan completes with every advance
// confirmed.
func TestE2EConfirmationGate(t *testing.T) {
	var status atomic.Int32
	status.Store(http.StatusForbidden)
	var mu sync.Mutex
	var asked []notify.Proposal
	confirm := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var p notify.Proposal
		if json.Unmarshal(body, &p) != nil || !notify.Verify([]byte(hookSecret), body, r.Header.Get("X-Canaryd-Signature")) {
			t.Errorf("confirmation request %s: not a signed proposal", body)
		}
		mu.Lock()
		asked = append(asked, p)
		mu.Unlock()
		code := int(status.Load())
		if code != http.StatusOK {
			http.Error(w, "waiting for the pipeline's sign-off", code)
			return
		}
		w.WriteHeader(code)
	}))
	defer confirm.Close()
	asks := func() []notify.Proposal { mu.Lock(); defer mu.Unlock(); return slices.Clone(asked) }
	stable, canary := newBackend(t, "stable", nil), newBackend(t, "canary", nil)
	in := start(t, testEnv(t, stable, canary, "CANARY_STEPS=5@1s,25@1s,100@1s", "CANARY_SLO_MIN_REQUESTS=5", "CANARY_RELEASE=v1",
		"CANARY_CONFIRM_URL="+confirm.URL+"/confirm", "CANARY_WEBHOOK_SECRET="+hookSecret))

	awaiting := func(c checkBody) bool {
		return slices.ContainsFunc(c.Reasons, func(r string) bool {
			return strings.HasPrefix(r, "awaiting_confirmation: step 1 (5%) to step 2 (25%)") && strings.Contains(r, "last answer of the confirmation endpoint (CANARY_CONFIRM_URL): 403 Forbidden: waiting for the pipeline's sign-off")
		})
	}
	c := in.waitFor("awaiting_confirmation", 50, awaiting)
	if !slices.ContainsFunc(c.Gates, func(g struct {
		Name    string `json:"name"`
		Verdict string `json:"verdict"`
	}) bool {
		return g.Name == "confirmation" && g.Verdict == "hold"
	}) {
		t.Errorf("gates %+v; want a holding confirmation gate", c.Gates)
	}
	// Held: for two more seconds (two steps' worth) it stays at 5%, asked
	// again every evaluation interval (50 ms here).
	n := len(asks())
	heldUntil := time.Now().Add(2 * time.Second)
	for time.Now().Before(heldUntil) {
		in.send(20)
		if c := in.check(); c.Weight != 5 || c.State != "progressing" {
			t.Fatalf("while the endpoint answers 403: weight %v, %s; want held at 5%%", c.Weight, c.State)
		}
	}
	again := len(asks()) - n
	if again < 5 {
		t.Errorf("asked %d times in 2s while refused; want again every evaluation interval", again)
	}
	t.Logf("held at 5%% while the endpoint answered 403: asked %d times in 2s (evaluation interval 50ms)", again)
	p := asks()[0]
	if p.Release != "v1" || p.Step != 0 || p.ToStep != 1 || p.ToState != "progressing" || p.From != 5 || p.To != 25 || p.Canary.Requests == 0 || p.Observed < 1 {
		t.Errorf("proposal %+v; want release v1, step 0 to 1, 5%% to 25%%, the canary's figures", p)
	}
	status.Store(http.StatusOK)
	accepted := time.Now()
	in.waitFor("step 2", 50, func(c checkBody) bool { return c.Weight == 25 })
	t.Logf("advanced to 25%% %v after the endpoint began to answer 200", time.Since(accepted).Round(time.Millisecond))
	in.waitFor("complete", 50, func(c checkBody) bool { return c.Recommendation == "complete" })
	var confirmed []string
	for _, h := range in.history() {
		if h.Who == "plan" {
			confirmed = append(confirmed, h.Reason)
		}
	}
	if len(confirmed) != 3 || !strings.HasSuffix(confirmed[0], "; confirmed") || !strings.HasSuffix(confirmed[2], "; confirmed; plan complete") {
		t.Errorf("the plan's transitions %q; want three, each confirmed", confirmed)
	}
	last := asks()[len(asks())-1]
	if last.ToState != "complete" || last.Step != 2 || last.To != 100 {
		t.Errorf("the last proposal %+v; want step 3 to complete at 100%%", last)
	}
}

// TestE2EProgressDeadline: a 3 s deadline on a step that cannot advance
// stalls it (a reason in /canary_check and the health summary, the
// metric), or rolls the canary back with rollback_deadline.
func TestE2EProgressDeadline(t *testing.T) {
	for _, action := range []string{"stall", "rollback"} {
		t.Run(action, func(t *testing.T) {
			stable, canary := newBackend(t, "stable", nil), newBackend(t, "canary", nil)
			// Never enough requests for proceed: the step cannot advance.
			in := start(t, testEnv(t, stable, canary, "CANARY_STEPS=5@1s,100@1s", "CANARY_SLO_MIN_REQUESTS=1000000",
				"CANARY_PROGRESS_DEADLINE=3s", "CANARY_PROGRESS_DEADLINE_ACTION="+action))
			began := in.history()[0].Time
			if action == "rollback" {
				c := in.waitFor("rollback_deadline", 5, func(c checkBody) bool { return c.Recommendation != "hold" })
				if c.Recommendation != "rollback_deadline" || c.CanaryOK || c.Weight != 0 || c.State != "rolled_back" {
					t.Fatalf("after the deadline: %+v; want rollback_deadline at 0", c)
				}
				h := in.history()
				if at := h[len(h)-1].Time; at.Sub(began) < 3*time.Second {
					t.Errorf("rolled back %v after the step began; want at least 3s", at.Sub(began))
				}
				t.Logf("rolled back (rollback_deadline) %v after the step began", h[len(h)-1].Time.Sub(began).Round(time.Millisecond))
				if !slices.ContainsFunc(c.Reasons, func(r string) bool {
					return strings.Contains(r, "rollback_deadline: step 1 (5%) did not advance within the progress deadline of 3s")
				}) {
					t.Errorf("reasons %q", c.Reasons)
				}
				if v, _ := in.metricValue("canary_rollbacks_total", "reason", "rollback_deadline"); v != 1 {
					t.Errorf("canary_rollbacks_total{reason=rollback_deadline} = %v; want 1", v)
				}
				if v, _ := in.metricValue("canary_verdict", "verdict", "rollback_deadline"); v != 1 {
					t.Errorf("canary_verdict{verdict=rollback_deadline} = %v; want 1", v)
				}
				return
			}
			stalled := func(r string) bool {
				return strings.HasPrefix(r, "stalled: step 1 (5%) has not advanced within the progress deadline of 3s")
			}
			c := in.waitFor("stalled", 5, func(c checkBody) bool { return slices.ContainsFunc(c.Reasons, stalled) })
			if c.State != "progressing" || c.Weight != 5 || !c.CanaryOK {
				t.Errorf("stalled: %+v; want still progressing at 5%%, canary_ok", c)
			}
			h := in.history()
			if last := h[len(h)-1]; last.Time.Sub(began) < 3*time.Second || last.Who != "plan" || !strings.HasSuffix(last.Reason, ": stalled") {
				t.Errorf("history %+v; want the stall by the plan at least 3s after the step began", last)
			}
			t.Logf("stalled %v after the step began", h[len(h)-1].Time.Sub(began).Round(time.Millisecond))
			_, body := in.adminGet("/dashboard/health_summary", testToken)
			var hs struct {
				OverallHealth string   `json:"overall_health"`
				Reasons       []string `json:"reasons"`
			}
			json.Unmarshal(body, &hs)
			if hs.OverallHealth != "degraded" || !slices.ContainsFunc(hs.Reasons, stalled) {
				t.Errorf("health summary %s %q; want degraded, stalled", hs.OverallHealth, hs.Reasons)
			}
			if v, _ := in.metricValue("canary_progress_stalled"); v != 1 {
				t.Errorf("canary_progress_stalled = %v; want 1", v)
			}
			if code, _ := in.adminPost("/rollout/promote"); code != http.StatusOK {
				t.Fatal("promote failed")
			}
			if v, _ := in.metricValue("canary_progress_stalled"); v != 0 {
				t.Errorf("canary_progress_stalled = %v after the step advanced; want 0", v)
			}
		})
	}
}

// TestE2EFleetWebhookEvents: three replicas on a real etcd, each with the
// same webhook: a staged plan (run by the leader) and commands taken by
// different replicas reach the receiver as one signed event per transition
// of the fleet's history, in order, each sent by the replica that wrote it.
func TestE2EFleetWebhookEvents(t *testing.T) {
	recv := newHookReceiver(t)
	stable, canary := newBackend(t, "stable", nil), newBackend(t, "canary", nil)
	f := newFleetUnderTest(t, stable, canary, "CANARY_STEPS=10@1s,30@1s,100@1s", "CANARY_SLO_MIN_REQUESTS=20",
		"CANARY_WEBHOOK_URL="+recv.URL, "CANARY_WEBHOOK_SECRET="+hookSecret)
	rs := f.startAll(3)
	load := startFleetLoad(t, rs, 3, 5*time.Millisecond)
	agree(t, "the plan complete", rs, func(o overviewBody) bool { return o.State == "complete" })
	load.stop()
	accepted := func(n int) {
		t.Helper()
		waitUntil(t, fmt.Sprintf("%d events accepted", n), func() bool { _, acc := recv.snapshot(); return len(acc) >= n })
	}
	accepted(4)
	for i, cmd := range []struct {
		replica int
		path    string
	}{{1, "/rollout/rollback"}, {2, "/rollout/reset"}, {0, "/rollout/finish"}} {
		// Every replica has seen the transitions so far: a command on one
		// that has not is refused (it acts on what its caller saw).
		agree(t, fmt.Sprintf("%d transitions", 4+i), rs, func(o overviewBody) bool { return len(o.History) >= 4+i })
		if code, body := rs[cmd.replica].adminPost(cmd.path); code != http.StatusOK {
			t.Fatalf("%s on r%d = %d %s", cmd.path, cmd.replica+1, code, body)
		}
		accepted(5 + i)
	}
	time.Sleep(500 * time.Millisecond) // a duplicate from another replica would arrive by now
	_, acc := recv.snapshot()
	checkEventsMatchHistory(t, acc, rs[0].history(), []string{"started", "step", "step", "complete", "rolled_back", "reset", "finished"})
	leader := leaderOf(t, rs).fleet().Self
	for i, want := range []string{"r1", leader, leader, leader, "r2", "r3", "r1"} {
		if i < len(acc) && acc[i].Replica != want {
			t.Errorf("event %d (%s) sent for replica %q; want %q", i, acc[i].Type, acc[i].Replica, want)
		}
	}
}

// TestE2EWebhookSecretRotation: SIGHUP re-reads CANARY_WEBHOOK_SECRET_FILE;
// the events after it are signed with the new secret, and a file turned
// bad keeps the secret in force.
func TestE2EWebhookSecretRotation(t *testing.T) {
	const oldSecret, newSecret = "old-secret-0123456789", "new-secret-9876543210"
	type signed struct{ body, sig []byte }
	var mu sync.Mutex
	var got []signed
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		got = append(got, signed{body, []byte(r.Header.Get("X-Canaryd-Signature"))})
		mu.Unlock()
	}))
	t.Cleanup(srv.Close)
	// event waits for the event of the type, the n-th of its type (0-based).
	event := func(typ string, n int) (e signed) {
		t.Helper()
		waitUntil(t, fmt.Sprintf("event %s #%d", typ, n+1), func() bool {
			mu.Lock()
			defer mu.Unlock()
			seen := 0
			for _, g := range got {
				var ev hookEvent
				if json.Unmarshal(g.body, &ev) == nil && ev.Type == typ {
					if seen == n {
						e = g
						return true
					}
					seen++
				}
			}
			return false
		})
		return e
	}
	file := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(file, []byte(oldSecret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	stable, canary := newBackend(t, "stable", nil), newBackend(t, "canary", nil)
	in := start(t, testEnv(t, stable, canary, "CANARY_WEBHOOK_URL="+srv.URL, "CANARY_WEBHOOK_SECRET_FILE="+file))
	hup := func(line string) {
		t.Helper()
		if err := in.cmd.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		waitUntil(t, "the line "+line, func() bool { return strings.Contains(in.logs.String(), line) })
	}
	post := func(path string) {
		t.Helper()
		if code, body := in.adminPost(path); code != http.StatusOK {
			t.Fatalf("%s = %d %s", path, code, body)
		}
	}
	post("/rollout/rollback")
	if e := event("rolled_back", 0); !notify.Verify([]byte(oldSecret), e.body, string(e.sig)) {
		t.Fatalf("the first event is not signed with the first secret: %s", e.sig)
	}
	if err := os.WriteFile(file, []byte(newSecret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	hup("webhook secret " + file + " (rotated)")
	post("/rollout/reset")
	if e := event("reset", 0); !notify.Verify([]byte(newSecret), e.body, string(e.sig)) || notify.Verify([]byte(oldSecret), e.body, string(e.sig)) {
		t.Fatalf("the event after SIGHUP is not signed with the new secret: %s", e.sig)
	}
	// A file turned bad: the reload fails, loudly, and the secret stays.
	if err := os.WriteFile(file, []byte("short\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	hup("the previous secret stays in force")
	post("/rollout/rollback")
	if e := event("rolled_back", 1); !notify.Verify([]byte(newSecret), e.body, string(e.sig)) {
		t.Fatalf("after a bad secret file, the event is not signed with the secret in force: %s", e.sig)
	}
	if in.cmd.ProcessState != nil {
		t.Fatal("canaryd stopped on SIGHUP")
	}
}
