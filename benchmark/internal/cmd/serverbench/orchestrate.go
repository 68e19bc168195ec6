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
	"text/tabwriter"
	"time"

	"github.com/cloudwego/netpoll/benchmark/internal/report"
)

// config is the orchestrator's flags.
type config struct {
	rounds                   int
	conns, size              int
	warmup, duration         time.Duration
	impls                    []string
	serverProcs, clientProcs int
	verbose                  bool
}

// runResult is one implementation's measurement in one round.
type runResult struct {
	qps, p50, p99, p999 float64 // latencies in µs
	cpuPerReq           float64 // server CPU µs per request
}

func orchestrate(args []string) error {
	var cfg config
	fs := flag.NewFlagSet("server", flag.ExitOnError)
	fs.IntVar(&cfg.rounds, "rounds", 5, "rounds; each runs every implementation once")
	fs.IntVar(&cfg.conns, "conns", 100, "client connections")
	fs.IntVar(&cfg.size, "size", 1024, "payload bytes per request")
	fs.DurationVar(&cfg.warmup, "warmup", time.Second, "unmeasured load before each measurement")
	fs.DurationVar(&cfg.duration, "duration", 3*time.Second, "measured time per run")
	impls := fs.String("impls", strings.Join(implOrder, ","), "implementations, comma-separated")
	fs.IntVar(&cfg.serverProcs, "server-procs", 0, "GOMAXPROCS of the server process (0: Go's default)")
	fs.IntVar(&cfg.clientProcs, "client-procs", 0, "GOMAXPROCS of the client process (0: Go's default)")
	fs.BoolVar(&cfg.verbose, "v", false, "print every run to stderr")
	fs.Parse(args)
	for _, name := range strings.Split(*impls, ",") {
		if servers[name] == nil {
			return fmt.Errorf("-impls: unknown %q", name)
		}
		cfg.impls = append(cfg.impls, name)
	}
	if cfg.rounds < 1 || cfg.conns < 1 || cfg.size < 0 || cfg.size > maxPayload {
		return errors.New("-rounds and -conns must be positive, -size within [0, 1 MiB]")
	}

	self, err := os.Executable()
	if err != nil {
		return err
	}
	env := report.Environment()
	fmt.Fprintf(os.Stderr, "%s\n%d implementations x %d rounds of %v+%v\n", env, len(cfg.impls), cfg.rounds, cfg.warmup, cfg.duration)
	res := make(map[string][]runResult)
	for r := 0; r < cfg.rounds; r++ {
		// Rotate the order so that no implementation always runs first or
		// right after the same other one.
		for k := range cfg.impls {
			name := cfg.impls[(r+k)%len(cfg.impls)]
			rr, err := runOnce(self, name, cfg)
			if err != nil {
				return fmt.Errorf("round %d, %s: %w", r+1, name, err)
			}
			res[name] = append(res[name], rr)
			if cfg.verbose {
				fmt.Fprintf(os.Stderr, "round %d %-5s %8.0f QPS  p50 %6.0fµs  p99 %6.0fµs  p999 %6.0fµs  server %5.1f µs CPU/req\n",
					r+1, name, rr.qps, rr.p50, rr.p99, rr.p999, rr.cpuPerReq)
			}
		}
		fmt.Fprintf(os.Stderr, "round %d/%d done\n", r+1, cfg.rounds)
	}
	fmt.Println(env)
	fmt.Printf("echo: %d connections, %d-byte header + %d-byte payload, closed loop; rounds=%d, %v warmup + %v measured each; medians; spread = (max-min)/median of QPS\n\n",
		cfg.conns, headerLen, cfg.size, cfg.rounds, cfg.warmup, cfg.duration)
	printServerTable(os.Stdout, cfg.impls, res)
	return nil
}

// runOnce starts the server and the client processes for one measurement.
func runOnce(self, name string, cfg config) (runResult, error) {
	srv := exec.Command(self, "serve", name)
	srv.Env = withProcs(cfg.serverProcs)
	srv.Stderr = os.Stderr
	stop, err := srv.StdinPipe()
	if err != nil {
		return runResult{}, err
	}
	out, err := srv.StdoutPipe()
	if err != nil {
		return runResult{}, err
	}
	if err := srv.Start(); err != nil {
		return runResult{}, err
	}
	defer func() {
		stop.Close() // the server shuts down when its stdin closes
		done := make(chan struct{})
		go func() { srv.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			srv.Process.Kill()
			<-done
		}
	}()
	sc := bufio.NewScanner(out)
	if !sc.Scan() {
		return runResult{}, errors.New("server printed no address")
	}
	addr, ok := strings.CutPrefix(sc.Text(), "listening ")
	if !ok {
		return runResult{}, fmt.Errorf("server said %q", sc.Text())
	}
	go io.Copy(io.Discard, out)
	return runClientProcess(self, addr, srv.Process.Pid, cfg)
}

// runClientProcess runs the client against addr and samples the server's CPU
// time when the client starts and stops measuring.
func runClientProcess(self, addr string, serverPID int, cfg config) (runResult, error) {
	cl := exec.Command(self, "client", "-addr", addr, "-conns", strconv.Itoa(cfg.conns),
		"-size", strconv.Itoa(cfg.size), "-warmup", cfg.warmup.String(), "-duration", cfg.duration.String())
	cl.Env = withProcs(cfg.clientProcs)
	cl.Stderr = os.Stderr
	out, err := cl.StdoutPipe()
	if err != nil {
		return runResult{}, err
	}
	if err := cl.Start(); err != nil {
		return runResult{}, err
	}
	var (
		cpu0, cpu1 time.Duration
		res        clientResult
		gotResult  bool
		scanErr    error
	)
	sc := bufio.NewScanner(out)
	for sc.Scan() && scanErr == nil {
		switch line := sc.Text(); line {
		case "measuring":
			cpu0, scanErr = processCPU(serverPID)
		case "done":
			cpu1, scanErr = processCPU(serverPID)
		default:
			scanErr = json.Unmarshal([]byte(line), &res)
			gotResult = scanErr == nil
		}
	}
	io.Copy(io.Discard, out)
	if err := cl.Wait(); err != nil {
		return runResult{}, fmt.Errorf("client: %w", err)
	}
	if scanErr != nil {
		return runResult{}, scanErr
	}
	if !gotResult || res.Requests == 0 {
		return runResult{}, errors.New("client completed no request")
	}
	n := float64(res.Requests)
	return runResult{
		qps:       n / res.Seconds,
		p50:       res.P50 / 1e3,
		p99:       res.P99 / 1e3,
		p999:      res.P999 / 1e3,
		cpuPerReq: float64((cpu1 - cpu0).Microseconds()) / n,
	}, nil
}

func withProcs(procs int) []string {
	env := os.Environ()
	if procs > 0 {
		env = append(env, "GOMAXPROCS="+strconv.Itoa(procs))
	}
	return env
}

func printServerTable(w io.Writer, impls []string, res map[string][]runResult) {
	fields := []struct {
		name string
		get  func(runResult) float64
	}{
		{"QPS", func(r runResult) float64 { return r.qps }},
		{"p50 µs", func(r runResult) float64 { return r.p50 }},
		{"p99 µs", func(r runResult) float64 { return r.p99 }},
		{"p999 µs", func(r runResult) float64 { return r.p999 }},
		{"server CPU µs/req", func(r runResult) float64 { return r.cpuPerReq }},
	}
	medians := make(map[string][]float64)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprint(tw, "impl\t")
	for _, f := range fields {
		fmt.Fprint(tw, f.name+"\t")
	}
	fmt.Fprintln(tw, "spread\t")
	for _, name := range impls {
		fmt.Fprint(tw, name+"\t")
		for _, f := range fields {
			v := make([]float64, len(res[name]))
			for i, r := range res[name] {
				v[i] = f.get(r)
			}
			m := report.Median(v)
			medians[name] = append(medians[name], m)
			if m >= 100 {
				fmt.Fprintf(tw, "%.0f\t", m)
			} else {
				fmt.Fprintf(tw, "%.1f\t", m)
			}
		}
		q := make([]float64, len(res[name]))
		for i, r := range res[name] {
			q[i] = r.qps
		}
		fmt.Fprintf(tw, "%.0f%%\t\n", 100*report.Spread(q))
	}
	// Ratios of ours to each other implementation (QPS: higher is better;
	// the rest: lower is better).
	for _, other := range impls {
		if other == "ours" || medians["ours"] == nil {
			continue
		}
		fmt.Fprintf(tw, "ours/%s\t", other)
		for i := range fields {
			fmt.Fprint(tw, report.Ratio(medians["ours"][i], medians[other][i])+"\t")
		}
		fmt.Fprintln(tw, "\t")
	}
	tw.Flush()
}
