package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

const demoToken = "demo-token-0123456789abcdef"

const demoAbout = `Starts a stable and a canary backend on loopback, canaryd in front of them
(traffic 127.0.0.1:8080, admin 127.0.0.1:8000) and a traffic generator. The
canary is healthy for -healthy, then fails one request in five and slows
down; the guard rolls it back on screen. It stops after -duration or on
Ctrl-C. CANARY_* variables tune it (CANARY_LISTEN, CANARY_ADMIN_LISTEN when
the ports are taken), except those that would point it at a real
deployment (backends, token, state file).`

// runDemo starts two built-in backends, canaryd in front of them and a
// bounded traffic generator, all on loopback. The canary is healthy for its
// first -healthy period, then starts failing and slowing down; the guard
// rolls it back on screen. It stops after -duration or on Ctrl-C.
func runDemo(ctx context.Context, c cli, args []string) int {
	stdout, stderr, environ := c.stdout, c.stderr, c.environ
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	duration := fs.Duration("duration", 3*time.Minute, "how long the demo runs")
	healthy := fs.Duration("healthy", 20*time.Second, "how long the canary stays healthy")
	rate := fs.Int("rate", 200, "requests per second of generated traffic")
	rest, code, ok := parseFlags(fs, c, args, func(w io.Writer) { printCommandHelp(w, "demo", fs, nil, demoAbout) })
	if !ok {
		return code
	}
	if len(rest) > 0 {
		return usageExit(c, "demo", "unexpected argument %q", rest[0])
	}
	if *duration <= 0 || *rate <= 0 || *rate > 5000 {
		return usageExit(c, "demo", "-duration must be positive and -rate between 1 and 5000")
	}
	ctx, cancel := context.WithTimeout(ctx, *duration)
	defer cancel()

	start := time.Now()
	stable, err := demoBackend("stable", func() (int, time.Duration) {
		return http.StatusOK, jitter(8 * time.Millisecond)
	})
	if err != nil {
		fmt.Fprintf(stderr, "canaryd demo: %v\n", err)
		return exitFail
	}
	canary, err := demoBackend("canary", func() (int, time.Duration) {
		if time.Since(start) < *healthy {
			return http.StatusOK, jitter(10 * time.Millisecond)
		}
		// Broken release: one request in five fails, a third are slow.
		code := http.StatusOK
		if rand.IntN(5) == 0 {
			code = http.StatusInternalServerError
		}
		if rand.IntN(3) == 0 {
			return code, 700*time.Millisecond + jitter(200*time.Millisecond)
		}
		return code, jitter(15 * time.Millisecond)
	})
	if err != nil {
		stable.ln.Close()
		fmt.Fprintf(stderr, "canaryd demo: %v\n", err)
		return exitFail
	}
	// The backends serve until canaryd has drained, so that its last
	// requests still get answers.
	backends := newGroup(context.WithoutCancel(ctx))
	backends.Go("stable backend", stable.Run)
	backends.Go("canary backend", canary.Run)
	defer func() {
		backends.Stop()
		if err := backends.Wait(); err != nil {
			fmt.Fprintf(stderr, "canaryd demo: %v\n", err)
		}
	}()

	dir, err := os.MkdirTemp("", "canaryd-demo-")
	if err != nil {
		fmt.Fprintf(stderr, "canaryd demo: %v\n", err)
		return exitFail
	}
	defer os.RemoveAll(dir)

	// The demo's own defaults; CANARY_* variables in the environment win
	// (say CANARY_LISTEN when port 8080 is taken), except those that would
	// point the demo's traffic, token or state at a real deployment.
	demoEnv := []string{
		"CANARY_STABLE_URL=http://" + stable.Addr().String(),
		"CANARY_CANARY_URL=http://" + canary.Addr().String(),
		"CANARY_TOKEN=" + demoToken,
		"CANARY_LISTEN=127.0.0.1:8080",
		"CANARY_ADMIN_LISTEN=127.0.0.1:8000",
		"CANARY_STEPS=5@10s,25@30s,50@30s,100@30s",
		"CANARY_RELEASE=demo-" + start.Format("150405"),
		"CANARY_SLO_WINDOW=30s",
		"CANARY_SLO_MIN_REQUESTS=50",
		"CANARY_HEALTH_PATH=/healthz",
		"CANARY_HEALTH_INTERVAL=2s",
		"CANARY_STATE_FILE=" + filepath.Join(dir, "state.json"),
		"CANARY_LOG_FORMAT=console",
		"CANARY_SHUTDOWN_TIMEOUT=5s",
	}
	for _, kv := range environ {
		name, _, _ := strings.Cut(kv, "=")
		switch name {
		case "CANARY_STABLE_URL", "CANARY_CANARY_URL", "CANARY_TOKEN", "CANARY_TOKEN_FILE", "CANARY_STATE_FILE":
			continue
		}
		if strings.HasPrefix(name, "CANARY_") {
			demoEnv = append(demoEnv, kv)
		}
	}
	cfg, err := loadConfig(demoEnv)
	if err != nil {
		return configExit(stderr, err)
	}
	log := newLogger(cfg, stderr)

	addrs := make(chan [2]net.Addr, 1)
	serveErr := make(chan error, 1)
	go func() {
		serveErr <- serve(ctx, cfg, log, serveOptions{ready: func(traffic, admin net.Addr) { addrs <- [2]net.Addr{traffic, admin} }})
	}()
	var trafficURL, adminURL string
	select {
	case a := <-addrs:
		trafficURL, adminURL = "http://"+a[0].String(), "http://"+a[1].String()
	case err := <-serveErr:
		if ce, ok := errors.AsType[*configError](err); ok {
			return configExit(stderr, ce) // say, port 8080 taken: CANARY_LISTEN
		}
		fmt.Fprintf(stderr, "canaryd demo: %v\n", err)
		return exitFail
	}

	fmt.Fprintf(stdout, `
canaryd demo: stable and canary backends on loopback, %d requests/s of traffic for %s.
The canary is healthy for %s, then fails 1 request in 5 and slows down; watch the guard roll it back.

  traffic:   %s
  token:     %s
  try:       curl -s -H "Authorization: Bearer %s" %s/canary_check | jq .
             curl -s -H "Authorization: Bearer %s" %s/dashboard/canary_overview | jq .history
             open %s/dashboard (paste the token)
  stop:      Ctrl-C

`, *rate, *duration, *healthy, trafficURL, demoToken, demoToken, adminURL, demoToken, adminURL, adminURL)

	var sent, failed atomic.Uint64
	var wg sync.WaitGroup
	wg.Go(func() { generate(ctx, trafficURL, *rate, &sent, &failed) })
	wg.Go(func() { report(ctx, stdout, adminURL, start, &sent, &failed) })
	err = <-serveErr
	wg.Wait()
	fmt.Fprintf(stdout, "canaryd demo: done after %s: %d requests sent, %d failed at the client.\n",
		time.Since(start).Round(time.Second), sent.Load(), failed.Load())
	if err != nil {
		fmt.Fprintf(stderr, "canaryd demo: %v\n", err)
		return exitFail
	}
	return exitOK
}

// demoServer is a built-in backend on a loopback port.
type demoServer struct {
	srv *http.Server
	ln  net.Listener
}

func (d *demoServer) Addr() net.Addr { return d.ln.Addr() }

// Run serves until ctx ends.
func (d *demoServer) Run(ctx context.Context) error {
	stop := context.AfterFunc(ctx, func() { d.srv.Close() })
	defer stop()
	if err := d.srv.Serve(d.ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

func demoBackend(name string, behave func() (int, time.Duration)) (*demoServer, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("%s backend: %w", name, err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok\n") })
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		code, delay := behave()
		select {
		case <-time.After(delay):
		case <-r.Context().Done():
			return
		}
		w.Header().Set("Content-Type", "text/plain")
		w.WriteHeader(code)
		fmt.Fprintf(w, "%s answered %s %s\n", name, r.Method, r.URL.Path)
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	return &demoServer{srv: srv, ln: ln}, nil
}

func jitter(d time.Duration) time.Duration { return d/2 + rand.N(d) }

// generate sends rate requests per second to target until ctx ends, from a
// bounded pool of workers on loopback.
func generate(ctx context.Context, target string, rate int, sent, failed *atomic.Uint64) {
	client := &http.Client{
		Timeout:   10 * time.Second,
		Transport: &http.Transport{MaxIdleConnsPerHost: 64},
	}
	defer client.CloseIdleConnections()
	jobs := make(chan string)
	var wg sync.WaitGroup
	for range 64 {
		wg.Go(func() {
			for path := range jobs {
				req, _ := http.NewRequestWithContext(ctx, http.MethodGet, target+path, nil)
				resp, err := client.Do(req)
				sent.Add(1)
				if err != nil {
					if ctx.Err() == nil {
						failed.Add(1)
					}
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode >= 500 {
					failed.Add(1)
				}
			}
		})
	}
	tick := time.NewTicker(time.Second / time.Duration(rate))
	defer tick.Stop()
	paths := []string{"/", "/api/items", "/api/items/42", "/search?q=canary"}
	for i := 0; ; i++ {
		select {
		case <-ctx.Done():
			close(jobs)
			wg.Wait()
			return
		case <-tick.C:
		}
		select {
		case jobs <- paths[i%len(paths)]:
		default: // every worker busy: skip rather than pile up
		}
	}
}

// report prints one status line every two seconds from the admin API, as an
// operator's script would read it.
func report(ctx context.Context, w io.Writer, adminURL string, start time.Time, sent, failed *atomic.Uint64) {
	client := &http.Client{Timeout: 2 * time.Second}
	tick := time.NewTicker(2 * time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, adminURL+"/canary_check", nil)
		req.Header.Set("Authorization", "Bearer "+demoToken)
		resp, err := client.Do(req)
		if err != nil {
			if !errors.Is(err, context.Canceled) && ctx.Err() == nil {
				fmt.Fprintf(w, "  [%4.0fs] admin API: %v\n", time.Since(start).Seconds(), err)
			}
			continue
		}
		var a checkAnswer
		err = json.NewDecoder(resp.Body).Decode(&a)
		resp.Body.Close()
		if err != nil || a.CanaryOK == nil {
			continue
		}
		fmt.Fprintf(w, "  [%4.0fs] weight %5.1f%%  %-11s  %-20s canary: %5d req %5.1f%% err p95 %6.1fms   sent %d, client errors %d\n",
			time.Since(start).Seconds(), a.Weight, a.State, a.Recommendation,
			a.Canary.Requests, a.Canary.ErrorRate*100, a.Canary.P95Ms, sent.Load(), failed.Load())
	}
}
