// Command serverbench is the server suite: it compares servers (and clients)
// built on Go's net package, on the reference netpoll (cloudwego/netpoll
// v0.7.2), on this repository's netpoll, and a floor (raw epoll, one
// goroutine), over the scenarios of scenarioDefs: echo with 100 and 1000
// busy connections, 1000 connections of which 800 idle, mux (few
// connections, many requests in flight), the client side, 15,000 idle
// connections; echo in an open loop at 25, 50 and 75 % of the reference's
// echo-100 throughput; a handler burning 50 µs of CPU per request; and a
// Hertz v0.10.4 server (GET and POST) built on each netpoll (see hertz.go).
//
// Every server and every client runs in a process of its own, the server
// pinned to some CPUs and the client to the others, except in the unpinned
// scenarios (echo-100/unpinned, ..., cpu-heavy), where both share every CPU.
// The implementations take turns round by round, and the scenarios of a
// group (a scenario and its unpinned twin, the Hertz ones, the open-loop
// ones) interleave their rounds; per run it records the client's QPS and latency
// percentiles, the CPU time per request of the server and of the client
// (utime+stime from /proc/<pid>/stat over the measured window), the peak RSS
// (VmHWM) and the goroutines; for idle connections, the server's RSS per
// connection (VmRSS before and after), goroutines and CPU per accepted
// connection. With perf available, one extra run per implementation counts
// the syscalls per request (tracepoints). It prints the medians and the
// per-round ratios, and with -json writes everything for cmd/report.
//
// Run it through ../../../cmd/server, which prepares the reference. The same
// binary is the server ("serve IMPL MODE") and the client ("client ...").
package main

import (
	"fmt"
	"os"
)

func main() {
	var err error
	switch {
	case len(os.Args) > 1 && os.Args[1] == "serve":
		err = runServe(os.Args[2:])
	case len(os.Args) > 1 && os.Args[1] == "client":
		err = runClient(os.Args[2:])
	default:
		err = orchestrate(os.Args[1:])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "serverbench:", err)
		os.Exit(1)
	}
}

//go:generate go run ./genref
