package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/cloudwego/netpoll/benchmark/internal/report"
	"github.com/cloudwego/netpoll/benchmark/internal/results"
)

// config is the orchestrator's flags.
type config struct {
	rounds                   int
	size                     int
	warmup, duration         time.Duration
	extraWarmup              time.Duration
	extraDuration            time.Duration
	idleConns                int
	tlsIdleConns             int
	muxConns, muxInflight    int
	callers, poolConns       int
	burn                     time.Duration
	openBase                 float64
	scenarios                []scenarioDef
	syscalls                 bool
	serverCPUs, clientCPUs   []int
	serverProcs, clientProcs int
	jsonPath                 string
	verbose                  bool
}

// scenarioDef describes a scenario: which server (mode) and which client.
type scenarioDef struct {
	name, title, kind, mode string
	impls                   []string
	client                  []string // client flags besides -addr, -size, -warmup, -duration
	// group: the scenarios of a group run their rounds interleaved, round
	// r of each (in an order rotated per round) before round r+1 of any.
	group string
	// unpinned: the server and the client share every CPU, each with
	// GOMAXPROCS = all of them, instead of being pinned to disjoint halves.
	unpinned bool
	// short: measured for -extra-duration instead of -duration.
	short bool
	// noSyscalls: no perf-counted run, even when perf works.
	noSyscalls bool
	// hertz: the server is the Hertz program (see hertz.go), not this one.
	hertz bool
	// openFrac: an open-loop scenario, at this fraction of the reference's
	// echo-100 throughput.
	openFrac float64
	// burn: the handler burns -burn of CPU per request.
	burn bool
}

var allImpls = []string{"gonet", "ref", "ours", "floor"}

// threeImpls are the implementations of the scenarios with no floor: the
// floor is a single inline handler loop, with nothing to say about HTTP, an
// open loop or handler parallelism.
var threeImpls = []string{"gonet", "ref", "ours"}

// openFracs are the rates of the open-loop scenarios, as fractions of the
// reference's saturated echo-100 throughput: from a nearly idle server,
// whose every request finds it asleep, to one close to busy.
var openFracs = []float64{0.05, 0.25, 0.50, 0.75}

func scenarioDefs(cfg *config) []scenarioDef {
	itoa := strconv.Itoa
	var defs []scenarioDef
	// The closed-loop echo scenarios, pinned, each with its unpinned twin.
	for _, e := range []struct{ name, title string }{
		{"echo-100", "echo: 100 connections, all busy, one request in flight each"},
		{"echo-1000", "echo: 1000 connections, all busy, one request in flight each"},
		{"idle-mixed", "idle-mixed: 1000 connections, 800 idle (connected, silent), 200 busy"},
	} {
		d := scenarioDef{name: e.name, title: e.title, kind: results.KindLoad, mode: modeEcho, impls: allImpls, group: e.name,
			client: []string{"-mode", clientPingPong, "-conns", "1000"}}
		switch e.name {
		case "echo-100":
			d.client = []string{"-mode", clientPingPong, "-conns", "100"}
		case "idle-mixed":
			d.client = append(d.client, "-busy", "200")
		}
		u := d
		u.name, u.title = d.name+"/unpinned", d.title+"; server and client unpinned, sharing every CPU"
		u.unpinned, u.short, u.noSyscalls = true, true, true
		defs = append(defs, d, u)
	}
	defs = append(defs,
		scenarioDef{name: "mux", title: fmt.Sprintf("mux: %d connections × %d requests in flight, a goroutine per request, responses batched (ShardQueue; Go net: a writer goroutine per connection)", cfg.muxConns, cfg.muxInflight),
			kind: results.KindLoad, mode: modeMux, impls: allImpls,
			client: []string{"-mode", clientMux, "-conns", itoa(cfg.muxConns), "-inflight", itoa(cfg.muxInflight)}},
		scenarioDef{name: "client", title: fmt.Sprintf("client side: %d callers sharing a pool of %d connections, one request in flight each, against a Go net server", cfg.callers, cfg.poolConns),
			kind: results.KindClient, mode: modeEcho, impls: threeImpls,
			client: []string{"-mode", clientPool, "-conns", itoa(cfg.poolConns), "-callers", itoa(cfg.callers)}},
		scenarioDef{name: "idle-scale", title: fmt.Sprintf("idle scale: %d idle connections", cfg.idleConns),
			kind: results.KindIdle, mode: modeEcho, impls: allImpls,
			client: []string{"-mode", clientIdle, "-conns", itoa(cfg.idleConns)}},
		scenarioDef{name: "idle-scale/idleclose", title: fmt.Sprintf("idle scale with idle close: %d idle connections, ours WithIdleCloseTimeout(time.Hour) (compare with ours in idle-scale)", cfg.idleConns),
			kind: results.KindIdle, mode: modeIdleClose, impls: oursOnly,
			client: []string{"-mode", clientIdle, "-conns", itoa(cfg.idleConns)}},
	)
	defs = append(defs,
		scenarioDef{name: "tls-echo", title: "TLS echo: 100 connections over TLS 1.3 (AES-128-GCM, P-256), all busy, one request in flight each; ours WithTLS vs Go net + crypto/tls",
			kind: results.KindLoad, mode: modeTLSEcho, impls: twoImpls,
			client: []string{"-mode", clientPingPong, "-conns", "100", "-tls"}},
		scenarioDef{name: "tls-idle", title: fmt.Sprintf("TLS idle: %d idle connections, each after its TLS 1.3 handshake", cfg.tlsIdleConns),
			kind: results.KindIdle, mode: modeTLSEcho, impls: twoImpls,
			client: []string{"-mode", clientIdle, "-conns", itoa(cfg.tlsIdleConns), "-tls"}},
	)
	for _, f := range openFracs {
		pct := int(f*100 + 0.5)
		defs = append(defs, scenarioDef{name: fmt.Sprintf("echo-open-%d", pct),
			// The rate is known once echo-100 has run; runGroup completes the title.
			title: fmt.Sprintf("echo, open loop: 100 connections sending %d%% of ref's echo-100 throughput", pct),
			kind:  results.KindLoad, mode: modeEcho, impls: threeImpls, group: "echo-open", short: true, openFrac: f,
			client: []string{"-mode", clientOpen, "-conns", "100"}})
	}
	defs = append(defs, scenarioDef{name: "cpu-heavy",
		title: fmt.Sprintf("CPU-heavy handler: echo on 100 connections, one request in flight each, the handler burning %v of CPU per request; server and client unpinned", cfg.burn),
		kind:  results.KindLoad, mode: modeEcho, impls: threeImpls, unpinned: true, short: true, noSyscalls: true, burn: true,
		client: []string{"-mode", clientPingPong, "-conns", "100"}})
	for _, unpinned := range []bool{false, true} {
		for _, m := range []struct{ method, what string }{{"GET", "GET /ping answering"}, {"POST", "POST /echo of"}} {
			d := scenarioDef{name: "hertz-" + strings.ToLower(m.method),
				title: fmt.Sprintf("Hertz v0.10.4: %s %d bytes, 100 keep-alive connections from Go's net/http client, one request in flight each (gonet: Hertz's standard transport)", m.what, cfg.size),
				kind:  results.KindLoad, impls: threeImpls, group: "hertz", short: true, hertz: true,
				client: []string{"-mode", clientHTTP, "-conns", "100", "-method", m.method}}
			if unpinned {
				d.name += "/unpinned"
				d.title += "; server and client unpinned, sharing every CPU"
				d.unpinned = true
			}
			defs = append(defs, d)
		}
	}
	return defs
}

// selectScenarios returns the scenarios -scenarios names, in its order: a
// scenario's name, or a group of them: hertz, echo-open, unpinned.
func selectScenarios(all []scenarioDef, names string) ([]scenarioDef, error) {
	if names == "" {
		return all, nil
	}
	var out []scenarioDef
	seen := map[string]bool{}
	for _, n := range strings.Split(names, ",") {
		n = strings.TrimSpace(n)
		var match []scenarioDef
		for _, d := range all {
			if d.name == n {
				match = []scenarioDef{d}
				break
			}
			if (d.group == n && n != d.name && !isScenario(all, n)) || (n == "unpinned" && d.unpinned) {
				match = append(match, d)
			}
		}
		if len(match) == 0 {
			return nil, fmt.Errorf("-scenarios: unknown %q", n)
		}
		for _, d := range match {
			if !seen[d.name] {
				seen[d.name] = true
				out = append(out, d)
			}
		}
	}
	return out, nil
}

func isScenario(all []scenarioDef, name string) bool {
	for _, d := range all {
		if d.name == name {
			return true
		}
	}
	return false
}

// groups splits scenarios into the lists that run together: the members of
// a group, in the order of the group's first member.
func groups(defs []scenarioDef) [][]scenarioDef {
	var out [][]scenarioDef
	at := map[string]int{}
	for _, d := range defs {
		key := d.group
		if key == "" {
			key = "=" + d.name
		}
		i, ok := at[key]
		if !ok {
			i = len(out)
			at[key] = i
			out = append(out, nil)
		}
		out[i] = append(out[i], d)
	}
	return out
}

func orchestrate(args []string) error {
	cfg := &config{}
	fs := flag.NewFlagSet("server", flag.ExitOnError)
	fs.IntVar(&cfg.rounds, "rounds", 5, "rounds; each runs every implementation once per scenario")
	fs.IntVar(&cfg.size, "size", 1024, "payload bytes per request")
	fs.DurationVar(&cfg.warmup, "warmup", time.Second, "unmeasured load before each measurement")
	fs.DurationVar(&cfg.duration, "duration", 3*time.Second, "measured time per run")
	fs.DurationVar(&cfg.extraWarmup, "extra-warmup", 500*time.Millisecond, "warmup of the unpinned, open-loop, CPU-heavy and Hertz scenarios")
	fs.DurationVar(&cfg.extraDuration, "extra-duration", 2*time.Second, "measured time per run of the unpinned, open-loop, CPU-heavy and Hertz scenarios")
	fs.DurationVar(&cfg.burn, "burn", 50*time.Microsecond, "cpu-heavy: CPU the handler burns per request")
	fs.Float64Var(&cfg.openBase, "open-base", 0, "echo-open-*: the QPS their rates are fractions of (0: ref's echo-100 median in this run, or one run of it)")
	fs.IntVar(&cfg.idleConns, "idle-conns", 15000, "idle-scale: connections")
	fs.IntVar(&cfg.tlsIdleConns, "tls-idle-conns", 2000, "tls-idle: connections")
	fs.IntVar(&cfg.muxConns, "mux-conns", 4, "mux: connections")
	fs.IntVar(&cfg.muxInflight, "mux-inflight", 256, "mux: requests in flight per connection")
	fs.IntVar(&cfg.callers, "callers", 100, "client: concurrent callers")
	fs.IntVar(&cfg.poolConns, "pool", 100, "client: connections in the pool")
	scen := fs.String("scenarios", "", "scenarios to run, comma-separated, or groups of them: hertz, echo-open, unpinned (default: all)")
	impls := fs.String("impls", "", "implementations to run, comma-separated (default: all of each scenario's)")
	syscalls := fs.String("syscalls", "auto", "count syscalls per request with perf in one extra run per implementation: on, off, auto (on if perf works)")
	pin := fs.Bool("pin", true, "pin the server and the client to disjoint CPUs")
	serverCPUs := fs.String("server-cpus", "", "CPUs of the server process (default: the first half of ours)")
	clientCPUs := fs.String("client-cpus", "", "CPUs of the client process (default: the second half)")
	fs.IntVar(&cfg.serverProcs, "server-procs", 0, "GOMAXPROCS of the server process (0: Go's default, the CPUs it may use)")
	fs.IntVar(&cfg.clientProcs, "client-procs", 0, "GOMAXPROCS of the client process (0: Go's default)")
	fs.StringVar(&cfg.jsonPath, "json", "", "also write the results to this JSON file")
	quick := fs.Bool("quick", false, "short runs: -rounds 3 -warmup 300ms -duration 1s -extra-warmup 200ms -extra-duration 500ms -syscalls off (unless given)")
	fs.BoolVar(&cfg.verbose, "v", false, "print every run to stderr")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: go run ./cmd/server [flags]\n\nScenarios:")
		for _, d := range scenarioDefs(&config{size: 1024, idleConns: 15000, tlsIdleConns: 2000, muxConns: 4, muxInflight: 256, callers: 100, poolConns: 100, burn: 50 * time.Microsecond}) {
			fmt.Fprintf(fs.Output(), "  %-20s %s\n", d.name, d.title)
		}
		fmt.Fprintln(fs.Output(), "\nImplementations: gonet (Go's net), ref (cloudwego/netpoll v0.7.2), ours, floor (raw epoll, one goroutine)\n\nFlags:")
		fs.PrintDefaults()
	}
	fs.Parse(args)
	if *quick {
		given := map[string]bool{}
		fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
		if !given["rounds"] {
			cfg.rounds = 3
		}
		if !given["warmup"] {
			cfg.warmup = 300 * time.Millisecond
		}
		if !given["duration"] {
			cfg.duration = time.Second
		}
		if !given["extra-warmup"] {
			cfg.extraWarmup = 200 * time.Millisecond
		}
		if !given["extra-duration"] {
			cfg.extraDuration = 500 * time.Millisecond
		}
		if !given["syscalls"] {
			*syscalls = "off"
		}
	}
	if cfg.rounds < 1 || cfg.size < 0 || cfg.size > maxPayload || cfg.duration <= 0 || cfg.extraDuration <= 0 || cfg.extraWarmup < 0 || cfg.burn <= 0 {
		return errors.New("-rounds, -duration, -extra-duration and -burn must be positive, -size within [0, 1 MiB]")
	}

	// Scenarios and implementations.
	var err error
	if cfg.scenarios, err = selectScenarios(scenarioDefs(cfg), *scen); err != nil {
		return err
	}
	if *impls != "" {
		keep := map[string]bool{}
		for _, n := range strings.Split(*impls, ",") {
			if servers[n] == nil {
				return fmt.Errorf("-impls: unknown %q", n)
			}
			keep[n] = true
		}
		for i := range cfg.scenarios {
			var l []string
			for _, n := range cfg.scenarios[i].impls {
				if keep[n] {
					l = append(l, n)
				}
			}
			cfg.scenarios[i].impls = l
		}
	}

	switch *syscalls {
	case "on", "auto":
		err := perfUsable()
		cfg.syscalls = err == nil
		if err != nil && *syscalls == "on" {
			return fmt.Errorf("-syscalls on: %w", err)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "no syscall counts:", err)
		}
	case "off":
	default:
		return fmt.Errorf("-syscalls: want on, off or auto")
	}

	// Pinning.
	if *pin {
		cpus := allowedCPUs()
		if *serverCPUs != "" {
			if cfg.serverCPUs, err = parseCPUList(*serverCPUs); err != nil {
				return err
			}
		} else if len(cpus) >= 2 {
			cfg.serverCPUs = cpus[:len(cpus)/2]
		}
		if *clientCPUs != "" {
			if cfg.clientCPUs, err = parseCPUList(*clientCPUs); err != nil {
				return err
			}
		} else if len(cpus) >= 2 {
			cfg.clientCPUs = cpus[len(cpus)/2:]
		}
	}

	self, err := os.Executable()
	if err != nil {
		return err
	}
	o := &orch{cfg: cfg, self: self}
	for _, d := range cfg.scenarios {
		if d.hertz && o.hertzBins == nil && o.hertzErr == nil {
			fmt.Fprintln(os.Stderr, "building the Hertz servers")
			if o.hertzBins, o.hertzErr = buildHertz(); o.hertzErr != nil {
				fmt.Fprintln(os.Stderr, "hertz:", o.hertzErr)
			}
		}
		if d.burn && o.burnIters == 0 {
			o.burnIters = calibrateBurn(cfg.burn)
			fmt.Fprintf(os.Stderr, "cpu-heavy: %d iterations of the burn loop take %v here\n", o.burnIters, cfg.burn)
		}
	}
	suite := &results.Suite{
		Env:       report.Environment(),
		Kernel:    kernelRelease(),
		Date:      time.Now().UTC(),
		LoadStart: loadAverage(),
		Pinning:   fmt.Sprintf("server on CPU %s, client on CPU %s", formatCPUList(cfg.serverCPUs), formatCPUList(cfg.clientCPUs)),
		Args:      shownArgs(args),
		Rounds:    cfg.rounds,
		Warmup:    cfg.warmup.String(),
		Duration:  cfg.duration.String(),
		Size:      cfg.size,
	}
	suite.ExtraWarmup, suite.ExtraDuration = cfg.extraWarmup.String(), cfg.extraDuration.String()
	fmt.Fprintf(os.Stderr, "%s\n%s; load average %s; %d rounds of %v+%v\n",
		suite.Env, suite.Pinning, suite.LoadStart, cfg.rounds, cfg.warmup, cfg.duration)
	fmt.Printf("%s\n%s\n%s; payload %d bytes; rounds=%d, %v warmup + %v measured; medians over rounds;\n"+
		"ratios: median of the per-round ratios (lowest-highest round); spread: (max-min)/median of the first column\n",
		suite.Env, suite.Kernel, suite.Pinning, cfg.size, cfg.rounds, cfg.warmup, cfg.duration)
	start := time.Now()
	for _, g := range groups(cfg.scenarios) {
		for _, s := range o.runGroup(g) {
			suite.Scenarios = append(suite.Scenarios, s)
			fmt.Printf("\n## %s\n%s\n", s.Name, s.Title)
			if s.Setup != "" {
				fmt.Println(s.Setup)
			}
			fmt.Println()
			results.WriteText(os.Stdout, s.Rows(true))
			if rows := s.SyscallRows(); rows != nil {
				fmt.Println()
				results.WriteText(os.Stdout, rows)
			}
		}
		if cfg.jsonPath != "" { // after every group, in case a later one fails
			suite.LoadEnd, suite.Elapsed = loadAverage(), time.Since(start).Round(time.Second).String()
			if err := results.Save(cfg.jsonPath, suite); err != nil {
				return err
			}
		}
	}
	suite.LoadEnd, suite.Elapsed = loadAverage(), time.Since(start).Round(time.Second).String()
	fmt.Printf("\nload average %s at the start, %s at the end; %s\n", suite.LoadStart, suite.LoadEnd, suite.Elapsed)
	if cfg.jsonPath != "" {
		return results.Save(cfg.jsonPath, suite)
	}
	return nil
}

type orch struct {
	cfg  *config
	self string
	// The Hertz servers by implementation (gonet: the reference's build,
	// on Hertz's standard transport), or why they could not be built.
	hertzBins map[string]string
	hertzErr  error
	// burnIters: the iterations of burn that take -burn (cpu-heavy).
	burnIters int
	// echoRefQPS: the reference's median echo-100 throughput, the base of
	// the open-loop rates, once known.
	echoRefQPS float64
}

// runGroup runs the rounds of a group of scenarios, interleaved, then their
// syscall counts. A run that fails is recorded with its error and left out
// of the medians.
func (o *orch) runGroup(defs []scenarioDef) []*results.Scenario {
	out := make([]*results.Scenario, len(defs))
	for i, d := range defs {
		s := &results.Scenario{Name: d.name, Title: d.title, Kind: d.kind, Impls: d.impls, Runs: map[string][]results.Run{}}
		var setup []string
		if d.unpinned {
			setup = append(setup, fmt.Sprintf("server and client unpinned: both on CPU %s, GOMAXPROCS=%d each", formatCPUList(allowedCPUs()), len(allowedCPUs())))
		}
		if d.short {
			setup = append(setup, fmt.Sprintf("%v warmup + %v measured per run", o.cfg.extraWarmup, o.cfg.extraDuration))
		}
		if d.openFrac > 0 {
			base := o.openBase()
			defs[i].client = append(append([]string(nil), d.client...), "-rate", strconv.FormatFloat(base*d.openFrac, 'f', 0, 64))
			s.Rate = base * d.openFrac
			s.Title += fmt.Sprintf(" (%.0f req/s)", s.Rate)
			setup = append(setup, "latency from the time each request was due to be sent")
		}
		if d.burn {
			s.BurnIters = o.burnIters
			setup = append(setup, fmt.Sprintf("the burn loop: %d iterations, calibrated to %v at the start", o.burnIters, o.cfg.burn))
		}
		if d.hertz && o.hertzErr != nil {
			setup = append(setup, "Hertz build failed: "+o.hertzErr.Error())
		}
		if len(setup) > 0 {
			s.Setup = strings.Join(setup, "; ")
		}
		out[i] = s
	}
	for r := 0; r < o.cfg.rounds; r++ {
		for j := range defs {
			// Rotate the order of the scenarios and of the
			// implementations, so that none always runs first or right
			// after the same other one.
			di := (r + j) % len(defs)
			d, s := defs[di], out[di]
			for k := range d.impls {
				impl := d.impls[(r+k)%len(d.impls)]
				run, _, err := o.run(d, impl, false)
				if err != nil {
					run = results.Run{Err: err.Error()}
					fmt.Fprintf(os.Stderr, "%s round %d %s: %v\n", d.name, r+1, impl, err)
				} else if o.cfg.verbose {
					fmt.Fprintf(os.Stderr, "%s round %d %-5s %s\n", d.name, r+1, impl, describe(d.kind, run))
				}
				s.Runs[impl] = append(s.Runs[impl], run)
			}
		}
		names := make([]string, len(defs))
		for j, d := range defs {
			names[j] = d.name
		}
		fmt.Fprintf(os.Stderr, "%s: round %d/%d done\n", strings.Join(names, ", "), r+1, o.cfg.rounds)
	}
	for i, d := range defs {
		if d.name == "echo-100" {
			if q := out[i].Median("ref", results.Metrics(d.kind)[0]); q > 0 {
				o.echoRefQPS = q
			}
		}
		if !o.cfg.syscalls || d.noSyscalls {
			continue
		}
		out[i].Syscalls = map[string]*results.Syscalls{}
		for _, impl := range d.impls {
			_, sc, err := o.run(d, impl, true)
			if err != nil {
				fmt.Fprintf(os.Stderr, "%s syscall count %s: %v\n", d.name, impl, err)
				continue
			}
			out[i].Syscalls[impl] = sc
		}
		fmt.Fprintf(os.Stderr, "%s: syscalls counted\n", d.name)
	}
	return out
}

// openBase returns the reference's saturated echo-100 throughput: its median
// over the rounds of echo-100 if that ran, otherwise one run measured now.
func (o *orch) openBase() float64 {
	if o.cfg.openBase > 0 {
		return o.cfg.openBase
	}
	if o.echoRefQPS > 0 {
		return o.echoRefQPS
	}
	for _, d := range scenarioDefs(o.cfg) {
		if d.name != "echo-100" {
			continue
		}
		run, _, err := o.run(d, "ref", false)
		if err != nil || run.QPS <= 0 {
			fmt.Fprintf(os.Stderr, "echo-100 ref, the base of the open-loop rates: %v; using 10000 req/s\n", err)
			return 10000
		}
		fmt.Fprintf(os.Stderr, "echo-100 ref, the base of the open-loop rates: %.0f req/s\n", run.QPS)
		o.echoRefQPS = run.QPS
	}
	return o.echoRefQPS
}

func describe(kind string, r results.Run) string {
	if kind == results.KindIdle {
		return fmt.Sprintf("%d conns: %.2f KiB/conn, %.0f goroutines, %.1f µs CPU/conn, peak %.1f MiB, %.2fs",
			r.Conns, r.RSSPerConn, r.Goroutines, r.AcceptCPU, r.ServerPeakRSS/1024, r.ConnectTime)
	}
	return fmt.Sprintf("%8.0f QPS  p50 %6.0fµs  p99 %6.0fµs  p999 %6.0fµs  server %5.1f µs/req  client %5.1f µs/req  %.0f goroutines  %.2f sched/req  sched p99 %.0fµs",
		r.QPS, r.P50, r.P99, r.P999, r.ServerCPU, r.ClientCPU, r.Goroutines, r.SchedPerReq, r.SchedP99)
}

func (o *orch) run(d scenarioDef, impl string, withPerf bool) (results.Run, *results.Syscalls, error) {
	if d.kind == results.KindIdle {
		return o.runIdle(d, impl, withPerf)
	}
	return o.runLoad(d, impl, withPerf)
}

// proc is a child process: the server or the client.
type proc struct {
	name  string
	cmd   *exec.Cmd
	stdin io.WriteCloser
	lines chan string
	pid   int
}

// placement is where a scenario's server or client process runs: on cpus
// (nil: any) with GOMAXPROCS procs (0: Go's default).
type placement struct {
	cpus  []int
	procs int
}

func (o *orch) serverPlace(d scenarioDef) placement {
	if d.unpinned {
		return placement{nil, len(allowedCPUs())}
	}
	return placement{o.cfg.serverCPUs, o.cfg.serverProcs}
}

func (o *orch) clientPlace(d scenarioDef) placement {
	if d.unpinned {
		return placement{nil, len(allowedCPUs())}
	}
	return placement{o.cfg.clientCPUs, o.cfg.clientProcs}
}

// start starts this program with args (or, with bin set, that program),
// placed at pl.
func (o *orch) start(name, bin string, args []string, pl placement) (*proc, error) {
	if bin == "" {
		bin = o.self
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = os.Environ()
	procs, cpus := pl.procs, pl.cpus
	if procs > 0 {
		cmd.Env = append(cmd.Env, "GOMAXPROCS="+strconv.Itoa(procs))
	}
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := startPinned(cmd, cpus); err != nil {
		return nil, err
	}
	p := &proc{name: name, cmd: cmd, stdin: stdin, lines: make(chan string, 64), pid: cmd.Process.Pid}
	go func() {
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			p.lines <- sc.Text()
		}
		io.Copy(io.Discard, out)
		close(p.lines)
	}()
	return p, nil
}

// expect waits for the process's next output line, which must start with prefix.
func (p *proc) expect(prefix string, timeout time.Duration) (string, error) {
	select {
	case l, ok := <-p.lines:
		if !ok {
			return "", fmt.Errorf("%s exited while we waited for %q", p.name, prefix)
		}
		if !strings.HasPrefix(l, prefix) {
			return "", fmt.Errorf("%s said %q, want %q", p.name, l, prefix)
		}
		return l, nil
	case <-time.After(timeout):
		return "", fmt.Errorf("%s: no %q within %v", p.name, prefix, timeout)
	}
}

// finish closes the process's standard input, which tells it to stop, and
// waits for it, killing it if it takes longer than timeout.
func (p *proc) finish(timeout time.Duration) error {
	p.stdin.Close()
	done := make(chan error, 1)
	go func() { done <- p.cmd.Wait() }()
	select {
	case err := <-done:
		return err
	case <-time.After(timeout):
		p.cmd.Process.Kill()
		<-done
		return fmt.Errorf("%s killed after %v", p.name, timeout)
	}
}

// serverStats is a server process's answer to "stats".
type serverStats struct {
	goroutines, accepted int
	// sched: goroutines scheduled since the last mark; schedP50, schedP99:
	// how long they waited to run, µs.
	sched              int64
	schedP50, schedP99 float64
}

// stats asks a server process for its goroutines, accepted connections and
// scheduling since the last mark.
func (p *proc) stats() (st serverStats, err error) {
	if _, err := io.WriteString(p.stdin, "stats\n"); err != nil {
		return st, err
	}
	l, err := p.expect("stats ", 10*time.Second)
	if err != nil {
		return st, err
	}
	_, err = fmt.Sscanf(l, "stats goroutines=%d accepted=%d sched=%d schedp50=%g schedp99=%g",
		&st.goroutines, &st.accepted, &st.sched, &st.schedP50, &st.schedP99)
	return st, err
}

// mark starts a server's scheduling window and returns its goroutines.
func (p *proc) mark() (goroutines int, err error) {
	if _, err := io.WriteString(p.stdin, "mark\n"); err != nil {
		return 0, err
	}
	l, err := p.expect("mark ", 10*time.Second)
	if err != nil {
		return 0, err
	}
	_, err = fmt.Sscanf(l, "mark goroutines=%d", &goroutines)
	return goroutines, err
}

// startServer starts the server of scenario d for impl and returns it with
// the address it listens on.
func (o *orch) startServer(d scenarioDef, impl string) (*proc, string, error) {
	bin, args := "", []string{"serve", impl, d.mode}
	if d.burn {
		args = append(args, strconv.Itoa(o.burnIters))
	}
	if d.hertz {
		if o.hertzErr != nil {
			return nil, "", o.hertzErr
		}
		transport, build := "netpoll", impl
		if impl == "gonet" {
			transport, build = "standard", "ref"
		}
		bin = o.hertzBins[build]
		args = []string{"-transport", transport, "-size", strconv.Itoa(o.cfg.size), "-name", "hertz-" + impl}
	}
	srv, err := o.start("server", bin, args, o.serverPlace(d))
	if err != nil {
		return nil, "", err
	}
	l, err := srv.expect("listening ", 30*time.Second)
	if err != nil {
		srv.finish(5 * time.Second)
		return nil, "", err
	}
	return srv, strings.TrimPrefix(l, "listening "), nil
}

// runLoad measures one implementation under load: the server's or (client
// kind) the client's.
func (o *orch) runLoad(d scenarioDef, impl string, withPerf bool) (run results.Run, sys *results.Syscalls, err error) {
	serverImpl, clientArgs := impl, d.client
	if d.kind == results.KindClient {
		serverImpl, clientArgs = "gonet", append(append([]string(nil), d.client...), "-impl", impl)
	}
	srv, addr, err := o.startServer(d, serverImpl)
	if err != nil {
		return run, nil, err
	}
	defer func() {
		if e := srv.finish(20 * time.Second); e != nil && err == nil {
			err = fmt.Errorf("server: %w", e)
		}
	}()
	warmup, duration := o.cfg.warmup, o.cfg.duration
	if d.short {
		warmup, duration = o.cfg.extraWarmup, o.cfg.extraDuration
	}
	measured := duration
	if withPerf {
		// Counting needs time to attach: let the client run on, and
		// tell it to stop once counted.
		duration += 5 * time.Minute
	}
	args := append([]string{"client", "-addr", addr, "-size", strconv.Itoa(o.cfg.size),
		"-warmup", warmup.String(), "-duration", duration.String()}, clientArgs...)
	cl, err := o.start("client", "", args, o.clientPlace(d))
	if err != nil {
		return run, nil, err
	}
	clientDone := false
	defer func() {
		if !clientDone {
			cl.cmd.Process.Kill()
			cl.finish(5 * time.Second)
		}
	}()
	if _, err := cl.expect("connected", 2*time.Minute); err != nil {
		return run, nil, err
	}
	if _, err := cl.expect("measuring", warmup+time.Minute); err != nil {
		return run, nil, err
	}
	sCPU0, err1 := processCPU(srv.pid)
	cCPU0, err2 := processCPU(cl.pid)
	if err := errors.Join(err1, err2); err != nil {
		return run, nil, err
	}
	if d.kind != results.KindClient {
		g, err := srv.mark()
		if err != nil {
			return run, nil, err
		}
		run.Goroutines = float64(g)
	}
	if withPerf {
		// Count the syscalls over a window as long as half the measured
		// one, and the requests the client completed in it.
		target, who := srv.pid, "server"
		if d.kind == results.KindClient {
			target, who = cl.pid, "client"
		}
		sys, err = o.countSyscalls(target, who, cl, measured/2)
		if err != nil {
			return run, nil, err
		}
		if _, err := io.WriteString(cl.stdin, "stop\n"); err != nil {
			return run, nil, err
		}
	}
	if _, err := cl.expect("done", duration+time.Minute); err != nil {
		return run, nil, err
	}
	sCPU1, err1 := processCPU(srv.pid)
	cCPU1, err2 := processCPU(cl.pid)
	var st serverStats
	if d.kind != results.KindClient {
		if st, err = srv.stats(); err != nil {
			return run, nil, err
		}
	}
	sHWM, err3 := processStatus(srv.pid, "VmHWM")
	cHWM, err4 := processStatus(cl.pid, "VmHWM")
	if err := errors.Join(err1, err2, err3, err4); err != nil {
		return run, nil, err
	}
	line, err := cl.expect("{", 2*time.Minute)
	// (The client waits for its standard input to close before exiting.)
	if err != nil {
		return run, nil, err
	}
	var res clientResult
	if err := json.Unmarshal([]byte(line), &res); err != nil {
		return run, nil, err
	}
	clientDone = true
	if err := cl.finish(30 * time.Second); err != nil {
		return run, nil, fmt.Errorf("client: %w", err)
	}
	if res.Requests == 0 {
		return run, nil, errors.New("client completed no request")
	}
	n := float64(res.Requests)
	run.QPS = n / res.Seconds
	run.P50, run.P99, run.P999 = res.P50/1e3, res.P99/1e3, res.P999/1e3
	run.ServerCPU = float64((sCPU1 - sCPU0).Microseconds()) / n
	run.ClientCPU = float64((cCPU1 - cCPU0).Microseconds()) / n
	run.ServerPeakRSS, run.ClientPeakRSS = sHWM, cHWM
	run.SchedPerReq, run.SchedP99 = float64(st.sched)/n, st.schedP99
	if d.kind == results.KindClient {
		run.Goroutines = float64(res.Goroutines)
		run.SchedPerReq, run.SchedP99 = float64(res.Sched)/n, res.SchedP99
	}
	return run, sys, nil
}

// runIdle opens the scenario's idle connections to one server and measures
// what they cost it.
func (o *orch) runIdle(d scenarioDef, impl string, withPerf bool) (run results.Run, sys *results.Syscalls, err error) {
	srv, addr, err := o.startServer(d, impl)
	if err != nil {
		return run, nil, err
	}
	defer func() {
		if e := srv.finish(60 * time.Second); e != nil && err == nil {
			err = fmt.Errorf("server: %w", e)
		}
	}()
	time.Sleep(300 * time.Millisecond) // let it settle
	rss0, err := processStatus(srv.pid, "VmRSS")
	if err != nil {
		return run, nil, err
	}
	var pc *perfCount
	if withPerf {
		if pc, err = startPerf(srv.pid); err != nil {
			return run, nil, err
		}
		defer pc.stop()
		if err := pc.enable(); err != nil {
			return run, nil, err
		}
	}
	cpu0, err := processCPU(srv.pid)
	if err != nil {
		return run, nil, err
	}
	t0 := time.Now()
	args := append([]string{"client", "-addr", addr}, d.client...)
	cl, err := o.start("client", "", args, o.clientPlace(d))
	if err != nil {
		return run, nil, err
	}
	defer cl.finish(60 * time.Second)
	if _, err := cl.expect("connected", 2*time.Minute); err != nil {
		return run, nil, err
	}
	want := o.cfg.idleConns
	if d.mode == modeTLSEcho {
		want = o.cfg.tlsIdleConns
	}
	for {
		st, err := srv.stats()
		if err != nil {
			return run, nil, err
		}
		if n := st.accepted; n >= want {
			break
		}
		if time.Since(t0) > 2*time.Minute {
			return run, nil, fmt.Errorf("server accepted %d of %d connections", st.accepted, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
	run.ConnectTime = time.Since(t0).Seconds()
	cpu1, err := processCPU(srv.pid)
	if err != nil {
		return run, nil, err
	}
	if pc != nil {
		if err := pc.disable(); err != nil {
			return run, nil, err
		}
		counts, err := pc.stop()
		if err != nil {
			return run, nil, err
		}
		sys = &results.Syscalls{Units: float64(want), Counts: counts, Process: "server"}
	}
	time.Sleep(time.Second) // let registrations and lazy allocations finish
	st, err := srv.stats()
	if err != nil {
		return run, nil, err
	}
	g := st.goroutines
	rss1, err1 := processStatus(srv.pid, "VmRSS")
	hwm, err2 := processStatus(srv.pid, "VmHWM")
	if err := errors.Join(err1, err2); err != nil {
		return run, nil, err
	}
	run.Conns = want
	run.RSSPerConn = (rss1 - rss0) / float64(want)
	run.AcceptCPU = float64((cpu1 - cpu0).Microseconds()) / float64(want)
	run.Goroutines = float64(g)
	run.ServerPeakRSS = hwm
	return run, sys, nil
}

// countSyscalls counts the syscalls of process pid while the client cl
// completes requests, for window (half the measured time).
func (o *orch) countSyscalls(pid int, who string, cl *proc, window time.Duration) (*results.Syscalls, error) {
	pc, err := startPerf(pid)
	if err != nil {
		return nil, err
	}
	defer pc.stop()
	if err := pc.enable(); err != nil {
		return nil, err
	}
	n0, err := cl.count()
	if err != nil {
		return nil, err
	}
	time.Sleep(window)
	if err := pc.disable(); err != nil {
		return nil, err
	}
	n1, err := cl.count()
	if err != nil {
		return nil, err
	}
	counts, err := pc.stop()
	if err != nil {
		return nil, err
	}
	if n1 <= n0 {
		return nil, errors.New("no request completed while counting syscalls")
	}
	return &results.Syscalls{Units: float64(n1 - n0), Counts: counts, Process: who}, nil
}

// count asks a load client for the requests it has completed so far.
func (p *proc) count() (int64, error) {
	if _, err := io.WriteString(p.stdin, "count\n"); err != nil {
		return 0, err
	}
	l, err := p.expect("count ", 10*time.Second)
	if err != nil {
		return 0, err
	}
	var n int64
	_, err = fmt.Sscanf(l, "count %d", &n)
	return n, err
}

// shownArgs is the command line for the report, without -json and its file.
func shownArgs(args []string) string {
	var out []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "-json" || a == "--json" {
			i++
			continue
		}
		if strings.HasPrefix(a, "-json=") || strings.HasPrefix(a, "--json=") {
			continue
		}
		out = append(out, a)
	}
	return strings.Join(out, " ")
}
