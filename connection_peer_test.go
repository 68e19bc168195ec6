//go:build darwin || freebsd || linux

package netpoll

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"github.com/stretchr/testify/require"
)

// What the peer does to a connection (docs/contract.md C2.2, C2.4, C7.4,
// C8.4): a reset in the middle of a message, a half-close, a close right
// after its last bytes. Reads get every byte sent before the end, then
// ErrEOF; the callbacks run once; the fds are released.

// docs/contract.md C2.2, C7.4, C8.5: the peer resets (TCP: RST by SO_LINGER
// 0; a unix socket just closes) in the middle of a message. The server's
// blocked read and the client's blocked read both end with ErrEOF, the
// callbacks run once, and every fd is released.
func TestConnPeerResetMidMessage(t *testing.T) {
	for _, network := range testNetworks {
		t.Run(network+"/server", func(t *testing.T) {
			checkLeaks(t)
			rec := newCallLog()
			readErr := make(chan error, 1)
			conns := make(chan Connection, 1)
			srv := startServer(t, network, func(ctx context.Context, c Connection) error {
				trySend(conns, c)
				_, err := c.Reader().Next(1 << 20) // only part of it ever comes
				trySend(readErr, err)
				return err
			},
				WithOnPrepare(func(c Connection) context.Context {
					_ = c.AddCloseCallback(func(Connection) error { rec.add("closed"); return nil })
					return nil
				}),
				WithOnDisconnect(func(ctx context.Context, c Connection) { rec.add("disconnect") }))
			peer := srv.dialStd(t)
			_, err := peer.Write(bytes.Repeat([]byte{'x'}, 64<<10))
			if err != nil {
				t.Fatal(err)
			}
			sc := recv(t, conns, "the request")
			blockedInRead(t, sc)
			eventually(t, func() bool { return sc.Reader().Len() == 64<<10 }, "the 64 KiB to arrive before the reset")
			abort(peer)
			err = recv(t, readErr, "the server's Next")
			if !errors.Is(err, ErrEOF) {
				t.Fatalf("server read after reset: %v, want ErrEOF", err)
			}
			rec.waitCount(t, "disconnect", 1)
			rec.waitCount(t, "closed", 1)
		})
		t.Run(network+"/client", func(t *testing.T) {
			checkLeaks(t)
			c, peer := peerPair(t, network)
			var err error
			readErr := make(chan error, 1)
			go func() {
				_, err := c.Reader().Next(1 << 20)
				readErr <- err
			}()
			if _, err = peer.Write(bytes.Repeat([]byte{'y'}, 64<<10)); err != nil {
				t.Fatal(err)
			}
			blockedInRead(t, c)
			eventually(t, func() bool { return c.Reader().Len() == 64<<10 }, "the 64 KiB to arrive before the reset")
			abort(peer)
			err = recv(t, readErr, "the client's Next")
			if !errors.Is(err, ErrEOF) {
				t.Fatalf("client read after reset: %v, want ErrEOF", err)
			}
			if c.IsActive() {
				t.Fatal("IsActive after the peer reset")
			}
			// Writing to the reset connection fails, and never panics.
			if _, err = c.Write([]byte("after reset")); err == nil {
				t.Fatal("Write after the peer reset succeeded")
			}
			if err = c.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
		})
	}
}

// docs/contract.md C2.2, C2.4: the peer sends, then shuts down its write
// side (a half-close). The dialed client and the server read every byte it
// sent, then the next read gets ErrEOF.
func TestConnPeerHalfClose(t *testing.T) {
	const size = 300 << 10
	want := frameBody(1, 2, size)
	for _, network := range testNetworks {
		t.Run(network+"/client", func(t *testing.T) {
			checkLeaks(t)
			c, peer := peerPair(t, network)
			var err error
			if _, err = peer.Write(want); err != nil {
				t.Fatal(err)
			}
			if err = peer.(interface{ CloseWrite() error }).CloseWrite(); err != nil {
				t.Fatal(err)
			}
			c.SetReadTimeout(longWait)
			got, err := c.Reader().ReadBinary(size)
			if err != nil {
				t.Fatalf("reading what came before the half-close: %v", err)
			}
			if !bytes.Equal(got, want) {
				t.Fatal("data before the half-close differs")
			}
			if _, err = c.Reader().Next(1); !errors.Is(err, ErrEOF) {
				t.Fatalf("read after the data: %v, want ErrEOF", err)
			}
		})
		t.Run(network+"/server", func(t *testing.T) {
			checkLeaks(t)
			type result struct {
				data []byte
				err  error
			}
			res := make(chan result, 1)
			srv := startServer(t, network, func(ctx context.Context, c Connection) error {
				// Read everything the peer sends, blocking, until the end.
				var all []byte
				for {
					p, err := c.Reader().Next(1)
					if err != nil {
						trySend(res, result{all, err})
						return nil
					}
					all = append(all, p...)
					if n := c.Reader().Len(); n > 0 {
						p, _ = c.Reader().Next(n)
						all = append(all, p...)
					}
					_ = c.Reader().Release()
				}
			})
			peer := srv.dialStd(t)
			defer peer.Close()
			if _, err := peer.Write(want); err != nil {
				t.Fatal(err)
			}
			if err := peer.(interface{ CloseWrite() error }).CloseWrite(); err != nil {
				t.Fatal(err)
			}
			r := recv(t, res, "the server to see the end of the stream")
			if !errors.Is(r.err, ErrEOF) {
				t.Fatalf("server read at the end: %v, want ErrEOF", r.err)
			}
			if !bytes.Equal(r.data, want) {
				t.Fatalf("server got %d bytes, want %d identical", len(r.data), len(want))
			}
		})
	}
}

// docs/contract.md C2.2, C2.4, C8.4: a blocked read that the bytes sent
// just before the peer's close can satisfy succeeds: ErrEOF comes only when
// those bytes are not enough.
func TestConnNoEOFWhileDataUnread(t *testing.T) {
	sizes := []int{1, 5000, 256 << 10, 2 << 20}
	checkLeaks(t)
	for _, network := range testNetworks {
		t.Run(network, func(t *testing.T) {
			for i, size := range sizes {
				c, peer := peerPair(t, network)
				var err error
				_ = c.SetReadTimeout(longWait)
				want := bigBytes(size, uint64(i))
				type res struct {
					p   []byte
					err error
				}
				got := make(chan res, 1)
				go func() { // blocked before anything arrives
					p, err := c.Reader().ReadBinary(size)
					got <- res{p, err}
				}()
				blockedInRead(t, c)
				_, _ = peer.Write(want)
				peer.Close()
				r := recv(t, got, "the read")
				if r.err != nil || !bytes.Equal(r.p, want) {
					t.Fatalf("size %d: read of the bytes sent before the close: %d bytes, %v", size, len(r.p), r.err)
				}
				if _, err = c.Reader().Next(1); !errors.Is(err, ErrEOF) {
					t.Fatalf("size %d: read past the end: %v, want ErrEOF", size, err)
				}
				c.Close()
			}
		})
	}
}

// docs/contract.md C7.4, C16.11: a dialed connection without handlers
// releases its fd when the peer closes, without a call to Close, and is
// inactive.
func TestConnDialedReleasesFdOnPeerClose(t *testing.T) {
	checkLeaks(t)
	forEachNetwork(t, func(t *testing.T, network string) {
		c, peer := peerPair(t, network)
		fd := c.(Conn).Fd()
		withPair := fdCount()
		require.NoError(t, peer.Close())
		eventually(t, func() bool { return fdCount() <= withPair-2 && !fdOpen(fd) },
			"the peer's fd and the dialed connection's fd %d to close (%d open with the pair, %d now)", fd, withPair, fdCount())
		require.False(t, c.IsActive())
	})
}
