// Command canaryd is a front-door reverse proxy for canary releases: it sends
// a weighted share of requests to the canary, measures every request, judges
// the canary against its SLOs and rolls it back the moment it breaches them.
//
// Usage:
//
//	canaryd            serve (configuration from CANARY_* variables)
//	canaryd demo       a self-contained demo with built-in backends and traffic
//	canaryd check      ask a running canaryd whether the canary is OK (exit 0 if so)
//	canaryd verify [MANIFEST [ROOT]]
//	                   verify release files against a sha256sum manifest
//	canaryd version    print the version
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"github.com/canaryd/canaryd/guard"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

// Exit statuses.
const (
	exitOK      = 0
	exitFail    = 1 // the canary is not OK, verification failed, or serving failed
	exitConfig  = 2 // a bad environment variable or usage
	exitNoReply = 3 // canaryd check could not get an answer
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	code := run(ctx, os.Args[1:], os.Environ(), os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run is main without the process: arguments, environment and output are
// passed in so tests can call it.
func run(ctx context.Context, args, environ []string, stdout, stderr io.Writer) int {
	cmd := "serve"
	if len(args) > 0 {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "serve":
		return runServe(ctx, environ, stderr)
	case "demo":
		return runDemo(ctx, args, environ, stdout, stderr)
	case "check":
		return runCheck(ctx, environ, stdout, stderr)
	case "verify":
		return runVerify(ctx, args, environ, stdout, stderr)
	case "version", "-version", "--version":
		fmt.Fprintln(stdout, "canaryd", version)
		return exitOK
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usage)
		return exitOK
	}
	fmt.Fprintf(stderr, "canaryd: unknown command %q\n%s", cmd, usage)
	return exitConfig
}

const usage = `usage:
  canaryd                            serve (configured by CANARY_* variables)
  canaryd demo [-duration 3m]        run a demo with built-in backends and traffic
  canaryd check                      exit 0 if a running canaryd says canary_ok
  canaryd verify [MANIFEST [ROOT]]   verify files against a sha256sum manifest
  canaryd version                    print the version
`

// configExit prints a configuration error on one line and returns exit 2.
func configExit(stderr io.Writer, err error) int {
	fmt.Fprintf(stderr, "canaryd: %v\n", err)
	return exitConfig
}

func runServe(ctx context.Context, environ []string, stderr io.Writer) int {
	c, err := loadConfig(environ)
	if err != nil {
		return configExit(stderr, err)
	}
	log := newLogger(c, stderr)
	err = serve(ctx, c, log, nil)
	var ce *configError
	switch {
	case errors.As(err, &ce):
		return configExit(stderr, err)
	case errors.Is(err, guard.ErrNotPersisted):
		// Stopped with a change in force that is not saved: say what is
		// lost, plainly.
		fmt.Fprintf(stderr, "canaryd: %v\n", err)
		return exitFail
	case err != nil:
		log.Error().Err(err).Msg("canaryd stopped")
		return exitFail
	}
	return exitOK
}

func newLogger(c *config, w io.Writer) zerolog.Logger {
	if c.LogFormat == "console" {
		w = zerolog.ConsoleWriter{Out: w, TimeFormat: time.TimeOnly}
	}
	return zerolog.New(w).Level(c.level).With().Timestamp().Logger()
}
