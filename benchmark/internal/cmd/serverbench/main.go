// Command serverbench compares echo servers on Go's net package, the reference
// netpoll (cloudwego/netpoll v0.7.2) and this repository's netpoll: the
// scenario "echo, 100 connections", a 4-byte length header and a 1 KiB
// payload, which the server decodes and answers with a newly built response.
//
// Each server runs in its own process, and so does the load client (Go net,
// one request in flight per connection). The implementations take turns
// round by round; per round and implementation it records the client's QPS
// and latency percentiles and the server's CPU time per request (utime+stime
// from /proc/<pid>/stat over the measured window), and it prints the medians.
// On a small machine client and server share the cores, so QPS measures the
// pair; CPU per request is the server's own cost.
//
// Run it through ../../../cmd/server, which prepares the reference. The same
// binary is the server ("serve IMPL") and the client ("client -addr ...").
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
