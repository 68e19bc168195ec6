//go:build darwin || freebsd

package netpoll

import (
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// defaultPoll is a kqueue instance with an EVFILT_USER event for wake-ups,
// the macOS and FreeBSD backend of poll_unix.go. Read and write interest
// are separate filters, each carrying its operator's generation as udata.
type defaultPoll struct {
	pollState
	kq     int
	events []kevent
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

// change applies one change of filter for fd.
func (p *defaultPoll) change(fd int, filter int16, flags uint16, tag uint32) error {
	var ch [1]kevent
	ch[0].set(fd, filter, flags, tag)
	_, err := kqueueCall(p.kq, ch[:], nil, nil)
	return wrapSyscall("kevent", err)
}

// bothFilters applies flags to fd's read and write filters in one call and
// returns each change's errno (0: done). The changes are flagged
// EV_RECEIPT and the event list is exactly as long as the change list, so
// every change returns its receipt there: the call never takes a pending
// event away from the poller goroutine, and a failing change does not stop
// the other. The error is the call's own (a bad kqueue), not a change's; a
// change without a receipt counts as done. The zero timeout is a guard: the
// call has no reason to wait.
func (p *defaultPoll) bothFilters(fd int, flags uint16, tag uint32) (errs [2]unix.Errno, err error) {
	var ch, out [2]kevent
	ch[0].set(fd, unix.EVFILT_READ, flags|unix.EV_RECEIPT, tag)
	ch[1].set(fd, unix.EVFILT_WRITE, flags|unix.EV_RECEIPT, tag)
	n, err := kqueueCall(p.kq, ch[:], out[:], &unix.Timespec{})
	for i := 0; i < n; i++ {
		ev := out[i].raw()
		for j := range ch {
			if ev.Filter == ch[j].raw().Filter {
				errs[j] = unix.Errno(ev.Data)
			}
		}
	}
	return errs, err
}

func (p *defaultPoll) open() error {
	kq, err := unix.Kqueue()
	if err != nil {
		return wrapSyscall("kqueue", err)
	}
	unix.CloseOnExec(kq)
	p.kq, p.events = kq, make([]kevent, eventBatch)
	if err = p.change(wakeIdent, unix.EVFILT_USER, unix.EV_ADD|unix.EV_CLEAR, 0); err != nil {
		p.release()
	}
	return err
}

// wait blocks in kevent, holding a thread, until events are ready, and
// delivers them.
func (p *defaultPoll) wait() (closing bool, err error) {
	n, err := kqueueCall(p.kq, nil, p.events, nil)
	if err == unix.EINTR {
		return false, nil
	}
	if err != nil {
		return false, wrapSyscall("kevent", err)
	}
	closing, _ = p.handle(n)
	return closing, nil
}

// turnFunc is nil: the kqueue poller waits in kevent on a thread of its
// own and takes its events when they come, without a P, so it needs no
// turn, and its task workers read no clock.
func (p *defaultPoll) turnFunc() func(taskStart, now int64) bool { return nil }

func (p *defaultPoll) event(i int) (fd int, tag uint32, flags pollFlags) {
	ev := p.events[i].raw()
	switch ev.Filter {
	case unix.EVFILT_USER:
		return wakeIdent, 0, pollWake // EV_CLEAR re-arms it
	case unix.EVFILT_READ:
		flags = pollIn
	case unix.EVFILT_WRITE:
		flags = pollOut
	}
	if ev.Flags&(unix.EV_EOF|unix.EV_ERROR) != 0 {
		flags |= pollHup | pollIn
	}
	return int(ev.Ident), uint32(*p.events[i].udata()), flags
}

func (p *defaultPoll) add(fd int, tag uint32, event PollEvent) error {
	switch event {
	case PollWritable:
		return p.change(fd, unix.EVFILT_WRITE, unix.EV_ADD, tag)
	case pollConnect:
		return p.change(fd, unix.EVFILT_WRITE, unix.EV_ADD|unix.EV_ONESHOT, tag)
	}
	return p.change(fd, unix.EVFILT_READ, unix.EV_ADD, tag)
}

// canPauseInput: kqueue reports the end of the stream only through the
// read filter, so input is never paused here.
const canPauseInput = false

// modify asks for one writability report (out) or drops the request; in is
// always true here (canPauseInput is false).
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
func (p *defaultPoll) modify(op *FDOperator, in, out bool) error {
	if !out {
		_ = p.change(op.FD, unix.EVFILT_WRITE, unix.EV_DELETE, 0)
		return nil
	}
	if err := p.change(op.FD, unix.EVFILT_WRITE, unix.EV_ADD|unix.EV_ONESHOT, atomic.LoadUint32(&op.gen)); err != nil {
		return err
	}
	if atomic.LoadInt32(&op.detached) != 0 {
		// Delete only a filter of this operator's fd: if the number was
		// closed and taken by another operator, the filter is not ours.
		if cur := opCurrent(op.FD); cur == nil || cur == op {
			_ = p.change(op.FD, unix.EVFILT_WRITE, unix.EV_DELETE, 0)
		}
		return errOpDetached
	}
	return nil
}

// remove deletes both filters; either may be missing (no write request
// pending, or a one-shot one already fired), which is not an error.
func (p *defaultPoll) remove(fd int) error {
	_, _ = p.bothFilters(fd, unix.EV_DELETE, 0)
	return nil
}

// watches: closing a fd removes its filters from every kqueue, and a
// registration of the number made after the close would have replaced op
// in the operator table, so a read or write filter for op.FD in p's kqueue
// is op's and means the fd is still open. (An operator registered for
// reading always keeps its EVFILT_READ filter here: input is never paused
// on kqueue. A connecting operator whose one-shot filter fired has none
// left and counts as gone, but its fd is not registered by anyone else
// anyway.)
//
// The probe is EV_ENABLE without EV_ADD on both filters. A missing filter
// gives ENOENT and is not created (EV_ADD would create one; a delete would
// remove a live one; EV_DISABLE would silence it). On an existing filter,
// which this package never disables, enabling changes nothing, and the
// other values a modification rewrites are passed as registered: udata is
// op's generation, fflags and data are 0. At most the kernel rechecks the
// filter and reports it again if ready, which a level-triggered operator
// takes as any report.
func (p *defaultPoll) watches(op *FDOperator) bool {
	errs, err := p.bothFilters(op.FD, unix.EV_ENABLE, atomic.LoadUint32(&op.gen))
	if err != nil {
		return err != unix.EBADF // EBADF: the kqueue itself is gone; otherwise assume live
	}
	return errs[0] == 0 || errs[1] == 0
}

func (p *defaultPoll) wake() error {
	var ch [1]kevent
	ch[0].set(wakeIdent, unix.EVFILT_USER, 0, 0)
	ch[0].raw().Fflags = unix.NOTE_TRIGGER
	_, err := kqueueCall(p.kq, ch[:], nil, nil)
	return wrapSyscall("kevent", err)
}

func (p *defaultPoll) release() { unix.Close(p.kq) }
