package netpoll

import (
	"net"
	"time"
)

// Reader is the nocopy read side of a connection or a LinkBuffer.
//
// On a Connection every method that needs k bytes blocks until k bytes are
// buffered, the read timeout or deadline passes (ErrReadTimeout; nothing is
// consumed and the connection stays open), the peer closes (ErrEOF) or the
// connection is closed locally (ErrConnClosed). Bytes already buffered are
// always readable, even after a close. On a LinkBuffer nothing blocks: a read
// that cannot be satisfied fails at once with a plain error.
//
// A Reader is for one goroutine at a time. Slices returned by Next and Peek
// point into the buffer and stay valid until the next Release; slices from
// ReadString, ReadBinary and Until (after Release) are the caller's forever.
// Every returned slice has cap == len, so append never writes into the buffer.
//
// Bad sizes: n <= 0 returns zero values and a nil error at once, on a
// Connection, a LinkBuffer and the Reader of NewReader alike (Slice: an
// empty Reader that works). On a LinkBuffer an n over Len is an error that
// consumes nothing; on a Connection an n larger than will ever arrive waits
// for the timeout or the close like any other. After a close,
// a LinkBuffer fails every read with an error matching ErrConnClosed, and a
// Connection does so once its buffered bytes are recycled.
type Reader interface {
	// Next returns the next n bytes and consumes them. The slice is valid until Release.
	Next(n int) (p []byte, err error)
	// Peek returns the next n bytes without consuming them. The slice may be
	// reused by the next consuming read and is valid until Release at the latest.
	Peek(n int) (buf []byte, err error)
	// Skip consumes the next n bytes.
	Skip(n int) (err error)
	// Until returns the bytes up to and including the first delim and consumes them.
	// On a LinkBuffer a missing delim is an error that consumes nothing; on a
	// Connection a failed wait returns every buffered byte, consumed, with the error.
	Until(delim byte) (line []byte, err error)
	// ReadString consumes n bytes and returns them as a new string.
	ReadString(n int) (s string, err error)
	// ReadBinary consumes n bytes and returns them in a new slice owned by the caller.
	ReadBinary(n int) (p []byte, err error)
	// ReadByte consumes and returns one byte. An empty LinkBuffer gives an error.
	ReadByte() (b byte, err error)
	// Slice consumes n bytes and returns them as a read-only Reader that shares
	// the memory, then releases the parent. The slice outlives the parent's
	// Release; its owner Releases or Closes it.
	Slice(n int) (r Reader, err error)
	// Release gives back the memory of everything consumed so far. Slices from
	// Next and Peek are invalid afterwards. After a close a Connection returns
	// nil and a LinkBuffer an error matching ErrConnClosed.
	Release() (err error)
	// Len is the number of readable bytes. It never blocks; a closed LinkBuffer has 0.
	Len() (length int)
}

// Writer is the nocopy write side of a connection or a LinkBuffer.
//
// Bytes are first staged (Malloc, WriteBinary, ...) and become visible only at
// Flush: readable on a LinkBuffer, sent on a Connection. A Writer is for one
// goroutine at a time. Memory returned by Malloc must be filled before Flush
// and not touched after it. WriteBinary and WriteString keep a reference to the
// caller's memory, without copying, when it is longer than
// BinaryInplaceThreshold: the caller must not change it until it is flushed.
//
// Bad sizes are errors that change nothing: Malloc of over 1 GiB,
// WriteBinary or WriteString of over 1 GiB, MallocAck of n < 0, over
// MallocLen or over 1 GiB, WriteDirect with remainCap over MallocLen.
// Malloc(n <= 0) returns (nil, nil); empty writes, and WriteDirect of an
// empty p or with remainCap < 0, do nothing and return nil. On a Connection every method but MallocLen fails
// with ErrConnClosed after a local Close or Detach; after a peer close staging
// may still succeed, and Flush fails with ErrConnClosed. A closed LinkBuffer
// fails them with an error matching ErrConnClosed.
type Writer interface {
	// Malloc reserves n bytes at the end of the staged region and returns them.
	Malloc(n int) (buf []byte, err error)
	// WriteString stages s.
	WriteString(s string) (n int, err error)
	// WriteBinary stages b.
	WriteBinary(b []byte) (n int, err error)
	// WriteByte stages one byte.
	WriteByte(b byte) (err error)
	// WriteDirect splices p, by reference, before the last remainCap staged bytes.
	WriteDirect(p []byte, remainCap int) error
	// MallocAck keeps the first n staged bytes and drops the rest.
	MallocAck(n int) (err error)
	// Append moves every byte of w (a *LinkBuffer) behind the staged region, without
	// copying: w's readable bytes count as flushed at once, its pending ones
	// stay pending (MallocLen grows by those only). w is unusable afterwards. A nil *LinkBuffer does nothing; any other
	// Writer, a nil one included, is an error, and so is a closed w (an error
	// that does not match ErrConnClosed: the receiver stays open).
	Append(w Writer) (err error)
	// Flush publishes the staged bytes. On a Connection it blocks until they are
	// all sent, the write timeout passes (ErrWriteTimeout) or the connection closes.
	Flush() (err error)
	// MallocLen is the number of staged, unflushed bytes.
	MallocLen() (length int)
}

// ReadWriter is both a Reader and a Writer.
type ReadWriter interface {
	Reader
	Writer
}

// Connection is a non-blocking connection driven by a poller. Reader() and
// Writer() return the connection itself, also after Close.
//
// Of the net.Conn methods: Close is idempotent and returns nil. Read with an
// empty p returns (0, nil); Write with an empty p only flushes what is
// staged and returns 0; after a close both fail as in Reader and Writer.
// LocalAddr and RemoteAddr stay valid after Close; they are nil when the
// socket has none (a NewFDConnection on a fd that is not a socket). A
// deadline in the past fails a read or Flush that has to wait at once with
// the timeout error; the zero time clears it.
type Connection interface {
	net.Conn

	// Reader returns the nocopy reader of the connection's input.
	Reader() Reader
	// Writer returns the nocopy writer of the connection's output.
	Writer() Writer
	// IsActive reports whether the connection is usable: false from the first
	// local Close or Detach, or the poller's detection of a hang-up, on.
	IsActive() bool
	// SetReadTimeout bounds every blocking read: d>0 sets it, 0 means wait
	// forever, d<0 keeps the current value. It always clears the read deadline
	// and returns nil, also after Close.
	SetReadTimeout(timeout time.Duration) error
	// SetWriteTimeout bounds every blocking Flush, like SetReadTimeout.
	SetWriteTimeout(timeout time.Duration) error
	// SetIdleTimeout turns on TCP keep-alive with idle and interval set to the
	// whole seconds of timeout, for TCP connections when that is at least 1.
	// It never closes a connection itself. Below one second, or on a unix
	// socket, it does nothing and returns nil; seconds the kernel refuses
	// (over 32767 on Linux) give its setsockopt error. Otherwise, after Close
	// (or Detach), it fails with an error matching ErrConnClosed and changes
	// no socket, whatever now has the fd number.
	SetIdleTimeout(timeout time.Duration) error
	// SetOnRequest replaces the request handler; nil is ignored. It returns nil.
	SetOnRequest(on OnRequest) error
	// AddCloseCallback registers a callback run once when the connection is
	// closed; callbacks run last added first. nil is ignored, and so is a
	// callback added after the callbacks ran. It returns nil.
	AddCloseCallback(callback CloseCallback) error
}

// Conn is a net.Conn with its file descriptor.
type Conn interface {
	net.Conn

	// Fd returns the file descriptor; after Close, the number it had.
	Fd() (fd int)
}

// Listener is a non-blocking net.Listener with its file descriptor. Accept
// returns (nil, nil) when no connection is pending, and after Close an error
// matching ErrConnClosed (ErrUnsupported for a udp listener, always).
// Otherwise it returns a plain Conn that no poller watches: its Read and
// Write are blocking system calls on its fd, and every byte the peer sends
// is the caller's (an EventLoop accepts and registers its connections
// itself). A second Close returns nil; Addr stays valid. Closing a listener
// an EventLoop serves unregisters it, and Serve waits for Shutdown.
type Listener interface {
	net.Listener

	// Fd returns the file descriptor: -1 for a udp listener, and after Close
	// the number it had.
	Fd() (fd int)
}

// Dialer dials connections driven by the pollers.
type Dialer interface {
	// DialConnection dials network ("tcp", "tcp4", "tcp6", "unix", ...) and
	// returns a Connection. timeout <= 0 means no timeout. Errors are those of
	// the package function DialConnection; on failure the Connection is nil.
	DialConnection(network, address string, timeout time.Duration) (connection Connection, err error)
	// DialTimeout is DialConnection returning a net.Conn.
	DialTimeout(network, address string, timeout time.Duration) (conn net.Conn, err error)
}

// CloseCallback is run once when its connection closes, after the last
// handler of the connection returned; callbacks run last added first (see
// Connection.AddCloseCallback and Close). Its error is ignored.
type CloseCallback func(connection Connection) error
