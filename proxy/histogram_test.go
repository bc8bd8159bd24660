package proxy_test

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/canaryd/canaryd/proxy"
)

func TestBucketIndexBounds(t *testing.T) {
	tests := []struct {
		d    time.Duration
		want int // -1: check lo <= d < hi only
	}{
		{0, 0},
		{-time.Second, 0},
		{time.Microsecond, 0},
		{proxy.HistogramMin, 0},
		{100 * time.Microsecond, -1},
		{time.Millisecond, -1},
		{500 * time.Millisecond, -1},
		{time.Second + 1, -1},
		{59 * time.Second, -1},
		{proxy.HistogramMax - 1, proxy.NumBuckets - 1},
		{proxy.HistogramMax, proxy.NumBuckets - 1},
		{time.Hour, proxy.NumBuckets - 1},
	}
	for _, tt := range tests {
		i := proxy.BucketIndex(tt.d)
		if tt.want >= 0 && i != tt.want {
			t.Errorf("BucketIndex(%v) = %d; want %d", tt.d, i, tt.want)
			continue
		}
		if lo, hi := proxy.BucketBounds(i); tt.want < 0 && (tt.d < lo || tt.d >= hi) {
			t.Errorf("BucketIndex(%v) = %d with bounds [%v, %v); want a bucket holding it", tt.d, i, lo, hi)
		}
	}
	// Buckets tile the range without gaps and are at most 1/64 wide.
	for i := 1; i < proxy.NumBuckets; i++ {
		plo, phi := proxy.BucketBounds(i - 1)
		lo, hi := proxy.BucketBounds(i)
		if phi != lo {
			t.Fatalf("bucket %d ends at %v but bucket %d starts at %v", i-1, phi, i, lo)
		}
		if w := float64(hi-lo) / float64(lo); w > 1.0/64+1e-12 {
			t.Fatalf("bucket %d [%v, %v) is %.4f of its lower bound wide; want <= 1/64", i, lo, hi, w)
		}
		if got := proxy.BucketIndex(lo); got != i {
			t.Fatalf("BucketIndex(%v) = %d; want %d", lo, got, i)
		}
		_ = plo
	}
}

// TestQuantileAccuracy compares Histogram.Quantile with the exact
// nearest-rank quantile of seeded random samples.
func TestQuantileAccuracy(t *testing.T) {
	const n = 20000
	dists := []struct {
		name string
		gen  func(r *rand.Rand) time.Duration
	}{
		{"log-uniform 100µs..60s", func(r *rand.Rand) time.Duration {
			lo, hi := math.Log(1e5), math.Log(60e9)
			return time.Duration(math.Exp(lo + r.Float64()*(hi-lo)))
		}},
		{"lognormal around 40ms", func(r *rand.Rand) time.Duration {
			return time.Duration(math.Exp(math.Log(40e6) + 0.8*r.NormFloat64()))
		}},
		{"exponential mean 5ms", func(r *rand.Rand) time.Duration {
			return 100*time.Microsecond + time.Duration(r.ExpFloat64()*5e6)
		}},
		{"bimodal 1ms and 2s", func(r *rand.Rand) time.Duration {
			if r.IntN(10) == 0 {
				return 2*time.Second + time.Duration(r.IntN(int(time.Second)))
			}
			return time.Millisecond + time.Duration(r.IntN(int(time.Millisecond)))
		}},
	}
	for seed, d := range dists {
		t.Run(d.name, func(t *testing.T) {
			r := rand.New(rand.NewPCG(uint64(seed), 42))
			samples := make([]time.Duration, n)
			var h proxy.Histogram
			for i := range samples {
				samples[i] = d.gen(r)
				h.Add(samples[i])
			}
			slices.Sort(samples)
			if h.Count() != n {
				t.Fatalf("Count() = %d; want %d", h.Count(), n)
			}
			for _, q := range []float64{0.5, 0.9, 0.95, 0.99, 0.999, 1} {
				exact := samples[int(math.Ceil(q*n))-1]
				got := h.Quantile(q)
				if rel := math.Abs(float64(got-exact)) / float64(exact); rel > 0.02 {
					t.Errorf("Quantile(%v) = %v; exact %v (relative error %.4f > 0.02)", q, got, exact, rel)
				}
			}
		})
	}
}

func TestHistogramHelpers(t *testing.T) {
	var empty proxy.Histogram
	if got := empty.Quantile(0.99); got != 0 {
		t.Errorf("empty Quantile(0.99) = %v; want 0", got)
	}
	if got := empty.Count(); got != 0 {
		t.Errorf("empty Count() = %d; want 0", got)
	}
	a := proxy.NewHistogram()
	for range 90 {
		a.Add(10 * time.Millisecond)
	}
	var b proxy.Histogram
	for range 10 {
		b.Add(time.Second)
	}
	a.Merge(b)
	tests := []struct {
		name string
		got  uint64
		want uint64
	}{
		{"Count", a.Count(), 100},
		{"CountAbove(500ms)", a.CountAbove(500 * time.Millisecond), 10},
		{"CountAbove(1ms)", a.CountAbove(time.Millisecond), 100},
		{"CountAbove(2s)", a.CountAbove(2 * time.Second), 0},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("%s = %d; want %d", tt.name, tt.got, tt.want)
		}
	}
	for _, tc := range []struct {
		q    float64
		want time.Duration
	}{{0.5, 10 * time.Millisecond}, {0.9, 10 * time.Millisecond}, {0.91, time.Second}, {0.99, time.Second}} {
		got := a.Quantile(tc.q)
		if rel := math.Abs(float64(got-tc.want)) / float64(tc.want); rel > 0.01 {
			t.Errorf("Quantile(%v) = %v; want about %v", tc.q, got, tc.want)
		}
	}
}
