// Package runner holds the task runner shared by netpoll and netpoll/mux.
package runner

import (
	"context"
	"sync/atomic"

	"github.com/bytedance/gopkg/util/gopool"
)

// Func runs f, usually on another goroutine. It must accept a nil ctx.
type Func = func(ctx context.Context, f func())

var current atomic.Pointer[Func]

func init() { Reset() }

// Set replaces the runner; nil restores the default (gopool).
func Set(f Func) {
	if f == nil {
		Reset()
		return
	}
	current.Store(&f)
}

// Reset restores the default runner, bytedance gopool.
func Reset() {
	var f Func = func(ctx context.Context, task func()) {
		if ctx == nil {
			ctx = context.Background()
		}
		gopool.CtxGo(ctx, task)
	}
	current.Store(&f)
}

// UseGoroutines makes every task a new goroutine (`go f()`).
func UseGoroutines() {
	var f Func = func(_ context.Context, task func()) { go task() }
	current.Store(&f)
}

// Run runs f with the current runner. A nil ctx becomes context.Background().
func Run(ctx context.Context, f func()) {
	if ctx == nil {
		ctx = context.Background()
	}
	(*current.Load())(ctx, f)
}
