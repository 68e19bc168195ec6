package netpoll

import (
	"errors"
	"fmt"
	"unsafe"
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
