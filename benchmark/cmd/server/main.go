// Command server compares echo servers built on Go's net package, on the
// reference netpoll (cloudwego/netpoll v0.7.2) and on this repository's
// netpoll, driven by a load client in a separate process. It prepares the
// reference first, then runs internal/cmd/serverbench; flags pass through
// (see `go run ./cmd/server -h`).
package main

import (
	"os"

	"github.com/cloudwego/netpoll/benchmark/internal/refprep"
)

func main() {
	os.Exit(refprep.Launch("./internal/cmd/serverbench", os.Args[1:]))
}
