//go:build darwin || freebsd || linux

package netpoll

import (
	"context"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// docs/contract.md C11.2–C11.4, C16.6: CreateListener listens on tcp and unix; Accept
// never blocks, giving (nil, nil) when nothing is pending and a working Conn
// otherwise; Close may be called twice; after it the address refuses dials.
func TestListenerAcceptNonBlocking(t *testing.T) {
	checkFDs(t)
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
	checkFDs(t)
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
	checkFDs(t)
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
	checkFDs(t)
	ln, err := CreateListener("udp", "127.0.0.1:0")
	require.NoError(t, err)
	_, err = ln.Accept()
	require.True(t, errors.Is(err, ErrUnsupported), "Accept on udp: %v", err)
	require.NoError(t, ln.Close())
}

// CreateListener takes only "udp" as a packet network: "udp4" and "udp6" go
// to net.Listen, which refuses them with its *net.OpError. ConvertListener
// of a net listener that is already closed fails as its File method does,
// "file tcp addr: use of closed network connection". Listener.Close returns
// nil even when the net listener it was converted from was closed first.
func TestCreateConvertListenerErrors(t *testing.T) {
	checkFDs(t)
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
	checkFDs(t)
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
