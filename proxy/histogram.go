package proxy

import (
	"math/bits"
	"time"
)

// The histogram is log-linear: every power of two of nanoseconds between
// 2^histMinExp (≈65.5µs) and 2^histMaxExp (≈68.7s) is split into
// histSubBuckets equal sub-buckets. A bucket is therefore at most 1/64 of its
// lower bound wide, and Quantile, which answers a bucket's midpoint, is within
// 1/128 (0.8%) relative error of the exact sample quantile. Latencies below
// the range land in the first bucket, latencies above it in the last.
const (
	histSubBits    = 6
	histSubBuckets = 1 << histSubBits
	histMinExp     = 16
	histMaxExp     = 36

	// NumBuckets is the number of buckets of every Histogram (len(Counts)).
	NumBuckets = (histMaxExp - histMinExp) * histSubBuckets
)

// HistogramMin and HistogramMax bound the exactly measured latency range:
// smaller latencies count in bucket 0, larger ones in bucket NumBuckets-1.
const (
	HistogramMin = time.Duration(1) << histMinExp
	HistogramMax = time.Duration(1) << histMaxExp
)

// BucketIndex returns the bucket a latency falls into, clamped to
// [0, NumBuckets).
func BucketIndex(d time.Duration) int {
	if d < HistogramMin {
		return 0
	}
	if d >= HistogramMax {
		return NumBuckets - 1
	}
	v := uint64(d)
	e := bits.Len64(v) - 1
	sub := (v >> (e - histSubBits)) & (histSubBuckets - 1)
	return (e-histMinExp)*histSubBuckets + int(sub)
}

// BucketBounds returns bucket i's half-open range [lo, hi).
func BucketBounds(i int) (lo, hi time.Duration) {
	e := histMinExp + i/histSubBuckets
	sub := i % histSubBuckets
	width := time.Duration(1) << (e - histSubBits)
	lo = time.Duration(histSubBuckets+sub) * width
	return lo, lo + width
}

// NewHistogram returns an empty histogram with NumBuckets buckets.
func NewHistogram() Histogram {
	return Histogram{Counts: make([]uint64, NumBuckets)}
}

// Add counts one observation of d. A histogram without buckets (the zero
// value) gets them allocated.
func (h *Histogram) Add(d time.Duration) {
	if len(h.Counts) != NumBuckets {
		h.Counts = make([]uint64, NumBuckets)
	}
	h.Counts[BucketIndex(d)]++
}

// Merge adds o's counts to h.
func (h *Histogram) Merge(o Histogram) {
	if len(o.Counts) == 0 {
		return
	}
	if len(h.Counts) != NumBuckets {
		h.Counts = make([]uint64, NumBuckets)
	}
	for i, c := range o.Counts {
		h.Counts[i] += c
	}
}

// Count is the number of observations in the histogram.
func (h *Histogram) Count() uint64 {
	var n uint64
	for _, c := range h.Counts {
		n += c
	}
	return n
}

// CountAbove is the number of observations in buckets that lie entirely
// above d (an undercount by at most one bucket's worth near d).
func (h *Histogram) CountAbove(d time.Duration) uint64 {
	var n uint64
	for i := len(h.Counts) - 1; i >= 0; i-- {
		if lo, _ := BucketBounds(i); lo <= d {
			break
		}
		n += h.Counts[i]
	}
	return n
}

// Quantile returns the q-quantile (0 < q <= 1); 0 for an empty histogram.
// It is the nearest-rank quantile (the ceil(q·n)-th smallest observation),
// answered as the midpoint of the bucket holding it. q outside (0, 1] is
// clamped.
func (h *Histogram) Quantile(q float64) time.Duration {
	n := h.Count()
	if n == 0 {
		return 0
	}
	rank := uint64(q*float64(n) + 0.9999999999) // ceil, tolerant of float noise
	rank = max(1, min(rank, n))
	var seen uint64
	for i, c := range h.Counts {
		seen += c
		if seen >= rank {
			lo, hi := BucketBounds(i)
			return lo + (hi-lo)/2
		}
	}
	return 0 // unreachable: seen reaches n
}
