// Command refprep prepares benchmark/.ref, the reference netpoll v0.7.2 under
// the module path netpollref.local/netpoll. It is what `go generate` runs in
// the benchmark module, and is idempotent.
package main

import (
	"fmt"
	"os"

	"github.com/cloudwego/netpoll/benchmark/internal/refprep"
)

func main() {
	root, err := refprep.ModuleRoot()
	if err == nil {
		err = refprep.Ensure(root)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "refprep:", err)
		os.Exit(1)
	}
}
