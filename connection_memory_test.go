//go:build darwin || freebsd || linux

package netpoll

import (
	"net"
	"runtime"
	"testing"

	"github.com/stretchr/testify/require"
)

// heapInUse returns the heap in use once everything unreachable is gone:
// two collections, since pooled memory (the buffers' pool) survives the
// first one in the pool's victim cache.
func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse
}

// A connection that read a large message and released it, and then holds a
// few unread bytes, must not keep the memory the large message needed: the
// read size grows for a large message, and the bytes that come after it
// must still end up in a small node, whether they arrive later or in the
// same write as the message. The figure is the growth of the heap in use,
// after collection, averaged over several connections (dialed, with a
// standard-library peer) to damp the noise.
func TestConnectionMemoryAfterLargeMessage(t *testing.T) {
	checkLeaks(t)
	const (
		conns  = 8
		large  = 16 << 20
		unread = 10
		limit  = 64 << 10 // bytes per connection
	)
	msg := make([]byte, large) // shared by every peer, alive throughout
	for i := range msg {
		msg[i] = byte(i*7 + i>>12)
	}
	tail := []byte("0123456789")[:unread]

	for _, sameWrite := range []bool{false, true} {
		name := "tail sent after the release"
		if sameWrite {
			name = "tail sent with the message"
		}
		t.Run(name, func(t *testing.T) {
			type pair struct {
				c    npConn
				peer net.Conn
			}
			pairs := make([]pair, conns)
			for i := range pairs {
				pairs[i].c, pairs[i].peer = peerPair(t, "tcp")
			}
			// Warm up every connection (and its poller) with a small exchange.
			for _, p := range pairs {
				_, err := p.peer.Write([]byte("x"))
				require.NoError(t, err)
				b, err := p.c.Next(1)
				require.NoError(t, err)
				require.Equal(t, "x", string(b))
				require.NoError(t, p.c.Release())
			}
			before := heapInUse()

			for _, p := range pairs {
				c, peer := p.c, p.peer
				wrote := async(func() error {
					if sameWrite {
						bufs := net.Buffers{msg, tail}
						_, err := bufs.WriteTo(peer)
						return err
					}
					_, err := peer.Write(msg)
					return err
				})
				if sameWrite { // wait for all of it: the tail shares the message's last read
					_, err := c.Peek(large + unread)
					require.NoError(t, err)
				}
				b, err := c.Next(large)
				require.NoError(t, err)
				require.Equal(t, msg[:64], b[:64])
				require.Equal(t, msg[large-64:], b[large-64:])
				require.NoError(t, c.Release())
				require.NoError(t, recv(t, wrote, "the peer's write of the large message"))
				if !sameWrite {
					_, err = peer.Write(tail)
					require.NoError(t, err)
				}
				eventually(t, func() bool { return c.Len() == unread }, "the %d bytes after the large message to arrive", unread)
			}
			after := heapInUse()
			runtime.KeepAlive(msg)

			perConn := (int64(after) - int64(before)) / conns
			var held int
			for _, p := range pairs {
				held += retainedIn(connOf(p.c))
			}
			t.Logf("heap in use: %d before, %d after; %d bytes per connection; input buffers hold %d bytes each",
				before, after, perConn, held/conns)
			require.LessOrEqual(t, perConn, int64(limit),
				"a connection holding %d unread bytes after a %d-byte message pins %d bytes", unread, large, perConn)

			// The unread bytes are intact.
			for _, p := range pairs {
				b, err := p.c.Next(unread)
				require.NoError(t, err)
				require.Equal(t, tail, b)
				require.NoError(t, p.c.Release())
			}
		})
	}
}
