package netpoll

import (
	"errors"
	"fmt"
	"io"
	"testing"
	"unsafe"

	"github.com/stretchr/testify/require"
)

// Tests of the LinkBuffer's write side: docs/contract.md C4.

// docs/contract.md C4.1, C4.2: Malloc reserves pending bytes; Flush makes them readable.
func TestLinkBufferMallocFlush(t *testing.T) {
	for _, nodeCap := range []int{4096, 4} {
		t.Run(fmt.Sprintf("LinkBufferCap=%d", nodeCap), func(t *testing.T) {
			setLinkBufferCap(t, nodeCap)
			b := NewLinkBuffer()
			defer b.Close()
			p, err := b.Malloc(0)
			require.NoError(t, err)
			require.Nil(t, p)
			var want []byte
			for i := 1; i <= 20; i++ {
				p, err := b.Malloc(i)
				require.NoError(t, err)
				require.Len(t, p, i)
				require.Equal(t, i, cap(p))
				copy(p, pattern(i, byte(i)))
				want = append(want, p...)
				require.Equal(t, len(want), b.MallocLen())
				require.Zero(t, b.Len(), "pending bytes became readable before Flush")
			}
			require.NoError(t, b.Flush())
			require.Zero(t, b.MallocLen())
			require.Equal(t, len(want), b.Len())
			require.Equal(t, want, b.Bytes())
			require.NoError(t, b.Flush(), "an empty Flush")
			require.Equal(t, len(want), b.Len())

			require.NoError(t, b.WriteByte('z'), "C4.3: WriteByte is Malloc(1)")
			require.Equal(t, 1, b.MallocLen())
			require.NoError(t, b.Flush())
			got, err := b.Next(b.Len())
			require.NoError(t, err)
			require.Equal(t, append(want, 'z'), got)
		})
	}
}

// docs/contract.md C4.1, C16.19: a size over 1 GiB is refused with an error, not attempted;
// a negative one gives (nil, nil), as zero does.
func TestLinkBufferMallocBadSizes(t *testing.T) {
	b := NewLinkBuffer()
	defer b.Close()
	p, err := b.Malloc(-1)
	require.NoError(t, err)
	require.Nil(t, p)
	_, err = b.Malloc(1<<30 + 1)
	require.Error(t, err)
	_, err = b.Malloc(1 << 40)
	require.Error(t, err)
	require.Zero(t, b.MallocLen())
	require.Zero(t, b.retained())
	require.Error(t, b.MallocAck(-1))
	require.NoError(t, b.WriteDirect([]byte("x"), -1), "C4.5: remainCap < 0 is a no-op")
	require.Zero(t, b.MallocLen())
}

// docs/contract.md C4.4: MallocAck(n) keeps the first n pending bytes, also across nodes.
func TestLinkBufferMallocAck(t *testing.T) {
	for _, nodeCap := range []int{4096, 4} {
		t.Run(fmt.Sprintf("LinkBufferCap=%d", nodeCap), func(t *testing.T) {
			setLinkBufferCap(t, nodeCap)
			b := NewLinkBuffer()
			defer b.Close()
			data := pattern(60, 1)
			for i := 0; i < 60; i += 6 {
				p, err := b.Malloc(6)
				require.NoError(t, err)
				copy(p, data[i:i+6])
			}
			require.Error(t, b.MallocAck(61), "MallocAck over MallocLen")
			require.Equal(t, 60, b.MallocLen())
			require.NoError(t, b.MallocAck(60))
			require.Equal(t, 60, b.MallocLen())
			require.NoError(t, b.MallocAck(33))
			require.Equal(t, 33, b.MallocLen())
			p, err := b.Malloc(4)
			require.NoError(t, err)
			copy(p, "tail")
			require.NoError(t, b.Flush())
			require.Equal(t, append(data[:33:33], "tail"...), b.Bytes())
		})
	}
}

// docs/contract.md C4.4: MallocAck(0) drops every pending byte, including those in the node
// that already holds readable bytes (the reference kept them; we do better).
func TestLinkBufferMallocAckZeroDropsPending(t *testing.T) {
	b := NewLinkBuffer()
	defer b.Close()
	_, err := b.WriteString("kept")
	require.NoError(t, err)
	require.NoError(t, b.Flush())
	p, err := b.Malloc(5)
	require.NoError(t, err)
	copy(p, "drop!")
	require.NoError(t, b.MallocAck(0))
	require.Zero(t, b.MallocLen())
	require.NoError(t, b.Flush())
	require.Equal(t, "kept", string(b.Bytes()), "MallocAck(0) left pending bytes that Flush published")
	_, err = b.WriteString("more")
	require.NoError(t, err)
	require.NoError(t, b.Flush())
	require.Equal(t, "keptmore", string(b.Bytes()))
}

// docs/contract.md C4.3: above BinaryInplaceThreshold WriteBinary and WriteString keep a
// reference to the caller's memory (a later change shows in the read); at or
// below it they copy.
func TestLinkBufferWriteReference(t *testing.T) {
	for _, n := range []int{BinaryInplaceThreshold + 1, 100000} {
		t.Run(fmt.Sprintf("WriteBinary(%d) references", n), func(t *testing.T) {
			b := NewLinkBuffer()
			defer b.Close()
			p := pattern(n, 1)
			w, err := b.WriteBinary(p)
			require.NoError(t, err)
			require.Equal(t, n, w)
			require.Equal(t, n, b.MallocLen())
			p[0], p[n-1] = 'A', 'Z'
			require.NoError(t, b.Flush())
			got, err := b.Next(n)
			require.NoError(t, err)
			require.Equal(t, byte('A'), got[0])
			require.Equal(t, byte('Z'), got[n-1])
			require.Equal(t, addr(p), addr(got), "no copy expected")
		})
		t.Run(fmt.Sprintf("WriteString(%d) references", n), func(t *testing.T) {
			b := NewLinkBuffer()
			defer b.Close()
			p := pattern(n, 2)
			s := unsafe.String(unsafe.SliceData(p), len(p)) // a string over p's memory
			w, err := b.WriteString(s)
			require.NoError(t, err)
			require.Equal(t, n, w)
			p[1] = 'B'
			require.NoError(t, b.Flush())
			got, err := b.Next(n)
			require.NoError(t, err)
			require.Equal(t, byte('B'), got[1])
		})
	}
	for _, n := range []int{1, 100, BinaryInplaceThreshold} {
		t.Run(fmt.Sprintf("WriteBinary(%d) copies", n), func(t *testing.T) {
			b := NewLinkBuffer()
			defer b.Close()
			p := pattern(n, 3)
			want := append([]byte(nil), p...)
			w, err := b.WriteBinary(p)
			require.NoError(t, err)
			require.Equal(t, n, w)
			p[0] ^= 0xff
			s := unsafe.String(unsafe.SliceData(p), len(p))
			_, err = b.WriteString(s)
			require.NoError(t, err)
			p[n-1] ^= 0x0f
			require.NoError(t, b.Flush())
			got, err := b.Next(n)
			require.NoError(t, err)
			require.Equal(t, want, got)
			got, err = b.Next(n)
			require.NoError(t, err)
			want[0] ^= 0xff
			require.Equal(t, want, got)
		})
	}
	t.Run("empty", func(t *testing.T) {
		b := NewLinkBuffer()
		defer b.Close()
		n, err := b.WriteBinary(nil)
		require.NoError(t, err)
		require.Zero(t, n)
		n, err = b.WriteString("")
		require.NoError(t, err)
		require.Zero(t, n)
		require.Zero(t, b.MallocLen())
	})
}

// docs/contract.md C4.2 with Release: the owner reads and Releases while bytes are pending
// in later nodes; those stay pending, Flush publishes them, and when all is
// read the buffer gives every node back.
func TestLinkBufferReleaseWithPending(t *testing.T) {
	setLinkBufferCap(t, 16)
	b := NewLinkBuffer()
	defer b.Close()
	for round := 0; round < 3; round++ {
		_, err := b.WriteString("0123456789")
		require.NoError(t, err)
		require.NoError(t, b.Flush())
		p, err := b.Malloc(40) // a new node: the readable one is full enough
		require.NoError(t, err)
		copy(p, pattern(40, byte(round)))
		got, err := b.Next(10)
		require.NoError(t, err)
		require.Equal(t, "0123456789", string(got))
		require.NoError(t, b.Release())
		require.Equal(t, 40, b.MallocLen())
		require.Zero(t, b.Len())
		require.NoError(t, b.Flush())
		got, err = b.Next(40)
		require.NoError(t, err)
		require.Equal(t, pattern(40, byte(round)), got)
		require.NoError(t, b.Release())
		require.LessOrEqual(t, b.retained(), idleRetained(b), "an emptied buffer keeps memory")
	}
}

// docs/contract.md C4.5: Malloc(32) then WriteDirect(x, 30) gives [buf0..1][x][buf2..31],
// with x by reference.
func TestLinkBufferWriteDirectLayout(t *testing.T) {
	b := NewLinkBuffer()
	defer b.Close()
	buf, err := b.Malloc(32)
	require.NoError(t, err)
	copy(buf, "0123456789abcdefghijklmnopqrstuv")
	x := []byte("<direct>")
	require.NoError(t, b.WriteDirect(x, 30))
	require.Equal(t, 32+len(x), b.MallocLen())
	x[1] = 'D' // by reference: the change shows
	require.NoError(t, b.Flush())
	require.Equal(t, "01<Direct>23456789abcdefghijklmnopqrstuv", string(b.Bytes()))

	// Empty p and a negative remainCap change nothing.
	require.NoError(t, b.WriteDirect(nil, 0))
	require.NoError(t, b.WriteDirect([]byte("x"), -1))
	require.Zero(t, b.MallocLen())
}

// docs/contract.md C4.5: how Kitex uses it: one Malloc for the whole message, then several
// WriteDirect calls walking forward through it, with LinkBufferCap low.
func TestLinkBufferWriteDirectChain(t *testing.T) {
	for _, nodeCap := range []int{4096, 2} {
		t.Run(fmt.Sprintf("LinkBufferCap=%d", nodeCap), func(t *testing.T) {
			setLinkBufferCap(t, nodeCap)
			b := NewLinkBuffer()
			defer b.Close()
			_, err := b.WriteString("head:")
			require.NoError(t, err)
			buf, err := b.Malloc(12)
			require.NoError(t, err)
			copy(buf, "AAAABBBBCCCC")
			big := pattern(BinaryInplaceThreshold+10, 5)
			require.NoError(t, b.WriteDirect([]byte("-1-"), 8))
			require.NoError(t, b.WriteDirect(big, 4))
			require.NoError(t, b.WriteDirect([]byte("-3-"), 0))
			want := "head:AAAA-1-BBBB" + string(big) + "CCCC-3-"
			require.Equal(t, len(want), b.MallocLen())
			p, err := b.Malloc(3)
			require.NoError(t, err)
			copy(p, "end")
			require.NoError(t, b.Flush())
			got, err := b.ReadString(b.Len())
			require.NoError(t, err)
			require.Equal(t, want+"end", got)
		})
	}
}

// docs/contract.md C4.5: the splice point lies "just before the last remainCap bytes of
// the pending region", in whatever node that is; with nothing pending,
// WriteDirect(p, 0) appends p, whether or not the buffer holds a node.
func TestLinkBufferWriteDirectAnywhereInPending(t *testing.T) {
	setLinkBufferCap(t, 8)
	b := NewLinkBuffer()
	defer b.Close()
	p, err := b.Malloc(6)
	require.NoError(t, err)
	copy(p, "abcdef")
	p, err = b.Malloc(6) // does not fit: a second node
	require.NoError(t, err)
	copy(p, "ghijkl")
	require.NoError(t, b.WriteDirect([]byte("XY"), 10))
	require.NoError(t, b.WriteDirect([]byte("-"), 6))  // exactly at the node boundary
	require.NoError(t, b.WriteDirect([]byte("+"), 15)) // at the very front
	require.Error(t, b.WriteDirect([]byte("!"), 17), "remainCap over MallocLen")
	require.Equal(t, 16, b.MallocLen())
	p, err = b.Malloc(2)
	require.NoError(t, err)
	copy(p, "mn")
	require.NoError(t, b.Flush())
	require.Equal(t, "+abXYcdef-ghijklmn", string(b.Bytes()))

	fresh := NewLinkBuffer()
	defer fresh.Close()
	require.NoError(t, fresh.WriteDirect([]byte("x"), 0))
	require.Equal(t, 1, fresh.MallocLen())
	require.NoError(t, fresh.Flush())
	require.Equal(t, "x", string(fresh.Bytes()))
	_, err = fresh.Next(1)
	require.NoError(t, err)
	require.NoError(t, fresh.Release()) // the node may be given back
	require.NoError(t, fresh.WriteDirect([]byte("y"), 0))
	require.NoError(t, fresh.Flush())
	require.Equal(t, "y", string(fresh.Bytes()))
}

// docs/contract.md C4.5 and C4.4: MallocAck after WriteDirect cuts through the spliced
// nodes.
func TestLinkBufferWriteDirectThenMallocAck(t *testing.T) {
	setLinkBufferCap(t, 4)
	b := NewLinkBuffer()
	defer b.Close()
	buf, err := b.Malloc(10)
	require.NoError(t, err)
	copy(buf, "0123456789")
	require.NoError(t, b.WriteDirect([]byte("xyz"), 5))
	require.NoError(t, b.MallocAck(7)) // "01234xy"
	_, err = b.WriteString("!")
	require.NoError(t, err)
	require.NoError(t, b.Flush())
	require.Equal(t, "01234xy!", string(b.Bytes()))
}

// Append moves the bytes of another LinkBuffer, without copying, behind the
// pending bytes: its readable bytes are readable at once (Len grows by them),
// its pending bytes stay pending (MallocLen grows by them only), and the
// other buffer becomes unusable. After Flush every byte is readable in
// place order. WriteBuffer is the same.
func TestLinkBufferAppend(t *testing.T) {
	for _, nodeCap := range []int{4096, 4} {
		for _, via := range []string{"Append", "WriteBuffer"} {
			t.Run(fmt.Sprintf("%s/LinkBufferCap=%d", via, nodeCap), func(t *testing.T) {
				setLinkBufferCap(t, nodeCap)
				b := NewLinkBuffer()
				defer b.Close()
				_, err := b.WriteString("readable|")
				require.NoError(t, err)
				require.NoError(t, b.Flush())
				_, err = b.WriteString("pending|")
				require.NoError(t, err)

				w := NewLinkBuffer()
				_, err = w.WriteString("consumed|w-readable|")
				require.NoError(t, err)
				require.NoError(t, w.Flush())
				require.NoError(t, w.Skip(len("consumed|")))
				wp, err := w.Malloc(10)
				require.NoError(t, err)
				copy(wp, "w-pending|")
				peek, err := w.Peek(3)
				require.NoError(t, err)
				require.Equal(t, 11, w.Len())
				require.Equal(t, 10, w.MallocLen())

				if via == "Append" {
					require.NoError(t, b.Append(w))
				} else {
					require.NoError(t, b.WriteBuffer(w))
				}
				require.Equal(t, len("pending|")+len("w-pending|"), b.MallocLen(), "MallocLen counts the appended readable bytes")
				require.Equal(t, len("readable|")+len("w-readable|"), b.Len(), "the appended readable bytes are not readable")
				require.Equal(t, "readable|w-readable|", string(b.Bytes()))
				require.Zero(t, w.Len())
				require.Zero(t, w.MallocLen())
				_, err = w.Malloc(1)
				require.True(t, errors.Is(err, ErrConnClosed), "the appended buffer is still usable: %v", err)

				require.NoError(t, b.Flush())
				require.Equal(t, "readable|pending|w-readable|w-pending|", string(b.Bytes()))
				segs := b.GetBytes(nil)
				var sawPeek, sawMalloc bool
				for _, s := range segs {
					sawPeek = sawPeek || addr(s) == addr(peek)
					sawMalloc = sawMalloc || overlaps(s, wp)
				}
				require.True(t, sawPeek && sawMalloc, "Append copied the bytes")
				require.NoError(t, b.Skip(b.Len()))
				require.NoError(t, b.Release())
				require.LessOrEqual(t, b.retained(), idleRetained(b), "an emptied buffer keeps memory after Append")
			})
		}
	}
}

// docs/contract.md C4.6: only a *LinkBuffer can be appended; a nil one is a no-op.
func TestLinkBufferAppendOthers(t *testing.T) {
	b := NewLinkBuffer()
	defer b.Close()
	_, err := b.WriteString("x")
	require.NoError(t, err)

	zw := NewWriter(io.Discard)
	require.EqualError(t, b.Append(zw), "unsupported writer which is not LinkBuffer")
	require.EqualError(t, b.Append(nil), "unsupported writer which is not LinkBuffer")
	require.NoError(t, b.Append((*LinkBuffer)(nil)))
	require.NoError(t, b.WriteBuffer(nil))
	require.Equal(t, 1, b.MallocLen())

	require.Error(t, b.WriteBuffer(b), "appending a buffer to itself")
	require.Equal(t, 1, b.MallocLen())

	// An empty buffer appended: nothing moves, and it is spent.
	e := NewLinkBuffer()
	require.NoError(t, b.Append(e))
	require.Equal(t, 1, b.MallocLen())
	_, err = e.Malloc(1)
	require.True(t, errors.Is(err, ErrConnClosed))

	// Appending into an empty buffer, then writing on.
	dst := NewLinkBuffer()
	defer dst.Close()
	src := readable(t, []byte("abc"), 3)
	require.NoError(t, dst.Append(src))
	_, err = dst.WriteString("def")
	require.NoError(t, err)
	require.NoError(t, dst.Flush())
	require.Equal(t, "abcdef", string(dst.Bytes()))
}

// docs/contract.md C2.8 with C4.6: a Slice of one buffer appended to another, as Kitex
// forwards a payload; the source goes on independently.
func TestLinkBufferAppendSlice(t *testing.T) {
	setLinkBufferCap(t, 4)
	src := readable(t, []byte("headerPAYLOADtrailer"), 5)
	defer src.Close()
	require.NoError(t, src.Skip(6))
	r, err := src.Slice(7)
	require.NoError(t, err)
	dst := NewLinkBuffer()
	defer dst.Close()
	_, err = dst.WriteString("<")
	require.NoError(t, err)
	require.NoError(t, dst.Append(r.(*LinkBuffer)))
	_, err = dst.WriteString(">")
	require.NoError(t, err)
	require.NoError(t, dst.Flush())
	require.NoError(t, src.Skip(7))
	require.NoError(t, src.Release())
	require.Equal(t, "<PAYLOAD>", string(dst.Bytes()))
}

// Kitex's case: a frame header staged in one buffer, then a payload buffer
// holding flushed and pending bytes appended to it. The payload's flushed
// bytes are readable at once, MallocLen grows by its pending bytes only
// (Kitex computes frame lengths from it), and after Flush the bytes lie in
// place order: the header, the payload's flushed bytes, its pending bytes.
func TestLinkBufferAppendFlushedAndPending(t *testing.T) {
	for _, via := range []string{"Append", "WriteBuffer"} {
		t.Run(via, func(t *testing.T) {
			dst := NewLinkBuffer()
			defer dst.Close()
			hdr, err := dst.Malloc(4)
			require.NoError(t, err)
			copy(hdr, "HDR|")

			src := NewLinkBuffer()
			flushed, err := src.Malloc(3)
			require.NoError(t, err)
			copy(flushed, "abc")
			require.NoError(t, src.Flush())
			pend, err := src.Malloc(6004)
			require.NoError(t, err)
			body := pattern(6004, 9)
			copy(pend, body)

			if via == "Append" {
				require.NoError(t, dst.Append(src))
			} else {
				require.NoError(t, dst.WriteBuffer(src))
			}
			require.Equal(t, 3, dst.Len(), "the appended flushed bytes are not readable at once")
			require.Equal(t, 6008, dst.MallocLen(), "MallocLen is not the staged header plus the appended pending bytes")
			p, err := dst.Peek(3)
			require.NoError(t, err)
			require.Equal(t, "abc", string(p))
			require.Equal(t, "abc", string(dst.Bytes()))

			require.NoError(t, dst.Flush())
			require.Equal(t, 4+3+6004, dst.Len())
			require.Zero(t, dst.MallocLen())
			want := append([]byte("HDR|abc"), body...)
			got, err := dst.Next(dst.Len())
			require.NoError(t, err)
			require.Equal(t, want, got)
		})
	}
}

// Reads before the Flush take the appended readable bytes, skipping the
// pending bytes in front of them, and Flush then publishes those pending
// bytes where they lie. MallocAck and WriteDirect count pending bytes only
// and leave the readable ones in place.
func TestLinkBufferAppendReadBeforeFlush(t *testing.T) {
	for _, nodeCap := range []int{4096, 2} {
		t.Run(fmt.Sprintf("LinkBufferCap=%d", nodeCap), func(t *testing.T) {
			setLinkBufferCap(t, nodeCap)
			b := readable(t, []byte("R1|"), 2)
			defer b.Close()
			_, err := b.WriteString("P1|")
			require.NoError(t, err)
			w := readable(t, []byte("R2|"), 2)
			_, err = w.WriteString("P2|")
			require.NoError(t, err)
			require.NoError(t, b.Append(w))
			require.Equal(t, 6, b.Len())
			require.Equal(t, 6, b.MallocLen())

			p, err := b.Next(4)
			require.NoError(t, err)
			require.Equal(t, "R1|R", string(p))
			require.NoError(t, b.Release())
			var rest []byte
			for _, seg := range b.GetBytes(nil) {
				rest = append(rest, seg...)
			}
			require.Equal(t, "2|", string(rest))

			// X follows the third pending byte: it lies before "2|".
			require.NoError(t, b.WriteDirect([]byte("X"), 3))
			require.Equal(t, 7, b.MallocLen())
			require.NoError(t, b.MallocAck(5)) // keeps "P1|X" and "P"
			require.Equal(t, 5, b.MallocLen())
			require.Equal(t, 2, b.Len(), "MallocAck dropped readable bytes")
			p, err = b.Peek(2)
			require.NoError(t, err)
			require.Equal(t, "2|", string(p))

			_, err = b.WriteString("Z")
			require.NoError(t, err)
			require.NoError(t, b.Flush())
			require.Equal(t, "P1|X2|PZ", string(b.Bytes()))
			require.NoError(t, b.Skip(b.Len()))
			require.NoError(t, b.Release())
			require.LessOrEqual(t, b.retained(), idleRetained(b))
		})
	}
}
