package netpoll

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package when a test leaves a goroutine behind. The
// pollers and the gopool workers are long-lived by design, and so, for a
// moment, are the task queues' resident workers (they end after 100 ms
// without a task: residentLinger; connection_task_queue_test.go checks
// that they do, and mux/main_test.go, as a user's leak check would).
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, leakOptions()...)
}

func leakOptions() []goleak.Option {
	return []goleak.Option{
		goleak.IgnoreTopFunction("github.com/bytedance/gopkg/util/gopool.(*worker).run.func1"),
		goleak.IgnoreAnyFunction("github.com/cloudwego/netpoll.(*defaultPoll).Wait"),
		goleak.IgnoreTopFunction("github.com/cloudwego/netpoll.(*taskQueue).park"),
	}
}
