package runner

import (
	"context"
	"os"
	"os/exec"
	"sync"
	"testing"
	"time"

	cgopool "github.com/cloudwego/gopkg/concurrency/gopool"
	"go.uber.org/goleak"
)

// TestMain fails the package when a test leaves a goroutine behind; the
// gopool workers wind down on their own once idle.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		goleak.IgnoreTopFunction("github.com/bytedance/gopkg/util/gopool.(*worker).run.func1"),
		// cloudwego gopool's workers, in TestCloudwegoPoolFromEnv's child only, idle on a ticker.
		goleak.IgnoreAnyFunction("github.com/cloudwego/gopkg/concurrency/gopool.(*GoPool).runWorker"),
		goleak.IgnoreAnyFunction("github.com/cloudwego/gopkg/concurrency/gopool.(*GoPool).runTicker"))
}

const waitFor = 10 * time.Second

// runAndWait runs f through Run with ctx and waits for it.
func runAndWait(t *testing.T, ctx context.Context) {
	t.Helper()
	done := make(chan struct{})
	Run(ctx, func() { close(done) })
	select {
	case <-done:
	case <-time.After(waitFor):
		t.Fatal("the task never ran")
	}
}

// The default runner (gopool) runs tasks, including with a nil ctx.
func TestDefaultRunsTasks(t *testing.T) {
	Reset()
	runAndWait(t, context.Background())
	runAndWait(t, nil)
	var wg sync.WaitGroup
	var mu sync.Mutex
	n := 0
	for i := 0; i < 100; i++ {
		wg.Add(1)
		Run(context.Background(), func() {
			defer wg.Done()
			mu.Lock()
			n++
			mu.Unlock()
		})
	}
	wg.Wait()
	if n != 100 {
		t.Fatalf("%d of 100 tasks ran", n)
	}
}

// Set installs a custom runner, which never sees a nil ctx; Set(nil) and
// Reset restore the default.
func TestSetAndReset(t *testing.T) {
	defer Reset()
	var got []context.Context
	Set(func(ctx context.Context, f func()) {
		got = append(got, ctx)
		f()
	})
	ran := 0
	Run(nil, func() { ran++ })
	Run(context.TODO(), func() { ran++ })
	if ran != 2 || len(got) != 2 {
		t.Fatalf("custom runner: ran %d, calls %d", ran, len(got))
	}
	for i, ctx := range got {
		if ctx == nil {
			t.Fatalf("call %d: the runner got a nil ctx", i)
		}
	}
	Set(nil)
	runAndWait(t, nil)
	if len(got) != 2 {
		t.Fatal("Set(nil) kept the custom runner")
	}
}

// UseGoroutines runs each task on its own goroutine.
func TestUseGoroutines(t *testing.T) {
	defer Reset()
	UseGoroutines()
	block := make(chan struct{})
	started := make(chan struct{}, 2)
	for i := 0; i < 2; i++ {
		Run(nil, func() {
			started <- struct{}{}
			<-block
		})
	}
	for i := 0; i < 2; i++ {
		select {
		case <-started:
		case <-time.After(waitFor):
			t.Fatal("tasks did not run concurrently")
		}
	}
	close(block)
}

// A panicking task does not kill the default runner's process (gopool
// recovers it) and later tasks still run.
func TestDefaultSurvivesPanic(t *testing.T) {
	Reset()
	done := make(chan struct{})
	Run(nil, func() {
		defer close(done)
		panic("task panic")
	})
	<-done
	runAndWait(t, nil)
}

// With USE_CLOUDWEGO_GOPOOL=true in the environment at start-up, the default
// runner is cloudwego gopool, as in the reference: a task's panic reaches the
// panic handler set on that pool. The check runs in a child process, since
// the variable is read once.
func TestCloudwegoPoolFromEnv(t *testing.T) {
	if os.Getenv("RUNNER_TEST_CHILD") == "" {
		cmd := exec.Command(os.Args[0], "-test.run=^TestCloudwegoPoolFromEnv$", "-test.count=1")
		cmd.Env = append(os.Environ(), "RUNNER_TEST_CHILD=1", "USE_CLOUDWEGO_GOPOOL=true")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("child: %v\n%s", err, out)
		}
		return
	}
	if !useCloudwegoPool {
		t.Fatal("USE_CLOUDWEGO_GOPOOL=true was not read")
	}
	got := make(chan interface{}, 1)
	cgopool.SetPanicHandler(func(_ context.Context, r interface{}) { got <- r })
	Reset()
	Run(nil, func() { panic("to cloudwego gopool") })
	select {
	case r := <-got:
		if r != "to cloudwego gopool" {
			t.Fatalf("the panic handler got %v", r)
		}
	case <-time.After(waitFor):
		t.Fatal("the panic never reached cloudwego gopool's handler")
	}
}
