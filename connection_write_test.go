//go:build darwin || freebsd || linux

package netpoll

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// bigPayload is far more than the kernel buffers of a loopback connection
// whose reader does not read, so sending it must wait for the reader.
const bigPayload = 16 << 20

// docs/contract.md C5.1: Flush sends everything; when the socket is full it blocks until
// the peer has taken the rest, and it returns only once every byte was
// written, so closing right after it loses nothing.
func TestConnFlushBlocksUntilWritten(t *testing.T) {
	checkLeaks(t)
	forEachNetwork(t, func(t *testing.T, network string) {
		rng := newRand(t)
		c, peer := peerPair(t, network)
		shrinkReadBuffer(peer)
		payload := randomBytes(rng, bigPayload)
		n, err := c.WriteBinary(payload)
		require.NoError(t, err)
		require.Equal(t, len(payload), n)
		require.Equal(t, len(payload), c.MallocLen())

		done := async(c.Flush)
		notYet(t, done, 200*time.Millisecond, "Flush with a peer that does not read")
		got := readAllAsync(peer, len(payload))
		require.NoError(t, recv(t, done, "Flush"))
		require.Equal(t, 0, c.MallocLen())
		require.NoError(t, c.Close())
		r := recv(t, got, "the peer's read")
		require.NoError(t, r.err)
		require.True(t, bytes.Equal(payload, r.b), "the peer received other bytes than were sent")
		expectEOF(t, peer)
	})
}

// docs/contract.md C5.1, C5.2, C6.3: a send that passes its write timeout fails with
// ErrWriteTimeout (Timeout() true), the connection stays active, and the
// unsent bytes stay queued: the next Flush delivers all of them exactly once.
func TestConnWriteTimeout(t *testing.T) {
	checkLeaks(t)
	forEachNetwork(t, func(t *testing.T, network string) {
		rng := newRand(t)
		c, peer := peerPair(t, network)
		shrinkReadBuffer(peer)
		payload := randomBytes(rng, bigPayload)
		const timeout = 100 * time.Millisecond
		require.NoError(t, c.SetWriteTimeout(timeout))
		start := time.Now()
		type wr struct {
			n   int
			err error
		}
		w := within(t, "Write", func() wr { n, err := c.Write(payload); return wr{n, err} })
		require.GreaterOrEqual(t, time.Since(start), timeout-10*time.Millisecond, "timed out before the timeout")
		require.Equal(t, len(payload), w.n, "Write returns len(p) with the Flush error")
		requireErrIs(t, w.err, ErrWriteTimeout)
		requireTimeoutErr(t, w.err)
		require.True(t, c.IsActive(), "a write timeout closed the connection")

		require.NoError(t, c.SetWriteTimeout(0))
		got := readAllAsync(peer, len(payload))
		require.NoError(t, within(t, "Flush", c.Flush))
		r := recv(t, got, "the peer's read")
		require.NoError(t, r.err)
		require.True(t, bytes.Equal(payload, r.b), "bytes lost or repeated across the write timeout")

		// Nothing more was sent.
		_, err := c.Write([]byte("end"))
		require.NoError(t, err)
		require.Equal(t, "end", string(readFull(t, peer, 3)))
	})
}

// docs/contract.md C5.2, C5.5, C16.9: concurrent Write calls are serialised: every one succeeds
// and the bytes of one Write are never interleaved with another's.
func TestConnConcurrentWritesSerialised(t *testing.T) {
	checkLeaks(t)
	forEachNetwork(t, func(t *testing.T, network string) {
		rng := newRand(t)
		c, peer := peerPair(t, network)
		const writers, perWriter = 8, 100
		// Each record: writer id (1 byte), sequence (4), body length (4), body.
		records := make([][][]byte, writers)
		total := 0
		for w := range records {
			for seq := 0; seq < perWriter; seq++ {
				size := 1 + rng.Intn(20000)
				rec := make([]byte, 9+size)
				rec[0] = byte(w)
				binary.BigEndian.PutUint32(rec[1:], uint32(seq))
				binary.BigEndian.PutUint32(rec[5:], uint32(size))
				fill := byte(w*37 + seq)
				for i := range rec[9:] {
					rec[9+i] = fill + byte(i)
				}
				records[w] = append(records[w], rec)
				total += len(rec)
			}
		}
		got := readAllAsync(peer, total)
		var wg sync.WaitGroup
		errs := make(chan error, writers*perWriter)
		for w := range records {
			wg.Add(1)
			go func(recs [][]byte) {
				defer wg.Done()
				for _, rec := range recs {
					n, err := c.Write(rec)
					if err != nil || n != len(rec) {
						errs <- fmt.Errorf("Write = %d, %v (want %d, nil)", n, err, len(rec))
					}
				}
			}(records[w])
		}
		recv(t, async(func() bool { wg.Wait(); return true }), "the writers")
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		r := recv(t, got, "the peer's read")
		require.NoError(t, r.err)

		next := make([]int, writers)
		stream := r.b
		for len(stream) > 0 {
			require.GreaterOrEqual(t, len(stream), 9, "truncated record header")
			w := int(stream[0])
			require.Less(t, w, writers, "garbage where a record header should be: bytes interleaved")
			seq := int(binary.BigEndian.Uint32(stream[1:]))
			require.Equal(t, next[w], seq, "writer %d: records out of order or interleaved", w)
			want := records[w][seq]
			require.GreaterOrEqual(t, len(stream), len(want))
			require.True(t, bytes.Equal(want, stream[:len(want)]), "writer %d record %d corrupted: interleaved writes", w, seq)
			stream = stream[len(want):]
			next[w]++
		}
		for w := range next {
			require.Equal(t, perWriter, next[w], "writer %d", w)
		}
	})
}

// writerCall is one Writer method, called for its error.
type writerCall struct {
	name string
	call func(w Writer) error
}

func writerCalls() []writerCall {
	return []writerCall{
		{"Malloc", func(w Writer) error { _, err := w.Malloc(8); return err }},
		{"WriteString", func(w Writer) error { _, err := w.WriteString("hello"); return err }},
		{"WriteString(big)", func(w Writer) error { _, err := w.WriteString(strings.Repeat("x", 10000)); return err }},
		{"WriteBinary", func(w Writer) error { _, err := w.WriteBinary([]byte("hello")); return err }},
		{"WriteBinary(big)", func(w Writer) error { _, err := w.WriteBinary(make([]byte, 10000)); return err }},
		{"WriteByte", func(w Writer) error { return w.WriteByte('x') }},
		{"WriteDirect", func(w Writer) error { return w.WriteDirect([]byte("direct"), 0) }},
		{"MallocAck", func(w Writer) error { return w.MallocAck(0) }},
		{"Append", func(w Writer) error {
			lb := NewLinkBuffer()
			if _, err := lb.WriteString("appended"); err != nil {
				return fmt.Errorf("LinkBuffer.WriteString: %w", err)
			}
			return w.Append(lb)
		}},
		{"Flush", func(w Writer) error { return w.Flush() }},
		{"Write", func(w Writer) error {
			nw, ok := w.(io.Writer)
			if !ok {
				return errors.New("the Writer is not an io.Writer")
			}
			_, err := nw.Write([]byte("hello"))
			return err
		}},
		{"Write(big)", func(w Writer) error {
			nw, ok := w.(io.Writer)
			if !ok {
				return errors.New("the Writer is not an io.Writer")
			}
			_, err := nw.Write(make([]byte, 10000))
			return err
		}},
	}
}

// callNoPanic calls f, turning a panic into a test failure.
func callNoPanic(t *testing.T, name string, f func() error) (err error) {
	t.Helper()
	defer func() {
		if r := recover(); r != nil {
			t.Fatalf("%s panicked after close: %v", name, r)
		}
	}()
	return f()
}

// sends tells the Writer calls that send (Flush, Write) from the ones that
// only stage bytes.
func (wc writerCall) sends() bool {
	return wc.name == "Flush" || strings.HasPrefix(wc.name, "Write(") || wc.name == "Write"
}

// docs/contract.md C5.1–C5.3, C16.2: after a local Close every Writer method fails with
// an error matching ErrConnClosed, with no bytes staged before the close,
// with a string and a Malloc staged, or with a Malloc alone, and none
// panics. After a peer close, staging may still work
// (C5.3: the reference buffers without error) or fail with ErrConnClosed,
// but Flush and Write fail with ErrConnClosed, Flush saying "when flush"
// (Hertz looks for it). MallocLen never panics.
func TestConnWriterAfterClose(t *testing.T) {
	checkLeaks(t)
	forEachNetwork(t, func(t *testing.T, network string) {
		for _, how := range []string{"local", "peer"} {
			for _, staged := range []string{"nothing", "string+Malloc", "Malloc"} {
				t.Run(fmt.Sprintf("%s/staged=%s", how, staged), func(t *testing.T) {
					c, peer := peerPair(t, network)
					if staged == "string+Malloc" {
						_, err := c.WriteString("staged before close")
						require.NoError(t, err)
					}
					if staged != "nothing" {
						_, err := c.Malloc(100)
						require.NoError(t, err)
					}
					if how == "local" {
						require.NoError(t, c.Close())
					} else {
						require.NoError(t, peer.Close())
						eventually(t, func() bool { return !c.IsActive() }, "the peer close to be seen")
					}
					for _, wc := range writerCalls() {
						err := callNoPanic(t, wc.name, func() error { return wc.call(c) })
						if how == "peer" && !wc.sends() && err == nil {
							continue
						}
						requireErrIs(t, err, ErrConnClosed, wc.name)
						if how == "peer" && wc.name == "Flush" {
							require.Contains(t, err.Error(), "when flush")
						}
					}
					callNoPanic(t, "MallocLen", func() error { _ = c.MallocLen(); return nil })
					require.NoError(t, c.Close(), "Close after close")
					if how == "peer" {
						// After the user's Close too, nothing panics and every call fails.
						for _, wc := range writerCalls() {
							err := callNoPanic(t, wc.name, func() error { return wc.call(c) })
							requireErrIs(t, err, ErrConnClosed, wc.name+" after the peer close and Close")
						}
					}
				})
			}
		}
	})
}

// docs/contract.md C1.6, C5.1: when the peer goes away, a Flush fails with an error whose
// text says "when flush" and that means closed (ErrConnClosed, EPIPE or
// ECONNRESET), which is what Hertz looks for.
func TestConnFlushAfterPeerReset(t *testing.T) {
	checkLeaks(t)
	forEachNetwork(t, func(t *testing.T, network string) {
		c, peer := peerPair(t, network)
		if tc, ok := peer.(*net.TCPConn); ok {
			require.NoError(t, tc.SetLinger(0)) // reset, not a clean close
		}
		require.NoError(t, peer.Close())
		var err error
		flushFailed := false
		ok := waitUntil(longWait, func() bool {
			if _, err = c.WriteString("are you there?"); err == nil {
				err = c.Flush()
				flushFailed = err != nil
			}
			return err != nil
		})
		require.True(t, ok, "Flush kept succeeding after the peer reset")
		require.Contains(t, err.Error(), "when")
		closed := errors.Is(err, ErrConnClosed) || errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNRESET)
		require.Truef(t, closed, "error %q does not mean closed", err)
		if flushFailed {
			require.Contains(t, err.Error(), "when flush")
		} else {
			// Staging fails only once the connection is closed, and names itself.
			require.False(t, c.IsActive(), "error %q from staging on an active connection", err)
		}
	})
}

// docs/contract.md C4.1, C4.2, C5.1: staging with Malloc, WriteByte, WriteString and
// WriteDirect, trimming with MallocAck and appending a LinkBuffer all reach
// the peer in order at Flush, and MallocLen counts what is staged.
func TestConnWriterStagingReachesPeer(t *testing.T) {
	checkLeaks(t)
	forEachNetwork(t, func(t *testing.T, network string) {
		c, peer := peerPair(t, network)
		buf, err := c.Malloc(5)
		require.NoError(t, err)
		copy(buf, "hello")
		require.NoError(t, c.WriteByte(' '))
		_, err = c.WriteString("wor")
		require.NoError(t, err)
		require.NoError(t, c.WriteDirect([]byte("ld"), 0))
		require.Equal(t, 11, c.MallocLen())
		_, err = c.WriteString("-dropped")
		require.NoError(t, err)
		require.NoError(t, c.MallocAck(11))
		require.Equal(t, 11, c.MallocLen())
		lb := NewLinkBuffer()
		_, err = lb.WriteString("!")
		require.NoError(t, err)
		require.NoError(t, c.Append(lb))
		require.Equal(t, 12, c.MallocLen())
		require.Equal(t, 0, c.Len(), "writes must not show up on the read side")
		require.NoError(t, c.Flush())
		require.Equal(t, 0, c.MallocLen())
		require.Equal(t, "hello world!", string(readFull(t, peer, 12)))
	})
}

// docs/contract.md C7.2, C5.1: a Flush blocked on a full socket wakes with an error
// matching ErrConnClosed when the connection is closed locally, and with a
// "closed" error when the peer goes away.
func TestConnBlockedFlushWakesOnClose(t *testing.T) {
	checkLeaks(t)
	forEachNetwork(t, func(t *testing.T, network string) {
		for _, how := range []string{"local", "peer"} {
			t.Run(how, func(t *testing.T) {
				c, peer := peerPair(t, network)
				shrinkReadBuffer(peer)
				_, err := c.WriteBinary(make([]byte, bigPayload))
				require.NoError(t, err)
				done := async(c.Flush)
				notYet(t, done, 100*time.Millisecond, "Flush with a peer that does not read")
				if how == "local" {
					require.NoError(t, c.Close())
					err = recv(t, done, "the blocked Flush after Close")
					requireErrIs(t, err, ErrConnClosed)
					return
				}
				require.NoError(t, peer.Close())
				err = recv(t, done, "the blocked Flush after the peer closed")
				require.Error(t, err)
				closed := errors.Is(err, ErrConnClosed) || errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNRESET)
				require.Truef(t, closed, "error %q does not mean closed", err)
				eventually(t, func() bool { return !c.IsActive() }, "the connection to become inactive")
			})
		}
	})
}

// docs/contract.md C4.6: Append moves both the readable and the pending bytes of a
// LinkBuffer (Kitex appends buffers with pending data), and they are sent in
// order at Flush.
func TestConnAppendPendingLinkBuffer(t *testing.T) {
	checkLeaks(t)
	forEachNetwork(t, func(t *testing.T, network string) {
		c, peer := peerPair(t, network)
		lb := NewLinkBuffer()
		_, err := lb.WriteString("readable,")
		require.NoError(t, err)
		require.NoError(t, lb.Flush())
		_, err = lb.WriteString("pending,")
		require.NoError(t, err)
		big := bytes.Repeat([]byte("0123456789"), 1000)
		_, err = lb.WriteBinary(big)
		require.NoError(t, err)
		_, err = c.WriteString("head,")
		require.NoError(t, err)
		require.NoError(t, c.Append(lb))
		// MallocLen counts the pending bytes only: the appended readable
		// ones are the output buffer's readable bytes (Kitex computes frame
		// lengths from MallocLen).
		require.Equal(t, 5+8+len(big), c.MallocLen())
		require.NoError(t, c.Flush())
		want := "head,readable,pending," + string(big)
		require.Equal(t, want, string(readFull(t, peer, len(want))))
	})
}

// docs/contract.md C5.1, C16.2: on a connection accepted by an EventLoop, every Writer
// method fails with ErrConnClosed after a local Close, called from outside
// and from inside OnRequest, and none panics.
func TestEventLoopWriterAfterClose(t *testing.T) {
	checkLeaks(t)
	forEachNetwork(t, func(t *testing.T, network string) {
		t.Run("outside", func(t *testing.T) {
			s, recs := recordingServer(t, network, true)
			cl := dialStd(t, network, s.addr)
			rec := recv(t, recs, "the accepted connection")
			require.NoError(t, rec.conn.Close())
			for _, wc := range writerCalls() {
				err := callNoPanic(t, wc.name, func() error { return wc.call(rec.conn.Writer()) })
				requireErrIs(t, err, ErrConnClosed, wc.name)
			}
			expectEOF(t, cl)
		})
		t.Run("inside OnRequest", func(t *testing.T) {
			results := make(chan string, 64)
			s := startServer(t, network, func(ctx context.Context, c Connection) error {
				_ = c.Close()
				for _, wc := range writerCalls() {
					func() {
						defer func() {
							if r := recover(); r != nil {
								results <- fmt.Sprintf("%s panicked: %v", wc.name, r)
							}
						}()
						if err := wc.call(c.Writer()); !errors.Is(err, ErrConnClosed) {
							results <- fmt.Sprintf("%s: %v", wc.name, err)
						}
					}()
				}
				results <- "done"
				return nil
			})
			cl := dialStd(t, network, s.addr)
			_, err := cl.Write([]byte("x"))
			require.NoError(t, err)
			for {
				r := recv(t, results, "OnRequest")
				if r == "done" {
					break
				}
				t.Error(r)
			}
			expectEOF(t, cl)
		})
	})
}

// docs/contract.md C5.5, C16.9: concurrent Write calls are serialised, not
// refused, and never interleave inside a Write, under heavier contention:
// 8 writers of 2000 framed writes each, every frame checked by the peer
// (length, stream, sequence and CRC).
func TestConnConcurrentWritesFramed(t *testing.T) {
	checkLeaks(t)
	for _, network := range testNetworks {
		t.Run(network, func(t *testing.T) {
			const writers, writes = 8, 2000
			c, peer := peerPair(t, network)
			tally := &frameTally{}
			done := make(chan struct{})
			go func() { // the peer checks every frame
				defer close(done)
				rd := NewReader(peer)
				streams := make([]frameStream, writers)
				_ = peer.SetReadDeadline(time.Now().Add(3 * longWait))
				for i := 0; i < writers*writes; i++ {
					f, n, err := readFrame(rd)
					if err != nil {
						t.Errorf("peer after %d frames: %v", i, err)
						return
					}
					if f.id >= writers {
						tally.unframed.Add(1)
						continue
					}
					tally.see(&streams[f.id], f, n)
				}
			}()
			var failed atomic.Int64
			var wg sync.WaitGroup
			for g := 0; g < writers; g++ {
				wg.Add(1)
				go func(id uint64) {
					defer wg.Done()
					for seq := uint64(0); seq < writes; seq++ {
						if _, err := c.Write(newFrame(id, seq, frameBody(id, seq, int(seq*37%3000)))); err != nil {
							failed.Add(1)
						}
					}
				}(uint64(g))
			}
			recv(t, async(func() bool { wg.Wait(); return true }), "the writers")
			recv(t, done, "the peer's check")
			if failed.Load() != 0 {
				t.Fatalf("%d of %d concurrent Writes failed", failed.Load(), writers*writes)
			}
			if tally.bad() != 0 || tally.frames.Load() != writers*writes {
				t.Fatalf("peer: %v, want %d intact frames", tally, writers*writes)
			}
		})
	}
}
