// Command genref writes netpoll_ref.go, the reference's copy of
// netpoll_ours.go: the same code with the import paths pointed at the
// reference's alias and the identifier suffix Ours turned into Ref. Run by
// `go generate` in the serverbench directory.
package main

import (
	"fmt"
	"os"

	"github.com/cloudwego/netpoll/benchmark/internal/cmd/serverbench/genref/gen"
)

func main() {
	src, err := os.ReadFile("netpoll_ours.go")
	if err == nil {
		err = os.WriteFile("netpoll_ref.go", gen.Ref(src), 0o644)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "genref:", err)
		os.Exit(1)
	}
}
