// Package runner holds the task runner shared by netpoll and netpoll/mux.
package runner

import (
	"context"
	"os"
	"strconv"
	"sync/atomic"

	bgopool "github.com/bytedance/gopkg/util/gopool"
	cgopool "github.com/cloudwego/gopkg/concurrency/gopool"
)

// Func runs f, usually on another goroutine. It must accept a nil ctx.
type Func = func(ctx context.Context, f func())

// runner is one setting: the function and whether it is the default.
type runner struct {
	run       Func
	isDefault bool
}

var current atomic.Pointer[runner]

func init() { Reset() }

// Set replaces the runner; nil restores the default (gopool).
func Set(f Func) {
	if f == nil {
		Reset()
		return
	}
	current.Store(&runner{run: f})
}

// Reset restores the default runner: bytedance gopool's CtxGo, or
// cloudwego gopool's when the environment variable USE_CLOUDWEGO_GOPOOL
// is a true value (strconv.ParseBool) at start-up, as in the reference, so
// that a panic handler set on either pool sees the handlers' panics.
func Reset() {
	pool := bgopool.CtxGo
	if useCloudwegoPool {
		pool = cgopool.CtxGo
	}
	current.Store(&runner{run: func(ctx context.Context, task func()) {
		if ctx == nil {
			ctx = context.Background()
		}
		pool(ctx, task)
	}, isDefault: true})
}

var useCloudwegoPool, _ = strconv.ParseBool(os.Getenv("USE_CLOUDWEGO_GOPOOL"))

// UseGoroutines makes every task a new goroutine (`go f()`).
func UseGoroutines() {
	current.Store(&runner{run: func(_ context.Context, task func()) { go task() }})
}

// IsDefault reports whether the runner is the default one, gopool.
func IsDefault() bool { return current.Load().isDefault }

// Run runs f with the current runner. A nil ctx becomes context.Background().
func Run(ctx context.Context, f func()) {
	if ctx == nil {
		ctx = context.Background()
	}
	current.Load().run(ctx, f)
}
