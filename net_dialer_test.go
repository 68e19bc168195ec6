//go:build darwin || freebsd || linux

package netpoll

import (
	"context"
	"errors"
	"net"
	"os"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// A dial that runs out of time fails with a *net.OpError reading "dial tcp
// host:port: i/o timeout" whose inner error is a plain error: not a
// net.Error with Timeout() true, not ErrDialTimeout. What it returns in
// place of a connection holds a nil *TCPConnection, and no fd is left open.
func TestDialTimeout(t *testing.T) {
	checkLeaks(t)
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
	checkLeaks(t)
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
	checkLeaks(t)
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
	checkLeaks(t)
	c, err := DialConnection("sctp", "127.0.0.1:1", time.Second)
	require.True(t, c == nil, "DialConnection(sctp) returned %T", c)
	var une net.UnknownNetworkError
	require.True(t, errors.As(err, &une), "error %v (%T)", err, err)
}

// docs/contract.md C10.1, C10.6: DialConnection gives a *TCPConnection for tcp and a
// *UnixConnection for unix; both work, and the unix one ignores the timeout.
func TestDialConnectionTypes(t *testing.T) {
	checkLeaks(t)
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
	checkLeaks(t)
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
	checkLeaks(t)
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

// docs/contract.md C0.4, C0.5, C16.3: NewFDConnection wraps one end of GetSysFdPairs in a working
// Connection with its socket's addresses; a read timeout on it fails cleanly
// with ErrReadTimeout, a net.Error timeout (the reference panics), and
// leaves it active; Close closes the fd. A negative fd is an error.
func TestNewFDConnection(t *testing.T) {
	checkLeaks(t)
	r, w := GetSysFdPairs()
	require.Greater(t, r, 2)
	require.Greater(t, w, 2)
	defer unix.Close(w)
	c, err := NewFDConnection(r)
	require.NoError(t, err)
	np := asNP(t, c)
	require.NotNil(t, c.LocalAddr(), "LocalAddr of a socketpair end")
	require.NotNil(t, c.RemoteAddr(), "RemoteAddr of a socketpair end")

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
	requireTimeoutErr(t, got.err)
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
	checkLeaks(t)
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
	checkLeaks(t)
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
			seen[connOf(c).op.poll]++
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
	checkLeaks(t)
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

// A unix dial ignores the timeout, even one that has passed before it
// starts; an empty host on "tcp6" is the unspecified address and reaches
// an IPv4 listener on the loopback.
func TestDialTimeoutIgnoredForUnix(t *testing.T) {
	checkLeaks(t)
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
