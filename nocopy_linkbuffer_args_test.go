package netpoll

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"runtime"
	"testing"

	"github.com/stretchr/testify/require"
)

// LinkBuffer given bad sizes and arguments, and used after Close
// (docs/contract.md C3.3, C3.4, C4.1, C4.4–C4.6, C16.2, C16.19): the
// documented zero values or an error, never a panic, and the data intact.

// Sizes of zero or below: every sized read and Malloc gives its zero values
// and a nil error at once and consumes nothing, Slice an empty Reader that
// works; WriteDirect with a negative remainCap does nothing; only MallocAck
// refuses a negative size. The same holds on an empty buffer and on one
// holding readable and pending bytes, whose bytes stay intact.
func TestLinkBufferZeroAndNegativeSizes(t *testing.T) {
	for _, filled := range []bool{false, true} {
		t.Run(fmt.Sprintf("filled=%v", filled), func(t *testing.T) {
			setLinkBufferCap(t, 4)
			b := NewLinkBuffer()
			defer b.Close()
			wantLen, wantPending := 0, 0
			if filled {
				_, err := b.WriteString("hello world")
				require.NoError(t, err)
				require.NoError(t, b.Flush())
				_, err = b.WriteString("pending")
				require.NoError(t, err)
				wantLen, wantPending = 11, 7
			}
			lens := func(what string, n int) {
				t.Helper()
				require.Equal(t, wantLen, b.Len(), "%s(%d) changed Len", what, n)
				require.Equal(t, wantPending, b.MallocLen(), "%s(%d) changed MallocLen", what, n)
			}
			for n := 0; n > -5; n-- {
				p, err := b.Malloc(n)
				require.NoError(t, err, "Malloc(%d)", n)
				require.Empty(t, p, "Malloc(%d)", n)
				lens("Malloc", n)
				require.NoError(t, b.WriteDirect(nil, n))
				require.NoError(t, b.WriteDirect([]byte("x"), min(n, -1)))
				lens("WriteDirect", n)
				if n < 0 {
					require.EqualError(t, b.MallocAck(n), fmt.Sprintf("link buffer malloc ack[%d] invalid", n))
					lens("MallocAck", n)
				}

				p, err = b.Next(n)
				require.NoError(t, err, "Next(%d)", n)
				require.Empty(t, p, "Next(%d)", n)
				p, err = b.Peek(n)
				require.NoError(t, err, "Peek(%d)", n)
				require.Empty(t, p, "Peek(%d)", n)
				require.NoError(t, b.Skip(n), "Skip(%d)", n)
				s, err := b.ReadString(n)
				require.NoError(t, err, "ReadString(%d)", n)
				require.Equal(t, "", s, "ReadString(%d)", n)
				p, err = b.ReadBinary(n)
				require.NoError(t, err, "ReadBinary(%d)", n)
				require.Empty(t, p, "ReadBinary(%d)", n)
				lens("a read of", n)

				r, err := b.Slice(n)
				require.NoError(t, err, "Slice(%d)", n)
				require.NotNil(t, r, "Slice(%d) gave a nil Reader", n)
				require.Equal(t, 0, r.Len(), "Slice(%d)", n)
				_, err = r.Next(1)
				require.EqualError(t, err, "link buffer next[1] not enough", "the Reader of Slice(%d)", n)
				p, err = r.Next(n)
				require.NoError(t, err)
				require.Empty(t, p)
				require.NoError(t, r.Release())
				lens("Slice", n)
				require.NoError(t, b.Release())
			}
			if filled {
				require.Equal(t, "hello world", string(b.Bytes()))
				require.NoError(t, b.Flush())
				require.Equal(t, "hello worldpending", string(b.Bytes()))
			}
		})
	}
}

// docs/contract.md C3.1–C3.4, C4.1, C4.4–C4.6, C16.19: every sized method
// of a LinkBuffer holding "hello world" with negative, zero, huge and
// maximal sizes, and the writes and appends with nil, foreign and closed
// arguments: the documented zero values or an error, and afterwards the
// readable bytes are still "hello world".
func TestLinkBufferBadSizes(t *testing.T) {
	const huge = 1 << 40
	b := flushedBuffer("hello world")
	defer b.Close()
	x := []byte("x")
	zero := func(p []byte, err error) error { return firstErr(err, check(len(p) == 0, "data for n<=0")) }
	cases := []argCase{
		{"Next(-1)", false, func() error { return zero(b.Next(-1)) }},
		{"Peek(-1)", false, func() error { return zero(b.Peek(-1)) }},
		{"Skip(-1)", false, func() error { return b.Skip(-1) }},
		{"ReadString(-1)", false, func() error { s, err := b.ReadString(-1); return zero([]byte(s), err) }},
		{"ReadBinary(-1)", false, func() error { return zero(b.ReadBinary(-1)) }},
		{"Slice(-1)", false, func() error {
			r, err := b.Slice(-1)
			return firstErr(err, check(r != nil && r.Len() == 0, "Slice(-1) not an empty Reader"))
		}},
		{"Next(huge)", true, func() error { _, err := b.Next(huge); return err }},
		{"Peek(huge)", true, func() error { _, err := b.Peek(huge); return err }},
		{"Skip(huge)", true, func() error { return b.Skip(huge) }},
		{"ReadString(huge)", true, func() error { _, err := b.ReadString(huge); return err }},
		{"ReadBinary(huge)", true, func() error { _, err := b.ReadBinary(huge); return err }},
		{"Slice(huge)", true, func() error { _, err := b.Slice(huge); return err }},
		{"Next(0)", false, func() error { p, err := b.Next(0); return firstErr(err, check(len(p) == 0, "data")) }},
		{"Malloc(-1)", false, func() error { return zero(b.Malloc(-1)) }},
		{"Malloc(0)", false, func() error { _, err := b.Malloc(0); return err }},
		{"Malloc(huge)", true, func() error { _, err := b.Malloc(huge); return err }},
		{"Malloc(MaxInt)", true, func() error { _, err := b.Malloc(int(^uint(0) >> 1)); return err }},
		{"MallocAck(-1)", true, func() error { return b.MallocAck(-1) }},
		{"MallocAck(huge)", true, func() error { return b.MallocAck(huge) }},
		{"WriteDirect(nil,-1)", false, func() error { return b.WriteDirect(nil, -1) }},
		{"WriteDirect(x,-1)", false, func() error { return b.WriteDirect(x, -1) }},
		{"WriteDirect(x,huge)", true, func() error { return b.WriteDirect(x, huge) }},
		{"WriteBinary(nil)", false, func() error { _, err := b.WriteBinary(nil); return err }},
		{"WriteString(\"\")", false, func() error { _, err := b.WriteString(""); return err }},
		{"Append(nil)", true, func() error { return b.Append(nil) }},
		{"Append(other Writer)", true, func() error { return b.Append(NewWriter(io.Discard)) }},
		{"Append(nil *LinkBuffer)", false, func() error { return b.Append((*LinkBuffer)(nil)) }},
		{"WriteBuffer(nil)", false, func() error { return b.WriteBuffer(nil) }},
		{"WriteBuffer(self)", true, func() error { return b.WriteBuffer(b) }},
		{"WriteBuffer(closed)", true, func() error { o := flushedBuffer("x"); o.Close(); return b.WriteBuffer(o) }},
		{"GetBytes(nil)", false, func() error { // every readable segment (C3.2)
			got := string(bytes.Join(b.GetBytes(nil), nil))
			return check(got == "hello world", "GetBytes(nil) gave "+got)
		}},
		{"Until(missing)", true, func() error { _, err := b.Until('#'); return err }},
		{"ReadByte(empty)", true, func() error { _, err := NewLinkBuffer().ReadByte(); return err }},
		{"Release(empty)", false, func() error { return NewLinkBuffer().Release() }},
		{"NewLinkBuffer(-1)", false, func() error { return NewLinkBuffer(-1).Close() }},
		{"NewLinkBuffer(0,1,2)", false, func() error { return NewLinkBuffer(0, 1, 2).Close() }},
	}
	if soakMode() { // it takes a whole node of the largest size: slow under -race
		cases = append(cases, argCase{"NewLinkBuffer(huge)", false, func() error { return NewLinkBuffer(huge).Close() }})
	}
	runArgCases(t, cases)
	runtime.GC() // give back what NewLinkBuffer(huge) took
	// The data is intact after all that.
	if got := string(b.Bytes()); got != "hello world" {
		t.Fatalf("buffer after the misuse: %q", got)
	}
}

// docs/contract.md C3.3 and C16.2: after Close every method fails with an error matching
// ErrConnClosed (or returns zero values where it has no error), and none
// panics, whatever the buffer held.
func TestLinkBufferClosed(t *testing.T) {
	setLinkBufferCap(t, 8)
	b := readable(t, pattern(50, 1), 5)
	_, err := b.Next(20) // a cross-node copy outstanding
	require.NoError(t, err)
	_, err = b.Peek(20)
	require.NoError(t, err)
	_, err = b.Malloc(30) // pending bytes
	require.NoError(t, err)
	require.NoError(t, b.Close())
	require.NoError(t, b.Close(), "a second Close")

	other := readable(t, []byte("other"), 5)
	defer other.Close()
	closed := func(name string, err error) {
		t.Helper()
		require.Truef(t, errors.Is(err, ErrConnClosed), "%s after Close: %v", name, err)
	}
	_, err = b.Next(1)
	closed("Next", err)
	for _, n := range []int{0, -1} { // sizes <= 0 give zero values and nil, closed or not
		p, err := b.Next(n)
		require.NoError(t, err, "Next(%d) after Close", n)
		require.Nil(t, p)
		p, err = b.Malloc(n)
		require.NoError(t, err, "Malloc(%d) after Close", n)
		require.Nil(t, p)
		r, err := b.Slice(n)
		require.NoError(t, err, "Slice(%d) after Close", n)
		require.Zero(t, r.Len())
	}
	_, err = b.Peek(1)
	closed("Peek", err)
	closed("Skip", b.Skip(1))
	_, err = b.Until('x')
	closed("Until", err)
	_, err = b.ReadString(1)
	closed("ReadString", err)
	_, err = b.ReadBinary(1)
	closed("ReadBinary", err)
	_, err = b.ReadByte()
	closed("ReadByte", err)
	_, err = b.Slice(1)
	closed("Slice", err)
	closed("Release", b.Release())
	_, err = b.Malloc(1)
	closed("Malloc", err)
	closed("MallocAck", b.MallocAck(0))
	_, err = b.WriteString("x")
	closed("WriteString", err)
	_, err = b.WriteString("")
	closed("WriteString(empty)", err)
	_, err = b.WriteBinary([]byte("x"))
	closed("WriteBinary", err)
	_, err = b.WriteBinary(make([]byte, BinaryInplaceThreshold+1))
	closed("WriteBinary(big)", err)
	closed("WriteByte", b.WriteByte('x'))
	closed("WriteDirect", b.WriteDirect([]byte("x"), 0))
	closed("Append", b.Append(other))
	closed("WriteBuffer", b.WriteBuffer(other))
	closed("Flush", b.Flush())
	require.Equal(t, 5, other.Len(), "a failed Append took the other buffer's bytes")

	require.Zero(t, b.Len())
	require.True(t, b.IsEmpty())
	require.Zero(t, b.MallocLen())
	require.Empty(t, b.Bytes())
	require.Empty(t, b.GetBytes(nil))
	require.Empty(t, b.GetBytes(make([][]byte, 2)))
	require.Zero(t, b.retained())

	// A closed buffer given to Append is refused too, with an error that
	// does not say the (open) receiver is closed.
	target := NewLinkBuffer()
	defer target.Close()
	err = target.Append(b)
	require.ErrorIs(t, err, errAppendClosed)
	require.NotErrorIs(t, err, ErrConnClosed)
	require.Zero(t, target.MallocLen())
}

// docs/contract.md C3.3, C16.2: every LinkBuffer method after Close, on a
// buffer closed with readable and pending bytes: an error matching
// ErrConnClosed, or the zero result, each checked under a recover.
func TestLinkBufferEveryMethodAfterClose(t *testing.T) {
	b := flushedBuffer("data")
	_, _ = b.Malloc(8)
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	closed := func(err error) error {
		if !errors.Is(err, ErrConnClosed) {
			return errors.New("not ErrConnClosed: " + errText(err))
		}
		return nil
	}
	cases := []argCase{
		{"Next", false, func() error { _, err := b.Next(1); return closed(err) }},
		{"Peek", false, func() error { _, err := b.Peek(1); return closed(err) }},
		{"Skip", false, func() error { return closed(b.Skip(1)) }},
		{"Until", false, func() error { _, err := b.Until('a'); return closed(err) }},
		{"ReadString", false, func() error { _, err := b.ReadString(1); return closed(err) }},
		{"ReadBinary", false, func() error { _, err := b.ReadBinary(1); return closed(err) }},
		{"ReadByte", false, func() error { _, err := b.ReadByte(); return closed(err) }},
		{"Slice", false, func() error { _, err := b.Slice(1); return closed(err) }},
		{"Release", false, func() error { return closed(b.Release()) }},
		{"Len", false, func() error { return check(b.Len() == 0, "Len != 0") }},
		{"IsEmpty", false, func() error { return check(b.IsEmpty(), "not empty") }},
		{"Malloc", false, func() error { _, err := b.Malloc(1); return closed(err) }},
		{"MallocLen", false, func() error { return check(b.MallocLen() == 0, "MallocLen != 0") }},
		{"MallocAck", false, func() error { return closed(b.MallocAck(0)) }},
		{"WriteString", false, func() error { _, err := b.WriteString("x"); return closed(err) }},
		{"WriteBinary", false, func() error { _, err := b.WriteBinary(make([]byte, 10000)); return closed(err) }},
		{"WriteByte", false, func() error { return closed(b.WriteByte('x')) }},
		{"WriteDirect", false, func() error { return closed(b.WriteDirect([]byte("x"), 0)) }},
		{"Append", false, func() error { return closed(b.Append(flushedBuffer("x"))) }},
		{"WriteBuffer", false, func() error { return closed(b.WriteBuffer(flushedBuffer("x"))) }},
		{"Flush", false, func() error { return closed(b.Flush()) }},
		{"Bytes", false, func() error { return check(len(b.Bytes()) == 0, "Bytes not empty") }},
		{"GetBytes", false, func() error { return check(len(b.GetBytes(make([][]byte, 4))) == 0, "GetBytes not empty") }},
		{"Close again", false, func() error { return b.Close() }},
	}
	runArgCases(t, cases)
}
