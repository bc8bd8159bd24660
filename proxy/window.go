package proxy

import (
	"sync"
	"sync/atomic"
	"time"
)

// windowSlots is the number of time slots in a sliding window; a slot lasts
// Window/windowSlots (5s for the default 5m window).
const windowSlots = 60

// slot holds the counts of one slot duration. Every field is updated with
// atomics only.
type slot struct {
	epoch    atomic.Int64 // which slot-duration interval this holds: window-clock nanoseconds (Proxy.since) / slot length
	requests atomic.Uint64
	errors   atomic.Uint64
	slow     atomic.Uint64
	buckets  [NumBuckets]atomic.Uint32
}

// window is a fixed-memory sliding window: a ring of slots indexed by epoch.
// Recording is lock-free; a slot is reset (under mu) when it is first used
// for a new epoch, i.e. at most once per slot duration.
type window struct {
	slotNanos int64
	mu        sync.Mutex // serialises slot resets
	slots     [windowSlots]slot
}

func newWindow(d time.Duration) *window {
	sn := int64(d) / windowSlots
	if sn < 1 {
		sn = 1
	}
	w := &window{slotNanos: sn}
	for i := range w.slots {
		w.slots[i].epoch.Store(-1 << 62)
	}
	return w
}

// slotFor returns the slot for epoch e, resetting it if it still holds an
// older epoch. It returns nil for a record so late that its slot has already
// been reused for a newer epoch.
func (w *window) slotFor(e int64) *slot {
	s := &w.slots[uint64(e)%windowSlots]
	if cur := s.epoch.Load(); cur != e {
		if cur > e {
			return nil
		}
		w.mu.Lock()
		if cur = s.epoch.Load(); cur < e {
			// Zero before publishing the new epoch: a recorder that sees
			// epoch e must find the slot already cleared.
			s.requests.Store(0)
			s.errors.Store(0)
			s.slow.Store(0)
			for i := range s.buckets {
				s.buckets[i].Store(0)
			}
			s.epoch.Store(e)
		}
		w.mu.Unlock()
		if s.epoch.Load() != e {
			return nil
		}
	}
	return s
}

// record counts one request finishing at now (nanoseconds on the window
// clock, since the proxy started: see Proxy.since). hist says whether
// lat goes into the latency histogram.
func (w *window) record(now int64, lat time.Duration, isErr, isSlow, hist bool) {
	s := w.slotFor(now / w.slotNanos)
	if s == nil {
		return
	}
	s.requests.Add(1)
	if isErr {
		s.errors.Add(1)
	}
	if isSlow {
		s.slow.Add(1)
	}
	if hist {
		s.buckets[BucketIndex(lat)].Add(1)
	}
}

// read sums the slots of the window ending at now into st (Requests, Errors,
// Slow, Latency). The window covers the current slot and the windowSlots-1
// before it.
func (w *window) read(now int64, st *Stats) {
	e := now / w.slotNanos
	st.Latency = NewHistogram()
	counts := st.Latency.Counts
	for i := range w.slots {
		s := &w.slots[i]
		if se := s.epoch.Load(); se > e || se <= e-windowSlots {
			continue
		}
		n := s.requests.Load()
		if n == 0 {
			continue
		}
		st.Requests += n
		st.Errors += s.errors.Load()
		st.Slow += s.slow.Load()
		for j := range s.buckets {
			counts[j] += uint64(s.buckets[j].Load())
		}
	}
}
