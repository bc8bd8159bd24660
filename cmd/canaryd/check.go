package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"time"
)

// checkAnswer is the part of /canary_check the summary shows.
type checkAnswer struct {
	CanaryOK       *bool    `json:"canary_ok"`
	Recommendation string   `json:"recommendation"`
	Reasons        []string `json:"reasons"`
	Weight         float64  `json:"weight"`
	State          string   `json:"state"`
	Canary         struct {
		Requests  uint64  `json:"requests"`
		ErrorRate float64 `json:"error_rate"`
		P95Ms     float64 `json:"p95_ms"`
	} `json:"canary"`
}

// Recommendations the clients act on; any other one (hold, or a future
// value) while canary_ok is "not yet".
const (
	recProceed  = "proceed"
	recComplete = "complete"
)

// summary is the one-line form of a; the first reason is added unless the
// verdict is a plain proceed or complete.
func (a checkAnswer) summary() string {
	s := fmt.Sprintf("%s weight=%g%% state=%s canary_requests=%d canary_error_rate=%.2f%% canary_p95=%.1fms canary_ok=%t",
		a.Recommendation, a.Weight, a.State, a.Canary.Requests, a.Canary.ErrorRate*100, a.Canary.P95Ms, *a.CanaryOK)
	if (!*a.CanaryOK || (a.Recommendation != recProceed && a.Recommendation != recComplete)) && len(a.Reasons) > 0 {
		s += fmt.Sprintf(" reason=%q", a.Reasons[0])
	}
	return s
}

const checkAbout = `Asks a running canaryd (CANARY_ADMIN_URL) for /canary_check and prints one
line. Without --wait: exit 0 unless the canary is rolled back (1); with
--strict, hold (too little evidence yet, or paused) exits 4.

With --wait DURATION it asks every --interval, printing progress on stderr,
until the verdict is proceed or complete (exit 0; --until complete waits for
complete), a rollback (exit 1), or DURATION runs out (exit 4). A canaryd that
does not answer is retried until then (exit 3 if it never answered).

A refused token exits 2; no answer exits 3.`

// checkOptions are canaryd check's flags.
type checkOptions struct {
	wait     time.Duration
	until    string
	strict   bool
	interval time.Duration
	output   string
}

// runCheck asks a running canaryd's /canary_check once, or until a verdict
// with --wait.
func runCheck(ctx context.Context, c cli, args []string) int {
	fs := flag.NewFlagSet("check", flag.ContinueOnError)
	var o checkOptions
	fs.DurationVar(&o.wait, "wait", 0, "block until proceed/complete (exit 0), a rollback (exit 1), or this much time has passed (exit 4); 0 = ask once")
	fs.StringVar(&o.until, "until", recProceed, "with --wait: the verdict that ends the wait with exit 0: proceed (proceed or complete) or complete")
	fs.BoolVar(&o.strict, "strict", false, "without --wait: exit 4 on hold (too little evidence yet, or paused) instead of 0")
	fs.DurationVar(&o.interval, "interval", 2*time.Second, "with --wait: how often to ask")
	fs.StringVar(&o.output, "o", "text", "output: text (one line) or json (the /canary_check answer)")
	rest, code, ok := parseFlags(fs, c, args, func(w io.Writer) {
		printCommandHelp(w, "check", fs, describedVariables(reflect.TypeFor[ClientConfig]()), checkAbout)
	})
	if !ok {
		return code
	}
	switch {
	case len(rest) > 0:
		return usageExit(c, "check", "unexpected argument %q", rest[0])
	case o.wait < 0:
		return usageExit(c, "check", "--wait %v must not be negative", o.wait)
	case o.until != recProceed && o.until != recComplete:
		return usageExit(c, "check", "--until %q must be proceed or complete", o.until)
	case o.interval <= 0:
		return usageExit(c, "check", "--interval %v must be positive", o.interval)
	case o.output != "text" && o.output != "json":
		return usageExit(c, "check", "-o %q must be text or json", o.output)
	}
	client, err := newAdminClient(c.environ)
	if err != nil {
		return configExit(c.stderr, err)
	}
	if o.wait == 0 {
		a, raw, err := askCheck(ctx, client)
		if err != nil {
			fmt.Fprintf(c.stderr, "canaryd check: %v\n", err)
			return exitFor(err)
		}
		printCheck(c.stdout, o.output, a, raw)
		switch {
		case !*a.CanaryOK:
			return exitFail
		case o.strict && a.Recommendation != recProceed && a.Recommendation != recComplete:
			return exitNotYet
		}
		return exitOK
	}
	return waitCheck(ctx, c, client, o)
}

// waitCheck polls /canary_check until a verdict or until o.wait has passed.
func waitCheck(ctx context.Context, c cli, client *adminClient, o checkOptions) int {
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, o.wait)
	defer cancel()
	done := func(rec string) bool {
		return rec == recComplete || (o.until == recProceed && rec == recProceed)
	}
	var (
		last          checkAnswer
		lastRaw       []byte
		answered      bool
		lastErr       error
		lastLine      string
		lastPrinted   time.Time
		progressEvery = 30 * time.Second
		tick          = time.NewTicker(o.interval)
	)
	defer tick.Stop()
	for {
		a, raw, err := askCheck(ctx, client)
		elapsed := time.Since(start).Round(time.Second)
		switch {
		case err != nil && exitFor(err) == exitConfig:
			fmt.Fprintf(c.stderr, "canaryd check: %v\n", err)
			return exitConfig
		case err != nil && ctx.Err() == nil:
			lastErr = err
			fmt.Fprintf(c.stderr, "canaryd check: [%s] %v; asking again\n", elapsed, err)
		case err == nil:
			answered, last, lastRaw, lastErr = true, a, raw, nil
			if !*a.CanaryOK {
				printCheck(c.stdout, o.output, a, raw)
				return exitFail
			}
			if done(a.Recommendation) {
				printCheck(c.stdout, o.output, a, raw)
				return exitOK
			}
			// Progress when the verdict, state or weight changes, and every
			// 30s meanwhile.
			line := fmt.Sprintf("%s weight=%g%% state=%s", a.Recommendation, a.Weight, a.State)
			if line != lastLine || time.Since(lastPrinted) >= progressEvery {
				fmt.Fprintf(c.stderr, "canaryd check: [%s] %s; waiting for %s (%s left)\n",
					elapsed, a.summary(), o.until, (o.wait - time.Since(start)).Round(time.Second))
				lastLine, lastPrinted = line, time.Now()
			}
		}
		select {
		case <-ctx.Done():
			if !answered {
				fmt.Fprintf(c.stderr, "canaryd check: no answer within %s: %v\n", o.wait, lastErr)
				return exitNoReply
			}
			fmt.Fprintf(c.stderr, "canaryd check: no verdict within %s (waiting for %s)\n", o.wait, o.until)
			printCheck(c.stdout, o.output, last, lastRaw)
			return exitNotYet
		case <-tick.C:
		}
	}
}

// askCheck asks for /canary_check once.
func askCheck(ctx context.Context, client *adminClient) (checkAnswer, []byte, error) {
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	raw, err := client.call(ctx, http.MethodGet, "/canary_check", nil)
	if err != nil {
		return checkAnswer{}, nil, err
	}
	var a checkAnswer
	if err := json.Unmarshal(raw, &a); err != nil || a.CanaryOK == nil {
		return checkAnswer{}, nil, &callError{exitNoReply, client.base + "/canary_check did not answer with a canary check"}
	}
	return a, raw, nil
}

// printCheck prints the answer as one line (text) or as received (json).
func printCheck(w io.Writer, output string, a checkAnswer, raw []byte) {
	if output == "json" {
		w.Write(raw)
		if len(raw) > 0 && raw[len(raw)-1] != '\n' {
			fmt.Fprintln(w)
		}
		return
	}
	fmt.Fprintln(w, a.summary())
}
