package main

import (
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

func soakDuration(t *testing.T) time.Duration {
	if v := os.Getenv("CANARY_SOAK_DURATION"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("CANARY_SOAK_DURATION: %v", err)
		}
		return d
	}
	return 6 * time.Second
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

// TestSoak: a fixed request rate for a fixed time while the weight changes
// every second, the canary backend is killed and restarted, and rollbacks are
// triggered and reset. `make soak` runs it longer.
func TestSoak(t *testing.T) {
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
	if answered.Load() < int64(float64(rate)*duration.Seconds()*0.8) {
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
