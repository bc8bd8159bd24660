// Command canaryd is a front-door reverse proxy for canary releases: it sends
// a weighted share of requests to the canary, measures every request, judges
// the canary against its SLOs and rolls it back the moment it breaches them.
//
// Usage:
//
//	canaryd [serve]        serve (configuration from CANARY_* variables)
//	canaryd demo           a self-contained demo with built-in backends and traffic
//	canaryd check          ask a running canaryd whether the canary is OK; --wait blocks for a verdict
//	canaryd rollout VERB   steer a running canaryd: status, weight N, promote, pause, resume,
//	                       rollback, reset, start RELEASE, finish
//	canaryd verify [MANIFEST [ROOT]]
//	                       verify release files against a sha256sum manifest
//	canaryd version        print the version
//
// `canaryd --help` and `canaryd COMMAND -h` print the details; the README
// has the same in "Running it" and "Configuration".
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
)

// Exit statuses; exitStatuses describes them for the help and the README.
const (
	exitOK      = 0
	exitFail    = 1
	exitConfig  = 2
	exitNoReply = 3
	exitNotYet  = 4
)

// exitStatuses is the one description of the exit statuses: `canaryd --help`
// prints it and the README's table repeats it (TestREADMEExitStatuses).
var exitStatuses = []struct {
	code    int
	meaning string
}{
	{exitOK, "success: the canary is OK (check), the command was applied (rollout), every file matches (verify), or canaryd stopped cleanly"},
	{exitFail, "not OK: the canary is rolled back (check), the command is not possible in the current state (rollout), a file does not match (verify), or serving failed"},
	{exitConfig, "usage or configuration: a bad or unknown variable, flag or argument, a value unusable at start (a port in use), or a token canaryd refused (401) or whose role does not allow the command (403: a read token steering)"},
	{exitNoReply, "no usable answer from the running canaryd (check, rollout): unreachable, timed out, or not canaryd's answer"},
	{exitNotYet, "not yet: check --wait ran out of time before a verdict, or check --strict found hold"},
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	code := run(ctx, os.Args[1:], os.Environ(), os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// cli is one invocation's environment and output, passed in so tests can
// run commands in-process.
type cli struct {
	environ        []string
	stdout, stderr io.Writer
}

// command is one subcommand.
type command struct {
	name     string
	synopsis string // the arguments after the name, for the help
	summary  string
	// run executes the command with its arguments (flags included).
	run func(ctx context.Context, c cli, args []string) int
}

// commands lists every subcommand, in the order the help shows them.
func commands() []command {
	return []command{
		{"serve", "", "serve: the proxy, the guard and the admin API (the default command)", runServe},
		{"demo", "[-duration 3m] [-healthy 20s] [-rate 200]", "a demo on loopback: built-in backends, traffic, and a canary that breaks", runDemo},
		{"check", "[--wait DURATION [--until proceed|complete]] [--strict] [-o text|json]", "ask a running canaryd whether the canary is OK; --wait blocks until a verdict", runCheck},
		{"rollout", "status|weight N|promote|pause|resume|rollback|reset|start RELEASE [--steps PLAN]|finish [-o text|json]", "steer a running canaryd", runRollout},
		{"verify", "[MANIFEST [ROOT]]", "verify release files against a sha256sum manifest", runVerify},
		{"version", "", "print the version", runVersion},
	}
}

// run is main without the process: arguments, environment and output are
// passed in so tests can call it.
func run(ctx context.Context, args, environ []string, stdout, stderr io.Writer) int {
	c := cli{environ: environ, stdout: stdout, stderr: stderr}
	name := "serve"
	switch {
	case len(args) > 0 && (args[0] == "-version" || args[0] == "--version"):
		name, args = "version", args[1:]
	case len(args) > 0 && !strings.HasPrefix(args[0], "-"):
		name, args = args[0], args[1:]
	}
	if name == "help" {
		if len(args) == 0 {
			printHelp(stdout)
			return exitOK
		}
		name, args = args[0], []string{"-h"}
	}
	for _, cmd := range commands() {
		if cmd.name == name {
			return cmd.run(ctx, c, args)
		}
	}
	fmt.Fprintf(stderr, "canaryd: unknown command %q; canaryd --help lists them\n", name)
	return exitConfig
}

// parseFlags parses a command's arguments, flags anywhere among them (as in
// `canaryd rollout weight 25 -o json`; `--` ends the flags). -h and --help
// print the command's help to stdout. When ok is false the caller returns
// code at once.
func parseFlags(fs *flag.FlagSet, c cli, args []string, help func(io.Writer)) (positional []string, code int, ok bool) {
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	for {
		err := fs.Parse(args)
		if errors.Is(err, flag.ErrHelp) {
			help(c.stdout)
			return nil, exitOK, false
		}
		if err != nil {
			return nil, usageExit(c, fs.Name(), "%v", err), false
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return positional, exitOK, true
		}
		if consumed := len(args) - len(rest); consumed > 0 && args[consumed-1] == "--" {
			return append(positional, rest...), exitOK, true
		}
		positional = append(positional, rest[0])
		args = rest[1:]
	}
}

// configExit prints a configuration error on one line and returns exit 2.
func configExit(stderr io.Writer, err error) int {
	fmt.Fprintf(stderr, "canaryd: %v\n", err)
	return exitConfig
}

// usageExit prints a usage error of a command on one line and returns exit 2.
func usageExit(c cli, name, format string, args ...any) int {
	fmt.Fprintf(c.stderr, "canaryd %s: %s; canaryd %s -h shows the usage\n", name, fmt.Sprintf(format, args...), name)
	return exitConfig
}

func runVersion(_ context.Context, c cli, args []string) int {
	fs := flag.NewFlagSet("version", flag.ContinueOnError)
	rest, code, ok := parseFlags(fs, c, args, func(w io.Writer) { printCommandHelp(w, "version", fs, nil) })
	if !ok {
		return code
	}
	if len(rest) > 0 {
		return usageExit(c, "version", "unexpected argument %q", rest[0])
	}
	fmt.Fprintln(c.stdout, "canaryd", buildVersion())
	return exitOK
}
