//go:build linux

package netpoll

import (
	"bytes"
	"context"
	"encoding/binary"
	"hash/crc32"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Input backpressure (connection_io.go): a reader that falls behind
// bounds the input buffer, and no pattern that works without pausing
// deadlocks with it.

// stdWriteAsync writes p to the standard connection in 64 KiB pieces on
// another goroutine; the returned channel yields the write's error.
func stdWriteAsync(c net.Conn, p []byte) <-chan error {
	done := make(chan error, 1)
	go func() {
		_ = c.SetWriteDeadline(time.Now().Add(longWait))
		for len(p) > 0 {
			n, err := c.Write(p[:min(len(p), 64<<10)])
			if err != nil {
				done <- err
				return
			}
			p = p[n:]
		}
		done <- nil
	}()
	return done
}

// A reader slower than the peer: the input buffer stays bounded and the
// bytes arrive intact.
func TestPauseBoundsTheInputOfASlowReader(t *testing.T) {
	checkLeaks(t)
	forEachNetwork(t, func(t *testing.T, network string) {
		c, peer := peerPair(t, network)
		want := bigBytes(48<<20, 1)
		written := stdWriteAsync(peer, want)
		require.NoError(t, c.SetReadTimeout(longWait))
		conn := connOf(c)
		eventually(t, conn.inputPaused, "the input pauses")
		got := make([]byte, 0, len(want))
		peak, pauses := 0, 0
		for len(got) < len(want) {
			if _, err := c.Peek(1); err != nil {
				t.Fatalf("after %d bytes: %v", len(got), err)
			}
			if conn.inputPaused() {
				pauses++
			}
			p, err := c.Next(min(c.Len(), 1<<20))
			require.NoError(t, err)
			got = append(got, p...)
			peak = max(peak, retainedIn(conn))
			require.NoError(t, c.Release())
			time.Sleep(2 * time.Millisecond)
		}
		require.NoError(t, recv(t, written, "the peer's write"))
		require.True(t, bytes.Equal(want, got), "the bytes differ")
		t.Logf("peak input buffer %s, seen paused %d times", mib(int64(peak)), pauses)
		require.LessOrEqual(t, peak, 32<<20, "input buffer peak")
	})
}

// A client that writes a whole message before it reads the echo: the input
// of one side or both pauses (which ones depends on who falls behind first;
// the test watches both and requires a pause), both Flushes wait, and the
// grace resumes the input.
func TestPauseClientWritesEverythingBeforeReading(t *testing.T) {
	checkLeaks(t)
	forEachNetwork(t, func(t *testing.T, network string) {
		accepted := make(chan *connection, 1)
		s := startServer(t, network, func(ctx context.Context, c Connection) error {
			return echoChunks(c, 1<<20, nil)
		}, WithOnPrepare(func(c Connection) context.Context {
			accepted <- connOf(c)
			return nil
		}))
		c := dialNP(t, network, s.addr)
		server := recv(t, accepted, "the accepted connection")
		stop := make(chan struct{})
		paused := watchPauses(stop, connOf(c), server)
		require.NoError(t, c.SetReadTimeout(longWait))
		require.NoError(t, c.SetWriteTimeout(longWait))
		want := bigBytes(32<<20, 2)
		_, err := c.WriteBinary(want)
		require.NoError(t, err)
		require.NoError(t, c.Flush())
		got, err := c.Next(len(want))
		require.NoError(t, err)
		require.True(t, bytes.Equal(want, got), "the echo differs")
		close(stop)
		seen := recv(t, paused, "the pause watcher")
		t.Logf("paused: client %v, server %v", seen[0], seen[1])
		require.True(t, seen[0] || seen[1], "neither side's input paused: the pattern was not exercised")
	})
}

// watchPauses samples whether each connection's input is paused, every
// millisecond until stop is closed, and then reports which ever were.
// A pause that the grace ends lasts pauseGrace, far longer than a sample.
func watchPauses(stop <-chan struct{}, conns ...*connection) <-chan []bool {
	return async(func() []bool {
		seen := make([]bool, len(conns))
		for {
			for i, c := range conns {
				seen[i] = seen[i] || c.inputPaused()
			}
			select {
			case <-stop:
				return seen
			case <-time.After(time.Millisecond):
			}
		}
	})
}

// A handler that waits, without blocking, for a frame larger than the
// pause threshold is called again until the frame is there.
func TestPauseHandlerWaitsForALargeFrame(t *testing.T) {
	checkLeaks(t)
	forEachNetwork(t, func(t *testing.T, network string) {
		s := startServer(t, network, func(ctx context.Context, c Connection) error {
			r := c.Reader()
			if r.Len() < 4 {
				return nil
			}
			hdr, err := r.Peek(4)
			if err != nil {
				return err
			}
			size := int(binary.BigEndian.Uint32(hdr))
			if r.Len() < 4+size {
				return nil // called again when more arrives
			}
			_ = r.Skip(4)
			body, err := r.Next(size)
			if err != nil {
				return err
			}
			var sum [4]byte
			binary.BigEndian.PutUint32(sum[:], crc32.ChecksumIEEE(body))
			_ = r.Release()
			_, _ = c.Writer().WriteBinary(sum[:])
			return c.Writer().Flush()
		})
		peer := dialStd(t, network, s.addr)
		body := bigBytes(24<<20, 3)
		frame := binary.BigEndian.AppendUint32(nil, uint32(len(body)))
		written := stdWriteAsync(peer, append(frame, body...))
		sum := readFull(t, peer, 4)
		require.Equal(t, crc32.ChecksumIEEE(body), binary.BigEndian.Uint32(sum))
		require.NoError(t, recv(t, written, "the peer's write"))
	})
}

// A reader that blocks for more than is buffered resumes a paused input.
func TestPauseBlockedReaderResumes(t *testing.T) {
	checkLeaks(t)
	forEachNetwork(t, func(t *testing.T, network string) {
		c, peer := peerPair(t, network)
		want := bigBytes(24<<20, 4)
		written := stdWriteAsync(peer, want)
		conn := connOf(c)
		eventually(t, conn.inputPaused, "the input pauses")
		require.NoError(t, c.SetReadTimeout(longWait))
		got, err := c.Next(len(want))
		require.NoError(t, err)
		require.True(t, bytes.Equal(want, got), "the bytes differ")
		require.NoError(t, recv(t, written, "the peer's write"))
	})
}

// A paused connection still notices the peer's close, and keeps every byte
// the peer sent before it.
func TestPauseStillSeesTheHangUp(t *testing.T) {
	checkLeaks(t)
	forEachNetwork(t, func(t *testing.T, network string) {
		c, peer := peerPair(t, network)
		want := bigBytes(inputPauseAbove+1, 5) // the last read pauses: nothing stays in the kernel
		require.NoError(t, recv(t, stdWriteAsync(peer, want), "the peer's write"))
		conn := connOf(c)
		eventually(t, conn.inputPaused, "the input pauses")
		require.NoError(t, peer.Close())
		eventually(t, func() bool { return !c.IsActive() }, "the hang-up is seen")
		got, err := c.Next(len(want))
		require.NoError(t, err)
		require.True(t, bytes.Equal(want, got), "the bytes differ")
		_, err = c.Next(1)
		requireErrIs(t, err, ErrEOF)
	})
}
