package netpoll

import (
	"errors"
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Tests of the poller's path into an input buffer (book, fill, bookAck) and
// of the memory give-back: after a large message has been read and
// Released, the buffer holds no more than after a small one.

// book returns free space with cap == len; bookAck publishes what was
// written into it; the owner reads it like any other bytes.
func TestLinkBufferBook(t *testing.T) {
	for _, nodeCap := range []int{4096, 16} {
		setLinkBufferCap(t, nodeCap)
		b := NewLinkBuffer()
		var want []byte
		for i := 0; i < 50; i++ {
			p := b.book(64)
			require.NotNil(t, p)
			require.GreaterOrEqual(t, len(p), 32, "book(size) gives at least size/2")
			require.Equal(t, len(p), cap(p))
			require.Nil(t, b.book(64), "a second book before bookAck")
			n := min(len(p), 5+i%40)
			copy(p, pattern(n, byte(i)))
			require.NoError(t, b.bookAck(n))
			want = append(want, p[:n]...)
			require.Equal(t, len(want), b.Len())
			require.Zero(t, b.MallocLen())
			if i%3 == 2 {
				got, err := b.Next(len(want) / 2)
				require.NoError(t, err)
				require.Equal(t, want[:len(want)/2], got)
				want = want[len(want)/2:]
				require.NoError(t, b.Release())
			}
		}
		require.Equal(t, want, b.Bytes())
		require.NoError(t, b.bookAck(10), "bookAck without book is a no-op")
		require.Equal(t, len(want), b.Len())
		require.NoError(t, b.Close())
	}
}

// bookAck(0), as after EAGAIN, publishes nothing; the booked space is
// offered again next time.
func TestLinkBufferBookNothing(t *testing.T) {
	b := NewLinkBuffer()
	defer b.Close()
	p := b.book(4096)
	require.NoError(t, b.bookAck(0))
	require.Zero(t, b.Len())
	q := b.book(4096)
	require.Equal(t, addr(p), addr(q))
	copy(q, "hi")
	require.NoError(t, b.bookAck(2))
	require.Equal(t, "hi", string(b.Bytes()))
}

// The owner reads and Releases while the poller holds a booking: the booked
// node stays, and the bytes acknowledged after the Release are readable.
func TestLinkBufferReleaseWhileBooked(t *testing.T) {
	setLinkBufferCap(t, 16)
	b := NewLinkBuffer()
	defer b.Close()
	p := b.book(16)
	copy(p, "abcdefgh")
	require.NoError(t, b.bookAck(8))

	q := b.book(16) // the same node: 8 bytes left
	got, err := b.Next(8)
	require.NoError(t, err)
	require.Equal(t, "abcdefgh", string(got))
	require.NoError(t, b.Release())
	copy(q, "ijkl")
	require.NoError(t, b.bookAck(4))
	require.Equal(t, "ijkl", string(b.Bytes()))
}

// Close while the poller holds a booking: nothing is freed under the
// poller's feet, bookAck then frees the node and reports the close, and no
// later booking is given.
func TestLinkBufferCloseWhileBooked(t *testing.T) {
	b := NewLinkBuffer()
	p := b.book(4096)
	require.NotNil(t, p)
	copy(p, "written after Close") // the poller's read lands after Close
	require.NoError(t, b.Close())
	copy(p, "still writable")
	err := b.bookAck(14)
	require.True(t, errors.Is(err, ErrConnClosed), "bookAck after Close: %v", err)
	require.Zero(t, b.Len())
	require.Zero(t, b.retained())
	require.Nil(t, b.book(4096), "book after Close")
	require.NoError(t, b.bookAck(1))

	// The same with readable bytes and a multi-node list.
	setLinkBufferCap(t, 4)
	b = NewLinkBuffer()
	for i := 0; i < 5; i++ {
		p = b.book(8)
		copy(p, "12345678")
		require.NoError(t, b.bookAck(len(p)))
	}
	p = b.book(8)
	require.NoError(t, b.Close())
	require.True(t, errors.Is(b.bookAck(len(p)), ErrConnClosed))
	_, err = b.Next(1)
	require.True(t, errors.Is(err, ErrConnClosed))
}

const (
	giveBackMessage = 64 << 20 // a large message
	giveBackLimit   = 8 << 10  // what an idle buffer may keep
)

// smallCycle writes, reads and Releases a small message, and returns what
// the buffer holds afterwards.
func smallCycle(t *testing.T, b *LinkBuffer) int {
	t.Helper()
	p, err := b.Malloc(100)
	require.NoError(t, err)
	copy(p, pattern(100, 1))
	require.NoError(t, b.Flush())
	got, err := b.Next(100)
	require.NoError(t, err)
	require.Equal(t, pattern(100, 1), got)
	require.NoError(t, b.Release())
	return b.retained()
}

// After a 64 MiB message is written, read and Released, the buffer holds
// no more than after a small message: written in chunks or in one Malloc,
// read with Next or Skip.
func TestLinkBufferGiveBack(t *testing.T) {
	b := NewLinkBuffer()
	defer b.Close()
	base := smallCycle(t, b)
	require.LessOrEqual(t, base, giveBackLimit)
	chunk := pattern(64<<10, 7)

	t.Run("chunks, one Next", func(t *testing.T) {
		for i := 0; i < giveBackMessage/len(chunk); i++ {
			p, err := b.Malloc(len(chunk))
			require.NoError(t, err)
			copy(p, chunk)
		}
		require.NoError(t, b.Flush())
		require.GreaterOrEqual(t, b.retained(), giveBackMessage)
		got, err := b.Next(giveBackMessage)
		require.NoError(t, err)
		require.Equal(t, chunk, got[giveBackMessage-len(chunk):])
		require.NoError(t, b.Release())
		require.LessOrEqual(t, b.retained(), max(base, giveBackLimit))
	})
	t.Run("chunks, Next in parts", func(t *testing.T) {
		for i := 0; i < giveBackMessage/len(chunk); i++ {
			_, err := b.WriteBinary(chunk[:BinaryInplaceThreshold])
			require.NoError(t, err)
			p, err := b.Malloc(len(chunk) - BinaryInplaceThreshold)
			require.NoError(t, err)
			copy(p, chunk[BinaryInplaceThreshold:])
			require.NoError(t, b.Flush())
		}
		half := 0
		for b.Len() > 0 {
			got, err := b.Next(len(chunk))
			require.NoError(t, err)
			require.Equal(t, chunk, got)
			if b.Len() == giveBackMessage/2 {
				require.NoError(t, b.Release())
				half = b.retained()
			}
		}
		require.Less(t, half, giveBackMessage*3/4, "Release kept consumed nodes")
		require.NoError(t, b.Release())
		require.LessOrEqual(t, b.retained(), max(base, giveBackLimit))
	})
	t.Run("one Malloc, Skip", func(t *testing.T) {
		p, err := b.Malloc(giveBackMessage)
		require.NoError(t, err)
		copy(p[giveBackMessage-len(chunk):], chunk)
		require.NoError(t, b.Flush())
		require.NoError(t, b.Skip(giveBackMessage-len(chunk)))
		got, err := b.Next(len(chunk))
		require.NoError(t, err)
		require.Equal(t, chunk, got)
		require.NoError(t, b.Release())
		require.LessOrEqual(t, b.retained(), max(base, giveBackLimit))
	})
	t.Run("small message afterwards", func(t *testing.T) {
		require.LessOrEqual(t, smallCycle(t, b), max(base, giveBackLimit))
	})
}

// The connection's path: the poller books growing reads (as readSize
// doubles up to 8 MiB), the owner waits for the whole 64 MiB message, reads
// it and Releases. Afterwards the buffer gives the memory back, also when
// the poller had booked its next read at the time of the Release. A lean
// buffer (a connection's) then holds nothing at all.
func TestLinkBufferGiveBackBooked(t *testing.T) {
	src := pattern(8<<20, 3)
	for _, lean := range []bool{false, true} {
		t.Run(map[bool]string{false: "NewLinkBuffer", true: "lean"}[lean], func(t *testing.T) {
			b := &LinkBuffer{lean: lean}
			defer b.Close()
			arrive := func(total int) {
				size := 4096
				for got := 0; got < total; {
					p := b.book(size)
					require.NotNil(t, p)
					n := min(len(p), total-got)
					copy(p[:n], src)
					require.NoError(t, b.bookAck(n))
					got += n
					if n == len(p) && size < 8<<20 {
						size *= 2
					}
				}
			}
			idle := func() {
				t.Helper()
				require.LessOrEqual(t, b.retained(), giveBackLimit)
				require.LessOrEqual(t, b.retained(), idleRetained(b))
			}
			arrive(100)
			_, err := b.Next(100)
			require.NoError(t, err)
			require.NoError(t, b.Release())
			idle()

			arrive(giveBackMessage)
			require.Equal(t, giveBackMessage, b.Len())
			_, err = b.Next(giveBackMessage)
			require.NoError(t, err)
			require.NoError(t, b.Release())
			idle()

			// This time the poller is waiting in a read when the owner Releases.
			arrive(giveBackMessage)
			require.NoError(t, b.Skip(giveBackMessage))
			p := b.book(8 << 20)
			require.NoError(t, b.Release())
			require.NoError(t, b.bookAck(0)) // EAGAIN
			require.LessOrEqual(t, b.retained(), len(p)+giveBackLimit)
			require.NoError(t, b.Release())
			idle()

			arrive(100)
			_, err = b.Next(100)
			require.NoError(t, err)
			require.NoError(t, b.Release())
			idle()
		})
	}
}

// The connection's concurrency: a poller goroutine books under the lock,
// fills the booked memory without it, and acknowledges under the lock, while
// the owner reads, checks and Releases under the lock and Len is read with
// no lock at all. The race detector watches that the two never touch the
// same memory; the owner checks every byte of the stream. At the end the
// owner Closes while the poller may hold a booking.
func TestLinkBufferBookConcurrent(t *testing.T) {
	setLinkBufferCap(t, 64)
	const total = 1 << 20
	streamByte := func(i int) byte { return byte(i % 251) }
	var mu sync.Mutex
	b := NewLinkBuffer()
	pollerDone := make(chan error, 1)
	go func() {
		size := 1
		for sent := 0; ; {
			mu.Lock()
			p := b.book(size)
			mu.Unlock()
			if p == nil {
				pollerDone <- nil // closed
				return
			}
			n := min(len(p), total-sent)
			if sent >= total {
				n = 0
			}
			for i := 0; i < n; i++ {
				p[i] = streamByte(sent + i)
			}
			mu.Lock()
			err := b.bookAck(n)
			mu.Unlock()
			if err != nil {
				if !errors.Is(err, ErrConnClosed) {
					pollerDone <- err
					return
				}
				pollerDone <- nil
				return
			}
			sent += n
			size = size%5000 + 97
			if n == 0 {
				runtime.Gosched()
			}
		}
	}()

	check := func(p []byte, from int) {
		for i, c := range p {
			if c != streamByte(from+i) {
				t.Fatalf("byte %d of the stream is %d, want %d", from+i, c, streamByte(from+i))
			}
		}
	}
	for got, step := 0, 0; got < total; step++ {
		want := min(1+step*37%3000, total-got)
		if b.Len() < want { // Len needs no lock
			runtime.Gosched()
			continue
		}
		mu.Lock()
		switch step % 4 {
		case 0:
			p, err := b.Next(want)
			require.NoError(t, err)
			check(p, got)
		case 1:
			p, err := b.Peek(want)
			require.NoError(t, err)
			check(p, got)
			require.NoError(t, b.Skip(want))
		case 2:
			p, err := b.ReadBinary(want)
			require.NoError(t, err)
			check(p, got)
		default:
			r, err := b.Slice(want)
			require.NoError(t, err)
			check(r.(*LinkBuffer).Bytes(), got)
			require.NoError(t, r.(*LinkBuffer).Close())
		}
		got += want
		if step%3 == 0 {
			require.NoError(t, b.Release())
		}
		mu.Unlock()
	}
	mu.Lock()
	require.NoError(t, b.Release())
	require.NoError(t, b.Close())
	mu.Unlock()
	select {
	case err := <-pollerDone:
		require.NoError(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("the poller goroutine did not end")
	}
}

// appendRead copies a small read into the tail's room or a node of its own
// size, mixed with booked reads; the bytes come out in order, and a closed
// buffer refuses it.
func TestLinkBufferAppendRead(t *testing.T) {
	b := &LinkBuffer{lean: true}
	var want []byte
	for i := 0; i < 60; i++ {
		if i%7 == 6 {
			p := b.book(4096)
			require.NotNil(t, p)
			n := copy(p, pattern(100+i, byte(i)))
			require.NoError(t, b.bookAck(n))
			want = append(want, p[:n]...)
		} else {
			p := pattern(1+i*37%1500, byte(i))
			require.NoError(t, b.appendRead(p))
			want = append(want, p...)
		}
		require.Equal(t, len(want), b.Len())
		if i%5 == 4 {
			got, err := b.Next(len(want) - 3)
			require.NoError(t, err)
			require.Equal(t, want[:len(want)-3], got)
			want = want[len(want)-3:]
			require.NoError(t, b.Release())
		}
	}
	require.Equal(t, want, b.Bytes())
	require.NoError(t, b.Close())
	require.ErrorIs(t, b.appendRead([]byte("late")), errBufferClosed)
}

// A small read into an empty buffer takes a node of about its own size,
// not a whole LinkBufferCap or read size.
func TestLinkBufferAppendReadNodeSize(t *testing.T) {
	b := &LinkBuffer{lean: true}
	defer b.Close()
	require.NoError(t, b.appendRead(pattern(1028, 1)))
	require.LessOrEqual(t, b.retained(), 2048)
	require.Equal(t, pattern(1028, 1), b.Bytes())
}

// Input arriving in many small reads behind unread bytes does not become a
// node per read: appendRead's nodes double up to appendReadGrowth.
func TestLinkBufferAppendReadGrows(t *testing.T) {
	b := NewLinkBuffer()
	defer b.Close()
	piece := []byte("0123456789")
	var want []byte
	for i := 0; i < 1000; i++ {
		require.NoError(t, b.appendRead(piece))
		want = append(want, piece...)
	}
	nodes := 0
	for n := b.head; n != nil; n = n.next {
		nodes++
	}
	require.LessOrEqual(t, nodes, 12, "1000 reads of 10 bytes made %d nodes", nodes)
	require.Equal(t, string(want), string(b.Bytes()))
	// Once everything is read, a read that does not fit the tail gets a node
	// of its own size again, not twice the tail's.
	d := NewLinkBuffer()
	defer d.Close()
	require.NoError(t, d.appendRead(make([]byte, 1000)))
	_, err := d.Next(1000)
	require.NoError(t, err)
	require.NoError(t, d.appendRead(make([]byte, 100)))
	require.LessOrEqual(t, len(d.tail.buf), 128, "a read into a drained buffer got a %d-byte node", len(d.tail.buf))
}

// A large node booked for a read that brought only a few bytes goes back to
// the pool, the bytes copied into a node of their size; so does one booked
// for a read that brought nothing. A read that brings more stays where it
// landed, uncopied.
func TestLinkBufferBookFewBytesInLargeNode(t *testing.T) {
	b := NewLinkBuffer()
	b.lean = true
	defer b.Close()

	p := b.book(1 << 20)
	require.GreaterOrEqual(t, len(p), 1<<20)
	copy(p, "0123456789")
	require.NoError(t, b.bookAck(10))
	require.Equal(t, "0123456789", string(b.Bytes()))
	require.LessOrEqual(t, b.retained(), 64, "10 bytes read into a 1 MiB booking pin %d bytes", b.retained())

	p = b.book(1 << 20)
	require.NoError(t, b.bookAck(0))
	require.LessOrEqual(t, b.retained(), 64, "an empty 1 MiB booking is kept: %d bytes", b.retained())

	p = b.book(1 << 20)
	big := pattern(100<<10, 3)
	copy(p, big)
	require.NoError(t, b.bookAck(len(big)))
	segs := b.GetBytes(nil)
	require.Equal(t, addr(p), addr(segs[len(segs)-1]), "a 100 KiB read was copied out of its node")
	require.Equal(t, append([]byte("0123456789"), big...), b.Bytes())
}

// Release in a lean buffer (a connection's) moves a few unread bytes out of
// large nodes into a node of their size: the bytes that follow a large
// message in the same read must not pin the message's memory. A Slice of
// the large node stays intact, and the bytes read on in order.
func TestLinkBufferReleaseCompacts(t *testing.T) {
	for _, lean := range []bool{true, false} {
		t.Run(fmt.Sprintf("lean=%v", lean), func(t *testing.T) {
			b := NewLinkBuffer()
			b.lean = lean
			defer b.Close()
			p := b.book(1 << 20)
			data := pattern(len(p), 5)
			copy(p, data)
			require.NoError(t, b.bookAck(len(p)))
			require.NoError(t, b.appendRead([]byte("abcde")))
			want := append(append([]byte(nil), data[len(data)-10:]...), "abcde"...)

			s, err := b.Slice(100)
			require.NoError(t, err)
			defer s.Release()
			got, err := b.Next(len(data) - 110)
			require.NoError(t, err)
			require.Equal(t, data[100:len(data)-10], got)
			require.NoError(t, b.Release())
			require.Equal(t, want, b.Bytes())
			if lean {
				require.LessOrEqual(t, b.retained(), 64, "15 unread bytes pin %d bytes", b.retained())
			}

			require.NoError(t, b.appendRead([]byte("fgh")))
			got, err = b.Next(b.Len())
			require.NoError(t, err)
			require.Equal(t, append(want, "fgh"...), got)
			require.NoError(t, b.Release())
			got, err = s.Next(100)
			require.NoError(t, err)
			require.Equal(t, data[:100], got, "the Slice changed")
		})
	}
}
