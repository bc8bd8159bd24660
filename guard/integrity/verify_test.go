package integrity_test

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/canaryd/canaryd/guard/integrity"
)

// release is a test tree: a root folder, a sibling "outside" folder, and a
// manifest listing the files it was built from.
type release struct {
	dir      string // parent of root, outside and the manifest
	root     string
	manifest string
}

// newRelease writes files under root and a manifest of their sums to
// dir/SHA256SUMS. Extra lines (any content) are appended to the manifest.
func newRelease(t testing.TB, files map[string][]byte, extra ...string) release {
	t.Helper()
	dir := t.TempDir()
	r := release{dir: dir, root: filepath.Join(dir, "root"), manifest: filepath.Join(dir, "SHA256SUMS")}
	var entries []integrity.Entry
	for name, data := range files {
		p := filepath.Join(r.root, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		entries = append(entries, integrity.Entry{Path: name, Sum: sha256.Sum256(data)})
	}
	if err := os.MkdirAll(r.root, 0o755); err != nil {
		t.Fatal(err)
	}
	slices.SortFunc(entries, func(a, b integrity.Entry) int { return strings.Compare(a.Path, b.Path) })
	var sb strings.Builder
	if err := integrity.WriteManifest(&sb, entries); err != nil {
		t.Fatal(err)
	}
	for _, l := range extra {
		sb.WriteString(l + "\n")
	}
	if err := os.WriteFile(r.manifest, []byte(sb.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return r
}

// line is a manifest line for data at name.
func line(name string, data []byte) string {
	return integrity.Entry{Path: name, Sum: sha256.Sum256(data)}.String()
}

func TestVerify(t *testing.T) {
	big := make([]byte, 3*integrity.BufferSize+17)
	for i := range big {
		big[i] = byte(i * 7)
	}
	base := map[string][]byte{"app": []byte("binary"), "conf/app.yaml": []byte("port: 8080\n"), "big.bin": big, "empty": nil}
	secret := []byte("outside the root")

	tests := []struct {
		name  string
		extra []string                      // manifest lines after the base files
		setup func(t *testing.T, r release) // changes after the manifest is written
		want  []integrity.Failure
		total int
	}{
		{name: "all files match", total: 4},
		{
			name:  "tampered file",
			setup: func(t *testing.T, r release) { write(t, filepath.Join(r.root, "conf/app.yaml"), "port: 9090\n") },
			want:  []integrity.Failure{{Path: "conf/app.yaml", Problem: integrity.ProblemMismatch}},
			total: 4,
		},
		{
			name: "tampered last byte of a multi-buffer file",
			setup: func(t *testing.T, r release) {
				write(t, filepath.Join(r.root, "big.bin"), string(big[:len(big)-1])+"!")
			},
			want:  []integrity.Failure{{Path: "big.bin", Problem: integrity.ProblemMismatch}},
			total: 4,
		},
		{
			name: "missing files",
			setup: func(t *testing.T, r release) {
				remove(t, filepath.Join(r.root, "app"))
				remove(t, filepath.Join(r.root, "conf/app.yaml"))
				remove(t, filepath.Join(r.root, "conf"))
			},
			want:  []integrity.Failure{{Path: "app", Problem: integrity.ProblemMissing}, {Path: "conf/app.yaml", Problem: integrity.ProblemMissing}},
			total: 4,
		},
		{
			name:  "path under a regular file is missing",
			extra: []string{line("app/x", nil)},
			want:  []integrity.Failure{{Path: "app/x", Problem: integrity.ProblemMissing}},
			total: 5,
		},
		{
			name:  "dot-dot leading out is never read",
			extra: []string{line("../outside/secret", secret), line("conf/../../outside/secret2", secret)},
			setup: func(t *testing.T, r release) {
				write(t, filepath.Join(r.dir, "outside/secret"), string(secret))
				write(t, filepath.Join(r.dir, "outside/secret2"), string(secret))
			},
			want: []integrity.Failure{
				{Path: "../outside/secret", Problem: integrity.ProblemEscapes},
				{Path: "conf/../../outside/secret2", Problem: integrity.ProblemEscapes},
			},
			total: 6,
		},
		{
			name:  "dot-dot staying inside is fine",
			extra: []string{line("conf/../app2", []byte("binary"))},
			setup: func(t *testing.T, r release) { write(t, filepath.Join(r.root, "app2"), "binary") },
			total: 5,
		},
		{
			name:  "symlinks leading out are failures",
			extra: []string{line("rel-link", secret), line("abs-link", secret), line("dir-link/secret", secret)},
			setup: func(t *testing.T, r release) {
				write(t, filepath.Join(r.dir, "outside/secret"), string(secret))
				symlink(t, "../outside/secret", filepath.Join(r.root, "rel-link"))
				symlink(t, filepath.Join(r.dir, "outside/secret"), filepath.Join(r.root, "abs-link"))
				symlink(t, "../outside", filepath.Join(r.root, "dir-link"))
			},
			want: []integrity.Failure{
				{Path: "abs-link", Problem: integrity.ProblemEscapes},
				{Path: "dir-link/secret", Problem: integrity.ProblemEscapes},
				{Path: "rel-link", Problem: integrity.ProblemEscapes},
			},
			total: 7,
		},
		{
			name:  "symlinks inside the root are followed",
			extra: []string{line("current/app.yaml", []byte("port: 8080\n")), line("app-link", []byte("binary"))},
			setup: func(t *testing.T, r release) {
				symlink(t, "conf", filepath.Join(r.root, "current"))
				symlink(t, "current/../app", filepath.Join(r.root, "app-link"))
			},
			total: 6,
		},
		{
			name:  "directory is not a regular file",
			extra: []string{line("conf", nil)},
			want:  []integrity.Failure{{Path: "conf", Problem: integrity.ProblemNotRegular}},
			total: 5,
		},
		{
			name:  "symlink loop is unreadable",
			extra: []string{line("loop", nil)},
			setup: func(t *testing.T, r release) { symlink(t, "loop", filepath.Join(r.root, "loop")) },
			want:  []integrity.Failure{{Path: "loop", Problem: integrity.ProblemUnreadable + ": too many levels of symbolic links"}},
			total: 5,
		},
		{
			name:  "comments and blank lines in the manifest are skipped",
			extra: []string{"", "# generated by sha256sum", "   "},
			total: 4,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRelease(t, base, tt.extra...)
			if tt.setup != nil {
				tt.setup(t, r)
			}
			want := lookedAt(r.root, tt.want)
			for _, workers := range []int{0, 1, 3} {
				v := integrity.Verifier{Manifest: r.manifest, Root: r.root, Workers: workers}
				got := v.Verify(context.Background())
				if !slices.Equal(got.Failures, want) {
					t.Errorf("Workers=%d: Failures = %q; want %q", workers, got.Failures, want)
				}
				wantVerified := len(want) == 0
				wantStatus := map[bool]string{true: integrity.StatusVerified, false: integrity.StatusFailed}[wantVerified]
				if got.Verified != wantVerified || got.Status != wantStatus {
					t.Errorf("Workers=%d: Verified, Status = %v, %s; want %v, %s", workers, got.Verified, got.Status, wantVerified, wantStatus)
				}
				if got.FilesTotal != tt.total || got.FilesChecked != tt.total {
					t.Errorf("Workers=%d: FilesChecked/FilesTotal = %d/%d; want %d/%d", workers, got.FilesChecked, got.FilesTotal, tt.total, tt.total)
				}
				wantSummary := summary(tt.total-len(want), tt.total, len(want))
				if got.Summary != wantSummary {
					t.Errorf("Workers=%d: Summary = %q; want %q", workers, got.Summary, wantSummary)
				}
				if got.Manifest != r.manifest || got.Root != r.root || got.CheckedAt.IsZero() || got.Duration == "" {
					t.Errorf("Workers=%d: Manifest, Root, CheckedAt, Duration = %q, %q, %v, %q; want all filled", workers, got.Manifest, got.Root, got.CheckedAt, got.Duration)
				}
			}
		})
	}
}

// lookedAt returns want with File set as Verify names it: the path under
// root, except for a path that escapes the root (never looked at).
func lookedAt(root string, want []integrity.Failure) []integrity.Failure {
	out := []integrity.Failure{}
	for _, f := range want {
		if f.Problem != integrity.ProblemEscapes {
			f.File = filepath.Join(root, filepath.FromSlash(f.Path))
		}
		out = append(out, f)
	}
	return out
}

func summary(ok, total, failed int) string {
	s := fmt.Sprintf("%d/%d files verified", ok, total)
	if failed > 0 {
		s += fmt.Sprintf(", %d failed", failed)
	}
	return s
}

func TestVerifyAbsolutePathNeverRead(t *testing.T) {
	secret := []byte("outside the root")
	dir := t.TempDir()
	outside := filepath.Join(dir, "outside", "secret")
	write(t, outside, string(secret))
	r := newRelease(t, map[string][]byte{"a": []byte("a")}, line(outside, secret), line("/", nil))
	got := integrity.Verifier{Manifest: r.manifest, Root: r.root}.Verify(context.Background())
	want := []integrity.Failure{{Path: "/", Problem: integrity.ProblemEscapes}, {Path: outside, Problem: integrity.ProblemEscapes}}
	if !slices.Equal(got.Failures, want) || got.Verified || got.Summary != "1/3 files verified, 2 failed" {
		t.Errorf("Verify() = %+v; want failures %q", got, want)
	}
}

func TestVerifyUnreadableFile(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("root reads files whatever their mode")
	}
	r := newRelease(t, map[string][]byte{"a": []byte("a"), "locked": []byte("x")})
	if err := os.Chmod(filepath.Join(r.root, "locked"), 0); err != nil {
		t.Fatal(err)
	}
	got := integrity.Verifier{Manifest: r.manifest, Root: r.root}.Verify(context.Background())
	want := lookedAt(r.root, []integrity.Failure{{Path: "locked", Problem: integrity.ProblemUnreadable + ": permission denied"}})
	if !slices.Equal(got.Failures, want) || got.Verified {
		t.Errorf("Verify() = %+v; want failures %q", got, want)
	}
}

func TestVerifyManifestProblems(t *testing.T) {
	tests := []struct {
		name        string
		manifest    string // content; "" = file absent
		root        func(r release) string
		wantPath    func(r release) string
		wantProblem string
		wantTotal   int
	}{
		{
			name:        "manifest missing",
			wantPath:    func(r release) string { return r.manifest },
			wantProblem: "manifest unreadable: no such file or directory",
		},
		{
			name:        "manifest malformed",
			manifest:    hexA + "  a\nnonsense\n",
			wantPath:    func(r release) string { return r.manifest },
			wantProblem: "manifest unreadable: line 2: malformed manifest line",
		},
		{
			name:        "manifest without entries",
			manifest:    "# nothing here\n",
			wantPath:    func(r release) string { return r.manifest },
			wantProblem: "manifest unreadable: no checksum lines in manifest",
		},
		{
			name:        "root missing",
			manifest:    hexA + "  a\n",
			root:        func(r release) string { return filepath.Join(r.dir, "nope") },
			wantPath:    func(r release) string { return filepath.Join(r.dir, "nope") },
			wantProblem: "root unreadable: no such file or directory",
			wantTotal:   1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			r := release{dir: dir, root: dir, manifest: filepath.Join(dir, "SHA256SUMS")}
			if tt.manifest != "" {
				write(t, r.manifest, tt.manifest)
			}
			root := r.root
			if tt.root != nil {
				root = tt.root(r)
			}
			got := integrity.Verifier{Manifest: r.manifest, Root: root}.Verify(context.Background())
			if got.Verified || got.Status != integrity.StatusFailed || len(got.Failures) != 1 {
				t.Fatalf("Verify() = %+v; want FAILED with one failure", got)
			}
			f := got.Failures[0]
			if f.Path != tt.wantPath(r) || !strings.HasPrefix(f.Problem, tt.wantProblem) {
				t.Errorf("failure = %q; want path %q, problem starting %q", f, tt.wantPath(r), tt.wantProblem)
			}
			if got.FilesTotal != tt.wantTotal || got.FilesChecked != 0 {
				t.Errorf("FilesChecked/FilesTotal = %d/%d; want 0/%d", got.FilesChecked, got.FilesTotal, tt.wantTotal)
			}
			if !strings.Contains(got.Summary, tt.wantProblem) {
				t.Errorf("Summary = %q; want it to contain %q", got.Summary, tt.wantProblem)
			}
		})
	}
}

func TestVerifyRootDefaultsToManifestFolder(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "a"), "a")
	write(t, filepath.Join(dir, "SHA256SUMS"), line("a", []byte("a"))+"\n")
	got := integrity.Verifier{Manifest: filepath.Join(dir, "SHA256SUMS")}.Verify(context.Background())
	if !got.Verified || got.Root != dir || got.Summary != "1/1 files verified" {
		t.Errorf("Verify() = %+v; want verified 1/1 with Root %q", got, dir)
	}
}

// A relative root (the usual `canaryd verify MANIFEST` from a shell) still
// gives every failure the absolute path that was looked at, so "missing"
// says where.
func TestVerifyFailureNamesTheFileLookedAt(t *testing.T) {
	r := newRelease(t, map[string][]byte{"index.html": []byte("x")})
	t.Chdir(r.dir)
	if err := os.Remove(filepath.Join(r.root, "index.html")); err != nil {
		t.Fatal(err)
	}
	got := integrity.Verifier{Manifest: "SHA256SUMS", Root: "root"}.Verify(context.Background())
	want := []integrity.Failure{{Path: "index.html", Problem: integrity.ProblemMissing, File: filepath.Join(r.root, "index.html")}}
	if !slices.Equal(got.Failures, want) || got.Root != "root" {
		t.Errorf("Verify() failures %q, root %q; want %q, root %q", got.Failures, got.Root, want, "root")
	}
}

func TestVerifyNoManifest(t *testing.T) {
	got := integrity.Verifier{}.Verify(context.Background())
	if got.Verified || got.Status != integrity.StatusFailed || len(got.Failures) != 1 {
		t.Errorf("Verify() = %+v; want FAILED", got)
	}
}

func TestVerifyCanceled(t *testing.T) {
	files := map[string][]byte{}
	for i := range 50 {
		files[fmt.Sprint("f", i)] = []byte(fmt.Sprint(i))
	}
	r := newRelease(t, files)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	got := integrity.Verifier{Manifest: r.manifest, Root: r.root}.Verify(ctx)
	if got.Verified || got.Status != integrity.StatusFailed {
		t.Fatalf("Verify(canceled) = %+v; want FAILED", got)
	}
	if got.FilesChecked != 0 || got.FilesTotal != 50 {
		t.Errorf("FilesChecked/FilesTotal = %d/%d; want 0/50", got.FilesChecked, got.FilesTotal)
	}
	if len(got.Failures) != 1 || got.Failures[0].Path != r.manifest || !strings.Contains(got.Failures[0].Problem, "interrupted") {
		t.Errorf("Failures = %q; want one naming the interruption", got.Failures)
	}
}

func TestReportJSON(t *testing.T) {
	r := newRelease(t, map[string][]byte{"a": []byte("a")})
	rep := integrity.Verifier{Manifest: r.manifest}.Verify(context.Background())
	b, err := json.Marshal(rep)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	// The manifest sits beside root, so with Root defaulted "root/a" is
	// what the manifest should have said: "a" is missing.
	if m["integrity_verified"] != false || m["status"] != "FAILED" || m["files_checked"] != float64(1) {
		t.Errorf("JSON = %s", b)
	}
	for _, rep := range []integrity.Report{integrity.Disabled(), {Failures: []integrity.Failure{}}, rep} {
		b, _ := json.Marshal(rep)
		if strings.Contains(string(b), `"failures":null`) {
			t.Errorf("JSON %s has null failures; want a list", b)
		}
	}
}

func write(t *testing.T, p, data string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

func remove(t *testing.T, p string) {
	t.Helper()
	if err := os.Remove(p); err != nil {
		t.Fatal(err)
	}
}

func symlink(t *testing.T, target, link string) {
	t.Helper()
	if err := os.Symlink(target, link); err != nil {
		t.Skip("symlink:", err)
	}
}

// rewriteManifest replaces the manifest line old with new.
