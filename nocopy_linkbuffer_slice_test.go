package netpoll

// Tests of Slice: docs/contract.md C2.8 on a LinkBuffer.

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"
)

// docs/contract.md C2.8: Slice shares the bytes by reference in a read-only buffer that
// outlives the parent's Release and Close, and can itself be sliced.
func TestLinkBufferSlice(t *testing.T) {
	for _, nodeCap := range []int{4096, 4} {
		t.Run(fmt.Sprintf("LinkBufferCap=%d", nodeCap), func(t *testing.T) {
			setLinkBufferCap(t, nodeCap)
			data := pattern(200, 9)
			b := readable(t, data, 9)
			require.NoError(t, b.Skip(10))

			peek, err := b.Peek(1)
			require.NoError(t, err)
			r, err := b.Slice(150)
			require.NoError(t, err)
			s := r.(*LinkBuffer)
			require.Equal(t, 150, s.Len())
			require.Equal(t, 40, b.Len())
			segs := s.GetBytes(nil)
			require.Equal(t, addr(peek), addr(segs[0]), "Slice should share memory, not copy")

			// The parent goes on: more writes, Release, Close.
			_, err = b.WriteString(string(pattern(300, 77)))
			require.NoError(t, err)
			require.NoError(t, b.Flush())
			require.NoError(t, b.Skip(100))
			require.NoError(t, b.Release())
			require.Equal(t, data[10:160], s.Bytes(), "Slice died with the parent's Release")
			require.NoError(t, b.Close())
			require.Equal(t, data[10:160], s.Bytes(), "Slice died with the parent's Close")

			// A slice of the slice outlives its parent too.
			_, err = s.Next(20)
			require.NoError(t, err)
			r2, err := s.Slice(100)
			require.NoError(t, err)
			s2 := r2.(*LinkBuffer)
			require.NoError(t, s.Close())
			require.Equal(t, data[30:130], s2.Bytes())
			got, err := s2.ReadString(100)
			require.NoError(t, err)
			require.Equal(t, string(data[30:130]), got)
			require.NoError(t, s2.Release())
			require.NoError(t, s2.Close())

			// Churn the pools: the slices' memory must not have been reused early.
			for i := 0; i < 10; i++ {
				nb := readable(t, pattern(500, byte(i)), 50)
				require.NoError(t, nb.Close())
			}
			require.Equal(t, string(data[30:130]), got)
		})
	}
}

// docs/contract.md C2.8: a Slice that takes every byte of a node survives the parent's
// next writes, even though Release may reuse an emptied node.
func TestLinkBufferSliceOfWholeNode(t *testing.T) {
	for _, lean := range []bool{false, true} {
		b := &LinkBuffer{lean: lean}
		_, err := b.WriteString("0123456789")
		require.NoError(t, err)
		require.NoError(t, b.Flush())
		r, err := b.Slice(10)
		require.NoError(t, err)
		for i := 0; i < 3; i++ {
			_, err = b.WriteString("abcdefghij")
			require.NoError(t, err)
			require.NoError(t, b.Flush())
			require.NoError(t, b.Skip(10))
			require.NoError(t, b.Release())
		}
		require.Equal(t, "0123456789", string(r.(*LinkBuffer).Bytes()), "lean=%v", lean)
		require.NoError(t, r.(*LinkBuffer).Close())
		require.NoError(t, b.Close())
	}
}

// docs/contract.md C2.8: Slice Releases the parent: the parent's Next results die, its
// consumed memory goes back.
func TestLinkBufferSliceReleasesParent(t *testing.T) {
	setLinkBufferCap(t, 8)
	b := readable(t, pattern(64, 2), 8)
	defer b.Close()
	before := b.retained()
	_, err := b.Next(33) // crosses nodes: a pooled copy
	require.NoError(t, err)
	r, err := b.Slice(8)
	require.NoError(t, err)
	defer r.(*LinkBuffer).Close()
	require.Less(t, b.retained(), before, "Slice did not Release the parent")
	require.Equal(t, pattern(64, 2)[41:], b.Bytes())
}
