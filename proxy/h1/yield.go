package h1

import (
	"runtime"
	"sync/atomic"
	"time"
)

// A yielder decides whether a goroutine about to read a socket that is
// probably not readable yet (a keep-alive client's next request, a
// backend's answer) lets the other goroutines run first.
//
// Reading at once mostly fails: a wasted read, a park and, later, a wake-up
// by the network poller. A runtime.Gosched first often finds the bytes
// there, which under load is worth several percent of throughput. But a
// yielded goroutine waits in the global run queue, and the scheduler polls
// the network only when its run queues are empty: while goroutines keep
// yielding, the queues never empty, and a connection that did park waits
// for sysmon's poll, up to 10 ms. (Measured with bench-load, README,
// Performance: yielding always made p99 at 64 connections 2 to 3 times
// nginx's.) So a yielder yields only while reads that parked keep coming
// back, that is while the poller is still running: once none has for
// yieldWindow, goroutines stop yielding, the queues drain, the poller runs,
// and yielding resumes.
type yielder struct {
	epoch    time.Time    // the base of the monotonic times below
	lastWake atomic.Int64 // ns since epoch: the last read seen to have parked
}

const (
	// yieldWindow is how long goroutines go on yielding with no read
	// coming back from a park. Measured (README, Performance): 250 µs
	// halved the p99 of yielding always for 0.92-1.02x its throughput
	// and 1.04x that of never yielding; 1 ms kept a little more
	// throughput for a longer tail; 4 ms was as bad as yielding always.
	yieldWindow = 250 * time.Microsecond
	// parkedRead is the time beyond which a read is taken to have
	// parked: a read that finds bytes takes a few microseconds.
	parkedRead = 10 * time.Microsecond
)

func newYielder() *yielder { return &yielder{epoch: time.Now()} }

// now returns the time since y.epoch, from the monotonic clock.
func (y *yielder) now() int64 { return int64(time.Since(y.epoch)) }

// open reports whether a read that parked came back within yieldWindow,
// that is whether the network poller is still running.
func (y *yielder) open() bool { return y.now()-y.lastWake.Load() < int64(yieldWindow) }

// yield lets the other goroutines run first, unless the network poller
// may be starved (see yielder).
func (y *yielder) yield() {
	if y.open() {
		runtime.Gosched()
	}
}

// readDone notes that a read begun at start (y.now()) has returned.
func (y *yielder) readDone(start int64) {
	if t := y.now(); t-start > int64(parkedRead) && t-y.lastWake.Load() > int64(parkedRead) {
		y.lastWake.Store(t) // written at most every parkedRead: no line bouncing between cores
	}
}
