package main

import (
	"context"
	"fmt"
	"io"
	"path/filepath"

	"github.com/canaryd/canaryd/guard/integrity"
)

// verifyConfig is what canaryd verify reads from the environment when the
// manifest is not given as an argument.
type verifyConfig struct {
	Manifest string `env:"CANARY_INTEGRITY_MANIFEST"`
	Root     string `env:"CANARY_INTEGRITY_ROOT"`
}

// runVerify checks a manifest against a folder: every failure on its own
// line, then the summary; exit 0 only when every file matches.
func runVerify(ctx context.Context, args, environ []string, stdout, stderr io.Writer) int {
	var c verifyConfig
	if err := parseEnv(&c, environ); err != nil {
		return configExit(stderr, err)
	}
	switch len(args) {
	case 2:
		c.Manifest, c.Root = args[0], args[1]
	case 1:
		c.Manifest, c.Root = args[0], ""
	case 0:
	default:
		fmt.Fprint(stderr, "canaryd verify: too many arguments\n"+usage)
		return exitConfig
	}
	if c.Manifest == "" {
		return configExit(stderr, bad("CANARY_INTEGRITY_MANIFEST", "required: give the manifest as an argument or in the variable"))
	}
	if c.Root == "" {
		c.Root = filepath.Dir(c.Manifest)
	}
	rep := integrity.Verifier{Manifest: c.Manifest, Root: c.Root}.Verify(ctx)
	for _, f := range rep.Failures {
		fmt.Fprintf(stdout, "FAILED %s: %s\n", f.Path, f.Problem)
	}
	fmt.Fprintln(stdout, rep.Summary)
	if !rep.Verified {
		return exitFail
	}
	return exitOK
}
