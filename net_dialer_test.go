//go:build darwin || freebsd || linux

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

// requireFailedConn checks what a failed tcp or unix dial returns in place
// of a connection: an interface that is not nil but holds a nil *T.
func requireFailedConn[T any](t testing.TB, c interface{}) {
	t.Helper()
	p, ok := c.(*T)
	require.Truef(t, ok, "a failed dial returned %T (%v), want a %T holding nil", c, c, p)
	require.Nil(t, p)
}

// A dial that runs out of time fails with a *net.OpError reading "dial tcp
// host:port: i/o timeout" whose inner error is a plain error: not a
// net.Error with Timeout() true, not ErrDialTimeout. What it returns in
// place of a connection holds a nil *TCPConnection, and no fd is left open.
func TestDialTimeout(t *testing.T) {
	checkFDs(t)
	addr := hangingAddr(t)
	for _, dial := range []struct {
		name string
		dial func() (interface{}, error)
	}{
		{"DialConnection", func() (interface{}, error) { return DialConnection("tcp", addr, 200*time.Millisecond) }},
		{"Dialer.DialConnection", func() (interface{}, error) {
			return NewDialer().DialConnection("tcp", addr, 200*time.Millisecond)
		}},
		{"Dialer.DialTimeout", func() (interface{}, error) {
			return NewDialer().DialTimeout("tcp", addr, 200*time.Millisecond)
		}},
		{"DialTCP", func() (interface{}, error) {
			raddr, err := ResolveTCPAddr("tcp", addr)
			if err != nil {
				return nil, err
			}
			ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
			defer cancel()
			return DialTCP(ctx, "tcp", nil, raddr)
		}},
	} {
		t.Run(dial.name, func(t *testing.T) {
			type out struct {
				c   interface{}
				err error
			}
			got := within(t, dial.name, func() out { c, err := dial.dial(); return out{c, err} })
			requireFailedConn[TCPConnection](t, got.c)
			require.Error(t, got.err)
			var oe *net.OpError
			require.True(t, errors.As(got.err, &oe), "%T is not a *net.OpError", got.err)
			require.Equal(t, "dial tcp "+addr+": i/o timeout", got.err.Error())
			var ne net.Error
			require.False(t, errors.As(oe.Err, &ne) && ne.Timeout(), "the inner error %T is a timeout net.Error", oe.Err)
			require.False(t, oe.Timeout(), "the *net.OpError says Timeout()")
			require.False(t, errors.Is(got.err, ErrDialTimeout), "the timeout matches ErrDialTimeout")
			require.False(t, errors.Is(got.err, ErrDialNoDeadline))
		})
	}
}

// docs/contract.md C10.2: a timeout of zero or less means none.
func TestDialNoTimeout(t *testing.T) {
	checkFDs(t)
	ln := listenStd(t, "tcp")
	for _, d := range []time.Duration{0, -time.Second} {
		c, err := DialConnection("tcp", ln.Addr().String(), d)
		require.NoError(t, err)
		require.NoError(t, c.Close())
	}
}

// A refused tcp dial (its connect was in progress) fails with a
// *net.OpError reading "dial tcp host:port: connection has been closed by
// peer" that matches ErrConnClosed and is not a timeout; a unix socket file
// nobody listens on refuses at once ("connect: connection refused"), and a
// missing one gives ENOENT. The connection returned holds a nil pointer.
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

	for _, tc := range []struct{ network, addr, text string }{
		{"tcp", tcpAddr, "dial tcp " + tcpAddr + ": connection has been closed by peer"},
		{"unix", dir + "/s", "dial unix " + dir + "/s: connect: connection refused"},
	} {
		t.Run(tc.network, func(t *testing.T) {
			c, err := DialConnection(tc.network, tc.addr, longWait)
			if tc.network == "tcp" {
				requireFailedConn[TCPConnection](t, c)
				requireErrIs(t, err, ErrConnClosed)
			} else {
				requireFailedConn[UnixConnection](t, c)
				requireErrIs(t, err, syscall.ECONNREFUSED)
			}
			var oe *net.OpError
			require.True(t, errors.As(err, &oe), "%T is not a *net.OpError", err)
			require.Equal(t, tc.text, err.Error())
			var ne net.Error
			require.False(t, errors.As(err, &ne) && ne.Timeout(), "a refusal reported as a timeout")
		})
	}
	t.Run("missing unix path", func(t *testing.T) {
		c, err := DialConnection("unix", dir+"/missing", longWait)
		requireFailedConn[UnixConnection](t, c)
		require.Error(t, err)
		require.True(t, errors.Is(err, os.ErrNotExist) || errors.Is(err, syscall.ENOENT), "error %q", err)
	})
}

// docs/contract.md C10.1: an unknown network gives net.UnknownNetworkError.
func TestDialUnknownNetwork(t *testing.T) {
	c, err := DialConnection("sctp", "127.0.0.1:1", time.Second)
	require.True(t, c == nil, "DialConnection(sctp) returned %T", c)
	var une net.UnknownNetworkError
	require.True(t, errors.As(err, &une), "error %v (%T)", err, err)
}

// docs/contract.md C10.1, C10.6: DialConnection gives a *TCPConnection for tcp and a
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

// docs/contract.md C10.6, C10.7: DialTCP (nil ctx means Background) connects from laddr
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

// docs/contract.md C10.6: DialUnix connects and works; a bad network or a nil raddr gives a
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

// docs/contract.md C0.5, C16.3: NewFDConnection wraps one end of GetSysFdPairs in a working
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

// tcp addresses are resolved (a host name, an empty host meaning the
// unspecified address, which reaches the local host) and each IP is tried
// in order, over IPv6 exactly when the IP is one, whichever of "tcp",
// "tcp4" and "tcp6" was asked for.
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
		for _, network := range []string{"tcp", "tcp4", "tcp6"} {
			if network == "tcp6" && addr == "127.0.0.1:"+port {
				continue // an IPv4 address over IPV6_V6ONLY is unreachable
			}
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
	c4, err := DialConnection("tcp4", ln6.Addr().String(), longWait)
	require.NoError(t, err, "tcp4 dials an IPv6 address over IPv6")
	defer c4.Close()
	peer4, err := ln6.Accept()
	require.NoError(t, err)
	defer peer4.Close()
	require.Equal(t, peer4.RemoteAddr().String(), c4.LocalAddr().String())
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

// A unix listener whose backlog is full refuses a non-blocking connect with
// EAGAIN at once: that dial fails with "dial unix path: connect: resource
// temporarily unavailable" instead of returning a connection that is
// already closed. Every connection that is returned works.
func TestDialUnixFullBacklog(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("EAGAIN from a full unix backlog is Linux behaviour")
	}
	checkFDs(t)
	path := shortTempDir(t) + "/s"
	lfd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM, 0)
	require.NoError(t, err)
	unix.CloseOnExec(lfd)
	t.Cleanup(func() { _ = unix.Close(lfd) })
	require.NoError(t, unix.Bind(lfd, &unix.SockaddrUnix{Name: path}))
	require.NoError(t, unix.Listen(lfd, 1)) // never accepts
	var conns []Connection
	var errs []error
	for i := 0; i < 10; i++ {
		type out struct {
			c   Connection
			err error
		}
		got := within(t, "dial", func() out { c, err := DialConnection("unix", path, time.Second); return out{c, err} })
		if got.err != nil {
			requireFailedConn[UnixConnection](t, got.c)
			errs = append(errs, got.err)
			continue
		}
		conns = append(conns, got.c)
	}
	for i, c := range conns {
		require.True(t, c.IsActive(), "connection %d of %d was returned closed", i+1, len(conns))
		require.NoError(t, c.Close())
	}
	require.NotEmpty(t, conns, "no dial reached the backlog")
	require.NotEmpty(t, errs, "%d dials to a backlog of 1 all succeeded", len(conns))
	for _, err := range errs {
		var oe *net.OpError
		require.True(t, errors.As(err, &oe), "%T is not a *net.OpError", err)
		requireErrIs(t, err, syscall.EAGAIN)
		require.Equal(t, "dial unix "+path+": connect: resource temporarily unavailable", err.Error())
	}
}

// What DialConnection, DialTCP and DialUnix return for addresses they
// cannot use: the error of net.SplitHostPort or of the resolver as it is
// (not wrapped), and *net.OpErrors whose Source and Addr are the addresses
// given; a ctx that is already done gives "operation was canceled" or "i/o
// timeout". A failed tcp or unix dial returns an interface holding a nil
// pointer.
func TestDialErrorShapes(t *testing.T) {
	checkFDs(t)
	ln := listenStd(t, "tcp")
	_, port, err := net.SplitHostPort(ln.Addr().String())
	require.NoError(t, err)

	c, err := DialConnection("tcp", "noport", time.Second)
	requireFailedConn[TCPConnection](t, c)
	var ae *net.AddrError
	require.True(t, errors.As(err, &ae) && err == error(ae), "%T is not a bare *net.AddrError", err)
	require.Equal(t, "address noport: missing port in address", err.Error())

	c, err = DialConnection("tcp4", "127.0.0.1:nosuchport", time.Second)
	requireFailedConn[TCPConnection](t, c)
	var de *net.DNSError
	require.True(t, errors.As(err, &de) && err == error(de), "%T is not a bare *net.DNSError", err)

	raddr, err := ResolveTCPAddr("tcp", "127.0.0.1:"+port)
	require.NoError(t, err)
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	expired, cancel2 := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel2()
	for ctx, text := range map[context.Context]string{canceled: "operation was canceled", expired: "i/o timeout"} {
		tc, err := DialTCP(ctx, "tcp", nil, raddr)
		require.Nil(t, tc)
		var oe *net.OpError
		require.True(t, errors.As(err, &oe), "%v (%T)", err, err)
		require.Equal(t, "dial tcp 127.0.0.1:"+port+": "+text, err.Error())
		require.True(t, oe.Addr == net.Addr(raddr), "Addr is %T %v, want the raddr given", oe.Addr, oe.Addr)
	}

	v6, err := ResolveTCPAddr("tcp6", "[::1]:"+port)
	require.NoError(t, err)
	tc, err := DialTCP(context.Background(), "tcp4", nil, v6)
	require.Nil(t, tc)
	require.Error(t, err)
	require.Equal(t, "dial tcp4 [::1]:"+port+": address ::1: non-IPv4 address", err.Error())

	laddr := &TCPAddr{TCPAddr: net.TCPAddr{IP: net.IPv4(192, 0, 2, 1)}}
	tc, err = DialTCP(context.Background(), "tcp", laddr, raddr)
	require.Nil(t, tc)
	var oe *net.OpError
	require.True(t, errors.As(err, &oe), "%v (%T)", err, err)
	require.True(t, oe.Source == net.Addr(laddr) && oe.Addr == net.Addr(raddr), "Source %T, Addr %T", oe.Source, oe.Addr)

	uc, err := DialUnix("unix", nil, &UnixAddr{UnixAddr: net.UnixAddr{Net: "unix"}})
	require.Nil(t, uc)
	require.Error(t, err)
	require.Equal(t, "dial unix : missing address", err.Error())
	c, err = DialConnection("unix", "", time.Second)
	requireFailedConn[UnixConnection](t, c)
	require.Equal(t, "dial unix : missing address", err.Error())
}

// A unix dial ignores the timeout, even one that has passed before it
// starts; an empty host on "tcp6" is the unspecified address and reaches
// an IPv4 listener on the loopback.
func TestDialTimeoutIgnoredForUnix(t *testing.T) {
	checkFDs(t)
	ul := listenStd(t, "unix")
	c, err := DialConnection("unix", ul.Addr().String(), time.Nanosecond)
	require.NoError(t, err)
	require.NoError(t, c.Close())

	ln := listenStd(t, "tcp")
	_, port, err := net.SplitHostPort(ln.Addr().String())
	require.NoError(t, err)
	c, err = DialConnection("tcp6", ":"+port, longWait)
	require.NoError(t, err)
	defer c.Close()
	peer, err := ln.Accept()
	require.NoError(t, err)
	defer peer.Close()
	require.Equal(t, peer.RemoteAddr().String(), c.LocalAddr().String())
}

// NewFDConnection refuses a fd it cannot register with an error reading
// "connection has been closed " and the errno's text, which errors.Is
// matches with ErrConnClosed and with the errno; the fd stays open.
func TestNewFDConnectionErrors(t *testing.T) {
	c, err := NewFDConnection(-1)
	require.True(t, c == nil, "NewFDConnection(-1) returned %T", c)
	require.Error(t, err)
	require.Equal(t, "connection has been closed bad file descriptor", err.Error())
	requireErrIs(t, err, ErrConnClosed)
	requireErrIs(t, err, syscall.EBADF)

	if runtime.GOOS != "linux" {
		return
	}
	reg, err := os.CreateTemp(t.TempDir(), "regular")
	require.NoError(t, err)
	defer reg.Close()
	c, err = NewFDConnection(int(reg.Fd())) // epoll refuses a regular file
	require.True(t, c == nil, "NewFDConnection(regular file) returned %T", c)
	require.Error(t, err)
	require.Equal(t, "connection has been closed operation not permitted", err.Error())
	requireErrIs(t, err, ErrConnClosed)
	requireErrIs(t, err, syscall.EPERM)
	_, err = unix.FcntlInt(reg.Fd(), unix.F_GETFD, 0)
	require.NoError(t, err, "the refused fd was closed")
}
