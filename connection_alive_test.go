//go:build darwin || freebsd || linux

package netpoll

import (
	"context"
	"errors"
	"net"
	"testing"

	"github.com/stretchr/testify/require"
)

// docs/contract.md C17.7: IsActive is false as soon as the peer's Close
// has returned, before the poller has handled the hang-up, in 1000 of 1000
// tries; the connection then closes as after a peer close.
func TestIsActiveAfterPeerClose(t *testing.T) {
	forEachNetwork(t, func(t *testing.T, network string) {
		checkLeaks(t)
		ln := listenStd(t, network)
		tries := 1000
		if testing.Short() {
			tries = 200
		}
		for i := 0; i < tries; i++ {
			accepted := async(func() net.Conn { c, _ := ln.Accept(); return c })
			c, err := DialConnection(network, ln.Addr().String(), longWait)
			require.NoError(t, err)
			peer := recv(t, accepted, "the accept")
			require.NotNil(t, peer)
			require.True(t, c.IsActive(), "try %d: active before the peer's close", i)
			require.NoError(t, peer.Close())
			if c.IsActive() {
				_ = c.Close()
				t.Fatalf("try %d of %d: IsActive true after the peer's Close returned", i+1, tries)
			}
			require.False(t, c.IsActive(), "try %d: a second call", i)
			require.NoError(t, c.Close())
		}
	})
}

// docs/contract.md C17.7: a reset (TCP RST) makes IsActive false at once too.
func TestIsActiveAfterPeerReset(t *testing.T) {
	checkLeaks(t)
	for i := 0; i < 100; i++ {
		c, peer := peerPair(t, "tcp")
		require.True(t, c.IsActive())
		abort(peer)
		require.False(t, c.IsActive(), "try %d: IsActive true after the peer's reset", i)
		require.NoError(t, c.Close())
	}
}

// docs/contract.md C17.8: a live connection stays active, with nothing
// buffered, with bytes buffered, and with bytes in the kernel the poller
// has not read; and after the peer's close the buffered bytes are still
// read before the end of the stream.
func TestIsActiveLiveAndBuffered(t *testing.T) {
	forEachNetwork(t, func(t *testing.T, network string) {
		checkLeaks(t)
		c, peer := peerPair(t, network)
		for i := 0; i < 100; i++ {
			require.True(t, c.IsActive())
		}
		_, err := peer.Write([]byte("hello"))
		require.NoError(t, err)
		for i := 0; i < 100; i++ { // before, while and after the poller reads them
			require.True(t, c.IsActive())
		}
		eventually(t, func() bool { return c.Len() == 5 }, "the input to be buffered")
		require.True(t, c.IsActive())
		require.NoError(t, peer.Close())
		p, err := c.Next(5)
		require.NoError(t, err)
		require.Equal(t, "hello", string(p))
		_, err = c.Next(1)
		require.True(t, errors.Is(err, ErrEOF), "read after the buffered bytes: %v", err)
		require.False(t, c.IsActive())
	})
}

// docs/contract.md C17.7: the close IsActive discovers is a peer close: on
// an EventLoop's connection OnDisconnect and the close callbacks run once,
// and a blocked reader gets ErrEOF.
func TestIsActiveServerSide(t *testing.T) {
	forEachNetwork(t, func(t *testing.T, network string) {
		checkLeaks(t)
		rec := newCallLog()
		conns := make(chan Connection, 1)
		srv := startServer(t, network, func(ctx context.Context, c Connection) error { return nil },
			WithOnConnect(func(ctx context.Context, c Connection) context.Context {
				_ = c.AddCloseCallback(func(Connection) error { rec.add("close"); return nil })
				conns <- c
				return ctx
			}),
			WithOnDisconnect(func(ctx context.Context, c Connection) { rec.add("disconnect") }))
		peer := srv.dialStd(t)
		c := recv(t, conns, "OnConnect")
		require.True(t, c.IsActive())
		require.NoError(t, peer.Close())
		require.False(t, c.IsActive())
		rec.waitCount(t, "disconnect", 1)
		rec.waitCount(t, "close", 1)
		require.Equal(t, []string{"disconnect", "close"}, rec.get())
		eventually(t, func() bool { return srv.conns() == 0 }, "the server to forget the connection")
	})
}

// docs/contract.md C17.9: IsActive on a live connection allocates nothing.
func TestIsActiveAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocations are counted without -race")
	}
	c, _ := peerPair(t, "tcp")
	allocs := testing.AllocsPerRun(1000, func() { _ = c.IsActive() })
	require.Zero(t, allocs)
	u, _ := peerPair(t, "unix")
	allocs = testing.AllocsPerRun(1000, func() { _ = u.IsActive() })
	require.Zero(t, allocs)
}

// BenchmarkIsActive is IsActive on a live, idle connection: one
// non-blocking peek at the socket (docs/contract.md C17.9: median at most a
// microsecond).
func BenchmarkIsActive(b *testing.B) {
	for _, network := range testNetworks {
		b.Run(network, func(b *testing.B) {
			c, _ := peerPair(b, network)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if !c.IsActive() {
					b.Fatal("inactive")
				}
			}
		})
	}
}
