//go:build darwin || freebsd

package netpoll

import (
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// defaultPoll is a kqueue instance with an EVFILT_USER event for wake-ups.
// Read and write interest are separate filters. Every filter carries the
// registration generation of its operator as its udata, and an event is
// delivered only to the operator that still holds that generation (see
// poll_table.go), as on Linux.
type defaultPoll struct {
	kq      int
	events  []kevent
	scratch []byte    // small reads land here first (connection.fill)
	tasks   taskQueue // handler tasks, with the default Runner
	closing atomic.Bool
	done    chan struct{}
}

const wakeIdent = 0 // the EVFILT_USER ident; user events do not share the fd namespace

// maxNumLoops bounds the number of pollers. A kqueue poller blocks an OS
// thread in kevent while it waits (the runtime's netpoller cannot watch a
// kqueue fd: it registers read and write filters together, and a kqueue
// accepts only a read filter), so the bound keeps SetNumLoops far from Go's
// 10,000-thread limit, at which the process dies.
const maxNumLoops = 256

// maxNumLoopsReason completes the error of a count over maxNumLoops.
const maxNumLoopsReason = ": at most 256 on macOS and FreeBSD, where each poller blocks an OS thread"

// kevent holds one unix.Kevent_t in memory the garbage collector never
// scans. The udata word of every event here is a generation number, not an
// address: the kernel keeps udata and hands it back later, so it must not
// hold a Go pointer, and an integer kept in the pointer-typed Udata field of
// an ordinary Kevent_t could be taken for one (on 32-bit platforms any
// value may point into the heap; under -race checkptr rejects small ones).
// So events live in arrays of uint64 and udata is read and written through
// the accessors below as an integer.
type kevent [unsafe.Sizeof(unix.Kevent_t{}) / 8]uint64

// Kevent_t must fill whole uint64 words and need no stricter alignment than
// uint64 for kevent to hold it; each line fails to compile otherwise.
const (
	_ = -(unsafe.Sizeof(unix.Kevent_t{}) % 8)
	_ = unsafe.Alignof(uint64(0)) - unsafe.Alignof(unix.Kevent_t{})
)

func (k *kevent) raw() *unix.Kevent_t { return (*unix.Kevent_t)(unsafe.Pointer(k)) }

// udata is the udata word, as an integer.
func (k *kevent) udata() *uintptr { return (*uintptr)(unsafe.Pointer(&k.raw().Udata)) }

// set makes k a change of filter for fd with flags and the generation tag.
// unix.SetKevent converts fd to the ident's width, which is 32 bits on
// freebsd/386 and freebsd/arm and 64 elsewhere.
func (k *kevent) set(fd int, filter int16, flags uint16, tag uint32) {
	*k = kevent{}
	unix.SetKevent(k.raw(), fd, int(filter), int(flags))
	*k.udata() = uintptr(tag)
}

// kqueueCall is kevent(2) on kevent slices.
func kqueueCall(kq int, changes, events []kevent, timeout *unix.Timespec) (int, error) {
	return unix.Kevent(kq, kevents(changes), kevents(events), timeout)
}

func kevents(ks []kevent) []unix.Kevent_t {
	if len(ks) == 0 {
		return nil
	}
	return unsafe.Slice(ks[0].raw(), len(ks))
}

// maxReceipts is the most changes kqueueReceipts takes.
const maxReceipts = 2

// kqueueReceipts applies changes (at most maxReceipts), each flagged
// EV_RECEIPT, in one call and stores each one's errno (0: done) in errs.
// The event list is exactly as long as the change list and every change
// returns its receipt there, so the call never takes a pending event away
// from the poller goroutine, and a failing change does not stop the ones
// after it. The error is the call's own (a bad kqueue), not a change's; a
// change without a receipt counts as done. The zero timeout is a guard: the
// call has no reason to wait.
func kqueueReceipts(kq int, changes []kevent, errs []unix.Errno) error {
	var out [maxReceipts]kevent
	for i := range changes {
		changes[i].raw().Flags |= unix.EV_RECEIPT
	}
	n, err := kqueueCall(kq, changes, out[:len(changes)], &unix.Timespec{})
	if err != nil {
		return err
	}
	clear(errs)
	for i := 0; i < n; i++ {
		ev := out[i].raw()
		for j := range changes {
			if c := changes[j].raw(); c.Ident == ev.Ident && c.Filter == ev.Filter {
				errs[j] = unix.Errno(ev.Data)
			}
		}
	}
	return nil
}

func openDefaultPoll() (*defaultPoll, error) {
	kq, err := unix.Kqueue()
	if err != nil {
		return nil, wrapSyscall("kqueue", err)
	}
	unix.CloseOnExec(kq)
	p := &defaultPoll{kq: kq, events: make([]kevent, 128), scratch: make([]byte, scratchSize), done: make(chan struct{})}
	var ev [1]kevent
	ev[0].set(wakeIdent, unix.EVFILT_USER, unix.EV_ADD|unix.EV_CLEAR, 0)
	if _, err = kqueueCall(kq, ev[:], nil, nil); err != nil {
		unix.Close(kq)
		return nil, wrapSyscall("kevent", err)
	}
	return p, nil
}

// Wait runs the loop until Close. After a batch it polls without blocking;
// once nothing is ready it blocks in kevent, holding a thread.
func (p *defaultPoll) Wait() error {
	defer close(p.done)
	zero := &unix.Timespec{}
	timeout := zero
	for {
		n, err := kqueueCall(p.kq, nil, p.events, timeout)
		if err != nil && err != unix.EINTR {
			return wrapSyscall("kevent", err)
		}
		if n <= 0 {
			timeout = nil
			continue
		}
		timeout = zero
		if p.handle(p.events[:n]) {
			p.release()
			return nil
		}
	}
}

// handle delivers one batch; it reports whether the poller was asked to close.
func (p *defaultPoll) handle(events []kevent) (closing bool) {
	for i := range events {
		ev := events[i].raw()
		if ev.Filter == unix.EVFILT_USER {
			closing = p.closing.Load()
			continue
		}
		op := opGet(int(ev.Ident), uint32(*events[i].udata()))
		if op == nil {
			continue // stale: the fd was closed, maybe reused, since the event was queued
		}
		var flags pollFlags
		switch ev.Filter {
		case unix.EVFILT_READ:
			flags |= pollIn
		case unix.EVFILT_WRITE:
			flags |= pollOut
		}
		if ev.Flags&(unix.EV_EOF|unix.EV_ERROR) != 0 {
			flags |= pollHup | pollIn
		}
		op.dispatch(p, flags)
	}
	return closing
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

// release closes the kqueue; Wait calls it once it stops, and a poller
// that never ran is released by its opener.
func (p *defaultPoll) release() { unix.Close(p.kq) }

// Trigger wakes the loop once.
func (p *defaultPoll) Trigger() error {
	var ev [1]kevent
	ev[0].set(wakeIdent, unix.EVFILT_USER, 0, 0)
	ev[0].raw().Fflags = unix.NOTE_TRIGGER
	_, err := kqueueCall(p.kq, ev[:], nil, nil)
	return wrapSyscall("kevent", err)
}

// Control applies one change of interest for operator.
func (p *defaultPoll) Control(op *FDOperator, event PollEvent) error {
	var filter int16
	var flags uint16 = unix.EV_ADD
	switch event {
	case PollReadable:
		filter = unix.EVFILT_READ
	case PollWritable:
		filter = unix.EVFILT_WRITE
	case pollConnect:
		filter, flags = unix.EVFILT_WRITE, unix.EV_ADD|unix.EV_ONESHOT
	case PollR2RW, PollRW2R:
		return p.setInterest(op, true, event == PollR2RW)
	case PollDetach:
		return p.detach(op)
	default:
		return Exception(ErrUnsupported, "unknown PollEvent")
	}
	if op.poll == nil {
		op.poll = p
	}
	atomic.StoreInt32(&op.detached, 0)
	prev, err := opPut(op)
	if err != nil {
		return err
	}
	var ch [1]kevent
	ch[0].set(op.FD, filter, flags, atomic.LoadUint32(&op.gen))
	if _, err = kqueueCall(p.kq, ch[:], nil, nil); err != nil {
		opUndo(op, prev) // the fd stays with the operator that held it
		return wrapSyscall("kevent", err)
	}
	return nil
}

// canPauseInput: kqueue reports the end of the stream only through the
// read filter, so input is never paused here.
const canPauseInput = false

// setInterest asks for one writability report (out) or drops the request;
// in is always true here (canPauseInput is false). It fails once op is
// detached.
//
// Write interest is one-shot (EV_ONESHOT): a blocked Flush needs a single
// report, after which it writes again and asks anew if the socket is still
// full. The kernel drops a fired filter by itself, so the delete that
// follows every report (the poller's wantWrite(false)) usually finds none;
// ENOENT is expected there and ignored.
//
// Unlike epoll, where a modification of a removed fd fails, EV_ADD creates
// the filter again when a Detach deleted it between the detached check and
// the add: the filter would outlive the registration, and a level-triggered
// one would wake the poller for nothing, again and again, for as long as
// the fd stays open. So detached is checked again after the add. Detach
// sets it before its deletes: if the second check sees it clear, Detach's
// delete comes after this add and removes the filter; if it sees it set,
// the filter is deleted here. Either way none is left, and being one-shot,
// even a filter that escaped both would fire at most once.
func (p *defaultPoll) setInterest(op *FDOperator, in, out bool) error {
	if atomic.LoadInt32(&op.detached) != 0 {
		return Exception(ErrConnClosed, "operator detached")
	}
	var ch [1]kevent
	if !out {
		ch[0].set(op.FD, unix.EVFILT_WRITE, unix.EV_DELETE, 0)
		_, _ = kqueueCall(p.kq, ch[:], nil, nil)
		return nil
	}
	ch[0].set(op.FD, unix.EVFILT_WRITE, unix.EV_ADD|unix.EV_ONESHOT, atomic.LoadUint32(&op.gen))
	if _, err := kqueueCall(p.kq, ch[:], nil, nil); err != nil {
		return wrapSyscall("kevent", err)
	}
	if atomic.LoadInt32(&op.detached) != 0 {
		// Delete only a filter of this operator's fd: if the number was
		// closed and taken by another operator, the filter is not ours.
		if cur := opCurrent(op.FD); cur == nil || cur == op {
			ch[0].set(op.FD, unix.EVFILT_WRITE, unix.EV_DELETE, 0)
			_, _ = kqueueCall(p.kq, ch[:], nil, nil)
		}
		return Exception(ErrConnClosed, "operator detached")
	}
	return nil
}

// detach removes the operator; only the first call does anything. Both
// filters are deleted in one call; either may be missing (no write request
// pending, or a one-shot one already fired), which is not an error.
func (p *defaultPoll) detach(op *FDOperator) error {
	if !atomic.CompareAndSwapInt32(&op.detached, 0, 1) {
		return nil
	}
	if !opDrop(op) {
		return nil
	}
	var ch [2]kevent
	var errs [2]unix.Errno
	ch[0].set(op.FD, unix.EVFILT_READ, unix.EV_DELETE, 0)
	ch[1].set(op.FD, unix.EVFILT_WRITE, unix.EV_DELETE, 0)
	_ = kqueueReceipts(p.kq, ch[:], errs[:])
	return nil
}

// watches reports whether p's kernel set still holds a registration of
// op.FD made by op, that is, whether op.FD has not been closed since op
// registered it. It does not change the interest of a live registration.
//
// Closing a fd removes its filters from every kqueue, and a registration
// of the number made after the close would have replaced op in the
// operator table, so a read or write filter for op.FD in p's kqueue is
// op's and means the fd is still open. (An operator registered for reading
// always keeps its EVFILT_READ filter here: input is never paused on
// kqueue. A connecting operator whose one-shot filter fired has none left
// and counts as gone, but its fd is not registered by anyone else anyway.)
//
// The probe is EV_ENABLE without EV_ADD on both filters. A missing filter
// gives ENOENT and is not created (EV_ADD would create one; a delete would
// remove a live one; EV_DISABLE would silence it). On an existing filter,
// which this package never disables, enabling changes nothing, and the
// other values a modification rewrites are passed as registered: udata is
// op's generation, fflags and data are 0. At most the kernel rechecks the
// filter and reports it again if ready, which a level-triggered operator
// takes as any report. With EV_RECEIPT each change answers for itself and
// no pending event is taken from the poller.
func (p *defaultPoll) watches(op *FDOperator) bool {
	gen := atomic.LoadUint32(&op.gen)
	var ch [2]kevent
	var errs [2]unix.Errno
	ch[0].set(op.FD, unix.EVFILT_READ, unix.EV_ENABLE, gen)
	ch[1].set(op.FD, unix.EVFILT_WRITE, unix.EV_ENABLE, gen)
	if err := kqueueReceipts(p.kq, ch[:], errs[:]); err != nil {
		return err != unix.EBADF // EBADF: the kqueue itself is gone; otherwise assume live
	}
	return errs[0] == 0 || errs[1] == 0
}

// Alloc returns a new operator bound to this poller.
func (p *defaultPoll) Alloc() *FDOperator { return &FDOperator{poll: p} }

// Free does nothing: a detached operator is garbage collected once unreferenced.
func (p *defaultPoll) Free(op *FDOperator) {}
