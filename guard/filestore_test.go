package guard_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/canaryd/canaryd/guard"
	"github.com/canaryd/canaryd/guard/storetest"
)

// TestFileStoreContract runs the Store contract against two FileStores on
// one file.
func TestFileStoreContract(t *testing.T) {
	storetest.Run(t, func(t *testing.T) storetest.Storage {
		path := filepath.Join(t.TempDir(), "state.json")
		a, err := guard.NewFileStore(path, nil)
		if err != nil {
			t.Fatal(err)
		}
		b, err := guard.NewFileStore(path, nil)
		if err != nil {
			t.Fatal(err)
		}
		return storetest.Storage{A: a, B: b, Corrupt: func(t *testing.T) {
			if err := os.WriteFile(path, []byte(`{"version": 2, "state": `), 0o600); err != nil {
				t.Fatal(err)
			}
		}}
	})
}

// TestFileStoreReadsVersion1: a state file written before stores (version 1,
// no revision, no releases) is read, and the next save writes version 2.
func TestFileStoreReadsVersion1(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.json")
	v1 := `{"version":1,"release":"v9","state":"paused","plan":"5@1m0s,25@1m0s","step":1,"observed_ns":0,"weight_hundredths":1500,
"history":[{"time":"2026-01-02T03:04:05Z","from":5,"to":15,"from_state":"progressing","to_state":"paused","reason":"weight set by hand to 15%","who":"admin"}],
"saved_at":"2026-01-02T03:04:05Z"}`
	if err := os.WriteFile(path, []byte(v1), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := guard.NewFileStore(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	r, rev, err := s.Load(t.Context())
	if err != nil {
		t.Fatalf("Load of a version 1 file: %v", err)
	}
	if r.Release != "v9" || r.State != guard.StatePaused || r.Weight != 1500 || len(r.Plan.Steps) != 2 || len(r.History) != 1 ||
		strings.Join(r.Releases, ",") != "v9" || rev != 1 {
		t.Errorf("version 1 read as %+v at revision %d", r, rev)
	}
	if _, err := s.Save(t.Context(), r, rev); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(path)
	if !strings.Contains(string(data), `"version": 2`) || !strings.Contains(string(data), `"revision": 2`) {
		t.Errorf("saved file:\n%s", data)
	}
}

// TestFileStoreHandWrittenFile: a record whose keys are in another order
// (written by hand) still has its revision compared on save.
func TestFileStoreHandWrittenFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.json")
	doc := `{"release": "v1", "state": "fixed", "weight_hundredths": 1000, "plan": "", "step": 0, "observed_ns": 0,
"history": [], "saved_at": "2026-01-02T03:04:05Z", "revision": 7, "version": 2}`
	if err := os.WriteFile(path, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := guard.NewFileStore(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	r, rev, err := s.Load(t.Context())
	if err != nil || rev != 7 {
		t.Fatalf("Load = %d, %v; want revision 7", rev, err)
	}
	if _, err := s.Save(t.Context(), r, 6); !errors.Is(err, guard.ErrRevisionConflict) {
		t.Errorf("Save on revision 6 = %v; want ErrRevisionConflict", err)
	}
	if got, err := s.Save(t.Context(), r, 7); err != nil || got != 8 {
		t.Errorf("Save on revision 7 = %d, %v; want 8", got, err)
	}
}
