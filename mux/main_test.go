package mux

import (
	"fmt"
	"os"
	"testing"

	"go.uber.org/goleak"
)

// TestMain runs the shared test server (where the platform has one) around
// the tests, then fails the package if a goroutine was left behind. The
// netpoll pollers and the gopool workers live for the whole process.
func TestMain(m *testing.M) {
	if err := startServer(); err != nil {
		fmt.Fprintln(os.Stderr, "mux tests:", err)
		os.Exit(1)
	}
	code := m.Run()
	if err := stopServer(); err != nil {
		fmt.Fprintln(os.Stderr, "mux tests: stopping the server:", err)
		code = 1
	}
	if code == 0 {
		if err := goleak.Find(
			goleak.IgnoreTopFunction("github.com/bytedance/gopkg/util/gopool.(*worker).run.func1"),
			goleak.IgnoreAnyFunction("github.com/cloudwego/netpoll.(*defaultPoll).Wait"),
		); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}
