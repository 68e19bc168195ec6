//go:build darwin || dragonfly || freebsd || netbsd || openbsd

package netpoll

import (
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// defaultPoll is a kqueue instance with an EVFILT_USER event for wake-ups.
// Read and write interest are separate filters; each event carries the
// operator's address as its tag (see poll_table.go).
type defaultPoll struct {
	kq      int
	events  []unix.Kevent_t
	scratch []byte    // small reads land here first (connection.fill)
	tasks   taskQueue // handler tasks, with the default Runner
	closing atomic.Bool
	done    chan struct{}
}

const wakeIdent = 0

func openDefaultPoll() (*defaultPoll, error) {
	kq, err := unix.Kqueue()
	if err != nil {
		return nil, wrapSyscall("kqueue", err)
	}
	unix.CloseOnExec(kq)
	p := &defaultPoll{kq: kq, events: make([]unix.Kevent_t, 128), scratch: make([]byte, scratchSize), done: make(chan struct{})}
	ev := []unix.Kevent_t{{Ident: wakeIdent, Filter: unix.EVFILT_USER, Flags: unix.EV_ADD | unix.EV_CLEAR}}
	if _, err = unix.Kevent(kq, ev, nil, nil); err != nil {
		unix.Close(kq)
		return nil, wrapSyscall("kevent", err)
	}
	return p, nil
}

// Wait runs the loop until Close.
func (p *defaultPoll) Wait() error {
	defer close(p.done)
	zero := &unix.Timespec{}
	var timeout *unix.Timespec = zero
	for {
		n, err := unix.Kevent(p.kq, nil, p.events, timeout)
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

func (p *defaultPoll) handle(events []unix.Kevent_t) (closing bool) {
	for i := range events {
		ev := &events[i]
		if ev.Filter == unix.EVFILT_USER {
			closing = p.closing.Load()
			continue
		}
		op := opCurrent(int(ev.Ident))
		if op == nil || unsafe.Pointer(ev.Udata) != unsafe.Pointer(op) {
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
	ev := []unix.Kevent_t{{Ident: wakeIdent, Filter: unix.EVFILT_USER, Fflags: unix.NOTE_TRIGGER}}
	_, err := unix.Kevent(p.kq, ev, nil, nil)
	return wrapSyscall("kevent", err)
}

// Control applies one change of interest for operator.
func (p *defaultPoll) Control(op *FDOperator, event PollEvent) error {
	var changes [2]unix.Kevent_t
	var prev *FDOperator // the fd's owner before this registration
	put := false
	n := 0
	add := func(filter int16, flags uint16) {
		changes[n] = unix.Kevent_t{Ident: uint64(op.FD), Filter: filter, Flags: flags, Udata: (*byte)(unsafe.Pointer(op))}
		n++
	}
	switch event {
	case PollReadable:
		if op.poll == nil {
			op.poll = p
		}
		atomic.StoreInt32(&op.detached, 0)
		var err error
		if prev, err = opPut(op); err != nil {
			return err
		}
		put = true
		add(unix.EVFILT_READ, unix.EV_ADD)
	case PollWritable:
		if op.poll == nil {
			op.poll = p
		}
		atomic.StoreInt32(&op.detached, 0)
		var err error
		if prev, err = opPut(op); err != nil {
			return err
		}
		put = true
		add(unix.EVFILT_WRITE, unix.EV_ADD)
	case pollConnect:
		if op.poll == nil {
			op.poll = p
		}
		atomic.StoreInt32(&op.detached, 0)
		var err error
		if prev, err = opPut(op); err != nil {
			return err
		}
		put = true
		add(unix.EVFILT_WRITE, unix.EV_ADD|unix.EV_ONESHOT)
	case PollR2RW:
		add(unix.EVFILT_WRITE, unix.EV_ADD)
	case PollRW2R:
		add(unix.EVFILT_WRITE, unix.EV_DELETE)
	case PollDetach:
		if !atomic.CompareAndSwapInt32(&op.detached, 0, 1) {
			return nil
		}
		if !opDrop(op) {
			return nil
		}
		add(unix.EVFILT_READ, unix.EV_DELETE)
		add(unix.EVFILT_WRITE, unix.EV_DELETE)
	default:
		return Exception(ErrUnsupported, "unknown PollEvent")
	}
	if event != PollDetach && atomic.LoadInt32(&op.detached) != 0 {
		return Exception(ErrConnClosed, "operator detached")
	}
	for i := 0; i < n; i++ {
		_, err := unix.Kevent(p.kq, changes[i:i+1], nil, nil)
		if err != nil && event != PollDetach && event != PollRW2R {
			if put {
				opUndo(op, prev)
			}
			return wrapSyscall("kevent", err)
		}
	}
	return nil
}

// canPauseInput: kqueue reports the end of the stream only through the
// read filter, so input is never paused here.
const canPauseInput = false

// setInterest turns writability reports on or off; in is always true here.
func (p *defaultPoll) setInterest(op *FDOperator, in, out bool) error {
	if out {
		return p.Control(op, PollR2RW)
	}
	return p.Control(op, PollRW2R)
}

// Alloc returns a new operator bound to this poller.
func (p *defaultPoll) Alloc() *FDOperator { return &FDOperator{poll: p} }

// Free does nothing: a detached operator is garbage collected once unreferenced.
func (p *defaultPoll) Free(op *FDOperator) {}
