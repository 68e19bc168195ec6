//go:build linux

package netpoll

import (
	"os"
	"sync/atomic"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// defaultPoll is a level-triggered epoll instance with an eventfd for
// wake-ups. Its goroutine is the only one that reads events; Control may be
// called from any goroutine (epoll_ctl is thread-safe). The epoll fd itself
// is non-blocking and watched by Go's netpoller (see Wait).
type defaultPoll struct {
	epfd    int
	file    *os.File        // owns epfd
	raw     syscall.RawConn // parks Wait until epfd is readable
	wakefd  int
	events  []unix.EpollEvent
	ready   int                   // what the last poll returned: events ready,
	pollErr error                 // or its error
	pollFn  func(fd uintptr) bool // poll, made once: Wait allocates nothing
	scratch []byte                // small reads land here first (connection.fill)
	tasks   taskQueue             // handler tasks, with the default Runner
	closing atomic.Bool
	done    chan struct{}
}

const (
	epollRead  = unix.EPOLLIN | unix.EPOLLRDHUP
	epollWrite = unix.EPOLLOUT
	wakeTag    = ^uint32(0) // the generation of the wake-up eventfd
)

func openDefaultPoll() (*defaultPoll, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, wrapSyscall("epoll_create1", err)
	}
	wakefd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		unix.Close(epfd)
		return nil, wrapSyscall("eventfd", err)
	}
	if err = unix.SetNonblock(epfd, true); err != nil {
		unix.Close(wakefd)
		unix.Close(epfd)
		return nil, wrapSyscall("fcntl", err)
	}
	p := &defaultPoll{epfd: epfd, file: os.NewFile(uintptr(epfd), "epoll"), wakefd: wakefd,
		events: make([]unix.EpollEvent, 128), scratch: make([]byte, scratchSize), done: make(chan struct{})}
	ev := unix.EpollEvent{Events: unix.EPOLLIN}
	setEventTag(&ev, wakefd, wakeTag)
	if err = unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, wakefd, &ev); err == nil {
		p.raw, err = p.file.SyscallConn()
	}
	p.pollFn = p.poll
	if err != nil {
		p.release()
		return nil, wrapSyscall("epoll setup", err)
	}
	return p, nil
}

// setEventTag stores fd and the registration generation in the event's data.
func setEventTag(ev *unix.EpollEvent, fd int, gen uint32) {
	ev.Fd = int32(fd)
	ev.Pad = int32(gen)
}

// Wait runs the loop until Close. It never blocks a thread in epoll_wait:
// it polls with a raw zero-timeout epoll_pwait and, when nothing is ready,
// parks in Go's netpoller until the epoll fd becomes readable. A woken
// poller is then scheduled like any goroutine the network woke, instead of
// having to win a P back after a blocking syscall, which under load (and
// always with GOMAXPROCS=1) delayed every event behind running handlers.
//
// The runtime watches epfd edge-triggered. No readiness is missed: the loop
// parks only after a poll found the ready list empty, and RawConn.Read
// keeps any edge that came after its start.
func (p *defaultPoll) Wait() error {
	defer close(p.done)
	for {
		if err := p.raw.Read(p.pollFn); err != nil {
			return wrapSyscall("epoll wait", err)
		}
		switch {
		case p.pollErr == unix.EINTR:
			continue
		case p.pollErr != nil:
			return wrapSyscall("epoll_wait", p.pollErr)
		}
		if p.handle(p.events[:p.ready]) {
			p.release()
			return nil
		}
	}
}

// poll polls once for Wait; false (nothing ready) makes RawConn.Read park.
func (p *defaultPoll) poll(uintptr) bool {
	p.ready, p.pollErr = epollPoll(p.epfd, p.events)
	return p.ready > 0 || p.pollErr != nil
}

// epollPoll is epoll_wait with a zero timeout. It never blocks, so it is
// made as a raw syscall, without the scheduler's syscall bookkeeping.
func epollPoll(epfd int, events []unix.EpollEvent) (int, error) {
	n, _, errno := unix.RawSyscall6(unix.SYS_EPOLL_PWAIT, uintptr(epfd),
		uintptr(unsafe.Pointer(&events[0])), uintptr(len(events)), 0, 0, 0)
	if errno != 0 {
		return 0, errno
	}
	return int(n), nil
}

// handle delivers one batch; it reports whether the poller was asked to close.
func (p *defaultPoll) handle(events []unix.EpollEvent) (closing bool) {
	for i := range events {
		ev := &events[i]
		fd, gen := int(ev.Fd), uint32(ev.Pad)
		if gen == wakeTag && fd == p.wakefd {
			var buf [8]byte
			_, _ = unix.Read(p.wakefd, buf[:])
			closing = p.closing.Load()
			continue
		}
		op := opGet(fd, gen)
		if op == nil {
			continue // stale: the fd was closed, maybe reused, since the event was queued
		}
		var flags pollFlags
		if ev.Events&(unix.EPOLLIN|unix.EPOLLPRI) != 0 {
			flags |= pollIn
		}
		if ev.Events&unix.EPOLLOUT != 0 {
			flags |= pollOut
		}
		if ev.Events&(unix.EPOLLHUP|unix.EPOLLRDHUP|unix.EPOLLERR) != 0 {
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

// release closes the epoll and eventfd; Wait calls it once it stops, and a
// poller that never ran is released by its opener.
func (p *defaultPoll) release() {
	unix.Close(p.wakefd)
	p.file.Close()
}

// Trigger wakes the loop once.
func (p *defaultPoll) Trigger() error {
	one := uint64(1)
	_, err := unix.Write(p.wakefd, (*[8]byte)(unsafe.Pointer(&one))[:])
	if err != nil && err != unix.EAGAIN {
		return wrapSyscall("eventfd write", err)
	}
	return nil
}

// Control applies one change of interest for operator.
func (p *defaultPoll) Control(op *FDOperator, event PollEvent) error {
	var ev unix.EpollEvent
	ctl := unix.EPOLL_CTL_MOD
	switch event {
	case PollReadable:
		ctl, ev.Events = unix.EPOLL_CTL_ADD, epollRead
	case PollWritable:
		ctl, ev.Events = unix.EPOLL_CTL_ADD, epollWrite
	case pollConnect:
		ctl, ev.Events = unix.EPOLL_CTL_ADD, epollWrite|unix.EPOLLONESHOT
	case PollR2RW, PollRW2R:
		return p.setInterest(op, true, event == PollR2RW)
	case PollDetach:
		return p.detach(op)
	default:
		return Exception(ErrUnsupported, "unknown PollEvent")
	}
	var prev *FDOperator
	if ctl == unix.EPOLL_CTL_ADD {
		if op.poll == nil {
			op.poll = p
		}
		atomic.StoreInt32(&op.detached, 0)
		var err error
		if prev, err = opPut(op); err != nil {
			return err
		}
	} else if atomic.LoadInt32(&op.detached) != 0 {
		return Exception(ErrConnClosed, "operator detached")
	}
	setEventTag(&ev, op.FD, atomic.LoadUint32(&op.gen))
	if err := unix.EpollCtl(p.epfd, ctl, op.FD, &ev); err != nil {
		if ctl == unix.EPOLL_CTL_ADD {
			opUndo(op, prev) // EEXIST: the fd stays with its live owner
		}
		return wrapSyscall("epoll_ctl", err)
	}
	return nil
}

// canPauseInput: epoll reports a hang-up (EPOLLRDHUP) without EPOLLIN.
const canPauseInput = true

// setInterest re-registers a registered operator for input (in; the
// hang-up is always watched) and output (out). It fails once op is detached.
func (p *defaultPoll) setInterest(op *FDOperator, in, out bool) error {
	ev := unix.EpollEvent{Events: unix.EPOLLRDHUP}
	if in {
		ev.Events |= unix.EPOLLIN
	}
	if out {
		ev.Events |= unix.EPOLLOUT
	}
	if atomic.LoadInt32(&op.detached) != 0 {
		return Exception(ErrConnClosed, "operator detached")
	}
	setEventTag(&ev, op.FD, atomic.LoadUint32(&op.gen))
	return wrapSyscall("epoll_ctl", unix.EpollCtl(p.epfd, unix.EPOLL_CTL_MOD, op.FD, &ev))
}

// detach removes the operator; only the first call does anything.
func (p *defaultPoll) detach(op *FDOperator) error {
	if !atomic.CompareAndSwapInt32(&op.detached, 0, 1) {
		return nil
	}
	if !opDrop(op) {
		return nil
	}
	err := unix.EpollCtl(p.epfd, unix.EPOLL_CTL_DEL, op.FD, nil)
	if err != nil && err != unix.ENOENT && err != unix.EBADF {
		return wrapSyscall("epoll_ctl del", err)
	}
	return nil
}

// watches reports whether p's epoll set still holds op's registration,
// that is, whether op.FD still names the socket op registered. epoll keys a
// registration by the open file and the fd number, and drops it when the
// file is closed, so an ADD of the number fails with EEXIST exactly when
// the same file is still registered; otherwise the probe is undone at once.
// Its tag (generation 0, never handed out) matches no operator, so an event
// it might raise meanwhile is dropped as stale.
func (p *defaultPoll) watches(op *FDOperator) bool {
	var ev unix.EpollEvent
	setEventTag(&ev, op.FD, 0)
	switch err := unix.EpollCtl(p.epfd, unix.EPOLL_CTL_ADD, op.FD, &ev); err {
	case unix.EEXIST:
		return true
	case nil:
		_ = unix.EpollCtl(p.epfd, unix.EPOLL_CTL_DEL, op.FD, nil)
	}
	return false
}

// Alloc returns a new operator bound to this poller.
func (p *defaultPoll) Alloc() *FDOperator { return &FDOperator{poll: p} }

// Free does nothing: a detached operator is garbage collected once unreferenced.
func (p *defaultPoll) Free(op *FDOperator) {}
