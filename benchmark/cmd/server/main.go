// Command server runs the server suite: servers built on Go's net package,
// on the reference netpoll (cloudwego/netpoll v0.7.2), on this repository's
// netpoll and a raw epoll floor, each in its own process and driven by a
// load client in another, over the scenarios echo (100 and 1000
// connections), idle-mixed, mux, client side, idle scale, echo in an open
// loop, a CPU-heavy handler and Hertz (GET and POST), several of them
// pinned and unpinned. It prepares the
// reference first, then runs internal/cmd/serverbench; flags pass through
// (see `go run ./cmd/server -h`). cmd/report runs it and writes the report.
package main

import (
	"os"

	"github.com/cloudwego/netpoll/benchmark/internal/refprep"
)

func main() {
	os.Exit(refprep.Launch("./internal/cmd/serverbench", os.Args[1:]))
}
