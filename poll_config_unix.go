//go:build darwin || freebsd || linux

package netpoll

import (
	"context"
	"io"

	"github.com/cloudwego/netpoll/internal/runner"
)

// Configure applies config: PollerNum > 0 sets the number of pollers (see
// SetNumLoops), BufferSize > 0 the first read size, a non-nil Runner and
// LoggerOutput replace the current ones, LoadBalance >= 0 sets the balancer
// (so the zero Config resets it to RoundRobin; unknown values mean
// RoundRobin), and AlwaysNoCopyRead is always copied. Other values out of
// those ranges are ignored and a BufferSize over 8 MiB counts as 8 MiB. A
// PollerNum over 65536 (256 on macOS and FreeBSD) gives an error and
// nothing is applied; otherwise it returns nil. Call it from init, before
// the first connection.
func Configure(config Config) (err error) {
	if config.PollerNum > 0 {
		if err = pollmanager.setNumLoops(config.PollerNum); err != nil {
			return err
		}
	}
	if config.BufferSize > 0 {
		bufferSize.Store(int64(min(config.BufferSize, maxReadSize)))
	}
	if config.Runner != nil {
		runner.Set(config.Runner)
	}
	if config.LoggerOutput != nil {
		setLoggerOutput(config.LoggerOutput)
	}
	if config.LoadBalance >= 0 {
		pollmanager.setLoadBalance(config.LoadBalance)
	}
	noCopyRead.Store(config.AlwaysNoCopyRead)
	return nil
}

// Initialize starts the pollers now instead of at the first connection. A
// poller that cannot start is logged, not reported; once they run, a second
// call does nothing.
func Initialize() {
	if _, err := pollmanager.pick(); err != nil {
		logf("initialize: %v", err)
	}
}

// SetNumLoops sets the number of pollers; n < 1 or n > 65536 (256 on macOS
// and FreeBSD, where each poller blocks an OS thread) gives an error
// reading "set invalid numLoops[n]" (n the number given) and changes nothing. Missing pollers start at the next connection or
// Initialize, all or none: when the process is out of fds for them, that
// connection fails with the error and no fd is kept, and a smaller n set
// afterwards works.
//
// Deprecated: use Configure.
func SetNumLoops(numLoops int) error { return pollmanager.setNumLoops(numLoops) }

// SetLoadBalance chooses the poller balancer; unknown values mean RoundRobin.
// It returns nil.
//
// Deprecated: use Configure.
func SetLoadBalance(lb LoadBalance) error {
	pollmanager.setLoadBalance(lb)
	return nil
}

// SetLoggerOutput sends the package's log lines to w (nil is ignored).
//
// Deprecated: use Configure.
func SetLoggerOutput(w io.Writer) {
	if w != nil {
		setLoggerOutput(w)
	}
}

// SetRunner sets the task runner (nil restores the default). f must accept
// a nil ctx, and it gets the panics of handlers (see Config.Runner).
//
// Deprecated: use Configure.
func SetRunner(f func(ctx context.Context, f func())) { runner.Set(f) }

// DisableGopool runs every task on a new goroutine instead of the pool.
// Nothing then recovers a handler's panic, so it ends the process.
//
// Deprecated: use Configure with a Runner.
func DisableGopool() error {
	runner.UseGoroutines()
	return nil
}
