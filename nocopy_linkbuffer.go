package netpoll

import (
	"bytes"
	"errors"
	"fmt"
	"sync/atomic"
	"unsafe"

	"github.com/bytedance/gopkg/lang/mcache"
)

// BinaryInplaceThreshold is the length above which WriteBinary and
// WriteString keep a reference to the caller's memory instead of copying it.
const BinaryInplaceThreshold = 4096

// LinkBufferCap is the smallest capacity of a node a LinkBuffer allocates.
// Tests lower it to make messages span many nodes; change it only before any
// buffer is in use.
var LinkBufferCap = 4096

// LinkBuffer is the buffer of this package. The race build uses the same
// type: there is no separate locked variant.
type LinkBuffer = UnsafeLinkBuffer

// UnsafeLinkBuffer is a linked list of byte segments with a nocopy Reader
// and Writer. Bytes written become readable at Flush; reads never block.
//
// It is not safe for concurrent use, with one exception: Len and IsEmpty may
// be called while another goroutine writes or reads.
//
// Ownership: slices from Next and Peek, and the slices in GetBytes and a
// one-node Bytes, alias the buffer and stay valid until the next Release. Slices from Malloc are the
// caller's to fill until Flush. ReadString, ReadBinary and Until results are
// the caller's for good. Every slice handed out has cap == len, so append
// never writes into the buffer. After Close every method that returns an
// error returns one matching ErrConnClosed, except a second Close (nil); Len
// and MallocLen are 0, and Bytes and GetBytes return nothing. Its methods
// panic on a nil *UnsafeLinkBuffer.
type UnsafeLinkBuffer struct {
	length  atomic.Int64 // readable bytes
	pending int          // written, not yet flushed (MallocLen)

	head *node // first node not yet released
	read *node // node the next read starts in
	pend *node // first node that may hold pending bytes
	tail *node // last node; Malloc writes here

	copies  [][]byte // pooled copies made by reads across nodes, freed at Release
	peeks   [][]byte // pooled copies made by Peek across nodes, freed at Release
	minSize int32    // capacity of the first node; 32 bits pack it with the flags
	booked  bool     // a poller is filling the tail's free space (see book)
	fresh   bool     // the booked tail is a node book added for the booking
	closed  bool
	// lean: Release frees the last node as soon as it is empty, so that an
	// idle buffer holds no memory, and moves a few unread bytes out of a
	// large node (see compact). Otherwise a small emptied last node is kept
	// and written again from its start.
	lean bool
}

// NewLinkBuffer returns an empty buffer. With a positive size the first node
// is allocated at once with capacity max(size, LinkBufferCap), at most 1 GiB;
// otherwise nothing is allocated until the first write. Sizes after the first
// are ignored.
func NewLinkBuffer(size ...int) *LinkBuffer {
	b := &LinkBuffer{}
	if len(size) > 0 && size[0] > 0 {
		b.minSize = int32(min(size[0], maxNodeSize))
		b.grow(0)
	}
	return b
}

// errBufferClosed is returned by every method of a closed LinkBuffer.
var errBufferClosed error = bufferClosedError{}

type bufferClosedError struct{}

func (bufferClosedError) Error() string { return "link buffer has been closed" }

// Is makes errors.Is(err, ErrConnClosed) true.
func (bufferClosedError) Is(target error) bool { return target == error(ErrConnClosed) }

// check validates a read of n bytes named op. A size n <= 0 passes, on a
// closed buffer too (as in the reference): the caller returns its zero
// values for it.
func (b *UnsafeLinkBuffer) check(n int, op string) error {
	switch {
	case n <= 0:
		return nil
	case b.closed:
		return errBufferClosed
	case int64(n) > b.length.Load():
		return fmt.Errorf("link buffer %s[%d] not enough", op, n)
	}
	return nil
}

// Len returns the number of readable bytes. It is safe to call concurrently.
func (b *UnsafeLinkBuffer) Len() int { return int(b.length.Load()) }

// IsEmpty reports whether nothing is readable.
func (b *UnsafeLinkBuffer) IsEmpty() (ok bool) { return b.Len() == 0 }

// seek moves the read node past exhausted nodes, up to pend at most; something
// must be readable.
func (b *UnsafeLinkBuffer) seek() {
	for b.read.off == b.read.end && b.read != b.pend {
		b.read = b.read.next
	}
}

// first returns the first node, from the read node on, that holds a readable
// byte; something must be readable (its bytes may be counted out already).
// Usually that is the read node itself. Append can leave readable bytes
// behind pending ones: the read node stops at the first node that may hold
// pending bytes (pend), which Flush makes readable in place, and the reads
// look past it.
func (b *UnsafeLinkBuffer) first() *node {
	r := b.read
	for r.off == r.end {
		r = r.next
	}
	return r
}

// consumed is called by every consuming read.
func (b *UnsafeLinkBuffer) consumed(n int) {
	b.length.Add(-int64(n))
	b.seek()
}

// copyOut consumes len(p) readable bytes into p.
func (b *UnsafeLinkBuffer) copyOut(p []byte) {
	for r, done := b.read, 0; done < len(p); r = r.next {
		m := copy(p[done:], r.buf[r.off:r.end])
		r.off += m
		done += m
	}
}

// alias consumes n bytes if they lie in one node and returns them by
// reference; otherwise it returns nil and consumes nothing.
func (b *UnsafeLinkBuffer) alias(n int) []byte {
	r := b.first()
	if r.end-r.off < n {
		return nil
	}
	p := r.buf[r.off : r.off+n : r.off+n]
	r.off += n
	return p
}

// Next consumes n bytes and returns them. The slice is valid until Release.
// n <= 0 gives (nil, nil); fewer than n readable bytes give an error and
// consume nothing.
func (b *UnsafeLinkBuffer) Next(n int) (p []byte, err error) {
	if err = b.check(n, "next"); err != nil || n <= 0 {
		return nil, err
	}
	b.consumed(n)
	if p = b.alias(n); p != nil {
		return p, nil
	}
	p = pooled(&b.copies, n)
	b.copyOut(p)
	return p, nil
}

// Peek returns the next n bytes without consuming them. The slice is valid
// until Release, even after the bytes are consumed (Hertz peeks a body,
// skips it and reads the peeked slice). Errors as Next.
func (b *UnsafeLinkBuffer) Peek(n int) (p []byte, err error) {
	if err = b.check(n, "peek"); err != nil || n <= 0 {
		return nil, err
	}
	r := b.first()
	if r.end-r.off >= n {
		return r.buf[r.off : r.off+n : r.off+n], nil
	}
	p = pooled(&b.peeks, n)
	for done := 0; done < n; r = r.next {
		done += copy(p[done:], r.buf[r.off:r.end])
	}
	return p, nil
}

// Skip consumes n bytes. Errors as Next.
func (b *UnsafeLinkBuffer) Skip(n int) (err error) {
	if err = b.check(n, "skip"); err != nil || n <= 0 {
		return err
	}
	b.consumed(n)
	for r := b.read; n > 0; r = r.next {
		m := min(n, r.end-r.off)
		r.off += m
		n -= m
	}
	return nil
}

// ReadBinary consumes n bytes and returns them in memory the caller owns for
// good: a copy, or with Config.AlwaysNoCopyRead and n >= 64 in one node, the
// node's own memory, which then never returns to the pool. Errors as Next.
func (b *UnsafeLinkBuffer) ReadBinary(n int) (p []byte, err error) {
	if err = b.check(n, "read binary"); err != nil || n <= 0 {
		return nil, err
	}
	return b.readOwned(n), nil
}

// ReadString is ReadBinary returning a string.
func (b *UnsafeLinkBuffer) ReadString(n int) (s string, err error) {
	if err = b.check(n, "read string"); err != nil || n <= 0 {
		return "", err
	}
	p := b.readOwned(n)
	return unsafe.String(&p[0], n), nil
}

func (b *UnsafeLinkBuffer) readOwned(n int) []byte {
	b.consumed(n)
	if n >= 64 && noCopyRead.Load() {
		if r := b.first(); r.end-r.off >= n {
			p := r.buf[r.off : r.off+n : r.off+n]
			r.off += n
			r.pin()
			return p
		}
	}
	p := make([]byte, n)
	b.copyOut(p)
	return p
}

// ReadByte consumes one byte. An empty buffer gives an error.
func (b *UnsafeLinkBuffer) ReadByte() (p byte, err error) {
	if b.closed {
		return 0, errBufferClosed
	}
	if b.Len() < 1 {
		return 0, errors.New("link buffer read byte is empty")
	}
	b.consumed(1)
	r := b.first()
	p = r.buf[r.off]
	r.off++
	return p, nil
}

// Until consumes and returns the bytes up to and including the first delim,
// in memory the caller owns. Without delim it fails and consumes nothing.
func (b *UnsafeLinkBuffer) Until(delim byte) (line []byte, err error) {
	line, _, err = b.until(delim, 0)
	return line, err
}

// until is Until that looks for delim only past the first skip bytes, which
// the caller already searched. On a miss it returns how many bytes are
// searched now, the skip of the next call if nothing is consumed meanwhile:
// a reader waiting for a long line that arrives in pieces searches each
// byte once.
func (b *UnsafeLinkBuffer) until(delim byte, skip int) (line []byte, searched int, err error) {
	if b.closed {
		return nil, 0, errBufferClosed
	}
	seen, total := 0, b.Len()
	for r := b.read; r != nil && seen < total; r = r.next {
		seg := r.buf[r.off:r.end]
		if from := max(skip-seen, 0); from < len(seg) {
			if i := bytes.IndexByte(seg[from:], delim); i >= 0 {
				line, err = b.ReadBinary(seen + from + i + 1)
				return line, 0, err
			}
		}
		seen += len(seg)
	}
	return nil, seen, errNoDelim
}

// errNoDelim is Until's miss; a connection's Until waits and tries again.
var errNoDelim = errors.New("link buffer read slice cannot find delim")

// Slice consumes n bytes into a new read-only LinkBuffer that shares their
// memory, then Releases this buffer. The result outlives this buffer's
// Release and Close; Release or Close it when done. n <= 0 gives an empty
// buffer and releases nothing. Fewer than n readable bytes give the error
// "link buffer readv[n] not enough" and consume nothing.
func (b *UnsafeLinkBuffer) Slice(n int) (r Reader, err error) {
	if err = b.check(n, "readv"); err != nil {
		return nil, err
	}
	s := NewLinkBuffer()
	if n <= 0 {
		return s, nil
	}
	b.consumed(n)
	for src, left := b.read, n; left > 0; src = src.next {
		m := min(left, src.end-src.off)
		if m == 0 {
			continue
		}
		v := newView(src, src.buf[src.off:src.off+m:src.off+m], true)
		v.end, v.malloc = m, m
		s.link(v)
		src.off += m
		left -= m
	}
	s.length.Store(int64(n))
	return s, b.Release()
}

// Release frees the memory of everything consumed: slices from Next and Peek
// die here. Unconsumed and pending bytes stay.
func (b *UnsafeLinkBuffer) Release() (err error) {
	if b.closed {
		return errBufferClosed
	}
	freeAll(&b.copies)
	freeAll(&b.peeks)
	for b.head != b.read {
		h := b.head
		b.head = h.next
		h.free()
	}
	for r := b.read; r != nil && r.off == r.malloc; r = b.read {
		if r == b.tail {
			if b.booked {
				break
			}
			if b.reusable(r) {
				r.off, r.end, r.malloc = 0, 0, 0
				break
			}
			b.head, b.read, b.pend, b.tail = nil, nil, nil, nil
		} else {
			if b.pend == r {
				b.pend = r.next
			}
			b.head, b.read = r.next, r.next
		}
		r.free()
	}
	if b.lean && b.read != nil && !b.booked && b.pending == 0 {
		b.compact()
	}
	return nil
}

// compactAbove is the memory a lean buffer may hold for a few unread bytes:
// more than that, and Release moves them to a node of their size.
const compactAbove = 64 << 10

// compact copies the unread bytes into a node of their size and frees the
// nodes that held them, if they are few (at most appendReadGrowth) and those
// nodes hold over compactAbove bytes of memory: the bytes that follow a large
// message in the same read must not keep the large read's memory. Something
// else referencing the old memory (a Slice) keeps it alive until done. Only
// for a Released buffer (head == read) with nothing pending or booked.
func (b *UnsafeLinkBuffer) compact() {
	l := b.Len()
	if l == 0 || l > appendReadGrowth {
		return
	}
	held := 0
	for x := b.read; x != nil; x = x.next {
		held += len(x.raw)
	}
	if held <= compactAbove {
		return
	}
	nd := newNode(l)
	for x, done := b.read, 0; done < l; x = x.next {
		done += copy(nd.buf[done:l], x.buf[x.off:x.end])
	}
	nd.end, nd.malloc = l, l
	for x := b.head; x != nil; {
		next := x.next
		x.free()
		x = next
	}
	b.head, b.read, b.pend, b.tail = nd, nd, nd, nd
}

// reusable tells whether the emptied last node r may be written again from
// its start: nothing else views its memory, and it is small.
func (b *UnsafeLinkBuffer) reusable(r *node) bool {
	return !b.lean && r.raw != nil && r.origin == nil && !r.readonly && !r.keep &&
		len(r.buf) == len(r.raw) && len(r.raw) <= max(LinkBufferCap, int(b.minSize)) && r.refs.Load() == 1
}

// Bytes returns every readable byte without consuming it: an alias when they
// lie in one node (valid until Release), otherwise a copy. A closed buffer
// gives nil.
func (b *UnsafeLinkBuffer) Bytes() []byte {
	if b.closed || b.Len() == 0 {
		return nil
	}
	segs := b.GetBytes(nil)
	if len(segs) == 1 {
		return segs[0]
	}
	p := make([]byte, 0, b.Len())
	for _, s := range segs {
		p = append(p, s...)
	}
	return p
}

// GetBytes fills p with aliases of the readable segments, in order, without
// consuming them, and returns the filled part; an empty or nil p gets all
// segments. An empty or closed buffer gives p[:0].
func (b *UnsafeLinkBuffer) GetBytes(p [][]byte) (vs [][]byte) {
	if b.closed || b.Len() == 0 {
		return p[:0]
	}
	all := len(p) == 0
	vs = p[:0]
	for r, left := b.read, b.Len(); r != nil && left > 0; r = r.next {
		if r.end > r.off {
			if !all && len(vs) == len(p) {
				break
			}
			vs = append(vs, r.buf[r.off:r.end:r.end])
			left -= r.end - r.off
		}
	}
	return vs
}

// Close frees every node and makes the buffer unusable; slices handed out
// by reference die with it, except those of a Slice result. A second Close
// returns nil.
func (b *UnsafeLinkBuffer) Close() (err error) {
	if b.closed {
		return nil
	}
	b.closed = true
	freeAll(&b.copies)
	freeAll(&b.peeks)
	for n := b.head; n != nil; {
		next := n.next
		if n != b.tail || !b.booked {
			n.free()
		}
		n = next
	}
	b.head, b.read, b.pend = nil, nil, nil
	if !b.booked {
		b.tail = nil
	}
	b.length.Store(0)
	b.pending = 0
	return nil
}

// pooled appends a pooled slice of n bytes to list and returns it.
func pooled(list *[][]byte, n int) []byte {
	p := mcache.Malloc(n)
	*list = append(*list, p)
	return p[:n:n]
}

func freeAll(list *[][]byte) {
	for i, p := range *list {
		mcache.Free(p)
		(*list)[i] = nil
	}
	*list = (*list)[:0]
}
