//go:build darwin || dragonfly || freebsd || linux || netbsd || openbsd

package netpoll

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// §2.11.2, §2.11.3, §4.6: CreateListener listens on tcp and unix; Accept
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
		require.NoError(t, c.SetReadDeadline(time.Now().Add(longWait)))
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

// §2.11.1: ConvertListener turns a *net.TCPListener or *net.UnixListener
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

// §2.9.1, §2.11.1: an EventLoop serves a listener converted beforehand, on
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

// §2.11.3: a udp listener is created, but its Accept gives ErrUnsupported.
func TestCreateListenerUDP(t *testing.T) {
	checkFDs(t)
	ln, err := CreateListener("udp", "127.0.0.1:0")
	require.NoError(t, err)
	_, err = ln.Accept()
	require.True(t, errors.Is(err, ErrUnsupported), "Accept on udp: %v", err)
	require.NoError(t, ln.Close())
}
