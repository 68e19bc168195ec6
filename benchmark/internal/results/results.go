// Package results holds what the server suite measures, as the orchestrator
// writes it (JSON) and as the tables and the report show it.
package results

import (
	"encoding/json"
	"os"
	"time"
)

// Scenario kinds: what is measured.
const (
	// KindLoad: a fixed Go net load client against each server.
	KindLoad = "load"
	// KindClient: a fixed Go net server, and each client implementation.
	KindClient = "client"
	// KindIdle: silent connections opened to each server.
	KindIdle = "idle"
)

// Suite is one run of the server suite.
type Suite struct {
	Env       string    `json:"env"`
	Kernel    string    `json:"kernel"`
	Date      time.Time `json:"date"`
	LoadStart string    `json:"load_avg_start"` // /proc/loadavg: 1, 5, 15 minutes
	LoadEnd   string    `json:"load_avg_end"`
	Pinning   string    `json:"pinning"`
	Args      string    `json:"args"`
	Rounds    int       `json:"rounds"`
	Warmup    string    `json:"warmup"`
	Duration  string    `json:"duration"`
	// ExtraWarmup and ExtraDuration are the warmup and measured time of
	// the scenarios marked short (unpinned, open loop, CPU-heavy, Hertz).
	ExtraWarmup   string      `json:"extra_warmup,omitempty"`
	ExtraDuration string      `json:"extra_duration,omitempty"`
	Size          int         `json:"size"`
	Elapsed       string      `json:"elapsed"`
	Scenarios     []*Scenario `json:"scenarios"`
	// Buffer is the LinkBuffer comparison's output, when the report ran it.
	Buffer string `json:"buffer,omitempty"`
}

// Scenario is one scenario's measurements: Runs[impl][round].
type Scenario struct {
	Name  string           `json:"name"`
	Title string           `json:"title"`
	Kind  string           `json:"kind"`
	Impls []string         `json:"impls"`
	Runs  map[string][]Run `json:"runs"`
	// Setup says how the scenario's runs differ from the suite's usual ones
	// (placement, measured time, ...), or is empty.
	Setup string `json:"setup,omitempty"`
	// Rate: the requests per second an open-loop client sent.
	Rate float64 `json:"rate,omitempty"`
	// BurnIters: the iterations of the CPU-heavy handler's loop.
	BurnIters int `json:"burn_iters,omitempty"`
	// Syscalls, by implementation, from a separate run counted with perf
	// (absent when perf was unavailable or not asked for).
	Syscalls map[string]*Syscalls `json:"syscalls,omitempty"`
}

// Run is one implementation's measurement in one round.
type Run struct {
	// Err is why the run failed; a failed run is left out of the medians.
	Err string `json:"error,omitempty"`

	// Load and client kinds.
	QPS       float64 `json:"qps,omitempty"`
	P50       float64 `json:"p50_us,omitempty"`
	P99       float64 `json:"p99_us,omitempty"`
	P999      float64 `json:"p999_us,omitempty"`
	ServerCPU float64 `json:"server_cpu_us_per_req,omitempty"`
	ClientCPU float64 `json:"client_cpu_us_per_req,omitempty"`
	// Peak resident memory (VmHWM) of the processes, KiB.
	ServerPeakRSS float64 `json:"server_peak_rss_kib,omitempty"`
	ClientPeakRSS float64 `json:"client_peak_rss_kib,omitempty"`
	// Goroutines of the server (load, idle) or client (client kind) process.
	Goroutines float64 `json:"goroutines,omitempty"`
	// Times the server's (client kind: the client's) goroutines were
	// scheduled, per request, and the 99th percentile of how long they had
	// waited to run (µs), from runtime/metrics /sched/latencies:seconds over
	// the measured window.
	SchedPerReq float64 `json:"sched_per_req,omitempty"`
	SchedP99    float64 `json:"sched_p99_us,omitempty"`

	// Idle kind.
	Conns       int     `json:"conns,omitempty"`
	RSSPerConn  float64 `json:"rss_per_conn_kib,omitempty"` // (VmRSS after - before) / conns
	AcceptCPU   float64 `json:"accept_cpu_us_per_conn,omitempty"`
	ConnectTime float64 `json:"connect_s,omitempty"` // until the server accepted them all
}

// Syscalls are the counts of one perf-counted run.
type Syscalls struct {
	// Units is what the counts are divided by: requests (load, client) or
	// connections (idle) in the counted window.
	Units  float64            `json:"units"`
	Counts map[string]float64 `json:"counts"` // perf event name -> count
	// Process is "server" or "client": whose syscalls were counted.
	Process string `json:"process"`
}

// Save writes s as indented JSON.
func Save(path string, s *Suite) error {
	data, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(data, '\n'), 0o644)
}

// Load reads what Save wrote.
func Load(path string) (*Suite, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var s Suite
	return &s, json.Unmarshal(data, &s)
}
