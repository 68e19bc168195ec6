//go:build darwin || freebsd || linux

package netpoll

import (
	"context"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// connection is the one implementation behind every Connection: accepted by
// an EventLoop, dialed (inside TCPConnection and UnixConnection) or made by
// NewFDConnection. See doc.go for the goroutines that touch it.
type connection struct {
	*connParts  // op, in and out; set by init, never changed
	fd          fdRef
	state       connState
	isTCP       bool
	needConnect bool // the first task runs OnConnect; set by register before any task, then the task's

	inMu sync.Mutex // guards in's structure: the poller's fill and the reader's calls
	// outMu serialises the Writer: Malloc, Write and Flush (which holds it
	// while it waits for the socket to drain), and the recycling at close.
	outMu sync.Mutex

	wait     atomic.Pointer[waiters] // made by the first call that blocks
	waitRead atomic.Int64            // bytes the blocked reader needs; 0 when none waits
	arrivals atomic.Uint64           // counts input arrivals and the hang-up: "is there news?"
	readSize int32                   // the poller's next read size
	pause    atomic.Uint32           // inputPaused, pauseOff; changed under waiters.ioMu
	// idleEpoch is the idle clock's epoch at the last byte in or out
	// (eventloop_idle.go); kept only under WithIdleCloseTimeout.
	idleEpoch atomic.Uint32

	readTimeout, writeTimeout   atomic.Int64 // nanoseconds; 0 is none
	readDeadline, writeDeadline atomic.Int64 // unix nanoseconds; 0 is none

	ctx          atomic.Pointer[context.Context] // handed to the handlers
	onRequest    atomic.Pointer[OnRequest]
	onConnect    atomic.Pointer[OnConnect]
	onDisconnect atomic.Pointer[OnDisconnect]

	closeMu        sync.Mutex
	closeCallbacks *callbackNode // last added first; nil once they ran

	local, remote net.Addr
	server        *server // the EventLoop server that accepted it; nil otherwise
}

// connParts are the parts of a connection that are not comparable, so
// cannot be its fields: TCPConnection and UnixConnection, which embed a
// connection, are comparable. The operator table keeps &op.
type connParts struct {
	op        FDOperator // registered with one poller; op.handler is the connection
	in        LinkBuffer // filled by the poller, read by the user
	out       LinkBuffer
	runTaskFn func() // c.task, made once: handing it to the Runner allocates nothing
}

var _ Connection = &connection{}

// newConnection wraps a connected, non-blocking fd. It is not registered
// yet. The connection and its parts are one allocation, of 512 bytes: mind
// the size class when adding a field to either.
func newConnection(fd int, local, remote net.Addr) (*connection, error) {
	poll, err := pollmanager.pick()
	if err != nil {
		return nil, err
	}
	both := &struct {
		c connection
		p connParts
	}{}
	both.c.init(fd, local, remote, &both.p, poll)
	return &both.c, nil
}

// init sets up a zero connection in place with the zero parts p (it is
// embedded in TCPConnection and UnixConnection, and must never be copied),
// on poll, which the caller picked and which never changes.
func (c *connection) init(fd int, local, remote net.Addr, p *connParts, poll *defaultPoll) {
	c.connParts = p
	p.op.FD, p.op.poll, p.op.handler = fd, poll, c
	p.in.lean = true
	p.out.lean = true
	c.readSize = int32(defaultBufferSize())
	c.local, c.remote = local, remote
	c.fd.fd = int32(fd)
	c.runTaskFn = c.task
	_, c.isTCP = remote.(*net.TCPAddr)
	c.state.init(false)
	c.setContext(context.Background())
}

// Reader returns the connection itself.
func (c *connection) Reader() Reader { return c }

// Writer returns the connection itself.
func (c *connection) Writer() Writer { return c }

// Fd returns the file descriptor. After Detach it belongs to the caller;
// after Close it is the number the closed fd had.
func (c *connection) Fd() (fd int) { return c.fd.num() }

// LocalAddr returns the local address.
func (c *connection) LocalAddr() (addr net.Addr) { return c.local }

// RemoteAddr returns the peer's address.
func (c *connection) RemoteAddr() (addr net.Addr) { return c.remote }

// SetReadTimeout: d>0 sets the read timeout, 0 removes it, d<0 keeps it. It
// always clears the read deadline.
func (c *connection) SetReadTimeout(timeout time.Duration) error {
	if timeout >= 0 {
		c.readTimeout.Store(int64(timeout))
	}
	c.readDeadline.Store(0)
	return nil
}

// SetWriteTimeout: d>0 sets the write timeout, 0 removes it, d<0 keeps it. It
// always clears the write deadline.
func (c *connection) SetWriteTimeout(timeout time.Duration) error {
	if timeout >= 0 {
		c.writeTimeout.Store(int64(timeout))
	}
	c.writeDeadline.Store(0)
	return nil
}

// SetDeadline sets both deadlines; the zero time clears them, and a time in
// the past fails the next wait at once. It returns nil.
func (c *connection) SetDeadline(t time.Time) error {
	c.readDeadline.Store(unixNano(t))
	c.writeDeadline.Store(unixNano(t))
	return nil
}

// SetReadDeadline bounds blocking reads; it overrides the read timeout. The zero time clears it.
func (c *connection) SetReadDeadline(t time.Time) error {
	c.readDeadline.Store(unixNano(t))
	return nil
}

// SetWriteDeadline bounds Flush; it overrides the write timeout. The zero time clears it.
func (c *connection) SetWriteDeadline(t time.Time) error {
	c.writeDeadline.Store(unixNano(t))
	return nil
}

// SetIdleTimeout turns on TCP keep-alive probes every whole second of
// timeout, after as long idle. It does nothing for non-TCP connections or
// below one second, and it never closes the connection itself. Errors are
// SetKeepAlive's; once the connection is closed or detached it fails with
// an error matching ErrConnClosed.
func (c *connection) SetIdleTimeout(timeout time.Duration) error {
	if secs := int(timeout / time.Second); c.isTCP && secs >= 1 {
		return c.SetKeepAlive(secs)
	}
	return nil
}

// SetKeepAlive turns on TCP keep-alive with idle time and interval of second
// seconds. On a unix socket, and for second < 1, it does nothing and returns
// nil, as in the reference; on TCP the errors are those of the package
// function SetKeepAlive, and once the connection is closed or detached it
// fails with an error matching ErrConnClosed: it holds a reference to the fd
// meanwhile, so it never changes a socket that reused the fd number.
func (c *connection) SetKeepAlive(second int) error {
	if !c.isTCP || second < 1 {
		return nil
	}
	if !c.fd.acquire() {
		return Exception(ErrConnClosed, "when set keep-alive")
	}
	defer c.fd.release()
	return SetKeepAlive(c.fd.num(), second)
}

// SetOnRequest replaces the request handler (nil is ignored). With input
// already buffered it starts a task at once.
func (c *connection) SetOnRequest(onRequest OnRequest) error {
	if onRequest == nil {
		return nil
	}
	c.onRequest.Store(&onRequest)
	if c.in.Len() > 0 {
		c.arrivals.Add(1)
		c.startTask()
	}
	return nil
}

// SetOnConnect replaces the connect handler (nil is ignored). It matters only
// before the connection is registered, that is in OnPrepare.
func (c *connection) SetOnConnect(onConnect OnConnect) error {
	if onConnect != nil {
		c.onConnect.Store(&onConnect)
	}
	return nil
}

// SetOnDisconnect replaces the disconnect handler (nil is ignored).
func (c *connection) SetOnDisconnect(onDisconnect OnDisconnect) error {
	if onDisconnect != nil {
		c.onDisconnect.Store(&onDisconnect)
	}
	return nil
}

// AddCloseCallback registers callback to run once at close, last added
// first. nil is ignored; a callback added after the callbacks ran never runs.
func (c *connection) AddCloseCallback(callback CloseCallback) error {
	if callback == nil {
		return nil
	}
	c.closeMu.Lock()
	if c.state.phase() != phaseDone {
		c.closeCallbacks = &callbackNode{fn: callback, next: c.closeCallbacks}
	}
	c.closeMu.Unlock()
	return nil
}

// callbackNode is one close callback in a list, last added first.
type callbackNode struct {
	fn   CloseCallback
	next *callbackNode
}

// unixNano is t in unix nanoseconds, and the zero time 0: no deadline.
func unixNano(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}
