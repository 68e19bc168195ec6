//go:build darwin || freebsd || linux

package netpoll

import (
	"errors"
	"net"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// TCP keep-alive (docs/contract.md C0.5, C6.4): SetKeepAlive on raw fds,
// and a connection's SetKeepAlive and SetIdleTimeout, with values the
// kernel cannot take and after the connection closed.

// The package function SetKeepAlive on fds that are not open, not TCP or
// not sockets, and with seconds below 1 or beyond 32 bits: an error; on a
// TCP socket with 10 seconds: nil.
func TestSetKeepAliveBadFds(t *testing.T) {
	checkLeaks(t)
	f, err := os.Open(os.DevNull)
	require.NoError(t, err)
	defer f.Close()
	file := int(f.Fd())
	r, w := GetSysFdPairs()
	defer unix.Close(r)
	defer unix.Close(w)
	ln := stdEcho(t, "tcp")
	tc, err := net.Dial("tcp", ln.Addr().String())
	require.NoError(t, err)
	defer tc.Close()
	raw, err := tc.(*net.TCPConn).SyscallConn()
	require.NoError(t, err)
	tcpFd := -1
	require.NoError(t, raw.Control(func(fd uintptr) { tcpFd = int(fd) }))
	cases := []argCase{
		{"SetKeepAlive(-1, 10)", true, func() error { return SetKeepAlive(-1, 10) }},
		{"SetKeepAlive(closed fd, 10)", true, func() error { return SetKeepAlive(1<<20, 10) }},
		{"SetKeepAlive(tcp, 0)", true, func() error { return SetKeepAlive(tcpFd, 0) }},
		{"SetKeepAlive(tcp, -1)", true, func() error { return SetKeepAlive(tcpFd, -1) }},
		{"SetKeepAlive(tcp, huge)", true, func() error { return SetKeepAlive(tcpFd, 1<<40) }},
		{"SetKeepAlive(unix socket, 10)", true, func() error { return SetKeepAlive(r, 10) }},
		{"SetKeepAlive(file, 10)", true, func() error { return SetKeepAlive(file, 10) }},
		{"SetKeepAlive(tcp, 10)", false, func() error { return SetKeepAlive(tcpFd, 10) }},
	}
	runArgCases(t, cases)
}

// docs/contract.md C6.4: keep-alive seconds that do not fit the kernel's
// 32-bit int are refused, by the package function, a connection's
// SetKeepAlive and SetIdleTimeout, and change nothing; they used to be cut
// to their low 32 bits (1<<32+5 set 5 s).
func TestKeepAliveSecondsRange(t *testing.T) {
	checkLeaks(t)
	ln := stdEcho(t, "tcp")
	c := dialEcho(t, ln)
	fd := c.(Conn).Fd()
	const secs = 1<<32 + 5
	calls := map[string]func() error{
		"SetKeepAlive(fd, 1<<32+5)":         func() error { return SetKeepAlive(fd, secs) },
		"SetKeepAlive(1<<32+5)":             func() error { return c.(*TCPConnection).SetKeepAlive(secs) },
		"SetIdleTimeout((1<<32+5) seconds)": func() error { return c.SetIdleTimeout(secs * time.Second) },
	}
	for name, call := range calls {
		if err := call(); err == nil {
			t.Errorf("%s returned nil", name)
		}
		if on, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_KEEPALIVE); err != nil || on != 0 {
			t.Fatalf("%s turned keep-alive on (%d, %v)", name, on, err)
		}
	}
}

// docs/contract.md C6.4, C11.5: SetKeepAlive and SetIdleTimeout on a closed
// connection fail with ErrConnClosed and leave alone the connection that
// now has its fd number (the test dials until one has it). They used to
// set the options of whatever socket had the number.
func TestKeepAliveAfterClose(t *testing.T) {
	checkLeaks(t)
	ln := stdEcho(t, "tcp")
	old, cur := dialReusingFd(t, func() npConn { return dialEcho(t, ln) }, func(c npConn) { _ = c.Close() })
	fd := cur.(Conn).Fd()
	calls := map[string]func() error{
		"SetKeepAlive":   func() error { return old.(*TCPConnection).SetKeepAlive(77) },
		"SetIdleTimeout": func() error { return old.SetIdleTimeout(77 * time.Second) },
	}
	for name, call := range calls {
		if err := call(); !errors.Is(err, ErrConnClosed) {
			t.Errorf("%s after Close: %v, want ErrConnClosed", name, err)
		}
		if on, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_KEEPALIVE); err != nil || on != 0 {
			t.Fatalf("%s on a closed connection turned on keep-alive (%d, %v) on the connection that reused its fd %d", name, on, err, fd)
		}
	}
}
