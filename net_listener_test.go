//go:build darwin || freebsd || linux

package netpoll

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// docs/contract.md C11.2–C11.4, C16.6: CreateListener listens on tcp and unix; Accept
// never blocks, giving (nil, nil) when nothing is pending and a working Conn
// otherwise; Close may be called twice; after it the address refuses dials.
func TestListenerAcceptNonBlocking(t *testing.T) {
	checkLeaks(t)
	forEachNetwork(t, func(t *testing.T, network string) {
		ln, err := CreateListener(network, testAddress(t, network))
		require.NoError(t, err)
		defer ln.Close()
		require.Greater(t, ln.Fd(), 2)
		require.Equal(t, network, ln.Addr().Network())

		type acc struct {
			c   net.Conn
			err error
		}
		got := within(t, "Accept with nothing pending", func() acc { c, err := ln.Accept(); return acc{c, err} })
		require.NoError(t, got.err)
		require.Nil(t, got.c)

		peer := dialStd(t, network, ln.Addr().String())
		var c net.Conn
		eventually(t, func() bool {
			got := within(t, "Accept", func() acc { c, err := ln.Accept(); return acc{c, err} })
			require.NoError(t, got.err)
			c = got.c
			return c != nil
		}, "Accept to return the pending connection")
		defer c.Close()
		fc, ok := c.(Conn)
		require.True(t, ok, "Accept returned %T, not a Conn", c)
		require.Greater(t, fc.Fd(), 2)
		require.Equal(t, peer.LocalAddr().String(), c.RemoteAddr().String())

		_, err = c.Write([]byte("from listener"))
		require.NoError(t, err)
		require.Equal(t, "from listener", string(readFull(t, peer, 13)))
		_, err = peer.Write([]byte("to listener"))
		require.NoError(t, err)
		requireErrIs(t, c.SetReadDeadline(time.Now().Add(longWait)), ErrUnsupported, "an accepted Conn has no deadlines")
		buf := make([]byte, 11)
		n := 0
		for n < len(buf) {
			m, err := c.Read(buf[n:])
			require.NoError(t, err)
			n += m
		}
		require.Equal(t, "to listener", string(buf))

		addr := ln.Addr().String()
		require.NoError(t, ln.Close())
		require.NoError(t, ln.Close(), "a second Close")
		requireRefused(t, network, addr)
		_, err = ln.Accept()
		require.Error(t, err, "Accept after Close")
	})
}

// docs/contract.md C11.1: ConvertListener turns a *net.TCPListener or *net.UnixListener
// into a Listener on the same address, returns a Listener unchanged, rejects
// other types, and closing the result closes the original.
func TestConvertListener(t *testing.T) {
	checkLeaks(t)
	forEachNetwork(t, func(t *testing.T, network string) {
		orig, err := net.Listen(network, testAddress(t, network))
		require.NoError(t, err)
		defer orig.Close()
		nl, err := ConvertListener(orig)
		require.NoError(t, err)
		require.Greater(t, nl.Fd(), 2)
		require.Equal(t, orig.Addr().String(), nl.Addr().String())

		again, err := ConvertListener(nl)
		require.NoError(t, err)
		require.True(t, again == nl, "ConvertListener of a Listener must return it unchanged")

		// The converted listener accepts connections made to the original's address.
		peer := dialStd(t, network, orig.Addr().String())
		c := acceptPending(t, nl)
		require.NoError(t, c.Close())
		expectEOF(t, peer)

		require.NoError(t, nl.Close())
		done := async(func() error { _, err := orig.Accept(); return err })
		require.Error(t, recv(t, done, "the original's Accept after Close"), "closing the converted listener must close the original")
		require.NoError(t, nl.Close(), "a second Close")
	})
	t.Run("unsupported", func(t *testing.T) {
		ln := listenStd(t, "tcp")
		_, err := ConvertListener(fakeListener{ln})
		require.Error(t, err)
		require.Contains(t, err.Error(), "can't support")
	})
}

// docs/contract.md C9.1, C11.1: an EventLoop serves a listener converted beforehand, on
// tcp and unix, and Shutdown closes it.
func TestEventLoopServesConvertedListener(t *testing.T) {
	checkLeaks(t)
	forEachNetwork(t, func(t *testing.T, network string) {
		nl, err := CreateListener(network, testAddress(t, network))
		require.NoError(t, err)
		addr := nl.Addr().String()
		evl, err := NewEventLoop(func(ctx context.Context, c Connection) error { return echoAll(c) })
		require.NoError(t, err)
		served := async(func() error { return evl.Serve(nl) })
		cl := dialStd(t, network, addr)
		roundTrip(t, cl, "converted")
		ctx, cancel := context.WithTimeout(context.Background(), longWait)
		defer cancel()
		require.NoError(t, evl.Shutdown(ctx))
		require.NoError(t, recv(t, served, "Serve"))
		expectEOF(t, cl)
		requireRefused(t, network, addr)
	})
}

// docs/contract.md C11.3: a udp listener is created, but its Accept gives ErrUnsupported.
func TestCreateListenerUDP(t *testing.T) {
	checkLeaks(t)
	ln, err := CreateListener("udp", "127.0.0.1:0")
	require.NoError(t, err)
	_, err = ln.Accept()
	require.True(t, errors.Is(err, ErrUnsupported), "Accept on udp: %v", err)
	require.EqualError(t, err, "netpoll does not support UDP", "the reference's text")
	require.NoError(t, ln.Close())
}

// CreateListener takes only "udp" as a packet network: "udp4" and "udp6" go
// to net.Listen, which refuses them with its *net.OpError. ConvertListener
// of a net listener that is already closed fails as its File method does,
// "file tcp addr: use of closed network connection". Listener.Close returns
// nil even when the net listener it was converted from was closed first.
func TestCreateConvertListenerErrors(t *testing.T) {
	checkLeaks(t)
	for _, c := range []struct{ network, addr string }{{"udp4", "127.0.0.1:0"}, {"udp6", "[::1]:0"}} {
		ln, err := CreateListener(c.network, c.addr)
		if err == nil {
			ln.Close()
		}
		require.Error(t, err, "CreateListener(%q)", c.network)
		require.True(t, ln == nil, "CreateListener(%q) returned %T", c.network, ln)
		_, want := net.Listen(c.network, c.addr)
		require.Error(t, want)
		require.Equal(t, want.Error(), err.Error())
	}

	orig, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	require.NoError(t, orig.Close())
	nl, err := ConvertListener(orig)
	require.True(t, nl == nil, "ConvertListener of a closed listener returned %T", nl)
	var oe *net.OpError
	require.True(t, errors.As(err, &oe), "%v (%T)", err, err)
	require.Equal(t, "file tcp "+orig.Addr().String()+": use of closed network connection", err.Error())

	// Close returns nil even when the original was closed first.
	orig, err = net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	nl, err = ConvertListener(orig)
	require.NoError(t, err)
	require.NoError(t, orig.Close())
	require.NoError(t, nl.Close())
}

// Listener.Accept's Conn is a plain socket no poller watches (its godoc):
// the fd is blocking, and every byte the peer sends stays in the socket for
// whoever reads it, here with raw read(2) calls on Fd while the dialed side
// Flushes 2 MiB, more than the socket buffers hold, so that Flush must wait
// for those reads. Read gives io.EOF after the peer's close, and Close wakes
// a Read blocked on it.
func TestListenerAcceptUnwatched(t *testing.T) {
	checkLeaks(t)
	forEachNetwork(t, func(t *testing.T, network string) {
		ln, err := CreateListener(network, testAddress(t, network))
		require.NoError(t, err)
		defer ln.Close()
		c := dialNP(t, network, ln.Addr().String())
		peer := acceptPending(t, ln)
		fd := peer.(Conn).Fd()
		flags, err := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0)
		require.NoError(t, err)
		require.Zero(t, flags&unix.O_NONBLOCK, "the accepted fd is non-blocking")

		const size = 2 << 20
		flushed := async(func() error {
			buf, err := c.Malloc(size)
			if err != nil {
				return err
			}
			for i := range buf {
				buf[i] = byte(i)
			}
			return c.Flush()
		})
		buf := make([]byte, 64<<10)
		for got := 0; got < size; {
			n, err := unix.Read(fd, buf)
			require.NoError(t, err, "read(2) on the accepted fd")
			require.NotZero(t, n, "EOF after %d of %d bytes", got, size)
			for i := 0; i < n; i++ {
				if buf[i] != byte(got+i) {
					t.Fatalf("byte %d: got %d, want %d", got+i, buf[i], byte(got+i))
				}
			}
			got += n
		}
		require.NoError(t, recv(t, flushed, "the Flush"))

		blocked := async(func() error { _, err := peer.Read(buf); return err })
		notYet(t, blocked, 20*time.Millisecond, "a Read with nothing sent")
		require.NoError(t, c.Close())
		require.ErrorIs(t, recv(t, blocked, "Read after the peer's close"), io.EOF)

		c2 := dialNP(t, network, ln.Addr().String())
		peer2 := acceptPending(t, ln)
		blocked = async(func() error { _, err := peer2.Read(buf); return err })
		notYet(t, blocked, 20*time.Millisecond, "a Read with nothing sent")
		require.NoError(t, peer2.Close())
		require.Error(t, recv(t, blocked, "a Read woken by Close"))
		_, err = peer2.Read(buf)
		requireErrIs(t, err, ErrConnClosed, "Read after Close")
		_ = c2.Close()
	})
}

// Every Listener method after Close: Accept fails, Close is a no-op, the
// rest answer without touching the fd.
// docs/contract.md C9.1, C11.2, C11.4: every Listener method after Close:
// Accept fails, a second Close does nothing and returns nil, Addr and Fd
// answer what they did before the Close without touching the fd, and
// Serve fails.
func TestListenerAfterClose(t *testing.T) {
	checkLeaks(t)
	for _, network := range testNetworks {
		var ln Listener
		var err error
		if network == "tcp" {
			ln, err = CreateListener("tcp", "127.0.0.1:0")
		} else {
			ln, err = ConvertListener(listenStd(t, "unix"))
		}
		if err != nil {
			t.Fatal(err)
		}
		fd := ln.Fd()
		if err = ln.Close(); err != nil {
			t.Fatal(err)
		}
		runArgCases(t, []argCase{
			{network + " Accept", true, func() error {
				c, err := ln.Accept()
				if c != nil {
					c.Close()
				}
				return err
			}},
			{network + " Close", false, func() error { return ln.Close() }},
			{network + " Addr", false, func() error { return check(ln.Addr() != nil, "nil Addr") }},
			{network + " Fd", false, func() error { return check(ln.Fd() == fd, fmt.Sprintf("Fd %d after Close, want %d", ln.Fd(), fd)) }},
			{network + " Serve", true, func() error {
				evl, _ := NewEventLoop(nil)
				return evl.Serve(ln)
			}},
		})
	}
}

// docs/contract.md C11.4, C11.5, C16.6: a second Listener.Close closes
// nothing else, even the fd that now has the listener's old number (the
// test makes sure one has it).
func TestListenerDoubleClose(t *testing.T) {
	checkLeaks(t)
	for _, network := range testNetworks {
		var ln Listener
		var err error
		if network == "tcp" {
			ln, err = CreateListener("tcp", "127.0.0.1:0")
		} else {
			std := listenStd(t, "unix")
			ln, err = ConvertListener(std)
		}
		if err != nil {
			t.Fatal(err)
		}
		fd := ln.Fd()
		if err = ln.Close(); err != nil {
			t.Fatal(err)
		}
		var files []*os.File
		reused := -1
		for i := 0; i < 64 && reused < 0; i++ {
			f, err := os.Open(os.DevNull)
			if err != nil {
				t.Fatal(err)
			}
			files = append(files, f)
			if int(f.Fd()) == fd {
				reused = i
			}
		}
		_ = ln.Close()
		for i, f := range files {
			if _, err := f.Stat(); err != nil {
				t.Errorf("%s: the second Listener.Close closed another file (fd %d): %v", network, f.Fd(), err)
			}
			if i == reused && !fdOpen(fd) {
				t.Errorf("%s: fd %d, reused after the first Close, was closed by the second", network, fd)
			}
			f.Close()
		}
		if reused < 0 {
			t.Errorf("%s: none of %d new files got the closed listener's fd %d: the second Close met no new owner", network, len(files), fd)
		}
	}
}

// docs/contract.md C11.1, C11.3: listening on wrong networks and malformed,
// foreign or busy addresses fails, and so does converting what is not a
// TCP or unix listener.
func TestListenerBadAddresses(t *testing.T) {
	checkLeaks(t)
	tcp := stdEcho(t, "tcp").Addr().String()
	unixPath := stdEcho(t, "unix").Addr().String()
	listen := func(network, addr string) func() error {
		return func() error {
			ln, err := CreateListener(network, addr)
			if err == nil {
				ln.Close()
			}
			return err
		}
	}
	cases := []argCase{
		{"CreateListener bogus", true, listen("bogus", "127.0.0.1:0")},
		{"CreateListener empty network", true, listen("", "")},
		{"CreateListener bad IP", true, listen("tcp", "256.0.0.1:0")},
		{"CreateListener port 99999", true, listen("tcp", "127.0.0.1:99999")},
		{"CreateListener in use", true, listen("tcp", tcp)},
		{"CreateListener unix missing dir", true, listen("unix", "/nonexistent/dir/s")},
		{"CreateListener unix in use", true, listen("unix", unixPath)},
		{"CreateListener foreign IP", true, listen("tcp", "192.0.2.1:0")},
		{"ConvertListener(nil)", true, func() error { _, err := ConvertListener(nil); return err }},
	}
	runArgCases(t, cases)
}
