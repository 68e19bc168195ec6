package netpoll

import (
	"context"
	"crypto/tls"
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

	idleCloseTimeout time.Duration // WithIdleCloseTimeout
	tlsConfig        *tls.Config   // WithTLS; nil for plain connections
	tlsSet           bool          // WithTLS was given, with a nil config too
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

// WithIdleCloseTimeout makes the EventLoop close each connection it
// accepted that has neither received nor sent a byte for timeout; timeout
// <= 0 (the default) turns it off. It is an addition to the reference's
// API; WithIdleTimeout keeps its meaning (TCP keep-alive) and the two may
// be combined.
//
// The close is that of a peer close: the connection becomes inactive,
// input already buffered stays readable and a read needing more fails with
// ErrEOF, a Flush waiting on a full socket fails, OnDisconnect runs, then
// the close callbacks, and ReadStats counts it in IdleClosed. Silence is
// the whole test: a running handler, unread input or unsent output do not
// keep a connection open, so a peer that sends half a request and stops,
// or stops reading its answers, is closed too, and so is a connection
// whose handler works longer than timeout without a byte in or out. Choose
// timeout above the longest such pause.
//
// The clock is coarse: a connection is closed between timeout and 1.25 ×
// timeout after its last byte (later only if the process is starved of
// CPU; timeouts under 4 ms act as 4 ms). It costs no goroutine and no
// timer per connection, and no memory (the connection's allocation had
// room for it): each serving loop keeps one timer, which checks its
// connections every timeout/4, and each read or write makes one extra
// compare. Not available on windows (no EventLoop runs there).
func WithIdleCloseTimeout(timeout time.Duration) Option {
	return Option{func(o *options) { o.idleCloseTimeout = timeout }}
}

// WithTLS serves every accepted connection over TLS with config, through
// the standard library's crypto/tls (see the package documentation's TLS
// section and TLSConnectionState). The handshake runs on a Runner goroutine
// before OnConnect, bounded by the connection's read timeout (10 s when it
// has none); a failed or timed-out handshake closes the connection, and no
// OnConnect, OnRequest or OnDisconnect runs for it (its close callbacks
// do). Every handler and close callback gets the TLS connection, whose
// Reader yields plaintext and whose Writer encrypts at Flush. config is
// used as it is (not cloned) and must not be changed while the loop
// serves. A nil config, or one with neither Certificates nor
// GetCertificate nor GetConfigForClient, makes NewEventLoop fail.
func WithTLS(config *tls.Config) Option {
	return Option{func(o *options) { o.tlsConfig, o.tlsSet = config, true }}
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
