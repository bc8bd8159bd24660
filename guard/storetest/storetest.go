// Package storetest checks that an implementation of guard.Store keeps the
// contract the guard relies on: compare-and-swap saves that never lose an
// update, a watch that reports another client's change, unreadable values
// reported and quarantined. The same tests run against every store: the
// FileStore (guard's tests) and a fleet store such as etcd.
package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/canaryd/canaryd/guard"
	"github.com/canaryd/canaryd/guard/judge"
)

// Storage is one fresh, empty storage seen by two clients.
type Storage struct {
	// A and B are two clients of the storage (two FileStores on one path,
	// two etcd clients on one prefix), as two replicas would hold.
	A, B guard.Store
	// Corrupt stores a value that is not a record, as a broken disk or a
	// careless hand would.
	Corrupt func(t *testing.T)
}

// Run runs the contract tests; open returns a fresh, empty Storage for each.
func Run(t *testing.T, open func(t *testing.T) Storage) {
	t.Run("Empty", func(t *testing.T) { testEmpty(t, open(t)) })
	t.Run("RoundTrip", func(t *testing.T) { testRoundTrip(t, open(t)) })
	t.Run("CompareAndSwap", func(t *testing.T) { testCompareAndSwap(t, open(t)) })
	t.Run("NoLostUpdate", func(t *testing.T) { testNoLostUpdate(t, open(t)) })
	t.Run("WatchSeesTheOtherClient", func(t *testing.T) { testWatch(t, open(t)) })
	t.Run("Corrupt", func(t *testing.T) { testCorrupt(t, open(t)) })
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return c
}

// Sample is a record with every field set.
func Sample() guard.Record {
	at := time.Date(2026, 4, 5, 6, 7, 8, 0, time.UTC)
	return guard.Record{
		Release: "v1.0.1",
		State:   guard.StateRolledBack,
		Step:    1,
		Weight:  0,
		Plan: guard.Plan{
			Steps:  []guard.Step{{Weight: 0, Observe: 10 * time.Minute}, {Weight: 550, Observe: time.Hour}},
			Weight: 1000,
			Custom: true,
		},
		StepStartedAt: at,
		EvidenceSince: at.Add(time.Second),
		Observation:   guard.Observation{Banked: 90 * time.Second, Since: at.Add(time.Minute), Restored: true},
		Rollback: &guard.RollbackRecord{
			At: at, Reason: guard.RecRollbackLatency, Who: "guard", Replica: "web-2:8000",
			Canary: guard.BackendView{Requests: 500, Errors: 2, ErrorRate: 0.004, P50Ms: 10, P95Ms: 700, P99Ms: 900},
			Gates:  []judge.Gate{{Name: "p95_latency", Value: 6.2, Threshold: 5.99, Unit: "log_lr", Samples: 500, Verdict: judge.GateFail, Detail: "slow"}},
		},
		History: []guard.Transition{
			{At: at, From: 5.5, To: 0, FromState: "progressing", ToState: "rolled_back", Reason: "rollback_latency", Who: "guard", Release: "v1.0.1", Replica: "web-2:8000"},
		},
		Releases: []string{"v1.0.0", "v1.0.1"},
		SavedAt:  at.Add(2 * time.Minute),
		Writer:   "abc/7",
	}
}

// encode is the record's canonical form, for comparisons.
func encode(t *testing.T, r guard.Record) []byte {
	t.Helper()
	b, err := guard.EncodeRecord(r, 0)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func testEmpty(t *testing.T, s Storage) {
	for _, st := range []guard.Store{s.A, s.B} {
		if _, rev, err := st.Load(ctx(t)); !errors.Is(err, guard.ErrNoRecord) || rev != 0 {
			t.Errorf("Load of an empty storage = %d, %v; want 0, ErrNoRecord", rev, err)
		}
	}
	if k := s.A.Kind(); k == "" {
		t.Error("Kind is empty")
	}
}

func testRoundTrip(t *testing.T, s Storage) {
	want := Sample()
	rev, err := s.A.Save(ctx(t), want, 0)
	if err != nil || rev <= 0 {
		t.Fatalf("first Save = %d, %v; want a positive revision", rev, err)
	}
	for name, st := range map[string]guard.Store{"A": s.A, "B": s.B} {
		got, grev, err := st.Load(ctx(t))
		if err != nil || grev != rev {
			t.Fatalf("%s: Load = %d, %v; want %d", name, grev, err, rev)
		}
		if !bytes.Equal(encode(t, got), encode(t, want)) {
			t.Errorf("%s: Load gives\n%s\nwant\n%s", name, encode(t, got), encode(t, want))
		}
	}
}

func testCompareAndSwap(t *testing.T, s Storage) {
	r := Sample()
	r1, err := s.A.Save(ctx(t), r, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.B.Save(ctx(t), r, 0); !errors.Is(err, guard.ErrRevisionConflict) {
		t.Fatalf("B creating what A created = %v; want ErrRevisionConflict", err)
	}
	r.Release = "from-b"
	r2, err := s.B.Save(ctx(t), r, r1)
	if err != nil || r2 <= r1 {
		t.Fatalf("B Save on %d = %d, %v; want a higher revision", r1, r2, err)
	}
	r.Release = "from-a"
	if _, err := s.A.Save(ctx(t), r, r1); !errors.Is(err, guard.ErrRevisionConflict) {
		t.Fatalf("A Save on the stale %d = %v; want ErrRevisionConflict", r1, err)
	}
	got, rev, err := s.A.Load(ctx(t))
	if err != nil || rev != r2 || got.Release != "from-b" {
		t.Errorf("after the conflict: %q at %d, %v; want from-b at %d (the loser wrote nothing)", got.Release, rev, err, r2)
	}
}

// testNoLostUpdate: clients of both sides append to the history at once,
// each reloading and trying again when it loses; every append survives.
func testNoLostUpdate(t *testing.T, s Storage) {
	if _, err := s.A.Save(ctx(t), guard.Record{Release: "v1", State: guard.StateFixed}, 0); err != nil {
		t.Fatal(err)
	}
	const writers, each = 6, 8
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := range writers {
		st := s.A
		if w%2 == 1 {
			st = s.B
		}
		wg.Go(func() {
			for i := range each {
				for attempt := 0; ; attempt++ {
					if attempt > 200 {
						errs <- fmt.Errorf("writer %d: gave up after 200 conflicts", w)
						return
					}
					r, rev, err := st.Load(ctx(t))
					if err != nil {
						errs <- err
						return
					}
					r.History = append(r.History, guard.Transition{Who: fmt.Sprintf("w%d-%d", w, i)})
					if _, err = st.Save(ctx(t), r, rev); err == nil {
						break
					} else if !errors.Is(err, guard.ErrRevisionConflict) {
						errs <- err
						return
					}
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	r, _, err := s.B.Load(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, tr := range r.History {
		if seen[tr.Who] {
			t.Errorf("%s appended twice", tr.Who)
		}
		seen[tr.Who] = true
	}
	if len(seen) != writers*each {
		t.Errorf("history holds %d appends; want %d (an update was lost)", len(seen), writers*each)
	}
}

func testWatch(t *testing.T, s Storage) {
	wctx, cancel := context.WithCancel(context.Background())
	ch := s.A.Watch(wctx)
	rev, err := s.B.Save(ctx(t), Sample(), 0)
	if err != nil {
		t.Fatal(err)
	}
	waitSignal(t, ch, "B's save")
	if _, got, err := s.A.Load(ctx(t)); err != nil || got != rev {
		t.Fatalf("A loads %d, %v after the notice; want %d", got, err, rev)
	}
	// A burst of changes is reported (coalesced), and the last one is seen.
	for i := range 5 {
		r := Sample()
		r.Step = 0
		r.History = append(r.History, guard.Transition{Who: fmt.Sprint(i)})
		if rev, err = s.B.Save(ctx(t), r, rev); err != nil {
			t.Fatal(err)
		}
	}
	waitSignal(t, ch, "B's burst of saves")
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, got, err := s.A.Load(ctx(t))
		if err == nil && got == rev {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("A never loads revision %d (last %d, %v)", rev, got, err)
		}
		waitSignal(t, ch, "the rest of the burst")
	}
	cancel()
	deadline = time.Now().Add(5 * time.Second)
	for {
		select {
		case _, ok := <-ch:
			if !ok {
				return
			}
		case <-time.After(time.Until(deadline)):
			t.Fatal("Watch's channel not closed after its context ended")
		}
	}
}

func waitSignal(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case _, ok := <-ch:
		if !ok {
			t.Fatalf("Watch closed while waiting for %s", what)
		}
	case <-time.After(3 * time.Second):
		t.Fatalf("no notice within 3s of %s", what)
	}
}

func testCorrupt(t *testing.T, s Storage) {
	rev, err := s.A.Save(ctx(t), Sample(), 0)
	if err != nil {
		t.Fatal(err)
	}
	s.Corrupt(t)
	if _, _, err := s.B.Load(ctx(t)); !errors.Is(err, guard.ErrCorruptRecord) {
		t.Fatalf("Load of a corrupt value = %v; want ErrCorruptRecord", err)
	}
	if _, err := s.A.Save(ctx(t), Sample(), rev); !errors.Is(err, guard.ErrCorruptRecord) && !errors.Is(err, guard.ErrRevisionConflict) {
		t.Fatalf("Save over a corrupt value = %v; want ErrCorruptRecord or ErrRevisionConflict", err)
	}
	where, err := s.B.Quarantine(ctx(t))
	if err != nil || where == "" {
		t.Fatalf("Quarantine = %q, %v", where, err)
	}
	if _, _, err := s.A.Load(ctx(t)); !errors.Is(err, guard.ErrNoRecord) {
		t.Fatalf("Load after Quarantine = %v; want ErrNoRecord", err)
	}
	if _, err := s.A.Save(ctx(t), Sample(), 0); err != nil {
		t.Fatalf("Save after Quarantine = %v", err)
	}
}
