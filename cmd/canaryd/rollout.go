package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"strings"
	"time"
)

// rolloutVerb is one verb of canaryd rollout: the admin API call it makes.
type rolloutVerb struct {
	name    string
	arg     string // the positional argument's name, "" for none
	summary string
	method  string
	path    string
}

// rolloutVerbs lists canaryd rollout's verbs; each answers with the
// rollout overview (GET /dashboard/canary_overview's body).
var rolloutVerbs = []rolloutVerb{
	{"status", "", "show the rollout: release, state, weight, plan, last change", http.MethodGet, "/dashboard/canary_overview"},
	{"weight", "N", "set the canary weight to N percent (pauses the plan)", http.MethodPost, "/rollout/weight"},
	{"promote", "", "advance to the next step (or 100%)", http.MethodPost, "/rollout/promote"},
	{"pause", "", "hold the plan at the current step", http.MethodPost, "/rollout/pause"},
	{"resume", "", "continue the plan", http.MethodPost, "/rollout/resume"},
	{"rollback", "", "weight 0 now, sticky until reset, finish or a new release", http.MethodPost, "/rollout/rollback"},
	{"reset", "", "clear a rollback and start the plan again", http.MethodPost, "/rollout/reset"},
	{"start", "RELEASE", "start a new release's rollout (--steps for its plan)", http.MethodPost, "/rollout/start"},
	{"finish", "", "end the rollout: the release is done", http.MethodPost, "/rollout/finish"},
}

func rolloutAbout() string {
	var b strings.Builder
	b.WriteString("Verbs (each prints the rollout afterwards; -o json prints the admin API's answer):\n")
	for _, v := range rolloutVerbs {
		name := v.name
		if v.arg != "" {
			name += " " + v.arg
		}
		fmt.Fprintf(&b, "  %-16s %s\n", name, v.summary)
	}
	b.WriteString(`
Exit status: 0 applied (status: answered); 1 not possible in the current state
(409, e.g. promote while rolled back); 2 bad usage, or a token or request
canaryd refused, or a read token (every verb but status needs an operate
token); 3 no usable answer.`)
	return b.String()
}

// runRollout steers a running canaryd through its admin API.
func runRollout(ctx context.Context, c cli, args []string) int {
	fs := flag.NewFlagSet("rollout", flag.ContinueOnError)
	output := fs.String("o", "text", "output: text (a summary) or json (the admin API's answer)")
	steps := fs.String("steps", "", "with start: the new release's plan, e.g. 5@15m,25@30m,100@1h (default: the plan canaryd runs)")
	rest, code, ok := parseFlags(fs, c, args, func(w io.Writer) {
		printCommandHelp(w, "rollout", fs, describedVariables(reflect.TypeFor[ClientConfig]()), rolloutAbout())
	})
	if !ok {
		return code
	}
	if *output != "text" && *output != "json" {
		return usageExit(c, "rollout", "-o %q must be text or json", *output)
	}
	if len(rest) == 0 {
		return usageExit(c, "rollout", "a verb is required (status, weight N, promote, pause, resume, rollback, reset, start RELEASE, finish)")
	}
	var verb *rolloutVerb
	for i := range rolloutVerbs {
		if rolloutVerbs[i].name == rest[0] {
			verb = &rolloutVerbs[i]
		}
	}
	if verb == nil {
		return usageExit(c, "rollout", "unknown verb %q", rest[0])
	}
	args = rest[1:]
	want := 0
	if verb.arg != "" {
		want = 1
	}
	if len(args) != want {
		if want == 0 {
			return usageExit(c, "rollout", "%s takes no argument", verb.name)
		}
		return usageExit(c, "rollout", "%s takes one argument, %s", verb.name, verb.arg)
	}
	if *steps != "" && verb.name != "start" {
		return usageExit(c, "rollout", "--steps goes with start")
	}
	var body []byte
	switch verb.name {
	case "weight":
		if !isJSONNumber(args[0]) {
			return usageExit(c, "rollout", "weight %q must be a number of percent, e.g. 25 or 2.5", args[0])
		}
		body = []byte(`{"weight": ` + args[0] + `}`)
	case "start":
		if args[0] == "" {
			return usageExit(c, "rollout", "start needs a release id")
		}
		start := struct {
			Release string `json:"release"`
			Steps   string `json:"steps,omitempty"`
		}{args[0], *steps}
		body, _ = json.Marshal(start)
	}
	client, err := newAdminClient(c.environ)
	if err != nil {
		return configExit(c.stderr, err)
	}
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	raw, err := client.call(ctx, verb.method, verb.path, body)
	if err != nil {
		fmt.Fprintf(c.stderr, "canaryd rollout %s: %v\n", verb.name, err)
		return exitFor(err)
	}
	var ov overviewAnswer
	if err := json.Unmarshal(raw, &ov); err != nil || ov.State == "" {
		fmt.Fprintf(c.stderr, "canaryd rollout %s: %s%s did not answer with a rollout overview\n", verb.name, client.base, verb.path)
		return exitNoReply
	}
	if *output == "json" {
		c.stdout.Write(raw)
		if !bytes.HasSuffix(raw, []byte("\n")) {
			fmt.Fprintln(c.stdout)
		}
		return exitOK
	}
	ov.describe(c.stdout)
	return exitOK
}

// isJSONNumber reports whether s is exactly one JSON number; canaryd's
// admin API checks its range and precision.
func isJSONNumber(s string) bool {
	dec := json.NewDecoder(strings.NewReader(s))
	dec.UseNumber()
	tok, err := dec.Token()
	if _, ok := tok.(json.Number); err != nil || !ok {
		return false
	}
	_, err = dec.Token()
	return err == io.EOF
}

// overviewAnswer is the part of the rollout overview the summary shows.
type overviewAnswer struct {
	RollbackReason string  `json:"rollback_reason"`
	Weight         float64 `json:"weight"`
	State          string  `json:"state"`
	Recommendation string  `json:"recommendation"`
	Release        string  `json:"release"`
	Plan           []struct {
		Weight    float64 `json:"weight"`
		Observe   string  `json:"observe"`
		Status    string  `json:"status"`
		Remaining string  `json:"remaining"`
	} `json:"plan"`
	History []struct {
		At        time.Time `json:"time"`
		From      float64   `json:"from"`
		To        float64   `json:"to"`
		FromState string    `json:"from_state"`
		ToState   string    `json:"to_state"`
		Reason    string    `json:"reason"`
		Who       string    `json:"who"`
	} `json:"history"`
	Rollback *struct {
		At     time.Time `json:"time"`
		Reason string    `json:"reason"`
		Who    string    `json:"who"`
		Canary struct {
			Requests  uint64  `json:"requests"`
			Errors    uint64  `json:"errors"`
			ErrorRate float64 `json:"error_rate"`
			P95Ms     float64 `json:"p95_ms"`
		} `json:"canary"`
	} `json:"rollback"`
}

// describe writes the overview for a person: one line of state, the plan,
// the rollback when there is one, the last change.
func (o overviewAnswer) describe(w io.Writer) {
	release := o.Release
	if release == "" {
		release = "(no release id)"
	}
	fmt.Fprintf(w, "release %s: %s at weight %g%%, recommendation %s\n", release, o.State, o.Weight, o.Recommendation)
	if len(o.Plan) > 0 {
		steps := make([]string, len(o.Plan))
		for i, s := range o.Plan {
			steps[i] = fmt.Sprintf("%g%% for %s %s", s.Weight, s.Observe, s.Status)
			if s.Remaining != "" {
				steps[i] += " (" + s.Remaining + " left)"
			}
		}
		fmt.Fprintf(w, "plan: %s\n", strings.Join(steps, " → "))
	}
	if rb := o.Rollback; rb != nil {
		fmt.Fprintf(w, "rolled back: %s by %s at %s (canary: %d requests, %d errors, %.2f%% errors, p95 %.1fms); reset, finish or start a new release to clear it\n",
			rb.Reason, rb.Who, rb.At.UTC().Format(time.RFC3339), rb.Canary.Requests, rb.Canary.Errors, rb.Canary.ErrorRate*100, rb.Canary.P95Ms)
	}
	if n := len(o.History); n > 0 {
		h := o.History[n-1]
		fmt.Fprintf(w, "last change: %s %g%% → %g%%, %s → %s (%s) by %s\n",
			h.At.UTC().Format(time.RFC3339), h.From, h.To, h.FromState, h.ToState, h.Reason, h.Who)
	}
}
