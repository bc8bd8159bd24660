package notify_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/canaryd/canaryd/guard"
	"github.com/canaryd/canaryd/guard/judge"
	"github.com/canaryd/canaryd/guard/notify"
)

var secret = []byte("webhook-secret-0123456789")

// notice is the i-th made-up notice.
func notice(i int) guard.Notice {
	tr := guard.Transition{At: time.Date(2026, 5, 4, 10, 0, i, 0, time.UTC), From: 5, To: 25, FromState: "progressing", ToState: "progressing",
		Reason: fmt.Sprintf("step %d", i), Who: "plan", Release: "v1"}
	return guard.Notice{ID: fmt.Sprintf("id-%03d", i), Kind: guard.KindStep, Transition: tr, State: guard.StateProgressing, Step: 1, Steps: 3, Weight: 2500}
}

// receiver is an endpoint that records what it is sent and answers with
// what answer says for each request (nil: 200).
type receiver struct {
	*httptest.Server
	mu       sync.Mutex
	requests []received
	answer   func(n int) int
}

type received struct {
	body   []byte
	header http.Header
}

func newReceiver(t *testing.T, answer func(n int) int) *receiver {
	r := &receiver{answer: answer}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		r.mu.Lock()
		r.requests = append(r.requests, received{body, req.Header.Clone()})
		n := len(r.requests)
		r.mu.Unlock()
		code := 200
		if r.answer != nil {
			code = r.answer(n)
		}
		w.WriteHeader(code)
	}))
	t.Cleanup(r.Close)
	return r
}

func (r *receiver) got() []received {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]received(nil), r.requests...)
}

// run starts w until the test ends.
func run(t *testing.T, w *notify.Webhook) context.CancelFunc {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { w.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return cancel
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func newWebhook(t *testing.T, cfg notify.Config) (*notify.Webhook, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	m, err := notify.NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Metrics = m
	w, err := notify.New(cfg, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	return w, reg
}

func deliveries(t *testing.T, reg *prometheus.Registry, result string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			if mf.GetName() == "canary_webhook_deliveries_total" && m.GetLabel()[0].GetValue() == result {
				return m.GetCounter().GetValue()
			}
		}
	}
	t.Fatalf("no canary_webhook_deliveries_total{result=%q}", result)
	return 0
}

// Events arrive in order, signed, with their id and type, as canaryd's JSON
// event.
func TestWebhookDeliversInOrderSigned(t *testing.T) {
	r := newReceiver(t, nil)
	w, reg := newWebhook(t, notify.Config{URL: r.URL + "/hooks/canaryd", Secret: secret, Version: "v9.9.9"})
	run(t, w)
	for i := range 20 {
		w.Notify(notice(i))
	}
	waitFor(t, "20 deliveries", func() bool { return len(r.got()) == 20 })
	for i, req := range r.got() {
		if !notify.Verify(secret, req.body, req.header.Get("X-Canaryd-Signature")) {
			t.Errorf("request %d: signature %q does not verify", i, req.header.Get("X-Canaryd-Signature"))
		}
		var ev notify.Event
		if err := json.Unmarshal(req.body, &ev); err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		want := notice(i)
		if ev.ID != want.ID || ev.Type != guard.KindStep || ev.Reason != want.Transition.Reason || ev.Step != 1 || ev.Steps != 3 || ev.To != 25 {
			t.Errorf("request %d = %+v; want %s in order", i, ev, want.ID)
		}
		if req.header.Get("X-Canaryd-Delivery") != want.ID || req.header.Get("X-Canaryd-Event") != "step" ||
			req.header.Get("Content-Type") != "application/json" || req.header.Get("User-Agent") != "canaryd/v9.9.9" {
			t.Errorf("request %d headers %v", i, req.header)
		}
	}
	// The receiver records a request before it answers: the last answer
	// is counted a moment later.
	waitFor(t, "20 counted as delivered", func() bool { return deliveries(t, reg, "delivered") == 20 })
}

// An endpoint answering 503 sees the same event again (same id and body)
// until it accepts it; the order is kept; a 4xx is final.
func TestWebhookRetries(t *testing.T) {
	r := newReceiver(t, func(n int) int {
		switch {
		case n <= 3:
			return http.StatusServiceUnavailable
		case n == 5:
			return http.StatusBadRequest // the second event: rejected, not retried
		}
		return http.StatusNoContent
	})
	w, reg := newWebhook(t, notify.Config{URL: r.URL, Secret: secret, FirstBackoff: 10 * time.Millisecond})
	run(t, w)
	for i := range 3 {
		w.Notify(notice(i))
	}
	waitFor(t, "6 requests", func() bool { return len(r.got()) == 6 })
	// The receiver records a request before it answers: wait for the last
	// answer to be counted.
	waitFor(t, "3 events settled", func() bool { return deliveries(t, reg, "delivered")+deliveries(t, reg, "rejected") == 3 })
	var ids []string
	for _, req := range r.got() {
		ids = append(ids, req.header.Get("X-Canaryd-Delivery"))
		if !notify.Verify(secret, req.body, req.header.Get("X-Canaryd-Signature")) {
			t.Error("a retry's signature does not verify")
		}
	}
	if want := "id-000 id-000 id-000 id-000 id-001 id-002"; strings.Join(ids, " ") != want {
		t.Errorf("requests for %v; want %s", ids, want)
	}
	if !bytes.Equal(r.got()[0].body, r.got()[3].body) {
		t.Error("a retry's body differs from the first attempt's")
	}
	for result, want := range map[string]float64{"delivered": 2, "retried": 3, "rejected": 1, "expired": 0, "dropped": 0} {
		if got := deliveries(t, reg, result); got != want {
			t.Errorf("%s = %v; want %v", result, got, want)
		}
	}
}

// An endpoint that never accepts is given up after RetryFor.
func TestWebhookGivesUp(t *testing.T) {
	r := newReceiver(t, func(int) int { return http.StatusBadGateway })
	w, reg := newWebhook(t, notify.Config{URL: r.URL, FirstBackoff: 5 * time.Millisecond, RetryFor: time.Second})
	run(t, w)
	w.Notify(notice(0))
	waitFor(t, "expired", func() bool { return deliveries(t, reg, "expired") == 1 })
	if n := len(r.got()); n < 3 {
		t.Errorf("%d attempts in 1s of 5ms-doubling backoff; want at least 3", n)
	}
}

// Notify never waits for the endpoint: with a receiver that hangs, 10,000
// notices are queued at once; a full queue drops its oldest, and when the
// receiver answers again the newest events arrive in order.
func TestWebhookNotifyNeverBlocks(t *testing.T) {
	release := make(chan struct{})
	var mu sync.Mutex
	var got []string
	r := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		<-release
		mu.Lock()
		got = append(got, req.Header.Get("X-Canaryd-Delivery"))
		mu.Unlock()
	}))
	defer r.Close()
	defer close(release)
	w, reg := newWebhook(t, notify.Config{URL: r.URL, QueueSize: 100, AttemptTimeout: time.Hour})
	run(t, w)
	w.Notify(notice(0))
	waitFor(t, "the first event in flight", func() bool { return w.Pending() == 0 })
	done := make(chan struct{})
	go func() {
		for i := 1; i <= 10000; i++ {
			w.Notify(notice(i))
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Notify blocked behind a hanging endpoint")
	}
	if p, d := w.Pending(), deliveries(t, reg, "dropped"); p != 100 || d != 9900 {
		t.Fatalf("pending %d, dropped %v; want 100 waiting, 9,900 dropped", p, d)
	}
	release <- struct{}{} // the first event's answer
	for range 100 {
		release <- struct{}{}
	}
	waitFor(t, "101 deliveries", func() bool { mu.Lock(); defer mu.Unlock(); return len(got) == 101 })
	mu.Lock()
	defer mu.Unlock()
	if got[0] != "id-000" || got[1] != "id-9901" || got[100] != "id-10000" {
		t.Errorf("delivered %s, %s … %s; want id-000, then id-9901 … id-10000 (the newest kept, in order)", got[0], got[1], got[100])
	}
}

// At shutdown, the events still waiting (and the one whose attempt the
// shutdown cut) get one last attempt each; those that fail are dropped.
func TestWebhookDrainsAtShutdown(t *testing.T) {
	var accept sync.WaitGroup
	accept.Add(1)
	r := newReceiver(t, func(n int) int {
		switch n {
		case 1:
			accept.Wait() // the first request hangs until shutdown
			return http.StatusServiceUnavailable
		case 2:
			return http.StatusInternalServerError // the first event's last attempt
		}
		return http.StatusOK
	})
	w, reg := newWebhook(t, notify.Config{URL: r.URL, AttemptTimeout: time.Hour})
	cancel := run(t, w)
	for i := range 3 {
		w.Notify(notice(i))
	}
	waitFor(t, "the first request", func() bool { return len(r.got()) == 1 })
	cancel()
	accept.Done()
	waitFor(t, "the drain", func() bool { return deliveries(t, reg, "delivered")+deliveries(t, reg, "dropped") == 3 })
	if d := deliveries(t, reg, "delivered"); d != 2 {
		t.Errorf("delivered at shutdown %v; want 2 (the first one dropped)", d)
	}
}

// Slack's shape: text and blocks, the reason and figures of a rollback,
// mrkdwn escaped.
func TestWebhookSlack(t *testing.T) {
	r := newReceiver(t, nil)
	w, _ := newWebhook(t, notify.Config{URL: r.URL, Format: notify.FormatSlack})
	run(t, w)
	n := notice(1)
	n.Kind, n.ID = guard.KindRolledBack, "abc"
	n.Transition.Release = "v2 <beta>"
	n.Transition.To, n.Transition.ToState, n.Transition.Reason, n.Transition.Who, n.Transition.Replica = 0, "rolled_back", "rollback_metric", "guard", "web-1:8000"
	n.Rollback = &guard.RollbackRecord{Reason: guard.RecRollbackMetric, Canary: guard.BackendView{Requests: 1843, Errors: 77, ErrorRate: 0.0418, P95Ms: 41.2},
		Detail: "metric gate checkout_errors: 0.31 above its max 0.05 for 2m0s", Gates: []judge.Gate{{Name: "checkout_errors", Verdict: judge.GateFail}}}
	w.Notify(n)
	waitFor(t, "the message", func() bool { return len(r.got()) == 1 })
	var msg struct {
		Text   string `json:"text"`
		Blocks []struct {
			Type   string `json:"type"`
			Text   *struct{ Type, Text string }
			Fields []struct{ Type, Text string }
		} `json:"blocks"`
	}
	body := r.got()[0].body
	if err := json.Unmarshal(body, &msg); err != nil {
		t.Fatal(err)
	}
	if msg.Text != ":rotating_light: Release v2 &lt;beta&gt; rolled back: rollback_metric" {
		t.Errorf("text %q", msg.Text)
	}
	if len(msg.Blocks) != 4 || msg.Blocks[0].Type != "section" || msg.Blocks[3].Type != "context" || len(msg.Blocks[1].Fields) != 4 {
		t.Fatalf("blocks %s", body)
	}
	for _, want := range []string{"1843 requests, 77 errors (4.18%), p95 41.2 ms", "checkout_errors: 0.31 above its max 0.05", "Failing gates: `checkout_errors`", "guard on web-1:8000", "5% → 0%", "event abc"} {
		if !bytes.Contains(body, []byte(want)) {
			t.Errorf("message lacks %q:\n%s", want, body)
		}
	}
	if bytes.Contains(body, []byte("<beta>")) {
		t.Error("mrkdwn control characters not escaped")
	}
}

// The endpoint's URL may hold a secret (Slack's path): no log line or
// reason shows more than its scheme and host.
func TestWebhookNeverLogsTheURLPath(t *testing.T) {
	logs := &syncBuffer{}
	reg := prometheus.NewRegistry()
	m, _ := notify.NewMetrics(reg)
	w, err := notify.New(notify.Config{URL: "http://127.0.0.1:1/services/T0/B0/SECRETPART", FirstBackoff: time.Millisecond, RetryFor: 20 * time.Millisecond, Metrics: m},
		zerolog.New(logs))
	if err != nil {
		t.Fatal(err)
	}
	run(t, w)
	w.Notify(notice(0))
	waitFor(t, "expired", func() bool { return deliveries(t, reg, "expired") == 1 })
	if strings.Contains(logs.String(), "SECRETPART") || !strings.Contains(logs.String(), "http://127.0.0.1:1/…") {
		t.Errorf("logs:\n%s", logs.String())
	}
}

func TestSignVerify(t *testing.T) {
	body := []byte(`{"id":"x"}`)
	sig := notify.Sign(secret, body)
	// echo -n '{"id":"x"}' | openssl dgst -sha256 -hmac webhook-secret-0123456789
	if sig != "sha256=6ac4850d6da783d7cbd943115e3b099d8d94cdfa36607a40f777cb26a48ff705" {
		t.Errorf("Sign = %q", sig)
	}
	for _, tt := range []struct {
		header string
		body   []byte
		ok     bool
	}{
		{sig, body, true},
		{sig, []byte(`{"id":"y"}`), false},
		{strings.TrimPrefix(sig, "sha256="), body, false},
		{"sha256=zz", body, false},
		{"", body, false},
	} {
		if got := notify.Verify(secret, tt.body, tt.header); got != tt.ok {
			t.Errorf("Verify(%q, %s) = %v; want %v", tt.header, tt.body, got, tt.ok)
		}
	}
	if err := notify.ValidateSecret([]byte("short")); err == nil {
		t.Error("a 5-byte secret was accepted")
	}
}

// syncBuffer is a buffer safe to write from one goroutine and read from
// another.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
