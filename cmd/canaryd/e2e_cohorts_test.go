package main

// End-to-end tests of cohorts, sticky users and shadow traffic (README,
// "Cohorts, sticky users and shadow traffic").

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// getAs sends GET path to the traffic listener with header pairs and
// returns the status and body.
func (in *instance) getAs(path string, header ...string) (int, string) {
	in.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, in.traffic+path, nil)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Add(header[i], header[i+1])
	}
	resp, err := client.Do(req)
	if err != nil {
		in.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(b))
}

// A header cohort and a cidr cohort (the client behind a trusted proxy, and
// the peer itself) reach the canary at weight 0, are judged as canary
// traffic, and go to stable once rolled back; the override "never" beats
// them.
func TestE2ECohortsReachTheCanaryAtWeightZero(t *testing.T) {
	stable, canary := newBackend(t, "stable", nil), newBackend(t, "canary", nil)
	in := start(t, testEnv(t, stable, canary, "CANARY_WEIGHT=0", "CANARY_OVERRIDE_HEADER=X-Canary",
		"CANARY_MATCH=header:X-Beta=yes,header:User-Agent~^beta-(tester|staff)/[0-9]{1,3}$,cidr:10.0.0.0/8",
		"CANARY_TRUSTED_PROXIES=127.0.0.1,::1"))
	cases := []struct {
		name   string
		header []string
		want   string
	}{
		{"header cohort", []string{"X-Beta", "yes"}, "canary"},
		{"header regex cohort", []string{"User-Agent", "beta-tester/12"}, "canary"},
		{"cidr cohort behind a trusted proxy", []string{"X-Forwarded-For", "10.20.30.40"}, "canary"},
		{"cidr cohort, a trusted hop skipped", []string{"X-Forwarded-For", "10.20.30.40, 127.0.0.1"}, "canary"},
		{"a forged hop before the real client", []string{"X-Forwarded-For", "10.20.30.40, 192.0.2.7"}, "stable"},
		{"no cohort", []string{"X-Beta", "no", "User-Agent", "beta-tester/1234"}, "stable"},
		{"the override never beats the cohort", []string{"X-Beta", "yes", "X-Canary", "never"}, "stable"},
	}
	for _, tc := range cases {
		for range 3 {
			if code, body := in.getAs("/work", tc.header...); code != 200 || body != tc.want {
				t.Errorf("%s: %d %q; want %s", tc.name, code, body, tc.want)
			}
		}
	}
	// Cohort requests are canary evidence like any other.
	c := in.waitFor("the cohort's requests in the canary's figures", 0, func(c checkBody) bool { return c.Canary.Requests >= 12 })
	if c.Weight != 0 {
		t.Errorf("weight %v; want 0", c.Weight)
	}
	if code, body := in.adminPost("/rollout/rollback"); code != 200 {
		t.Fatalf("rollback: %d %s", code, body)
	}
	for _, tc := range cases {
		if code, body := in.getAs("/work", tc.header...); code != 200 || body != "stable" {
			t.Errorf("rolled back, %s: %d %q; want stable", tc.name, code, body)
		}
	}

	// Without trusted proxies the peer (127.0.0.1 here) is the client and
	// X-Forwarded-For is ignored.
	in2 := start(t, testEnv(t, stable, canary, "CANARY_WEIGHT=0", "CANARY_MATCH=cidr:127.0.0.0/8"))
	if code, body := in2.getAs("/work"); code != 200 || body != "canary" {
		t.Errorf("peer 127.0.0.1 in cidr:127.0.0.0/8: %d %q; want canary", code, body)
	}
	in3 := start(t, testEnv(t, stable, canary, "CANARY_WEIGHT=0", "CANARY_MATCH=cidr:10.0.0.0/8"))
	if code, body := in3.getAs("/work", "X-Forwarded-For", "10.1.1.1"); code != 200 || body != "stable" {
		t.Errorf("an untrusted peer's X-Forwarded-For 10.1.1.1: %d %q; want stable", code, body)
	}
	if code, _ := in3.adminPost("/rollout/rollback"); code != 200 {
		t.Fatal("rollback failed")
	}
	in2.adminPost("/rollout/rollback")
	if code, body := in2.getAs("/work"); code != 200 || body != "stable" {
		t.Errorf("rolled back, the peer's cidr cohort: %d %q; want stable", code, body)
	}
}

// A regular expression is compiled once, at start: a bad one stops canaryd
// with exit status 2 and one line naming CANARY_MATCH.
func TestE2ECohortBadRegexExits2(t *testing.T) {
	env := testEnv(t, newBackend(t, "stable", nil), newBackend(t, "canary", nil), "CANARY_MATCH=header:X-Beta=yes,header:User-Agent~beta-(tester")
	code, _, stderr := runBinary(t, env)
	if code != exitConfig {
		t.Fatalf("exit %d; want %d (stderr %q)", code, exitConfig, stderr)
	}
	oneLine(t, "stderr", stderr, "canaryd: CANARY_MATCH: ")
	if !strings.Contains(stderr, "beta-(tester") {
		t.Errorf("stderr %q does not quote the condition", stderr)
	}
}

// stickyClient is one user: the id it was given, and the versions it saw.
type stickyClient struct {
	cookie   string // "cid=…"
	versions []string
}

// visit sends one request as c (getting a cookie on the first) and notes
// the version.
func (c *stickyClient) visit(t *testing.T, in *instance) error {
	req, _ := http.NewRequest(http.MethodGet, in.traffic+"/page", nil)
	if c.cookie != "" {
		req.Header.Set("Cookie", c.cookie)
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var fresh []string
	for _, ck := range resp.Cookies() {
		if ck.Name == "cid" {
			fresh = append(fresh, ck.Name+"="+ck.Value)
			if !ck.HttpOnly || ck.Path != "/" || ck.SameSite != http.SameSiteLaxMode || ck.MaxAge != 86400 {
				return fmt.Errorf("Set-Cookie %q: want Path=/; Max-Age=86400; HttpOnly; SameSite=Lax", resp.Header.Get("Set-Cookie"))
			}
		}
	}
	switch {
	case c.cookie == "" && len(fresh) != 1:
		return fmt.Errorf("a client without the cookie got Set-Cookie %q; want one cid", resp.Header["Set-Cookie"])
	case c.cookie != "" && len(fresh) != 0:
		return fmt.Errorf("a client with its cookie got another: %q", resp.Header["Set-Cookie"])
	case c.cookie == "":
		c.cookie = fresh[0]
	}
	c.versions = append(c.versions, strings.TrimSpace(string(body)))
	return nil
}

// everyClient runs visit rounds times for every client, from 8 workers.
func everyClient(t *testing.T, in *instance, clients []*stickyClient, rounds int) {
	t.Helper()
	jobs := make(chan *stickyClient)
	var wg sync.WaitGroup
	var failed atomic.Pointer[error]
	for range 8 {
		wg.Go(func() {
			for c := range jobs {
				for range rounds {
					if err := c.visit(t, in); err != nil {
						failed.CompareAndSwap(nil, &err)
					}
				}
			}
		})
	}
	for _, c := range clients {
		jobs <- c
	}
	close(jobs)
	wg.Wait()
	if err := failed.Load(); err != nil {
		t.Fatal(*err)
	}
}

// 2,000 cookie-less clients at weight 10 get cookies; 10 ± 2% of them land
// on the canary and each keeps its version over 20 requests; raising the
// weight to 25 moves nobody from canary to stable; a rollback sends all to
// stable.
func TestE2EStickyUsers(t *testing.T) {
	stable, canary := newBackend(t, "stable", nil), newBackend(t, "canary", nil)
	in := start(t, testEnv(t, stable, canary, "CANARY_WEIGHT=10", "CANARY_STICKY_KEY=cookie:cid", "CANARY_STICKY_SET_COOKIE=true"))
	const users = 2000
	clients := make([]*stickyClient, users)
	for i := range clients {
		clients[i] = &stickyClient{}
	}
	began := time.Now()
	everyClient(t, in, clients, 20)
	t.Logf("%d clients × 20 requests in %v", users, time.Since(began).Round(time.Millisecond))
	onCanary := func(round int) (n int) {
		for _, c := range clients {
			if c.versions[round] == "canary" {
				n++
			}
		}
		return n
	}
	ids := map[string]bool{}
	for i, c := range clients {
		if ids[c.cookie] {
			t.Fatalf("client %d got the id of another: %s", i, c.cookie)
		}
		ids[c.cookie] = true
		for _, v := range c.versions {
			if v != c.versions[0] {
				t.Fatalf("client %d (%s) bounced between versions: %v", i, c.cookie, c.versions)
			}
		}
	}
	n10 := onCanary(0)
	t.Logf("at 10%%: %d of %d users on the canary (%.2f%%)", n10, users, 100*float64(n10)/users)
	if n10 < users*8/100 || n10 > users*12/100 {
		t.Errorf("at 10%%: %d of %d users on the canary; want 10 ± 2%%", n10, users)
	}

	if code, o := in.postJSON("/rollout/weight", `{"weight": 25}`); code != 200 {
		t.Fatalf("weight 25: %d %+v", code, o)
	}
	everyClient(t, in, clients, 1)
	n25 := onCanary(20)
	for i, c := range clients {
		if c.versions[0] == "canary" && c.versions[20] != "canary" {
			t.Errorf("client %d moved from canary to stable when the weight rose", i)
		}
	}
	t.Logf("at 25%%: %d of %d users on the canary (%.2f%%)", n25, users, 100*float64(n25)/users)
	if n25 < users*23/100 || n25 > users*27/100 {
		t.Errorf("at 25%%: %d of %d users on the canary; want 25 ± 2%%", n25, users)
	}

	if code, body := in.adminPost("/rollout/rollback"); code != 200 {
		t.Fatalf("rollback: %d %s", code, body)
	}
	everyClient(t, in, clients, 1)
	if n := onCanary(21); n != 0 {
		t.Errorf("rolled back: %d users still on the canary; want 0", n)
	}
}

// shadowPair runs two canaryds in front of the same backends at weight 0,
// one mirroring every request and one not.
func shadowPair(t *testing.T, stable, canary *backend, extra ...string) (mirrored, plain *instance) {
	mirrored = start(t, testEnv(t, stable, canary, append([]string{"CANARY_WEIGHT=0", "CANARY_MIRROR_PERCENT=100"}, extra...)...))
	plain = start(t, testEnv(t, stable, canary, append([]string{"CANARY_WEIGHT=0"}, extra...)...))
	return mirrored, plain
}

// timedGet is one request's latency and body.
func timedGet(url string) (time.Duration, string, error) {
	t0 := time.Now()
	resp, err := client.Get(url)
	if err != nil {
		return 0, "", err
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	return time.Since(t0), strings.TrimSpace(string(b)), err
}

// With 100% mirroring to a canary that takes 2 s, the clients' p99 stays
// within 5 ms of a canaryd that does not mirror, and they see only stable's
// answers. The two are measured the same way at the same time: 4 workers
// each alternate one request to either, so that the machine's load falls
// on both alike; three rounds of 3,000 requests to each, and the median
// round's p99 difference is judged, so that one burst of load on a shared
// machine does not decide (a real cost, every request waiting on its copy,
// shows in every round).
func TestE2EMirrorDoesNotSlowClients(t *testing.T) {
	stable := newBackend(t, "stable", nil)
	canary := newBackend(t, "canary", func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-time.After(2 * time.Second):
		case <-r.Context().Done():
		}
		io.WriteString(w, "canary\n")
	})
	mirrored, plain := shadowPair(t, stable, canary)
	var diffs []time.Duration
	for round := range 3 {
		latM, latP := measurePair(t, mirrored, plain, 750)
		p99M, p99P := percentile(latM, 0.99), percentile(latP, 0.99)
		t.Logf("round %d, %d requests each: mirroring 100%% p50 %v p99 %v; not mirroring p50 %v p99 %v; p99 difference %v",
			round+1, len(latM), percentile(latM, 0.5), p99M, percentile(latP, 0.5), p99P, p99M-p99P)
		diffs = append(diffs, p99M-p99P)
	}
	slices.Sort(diffs)
	if diffs[1] > 5*time.Millisecond {
		t.Errorf("mirroring to a 2 s canary raised the clients' p99 by %v (median of the rounds %v); want at most 5ms", diffs[1], diffs)
	}
	// The copies did go, and the slow canary filled the slots: the rest
	// were dropped and counted.
	if dropped, _ := mirrored.metricValue("canary_mirror_dropped_total"); dropped == 0 || canary.hits.Load() == 0 {
		t.Errorf("the canary got %d copies, %v dropped; want both above 0", canary.hits.Load(), dropped)
	}
}

// measurePair sends perWorker requests from each of 4 workers to both a
// and b, alternating which goes first, and returns the latencies of each;
// every answer must be stable's.
func measurePair(t *testing.T, a, b *instance, perWorker int) (latA, latB []time.Duration) {
	t.Helper()
	var (
		mu           sync.Mutex
		wrong, fails int
		wg           sync.WaitGroup
	)
	for w := range 4 {
		wg.Go(func() {
			for i := range perWorker {
				order := []*instance{a, b}
				if (i+w)%2 == 1 {
					order[0], order[1] = b, a
				}
				for _, in := range order {
					d, body, err := timedGet(in.traffic + "/item")
					mu.Lock()
					switch {
					case err != nil:
						fails++
					case body != "stable":
						wrong++
					case in == a:
						latA = append(latA, d)
					default:
						latB = append(latB, d)
					}
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	if fails > 0 || wrong > 0 {
		t.Fatalf("%d requests failed, %d answered by another than stable; want none", fails, wrong)
	}
	return latA, latB
}

// A mirrored canary answering 500 is rolled back (rollback_error_rate)
// while the clients saw no error; then nothing more is copied.
func TestE2EMirrorRollsBackABadCanary(t *testing.T) {
	stable := newBackend(t, "stable", nil)
	canary := newBackend(t, "canary", func(w http.ResponseWriter, r *http.Request) { http.Error(w, "broken", 500) })
	in := start(t, testEnv(t, stable, canary, "CANARY_WEIGHT=0", "CANARY_MIRROR_PERCENT=100"))
	codes, sent := map[int]int{}, 0
	deadline := time.Now().Add(20 * time.Second)
	c := in.check()
	for c.Recommendation != "rollback_error_rate" {
		if time.Now().After(deadline) {
			t.Fatalf("no rollback_error_rate after %d requests; last check %+v", sent, c)
		}
		for code, n := range in.send(50) {
			codes[code] += n
		}
		sent += 50
		c = in.check()
	}
	t.Logf("rolled back after %d client requests; the canary got %d copies", sent, canary.hits.Load())
	if len(codes) != 1 || codes[200] != sent {
		t.Errorf("clients got %v; want only 200s", codes)
	}
	if c.State != "rolled_back" || c.CanaryOK {
		t.Errorf("state %s, canary_ok %v; want rolled_back, false", c.State, c.CanaryOK)
	}
	_, raw := in.adminGet("/canary_check", testToken)
	var mc struct {
		Mirror struct {
			Percent   float64 `json:"percent"`
			Requests  uint64  `json:"requests"`
			Errors    uint64  `json:"errors"`
			ErrorRate float64 `json:"error_rate"`
		} `json:"mirror"`
		Canary struct {
			Requests uint64 `json:"requests"`
			Errors   uint64 `json:"errors"`
		} `json:"canary"`
	}
	if err := json.Unmarshal(raw, &mc); err != nil {
		t.Fatal(err)
	}
	if mc.Mirror.Percent != 100 || mc.Mirror.Errors == 0 || mc.Mirror.ErrorRate != 1 || mc.Canary.Errors != mc.Mirror.Errors {
		t.Errorf("/canary_check mirror %+v, canary %+v; want percent 100, errors > 0, error rate 1, and the canary's errors those of the copies", mc.Mirror, mc.Canary)
	}
	if v, _ := in.metricValue("canary_responses_total", "backend", "canary"); v != 0 {
		t.Errorf("canary_responses_total{backend=canary} = %v; want 0 (no client got the canary)", v)
	}
	// Rolled back: no more copies.
	time.Sleep(200 * time.Millisecond) // copies already on their way land
	before := canary.hits.Load()
	in.send(200)
	time.Sleep(200 * time.Millisecond)
	if after := canary.hits.Load(); after != before {
		t.Errorf("rolled back, the canary still got %d copies", after-before)
	}
}

// Only bodies up to 64 KiB are copied: a 1 MiB POST is not.
func TestE2EMirrorLargePostIsNotCopied(t *testing.T) {
	var mu sync.Mutex
	var got []string
	stable := newBackend(t, "stable", func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		io.WriteString(w, "stable\n")
	})
	canary := newBackend(t, "canary", func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		got = append(got, fmt.Sprintf("%s %d %s", r.Method, len(b), r.Header.Get("X-Canaryd-Mirror")))
		mu.Unlock()
	})
	in := start(t, testEnv(t, stable, canary, "CANARY_WEIGHT=0", "CANARY_MIRROR_PERCENT=100", "CANARY_MIRROR_METHODS=GET,POST"))
	post := func(n int) {
		resp, err := client.Post(in.traffic+"/upload", "application/octet-stream", bytes.NewReader(bytes.Repeat([]byte("x"), n)))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || strings.TrimSpace(string(b)) != "stable" {
			t.Fatalf("POST of %d bytes: %d %q", n, resp.StatusCode, b)
		}
	}
	post(1 << 20)
	post(1 << 10)
	post(64 << 10)
	deadline := time.Now().Add(10 * time.Second)
	for {
		mu.Lock()
		n := len(got)
		mu.Unlock()
		if n >= 2 || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	slices.Sort(got)
	if want := []string{"POST 1024 1", "POST 65536 1"}; !slices.Equal(got, want) {
		t.Errorf("the canary got %q; want %q (the 1 MiB POST not copied)", got, want)
	}
	if v, _ := in.metricValue("canary_mirror_skipped_total"); v != 1 {
		t.Errorf("canary_mirror_skipped_total = %v; want 1", v)
	}
}

// A canary that hangs: 10,000 requests, each due a copy, are answered, at
// most 64 copies exist at once, the rest are dropped and counted, and the
// process's memory stays bounded.
func TestE2EMirrorMemoryBoundedWhenCanaryHangs(t *testing.T) {
	stable := newBackend(t, "stable", nil)
	release := make(chan struct{})
	canary := newBackend(t, "canary", func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	t.Cleanup(func() { close(release) }) // before the canary's Close, which waits for its handlers
	in := start(t, testEnv(t, stable, canary, "CANARY_WEIGHT=0", "CANARY_MIRROR_PERCENT=100"))
	in.send(200)
	rss0, _ := in.metricValue("process_resident_memory_bytes")
	const n = 10000
	codes := in.send(n)
	if codes[200] != n {
		t.Fatalf("clients got %v; want %d answers 200", codes, n)
	}
	inFlight, _ := in.metricValue("canary_mirror_in_flight")
	dropped, _ := in.metricValue("canary_mirror_dropped_total")
	rss1, _ := in.metricValue("process_resident_memory_bytes")
	t.Logf("after %d requests to a hanging canary: %v copies in flight, %v dropped, RSS %.1f MB → %.1f MB",
		n, inFlight, dropped, rss0/1e6, rss1/1e6)
	if inFlight > 64 || inFlight < 1 {
		t.Errorf("canary_mirror_in_flight = %v; want 1-64", inFlight)
	}
	if dropped < n+200-64 {
		t.Errorf("canary_mirror_dropped_total = %v; want at least %d", dropped, n+200-64)
	}
	if hits := canary.hits.Load(); hits > 64 {
		t.Errorf("the hanging canary holds %d copies; want at most 64", hits)
	}
	// 64 copies of a small request are a few hundred KB; a copy per
	// request (10,000 goroutines and connections) would be far more.
	if rss1-rss0 > 48<<20 {
		t.Errorf("RSS grew by %.1f MB over %d requests; want under 48 MB", (rss1-rss0)/1e6, n)
	}
}

// The sticky cookie is Secure when the client came over TLS: to canaryd
// (HTTP/1.1 and HTTP/2), or to a trusted proxy that says so; its Max-Age is
// CANARY_STICKY_MAX_AGE.
func TestE2EStickyCookieSecureBehindTLS(t *testing.T) {
	stable, canary := newBackend(t, "stable", nil), newBackend(t, "canary", nil)
	cookieVia := func(c *http.Client, url string, header ...string) *http.Cookie {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, url, nil)
		for i := 0; i+1 < len(header); i += 2 {
			req.Header.Set(header[i], header[i+1])
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		for _, ck := range resp.Cookies() {
			if ck.Name == "cid" {
				return ck
			}
		}
		t.Fatalf("%s %v: no cid cookie in %q", url, header, resp.Header["Set-Cookie"])
		return nil
	}
	env := testEnv(t, stable, canary, "CANARY_STICKY_KEY=cookie:cid", "CANARY_STICKY_SET_COOKIE=true", "CANARY_STICKY_MAX_AGE=2h",
		"CANARY_TRUSTED_PROXIES=127.0.0.1")
	tlsIn := start(t, tlsEnv(t, env))
	for _, h2 := range []bool{false, true} {
		c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, ForceAttemptHTTP2: h2}}
		if ck := cookieVia(c, tlsIn.traffic+"/"); !ck.Secure || ck.MaxAge != 7200 || !ck.HttpOnly {
			t.Errorf("over TLS (HTTP/2 %v): Secure %v, Max-Age %d, HttpOnly %v; want Secure, 7200, HttpOnly", h2, ck.Secure, ck.MaxAge, ck.HttpOnly)
		}
	}
	plain := start(t, env)
	if ck := cookieVia(client, plain.traffic+"/"); ck.Secure {
		t.Error("over plain HTTP the cookie is Secure")
	}
	if ck := cookieVia(client, plain.traffic+"/", "X-Forwarded-Proto", "https"); !ck.Secure {
		t.Error("behind a trusted proxy that terminated TLS the cookie is not Secure")
	}
}
