//go:build darwin || dragonfly || freebsd || linux || netbsd || openbsd

package netpoll

import (
	"context"
	"errors"
	"net"
	"os"
	"runtime"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

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

// requireNilConnection checks that a failed dial returned a nil Connection
// (a nil interface, not an interface holding a nil pointer).
func requireNilConnection(t testing.TB, c Connection) {
	t.Helper()
	require.True(t, c == nil, "a failed dial returned a non-nil Connection %T", c)
}

// §2.10.2, §2.10.3, §4.4: a dial that runs out of time fails with a
// *net.OpError that says "timeout", is a net.Error with Timeout() true and
// matches ErrDialTimeout; the Connection is nil and no fd is left open.
func TestDialTimeout(t *testing.T) {
	checkFDs(t)
	addr := hangingAddr(t)
	for _, dial := range []struct {
		name string
		dial func() (Connection, error)
	}{
		{"DialConnection", func() (Connection, error) { return DialConnection("tcp", addr, 200*time.Millisecond) }},
		{"Dialer.DialConnection", func() (Connection, error) {
			return NewDialer().DialConnection("tcp", addr, 200*time.Millisecond)
		}},
		{"Dialer.DialTimeout", func() (Connection, error) {
			nc, err := NewDialer().DialTimeout("tcp", addr, 200*time.Millisecond)
			assert.True(t, nc == nil, "a failed DialTimeout returned a non-nil net.Conn %T", nc)
			return nil, err
		}},
		{"DialTCP", func() (Connection, error) {
			raddr, err := ResolveTCPAddr("tcp", addr)
			if err != nil {
				return nil, err
			}
			ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
			defer cancel()
			c, err := DialTCP(ctx, "tcp", nil, raddr)
			assert.Nil(t, c)
			return nil, err
		}},
	} {
		t.Run(dial.name, func(t *testing.T) {
			type out struct {
				c   Connection
				err error
			}
			got := within(t, dial.name, func() out { c, err := dial.dial(); return out{c, err} })
			requireNilConnection(t, got.c)
			require.Error(t, got.err)
			var oe *net.OpError
			require.True(t, errors.As(got.err, &oe), "%T is not a *net.OpError", got.err)
			require.Contains(t, got.err.Error(), "timeout")
			requireTimeoutErr(t, got.err)
			requireErrIs(t, got.err, ErrDialTimeout)
		})
	}
}

// §2.10.2: a timeout of zero or less means none.
func TestDialNoTimeout(t *testing.T) {
	checkFDs(t)
	ln := listenStd(t, "tcp")
	for _, d := range []time.Duration{0, -time.Second} {
		c, err := DialConnection("tcp", ln.Addr().String(), d)
		require.NoError(t, err)
		require.NoError(t, c.Close())
	}
}

// §2.10.4, §2.10.5: a refused dial fails with a *net.OpError meaning refused
// (ECONNREFUSED, or ErrConnClosed as the reference has it), not a timeout,
// and returns a nil Connection.
func TestDialRefused(t *testing.T) {
	checkFDs(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	tcpAddr := ln.Addr().String()
	require.NoError(t, ln.Close())

	// A unix socket file with nobody listening.
	dir := shortTempDir(t)
	ul, err := net.ListenUnix("unix", &net.UnixAddr{Name: dir + "/s", Net: "unix"})
	require.NoError(t, err)
	ul.SetUnlinkOnClose(false)
	require.NoError(t, ul.Close())

	for _, tc := range []struct{ network, addr string }{{"tcp", tcpAddr}, {"unix", dir + "/s"}} {
		t.Run(tc.network, func(t *testing.T) {
			c, err := DialConnection(tc.network, tc.addr, longWait)
			requireNilConnection(t, c)
			require.Error(t, err)
			var oe *net.OpError
			require.True(t, errors.As(err, &oe), "%T is not a *net.OpError", err)
			refused := errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, ErrConnClosed)
			require.Truef(t, refused, "error %q does not mean refused", err)
			var ne net.Error
			require.False(t, errors.As(err, &ne) && ne.Timeout(), "a refusal reported as a timeout")
		})
	}
	t.Run("missing unix path", func(t *testing.T) {
		c, err := DialConnection("unix", dir+"/missing", longWait)
		requireNilConnection(t, c)
		require.Error(t, err)
		require.True(t, errors.Is(err, os.ErrNotExist) || errors.Is(err, syscall.ENOENT), "error %q", err)
	})
}

// §2.10.1: an unknown network gives net.UnknownNetworkError.
func TestDialUnknownNetwork(t *testing.T) {
	c, err := DialConnection("sctp", "127.0.0.1:1", time.Second)
	requireNilConnection(t, c)
	var une net.UnknownNetworkError
	require.True(t, errors.As(err, &une), "error %v (%T)", err, err)
}

// §2.10.1, §2.10.6: DialConnection gives a *TCPConnection for tcp and a
// *UnixConnection for unix; both work, and the unix one ignores the timeout.
func TestDialConnectionTypes(t *testing.T) {
	checkFDs(t)
	forEachNetwork(t, func(t *testing.T, network string) {
		ln := listenStd(t, network)
		timeout := longWait
		if network == "unix" {
			timeout = time.Nanosecond // ignored for unix
		}
		c, err := DialConnection(network, ln.Addr().String(), timeout)
		require.NoError(t, err)
		defer c.Close()
		switch network {
		case "tcp":
			_, ok := c.(*TCPConnection)
			require.True(t, ok, "DialConnection(tcp) gave %T", c)
		case "unix":
			_, ok := c.(*UnixConnection)
			require.True(t, ok, "DialConnection(unix) gave %T", c)
			if runtime.GOOS == "linux" {
				require.Equal(t, "@", c.LocalAddr().String(), "an unnamed local unix address")
			}
		}
		peer, err := ln.Accept()
		require.NoError(t, err)
		defer peer.Close()
		require.Equal(t, ln.Addr().String(), c.RemoteAddr().String())
		_, err = c.Write([]byte("ping"))
		require.NoError(t, err)
		require.Equal(t, "ping", string(readFull(t, peer, 4)))
		_, err = peer.Write([]byte("pong"))
		require.NoError(t, err)
		p, err := asNP(t, c).Next(4)
		require.NoError(t, err)
		require.Equal(t, "pong", string(p))
	})
}

// §2.10.6, §2.10.7: DialTCP (nil ctx means Background) connects from laddr
// if given, sets TCP_NODELAY and works; a bad network or a nil raddr gives a
// *net.OpError.
func TestDialTCP(t *testing.T) {
	checkFDs(t)
	ln := listenStd(t, "tcp")
	raddr, err := ResolveTCPAddr("tcp", ln.Addr().String())
	require.NoError(t, err)
	laddr, err := ResolveTCPAddr("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	var nilCtx context.Context // nil means Background
	c, err := DialTCP(nilCtx, "tcp", laddr, raddr)
	require.NoError(t, err)
	defer c.Close()
	peer, err := ln.Accept()
	require.NoError(t, err)
	defer peer.Close()

	nodelay, err := unix.GetsockoptInt(c.Fd(), unix.IPPROTO_TCP, unix.TCP_NODELAY)
	require.NoError(t, err)
	require.NotZero(t, nodelay, "TCP_NODELAY is not set")
	la, ok := c.LocalAddr().(*net.TCPAddr)
	require.True(t, ok, "LocalAddr is %T", c.LocalAddr())
	require.True(t, la.IP.Equal(net.IPv4(127, 0, 0, 1)))
	require.Equal(t, peer.RemoteAddr().String(), c.LocalAddr().String())
	require.Equal(t, raddr.String(), c.RemoteAddr().String())

	_, err = c.WriteString("tcp")
	require.NoError(t, err)
	require.NoError(t, c.Flush())
	require.Equal(t, "tcp", string(readFull(t, peer, 3)))

	var oe *net.OpError
	_, err = DialTCP(context.Background(), "udp", nil, raddr)
	require.True(t, errors.As(err, &oe), "bad network: %v (%T)", err, err)
	_, err = DialTCP(context.Background(), "tcp", nil, nil)
	require.True(t, errors.As(err, &oe), "nil raddr: %v (%T)", err, err)
}

// §2.10.6: DialUnix connects and works; a bad network or a nil raddr gives a
// *net.OpError.
func TestDialUnix(t *testing.T) {
	checkFDs(t)
	ln := listenStd(t, "unix")
	raddr, err := ResolveUnixAddr("unix", ln.Addr().String())
	require.NoError(t, err)
	c, err := DialUnix("unix", nil, raddr)
	require.NoError(t, err)
	defer c.Close()
	peer, err := ln.Accept()
	require.NoError(t, err)
	defer peer.Close()
	require.Equal(t, ln.Addr().String(), c.RemoteAddr().String())
	_, err = peer.Write([]byte("unix"))
	require.NoError(t, err)
	s, err := c.ReadString(4)
	require.NoError(t, err)
	require.Equal(t, "unix", s)

	var oe *net.OpError
	_, err = DialUnix("tcp", nil, raddr)
	require.True(t, errors.As(err, &oe), "bad network: %v (%T)", err, err)
	_, err = DialUnix("unix", nil, nil)
	require.True(t, errors.As(err, &oe), "nil raddr: %v (%T)", err, err)
}

// §1.6, §4.3: NewFDConnection wraps one end of GetSysFdPairs in a working
// Connection; a read timeout on it fails cleanly (the reference panics), and
// Close closes the fd. A negative fd is an error.
func TestNewFDConnection(t *testing.T) {
	checkFDs(t)
	r, w := GetSysFdPairs()
	require.Greater(t, r, 2)
	require.Greater(t, w, 2)
	defer unix.Close(w)
	c, err := NewFDConnection(r)
	require.NoError(t, err)
	np := asNP(t, c)

	_, err = unix.Write(w, []byte("pair"))
	require.NoError(t, err)
	p, err := np.Next(4)
	require.NoError(t, err)
	require.Equal(t, "pair", string(p))
	_, err = np.WriteString("back")
	require.NoError(t, err)
	require.NoError(t, np.Flush())
	var buf [4]byte
	n, err := unix.Read(w, buf[:])
	require.NoError(t, err)
	require.Equal(t, "back", string(buf[:n]))

	require.NoError(t, c.SetReadTimeout(50*time.Millisecond))
	got := within(t, "Next with a timeout", func() result { _, err := np.Next(1); return result{err: err} })
	requireErrIs(t, got.err, ErrReadTimeout)
	require.True(t, c.IsActive())

	require.NoError(t, c.Close())
	_, err = unix.FcntlInt(uintptr(r), unix.F_GETFD, 0)
	require.Error(t, err, "Close must close the wrapped fd")

	bad, err := NewFDConnection(-1)
	require.Error(t, err)
	require.True(t, bad == nil, "NewFDConnection(-1) returned %T", bad)
}

// §2.10.1: tcp addresses are resolved (a host name, an empty host meaning
// the loopback) and each IP is tried in order; "tcp6" dials IPv6.
func TestDialResolves(t *testing.T) {
	checkFDs(t)
	ln := listenStd(t, "tcp")
	_, port, err := net.SplitHostPort(ln.Addr().String())
	require.NoError(t, err)
	accepted := make(chan net.Conn, 8)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				close(accepted)
				return
			}
			accepted <- c
		}
	}()
	for _, addr := range []string{"localhost:" + port, ":" + port, "127.0.0.1:" + port} {
		for _, network := range []string{"tcp", "tcp4"} {
			c, err := DialConnection(network, addr, longWait)
			require.NoError(t, err, "%s %s", network, addr)
			peer := recv(t, accepted, "the accept")
			require.Equal(t, peer.RemoteAddr().String(), c.LocalAddr().String())
			require.NoError(t, c.Close())
			require.NoError(t, peer.Close())
		}
	}
	require.NoError(t, ln.Close())
	for range accepted {
	}

	ln6, err := net.Listen("tcp6", "[::1]:0")
	if err != nil {
		t.Logf("no IPv6 loopback here (%v): tcp6 not checked", err)
		return
	}
	defer ln6.Close()
	c, err := DialConnection("tcp6", ln6.Addr().String(), longWait)
	require.NoError(t, err)
	defer c.Close()
	peer, err := ln6.Accept()
	require.NoError(t, err)
	defer peer.Close()
	require.Equal(t, peer.RemoteAddr().String(), c.LocalAddr().String())
	_, err = DialConnection("tcp4", ln6.Addr().String(), longWait)
	require.Error(t, err, "tcp4 must not dial an IPv6 address")
}

// Dialed connections spread over the pollers. The connect used to wait on a
// poller picked apart from the connection's own, so round robin advanced
// twice per TCP dial and, with two pollers, every connection got the same one.
func TestDialSpreadsOverPollers(t *testing.T) {
	loops := int(pollmanager.loops.Load())
	require.NoError(t, SetNumLoops(2))
	t.Cleanup(func() { _ = SetNumLoops(loops) })
	forEachNetwork(t, func(t *testing.T, network string) {
		ln := listenStd(t, network)
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				_ = c.Close() // only the dialed side's poller matters
			}
		}()
		seen := map[Poll]int{}
		for i := 0; i < 8; i++ {
			c := dialNP(t, network, ln.Addr().String())
			seen[suiteConnOf(c).op.poll]++
		}
		require.Len(t, seen, 2, "8 dials over 2 pollers: %v", seen)
	})
}
