// Package integrity verifies a release's files against a sha256sum-format
// manifest.
package integrity

import "time"

// Status values of a Report.
const (
	StatusVerified = "VERIFIED"
	StatusFailed   = "FAILED"
	StatusDisabled = "DISABLED"
)

// Entry is one manifest line.
type Entry struct {
	// Path is the file's path as written in the manifest (slash-separated,
	// relative to the root).
	Path string
	// Sum is the expected SHA-256.
	Sum [32]byte
	// Binary is true for the "*" marker (no difference on POSIX).
	Binary bool
	// Line is the 1-based line number in the manifest.
	Line int
}

// Failure is one file that did not verify.
type Failure struct {
	// Path is the file's path as the manifest writes it (or the manifest's
	// or root's path when those cannot be read).
	Path    string `json:"path"`
	Problem string `json:"problem"`
	// File is the full path that was looked at: Path under the root, made
	// absolute, so that "missing" says where. Empty for a path that escapes
	// the root, which is never looked at.
	File string `json:"file,omitempty"`
}

// Report is the outcome of one verification; its JSON is the body of
// GET /dashboard/integrity_details.
type Report struct {
	Verified     bool      `json:"integrity_verified"`
	Status       string    `json:"status"`
	Summary      string    `json:"summary"`
	FilesChecked int       `json:"files_checked"`
	FilesTotal   int       `json:"files_total"`
	Failures     []Failure `json:"failures"`
	Manifest     string    `json:"manifest,omitempty"`
	Root         string    `json:"root,omitempty"`
	CheckedAt    time.Time `json:"checked_at,omitzero"`
	Duration     string    `json:"duration,omitempty"`
}

// Disabled is the report when no manifest is configured.
func Disabled() Report {
	return Report{Verified: false, Status: StatusDisabled, Summary: "integrity checking is disabled (no CANARY_INTEGRITY_MANIFEST)", Failures: []Failure{}}
}
