package main

import (
	"math/bits"
	"sync/atomic"
	"time"
)

// Histogram buckets durations log-linearly: values below 2^subBits ns each
// have a bucket, above that every power of two is split into 2^(subBits-1)
// buckets, so a quantile is off by less than 1/64 (1.6%) of its value. One
// histogram is shared by all workers: an atomic add per sample is cheaper on
// two cores than per-worker arrays, which at 10,000 workers would cost more
// memory than the relay under test.
type Histogram struct {
	counts [histBuckets]atomic.Uint64
	n      atomic.Uint64
	sum    atomic.Uint64 // ns
	max    atomic.Int64  // ns
}

const (
	subBits     = 7
	subHalf     = 1 << (subBits - 1)
	histBuckets = (64-subBits+1)*subHalf + subHalf
)

func bucketOf(v int64) int {
	if v < 0 {
		v = 0
	}
	u := uint64(v)
	if u < 1<<subBits {
		return int(u)
	}
	e := bits.Len64(u) - subBits
	return e*subHalf + int(u>>e)
}

// bucketValue is the middle of bucket i.
func bucketValue(i int) int64 {
	if i < 1<<subBits {
		return int64(i)
	}
	e := i/subHalf - 1
	m := int64(i - e*subHalf)
	return m<<e + (int64(1)<<e)/2
}

// Record adds one duration.
func (h *Histogram) Record(d time.Duration) {
	v := int64(d)
	h.counts[bucketOf(v)].Add(1)
	h.n.Add(1)
	if v > 0 {
		h.sum.Add(uint64(v))
	}
	for {
		m := h.max.Load()
		if v <= m || h.max.CompareAndSwap(m, v) {
			return
		}
	}
}

// Count returns the number of samples.
func (h *Histogram) Count() uint64 { return h.n.Load() }

// Quantile returns the q-quantile (0 < q <= 1) of the recorded durations, 0
// when empty.
func (h *Histogram) Quantile(q float64) time.Duration {
	n := h.n.Load()
	if n == 0 {
		return 0
	}
	rank := uint64(q*float64(n) + 0.5)
	rank = max(rank, 1)
	var seen uint64
	for i := range h.counts {
		seen += h.counts[i].Load()
		if seen >= rank {
			return time.Duration(min(bucketValue(i), h.max.Load()))
		}
	}
	return time.Duration(h.max.Load())
}

// Summary is a histogram's quantiles in milliseconds, as the report shows them.
type Summary struct {
	Count  uint64  `json:"count"`
	MeanMs float64 `json:"mean_ms"`
	P50Ms  float64 `json:"p50_ms"`
	P90Ms  float64 `json:"p90_ms"`
	P99Ms  float64 `json:"p99_ms"`
	P999Ms float64 `json:"p999_ms"`
	MaxMs  float64 `json:"max_ms"`
}

func ms(d time.Duration) float64 { return float64(d) / 1e6 }

// Summarize returns the histogram's quantiles.
func (h *Histogram) Summarize() Summary {
	n := h.n.Load()
	s := Summary{Count: n}
	if n == 0 {
		return s
	}
	s.MeanMs = float64(h.sum.Load()) / float64(n) / 1e6
	s.P50Ms = ms(h.Quantile(0.50))
	s.P90Ms = ms(h.Quantile(0.90))
	s.P99Ms = ms(h.Quantile(0.99))
	s.P999Ms = ms(h.Quantile(0.999))
	s.MaxMs = ms(time.Duration(h.max.Load()))
	return s
}
