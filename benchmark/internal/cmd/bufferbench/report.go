package main

import (
	"fmt"
	"io"
	"math"
	"strings"
	"testing"
	"text/tabwriter"

	"github.com/cloudwego/netpoll/benchmark/internal/report"
)

// measurement is one testing.Benchmark result, per operation.
type measurement struct {
	ns, bytes, allocs float64
}

func measure(r testing.BenchmarkResult) measurement {
	if r.N == 0 {
		return measurement{math.NaN(), math.NaN(), math.NaN()}
	}
	n := float64(r.N)
	return measurement{
		ns:     float64(r.T.Nanoseconds()) / n,
		bytes:  float64(r.MemBytes) / n,
		allocs: float64(r.MemAllocs) / n,
	}
}

func (m measurement) String() string {
	return fmt.Sprintf("%12.1f ns/op %12.1f B/op %8.2f allocs/op", m.ns, m.bytes, m.allocs)
}

// results maps scenario name, then implementation name, to its measurements.
type results map[string]map[string][]measurement

func (r results) add(scenario, impl string, m measurement) {
	if r[scenario] == nil {
		r[scenario] = make(map[string][]measurement)
	}
	r[scenario][impl] = append(r[scenario][impl], m)
}

// field returns one field of every measurement in ms.
func field(ms []measurement, f func(measurement) float64) []float64 {
	v := make([]float64, len(ms))
	for i, m := range ms {
		v[i] = f(m)
	}
	return v
}

// pairedRatio is the median over rounds of ours/ref ns/op, each pair measured
// back to back: it cancels load that drifts over the run.
func pairedRatio(ours, ref []measurement) string {
	v := make([]float64, 0, len(ours))
	for i := range ours {
		if i < len(ref) && ref[i].ns > 0 {
			v = append(v, ours[i].ns/ref[i].ns)
		}
	}
	return fmt.Sprintf("%.2f", report.Median(v))
}

func minimum(v []float64) float64 {
	m := math.Inf(1)
	for _, x := range v {
		m = math.Min(m, x)
	}
	return m
}

// round keeps 0 decimals of B/op (field 1) and 2 of allocs/op (field 2).
func round(v float64, field int) float64 {
	if field == 1 {
		return math.Round(v)
	}
	return math.Round(v*100) / 100
}

func num(v float64) string {
	if v == math.Trunc(v) || v >= 100 {
		return fmt.Sprintf("%.0f", v)
	}
	return fmt.Sprintf("%.2f", v)
}

func printTable(w io.Writer, list []scenario, res results) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "scenario\tns/op ours\tns/op ref\tratio\tpaired\tbest\tB/op ours\tB/op ref\tratio\tallocs ours\tallocs ref\tratio\tspread\t")
	ns := func(m measurement) float64 { return m.ns }
	by := func(m measurement) float64 { return m.bytes }
	al := func(m measurement) float64 { return m.allocs }
	for _, s := range list {
		o, r := res[s.name]["ours"], res[s.name]["ref"]
		cols := []string{s.name}
		// Rounded before the ratio: an amortised 0.004 B/op against 0.003
		// is no difference worth a ratio of 1.33.
		for i, f := range []func(measurement) float64{ns, by, al} {
			mo, mr := report.Median(field(o, f)), report.Median(field(r, f))
			if i > 0 {
				mo, mr = round(mo, i), round(mr, i)
			}
			cols = append(cols, num(mo), num(mr), report.Ratio(mo, mr))
			if i == 0 {
				cols = append(cols, pairedRatio(o, r), report.Ratio(minimum(field(o, f)), minimum(field(r, f))))
			}
		}
		cols = append(cols, fmt.Sprintf("%.0f%%", 100*math.Max(report.Spread(field(o, ns)), report.Spread(field(r, ns)))))
		fmt.Fprintln(tw, strings.Join(cols, "\t")+"\t")
	}
	tw.Flush()
}
