package main

// The idle-scale/idleclose scenario: the idle-scale connections served by
// this repository's netpoll with WithIdleCloseTimeout(time.Hour), to show
// what the option costs an idle connection (memory, goroutines, accept CPU)
// next to plain ours in idle-scale. The reference has no idle close, so it
// is not in it; this file is not copied into netpoll_ref.go.

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/cloudwego/netpoll"
)

// modeIdleClose is the echo mode with the idle close on.
const modeIdleClose = "echo-idleclose"

// oursOnly is the implementation of the idle-close scenario.
var oursOnly = []string{"ours"}

// startNetpollOursIdleClose serves echo as startNetpollOurs does, with
// WithIdleCloseTimeout(time.Hour): no connection of a run is ever closed by
// it, so what is measured is the bookkeeping alone.
func startNetpollOursIdleClose(accepted *atomic.Int64) (server, error) {
	ln, err := netpoll.CreateListener("tcp", "127.0.0.1:0")
	if err != nil {
		return server{}, err
	}
	evl, err := netpoll.NewEventLoop(func(_ context.Context, c netpoll.Connection) error {
		return serveEchoOurs(c.Reader(), c.Writer())
	}, netpoll.WithIdleCloseTimeout(time.Hour), netpoll.WithOnPrepare(func(c netpoll.Connection) context.Context {
		accepted.Add(1)
		return context.Background()
	}))
	if err != nil {
		ln.Close()
		return server{}, err
	}
	go evl.Serve(ln)
	stop := func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return evl.Shutdown(ctx)
	}
	return server{addr: ln.Addr().String(), stop: stop}, nil
}
