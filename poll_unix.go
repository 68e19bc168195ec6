//go:build darwin || freebsd || linux

package netpoll

import (
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// The pollers: the part every kernel shares. This file implements Poll once
// for defaultPoll; a backend (poll_default_linux.go: epoll;
// poll_default_bsd.go: kqueue) declares the type, embedding pollState, and
// holds only its syscalls and the decoding of its events, as these
// functions:
//
// func (p *defaultPoll) open() error
//
//	Create the kernel's poll set, register a wake-up source in it, and make
//	the event array of eventBatch entries. On error nothing stays open.
//
// func (p *defaultPoll) wait() (closing bool, err error)
//
//	Block until events are ready, fetch at most eventBatch of them into
//	the array and deliver them (handle), maybe more than one batch; report
//	whether a wake-up found the poller closing. Only the poller goroutine
//	calls it. An error, wrapped with the syscall's name, ends the poller.
//
// func (p *defaultPoll) event(i int) (fd int, tag uint32, flags pollFlags)
//
//	Decode the i-th fetched event: the fd and tag it was registered with,
//	and what it reports. A hang-up or socket error is pollHup|pollIn, so
//	that the handler reads what is left before it acts on the hang-up. The
//	wake-up is pollWake, and is re-armed here if the kernel needs it.
//
// func (p *defaultPoll) add(fd int, tag uint32, event PollEvent) error
//
//	Register fd, level-triggered, with tag (its operator's generation,
//	which every event of the registration carries back: see below)
//	for event: PollReadable, PollWritable, or pollConnect (a single
//	writability report). The hang-up is reported with either.
//
// func (p *defaultPoll) modify(op *FDOperator, in, out bool) error
//
//	Change the interest of registered op to input (in) and output (out);
//	the hang-up stays reported. op was not detached when it was called; if
//	a detach races it, no registration may outlive that detach.
//
// func (p *defaultPoll) remove(fd int) error
//
//	Delete fd's registration. One already gone is not an error.
//
// func (p *defaultPoll) watches(op *FDOperator) bool
//
//	Probe liveness: report whether the set still holds op's registration,
//	that is, whether op.FD was not closed since op registered it (opPut
//	asks it). It must not change a live registration's interest.
//
// func (p *defaultPoll) wake() error
//
//	Make the wait in progress, or the next one, return the wake-up event.
//	Wakes that pile up may come as one.
//
// func (p *defaultPoll) turnFunc() func(taskStart, now int64) bool
//
//	The poller's turn, or nil for a backend that needs none (its poller
//	holds no P while it waits); a nil turn spares the task workers their
//	clock readings. A turn is called by a task worker after each task,
//	with when the task started and the time now: if the poller may be
//	parked behind busy workers, with nothing to wake it, it makes the
//	poller runnable and reports true, for the worker to yield (see
//	taskQueue).
//
// func (p *defaultPoll) release()
//
//	Close what open created. Wait calls it once it stops; a poller that
//	never ran is released by its opener.
//
// const canPauseInput
//
//	Whether modify can drop input interest and still report a hang-up (a
//	connection pauses its input only then).
//
// add, modify, remove, watches and wake may run on any goroutine,
// concurrently with wait and with each other: the kernel calls are
// thread-safe, and an event that a change overtakes is told stale by its
// tag (the operator table, below). The others run on the poller goroutine, or before
// it starts.

// eventBatch is how many events one wait fetches. Level-triggered events
// that do not fit stay ready and come with the next wait, so the bound
// costs nothing but a syscall per 128 events, and keeps a poller's array
// small (1.5 KiB of epoll events on amd64).
const eventBatch = 128

// pollState is what every poller has, whatever its kernel.
type pollState struct {
	scratch []byte    // small reads land here first (connection.fill)
	tasks   taskQueue // handler tasks, with the default Runner
	closing atomic.Bool
	done    chan struct{} // closed when Wait returns
	stats   pollStats     // ReadStats's counters (poll_stats_unix.go)
}

// errOpDetached is the failure of a change of interest of a detached operator.
var errOpDetached = Exception(ErrConnClosed, "operator detached")

// openDefaultPoll opens a poller; its goroutine is not started.
func openDefaultPoll() (*defaultPoll, error) {
	p := &defaultPoll{}
	p.scratch = make([]byte, scratchSize)
	p.tasks.turn = p.turnFunc()
	p.done = make(chan struct{})
	if err := p.open(); err != nil {
		return nil, err
	}
	return p, nil
}

// Wait runs the loop until Close: it waits for a batch of events and
// delivers it, until a wake-up finds the poller closing.
func (p *defaultPoll) Wait() error {
	defer close(p.done)
	for {
		closing, err := p.wait()
		if err != nil {
			return err
		}
		if closing {
			p.tasks.stop()
			p.release()
			return nil
		}
	}
}

// handle delivers the n events fetched; it reports whether the poller was
// asked to close, and whether every event was settled (see pollHandler). An
// event is delivered only to the operator that still holds its fd with the
// event's tag: one for a fd closed, and maybe reused, since it was queued
// finds none and is dropped (and is not counted settled, out of caution).
func (p *defaultPoll) handle(n int) (closing, settled bool) {
	settled = true
	for i := 0; i < n; i++ {
		fd, tag, flags := p.event(i)
		if flags == pollWake {
			closing = p.closing.Load()
			continue
		}
		if op := opGet(fd, tag); op != nil {
			settled = op.dispatch(p, flags) && settled
		} else {
			settled = false
		}
	}
	return closing, settled
}

// dispatch delivers flags to the operator: its handler, or else the
// exported callbacks, which are never counted settled.
func (op *FDOperator) dispatch(p Poll, flags pollFlags) (settled bool) {
	if op.handler != nil {
		return op.handler.onEvent(p, flags)
	}
	if flags&pollIn != 0 && op.OnRead != nil {
		_ = op.OnRead(p)
	}
	if flags&pollOut != 0 && op.OnWrite != nil {
		_ = op.OnWrite(p)
	}
	if flags&pollHup != 0 && op.OnHup != nil {
		_ = op.OnHup(p)
	}
	return false
}

// Close asks the loop to stop and waits until it has.
func (p *defaultPoll) Close() error {
	if !p.closing.CompareAndSwap(false, true) {
		return nil
	}
	if err := p.Trigger(); err != nil {
		return err
	}
	<-p.done
	return nil
}

// Trigger wakes the loop once.
func (p *defaultPoll) Trigger() error { return p.wake() }

// Control applies one change of interest for op.
func (p *defaultPoll) Control(op *FDOperator, event PollEvent) error {
	switch event {
	case PollReadable, PollWritable, pollConnect:
		return p.register(op, event)
	case PollR2RW, PollRW2R:
		return p.setInterest(op, true, event == PollR2RW)
	case PollDetach:
		return p.detach(op)
	}
	return Exception(ErrUnsupported, "unknown PollEvent")
}

// register records op as its fd's owner under a new generation (opPut),
// then registers the fd with the kernel under that tag. When the kernel
// refuses, the fd goes back to the operator that held it: a refused second
// registration of a live fd must not cut off the first. An operator without
// a poller gets p.
func (p *defaultPoll) register(op *FDOperator, event PollEvent) error {
	if op.poll == nil {
		op.poll = p
	}
	atomic.StoreInt32(&op.detached, 0)
	prev, err := opPut(op)
	if err != nil {
		return err
	}
	if err = p.add(op.FD, atomic.LoadUint32(&op.gen), event); err != nil {
		opUndo(op, prev)
	}
	return err
}

// setInterest re-registers a registered operator for input (in; the
// hang-up is always watched) and output (out). It fails once op is
// detached.
func (p *defaultPoll) setInterest(op *FDOperator, in, out bool) error {
	if atomic.LoadInt32(&op.detached) != 0 {
		return errOpDetached
	}
	return p.modify(op, in, out)
}

// detach removes the operator; only the first call does anything. The
// kernel is asked only while the fd still belongs to op: otherwise it was
// closed, and its number maybe reused, and the kernel has already dropped
// op's registration (a delete would remove the new owner's).
func (p *defaultPoll) detach(op *FDOperator) error {
	if !atomic.CompareAndSwapInt32(&op.detached, 0, 1) {
		return nil
	}
	if !opDrop(op) {
		return nil
	}
	return p.remove(op.FD)
}

// Alloc returns a new operator bound to this poller.
func (p *defaultPoll) Alloc() *FDOperator { return &FDOperator{poll: p} }

// Free does nothing: a detached operator is garbage collected once unreferenced.
func (p *defaultPoll) Free(op *FDOperator) {}

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

// monoStart is the origin of monoNow.
var monoStart = time.Now()

// monoNow reads the monotonic clock, in nanoseconds.
func monoNow() int64 { return int64(time.Since(monoStart)) }
