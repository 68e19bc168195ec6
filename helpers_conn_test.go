//go:build darwin || freebsd || linux

package netpoll

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// Sockets and connections for the tests: listening, dialing, a dialed
// connection with its peer, looking inside a connection, and reading from
// a standard-library peer.

// shortTempDir returns a new directory with a path short enough for a unix
// socket name (the kernel allows about 100 bytes); it is removed at cleanup.
func shortTempDir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "np")
	require.NoError(t, err)
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	return dir
}

// testAddress returns an address to listen on for network.
func testAddress(t testing.TB, network string) string {
	t.Helper()
	switch network {
	case "tcp", "tcp4":
		return "127.0.0.1:0"
	case "unix":
		return shortTempDir(t) + "/s"
	}
	t.Fatalf("no test address for %q", network)
	return ""
}

// listenStd opens a standard-library listener on network, closed at cleanup.
func listenStd(t testing.TB, network string) net.Listener {
	t.Helper()
	ln, err := net.Listen(network, testAddress(t, network))
	require.NoError(t, err)
	t.Cleanup(func() { _ = ln.Close() })
	return ln
}

// dialStd dials addr on network with the standard library, closed at cleanup.
func dialStd(t testing.TB, network, addr string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout(network, addr, longWait)
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// acceptPending polls ln's non-blocking Accept until it returns the
// connection a peer made, and closes that connection at cleanup.
func acceptPending(t testing.TB, ln Listener) net.Conn {
	t.Helper()
	var c net.Conn
	eventually(t, func() bool {
		var err error
		c, err = ln.Accept()
		require.NoError(t, err)
		return c != nil
	}, "Accept to return the pending connection")
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// npConn is what every connection of this package is: a Connection that is
// its own Reader and Writer (docs/contract.md C0.3).
type npConn interface {
	Connection
	Reader
	Writer
}

// asNP returns c as an npConn, failing the test if it is not one.
func asNP(t testing.TB, c Connection) npConn {
	t.Helper()
	nc, ok := c.(npConn)
	require.Truef(t, ok, "%T is not its own Reader and Writer", c)
	return nc
}

// dialNP dials addr on network with DialConnection, closed at cleanup.
func dialNP(t testing.TB, network, addr string) npConn {
	t.Helper()
	c, err := DialConnection(network, addr, longWait)
	require.NoError(t, err)
	require.NotNil(t, c)
	t.Cleanup(func() { _ = c.Close() })
	return asNP(t, c)
}

// peerPair returns a dialed netpoll Connection and the standard-library
// server side of it, the "peer" the test drives, on a listener of its own.
// All three close at cleanup.
func peerPair(t testing.TB, network string) (npConn, net.Conn) {
	t.Helper()
	ln := listenStd(t, network)
	accepted := async(func() net.Conn {
		c, err := ln.Accept()
		if err != nil {
			return nil
		}
		return c
	})
	c := dialNP(t, network, ln.Addr().String())
	peer := recv(t, accepted, "the accept")
	require.NotNil(t, peer, "accept failed")
	t.Cleanup(func() { _ = peer.Close() })
	return c, peer
}

// fdPairConn wraps one end of a new socket pair with NewFDConnection and
// returns it with the other end's fd; both close at cleanup.
func fdPairConn(t testing.TB) (npConn, int) {
	t.Helper()
	r, w := GetSysFdPairs()
	t.Cleanup(func() { _ = syscall.Close(w) })
	c, err := NewFDConnection(r)
	if err != nil {
		_ = syscall.Close(r)
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return asNP(t, c), w
}

// connOf returns the implementation behind a Connection of this package.
func connOf(c Connection) *connection {
	switch v := c.(type) {
	case *connection:
		return v
	case *TCPConnection:
		return &v.connection
	case *UnixConnection:
		return &v.connection
	}
	return nil
}

// blockedInRead waits until a read on c waits for input, so that what the
// test does next meets a blocked read.
func blockedInRead(t testing.TB, c Connection) {
	t.Helper()
	cc := connOf(c)
	eventually(t, func() bool { return cc.waitRead.Load() != 0 }, "a read to block")
}

// blockedInFlush waits until a Flush on c waits for the socket to take more.
func blockedInFlush(t testing.TB, c Connection) {
	t.Helper()
	cc := connOf(c)
	eventually(t, func() bool {
		w := cc.wait.Load()
		if w == nil {
			return false
		}
		w.ioMu.Lock()
		defer w.ioMu.Unlock()
		return w.wantOut
	}, "a Flush to block")
}

// retained returns the memory held by a connection's input and output
// buffers (0 once they are recycled).
func retained(c *connection) (in, out int) { return retainedIn(c), retainedOut(c) }

func retainedIn(c *connection) int {
	c.inMu.Lock()
	defer c.inMu.Unlock()
	return c.in.retained()
}

// retainedOut waits for a Flush in progress.
func retainedOut(c *connection) int {
	c.outMu.Lock()
	defer c.outMu.Unlock()
	return c.out.retained()
}

// feed writes p to the peer and waits until c has buffered want bytes.
func feed(t *testing.T, peer net.Conn, c npConn, p []byte, want int) {
	t.Helper()
	_, err := peer.Write(p)
	require.NoError(t, err)
	eventually(t, func() bool { return c.Len() >= want }, "Len() to reach %d (is %d)", want, c.Len())
}

// readFull reads exactly n bytes from a standard connection within longWait.
func readFull(t testing.TB, c net.Conn, n int) []byte {
	t.Helper()
	require.NoError(t, c.SetReadDeadline(time.Now().Add(longWait)))
	p := make([]byte, n)
	got := 0
	for got < n {
		m, err := c.Read(p[got:])
		got += m
		if err != nil {
			t.Fatalf("read %d of %d bytes: %v", got, n, err)
		}
	}
	return p
}

// readAllAsync reads exactly n bytes from peer on another goroutine.
func readAllAsync(peer net.Conn, n int) <-chan result {
	return async(func() result {
		_ = peer.SetReadDeadline(time.Now().Add(longWait))
		p := make([]byte, n)
		m, err := io.ReadFull(peer, p)
		return result{b: p[:m], n: m, err: err}
	})
}

// readToEOF reads c until the end of the stream, pausing now and then, and
// returns the bytes and the final error (nil at a clean EOF).
func readToEOF(c net.Conn) ([]byte, error) {
	_ = c.SetReadDeadline(time.Now().Add(longWait))
	var out bytes.Buffer
	buf := make([]byte, 64<<10)
	for i := 0; ; i++ {
		n, err := c.Read(buf)
		out.Write(buf[:n])
		if err == io.EOF {
			return out.Bytes(), nil
		}
		if err != nil {
			return out.Bytes(), err
		}
		if i%8 == 0 {
			time.Sleep(time.Millisecond)
		}
	}
}

// expectEOF checks that a standard connection reaches end of stream (or a
// reset) within longWait, discarding whatever comes before.
func expectEOF(t testing.TB, c net.Conn) {
	t.Helper()
	if err := waitEOF(c); err != nil {
		t.Fatalf("%v after %v", err, longWait)
	}
}

// expectCleanEOF checks that a standard connection ends, within longWait,
// without sending anything: at EOF, or with a reset when it had sent bytes
// the other side never read.
func expectCleanEOF(t testing.TB, c net.Conn) {
	t.Helper()
	if b, err := readToEOF(c); len(b) != 0 || (err != nil && !isReset(err)) {
		t.Fatalf("read %q, %v; want EOF or a reset", b, err)
	}
}

// waitEOF reads c until it ends, within longWait.
func waitEOF(c net.Conn) error {
	_ = c.SetReadDeadline(time.Now().Add(longWait))
	var buf [4096]byte
	for {
		_, err := c.Read(buf[:])
		if err == nil {
			continue
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return errors.New("the connection stayed open")
		}
		return nil
	}
}

// shrinkReadBuffer keeps the peer's receive window small, so the sender's
// bytes cannot all fit in kernel buffers.
func shrinkReadBuffer(peer net.Conn) {
	type readBufferSetter interface{ SetReadBuffer(int) error }
	if s, ok := peer.(readBufferSetter); ok {
		_ = s.SetReadBuffer(16 << 10)
	}
}

// abort closes a standard connection abruptly: an RST for TCP (SO_LINGER
// 0), a plain close for a unix socket, which has no reset.
func abort(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = c.Close()
}

// isReset reports a connection reset: the peer closed with unread data.
func isReset(err error) bool { return errors.Is(err, syscall.ECONNRESET) }

// isClosedErr reports an error that means the connection is gone.
func isClosedErr(err error) bool {
	return errors.Is(err, ErrConnClosed) || errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNRESET)
}

// hangingAddr returns a loopback TCP address where a connect neither
// succeeds nor fails: a listener with a zero backlog that never accepts,
// whose queue is already full. It skips the test if the kernel does not let
// the connect hang.
func hangingAddr(t *testing.T) string {
	t.Helper()
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM, 0)
	require.NoError(t, err)
	unix.CloseOnExec(fd)
	t.Cleanup(func() { _ = unix.Close(fd) })
	require.NoError(t, unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}))
	require.NoError(t, unix.Listen(fd, 0))
	sa, err := unix.Getsockname(fd)
	require.NoError(t, err)
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(sa.(*unix.SockaddrInet4).Port))
	for i := 0; i < 16; i++ {
		c, err := net.DialTimeout("tcp", addr, 300*time.Millisecond)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return addr
			}
			t.Fatalf("filling the backlog: %v", err)
		}
		t.Cleanup(func() { _ = c.Close() })
	}
	t.Skip("cannot make a TCP connect hang on this machine")
	return ""
}

// requireFailedConn checks what a failed tcp or unix dial returns in place
// of a connection: an interface that is not nil but holds a nil *T.
func requireFailedConn[T any](t testing.TB, c interface{}) {
	t.Helper()
	p, ok := c.(*T)
	require.Truef(t, ok, "a failed dial returned %T (%v), want a %T holding nil", c, c, p)
	require.Nil(t, p)
}

// dialBacklogRetry is DialConnection, retried while a unix listener's
// backlog is full. macOS and FreeBSD refuse a unix connect to a full
// backlog at once (ECONNREFUSED; Linux says EAGAIN), and their backlog is
// only 128 (kern.ipc.somaxconn; 4096 on Linux), so many clients dialing
// together can fill it before the server accepts. TCP is not retried: a
// full TCP backlog drops the SYN, and the kernel sends it again.
func dialBacklogRetry(network, addr string, timeout time.Duration) (Connection, error) {
	deadline := time.Now().Add(timeout)
	for {
		c, err := DialConnection(network, addr, timeout)
		if err == nil || network != "unix" || !(errors.Is(err, unix.ECONNREFUSED) || errors.Is(err, unix.EAGAIN)) {
			return c, err
		}
		if timeout = time.Until(deadline); timeout <= 0 {
			return c, err
		}
		time.Sleep(time.Millisecond)
	}
}

// dialReusingFd dials with dial until the new connection has the fd number
// of a connection just closed by closeOld, at most 50 times, and returns
// the two; the test fails if no dial reused the number. Tests of what a
// closed connection must not do to its fd's next owner need that owner.
func dialReusingFd(t *testing.T, dial func() npConn, closeOld func(old npConn)) (old, cur npConn) {
	t.Helper()
	for i := 0; i < 50; i++ {
		old = dial()
		fd := old.(Conn).Fd()
		closeOld(old)
		cur = dial()
		if cur.(Conn).Fd() == fd {
			return old, cur
		}
		_ = cur.Close()
	}
	t.Fatal("50 new dials never reused the fd number of the connection just closed")
	return nil, nil
}
