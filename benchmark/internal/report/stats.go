// Package report has what the benchmarks print besides their own tables:
// order statistics over rounds, ratios, and a line describing the environment.
package report

import (
	"math"
	"sort"
)

// Median returns the median of v, or NaN when v is empty. v is not modified.
func Median(v []float64) float64 {
	if len(v) == 0 {
		return math.NaN()
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// Spread returns (max-min)/median of v: how far apart the rounds were.
func Spread(v []float64) float64 {
	if len(v) == 0 {
		return math.NaN()
	}
	lo, hi := v[0], v[0]
	for _, x := range v {
		lo, hi = math.Min(lo, x), math.Max(hi, x)
	}
	return (hi - lo) / Median(v)
}

// Quantile returns the q-quantile (0 <= q <= 1) of sorted, by the
// nearest-rank method, or NaN when sorted is empty.
func Quantile(sorted []float64, q float64) float64 {
	if len(sorted) == 0 {
		return math.NaN()
	}
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	if i < 0 {
		i = 0
	}
	return sorted[i]
}

// Ratio formats a/b for a table: "=" when both are zero, "inf" when only b is.
func Ratio(a, b float64) string {
	switch {
	case a == 0 && b == 0:
		return "="
	case b == 0:
		return "inf"
	}
	return formatFloat(a/b, 2)
}
