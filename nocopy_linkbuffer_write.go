package netpoll

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/bytedance/gopkg/lang/mcache"
)

// The Writer of a LinkBuffer. Written bytes are pending until Flush makes
// them readable; MallocAck trims them.

// checkWrite validates a write of n bytes named op.
func (b *UnsafeLinkBuffer) checkWrite(n int, op string) error {
	switch {
	case b.closed:
		return errBufferClosed
	case n < 0 || n > maxNodeSize:
		return fmt.Errorf("link buffer %s[%d] invalid size", op, n)
	}
	return nil
}

// link appends nd to the list. With nothing pending, nd becomes pend: pend
// is the first node that may hold pending bytes, and reads never seek past
// it, so a node linked behind an earlier pend (an emptied tail kept for
// reuse, say) would hide its bytes.
func (b *UnsafeLinkBuffer) link(nd *node) {
	if b.tail == nil {
		b.head, b.read = nd, nd
	} else {
		b.tail.next = nd
	}
	b.tail = nd
	if b.pending == 0 {
		b.pend = nd
	}
}

// grow links a new writable node with room for at least n bytes.
func (b *UnsafeLinkBuffer) grow(n int) *node {
	size := max(n, LinkBufferCap)
	if b.head == nil {
		size = max(size, int(b.minSize))
	}
	nd := newNode(size)
	b.link(nd)
	return nd
}

// Malloc reserves n pending bytes and returns them (cap == len) for the
// caller to fill before Flush. n <= 0 gives (nil, nil); n over 1 GiB gives an
// error.
func (b *UnsafeLinkBuffer) Malloc(n int) (buf []byte, err error) {
	switch {
	case n <= 0:
		return nil, nil
	case b.closed:
		return nil, errBufferClosed
	case n > maxNodeSize:
		return nil, b.checkWrite(n, "malloc")
	}
	t := b.tail
	if t == nil || t.readonly || len(t.buf)-t.malloc < n {
		t = b.grow(n)
	}
	buf = t.buf[t.malloc : t.malloc+n : t.malloc+n]
	t.malloc += n
	b.pending += n
	return buf, nil
}

// MallocLen returns the number of pending bytes.
func (b *UnsafeLinkBuffer) MallocLen() (length int) { return b.pending }

// MallocAck keeps the first n pending bytes and drops the rest; readable
// bytes stay, even those Append put behind pending ones. n < 0 ("link
// buffer malloc ack[n] invalid") or over MallocLen gives an error and
// changes nothing.
func (b *UnsafeLinkBuffer) MallocAck(n int) (err error) {
	switch {
	case b.closed:
		return errBufferClosed
	case n < 0:
		return fmt.Errorf("link buffer malloc ack[%d] invalid", n)
	case n > b.pending:
		return fmt.Errorf("link buffer malloc ack[%d] over %d pending bytes", n, b.pending)
	}
	if b.pend == nil {
		return nil
	}
	last := b.pend
	for keep := n; ; last = last.next {
		if p := last.malloc - last.end; keep <= p {
			last.malloc = last.end + keep
			break
		} else {
			keep -= p
		}
	}
	// The nodes behind the cut lose their pending bytes. A node that held
	// readable bytes stays (unread ones must, read ones may be aliased by a
	// Next until Release); the others go.
	kept := last
	for x := last.next; x != nil; {
		next := x.next
		if x.end > 0 {
			x.malloc = x.end
			kept.next, kept = x, x
		} else {
			x.free()
		}
		x = next
	}
	kept.next = nil
	b.tail = kept
	b.pending = n
	if n == 0 {
		b.pend = kept
	}
	return nil
}

// Flush makes every pending byte readable.
func (b *UnsafeLinkBuffer) Flush() (err error) {
	if b.closed {
		return errBufferClosed
	}
	if b.pending == 0 {
		return nil
	}
	for nd := b.pend; nd != nil; nd = nd.next {
		nd.end = nd.malloc
	}
	b.length.Add(int64(b.pending))
	b.pending = 0
	b.pend = b.tail
	return nil
}

// WriteBinary appends p as pending bytes. Above BinaryInplaceThreshold bytes
// it keeps a reference to p: do not change p until the bytes are consumed.
// An empty p gives (0, nil); one over 1 GiB an error.
func (b *UnsafeLinkBuffer) WriteBinary(p []byte) (n int, err error) {
	if t := b.tail; t != nil && !t.readonly && len(p) <= len(t.buf)-t.malloc && len(p) <= BinaryInplaceThreshold && !b.closed {
		t.malloc += copy(t.buf[t.malloc:], p)
		b.pending += len(p)
		return len(p), nil
	}
	if err = b.checkWrite(len(p), "write binary"); err != nil || len(p) == 0 {
		return 0, err
	}
	if len(p) > BinaryInplaceThreshold {
		b.link(newRefNode(p))
		b.pending += len(p)
		return len(p), nil
	}
	buf, _ := b.Malloc(len(p))
	return copy(buf, p), nil
}

// WriteString is WriteBinary for a string (referenced, never written to).
func (b *UnsafeLinkBuffer) WriteString(s string) (n int, err error) {
	if len(s) == 0 {
		return 0, b.checkWrite(0, "write string")
	}
	return b.WriteBinary(unsafe.Slice(unsafe.StringData(s), len(s)))
}

// WriteByte appends one pending byte.
func (b *UnsafeLinkBuffer) WriteByte(p byte) (err error) {
	buf, err := b.Malloc(1)
	if err == nil {
		buf[0] = p
	}
	return err
}

// WriteDirect splices extra, by reference, in front of the last remainLen
// pending bytes: after Malloc(32), WriteDirect(x, 30) gives buf[0:2], x,
// buf[2:32]. Empty extra or a negative remainLen does nothing; remainLen
// over MallocLen gives an error. Do not change extra until the bytes are
// consumed.
func (b *UnsafeLinkBuffer) WriteDirect(extra []byte, remainLen int) error {
	if b.closed {
		return errBufferClosed
	}
	if len(extra) == 0 || remainLen < 0 {
		return nil
	}
	if remainLen > b.pending {
		return fmt.Errorf("link buffer write direct: remainLen %d over %d pending bytes", remainLen, b.pending)
	}
	// Find the node holding the cut: remainLen pending bytes follow it. The
	// cut lies right after the pending byte it follows, or right before the
	// first pending byte when remainLen is all of them (readable bytes that
	// Append put behind pending ones stay where they are); with nothing
	// pending it is the end of the last node.
	at := b.tail
	after := b.pending
	for nd := b.pend; nd != nil && after > 0; nd = nd.next {
		p := nd.malloc - nd.end
		if p == 0 {
			continue
		}
		if after -= p; after <= remainLen {
			at = nd
			break
		}
	}
	if at == nil { // an empty buffer
		b.link(newRefNode(extra))
		b.pending += len(extra)
		return nil
	}
	cut := at.malloc - (remainLen - after)
	next := at.next
	ref := newRefNode(extra)
	rest := at.buf[cut:at.malloc:at.malloc]
	if at == b.tail {
		rest = at.buf[cut:]
	}
	at.buf = at.buf[:cut:cut]
	at.malloc = cut
	at.next = ref
	tail := ref
	if len(rest) > 0 {
		v := newView(at, rest, at.readonly)
		v.malloc = remainLen - after
		ref.next = v
		tail = v
	}
	tail.next = next
	if at == b.tail {
		b.tail = tail
	}
	b.pending += len(extra)
	return nil
}

var (
	errNotLinkBuffer = errors.New("unsupported writer which is not LinkBuffer")
	// errAppendClosed is not errBufferClosed: the receiving buffer (or
	// connection) is still open.
	errAppendClosed = errors.New("link buffer write buffer: the appended buffer is closed")
)

// Append moves every byte of w behind this buffer's bytes without copying,
// and w becomes unusable: w's readable bytes are readable here at once (Len
// grows by them) and its pending bytes are pending here (MallocLen grows by
// them only). In place they follow this buffer's pending bytes, so after
// Flush the order is this buffer's bytes, readable then pending, then w's;
// before it, reads skip the pending bytes in between. w must be a
// *LinkBuffer; a nil one does nothing. Any other Writer (a nil one
// included), a closed w, or b itself gives an error.
func (b *UnsafeLinkBuffer) Append(w Writer) (err error) {
	lb, ok := w.(*LinkBuffer)
	switch {
	case b.closed:
		return errBufferClosed
	case !ok:
		return errNotLinkBuffer
	}
	return b.WriteBuffer(lb)
}

// WriteBuffer is Append for a *LinkBuffer.
func (b *UnsafeLinkBuffer) WriteBuffer(buf *LinkBuffer) (err error) {
	switch {
	case b.closed:
		return errBufferClosed
	case buf == nil:
		return nil
	case buf == b:
		return errors.New("link buffer write buffer: cannot append a buffer to itself")
	case buf.closed:
		return errAppendClosed
	case buf.booked:
		return errors.New("link buffer write buffer: the buffer is being filled")
	}
	readable, pending := buf.Len(), buf.pending
	_ = buf.Release()
	if first := buf.read; first != nil {
		if b.tail == nil {
			b.head, b.read = first, first
		} else {
			b.tail.next = first
		}
		b.tail = buf.tail
		switch {
		case b.pending > 0: // pend stays: the first pending bytes are b's
		case pending > 0:
			b.pend = buf.pend
		default:
			b.pend = b.tail
		}
		b.pending += pending
		b.length.Add(int64(readable))
	}
	buf.head = nil // the nodes are b's now: Close frees none of them
	return buf.Close()
}

// The poller's side of an input buffer: it books free space, reads into it
// without holding the owner's lock, then acknowledges what it read. The
// owner must not write to the buffer (its pending count stays 0), so the
// tail that receives the bytes is pend (see link).

// book returns free space of at least size/2 bytes (all the free space of
// the last node if it has that much, else a new node of size bytes). It
// returns nil if the buffer is closed or already booked.
func (b *UnsafeLinkBuffer) book(size int) []byte {
	if b.closed || b.booked {
		return nil
	}
	t := b.tail
	b.fresh = t == nil || t.readonly || len(t.buf)-t.malloc < max(size/2, 1)
	if b.fresh {
		t = b.grow(size)
	}
	b.booked = true
	return t.buf[t.malloc:len(t.buf):len(t.buf)]
}

// appendRead makes a copy of p, read by the poller elsewhere, readable: in
// the tail's free room when it fits, otherwise in a new node. The first
// node is len(p) bytes (rounded up by the pool), so a request waiting for
// its handler holds little; behind unread bytes each new node doubles the
// tail's size up to appendReadGrowth, so input trickling in small reads
// does not become a node per read. It fails only on a closed buffer.
func (b *UnsafeLinkBuffer) appendRead(p []byte) error {
	if b.closed {
		return errBufferClosed
	}
	t := b.tail
	if t == nil || t.readonly || len(t.buf)-t.malloc < len(p) {
		size := len(p)
		if t != nil && b.Len() > 0 {
			size = max(size, min(2*len(t.buf), appendReadGrowth))
		}
		t = newNode(size)
		b.link(t)
	}
	n := copy(t.buf[t.malloc:], p)
	t.malloc += n
	t.end += n
	b.length.Add(int64(n))
	return nil
}

// dropTail unlinks the last node, which holds nothing, without freeing it.
func (b *UnsafeLinkBuffer) dropTail() {
	t := b.tail
	var prev *node
	for x := b.head; x != t; x = x.next {
		prev = x
	}
	if prev == nil {
		b.head, b.read, b.pend, b.tail = nil, nil, nil, nil
		return
	}
	prev.next = nil
	b.tail = prev
	if b.read == t {
		b.read = prev
	}
	if b.pend == t {
		b.pend = prev
	}
}

// appendReadGrowth bounds the doubling of appendRead's nodes: the largest
// read that goes through appendRead (the poller's scratch buffer).
const appendReadGrowth = 16 << 10

// bookAck makes the first n booked bytes readable and ends the booking. On a
// buffer closed meanwhile it frees the booked node instead. A large node
// (over compactAbove) added for the booking that got few bytes (at most
// appendReadGrowth) goes back to the pool: its bytes are copied as
// appendRead copies them, so that they do not pin it.
func (b *UnsafeLinkBuffer) bookAck(n int) error {
	if !b.booked {
		return nil
	}
	fresh := b.fresh
	b.booked, b.fresh = false, false
	t := b.tail
	if b.closed {
		b.tail = nil
		t.free()
		return errBufferClosed
	}
	n = max(0, min(n, len(t.buf)-t.malloc))
	if fresh && n <= appendReadGrowth && len(t.buf) > compactAbove {
		b.dropTail()
		var err error
		if n > 0 {
			err = b.appendRead(t.buf[:n])
		}
		t.free()
		return err
	}
	t.malloc += n
	t.end += n
	b.length.Add(int64(n))
	return nil
}

// retained returns the bytes of memory the buffer holds: its nodes' pooled
// memory and the copies made by reads.
func (b *UnsafeLinkBuffer) retained() int {
	total := 0
	for nd := b.head; nd != nil; nd = nd.next {
		total += cap(nd.raw)
	}
	for _, p := range b.copies {
		total += cap(p)
	}
	for _, p := range b.peeks {
		total += cap(p)
	}
	return total
}

// A node is one segment of a LinkBuffer. Its window buf is split by three
// offsets, 0 <= off <= end <= malloc <= len(buf):
//
//	buf[:off]        consumed
//	buf[off:end]     readable (flushed, not yet consumed)
//	buf[end:malloc]  pending (written, not yet flushed)
//	buf[malloc:]     free, only if the node is writable
//
// Memory is shared by reference counting. A node whose memory came from the
// pool owns it (raw) and counts its holders in refs: itself plus every node
// that views part of it (origin points at the owner). The memory returns to
// the pool when the count drops to zero. A node that views caller memory
// (WriteBinary, WriteDirect) or another node's memory (Slice) is read-only.
type node struct {
	buf    []byte
	off    int
	end    int
	malloc int
	next   *node

	raw      []byte       // pooled memory owned by this node, nil if none
	origin   *node        // owner of the viewed memory, nil if none
	refs     atomic.Int32 // holders of raw: 1 + the views of it
	readonly bool         // never write into buf
	keep     bool         // raw escaped to the user: never return it to the pool
}

// maxNodeSize bounds a single allocation: larger requests are refused with an
// error rather than attempted.
const maxNodeSize = 1 << 30

var nodePool = sync.Pool{New: func() any { return new(node) }}

// newNode returns a writable node with at least size bytes of pooled memory.
func newNode(size int) *node {
	n := nodePool.Get().(*node)
	raw := mcache.Malloc(size)
	n.raw = raw[:cap(raw)]
	n.buf = n.raw
	n.refs.Store(1)
	return n
}

// newRefNode returns a read-only node holding the caller's p, all pending.
func newRefNode(p []byte) *node {
	n := nodePool.Get().(*node)
	n.buf = p[:len(p):len(p)]
	n.malloc = len(p)
	n.readonly = true
	n.refs.Store(1)
	return n
}

// newView returns a node viewing buf, which lies inside the memory of from.
// The view holds a reference on that memory until it is freed.
func newView(from *node, buf []byte, readonly bool) *node {
	owner := from
	if from.origin != nil {
		owner = from.origin
	}
	n := nodePool.Get().(*node)
	n.buf = buf
	n.readonly = readonly
	n.refs.Store(1)
	if owner.raw != nil {
		owner.refs.Add(1)
		n.origin = owner
	}
	return n
}

// free drops the node's hold on its memory and, when nothing else views it,
// returns memory and node to their pools.
func (n *node) free() {
	n.next = nil
	if o := n.origin; o != nil {
		n.origin = nil
		o.unref()
	}
	n.unref()
}

func (n *node) unref() {
	if n.refs.Add(-1) > 0 {
		return
	}
	if n.raw != nil && !n.keep {
		mcache.Free(n.raw)
	}
	*n = node{}
	nodePool.Put(n)
}

// pin keeps the node's memory out of the pool for good: the user holds it.
func (n *node) pin() {
	if n.origin != nil {
		n.origin.keep = true
	} else {
		n.keep = true
	}
}
