package results

import (
	"fmt"
	"io"
	"math"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/cloudwego/netpoll/benchmark/internal/report"
)

// Metric is a column of a scenario's table.
type Metric struct {
	Name string
	Get  func(Run) float64
	// Higher is better (QPS); for every other metric lower is better.
	Higher bool
	// Ratio: whether the ratio rows show this metric.
	Ratio bool
	// NotFloor: no ratio against the floor, which has nothing to compare
	// (it schedules no goroutine).
	NotFloor bool
}

// Metrics returns the columns for a scenario kind.
func Metrics(kind string) []Metric {
	lat := []Metric{
		{Name: "QPS", Get: func(r Run) float64 { return r.QPS }, Higher: true, Ratio: true},
		{Name: "p50 µs", Get: func(r Run) float64 { return r.P50 }, Ratio: true},
		{Name: "p99 µs", Get: func(r Run) float64 { return r.P99 }, Ratio: true},
		{Name: "p999 µs", Get: func(r Run) float64 { return r.P999 }, Ratio: true},
	}
	switch kind {
	case KindIdle:
		return []Metric{
			{Name: "RSS/conn KiB", Get: func(r Run) float64 { return r.RSSPerConn }, Ratio: true},
			{Name: "goroutines", Get: func(r Run) float64 { return r.Goroutines }, Ratio: true},
			{Name: "accept CPU µs/conn", Get: func(r Run) float64 { return r.AcceptCPU }, Ratio: true},
			{Name: "peak RSS MiB", Get: func(r Run) float64 { return r.ServerPeakRSS / 1024 }, Ratio: true},
			{Name: "connect s", Get: func(r Run) float64 { return r.ConnectTime }},
		}
	case KindClient:
		return append(lat,
			Metric{Name: "client CPU µs/req", Get: func(r Run) float64 { return r.ClientCPU }, Ratio: true},
			Metric{Name: "client peak RSS MiB", Get: func(r Run) float64 { return r.ClientPeakRSS / 1024 }, Ratio: true},
			Metric{Name: "client goroutines", Get: func(r Run) float64 { return r.Goroutines }},
			Metric{Name: "client sched/req", Get: func(r Run) float64 { return r.SchedPerReq }, Ratio: true},
			Metric{Name: "client sched p99 µs", Get: func(r Run) float64 { return r.SchedP99 }, Ratio: true},
			Metric{Name: "server CPU µs/req", Get: func(r Run) float64 { return r.ServerCPU }},
		)
	default:
		return append(lat,
			Metric{Name: "server CPU µs/req", Get: func(r Run) float64 { return r.ServerCPU }, Ratio: true},
			Metric{Name: "peak RSS MiB", Get: func(r Run) float64 { return r.ServerPeakRSS / 1024 }, Ratio: true},
			Metric{Name: "goroutines", Get: func(r Run) float64 { return r.Goroutines }},
			Metric{Name: "sched/req", Get: func(r Run) float64 { return r.SchedPerReq }, Ratio: true, NotFloor: true},
			Metric{Name: "sched p99 µs", Get: func(r Run) float64 { return r.SchedP99 }, Ratio: true, NotFloor: true},
			// The load client's own cost: near 10^6/QPS it had no idle
			// time, and its queue is in the latencies.
			Metric{Name: "client CPU µs/req", Get: func(r Run) float64 { return r.ClientCPU }},
		)
	}
}

// Median returns the median over rounds of m for impl.
func (s *Scenario) Median(impl string, m Metric) float64 {
	var v []float64
	for _, r := range s.Runs[impl] {
		if r.Err == "" {
			v = append(v, m.Get(r))
		}
	}
	return report.Median(v)
}

// RoundRatios returns, per round, m(a)/m(b) for the runs of a and b in that
// round (the implementations run back to back within a round).
func (s *Scenario) RoundRatios(a, b string, m Metric) []float64 {
	ra, rb := s.Runs[a], s.Runs[b]
	var out []float64
	for i := 0; i < len(ra) && i < len(rb); i++ {
		if ra[i].Err != "" || rb[i].Err != "" {
			continue
		}
		x, y := m.Get(ra[i]), m.Get(rb[i])
		if y != 0 && !math.IsNaN(x) && !math.IsNaN(y) {
			out = append(out, x/y)
		}
	}
	return out
}

// Spread returns (max-min)/median over rounds of the scenario's headline
// metric (the first column) for impl.
func (s *Scenario) Spread(impl string) float64 {
	m := Metrics(s.Kind)[0]
	var v []float64
	for _, r := range s.Runs[impl] {
		if r.Err == "" {
			v = append(v, m.Get(r))
		}
	}
	return report.Spread(v)
}

// RatioPairs are the ratio rows of a scenario: ours against each other
// implementation it ran with.
func (s *Scenario) RatioPairs() [][2]string {
	var out [][2]string
	has := func(n string) bool {
		for _, i := range s.Impls {
			if i == n {
				return true
			}
		}
		return false
	}
	if !has("ours") {
		return nil
	}
	for _, o := range []string{"ref", "gonet", "floor"} {
		if has(o) {
			out = append(out, [2]string{"ours", o})
		}
	}
	return out
}

// Rows returns the scenario's table: a header, a row of medians per
// implementation, then per ratio pair the median of the per-round ratios.
// With ranges, the ratio cells also show the lowest and highest round.
func (s *Scenario) Rows(ranges bool) [][]string {
	ms := Metrics(s.Kind)
	head := []string{"impl"}
	for _, m := range ms {
		head = append(head, m.Name)
	}
	head = append(head, "spread")
	rows := [][]string{head}
	for _, impl := range s.Impls {
		row := []string{impl}
		for _, m := range ms {
			row = append(row, FormatValue(s.Median(impl, m)))
		}
		row = append(row, fmt.Sprintf("%.0f%%", 100*s.Spread(impl)))
		rows = append(rows, row)
	}
	for _, p := range s.RatioPairs() {
		row := []string{p[0] + "/" + p[1]}
		for _, m := range ms {
			if !m.Ratio || (m.NotFloor && p[1] == "floor") {
				row = append(row, "")
				continue
			}
			rr := s.RoundRatios(p[0], p[1], m)
			if len(rr) == 0 {
				row = append(row, "–")
				continue
			}
			cell := fmt.Sprintf("%.2f", report.Median(rr))
			if ranges && len(rr) > 1 {
				sort.Float64s(rr)
				cell += fmt.Sprintf(" (%.2f–%.2f)", rr[0], rr[len(rr)-1])
			}
			row = append(row, cell)
		}
		rows = append(rows, append(row, ""))
	}
	return rows
}

// FormatValue prints a median with as many digits as it needs.
func FormatValue(v float64) string {
	switch {
	case math.IsNaN(v):
		return "–"
	case v == math.Trunc(v) && math.Abs(v) < 1e9:
		return fmt.Sprintf("%.0f", v)
	case math.Abs(v) >= 100:
		return fmt.Sprintf("%.0f", v)
	case math.Abs(v) >= 10:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.2f", v)
	}
}

// SyscallGroups sums perf's per-syscall events into the table's columns.
var SyscallGroups = []struct {
	Name   string
	Events []string
}{
	{"read", []string{"read", "readv", "recvfrom", "recvmsg"}},
	{"write", []string{"write", "writev", "sendto", "sendmsg"}},
	{"epoll_wait", []string{"epoll_wait", "epoll_pwait", "epoll_pwait2"}},
	{"epoll_ctl", []string{"epoll_ctl"}},
	{"futex", []string{"futex"}},
	{"nanosleep", []string{"nanosleep", "clock_nanosleep"}},
	{"sched_yield", []string{"sched_yield"}},
	{"signals", []string{"tgkill", "rt_sigreturn", "getpid"}},
	{"accept", []string{"accept4", "accept"}},
	{"other", []string{"setsockopt", "getsockopt", "mmap", "munmap", "madvise", "close", "fcntl", "ioctl", "eventfd2", "getsockname"}},
}

// SyscallEvents lists every syscall the groups name.
func SyscallEvents() []string {
	var out []string
	for _, g := range SyscallGroups {
		out = append(out, g.Events...)
	}
	return out
}

// SyscallRows returns the syscall table of a scenario, per unit (request or
// connection), or nil when it has none.
func (s *Scenario) SyscallRows() [][]string {
	if len(s.Syscalls) == 0 {
		return nil
	}
	unit := "req"
	if s.Kind == KindIdle {
		unit = "conn"
	}
	head := []string{"impl (" + firstProcess(s) + ", per " + unit + ")"}
	for _, g := range SyscallGroups {
		head = append(head, g.Name)
	}
	head = append(head, "total", "context switches")
	rows := [][]string{head}
	for _, impl := range s.Impls {
		sc := s.Syscalls[impl]
		if sc == nil || sc.Units == 0 {
			continue
		}
		row := []string{impl}
		total := 0.0
		for _, g := range SyscallGroups {
			n := 0.0
			for _, e := range g.Events {
				n += sc.Counts["syscalls:sys_enter_"+e]
			}
			total += n
			row = append(row, fmt.Sprintf("%.3f", n/sc.Units))
		}
		row = append(row, fmt.Sprintf("%.3f", total/sc.Units), fmt.Sprintf("%.3f", sc.Counts["context-switches"]/sc.Units))
		rows = append(rows, row)
	}
	return rows
}

// SyscallsPer returns impl's syscalls (all the groups together) and context
// switches per unit (request or connection) in its perf-counted run, and
// whether it has one.
func (s *Scenario) SyscallsPer(impl string) (syscalls, switches float64, ok bool) {
	sc := s.Syscalls[impl]
	if sc == nil || sc.Units == 0 {
		return 0, 0, false
	}
	for _, e := range SyscallEvents() {
		syscalls += sc.Counts["syscalls:sys_enter_"+e]
	}
	return syscalls / sc.Units, sc.Counts["context-switches"] / sc.Units, true
}

func firstProcess(s *Scenario) string {
	for _, impl := range s.Impls {
		if sc := s.Syscalls[impl]; sc != nil {
			return sc.Process
		}
	}
	return ""
}

// WriteText prints rows aligned, for a terminal.
func WriteText(w io.Writer, rows [][]string) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	for _, r := range rows {
		fmt.Fprintln(tw, strings.Join(r, "\t")+"\t")
	}
	tw.Flush()
}

// WriteMarkdown prints rows as a Markdown table, the first row the header.
func WriteMarkdown(w io.Writer, rows [][]string) {
	for i, r := range rows {
		fmt.Fprintln(w, "| "+strings.Join(r, " | ")+" |")
		if i == 0 {
			sep := make([]string, len(r))
			for j := range sep {
				sep[j] = "---:"
			}
			sep[0] = ":---"
			fmt.Fprintln(w, "|"+strings.Join(sep, "|")+"|")
		}
	}
}
