package main

import (
	"math"
	"testing"
	"time"
)

func TestBucketRoundTrip(t *testing.T) {
	f := func(v int64) {
		t.Helper()
		got := bucketValue(bucketOf(v))
		if d := math.Abs(float64(got-v)) / float64(max(v, 1)); v >= 1<<subBits && d > 1.0/subHalf {
			t.Errorf("bucketValue(bucketOf(%d)) = %d, off by %.2f%%", v, got, 100*d)
		}
		if v < 1<<subBits && got != v {
			t.Errorf("bucketValue(bucketOf(%d)) = %d, want exact", v, got)
		}
	}
	for _, v := range []int64{0, 1, 127, 128, 129, 255, 256, 1000, 12345, 1e6, 5e6 + 7, 1e9, 3e11, math.MaxInt64 / 2} {
		f(v)
	}
	if i := bucketOf(math.MaxInt64); i >= histBuckets {
		t.Errorf("bucketOf(MaxInt64) = %d, past %d buckets", i, histBuckets)
	}
}

func TestQuantiles(t *testing.T) {
	var h Histogram
	if h.Quantile(0.5) != 0 {
		t.Errorf("empty histogram: p50 = %v, want 0", h.Quantile(0.5))
	}
	for i := 1; i <= 100_000; i++ {
		h.Record(time.Duration(i) * time.Microsecond)
	}
	tests := []struct {
		q    float64
		want time.Duration
	}{
		{0.5, 50 * time.Millisecond},
		{0.9, 90 * time.Millisecond},
		{0.99, 99 * time.Millisecond},
		{0.999, 99900 * time.Microsecond},
		{1, 100 * time.Millisecond},
	}
	for _, tt := range tests {
		got := h.Quantile(tt.q)
		if d := math.Abs(float64(got-tt.want)) / float64(tt.want); d > 0.02 {
			t.Errorf("Quantile(%v) = %v, want %v ±2%%", tt.q, got, tt.want)
		}
	}
	s := h.Summarize()
	if s.Count != 100_000 || math.Abs(s.MeanMs-50.0005) > 0.01 || s.MaxMs != 100 {
		t.Errorf("Summarize() = %+v", s)
	}
}
