package integrity

// TODO(integrity owner): delete this file when the real implementations exist.

import (
	"context"
	"io"
)

// ParseManifest reads a sha256sum-format manifest.
func ParseManifest(r io.Reader) ([]Entry, error) { panic("unimplemented") }

// Verifier checks a manifest against a root folder.
type Verifier struct {
	// Manifest is the manifest's path; Root the folder its paths are rooted
	// at ("" = the manifest's folder); Workers the number of files hashed at
	// once (0 = GOMAXPROCS).
	Manifest string
	Root     string
	Workers  int
}

// Verify hashes every file of the manifest and reports. It never reads a
// file outside Root.
func (v Verifier) Verify(ctx context.Context) Report { panic("unimplemented") }
