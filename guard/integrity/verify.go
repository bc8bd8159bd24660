package integrity

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// BufferSize is the read buffer each worker owns and reuses for every file:
// memory stays Workers×BufferSize however large or many the files are.
const BufferSize = 256 << 10

// Problems reported in Failure.Problem. An unreadable file's problem is
// ProblemUnreadable followed by ": " and the reason.
const (
	ProblemMissing    = "missing"
	ProblemUnreadable = "unreadable"
	ProblemMismatch   = "checksum mismatch"
	ProblemNotRegular = "not a regular file"
	ProblemEscapes    = "path escapes the root"
)

// Verifier checks a manifest against a root folder.
type Verifier struct {
	// Manifest is the manifest's path; Root the folder its paths are rooted
	// at ("" = the manifest's folder); Workers the number of files hashed at
	// once (0 = GOMAXPROCS).
	Manifest string
	Root     string
	Workers  int
}

// rootDir is Root, or the manifest's folder when Root is empty.
func (v Verifier) rootDir() string {
	if v.Root != "" {
		return v.Root
	}
	return filepath.Dir(v.Manifest)
}

// workers is the number of hashing goroutines for n files.
func (v Verifier) workers(n int) int {
	w := v.Workers
	if w <= 0 {
		w = runtime.GOMAXPROCS(0)
	}
	return max(1, min(w, n))
}

// Verify hashes every file of the manifest and reports. It never reads a
// file outside Root.
//
// Each path is first checked lexically (absolute paths and paths climbing
// out with ".." are failures without any file system access), then opened
// through an os.Root, which refuses symbolic links that lead outside Root
// (including absolute links). Files are hashed by Workers goroutines, each
// with one BufferSize buffer. A manifest that cannot be read or parsed, or a
// Root that cannot be opened, is one failure naming it. When ctx ends the
// files not yet hashed are left unchecked and the report is FAILED.
func (v Verifier) Verify(ctx context.Context) Report {
	start := time.Now()
	rep := Report{
		Status:    StatusFailed,
		Failures:  []Failure{},
		Manifest:  v.Manifest,
		Root:      v.rootDir(),
		CheckedAt: start.UTC(),
	}
	done := func() Report {
		slices.SortFunc(rep.Failures, func(a, b Failure) int {
			if c := strings.Compare(a.Path, b.Path); c != 0 {
				return c
			}
			return strings.Compare(a.Problem, b.Problem)
		})
		rep.Duration = time.Since(start).Round(time.Microsecond).String()
		return rep
	}
	fatal := func(p, problem string) Report {
		rep.Failures = append(rep.Failures, Failure{Path: p, Problem: problem, File: absPath(p)})
		rep.Summary = fmt.Sprintf("%d/%d files verified, %s", 0, rep.FilesTotal, problem)
		return done()
	}

	if v.Manifest == "" {
		return fatal("", "no manifest given")
	}
	entries, err := readManifest(v.Manifest)
	if err != nil {
		return fatal(v.Manifest, "manifest unreadable: "+err.Error())
	}
	rep.FilesTotal = len(entries)
	root, err := os.OpenRoot(rep.Root)
	if err != nil {
		return fatal(rep.Root, "root unreadable: "+errText(err))
	}
	defer root.Close()

	absRoot := absPath(rep.Root)
	results := make([]result, len(entries))
	escapes := escapeError(root)
	var (
		next atomic.Int64
		wg   sync.WaitGroup
	)
	for range v.workers(len(entries)) {
		wg.Go(func() {
			c := checker{root: root, escapes: escapes, buf: make([]byte, BufferSize), h: sha256.New()}
			for ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= len(entries) {
					return
				}
				results[i] = c.check(ctx, entries[i])
			}
		})
	}
	wg.Wait()

	ok, failed := 0, 0
	for i, r := range results {
		if !r.checked {
			continue
		}
		rep.FilesChecked++
		if r.problem == "" {
			ok++
			continue
		}
		failed++
		f := Failure{Path: entries[i].Path, Problem: r.problem}
		if r.problem != ProblemEscapes {
			f.File = filepath.Join(absRoot, filepath.FromSlash(f.Path))
		}
		rep.Failures = append(rep.Failures, f)
	}
	rep.Summary = fmt.Sprintf("%d/%d files verified", ok, rep.FilesTotal)
	if failed > 0 {
		rep.Summary += fmt.Sprintf(", %d failed", failed)
	}
	if err := ctx.Err(); err != nil && rep.FilesChecked < rep.FilesTotal {
		problem := fmt.Sprintf("verification interrupted (%v), %d files not checked", err, rep.FilesTotal-rep.FilesChecked)
		rep.Failures = append(rep.Failures, Failure{Path: v.Manifest, Problem: problem, File: absPath(v.Manifest)})
		rep.Summary += ", " + problem
	}
	if ok == rep.FilesTotal && len(rep.Failures) == 0 {
		rep.Verified = true
		rep.Status = StatusVerified
	}
	return done()
}

// absPath is p made absolute for messages (p itself if that fails or p is
// empty).
func absPath(p string) string {
	if p == "" {
		return ""
	}
	if a, err := filepath.Abs(p); err == nil {
		return a
	}
	return p
}

// readManifest opens and parses the manifest file.
func readManifest(name string) ([]Entry, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, errors.New(errText(err))
	}
	defer f.Close()
	return ParseManifest(f)
}

// escapeError is the error os.Root gives for a path leading out of it. The
// os package does not export it, so it is obtained once per root by asking
// for the root's parent.
func escapeError(root *os.Root) error {
	f, err := root.Open("..")
	if err == nil {
		f.Close()
		return nil
	}
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// errText is an error's text without the path an *fs.PathError repeats.
func errText(err error) string {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err.Error()
	}
	return err.Error()
}

// result is one entry's outcome; problem is "" when the file verified.
type result struct {
	checked bool
	problem string
}

// checker hashes files for one worker with its own buffer and hash.
type checker struct {
	root    *os.Root
	escapes error
	buf     []byte
	h       hash.Hash
	sum     [sha256.Size]byte
}

// check verifies one entry; an unchecked result means ctx ended first.
func (c *checker) check(ctx context.Context, e Entry) result {
	if path.IsAbs(e.Path) || filepath.IsAbs(e.Path) || !filepath.IsLocal(filepath.FromSlash(e.Path)) {
		return result{checked: true, problem: ProblemEscapes}
	}
	f, err := c.root.OpenFile(filepath.FromSlash(e.Path), openFlags, 0)
	if err != nil {
		return result{checked: true, problem: c.openProblem(err)}
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return result{checked: true, problem: ProblemUnreadable + ": " + errText(err)}
	}
	if !fi.Mode().IsRegular() {
		return result{checked: true, problem: ProblemNotRegular}
	}
	c.h.Reset()
	for {
		if ctx.Err() != nil {
			return result{}
		}
		n, err := f.Read(c.buf)
		c.h.Write(c.buf[:n])
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return result{checked: true, problem: ProblemUnreadable + ": " + errText(err)}
		}
	}
	if !bytes.Equal(c.h.Sum(c.sum[:0]), e.Sum[:]) {
		return result{checked: true, problem: ProblemMismatch}
	}
	return result{checked: true}
}

// openProblem names why a manifest path could not be opened.
func (c *checker) openProblem(err error) string {
	switch {
	case c.escapes != nil && errors.Is(err, c.escapes):
		return ProblemEscapes
	case errors.Is(err, fs.ErrNotExist), errors.Is(err, syscall.ENOTDIR):
		return ProblemMissing
	default:
		return ProblemUnreadable + ": " + errText(err)
	}
}
