//go:build unix

package integrity_test

import (
	"context"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/canaryd/canaryd/guard/integrity"
)

func TestVerifyFIFODoesNotBlock(t *testing.T) {
	r := newRelease(t, map[string][]byte{"a": []byte("a")}, line("fifo", nil))
	if err := syscall.Mkfifo(filepath.Join(r.root, "fifo"), 0o644); err != nil {
		t.Skip("mkfifo:", err)
	}
	// A blocking open of a FIFO with no writer would hang forever; the
	// deadline turns such a hang into a failed test instead.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	done := make(chan integrity.Report, 1)
	go func() { done <- integrity.Verifier{Manifest: r.manifest, Root: r.root}.Verify(ctx) }()
	select {
	case got := <-done:
		want := []integrity.Failure{{Path: "fifo", Problem: integrity.ProblemNotRegular, File: filepath.Join(r.root, "fifo")}}
		if !slices.Equal(got.Failures, want) || got.Summary != "1/2 files verified, 1 failed" {
			t.Errorf("Verify() = %+v; want failures %q", got, want)
		}
	case <-ctx.Done():
		t.Fatal("Verify blocked on a FIFO")
	}
}
