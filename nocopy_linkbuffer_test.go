package netpoll

import (
	"bytes"
	"fmt"
	"testing"
	"unsafe"

	"github.com/stretchr/testify/require"
)

// Tests of the LinkBuffer's read side (docs/contract.md C3, and C2.6–C2.7 as far as a
// LinkBuffer shares them) and of Close, with the shared helpers. Slice is in
// nocopy_linkbuffer_slice_test.go, the write side in
// nocopy_linkbuffer_write_test.go, the poller's book path and the memory
// give-back in nocopy_linkbuffer_book_test.go, the model-based fuzz test in
// nocopy_linkbuffer_fuzz_test.go and nocopy_linkbuffer_model_test.go.
//
// Tests that lower LinkBufferCap must not call t.Parallel: it is a package
// variable.

// setLinkBufferCap lowers LinkBufferCap for the test and restores it after.
func setLinkBufferCap(t testing.TB, n int) {
	t.Helper()
	saved := LinkBufferCap
	LinkBufferCap = n
	t.Cleanup(func() { LinkBufferCap = saved })
}

// setNoCopyRead sets AlwaysNoCopyRead for the test and restores it after.
func setNoCopyRead(t testing.TB, on bool) {
	t.Helper()
	saved := noCopyRead.Load()
	noCopyRead.Store(on)
	t.Cleanup(func() { noCopyRead.Store(saved) })
}

// pattern returns n bytes that differ from their neighbours, seeded by seed.
func pattern(n int, seed byte) []byte {
	p := make([]byte, n)
	for i := range p {
		p[i] = seed + byte(i*7+i/251)
	}
	return p
}

// readable returns a buffer holding p as readable bytes, written in chunks
// of at most chunk bytes through Malloc so that, with LinkBufferCap lowered,
// p spans many nodes.
func readable(t testing.TB, p []byte, chunk int) *LinkBuffer {
	t.Helper()
	b := NewLinkBuffer()
	for rest := p; len(rest) > 0; {
		n := min(chunk, len(rest))
		buf, err := b.Malloc(n)
		require.NoError(t, err)
		copy(buf, rest[:n])
		rest = rest[n:]
	}
	require.NoError(t, b.Flush())
	require.Equal(t, len(p), b.Len())
	return b
}

// idleRetained is the most memory an emptied and Released buffer may keep:
// one small node (of at most LinkBufferCap, or the size given to
// NewLinkBuffer) that is written again from its start. A lean buffer, a
// connection's, keeps nothing.
func idleRetained(b *LinkBuffer) int {
	if b.lean {
		return 0
	}
	return max(LinkBufferCap, int(b.minSize))
}

func addr(p []byte) uintptr { return uintptr(unsafe.Pointer(unsafe.SliceData(p))) }

// overlaps tells whether p and q share memory.
func overlaps(p, q []byte) bool {
	if len(p) == 0 || len(q) == 0 {
		return false
	}
	return addr(p) < addr(q)+uintptr(len(q)) && addr(q) < addr(p)+uintptr(len(p))
}

// docs/contract.md C3.1: a read of more than Len fails at once with a plain error and
// consumes nothing, in one node and across many.
func TestLinkBufferNotEnoughErrors(t *testing.T) {
	for _, nodeCap := range []int{4096, 2} {
		t.Run(fmt.Sprintf("LinkBufferCap=%d", nodeCap), func(t *testing.T) {
			setLinkBufferCap(t, nodeCap)
			data := pattern(10, 1)
			b := readable(t, data, 3)
			defer b.Close()

			_, err := b.Next(11)
			require.EqualError(t, err, "link buffer next[11] not enough")
			_, err = b.Peek(11)
			require.EqualError(t, err, "link buffer peek[11] not enough")
			require.EqualError(t, b.Skip(11), "link buffer skip[11] not enough")
			_, err = b.ReadString(11)
			require.EqualError(t, err, "link buffer read string[11] not enough")
			_, err = b.ReadBinary(11)
			require.EqualError(t, err, "link buffer read binary[11] not enough")
			_, err = b.Slice(11)
			require.EqualError(t, err, "link buffer readv[11] not enough")
			_, err = b.Until(0xff)
			require.EqualError(t, err, "link buffer read slice cannot find delim")
			require.Equal(t, 10, b.Len(), "a failed read consumed bytes")
			require.Equal(t, data, b.Bytes())

			require.NoError(t, b.Skip(10))
			_, err = b.ReadByte()
			require.EqualError(t, err, "link buffer read byte is empty")
			_, err = b.Until(data[0])
			require.EqualError(t, err, "link buffer read slice cannot find delim")
		})
	}
}

// docs/contract.md C3 with messages that span many nodes: every read returns the right
// bytes in order, whatever the node boundaries.
func TestLinkBufferCrossNodeReads(t *testing.T) {
	setLinkBufferCap(t, 16)
	data := pattern(3000, 3)
	b := readable(t, data, 7)
	defer b.Close()
	require.Greater(t, len(b.GetBytes(nil)), 100, "the message should span many nodes")

	p, err := b.Peek(1000)
	require.NoError(t, err)
	require.Equal(t, data[:1000], p)
	p, err = b.Next(999)
	require.NoError(t, err)
	require.Equal(t, data[:999], p)
	c, err := b.ReadByte()
	require.NoError(t, err)
	require.Equal(t, data[999], c)
	require.NoError(t, b.Skip(500))
	s, err := b.ReadString(333)
	require.NoError(t, err)
	require.Equal(t, string(data[1500:1833]), s)
	p, err = b.ReadBinary(167)
	require.NoError(t, err)
	require.Equal(t, data[1833:2000], p)
	r, err := b.Slice(500)
	require.NoError(t, err)
	require.Equal(t, data[2000:2500], r.(*LinkBuffer).Bytes())
	require.NoError(t, r.(*LinkBuffer).Close())
	require.Equal(t, data[2500:], b.Bytes())
	require.Equal(t, 500, b.Len())
	require.NoError(t, b.Release())
	require.Equal(t, data[2500:], b.Bytes())
}

// docs/contract.md C2.5: Until returns the bytes up to and including the delimiter, found
// in any node, as memory the caller owns.
func TestLinkBufferUntil(t *testing.T) {
	setLinkBufferCap(t, 4)
	msg := []byte("first line\nsecond, longer line\nno end")
	b := readable(t, msg, 3)
	defer b.Close()

	line, err := b.Until('\n')
	require.NoError(t, err)
	require.Equal(t, "first line\n", string(line))
	require.Equal(t, len(line), cap(line))
	line, err = b.Until('\n')
	require.NoError(t, err)
	require.Equal(t, "second, longer line\n", string(line))
	_, err = b.Until('\n')
	require.EqualError(t, err, "link buffer read slice cannot find delim")
	require.Equal(t, "no end", string(b.Bytes()), "a failed Until consumed bytes")
	require.NoError(t, b.Release())
	require.Equal(t, "second, longer line\n", string(line), "Until's result died with Release")
}

// until searches only past the bytes its caller already searched, across
// nodes, and reports how far it has searched on a miss.
func TestLinkBufferUntilSkipsSearched(t *testing.T) {
	setLinkBufferCap(t, 4)
	b := readable(t, []byte("ab\ncdefg"), 3) // nodes "ab\n", "cde", "fg"
	defer b.Close()
	_, searched, err := b.until('\n', 3)
	require.ErrorIs(t, err, errNoDelim, "the delim before skip was searched again")
	require.Equal(t, 8, searched)
	_, err = b.WriteBinary([]byte("h\nij"))
	require.NoError(t, err)
	require.NoError(t, b.Flush())
	line, searched, err := b.until('\n', 4) // skip ends inside a node
	require.NoError(t, err)
	require.Equal(t, "ab\ncdefgh\n", string(line))
	require.Zero(t, searched)
	require.Equal(t, "ij", string(b.Bytes()))
}

// docs/contract.md C3.2: Bytes returns every readable byte without consuming it: an alias
// for one node, a copy otherwise. GetBytes aliases the segments.
func TestLinkBufferBytesAndGetBytes(t *testing.T) {
	t.Run("one node", func(t *testing.T) {
		b := readable(t, []byte("abcdef"), 6)
		defer b.Close()
		require.NoError(t, b.Skip(1))
		p := b.Bytes()
		require.Equal(t, "bcdef", string(p))
		require.Equal(t, len(p), cap(p))
		peek, err := b.Peek(5)
		require.NoError(t, err)
		require.Equal(t, addr(peek), addr(p), "one-node Bytes should alias the buffer")
		require.Equal(t, 5, b.Len(), "Bytes consumed bytes")

		segs := b.GetBytes(nil)
		require.Len(t, segs, 1)
		require.Equal(t, addr(peek), addr(segs[0]))
	})
	t.Run("many nodes", func(t *testing.T) {
		setLinkBufferCap(t, 8)
		data := pattern(100, 5)
		b := readable(t, data, 8)
		defer b.Close()
		p := b.Bytes()
		require.Equal(t, data, p)
		require.Equal(t, len(p), cap(p))
		segs := b.GetBytes(nil)
		require.Greater(t, len(segs), 1)
		var all []byte
		for _, s := range segs {
			require.Equal(t, len(s), cap(s), "a GetBytes segment has spare capacity")
			require.False(t, overlaps(p, s), "multi-node Bytes should be a copy")
			all = append(all, s...)
		}
		require.Equal(t, data, all)
		peek, err := b.Peek(1)
		require.NoError(t, err)
		require.Equal(t, addr(peek), addr(segs[0]), "GetBytes should alias the buffer")

		// A non-empty p bounds the count and is filled in place.
		two := make([][]byte, 2)
		got := b.GetBytes(two)
		require.Len(t, got, 2)
		require.Equal(t, segs[0], got[0])
		require.Equal(t, segs[1], got[1])
		require.Equal(t, addr(segs[1]), addr(two[1]), "GetBytes should fill the caller's slice")
		require.Equal(t, 100, b.Len(), "GetBytes consumed bytes")
	})
	t.Run("empty", func(t *testing.T) {
		b := NewLinkBuffer()
		require.Empty(t, b.Bytes())
		require.Empty(t, b.GetBytes(nil))
		require.Empty(t, b.GetBytes(make([][]byte, 3)))
		_, err := b.Malloc(3)
		require.NoError(t, err)
		require.Empty(t, b.Bytes(), "pending bytes are not readable")
		require.Empty(t, b.GetBytes(nil), "pending bytes are not readable")
		require.NoError(t, b.Close())
	})
}

// docs/contract.md C3.3: NewLinkBuffer(n) allocates a first node of max(n, LinkBufferCap)
// at once; with no argument or 0, nothing until the first write.
func TestNewLinkBufferSize(t *testing.T) {
	require.Zero(t, NewLinkBuffer().retained())
	require.Zero(t, NewLinkBuffer(0).retained())
	require.Zero(t, NewLinkBuffer(-5).retained())

	b := NewLinkBuffer(10000)
	defer b.Close()
	first := b.retained()
	require.GreaterOrEqual(t, first, 10000)
	p, err := b.Malloc(10000)
	require.NoError(t, err)
	require.Len(t, p, 10000)
	require.Equal(t, first, b.retained(), "Malloc(n) after NewLinkBuffer(n) should not allocate")

	setLinkBufferCap(t, 64)
	small := NewLinkBuffer(10)
	defer small.Close()
	require.GreaterOrEqual(t, small.retained(), 64, "the first node must be at least LinkBufferCap")
	first = small.retained()
	_, err = small.Malloc(64)
	require.NoError(t, err)
	require.Equal(t, first, small.retained())
}

// docs/contract.md C2.6: Next and Peek results stay valid until Release, through later
// writes and reads.
func TestLinkBufferNextValidUntilRelease(t *testing.T) {
	for _, nodeCap := range []int{4096, 4} {
		t.Run(fmt.Sprintf("LinkBufferCap=%d", nodeCap), func(t *testing.T) {
			setLinkBufferCap(t, nodeCap)
			data := pattern(100, 4)
			b := readable(t, data, 7)
			defer b.Close()
			first, err := b.Next(30)
			require.NoError(t, err)
			second, err := b.Next(30)
			require.NoError(t, err)
			for i := 0; i < 20; i++ {
				p, err := b.Malloc(13)
				require.NoError(t, err)
				copy(p, pattern(13, byte(100+i)))
				require.NoError(t, b.Flush())
				_, err = b.Peek(b.Len())
				require.NoError(t, err)
			}
			require.Equal(t, data[:30], first)
			require.Equal(t, data[30:60], second)
			require.NoError(t, b.Release())
			require.Equal(t, data[60:], b.Bytes()[:40])
		})
	}
}

// docs/contract.md C2.7: ReadString and ReadBinary results are the caller's for good: they
// survive Release, Close, and later writes that reuse the pooled memory,
// with and without AlwaysNoCopyRead.
func TestLinkBufferOwnedReads(t *testing.T) {
	for _, noCopy := range []bool{false, true} {
		for _, nodeCap := range []int{4096, 16} {
			t.Run(fmt.Sprintf("noCopy=%v/LinkBufferCap=%d", noCopy, nodeCap), func(t *testing.T) {
				setNoCopyRead(t, noCopy)
				setLinkBufferCap(t, nodeCap)
				data := pattern(1000, 6)
				b := readable(t, data, 500)
				s, err := b.ReadString(100)
				require.NoError(t, err)
				p, err := b.ReadBinary(300)
				require.NoError(t, err)
				require.Equal(t, len(p), cap(p))
				line, err := b.Until(data[599])
				require.NoError(t, err)
				wantLine := data[400 : 400+bytes.IndexByte(data[400:], data[599])+1]
				require.NoError(t, b.Release())
				// Write over and over: pooled memory comes back and is rewritten.
				for i := 0; i < 50; i++ {
					buf, err := b.Malloc(1000)
					require.NoError(t, err)
					copy(buf, bytes.Repeat([]byte{byte(i)}, 1000))
					require.NoError(t, b.Flush())
					require.NoError(t, b.Skip(b.Len())) // empties the nodes: they are reused or freed
					require.NoError(t, b.Release())
				}
				require.NoError(t, b.Close())
				for i := 0; i < 20; i++ {
					o := readable(t, bytes.Repeat([]byte{0xee}, 1000), 300)
					require.NoError(t, o.Close())
				}
				require.Equal(t, string(data[:100]), s)
				require.Equal(t, data[100:400], p)
				require.Equal(t, wantLine, line)
			})
		}
	}
}

// Every slice the buffer hands out has cap == len (Reader contract), so an
// append by the caller never writes into the buffer.
func TestLinkBufferCapEqualsLen(t *testing.T) {
	for _, c := range []int{4096, 8} {
		t.Run(fmt.Sprintf("LinkBufferCap=%d", c), func(t *testing.T) {
			setLinkBufferCap(t, c)
			data := pattern(400, 8)
			b := readable(t, data, 13)
			defer b.Close()
			tight := func(name string, p []byte) {
				t.Helper()
				require.Equalf(t, len(p), cap(p), "%s: cap %d != len %d", name, cap(p), len(p))
				_ = append(p, 0xAA, 0xBB, 0xCC) // must land in new memory
			}
			p, err := b.Peek(3)
			require.NoError(t, err)
			tight("Peek(one node)", p)
			p, err = b.Peek(50)
			require.NoError(t, err)
			tight("Peek", p)
			p, err = b.Next(2)
			require.NoError(t, err)
			tight("Next(one node)", p)
			p, err = b.Next(40)
			require.NoError(t, err)
			tight("Next", p)
			tight("Bytes", b.Bytes())
			for i, s := range b.GetBytes(nil) {
				tight(fmt.Sprintf("GetBytes[%d]", i), s)
			}
			p, err = b.ReadBinary(30)
			require.NoError(t, err)
			tight("ReadBinary", p)
			end := 72 + bytes.IndexByte(data[72:], data[120]) + 1
			p, err = b.Until(data[120])
			require.NoError(t, err)
			tight("Until", p)
			require.Equal(t, data[72:end], p)
			require.Equal(t, data[end:], b.Bytes(), "an append wrote into the buffer")

			w := NewLinkBuffer()
			defer w.Close()
			m, err := w.Malloc(5)
			require.NoError(t, err)
			tight("Malloc", m)
			copy(m, "12345")
			m2, err := w.Malloc(5)
			require.NoError(t, err)
			copy(m2, "67890")
			require.NoError(t, w.Flush())
			require.Equal(t, "1234567890", string(w.Bytes()))
		})
	}
}
