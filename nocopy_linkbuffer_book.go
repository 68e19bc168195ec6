package netpoll

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
