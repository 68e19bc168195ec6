package netpoll

import (
	"context"
	"io"
	"log"
	"os"
	"sync/atomic"
	"time"
)

// Config is the package-wide configuration applied by Configure.
type Config struct {
	// PollerNum, when > 0, is the number of pollers, at most 65536 (256
	// on macOS and FreeBSD; see SetNumLoops).
	PollerNum int
	// BufferSize, when > 0, is the first read size of each connection
	// (default 8192; at most 8 MiB, the largest read size).
	BufferSize int
	// Runner, when set, runs every handler task, one call per task with the
	// connection's context; it must accept a nil ctx. The default, bytedance
	// gopool, is given workers that each run a poller's queued tasks in turn
	// (a handler that blocks never holds up the others), and gets a handler's
	// panic with the connection's context.
	Runner func(ctx context.Context, f func())
	// LoggerOutput, when set, receives the package's log lines.
	LoggerOutput io.Writer
	// LoadBalance, when >= 0, chooses the poller of new connections.
	LoadBalance LoadBalance
	Feature
}

// Feature holds optional behaviours.
type Feature struct {
	// AlwaysNoCopyRead lets ReadString and ReadBinary return buffer memory
	// instead of a copy when n >= 64 bytes lie in one node; that node then
	// never returns to the pool.
	AlwaysNoCopyRead bool
}

// Option configures an EventLoop.
type Option struct {
	f func(*options)
}

type options struct {
	onPrepare    OnPrepare
	onConnect    OnConnect
	onDisconnect OnDisconnect
	readTimeout  time.Duration
	writeTimeout time.Duration
	idleTimeout  time.Duration
}

// WithOnPrepare sets the handler run on the poller when a connection is
// accepted; nil means none.
func WithOnPrepare(onPrepare OnPrepare) Option {
	return Option{func(o *options) { o.onPrepare = onPrepare }}
}

// WithOnConnect sets the handler run once a connection is registered; nil
// means none.
func WithOnConnect(onConnect OnConnect) Option {
	return Option{func(o *options) { o.onConnect = onConnect }}
}

// WithOnDisconnect sets the handler run when the peer closes a connection;
// nil means none.
func WithOnDisconnect(onDisconnect OnDisconnect) Option {
	return Option{func(o *options) { o.onDisconnect = onDisconnect }}
}

// WithReadTimeout sets each accepted connection's read timeout (before
// OnPrepare); timeout <= 0 means none.
func WithReadTimeout(timeout time.Duration) Option {
	return Option{func(o *options) { o.readTimeout = timeout }}
}

// WithWriteTimeout sets each accepted connection's write timeout (before
// OnPrepare); timeout <= 0 means none.
func WithWriteTimeout(timeout time.Duration) Option {
	return Option{func(o *options) { o.writeTimeout = timeout }}
}

// WithIdleTimeout turns on TCP keep-alive for accepted connections (see
// Connection.SetIdleTimeout); it never closes idle connections. A timeout
// under one second leaves keep-alive off; the error of one the kernel
// refuses is dropped.
func WithIdleTimeout(timeout time.Duration) Option {
	return Option{func(o *options) { o.idleTimeout = timeout }}
}

const defaultReadSize = 8192

var (
	bufferSize atomic.Int64
	noCopyRead atomic.Bool
	logger     atomic.Pointer[log.Logger]
)

func init() {
	bufferSize.Store(defaultReadSize)
	setLoggerOutput(os.Stderr)
}

func defaultBufferSize() int { return int(bufferSize.Load()) }

func setLoggerOutput(w io.Writer) {
	logger.Store(log.New(w, "NETPOLL: ", log.LstdFlags))
}

func logf(format string, args ...interface{}) { logger.Load().Printf(format, args...) }
