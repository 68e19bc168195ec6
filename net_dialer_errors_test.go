//go:build darwin || freebsd || linux

package netpoll

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// How dialing and NewFDConnection fail (docs/contract.md C10, C16.4): bad
// networks and addresses, the reference's error shapes, fds that are not
// connected sockets, and a process out of fds.

// What DialConnection, DialTCP and DialUnix return for addresses they
// cannot use: the error of net.SplitHostPort or of the resolver as it is
// (not wrapped), and *net.OpErrors whose Source and Addr are the addresses
// given; a ctx that is already done gives "operation was canceled" or "i/o
// timeout". A failed tcp or unix dial returns an interface holding a nil
// pointer.
func TestDialErrorShapes(t *testing.T) {
	checkLeaks(t)
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

// docs/contract.md C10.1, C10.5, C10.7: dials with wrong network names and
// malformed addresses fail, and what a failed dial returns is never a live
// connection; a tcp6 dial reaches an IPv4 address (the IP, not the
// network, picks the family) and a negative timeout means none.
func TestDialBadAddresses(t *testing.T) {
	checkLeaks(t)
	tcp := stdEcho(t, "tcp").Addr().String()
	unixPath := stdEcho(t, "unix").Addr().String()
	raddr, err := ResolveTCPAddr("tcp", tcp)
	require.NoError(t, err)
	uaddr, err := ResolveUnixAddr("unix", unixPath)
	require.NoError(t, err)
	dial := func(network, addr string) func() error {
		return func() error {
			c, err := DialConnection(network, addr, time.Second)
			if err == nil {
				c.Close()
				return nil
			}
			tc, _ := c.(*TCPConnection)
			uc, _ := c.(*UnixConnection)
			return firstErr(check(tc == nil && uc == nil, "a failed dial returned a live Connection"), err)
		}
	}
	dialTimeout := func(network, addr string) func() error {
		return func() error {
			c, err := NewDialer().DialTimeout(network, addr, time.Second)
			if err == nil {
				c.Close()
				return nil
			}
			tc, _ := c.(*TCPConnection)
			uc, _ := c.(*UnixConnection)
			return firstErr(check(tc == nil && uc == nil, "a failed dial returned a live net.Conn"), err)
		}
	}
	cases := []argCase{
		{"DialConnection bogus network", true, dial("bogus", tcp)},
		{"DialConnection empty network", true, dial("", tcp)},
		{"DialConnection udp", true, dial("udp", tcp)},
		{"DialConnection ip", true, dial("ip", "127.0.0.1")},
		{"DialConnection tcp empty address", true, dial("tcp", "")},
		{"DialConnection tcp no port", true, dial("tcp", "127.0.0.1")},
		{"DialConnection tcp port 99999", true, dial("tcp", "127.0.0.1:99999")},
		{"DialConnection tcp port -1", true, dial("tcp", "127.0.0.1:-1")},
		{"DialConnection tcp bad port name", true, dial("tcp", "127.0.0.1:nosuchservice")},
		{"DialConnection tcp port 0", true, dial("tcp", "127.0.0.1:0")},
		{"DialConnection tcp open bracket", true, dial("tcp", "[::1:80")},
		{"DialConnection tcp bad IP", true, dial("tcp", "256.256.256.256:80")},
		{"DialConnection tcp4 to IPv6", true, dial("tcp4", "[::1]:80")},
		{"DialConnection tcp6 to IPv4", false, dial("tcp6", tcp)}, // the IP, not the network, picks the family
		{"DialConnection tcp NUL", true, dial("tcp", "127.0.0.1\x00:80")},
		{"DialConnection unix missing", true, dial("unix", "/nonexistent/dir/sock")},
		{"DialConnection unix too long", true, dial("unix", "/tmp/"+strings.Repeat("x", 200))},
		{"DialConnection unixgram to stream", true, dial("unixgram", unixPath)},
		{"DialConnection unixpacket to stream", true, dial("unixpacket", unixPath)},
		{"DialConnection unix to a tcp address", true, dial("unix", tcp)},
		{"DialConnection negative timeout", false, func() error {
			c, err := DialConnection("tcp", tcp, -time.Second)
			if err == nil {
				c.Close()
			}
			return err
		}},
		{"DialTimeout bogus network", true, dialTimeout("bogus", tcp)},
		{"DialTimeout tcp no port", true, dialTimeout("tcp", "localhost")},
		{"DialTimeout unix missing", true, dialTimeout("unix", "/nonexistent/sock")},
		{"DialTCP nil ctx", false, func() error {
			c, err := DialTCP(nil, "tcp", nil, raddr)
			if err == nil {
				c.Close()
			}
			return err
		}},
		{"DialTCP unix", true, func() error { _, err := DialTCP(context.Background(), "unix", nil, raddr); return err }},
		{"DialTCP tcp6 to IPv4", false, func() error { // tcp6 is IPv6 only (IPV6_V6ONLY)
			c, err := DialTCP(context.Background(), "tcp6", nil, raddr)
			if err == nil {
				c.Close()
			}
			var oe *net.OpError
			return check(c == nil && errors.As(err, &oe), "DialTCP(tcp6) to an IPv4 address: "+errText(err)+", want a *net.OpError")
		}},
		{"DialTCP bad IP length", true, func() error {
			_, err := DialTCP(context.Background(), "tcp", nil, &TCPAddr{net.TCPAddr{IP: net.IP{1, 2, 3}, Port: 80}})
			return err
		}},
		{"DialUnix empty name", true, func() error { _, err := DialUnix("unix", nil, &UnixAddr{}); return err }},
		{"DialUnix laddr in missing dir", true, func() error {
			_, err := DialUnix("unix", &UnixAddr{net.UnixAddr{Name: "/nonexistent/dir/x", Net: "unix"}}, uaddr)
			return err
		}},
	}
	runArgCases(t, cases)
}

// NewFDConnection refuses a fd it cannot register with an error reading
// "connection has been closed " and the errno's text, which errors.Is
// matches with ErrConnClosed and with the errno; the fd stays open.
func TestNewFDConnectionErrors(t *testing.T) {
	checkLeaks(t)
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

// NewFDConnection refuses an fd number that is not open and a character
// device, and leaves a refused fd open (docs/contract.md C0.5).
func TestNewFDConnectionBadFds(t *testing.T) {
	checkLeaks(t)
	f, err := os.Open(os.DevNull)
	require.NoError(t, err)
	defer f.Close()
	file := int(f.Fd())
	cases := []argCase{
		{"NewFDConnection(closed fd)", true, func() error { _, err := NewFDConnection(1 << 20); return err }},
		{"NewFDConnection(regular file)", true, func() error {
			c, err := NewFDConnection(file)
			if err == nil {
				c.(interface{ Detach() error }).Detach()
				return nil
			}
			return firstErr(check(fdOpen(file), "NewFDConnection closed the fd it refused"), err)
		}},
	}
	runArgCases(t, cases)
}

// docs/contract.md C10.5: EMFILE on dial, in a child process with a low
// RLIMIT_NOFILE: the dial fails with EMFILE (no panic; the Connection holds
// a nil *TCPConnection) and works again once fds are freed.
func TestDialEMFILE(t *testing.T) {
	inChild(t, "NETPOLL_EMFILE_CHILD", "EMFILE-CHILD-OK", dialEMFILEChild)
}

func dialEMFILEChild(t *testing.T) {
	checkLeaks(t)
	ln := listenStd(t, "tcp")
	defer ln.Close()
	var accepted []net.Conn
	var mu sync.Mutex
	accDone := make(chan struct{})
	go func() {
		defer close(accDone)
		for {
			c, err := ln.Accept()
			if err != nil {
				if errors.Is(err, net.ErrClosed) {
					return
				}
				time.Sleep(time.Millisecond) // EMFILE on our side too: retry
				continue
			}
			mu.Lock()
			accepted = append(accepted, c)
			mu.Unlock()
		}
	}()
	defer func() {
		ln.Close()
		recv(t, accDone, "the accept loop")
		mu.Lock()
		for _, c := range accepted {
			c.Close()
		}
		mu.Unlock()
	}()
	var old unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &old); err != nil {
		t.Fatal(err)
	}
	low := old
	low.Cur = 0 // uint64 on Linux, int64 on the BSDs: count up to the limit
	for i := fdCount() + 40; i > 0; i-- {
		low.Cur++
	}
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &low); err != nil {
		t.Fatal(err)
	}
	defer unix.Setrlimit(unix.RLIMIT_NOFILE, &old)
	var conns []Connection
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	var dialErr error
	for i := 0; i < 200; i++ {
		var c Connection
		within(t, "dial", func() error { c, dialErr = DialConnection("tcp", ln.Addr().String(), longWait); return nil })
		if dialErr != nil {
			if tc, ok := c.(*TCPConnection); !ok || tc != nil {
				t.Fatalf("a failed dial returned %#v, want a Connection holding a nil *TCPConnection", c)
			}
			break
		}
		conns = append(conns, c)
	}
	if dialErr == nil {
		t.Fatal("200 dials succeeded under a limit of 40 fds")
	}
	if !errors.Is(dialErr, syscall.EMFILE) {
		t.Fatalf("dial out of fds: %v, want EMFILE", dialErr)
	}
	// Free some fds: dialing works again, and the new connection carries data.
	for _, c := range conns[:10] {
		c.Close()
	}
	conns = conns[10:]
	c, err := DialConnection("tcp", ln.Addr().String(), longWait)
	if err != nil {
		t.Fatalf("dial after fds were freed: %v", err)
	}
	conns = append(conns, c)
	if _, err = c.Write([]byte("ok")); err != nil {
		t.Fatalf("write on the recovered dial: %v", err)
	}
	fmt.Println("EMFILE-CHILD-OK", dialErr)
}
