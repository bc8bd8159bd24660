package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"reflect"

	"github.com/canaryd/canaryd/guard/integrity"
)

// verifyConfig is what canaryd verify reads from the environment when the
// manifest is not given as an argument.
type verifyConfig struct {
	Manifest string `env:"CANARY_INTEGRITY_MANIFEST"`
	Root     string `env:"CANARY_INTEGRITY_ROOT"`
}

const verifyAbout = `Paths in the manifest are relative to ROOT (default: the manifest's folder).
Every failure is printed with the full path looked at; exit 0 only when every
file matches, 1 otherwise.`

// runVerify checks a manifest against a folder: where it looks first, every
// failure on its own line with the full path looked at, then the summary.
func runVerify(ctx context.Context, c cli, args []string) int {
	fs := flag.NewFlagSet("verify", flag.ContinueOnError)
	rest, code, ok := parseFlags(fs, c, args, func(w io.Writer) {
		printCommandHelp(w, "verify", fs, describedVariables(reflect.TypeFor[verifyConfig]()), verifyAbout)
	})
	if !ok {
		return code
	}
	var vc verifyConfig
	if err := parseEnv(&vc, c.environ); err != nil {
		return configExit(c.stderr, err)
	}
	switch len(rest) {
	case 2:
		vc.Manifest, vc.Root = rest[0], rest[1]
	case 1:
		vc.Manifest, vc.Root = rest[0], ""
	case 0:
	default:
		return usageExit(c, "verify", "too many arguments (want at most MANIFEST ROOT)")
	}
	if vc.Manifest == "" {
		return configExit(c.stderr, bad("CANARY_INTEGRITY_MANIFEST", "required: give the manifest as an argument or in the variable"))
	}
	if vc.Root == "" {
		vc.Root = filepath.Dir(vc.Manifest)
	}
	fmt.Fprintf(c.stdout, "manifest %s, root %s\n", absOr(vc.Manifest), absOr(vc.Root))
	rep := integrity.Verifier{Manifest: vc.Manifest, Root: vc.Root}.Verify(ctx)
	for _, f := range rep.Failures {
		if f.File != "" {
			fmt.Fprintf(c.stdout, "FAILED %s: %s (looked at %s)\n", f.Path, f.Problem, f.File)
		} else {
			fmt.Fprintf(c.stdout, "FAILED %s: %s\n", f.Path, f.Problem)
		}
	}
	fmt.Fprintln(c.stdout, rep.Summary)
	if missing := countProblem(rep.Failures, integrity.ProblemMissing); rep.FilesTotal > 0 && missing == rep.FilesTotal {
		fmt.Fprintf(c.stdout, "hint: none of the manifest's files is under %s; give the release folder as ROOT (canaryd verify MANIFEST ROOT) or set CANARY_INTEGRITY_ROOT\n", absOr(vc.Root))
	}
	if !rep.Verified {
		return exitFail
	}
	return exitOK
}

// absOr is p made absolute, or p when that fails.
func absOr(p string) string {
	if a, err := filepath.Abs(p); err == nil {
		return a
	}
	return p
}

func countProblem(failures []integrity.Failure, problem string) int {
	n := 0
	for _, f := range failures {
		if f.Problem == problem {
			n++
		}
	}
	return n
}
