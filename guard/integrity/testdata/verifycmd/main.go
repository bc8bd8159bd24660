// Command verifycmd is a stand-in for `canaryd verify` used to exercise
// scripts/bench-verify.sh before cmd/canaryd exists:
//
//	go build -o /tmp/canaryd ./guard/integrity/testdata/verifycmd
//	CANARYD=/tmp/canaryd scripts/bench-verify.sh
//
// It accepts `verify [MANIFEST [ROOT]]` (falling back to
// CANARY_INTEGRITY_MANIFEST / CANARY_INTEGRITY_ROOT), prints each failure
// and then the summary line, and exits 0 only when every file verified.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/canaryd/canaryd/guard/integrity"
)

func main() {
	args := os.Args[1:]
	if len(args) == 0 || args[0] != "verify" || len(args) > 3 {
		fmt.Fprintln(os.Stderr, "usage: verifycmd verify [MANIFEST [ROOT]]")
		os.Exit(2)
	}
	v := integrity.Verifier{Manifest: os.Getenv("CANARY_INTEGRITY_MANIFEST"), Root: os.Getenv("CANARY_INTEGRITY_ROOT")}
	if len(args) > 1 {
		v.Manifest = args[1]
	}
	if len(args) > 2 {
		v.Root = args[2]
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	rep := v.Verify(ctx)
	for _, f := range rep.Failures {
		fmt.Printf("%s: %s\n", f.Path, f.Problem)
	}
	fmt.Println(rep.Summary)
	if !rep.Verified {
		stop()
		os.Exit(1)
	}
}
