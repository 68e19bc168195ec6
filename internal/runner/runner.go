// Package runner holds the task runner shared by netpoll and netpoll/mux.
package runner

import (
	"context"
	"sync/atomic"

	"github.com/bytedance/gopkg/util/gopool"
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

// Reset restores the default runner, bytedance gopool.
func Reset() {
	current.Store(&runner{run: func(ctx context.Context, task func()) {
		if ctx == nil {
			ctx = context.Background()
		}
		gopool.CtxGo(ctx, task)
	}, isDefault: true})
}

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
