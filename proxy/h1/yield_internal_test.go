package h1

import (
	"testing"
	"time"
)

// A yielder yields while reads that parked keep coming back, and stops
// once none has for yieldWindow (so the network poller gets to run).
func TestYielderStopsWhenNoParkedReadReturns(t *testing.T) {
	y := newYielder()
	y.epoch = time.Now().Add(-time.Hour) // now() is an hour in
	if y.open(y.now()) {
		t.Fatal("a new yielder with no read seen yields")
	}
	start := y.now() - int64(time.Millisecond) // a read that took 1 ms: it parked
	y.readDone(start)
	if !y.open(y.now()) {
		t.Fatal("after a parked read came back, no yield")
	}

	// A quick read (it found bytes) is no sign of the poller.
	y2 := newYielder()
	y2.epoch = time.Now().Add(-time.Hour)
	y2.readDone(y2.now())
	if y2.open(y2.now()) {
		t.Fatal("after a read that did not park, yielding")
	}
}
