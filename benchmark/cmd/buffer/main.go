// Command buffer compares this repository's LinkBuffer with the reference
// (cloudwego/netpoll v0.7.2) on the same loops in one binary. It prepares the
// reference first, then runs internal/cmd/bufferbench; flags pass through
// (see `go run ./cmd/buffer -h`).
package main

import (
	"os"

	"github.com/cloudwego/netpoll/benchmark/internal/refprep"
)

func main() {
	os.Exit(refprep.Launch("./internal/cmd/bufferbench", os.Args[1:]))
}
