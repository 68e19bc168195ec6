//go:build darwin || freebsd || linux

package netpoll

import (
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// The operator table maps a file descriptor to the operator registered for
// it. The kernel reports events by fd and by a tag set at registration (the
// operator's generation number, in epoll's data or kqueue's udata), and a
// poller delivers an event only when the table still holds an operator with
// that tag. An event fetched for a fd that has since been closed, and maybe
// reused by a new connection, therefore never reaches the new owner: its tag
// is the old one.
//
// Two levels of chunks cover fds up to opTableMax; a chunk is allocated the
// first time one of its fds is registered and never freed. On 64-bit
// platforms a chunk (1024 slots) is 8 KiB, so a process with few fds open
// holds little, and the top level (4096 chunk pointers) 32 KiB. It covers
// 4 Mi fds, four times the highest RLIMIT_NOFILE Linux allows by default
// (fs.nr_open, 1 Mi); a larger fd is refused (opPut).
const (
	opChunkBits = 10
	opChunkSize = 1 << opChunkBits
	opChunks    = 4096
	opTableMax  = opChunks * opChunkSize
)

type opChunk [opChunkSize]atomic.Pointer[FDOperator]

var (
	opTable [opChunks]atomic.Pointer[opChunk]
	opGen   atomic.Uint32
)

// opSlot returns the table slot of fd, allocating its chunk if asked.
func opSlot(fd int, alloc bool) *atomic.Pointer[FDOperator] {
	if fd < 0 || fd >= opTableMax {
		return nil
	}
	chunkp := &opTable[fd>>opChunkBits]
	chunk := chunkp.Load()
	if chunk == nil {
		if !alloc {
			return nil
		}
		chunkp.CompareAndSwap(nil, new(opChunk))
		chunk = chunkp.Load()
	}
	return &chunk[fd&(opChunkSize-1)]
}

// opPut records op as the owner of its fd with a new generation. While
// another operator holds the fd and is not detached, its poller is asked
// whether that registration is still live (watches):
//   - live: the same open socket is registered twice, maybe with another
//     poller, whose kernel could not refuse it as the same poller's does.
//     opPut fails with EEXIST and changes nothing.
//   - gone: the fd was closed behind the operator's back (syscall.Close on
//     a Connection's Fd, a listener closed by other means than its Close)
//     and the number now names another socket. The kernel dropped the old
//     registration with the close; the old operator is orphaned (marked
//     detached, its owner told so that it never touches the number again)
//     and op takes the slot.
//
// A connection or listener closed through this package is detached before
// its fd is closed, so the common case never asks the kernel.
func opPut(op *FDOperator) (prev *FDOperator, err error) {
	slot := opSlot(op.FD, true)
	if slot == nil {
		return nil, Exception(ErrUnsupported, "fd out of range")
	}
	for {
		prev = slot.Load()
		if prev != nil && prev != op && atomic.LoadInt32(&prev.detached) == 0 {
			if opLive(prev) {
				return nil, wrapSyscall("register", unix.EEXIST)
			}
			opOrphan(prev)
		}
		atomic.StoreUint32(&op.gen, nextGen())
		if slot.CompareAndSwap(prev, op) {
			return prev, nil
		}
	}
}

// nextGen hands out registration generations; 0 is never one (a probe's tag).
func nextGen() uint32 {
	for {
		if g := opGen.Add(1); g != 0 {
			return g
		}
	}
}

// opLive reports whether op's registration is still in its poller's kernel
// set. An operator in the table has a poller: register gave it one.
func opLive(op *FDOperator) bool { return op.poll.watches(op) }

// orphanHandler is a handler that can be told its fd was closed by someone
// else and the number reused: from then on it must make no syscall on the
// number and never close it. orphaned runs on the registering goroutine
// (maybe a poller) and must not block.
type orphanHandler interface {
	orphaned()
}

// opOrphan marks op detached and tells its handler, once.
func opOrphan(op *FDOperator) {
	if !atomic.CompareAndSwapInt32(&op.detached, 0, 1) {
		return
	}
	if h, ok := op.handler.(orphanHandler); ok {
		h.orphaned()
	}
}

// opUndo reverts a failed registration of op: the fd goes back to prev,
// the operator that held it before (a refused second registration of a
// live fd must not cut off the first).
func opUndo(op, prev *FDOperator) {
	if slot := opSlot(op.FD, false); slot != nil {
		slot.CompareAndSwap(op, prev)
	}
}

// opGet returns the operator registered for fd if it still carries gen: the
// lookup of a kernel event, which is stale when it finds nothing.
func opGet(fd int, gen uint32) *FDOperator {
	slot := opSlot(fd, false)
	if slot == nil {
		return nil
	}
	op := slot.Load()
	if op == nil || atomic.LoadUint32(&op.gen) != gen {
		return nil
	}
	return op
}

// opCurrent returns the operator registered for fd, whatever its generation.
func opCurrent(fd int) *FDOperator {
	if slot := opSlot(fd, false); slot != nil {
		return slot.Load()
	}
	return nil
}

// opDrop forgets op and reports whether fd still belonged to it. When it
// did not, the fd was closed and its number reused by another operator, so
// the kernel has already forgotten op's registration and a delete would
// remove the new owner's.
func opDrop(op *FDOperator) bool {
	slot := opSlot(op.FD, false)
	return slot != nil && slot.CompareAndSwap(op, nil)
}
