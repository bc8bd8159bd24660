package guard_test

import (
	"errors"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/canaryd/canaryd/guard"
)

// twoGuards runs two guards on one state file, as two replicas on one
// store: through one FileStore (notices at once) or two (notices by
// polling the file).
func twoGuards(t *testing.T, oneStore bool) (a, b *harness) {
	t.Helper()
	cfg, _ := baseConfig(t)
	cfg.Now = nil
	cfg.Steps = []guard.Step{{Weight: 500, Observe: time.Hour}, {Weight: 2500, Observe: time.Hour}}
	path := filepath.Join(t.TempDir(), "state.json")
	open := func() guard.Store {
		s, err := guard.NewFileStore(path, nil)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	cfgA, cfgB := cfg, cfg
	cfgA.Store = open()
	cfgB.Store = cfgA.Store
	if !oneStore {
		cfgB.Store = open()
	}
	a = newHarness(t, cfgA, nil)
	b = newHarness(t, cfgB, nil)
	a.start()
	b.start()
	return a, b
}

// sameState waits until both guards show the same state and weight, and
// returns it.
func sameState(t *testing.T, a, b *harness) guard.Overview {
	t.Helper()
	var oa guard.Overview
	waitFor(t, func() bool {
		oa = a.g.Overview()
		ob := b.g.Overview()
		return oa.State == ob.State && oa.Weight == ob.Weight && oa.Persisted && ob.Persisted
	})
	return oa
}

// TestConcurrentRollbackNeverLost: 100 rounds of a rollback on one guard
// and a weight change on the other at the same moment; the rollback always
// stands, on both, and in the store.
func TestConcurrentRollbackNeverLost(t *testing.T) {
	a, b := twoGuards(t, true)
	for round := range 100 {
		if _, err := a.g.Reset("a"); err != nil {
			t.Fatalf("round %d: reset: %v", round, err)
		}
		if o := sameState(t, a, b); o.State != "progressing" {
			t.Fatalf("round %d: after reset both show %s", round, o.State)
		}
		var wg sync.WaitGroup
		var weightErr error
		wg.Go(func() { _, err := a.g.Rollback("a"); _ = err })
		wg.Go(func() { _, weightErr = b.g.SetWeight(uint32(1000+round), "b") })
		wg.Wait()
		if weightErr != nil && !errors.Is(weightErr, guard.ErrConflict) {
			t.Fatalf("round %d: weight: %v; want success or ErrConflict", round, weightErr)
		}
		o := sameState(t, a, b)
		if o.State != "rolled_back" || o.Weight != 0 {
			t.Fatalf("round %d: both guards show %s at %v; the rollback was lost (weight call: %v)", round, o.State, o.Weight, weightErr)
		}
		if w, blocked := b.router.get(); w != 0 || !blocked {
			t.Fatalf("round %d: the other guard routes %d blocked %v", round, w, blocked)
		}
	}
	stored, _, err := a.cfg.Store.Load(t.Context())
	if err != nil || stored.State != guard.StateRolledBack {
		t.Fatalf("stored state = %s, %v; want rolled_back", stored.State, err)
	}
}

// TestOtherWriterAdopted: with two FileStores on one file, a change made
// through one guard reaches the other within a second, and a change the
// other computed from the older state is computed again (here refused).
func TestOtherWriterAdopted(t *testing.T) {
	a, b := twoGuards(t, false)
	start := time.Now()
	if _, err := a.g.Promote("a"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return b.g.Overview().Weight == 25 })
	if d := time.Since(start); d > time.Second {
		t.Errorf("the other guard took %v to apply the change; want under 1s", d)
	}
	if w, blocked := b.router.get(); w != 2500 || blocked {
		t.Errorf("other guard routes %d blocked %v; want 2500", w, blocked)
	}
	if _, err := a.g.Rollback("a"); err != nil {
		t.Fatal(err)
	}
	// b resets at once: if it has not seen the rollback yet, the reset is
	// computed again on the rolled-back state and refused instead of undoing
	// it; if it has, it is an informed reset and stands.
	_, err := b.g.Reset("b")
	if err != nil && !errors.Is(err, guard.ErrConflict) {
		t.Fatalf("reset on the other guard: %v", err)
	}
	want := "rolled_back"
	if err == nil {
		want = "progressing"
	}
	if o := sameState(t, a, b); o.State != want {
		t.Errorf("both show %s after a reset answered %v; want %s", o.State, err, want)
	}
}
