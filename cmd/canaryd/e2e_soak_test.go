package main

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// restartable is a backend that can be killed and brought back on the same
// loopback port.
type restartable struct {
	addr    string
	handler http.Handler
	mu      sync.Mutex // protects srv
	srv     *http.Server
}

func (r *restartable) up(t *testing.T) {
	r.mu.Lock()
	running := r.srv != nil
	r.mu.Unlock()
	if running {
		return
	}
	var ln net.Listener
	var err error
	for range 50 { // the port may linger briefly after a kill
		if ln, err = net.Listen("tcp", r.addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("restarting the canary on %s: %v", r.addr, err)
	}
	r.addr = ln.Addr().String()
	srv := &http.Server{Handler: r.handler}
	r.mu.Lock()
	r.srv = srv
	r.mu.Unlock()
	go srv.Serve(ln)
}

func (r *restartable) down() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.srv != nil {
		r.srv.Close() // kills in-flight requests too
		r.srv = nil
	}
}

// soakHandler answers a random-length body with its checksum in a header.
func soakHandler(name string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" {
			io.WriteString(w, "ok")
			return
		}
		n, _ := strconv.Atoi(r.URL.Query().Get("n"))
		body := bytes.Repeat([]byte(name[:1]), n)
		sum := sha256.Sum256(body)
		w.Header().Set("X-Sum", hex.EncodeToString(sum[:]))
		w.Header().Set("X-Backend", name)
		w.Write(body)
	})
}

// soakDuration is how long each phase of the soak runs: CANARY_SOAK_DURATION
// (make soak), or 4s (the brief run inside make test).
func soakDuration(t *testing.T) time.Duration {
	if v := os.Getenv("CANARY_SOAK_DURATION"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("CANARY_SOAK_DURATION: %v", err)
		}
		return d
	}
	return 4 * time.Second
}

// metricsOf scrapes the admin /metrics into name{labels} → value.
func (in *instance) metricsOf() map[string]float64 {
	_, body := in.adminGet("/metrics", "")
	m := map[string]float64{}
	for _, line := range strings.Split(string(body), "\n") {
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err == nil {
			m[line[:i]] = v
		}
	}
	return m
}

func sumMetric(m map[string]float64, prefix string, must ...string) float64 {
	var total float64
next:
	for k, v := range m {
		if !strings.HasPrefix(k, prefix) {
			continue
		}
		for _, s := range must {
			if !strings.Contains(k, s) {
				continue next
			}
		}
		total += v
	}
	return total
}

// TestSoak runs canaryd under load, each phase for soakDuration: chaos
// (weight changes, canary kills, rollbacks) and hostile traffic mixed with
// well-behaved traffic. `make soak` runs it longer.
func TestSoak(t *testing.T) {
	t.Run("chaos", soakChaos)
	t.Run("hostile", soakHostile)
}

// soakChaos: a fixed request rate while the weight changes every second,
// the canary backend is killed and restarted, and rollbacks are triggered
// and reset.
func soakChaos(t *testing.T) {
	duration := soakDuration(t)
	const rate = 400 // requests per second
	const workers = 32
	stable := newBackend(t, "stable", soakHandler("stable").ServeHTTP)
	canary := &restartable{addr: "127.0.0.1:0", handler: soakHandler("canary")}
	canary.up(t)
	t.Cleanup(canary.down)
	env := with(testEnv(t, stable, stable), "CANARY_CANARY_URL=http://"+canary.addr,
		"CANARY_WEIGHT=20", "CANARY_JUDGE=window", "CANARY_SLO_MIN_REQUESTS=1000000",
		"CANARY_HEALTH_PATH=/healthz", "CANARY_HEALTH_INTERVAL=500ms", "CANARY_UPSTREAM_TIMEOUT=5s")
	in := start(t, env)
	time.Sleep(300 * time.Millisecond)
	base := in.metricsOf()
	baseGoroutines := base["go_goroutines"]

	var sent, answered, badBody atomic.Int64
	var mu sync.Mutex
	failures := map[string]int{}
	fail := func(cause string) {
		mu.Lock()
		failures[cause]++
		mu.Unlock()
	}
	tr := &http.Transport{MaxIdleConnsPerHost: 32}
	c := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	stop := make(chan struct{})
	var load sync.WaitGroup
	jobs := make(chan int, 64)
	for range workers {
		load.Go(func() {
			for n := range jobs {
				sent.Add(1)
				resp, err := c.Get(fmt.Sprintf("%s/soak?n=%d", in.traffic, n))
				if err != nil {
					fail("transport: " + strings.SplitN(err.Error(), ":", 2)[0])
					continue
				}
				body, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				switch {
				case err != nil:
					fail("body read")
				case resp.StatusCode != 200:
					fail(fmt.Sprintf("status %d", resp.StatusCode))
				default:
					answered.Add(1)
					sum := sha256.Sum256(body)
					if resp.Header.Get("X-Sum") != hex.EncodeToString(sum[:]) || len(body) != n {
						badBody.Add(1)
					}
				}
			}
		})
	}
	load.Go(func() {
		tick := time.NewTicker(time.Second / rate)
		defer tick.Stop()
		defer close(jobs)
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				select {
				case jobs <- rand.IntN(4096):
				default:
					fail("client saturated (not sent)")
				}
			}
		}
	})

	// Chaos: once a second change the weight; every few seconds kill or
	// restart the canary, trigger or reset a rollback.
	deadline := time.Now().Add(duration)
	for i := 0; time.Now().Before(deadline); i++ {
		time.Sleep(time.Second)
		body := fmt.Sprintf(`{"weight": %d}`, rand.IntN(101))
		req, _ := http.NewRequest("POST", in.admin+"/rollout/weight", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+testToken)
		if resp, err := client.Do(req); err == nil {
			resp.Body.Close()
		}
		switch i % 4 {
		case 0:
			canary.down()
		case 1:
			canary.up(t)
		case 2:
			in.adminPost("/rollout/rollback")
		case 3:
			in.adminPost("/rollout/reset")
		}
	}
	close(stop)
	load.Wait()
	canary.up(t)
	tr.CloseIdleConnections()

	after := in.metricsOf()
	stable5xx := sumMetric(after, "canary_requests_total{", `backend="stable"`, `code="5`)
	stableUpstreamErrs := sumMetric(after, "canary_upstream_errors_total{", `backend="stable"`)
	canaryErrors := sumMetric(after, "canary_upstream_errors_total{", `backend="canary"`) +
		sumMetric(after, "canary_requests_total{", `backend="canary"`, `code="5`)
	var failed int
	for _, n := range failures {
		failed += n
	}
	t.Logf("soak: %s at %d req/s: sent %d, answered %d, failed %d %v, bad bodies %d; canary errors counted %v",
		duration, rate, sent.Load(), answered.Load(), failed, failures, badBody.Load(), canaryErrors)
	if stable5xx != 0 || stableUpstreamErrs != 0 {
		t.Errorf("requests routed to stable failed: %v 5xx, %v upstream errors", stable5xx, stableUpstreamErrs)
	}
	if badBody.Load() != 0 {
		t.Errorf("%d answered bodies were corrupt", badBody.Load())
	}
	if float64(failed) > canaryErrors {
		t.Errorf("client-visible failures %d exceed canary errors %v: some failures were not the canary's", failed, canaryErrors)
	}
	// The load generator itself lags on a busy machine; what matters is that
	// every request sent was answered (above) and that load was sent.
	if answered.Load() < int64(float64(rate)*duration.Seconds()*0.5) {
		t.Errorf("answered only %d requests", answered.Load())
	}

	// Goroutines return to the baseline once the load stops, except for the
	// upstream keep-alive pools (two goroutines per idle connection, at most
	// one connection per client worker and backend): a leak would grow with
	// the number of requests, thousands here.
	bound := baseGoroutines + 2*2*workers + 8
	var goroutines float64
	settle := time.Now().Add(10 * time.Second)
	for {
		goroutines = in.metricsOf()["go_goroutines"]
		if goroutines <= bound || time.Now().After(settle) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	rss := after["process_resident_memory_bytes"]
	t.Logf("soak: goroutines before %v, after %v; RSS %.1f MiB", baseGoroutines, goroutines, rss/(1<<20))
	if goroutines > bound {
		t.Errorf("goroutines grew from %v to %v after the load stopped; want at most %v", baseGoroutines, goroutines, bound)
	}
	if rss > 128<<20 {
		t.Errorf("RSS %.1f MiB; want under 128 MiB", rss/(1<<20))
	}
}

// TestKill9LeavesAValidState kills canaryd with SIGKILL at random moments
// while transitions are being written; the state file is always a complete,
// valid state and a restart resumes from it.
func TestKill9LeavesAValidState(t *testing.T) {
	stable, canary := newBackend(t, "stable", nil), newBackend(t, "canary", nil)
	env := testEnv(t, stable, canary, "CANARY_RELEASE=v9", "CANARY_STEPS=5@1h,25@1h,100@1h")
	var stateFile string
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "CANARY_STATE_FILE="); ok {
			stateFile = v
		}
	}
	valid := map[string]bool{"fixed": true, "progressing": true, "paused": true, "rolled_back": true, "complete": true, "held": true}
	rounds := 8
	for round := range rounds {
		in := start(t, env)
		stopWriting := make(chan struct{})
		var writer sync.WaitGroup
		writer.Go(func() {
			paths := []string{"/rollout/pause", "/rollout/resume", "/rollout/promote", "/rollout/rollback", "/rollout/reset"}
			for i := 0; ; i++ {
				select {
				case <-stopWriting:
					return
				default:
				}
				req, _ := http.NewRequest("POST", in.admin+paths[i%len(paths)], nil)
				req.Header.Set("Authorization", "Bearer "+testToken)
				if resp, err := client.Do(req); err == nil {
					resp.Body.Close()
				} else {
					return
				}
			}
		})
		time.Sleep(time.Duration(20+rand.IntN(150)) * time.Millisecond)
		in.cmd.Process.Signal(syscall.SIGKILL)
		<-in.done
		close(stopWriting)
		writer.Wait()

		data, err := os.ReadFile(stateFile)
		if err != nil {
			t.Fatalf("round %d: state file after kill -9: %v", round, err)
		}
		var st struct {
			Release string `json:"release"`
			State   string `json:"state"`
		}
		if err := json.Unmarshal(data, &st); err != nil || st.Release != "v9" || !valid[st.State] {
			t.Fatalf("round %d: state file after kill -9 is not a valid state (%v): %.200s", round, err, data)
		}
		leftovers, _ := filepath.Glob(filepath.Join(filepath.Dir(stateFile), "*.corrupt-*"))
		if len(leftovers) != 0 {
			t.Fatalf("round %d: a restart found the state corrupt: %v", round, leftovers)
		}
	}
	// The last persisted state is what a restart resumes.
	data, _ := os.ReadFile(stateFile)
	var st struct {
		State string `json:"state"`
	}
	json.Unmarshal(data, &st)
	in := start(t, env)
	if c := in.check(); c.State != st.State {
		t.Errorf("restart resumed state %q; the file says %q", c.State, st.State)
	}
}

// hostileBackend answers well-behaved requests truthfully and misbehaves on
// the hostile paths: bytes after complete answers, bodies on HEAD answers,
// huge header blocks.
func hostileBackend(c net.Conn) {
	serveRequests(c, func(r *http.Request) bool {
		switch r.URL.Path {
		case "/poison/head":
			io.WriteString(c, paddedHead(4096, fmt.Sprintf("Content-Length: %d\r\n", len(poison)))+poison)
		case "/poison/late":
			io.WriteString(c, paddedHead(4096-len("late"), "Content-Length: 4\r\n")+"late"+poison)
		case "/huge":
			io.WriteString(c, "HTTP/1.1 200 OK\r\nX-Huge: "+strings.Repeat("h", 100<<10)+"\r\nContent-Length: 2\r\n\r\nok")
		case "/upload":
			// serveRequests drained the body; its length is the answer.
			fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len("got ")+len(r.Header.Get("X-Len")), "got "+r.Header.Get("X-Len"))
		default:
			n, _ := strconv.Atoi(r.URL.Query().Get("n"))
			body := "id=" + r.URL.Query().Get("id") + ";" + strings.Repeat(".", n)
			fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
		}
		return true
	})
}

// soakHostile mixes hostile clients (slow uploads small and large,
// malformed chunks, smuggling attempts, wrong admin tokens from the same
// address) and requests to a hostile backend's misbehaving paths (bytes
// after answers, bodies on HEAD answers, huge headers) into well-behaved
// load. Every well-behaved client checks that the answer it got is its
// own: no answer is mixed up, none fails, the healthy canary is not rolled
// back, and the right admin token is never refused.
func soakHostile(t *testing.T) {
	duration := soakDuration(t)
	stable, canary := rawServer(t, hostileBackend), rawServer(t, hostileBackend)
	in := start(t, envFor(t, stable, canary, "CANARY_WEIGHT=20", "CANARY_OVERRIDE_HEADER=X-Canary",
		"CANARY_SLO_MIN_REQUESTS=50", "CANARY_BODY_READ_TIMEOUT=1s", "CANARY_MAX_CONNS_PER_BACKEND=16"))
	time.Sleep(200 * time.Millisecond)
	baseGoroutines := in.metricsOf()["go_goroutines"]

	stop := make(chan struct{})
	stopped := func() bool {
		select {
		case <-stop:
			return true
		default:
			return false
		}
	}
	var (
		mu       sync.Mutex
		counts   = map[string]int{}
		problems = map[string]int{}
	)
	count := func(what string) { mu.Lock(); counts[what]++; mu.Unlock() }
	problem := func(what string) { mu.Lock(); problems[what]++; mu.Unlock() }
	var wg sync.WaitGroup
	hostile := func(name string, once func() bool) {
		wg.Go(func() {
			for !stopped() {
				if once() {
					count(name)
				} else {
					problem(name + ": unexpected answer")
				}
			}
		})
	}
	addr := strings.TrimPrefix(in.traffic, "http://")
	raw := func(req string, pause time.Duration, rest string) string {
		c, err := net.DialTimeout("tcp", addr, 2*time.Second)
		if err != nil {
			return ""
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		io.WriteString(c, req)
		if pause > 0 {
			time.Sleep(pause)
			io.WriteString(c, rest)
		}
		line, _ := bufio.NewReader(c).ReadString('\n')
		return line
	}
	hostile("slow small upload", func() bool {
		return strings.HasPrefix(raw("POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\nslow", 0, ""), "HTTP/1.1 408")
	})
	hostile("slow large upload", func() bool {
		return strings.HasPrefix(raw("POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 1048576\r\n\r\n"+strings.Repeat("y", 64<<10+10), 0, ""), "HTTP/1.1 408")
	})
	for _, size := range []string{"+1", "-0", "zz", "1 ;x"} {
		hostile("malformed chunk "+size, func() bool {
			return strings.HasPrefix(raw("POST /upload HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"+size+"\r\nX\r\n0\r\n\r\n", 0, ""), "HTTP/1.1 400")
		})
	}
	hostile("CL and TE", func() bool {
		return strings.HasPrefix(raw("POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 0, ""), "HTTP/1.1 400")
	})
	hostile("wrong admin token", func() bool {
		resp, _ := in.adminGet("/canary_check", "stale-token-0123456789abc")
		return resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusTooManyRequests
	})
	hostile("right admin token", func() bool {
		time.Sleep(100 * time.Millisecond)
		resp, _ := in.adminGet("/canary_check", testToken)
		return resp.StatusCode == http.StatusOK
	})
	for _, h := range []struct {
		name, method, path, want string
		status                   int
	}{
		{"HEAD with a body", http.MethodHead, "/poison/head", "", 200},
		{"bytes after the answer", http.MethodGet, "/poison/late", "late", 200},
		{"huge header (stable)", http.MethodGet, "/huge", "", 502},
	} {
		hostile(h.name, func() bool {
			req, _ := http.NewRequest(h.method, in.traffic+h.path, nil)
			req.Header.Set("X-Canary", "never") // the huge header is stable's error, not the canary's
			resp, err := client.Do(req)
			if err != nil {
				return false
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			return resp.StatusCode == h.status && (h.status != 200 || string(body) == h.want)
		})
	}

	var sent, mixed, failed atomic.Int64
	for w := range 16 {
		wg.Go(func() {
			for i := 0; !stopped(); i++ {
				sent.Add(1)
				id := fmt.Sprintf("%d-%d", w, i)
				var (
					resp *http.Response
					err  error
					want string
				)
				if i%4 == 3 {
					payload := strings.Repeat("p", 1+i%5000)
					req, _ := http.NewRequest(http.MethodPost, in.traffic+"/upload", strings.NewReader(payload))
					req.Header.Set("X-Len", strconv.Itoa(len(payload)))
					resp, err = client.Do(req)
					want = "got " + strconv.Itoa(len(payload))
				} else {
					n := i % 3000
					resp, err = client.Get(fmt.Sprintf("%s/ok?id=%s&n=%d", in.traffic, id, n))
					want = "id=" + id + ";" + strings.Repeat(".", n)
				}
				if err != nil {
					failed.Add(1)
					continue
				}
				body, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				switch {
				case err != nil || resp.StatusCode != 200:
					failed.Add(1)
				case string(body) != want:
					mixed.Add(1)
				}
			}
		})
	}
	time.Sleep(duration)
	close(stop)
	wg.Wait()

	c := in.check()
	t.Logf("soak (hostile): %s: well-behaved %d sent, %d mixed, %d failed; hostile %v; problems %v; canary: %s, %d requests, %d errors",
		duration, sent.Load(), mixed.Load(), failed.Load(), counts, problems, c.Recommendation, c.Canary.Requests, c.Canary.Errors)
	if mixed.Load() != 0 || failed.Load() != 0 {
		t.Errorf("well-behaved requests: %d got another request's answer, %d failed; want 0 and 0", mixed.Load(), failed.Load())
	}
	if len(problems) != 0 {
		t.Errorf("hostile requests answered unexpectedly: %v", problems)
	}
	if strings.HasPrefix(c.Recommendation, "rollback") || c.Canary.Errors != 0 || c.Weight != 20 {
		t.Errorf("the healthy canary: %s at weight %v with %d errors; want no rollback, no error", c.Recommendation, c.Weight, c.Canary.Errors)
	}
	client.CloseIdleConnections()
	bound := baseGoroutines + 2*2*16 + 8
	var goroutines float64
	settle := time.Now().Add(10 * time.Second)
	for {
		goroutines = in.metricsOf()["go_goroutines"]
		if goroutines <= bound || time.Now().After(settle) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	rss := in.metricsOf()["process_resident_memory_bytes"]
	t.Logf("soak (hostile): goroutines before %v, after %v; RSS %.1f MiB", baseGoroutines, goroutines, rss/(1<<20))
	if goroutines > bound {
		t.Errorf("goroutines grew from %v to %v after the load stopped; want at most %v", baseGoroutines, goroutines, bound)
	}
	if rss > 128<<20 {
		t.Errorf("RSS %.1f MiB; want under 128 MiB", rss/(1<<20))
	}
}
