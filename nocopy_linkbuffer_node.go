package netpoll

import (
	"sync"
	"sync/atomic"

	"github.com/bytedance/gopkg/lang/mcache"
)

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
