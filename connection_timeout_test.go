//go:build darwin || freebsd || linux

package netpoll

import (
	"bytes"
	"context"
	"errors"
	"hash/crc32"
	"io"
	"math/rand"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// nextAsync starts c.Next(n) on another goroutine.
func nextAsync(c npConn, n int) <-chan result {
	return async(func() result {
		p, err := c.Next(n)
		return result{b: append([]byte(nil), p...), err: err}
	})
}

// docs/contract.md C6.2: a read deadline overrides the read timeout. The timeout is an
// hour, so only the deadline can end the read within the test's bound.
func TestConnReadDeadlineOverridesTimeout(t *testing.T) {
	checkLeaks(t)
	forEachNetwork(t, func(t *testing.T, network string) {
		c, _ := peerPair(t, network)
		require.NoError(t, c.SetReadTimeout(time.Hour))
		require.NoError(t, c.SetReadDeadline(time.Now().Add(100*time.Millisecond)))
		got := recv(t, nextAsync(c, 1), "a read with a 100ms deadline")
		requireErrIs(t, got.err, ErrReadTimeout)
		requireTimeoutErr(t, got.err)
		require.True(t, c.IsActive())

		// SetDeadline sets the read deadline too.
		require.NoError(t, c.SetDeadline(time.Now().Add(100*time.Millisecond)))
		got = recv(t, nextAsync(c, 1), "a read after SetDeadline")
		requireErrIs(t, got.err, ErrReadTimeout)
		require.True(t, c.IsActive())
	})
}

// docs/contract.md C6.1: SetReadTimeout always clears the read deadline; d<0 keeps the
// timeout, 0 means wait forever. The zero time clears a deadline.
func TestConnSetReadTimeoutClearsDeadline(t *testing.T) {
	checkLeaks(t)
	forEachNetwork(t, func(t *testing.T, network string) {
		for _, d := range []time.Duration{0, -1} {
			c, peer := peerPair(t, network)
			require.NoError(t, c.SetReadDeadline(time.Now().Add(30*time.Millisecond)))
			require.NoError(t, c.SetReadTimeout(d)) // clears the deadline; no timeout
			done := nextAsync(c, 1)
			notYet(t, done, 200*time.Millisecond, "a read whose deadline was cleared")
			_, err := peer.Write([]byte("x"))
			require.NoError(t, err)
			got := recv(t, done, "the read")
			require.NoError(t, got.err)
			require.Equal(t, "x", string(got.b))
		}

		c, peer := peerPair(t, network)
		require.NoError(t, c.SetReadDeadline(time.Now().Add(30*time.Millisecond)))
		require.NoError(t, c.SetReadDeadline(time.Time{}))
		done := nextAsync(c, 1)
		notYet(t, done, 200*time.Millisecond, "a read whose deadline was cleared with the zero time")
		_, err := peer.Write([]byte("y"))
		require.NoError(t, err)
		require.NoError(t, recv(t, done, "the read").err)

		// d<0 keeps the timeout that was set.
		require.NoError(t, c.SetReadTimeout(50*time.Millisecond))
		require.NoError(t, c.SetReadTimeout(-1))
		got := recv(t, nextAsync(c, 1), "a read with a kept 50ms timeout")
		requireErrIs(t, got.err, ErrReadTimeout)
	})
}

// docs/contract.md C6.2, C6.3: a deadline in the past fails a read only if the read has
// to wait; buffered bytes are still read, and nothing is consumed by the failure.
func TestConnPastReadDeadline(t *testing.T) {
	checkLeaks(t)
	forEachNetwork(t, func(t *testing.T, network string) {
		c, peer := peerPair(t, network)
		feed(t, peer, c, []byte("abcd"), 4)
		require.NoError(t, c.SetReadDeadline(time.Now().Add(-time.Second)))
		p, err := c.Next(2)
		require.NoError(t, err, "a read the buffer satisfies must ignore a past deadline")
		require.Equal(t, "ab", string(p))
		got := recv(t, nextAsync(c, 3), "a read past its deadline")
		requireErrIs(t, got.err, ErrReadTimeout)
		require.Equal(t, 2, c.Len())
		require.True(t, c.IsActive())
		require.NoError(t, c.SetReadDeadline(time.Time{}))
		p, err = c.Next(2)
		require.NoError(t, err)
		require.Equal(t, "cd", string(p))
	})
}

// docs/contract.md C6.1, C6.2: the write deadline overrides the write timeout, a past
// write deadline fails only a send that has to wait, and SetWriteTimeout
// clears the write deadline.
func TestConnWriteDeadline(t *testing.T) {
	checkLeaks(t)
	forEachNetwork(t, func(t *testing.T, network string) {
		c, peer := peerPair(t, network)
		shrinkReadBuffer(peer)
		require.NoError(t, c.SetWriteDeadline(time.Now().Add(-time.Second)))
		_, err := c.Write([]byte("small"))
		require.NoError(t, err, "a send that does not wait must ignore a past deadline")
		require.Equal(t, "small", string(readFull(t, peer, 5)))

		payload := make([]byte, bigPayload)
		require.NoError(t, c.SetWriteTimeout(time.Hour)) // clears the past deadline
		require.NoError(t, c.SetWriteDeadline(time.Now().Add(100*time.Millisecond)))
		err = within(t, "Write with a 100ms deadline", func() error { _, err := c.Write(payload); return err })
		requireErrIs(t, err, ErrWriteTimeout)
		requireTimeoutErr(t, err)
		require.True(t, c.IsActive())

		// SetWriteTimeout(0) clears the deadline: the Flush now waits for the reader.
		require.NoError(t, c.SetWriteTimeout(0))
		done := async(c.Flush)
		notYet(t, done, 200*time.Millisecond, "Flush without deadline or timeout")
		got := readAllAsync(peer, len(payload))
		require.NoError(t, recv(t, done, "Flush"))
		require.NoError(t, recv(t, got, "the peer's read").err)
	})
}

// docs/contract.md C6.3: WithReadTimeout and WithWriteTimeout apply to every accepted
// connection; timeouts there leave the connection open and usable. A reply
// sent with Write and one staged with WriteBinary and then flushed both time
// out.
func TestEventLoopTimeoutOptions(t *testing.T) {
	checkLeaks(t)
	forEachNetwork(t, func(t *testing.T, network string) {
		readErr := make(chan error, 1)
		writeErr := make(chan error, 1)
		s := startServer(t, network, func(ctx context.Context, c Connection) error {
			r := c.Reader()
			cmd, err := r.ReadByte()
			if err != nil {
				return err
			}
			switch cmd {
			case 'r': // wait for 100 bytes that never come
				_, err = r.Next(100)
				readErr <- err
				_ = r.Release()
				_, err = c.Writer().WriteString(boolByte(c.IsActive()))
				if err == nil {
					err = c.Writer().Flush()
				}
			case 'w': // send more than the client will read
				_, err = c.Write(make([]byte, bigPayload))
				writeErr <- err
			case 'f': // the same by reference: WriteBinary, then Flush
				for i := 0; i < bigPayload/len(randBlock) && err == nil; i++ {
					_, err = c.Writer().WriteBinary(randBlock)
				}
				if err == nil {
					err = c.Writer().Flush()
				}
				writeErr <- err
			}
			return err
		}, WithReadTimeout(100*time.Millisecond), WithWriteTimeout(100*time.Millisecond))

		cl := dialStd(t, network, s.addr)
		shrinkReadBuffer(cl)
		_, err := cl.Write([]byte("r"))
		require.NoError(t, err)
		err = recv(t, readErr, "the server's read")
		requireErrIs(t, err, ErrReadTimeout)
		require.Equal(t, "1", string(readFull(t, cl, 1)), "the connection must still be active after the read timeout")

		_, err = cl.Write([]byte("w"))
		require.NoError(t, err)
		err = recv(t, writeErr, "the server's write")
		requireErrIs(t, err, ErrWriteTimeout)

		cl2 := dialStd(t, network, s.addr)
		shrinkReadBuffer(cl2)
		_, err = cl2.Write([]byte("f"))
		require.NoError(t, err)
		err = recv(t, writeErr, "the server's Flush")
		requireErrIs(t, err, ErrWriteTimeout)
	})
}

func boolByte(b bool) string {
	if b {
		return "1"
	}
	return "0"
}

// docs/contract.md C6.4: SetIdleTimeout turns on TCP keep-alive for whole seconds >= 1 on
// TCP, does nothing below a second or on unix sockets, and never closes the
// connection.
func TestConnSetIdleTimeout(t *testing.T) {
	checkLeaks(t)
	forEachNetwork(t, func(t *testing.T, network string) {
		c, peer := peerPair(t, network)
		fd := c.(Conn).Fd()
		keepAlive := func() int {
			v, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_KEEPALIVE)
			require.NoError(t, err)
			return v
		}
		require.NoError(t, c.SetIdleTimeout(500*time.Millisecond))
		require.Equal(t, 0, keepAlive(), "keep-alive set for less than a second")
		require.NoError(t, c.SetIdleTimeout(2*time.Second))
		if network == "tcp" {
			require.NotEqual(t, 0, keepAlive(), "keep-alive not set on TCP")
		}
		require.True(t, c.IsActive())
		_, err := peer.Write([]byte("ok"))
		require.NoError(t, err)
		p, err := c.Next(2)
		require.NoError(t, err)
		require.Equal(t, "ok", string(p))
	})
}

// docs/contract.md C6.1, C6.3: reads that keep timing out while bytes trickle in lose,
// duplicate and reorder nothing, and every failure is ErrReadTimeout.
func TestConnReadTimeoutChurn(t *testing.T) {
	checkLeaks(t)
	forEachNetwork(t, func(t *testing.T, network string) {
		rng := newRand(t)
		c, peer := peerPair(t, network)
		const n = 300
		seed := rng.Int63()
		sent := async(func() error {
			r := rand.New(rand.NewSource(seed))
			for i := 0; i < n; i++ {
				if _, err := peer.Write([]byte{byte(i)}); err != nil {
					return err
				}
				time.Sleep(time.Duration(r.Intn(1500)) * time.Microsecond)
			}
			return nil
		})
		require.NoError(t, c.SetReadTimeout(time.Millisecond))
		timeouts := 0
		end := time.Now().Add(longWait)
		for i := 0; i < n; {
			require.True(t, time.Now().Before(end), "only %d of %d bytes read", i, n)
			b, err := c.ReadByte()
			if err != nil {
				requireErrIs(t, err, ErrReadTimeout)
				require.True(t, c.IsActive())
				timeouts++
				continue
			}
			require.Equal(t, byte(i), b, "byte %d", i)
			i++
		}
		require.NoError(t, recv(t, sent, "the writer"))
		require.Equal(t, 0, c.Len())
		t.Logf("%d read timeouts while reading %d bytes", timeouts, n)
		require.Positive(t, timeouts, "no read timed out: the churn was not exercised")
	})
}

// docs/contract.md C5.1, C6.3: a Flush that keeps timing out while the peer reads slowly
// keeps the unsent bytes queued; retrying delivers everything exactly once.
func TestConnWriteTimeoutChurn(t *testing.T) {
	checkLeaks(t)
	forEachNetwork(t, func(t *testing.T, network string) {
		rng := newRand(t)
		c, peer := peerPair(t, network)
		shrinkReadBuffer(peer)
		payload := randomBytes(rng, 4<<20)
		got := async(func() result {
			_ = peer.SetReadDeadline(time.Now().Add(longWait))
			p := make([]byte, len(payload))
			n := 0
			for n < len(p) {
				m, err := peer.Read(p[n:min(len(p), n+64<<10)])
				n += m
				if err != nil {
					return result{b: p[:n], err: err}
				}
				time.Sleep(200 * time.Microsecond)
			}
			return result{b: p}
		})
		require.NoError(t, c.SetWriteTimeout(2*time.Millisecond))
		_, err := c.WriteBinary(payload)
		require.NoError(t, err)
		timeouts := 0
		end := time.Now().Add(longWait)
		for {
			require.True(t, time.Now().Before(end), "the payload was not sent within %v", longWait)
			err = c.Flush()
			if err == nil {
				break
			}
			requireErrIs(t, err, ErrWriteTimeout)
			require.True(t, c.IsActive())
			timeouts++
		}
		r := recv(t, got, "the peer's read")
		require.NoError(t, r.err)
		require.True(t, bytes.Equal(payload, r.b), "bytes lost, repeated or reordered across write timeouts")
		t.Logf("%d write timeouts while sending %d bytes", timeouts, len(payload))
		require.Positive(t, timeouts, "no write timed out: the churn was not exercised")
	})
}

// docs/contract.md C5.1, C6.3: with a peer that never reads, Flush ends
// with ErrWriteTimeout (a net.Error timeout), the connection stays open, the
// output buffer holds only what is unsent (it does not grow with retries),
// and everything arrives once the peer reads.
func TestConnWriteTimeoutKeepsOutputBounded(t *testing.T) {
	const chunk, chunks = 1 << 20, 24
	checkLeaks(t)
	for _, network := range testNetworks {
		t.Run(network, func(t *testing.T) {
			dc, peer := peerPair(t, network)
			var err error
			c := connOf(dc)
			_ = dc.SetWriteTimeout(100 * time.Millisecond)
			sum := crc32.NewIEEE()
			write := func(seq int) {
				p, err := dc.Writer().Malloc(chunk)
				if err != nil {
					t.Fatal(err)
				}
				copy(p, frameBody(9, uint64(seq), chunk))
				sum.Write(p)
			}
			for i := 0; i < chunks; i++ {
				write(i)
			}
			err = dc.Writer().Flush()
			var ne net.Error
			if !errors.Is(err, ErrWriteTimeout) || !errors.As(err, &ne) || !ne.Timeout() {
				t.Fatalf("Flush to a peer that never reads: %v, want ErrWriteTimeout", err)
			}
			if !dc.IsActive() {
				t.Fatal("a write timeout closed the connection")
			}
			unsent := func() int {
				c.outMu.Lock()
				defer c.outMu.Unlock()
				return c.out.Len() + c.out.MallocLen()
			}
			bound := func(what string) {
				_, out := retained(c)
				if u := unsent(); out > u+2*chunk {
					t.Fatalf("%s: output buffer holds %d bytes for %d unsent", what, out, u)
				}
			}
			bound("after the first timeout")
			first := unsent()
			for i := 0; i < 5; i++ {
				if err = dc.Writer().Flush(); !errors.Is(err, ErrWriteTimeout) {
					t.Fatalf("retry %d: %v, want ErrWriteTimeout", i, err)
				}
				bound("after a retry")
			}
			if u := unsent(); u > first {
				t.Fatalf("retries grew the unsent bytes from %d to %d", first, u)
			}
			// The peer wakes up and reads everything; the rest goes out.
			got := make(chan uint32, 1)
			go func() {
				h := crc32.NewIEEE()
				_ = peer.SetReadDeadline(time.Now().Add(longWait))
				n, err := io.CopyN(h, peer, chunk*chunks)
				if err != nil {
					t.Errorf("peer read %d bytes: %v", n, err)
				}
				got <- h.Sum32()
			}()
			_ = dc.SetWriteTimeout(0)
			if err = dc.Writer().Flush(); err != nil {
				t.Fatalf("Flush once the peer reads: %v", err)
			}
			if s := recv(t, got, "the peer to get everything"); s != sum.Sum32() {
				t.Fatal("the peer got different bytes")
			}
			if _, out := retained(c); out != 0 {
				t.Fatalf("output buffer holds %d bytes with nothing left to send", out)
			}
		})
	}
}
