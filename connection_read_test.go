//go:build darwin || freebsd || linux

package netpoll

import (
	"bytes"
	"errors"
	"io"
	"math/rand"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// blockingRead is one of the Reader methods, reduced to "read n bytes".
type blockingRead struct {
	name string
	read func(r Reader, n int) ([]byte, error)
}

// blockingReads covers every Reader method that waits for n bytes.
var blockingReads = []blockingRead{
	{"Next", func(r Reader, n int) ([]byte, error) { return r.Next(n) }},
	{"Peek", func(r Reader, n int) ([]byte, error) { return r.Peek(n) }},
	{"Skip", func(r Reader, n int) ([]byte, error) {
		if err := r.Skip(n); err != nil {
			return nil, err
		}
		return make([]byte, max(n, 0)), nil
	}},
	{"ReadString", func(r Reader, n int) ([]byte, error) {
		s, err := r.ReadString(n)
		if err != nil && s != "" {
			return []byte(s), errors.New("ReadString returned data with its error")
		}
		return []byte(s), err
	}},
	{"ReadBinary", func(r Reader, n int) ([]byte, error) { return r.ReadBinary(n) }},
	{"Slice", func(r Reader, n int) ([]byte, error) {
		s, err := r.Slice(n)
		if err != nil {
			return nil, err
		}
		if s.Len() != max(n, 0) {
			return nil, errors.New("Slice has the wrong length")
		}
		if n <= 0 {
			return nil, nil
		}
		p, err := s.Next(n)
		p = append([]byte(nil), p...)
		_ = s.Release()
		return p, err
	}},
}

// readResult runs one blocking read and copies its bytes (so they survive a Release).
func readResult(c npConn, r blockingRead, n int) result {
	p, err := r.read(c.Reader(), n)
	return result{b: append([]byte(nil), p...), err: err}
}

// docs/contract.md C2.1, C2.4: a read that the buffer can satisfy returns at once, with
// the connection open and also after the peer closed it; a read needing more
// than what is left fails with ErrEOF and consumes nothing.
func TestConnReadBufferedAtOnce(t *testing.T) {
	checkLeaks(t)
	forEachNetwork(t, func(t *testing.T, network string) {
		for _, peerClosed := range []bool{false, true} {
			c, peer := peerPair(t, network)
			feed(t, peer, c, []byte("0123456789abcdefghij"), 20)
			if peerClosed {
				require.NoError(t, peer.Close())
				eventually(t, func() bool { return !c.IsActive() }, "IsActive() to turn false after the peer closed")
			} else {
				require.True(t, c.IsActive())
			}
			// No read timeout is set: a read that waited would never return.
			type step struct {
				name string
				do   func() (string, error)
			}
			steps := []step{
				{"Peek(2)", func() (string, error) { p, err := c.Peek(2); return string(p), err }},
				{"Next(2)", func() (string, error) { p, err := c.Next(2); return string(p), err }},
				{"Skip(2)", func() (string, error) { return "", c.Skip(2) }},
				{"ReadByte()", func() (string, error) { b, err := c.ReadByte(); return string([]byte{b}), err }},
				{"ReadString(3)", func() (string, error) { return c.ReadString(3) }},
				{"ReadBinary(3)", func() (string, error) { p, err := c.ReadBinary(3); return string(p), err }},
				{"Slice(2)", func() (string, error) {
					s, err := c.Slice(2)
					if err != nil {
						return "", err
					}
					p, err := s.Next(2)
					return string(p), err
				}},
				{"Until('e')", func() (string, error) { p, err := c.Until('e'); return string(p), err }},
				{"Read(3)", func() (string, error) {
					p := make([]byte, 3)
					n, err := c.Read(p)
					return string(p[:n]), err
				}},
			}
			want := []string{"01", "01", "", "4", "567", "89a", "bc", "de", "fgh"}
			for i, s := range steps {
				type out struct {
					s   string
					err error
				}
				got := within(t, s.name, func() out { v, err := s.do(); return out{v, err} })
				require.NoError(t, got.err, s.name)
				require.Equal(t, want[i], got.s, s.name)
			}
			require.Equal(t, 2, c.Len())
			if peerClosed {
				err := within(t, "Next(3)", func() error { _, err := c.Next(3); return err })
				requireErrIs(t, err, ErrEOF, "Next(3) with 2 bytes left after a peer close")
				require.Equal(t, 2, c.Len(), "a failed read consumed bytes")
			}
			p := within(t, "Next(2)", func() result { p, err := c.Next(2); return result{b: append([]byte(nil), p...), err: err} })
			require.NoError(t, p.err)
			require.Equal(t, "ij", string(p.b))
			require.NoError(t, c.Release())
			if peerClosed {
				err := within(t, "ReadByte", func() error { _, err := c.ReadByte(); return err })
				requireErrIs(t, err, ErrEOF, "ReadByte on an empty buffer after a peer close")
			}
		}
	})
}

// docs/contract.md C2.2: a read waits until all the bytes it needs are buffered; partial
// arrivals do not end it.
func TestConnReadPartialArrivalsDoNotWake(t *testing.T) {
	checkLeaks(t)
	forEachNetwork(t, func(t *testing.T, network string) {
		for _, r := range blockingReads {
			t.Run(r.name, func(t *testing.T) {
				c, peer := peerPair(t, network)
				msg := []byte("partial!!!")
				done := async(func() result { return readResult(c, r, len(msg)) })
				feed(t, peer, c, msg[:3], 3)
				notYet(t, done, 50*time.Millisecond, r.name+" with 3 of 10 bytes")
				feed(t, peer, c, msg[3:6], 6)
				notYet(t, done, 50*time.Millisecond, r.name+" with 6 of 10 bytes")
				_, err := peer.Write(msg[6:])
				require.NoError(t, err)
				got := recv(t, done, r.name)
				require.NoError(t, got.err)
				if r.name != "Skip" {
					require.Equal(t, msg, got.b)
				}
				require.True(t, c.IsActive())
			})
		}
	})
}

// docs/contract.md C2.2, C2.3: a read waiting for more bytes than arrive ends with ErrEOF
// when the peer closes, consumes nothing and returns no data.
func TestConnReadPeerCloseIsEOF(t *testing.T) {
	checkLeaks(t)
	forEachNetwork(t, func(t *testing.T, network string) {
		for _, r := range blockingReads {
			t.Run(r.name, func(t *testing.T) {
				c, peer := peerPair(t, network)
				feed(t, peer, c, []byte("abc"), 3)
				done := async(func() result { return readResult(c, r, 10) })
				notYet(t, done, 20*time.Millisecond, r.name)
				require.NoError(t, peer.Close())
				got := recv(t, done, r.name+" after the peer closed")
				requireErrIs(t, got.err, ErrEOF, r.name)
				require.Empty(t, got.b, "a failed read returned data")
				require.False(t, c.IsActive())
				require.Equal(t, 3, c.Len(), "a failed read consumed bytes")
				p, err := c.Next(3)
				require.NoError(t, err)
				require.Equal(t, "abc", string(p))
			})
		}
		t.Run("ReadByte", func(t *testing.T) {
			c, peer := peerPair(t, network)
			done := async(func() error { _, err := c.ReadByte(); return err })
			notYet(t, done, 20*time.Millisecond, "ReadByte")
			require.NoError(t, peer.Close())
			requireErrIs(t, recv(t, done, "ReadByte"), ErrEOF)
		})
	})
}

// docs/contract.md C2.2, C2.3: a read waiting for bytes ends with ErrConnClosed (and not
// ErrEOF) when the connection is closed locally.
func TestConnReadLocalCloseIsConnClosed(t *testing.T) {
	checkLeaks(t)
	forEachNetwork(t, func(t *testing.T, network string) {
		for _, r := range blockingReads {
			t.Run(r.name, func(t *testing.T) {
				c, peer := peerPair(t, network)
				feed(t, peer, c, []byte("abc"), 3)
				done := async(func() result { return readResult(c, r, 10) })
				notYet(t, done, 20*time.Millisecond, r.name)
				require.NoError(t, c.Close())
				got := recv(t, done, r.name+" after Close")
				requireErrIs(t, got.err, ErrConnClosed, r.name)
				require.False(t, errors.Is(got.err, ErrEOF), "local close reported as ErrEOF: %v", got.err)
				require.Empty(t, got.b)
				require.False(t, c.IsActive())
			})
		}
		t.Run("Read", func(t *testing.T) {
			c, _ := peerPair(t, network)
			done := async(func() error { _, err := c.Read(make([]byte, 8)); return err })
			notYet(t, done, 20*time.Millisecond, "Read")
			require.NoError(t, c.Close())
			err := recv(t, done, "Read")
			requireErrIs(t, err, ErrConnClosed)
			require.False(t, errors.Is(err, ErrEOF))
		})
	})
}

// docs/contract.md C2.2, C2.3, C6.3: a read that times out fails with ErrReadTimeout
// (a net.Error with Timeout() true, naming the remote address), consumes
// nothing, and leaves the connection active and readable.
func TestConnReadTimeout(t *testing.T) {
	checkLeaks(t)
	forEachNetwork(t, func(t *testing.T, network string) {
		for _, r := range blockingReads {
			t.Run(r.name, func(t *testing.T) {
				c, peer := peerPair(t, network)
				feed(t, peer, c, []byte("abc"), 3)
				const timeout = 100 * time.Millisecond
				require.NoError(t, c.SetReadTimeout(timeout))
				start := time.Now()
				got := within(t, r.name, func() result { return readResult(c, r, 10) })
				elapsed := time.Since(start)
				requireErrIs(t, got.err, ErrReadTimeout, r.name)
				requireTimeoutErr(t, got.err)
				require.Contains(t, got.err.Error(), c.RemoteAddr().String())
				require.GreaterOrEqual(t, elapsed, timeout-10*time.Millisecond, "timed out before the timeout")
				require.Empty(t, got.b)
				require.True(t, c.IsActive(), "a read timeout closed the connection")
				require.Equal(t, 3, c.Len(), "a timed-out read consumed bytes")

				_, err := peer.Write([]byte("defghij"))
				require.NoError(t, err)
				got = within(t, r.name, func() result { return readResult(c, r, 10) })
				require.NoError(t, got.err)
				if r.name != "Skip" {
					require.Equal(t, "abcdefghij", string(got.b))
				}
			})
		}
		t.Run("ReadByte", func(t *testing.T) {
			c, _ := peerPair(t, network)
			require.NoError(t, c.SetReadTimeout(50*time.Millisecond))
			err := within(t, "ReadByte", func() error { _, err := c.ReadByte(); return err })
			requireErrIs(t, err, ErrReadTimeout)
			require.True(t, c.IsActive())
		})
	})
}

// docs/contract.md C2.3: n <= 0 gives zero values and nil at once, with nothing buffered and
// no timeout (a call that waited would never return); Slice gives an empty Reader.
func TestConnReadNonPositive(t *testing.T) {
	checkLeaks(t)
	forEachNetwork(t, func(t *testing.T, network string) {
		c, _ := peerPair(t, network)
		for _, n := range []int{0, -1} {
			for _, r := range blockingReads {
				got := within(t, r.name, func() result { return readResult(c, r, n) })
				require.NoError(t, got.err, "%s(%d)", r.name, n)
				require.Empty(t, got.b, "%s(%d)", r.name, n)
			}
			s := within(t, "Slice", func() Reader { s, err := c.Slice(n); assert.NoError(t, err); return s })
			require.NotNil(t, s, "Slice(%d) returned a nil Reader", n)
			require.Equal(t, 0, s.Len())
		}
		for _, p := range [][]byte{nil, {}} {
			got := within(t, "Read", func() result { n, err := c.Read(p); return result{n: n, err: err} })
			require.NoError(t, got.err)
			require.Equal(t, 0, got.n)
		}
		require.True(t, c.IsActive())
	})
}

// docs/contract.md C2.5: Until waits for the delimiter across arrivals and returns the line
// including it; when the wait fails it returns every buffered byte, consumed,
// with the error.
func TestConnUntil(t *testing.T) {
	checkLeaks(t)
	forEachNetwork(t, func(t *testing.T, network string) {
		t.Run("waits", func(t *testing.T) {
			c, peer := peerPair(t, network)
			done := async(func() result { p, err := c.Until('\n'); return result{b: p, err: err} })
			feed(t, peer, c, []byte("abc"), 3)
			notYet(t, done, 50*time.Millisecond, "Until without the delimiter")
			_, err := peer.Write([]byte("def\nxyz"))
			require.NoError(t, err)
			got := recv(t, done, "Until")
			require.NoError(t, got.err)
			require.Equal(t, "abcdef\n", string(got.b))
			eventually(t, func() bool { return c.Len() == 3 }, "the rest to stay buffered")
			p, err := c.Next(3)
			require.NoError(t, err)
			require.Equal(t, "xyz", string(p))
		})
		t.Run("line in pieces", func(t *testing.T) {
			c, peer := peerPair(t, network)
			done := async(func() result { p, err := c.Until('\n'); return result{b: p, err: err} })
			var want []byte
			for i := 0; i < 40; i++ {
				piece := bytes.Repeat([]byte{byte('a' + i%26)}, 700)
				want = append(want, piece...)
				feed(t, peer, c, piece, len(want))
			}
			notYet(t, done, 20*time.Millisecond, "Until without the delimiter")
			_, err := peer.Write([]byte("\nrest"))
			require.NoError(t, err)
			got := recv(t, done, "Until")
			require.NoError(t, got.err)
			require.Equal(t, string(want)+"\n", string(got.b))
		})
		t.Run("peer close", func(t *testing.T) {
			c, peer := peerPair(t, network)
			feed(t, peer, c, []byte("no newline here"), 15)
			done := async(func() result { p, err := c.Until('\n'); return result{b: p, err: err} })
			notYet(t, done, 20*time.Millisecond, "Until without the delimiter")
			require.NoError(t, peer.Close())
			got := recv(t, done, "Until after the peer closed")
			requireErrIs(t, got.err, ErrEOF)
			require.Equal(t, "no newline here", string(got.b), "Until must return every buffered byte with its error")
			require.Equal(t, 0, c.Len(), "the failed Until must consume what it returned")
		})
		t.Run("timeout", func(t *testing.T) {
			c, peer := peerPair(t, network)
			feed(t, peer, c, []byte("partial"), 7)
			require.NoError(t, c.SetReadTimeout(50*time.Millisecond))
			got := within(t, "Until", func() result { p, err := c.Until('\n'); return result{b: p, err: err} })
			requireErrIs(t, got.err, ErrReadTimeout)
			require.Equal(t, "partial", string(got.b))
			require.Equal(t, 0, c.Len())
			require.True(t, c.IsActive())
			// The connection still works: the next line is whole.
			require.NoError(t, c.SetReadTimeout(0))
			_, err := peer.Write([]byte("next\n"))
			require.NoError(t, err)
			got = within(t, "Until", func() result { p, err := c.Until('\n'); return result{b: p, err: err} })
			require.NoError(t, got.err)
			require.Equal(t, "next\n", string(got.b))
		})
	})
}

// docs/contract.md C2.8: a Slice shares the bytes and stays valid after the parent's
// Release and after the parent reads and releases more data.
func TestConnSliceSurvivesParentRelease(t *testing.T) {
	checkLeaks(t)
	forEachNetwork(t, func(t *testing.T, network string) {
		rng := newRand(t)
		c, peer := peerPair(t, network)
		big := randomBytes(rng, 20000) // spans several buffer nodes
		msg := append([]byte("hello world"), big...)
		feed(t, peer, c, msg, len(msg))

		s1, err := c.Slice(5)
		require.NoError(t, err)
		s2, err := c.Slice(6 + len(big))
		require.NoError(t, err)
		require.NoError(t, c.Release())
		require.Equal(t, 0, c.Len())

		// Churn the parent: more data, read and released, reusing its memory.
		for i := 0; i < 4; i++ {
			more := randomBytes(rng, 30000)
			feed(t, peer, c, more, len(more))
			p, err := c.Next(len(more))
			require.NoError(t, err)
			require.Equal(t, more, p)
			require.NoError(t, c.Release())
		}

		require.Equal(t, 5, s1.Len())
		p, err := s1.Next(5)
		require.NoError(t, err)
		require.Equal(t, "hello", string(p))
		p, err = s2.Next(6 + len(big))
		require.NoError(t, err)
		require.Equal(t, msg[5:], p)
		for _, s := range []Reader{s1, s2} {
			cl, ok := s.(io.Closer)
			require.True(t, ok, "a Slice must be an io.Closer (%T)", s)
			require.NoError(t, cl.Close())
		}
	})
}

// docs/contract.md C2.9: Read waits for at least one byte, copies min(len(p), Len()) and
// releases; at the end of the stream it returns the ErrEOF exception, not io.EOF.
func TestConnReadEOFException(t *testing.T) {
	checkLeaks(t)
	forEachNetwork(t, func(t *testing.T, network string) {
		c, peer := peerPair(t, network)
		done := async(func() result {
			p := make([]byte, 10)
			n, err := c.Read(p)
			return result{b: p[:n], n: n, err: err}
		})
		notYet(t, done, 20*time.Millisecond, "Read with nothing buffered")
		_, err := peer.Write([]byte("x"))
		require.NoError(t, err)
		got := recv(t, done, "Read")
		require.NoError(t, got.err)
		require.Equal(t, "x", string(got.b))

		feed(t, peer, c, []byte("abcdef"), 6)
		require.NoError(t, peer.Close())
		eventually(t, func() bool { return !c.IsActive() }, "the peer close to be seen")
		p := make([]byte, 4)
		n, err := c.Read(p)
		require.NoError(t, err)
		require.Equal(t, "abcd", string(p[:n]))
		n, err = c.Read(p)
		require.NoError(t, err)
		require.Equal(t, "ef", string(p[:n]))
		n, err = c.Read(p)
		require.Equal(t, 0, n)
		requireErrIs(t, err, ErrEOF)
		require.False(t, errors.Is(err, io.EOF), "Read must return ErrEOF, not io.EOF")
		require.True(t, strings.Contains(err.Error(), "EOF"), "error text %q", err)

		// The standard idiom terminates: io.ReadAll stops at the ErrEOF error.
		_, err = io.ReadAll(c)
		requireErrIs(t, err, ErrEOF)
	})
}

// docs/contract.md C2.10: Len never blocks and counts what arrived, in order.
func TestConnLenCountsArrivals(t *testing.T) {
	checkLeaks(t)
	forEachNetwork(t, func(t *testing.T, network string) {
		rng := newRand(t)
		c, peer := peerPair(t, network)
		var all []byte
		for i := 0; i < 20; i++ {
			p := randomBytes(rng, 1+rng.Intn(5000))
			all = append(all, p...)
			feed(t, peer, c, p, len(all))
		}
		require.Equal(t, len(all), c.Len())
		p, err := c.Next(len(all))
		require.NoError(t, err)
		require.True(t, bytes.Equal(all, p))
		require.NoError(t, c.Release())
	})
}

// docs/contract.md C2.7, C2.5: ReadString, ReadBinary and Until return memory the caller
// owns: it keeps its contents after Release and after the buffer is reused.
func TestConnReadCopiesStayValid(t *testing.T) {
	checkLeaks(t)
	forEachNetwork(t, func(t *testing.T, network string) {
		rng := newRand(t)
		c, peer := peerPair(t, network)
		a := randomBytes(rng, 100)
		b := randomBytes(rng, 20000)
		line := append(randomBytesWithout(rng, 3000, '\n'), '\n')
		msg := append(append(append([]byte(nil), a...), b...), line...)
		feed(t, peer, c, msg, len(msg))
		s, err := c.ReadString(len(a))
		require.NoError(t, err)
		p, err := c.ReadBinary(len(b))
		require.NoError(t, err)
		u, err := c.Until('\n')
		require.NoError(t, err)
		require.NoError(t, c.Release())
		for i := 0; i < 4; i++ {
			more := randomBytes(rng, 40000)
			feed(t, peer, c, more, len(more))
			got, err := c.Next(len(more))
			require.NoError(t, err)
			require.Equal(t, more, got)
			require.NoError(t, c.Release())
		}
		require.Equal(t, string(a), s)
		require.Equal(t, b, p)
		require.Equal(t, line, u)
	})
}

// randomBytesWithout returns n random bytes none of which is not.
func randomBytesWithout(rng *rand.Rand, n int, not byte) []byte {
	p := randomBytes(rng, n)
	for i := range p {
		if p[i] == not {
			p[i] = not + 1
		}
	}
	return p
}

// docs/contract.md C2.2, C12.5: one read can wait for far more than a read chunk: a
// 12 MB Next completes with every byte in order.
func TestConnReadLarge(t *testing.T) {
	checkLeaks(t)
	forEachNetwork(t, func(t *testing.T, network string) {
		rng := newRand(t)
		c, peer := peerPair(t, network)
		payload := randomBytes(rng, 12<<20)
		sent := async(func() error {
			_ = peer.SetWriteDeadline(time.Now().Add(longWait))
			_, err := peer.Write(payload)
			return err
		})
		got := within(t, "Next(12 MB)", func() result {
			p, err := c.Next(len(payload))
			return result{b: append([]byte(nil), p...), err: err}
		})
		require.NoError(t, got.err)
		require.True(t, bytes.Equal(payload, got.b), "the 12 MB read differs from what was sent")
		require.NoError(t, recv(t, sent, "the peer's write"))
		require.NoError(t, c.Release())
		require.Equal(t, 0, c.Len())
	})
}
