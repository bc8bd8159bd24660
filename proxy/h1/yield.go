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

// now returns the time since y.epoch, from the monotonic clock: one
// clock read, where time.Now takes two (the wall clock too). The request
// path's clock reads go through it where they can (README, Performance).
func (y *yielder) now() int64 { return int64(time.Since(y.epoch)) }

// at returns the time t (y.now's) as a time.Time, for a deadline: no clock
// read.
func (y *yielder) at(t int64) time.Time { return y.epoch.Add(time.Duration(t)) }

// since returns the time tm on y.now's clock: no clock read for a tm
// with a monotonic reading (time.Now's, at's).
func (y *yielder) since(tm time.Time) int64 { return int64(tm.Sub(y.epoch)) }

// open reports whether, at t (y.now's), a read that parked came back within
// yieldWindow, that is whether the network poller is still running.
func (y *yielder) open(t int64) bool { return t-y.lastWake.Load() < int64(yieldWindow) }

// yield lets the other goroutines run first, unless the network poller
// may be starved (see yielder). t is y.now(); the time returned is y.now()
// after the yield: t itself if there was none.
func (y *yielder) yield(t int64) int64 {
	if !y.open(t) {
		return t
	}
	runtime.Gosched()
	return y.now()
}

// readDone notes that a read begun at start (y.now()) has returned.
func (y *yielder) readDone(start int64) {
	if t := y.now(); t-start > int64(parkedRead) && t-y.lastWake.Load() > int64(parkedRead) {
		y.lastWake.Store(t) // written at most every parkedRead: no line bouncing between cores
	}
}
