package proxy_test

import (
	"math"
	"net/http"
	"runtime"
	"testing"
	"time"
)

// TestSlidingWindow drives requests with exact latencies through the
// handler and moves an injected clock to slide them out of the window.
func TestSlidingWindow(t *testing.T) {
	p, clock, _, _ := newFakeProxy(t, 10, nil) // 1m window, 1s slots
	for range 10 {
		do(p, "canary", http.StatusOK, 10*time.Millisecond)
	}
	clock.Advance(20 * time.Second)
	for range 4 {
		do(p, "canary", http.StatusInternalServerError, 800*time.Millisecond)
	}
	do(p, "stable", http.StatusOK, time.Millisecond)

	type want struct {
		requests, errors, slow, totalRequests uint64
		p50                                   time.Duration
	}
	steps := []struct {
		advance time.Duration
		canary  want
	}{
		{0, want{14, 4, 4, 14, 10 * time.Millisecond}},
		{35 * time.Second, want{14, 4, 4, 14, 10 * time.Millisecond}},
		// 10ms requests finished at about t=0 and leave after one window.
		{6 * time.Second, want{4, 4, 4, 14, 800 * time.Millisecond}},
		{time.Minute, want{0, 0, 0, 14, 0}},
	}
	for i, st := range steps {
		clock.Advance(st.advance)
		s := p.Snapshot()
		c := s.Canary
		if c.Requests != st.canary.requests || c.Errors != st.canary.errors || c.Slow != st.canary.slow {
			t.Errorf("step %d: canary window = %d requests, %d errors, %d slow; want %d, %d, %d",
				i, c.Requests, c.Errors, c.Slow, st.canary.requests, st.canary.errors, st.canary.slow)
		}
		if c.Latency.Count() != c.Requests {
			t.Errorf("step %d: histogram holds %d; want %d", i, c.Latency.Count(), c.Requests)
		}
		if c.Totals.Requests != st.canary.totalRequests || c.Totals.Errors != 4 || c.Totals.Slow != 4 {
			t.Errorf("step %d: totals = %+v; want %d requests, 4 errors, 4 slow", i, c.Totals, st.canary.totalRequests)
		}
		got := c.Latency.Quantile(0.5)
		if want := st.canary.p50; math.Abs(float64(got-want)) > 0.01*float64(want) {
			t.Errorf("step %d: canary p50 = %v; want %v", i, got, want)
		}
		if s.Stable.Totals.Requests != 1 {
			t.Errorf("step %d: stable totals = %+v; want 1 request", i, s.Stable.Totals)
		}
		if s.Window != time.Minute || !s.At.Equal(clock.Now()) {
			t.Errorf("step %d: snapshot window %v at %v; want 1m at %v", i, s.Window, s.At, clock.Now())
		}
	}
}

// TestWindowMemoryFixed records many requests across many windows and checks
// the heap does not grow with the request count.
func TestWindowMemoryFixed(t *testing.T) {
	p, clock, _, _ := newFakeProxy(t, 10, nil)
	run := func(n int) {
		for i := range n {
			do(p, "canary", http.StatusOK, time.Duration(i%1000)*time.Microsecond)
			if i%100 == 0 {
				clock.Advance(time.Second)
			}
		}
	}
	run(2000) // warm up: every slot has been used
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	run(50000)
	runtime.GC()
	runtime.ReadMemStats(&after)
	if grew := int64(after.HeapInuse) - int64(before.HeapInuse); grew > 256<<10 {
		t.Errorf("heap in use grew by %d bytes over 50000 requests; want a fixed footprint", grew)
	}
	s := p.Snapshot()
	if s.Canary.Totals.Requests != 52000 {
		t.Errorf("canary totals = %d; want 52000", s.Canary.Totals.Requests)
	}
	// 100 requests per ~1.05s of fake time, 60 one-second slots.
	if s.Canary.Requests < 5500 || s.Canary.Requests > 6000 {
		t.Errorf("canary window requests = %d; want about 6000 (60 slots of 100)", s.Canary.Requests)
	}
}
