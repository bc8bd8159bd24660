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
	if y.now()-y.lastWake.Load() < int64(yieldWindow) {
		t.Fatal("a new yielder with no read seen yields")
	}
	start := y.now() - int64(time.Millisecond) // a read that took 1 ms: it parked
	y.readDone(start)
	if y.now()-y.lastWake.Load() >= int64(yieldWindow) {
		t.Fatal("after a parked read came back, no yield")
	}
	y.yield() // returns: with nothing else runnable, Gosched is immediate

	// A quick read (it found bytes) is no sign of the poller.
	y2 := newYielder()
	y2.epoch = time.Now().Add(-time.Hour)
	y2.readDone(y2.now())
	if y2.lastWake.Load() != 0 {
		t.Fatalf("a read that did not park moved lastWake to %d", y2.lastWake.Load())
	}
}
