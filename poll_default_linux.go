//go:build linux

package netpoll

import (
	"errors"
	"os"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// defaultPoll is a level-triggered epoll instance with an eventfd for
// wake-ups, the Linux backend of poll_unix.go. The epoll fd itself is
// non-blocking and watched by Go's netpoller (see wait).
type defaultPoll struct {
	pollState
	epfd    int
	file    *os.File        // owns epfd
	raw     syscall.RawConn // parks wait until epfd is readable
	wakefd  int
	events  []unix.EpollEvent
	cycleFn func(fd uintptr) bool // cycle, made once: wait allocates nothing
	closed  bool                  // cycle met the wake-up of a closing poller
	pollErr error                 // or the error that ended cycle

	// links tells whether the kernel's ready list may hold stale entries
	// that a change of interest would hide (see cycle); a linksState.
	links atomic.Int32

	// What busy task workers give the poller its turn with (see turn).
	lastPoll atomic.Int64 // monoNow when cycle last polled
	turns    atomic.Int32 // a turnState
	procsAt  int64        // monoNow when cycle last read GOMAXPROCS (readProcs); the poller goroutine's

	// What keeps the runtime's monitor awake enough (see wait); touched by
	// the poller goroutine only.
	parked   bool        // cycle returned false: the goroutine parked since
	parkedAt int64       // monoNow when the last park began
	bound    *time.Timer // fires at the latest sysmonBound after a park began
	boundAt  int64       // monoNow when bound fires
}

const (
	epollRead  = unix.EPOLLIN | unix.EPOLLRDHUP
	epollWrite = unix.EPOLLOUT
	wakeTag    = ^uint32(0) // the tag of the wake-up eventfd's registration
)

// eventfdCount is the size of what eventfd(2) reads and writes: its
// counter, a uint64.
const eventfdCount = 8

func (p *defaultPoll) open() error {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return wrapSyscall("epoll_create1", err)
	}
	wakefd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		unix.Close(epfd)
		return wrapSyscall("eventfd", err)
	}
	if err = unix.SetNonblock(epfd, true); err != nil {
		unix.Close(wakefd)
		unix.Close(epfd)
		return wrapSyscall("fcntl", err)
	}
	p.epfd, p.file, p.wakefd = epfd, os.NewFile(uintptr(epfd), "epoll"), wakefd
	p.events = make([]unix.EpollEvent, eventBatch)
	p.cycleFn = p.cycle
	p.bound = time.AfterFunc(time.Hour, func() {})
	p.bound.Stop()
	if err = p.ctl(unix.EPOLL_CTL_ADD, wakefd, wakeTag, unix.EPOLLIN); err == nil {
		p.raw, err = p.file.SyscallConn()
	}
	if err != nil {
		p.release()
		return wrapSyscall("epoll setup", err)
	}
	return nil
}

// ctl is epoll_ctl for fd, with tag stored beside the fd in the event's
// data (nil for none when events is noEvent). It never blocks, so it is
// made raw (see sysRead in sys_linux.go).
func (p *defaultPoll) ctl(op, fd int, tag, events uint32) error {
	var ev *unix.EpollEvent
	if events != noEvent {
		ev = &unix.EpollEvent{Events: events, Fd: int32(fd), Pad: int32(tag)}
	}
	_, _, e := unix.RawSyscall6(unix.SYS_EPOLL_CTL, uintptr(p.epfd), uintptr(op), uintptr(fd), uintptr(unsafe.Pointer(ev)), 0, 0)
	if e != 0 {
		return e
	}
	return nil
}

// noEvent is the events of a ctl that passes no event (EPOLL_CTL_DEL).
const noEvent = ^uint32(0)

// wait never blocks a thread in epoll_wait: it polls with a raw
// zero-timeout epoll_pwait and, when nothing is ready, parks in Go's
// netpoller until the epoll fd becomes readable. A woken poller is then
// scheduled like any goroutine the network woke, instead of having to win
// a P back after a blocking syscall, which under load (and always with
// GOMAXPROCS=1) delayed every event behind running handlers.
//
// The polls, the delivery of their events and the parks all happen in cycle,
// inside one RawConn.Read, so that an edge of the epoll fd that comes while
// events are delivered is kept for the next park (RawConn.Read clears the
// edge only when it starts). The runtime watches epfd edge-triggered, and
// epfd raises an edge whenever one of its fds gets a new kernel callback
// (data came, the socket became writable, the peer hung up), whether or not
// that fd is on epfd's ready list already. So cycle may park right after
// delivering a batch, without polling a ready list it expects empty, when:
//   - the batch did not fill the array (every ready fd came with it), and
//   - every event was settled (pollHandler): nothing it reported is still
//     standing with no callback to come, and
//   - no change of interest raced the batch (links, below), and
//   - the kernel is 5.6 or later (parkAfterSettled, poll_kernel_linux.go).
//
// Otherwise it polls again, and parks after a poll that found nothing.
//
// links covers the one hole in that: a level-triggered fd that a poll
// returned is put back on epfd's ready list, and EPOLL_CTL_MOD raises no
// edge for a fd on that list even when the change makes it ready (an input
// resumed with bytes waiting, an output asked for on a writable socket). So
// a change of interest (modify) made after a poll that returned events, and
// before the next poll, must make sure that next poll happens: during
// delivery it marks the batch dirty (cycle polls again before it parks); after
// a park that skipped the empty poll it wakes the poller.
//
// The socket I/O is raw (sys_linux.go), so the runtime's monitor thread,
// sysmon, which sleeps without bound while every P is idle and is woken by
// ordinary syscalls, may sleep on after the poller wakes; but sysmon is
// also what preempts a goroutine that runs for more than 10 ms, so with a
// handler spinning on the only P nothing else would run. Two things bound
// that:
//   - before parking, the poller makes sure a timer fires within
//     sysmonBound (one timer per poller, moved at most every
//     sysmonBound/2), and sysmon never sleeps past the next timer;
//   - the first poll after a park longer than sysmonBound, when that timer
//     may have fired already, is an ordinary syscall, which wakes sysmon.
//
// So a spinning handler is preempted within about two sysmonBounds, while a
// loaded server, whose poller wakes often, makes no ordinary syscall here.
func (p *defaultPoll) wait() (closing bool, err error) {
	p.closed, p.pollErr = false, nil
	if err := p.raw.Read(p.cycleFn); err != nil {
		if errors.Is(err, os.ErrDeadlineExceeded) { // a turn (see turn)
			err = p.file.SetReadDeadline(time.Time{})
			p.turns.CompareAndSwap(turnAsked, turnNone)
		}
		return false, wrapSyscall("epoll wait", err)
	}
	if p.pollErr == unix.EINTR {
		return false, nil
	}
	return p.closed, wrapSyscall("epoll_wait", p.pollErr)
}

// linksState is a defaultPoll's links.
type linksState = int32

const (
	linksClean   linksState = iota // no stale entry: the last poll found nothing
	linksFetched                   // a poll returned events, which cycle delivers
	linksDirty                     // and a change of interest came meanwhile
	linksStale                     // cycle parked after delivering, without an empty poll
)

// sysmonBound bounds how long sysmon may sleep while the poller parks.
const sysmonBound = 10 * time.Millisecond

// cycle polls and delivers until it may park (false) or the poller must stop
// (true: closed or pollErr set). See wait.
//
// It reads the clock once per poll: the reading stands for the poll, and for
// the park that follows it.
func (p *defaultPoll) cycle(uintptr) bool {
	now := monoNow()
	wakeSysmon := p.parked && now-p.parkedAt > int64(sysmonBound)
	p.parked = false
	if now-p.procsAt >= int64(procsEvery) {
		readProcs()
		p.procsAt = now
	}
	for {
		p.links.Store(linksFetched)
		p.lastPoll.Store(now)
		n, err := epollPoll(p.epfd, p.events, wakeSysmon)
		wakeSysmon = false
		switch {
		case err != nil:
			p.pollErr = err
			return true
		case n == 0:
			p.links.Store(linksClean)
			p.park(now)
			return false
		}
		closing, settled := p.handle(n)
		if closing {
			p.closed = true
			return true
		}
		if parkAfterSettled && settled && n < len(p.events) && p.links.CompareAndSwap(linksFetched, linksStale) {
			p.park(now)
			return false
		}
		now = monoNow()
	}
}

// park prepares the poller goroutine's park, which begins about now (the
// time of the last poll, earlier by the delivery of its events): it bounds
// sysmon's sleep.
func (p *defaultPoll) park(now int64) {
	p.parked, p.parkedAt = true, now
	if p.boundAt-now < int64(sysmonBound/2) {
		p.boundAt = now + int64(sysmonBound)
		p.bound.Reset(sysmonBound)
	}
}

// interestChanged follows a change of interest (see wait): it marks a
// batch being delivered dirty, or wakes a poller parked with stale entries.
func (p *defaultPoll) interestChanged() {
	for {
		switch p.links.Load() {
		case linksFetched:
			if p.links.CompareAndSwap(linksFetched, linksDirty) {
				return
			}
		case linksStale:
			if p.links.CompareAndSwap(linksStale, linksClean) {
				_ = p.wake()
				return
			}
		default:
			return
		}
	}
}

// turnState is where a defaultPoll's turn is.
type turnState = int32

const (
	turnNone  turnState = iota // no turn asked
	turnAsked                  // the poller was made runnable and has not parked since
	turnOff                    // the poller stopped
)

// turn gives the poller a turn when workers have kept every P busy (see
// taskQueue); a worker calls it after each task, with when the task
// started and the time now (monoNow both), and yields its P when it
// reports true.
//
// The parked poller waits in Go's netpoller, which the scheduler polls only
// when a P runs out of work, and busy workers never let that happen. So
// when the poller has not polled for turnAfter, and the worker's task alone
// took half as long (quick tasks drain fast and leave the poller its
// turn soon enough), turn makes the poller runnable itself: a read deadline
// in the past on the epoll fd, which makes the runtime ready the goroutine
// parked on it, onto the worker's P, without a syscall. Until the poller
// parks again, which clears the deadline (wait), turn reports true to
// every worker after every task, so that all of them yield and the poller
// runs even when something else readied it into the global run queue,
// which a P busy with local goroutines checks only now and then. A turn
// asked of a running poller makes its next park return at once: one poll
// more, nothing lost.
//
// Nor is there a turn while fewer task workers run (busyWorkers) than
// there are Ps: a P then runs out of work, and the scheduler polls the
// network on it, which readies the poller for nothing more than its
// wake-up; a turn on top of that would cost a lightly loaded server with
// slow handlers a needless wake-up of the poller after every request. So
// with one P there is no turn either: the queue's order is all there is,
// and reading new input before the queue is empty would change nothing but
// the cost.
func (p *defaultPoll) turn(taskStart, now int64) bool {
	switch p.turns.Load() {
	case turnAsked:
		return true
	case turnOff:
		return false
	}
	if now-taskStart < int64(turnAfter/2) || now-p.lastPoll.Load() < int64(turnAfter) {
		return false
	}
	if n := procs.Load(); n == 1 || busyWorkers.Load() < n ||
		!p.turns.CompareAndSwap(turnNone, turnAsked) {
		return false
	}
	if p.file.SetReadDeadline(longAgo) != nil { // the poller closed its epoll fd
		p.turns.Store(turnOff)
		return false
	}
	return true
}

// turnFunc is turn, for the task queue.
func (p *defaultPoll) turnFunc() func(taskStart, now int64) bool { return p.turn }

// longAgo is a deadline that has passed.
var longAgo = time.Unix(1, 0)

// epollPoll is epoll_wait with a zero timeout. It never blocks, so it is
// made as a raw syscall, without the scheduler's syscall bookkeeping,
// unless wakeSysmon asks for that bookkeeping's side effect (see wait).
func epollPoll(epfd int, events []unix.EpollEvent, wakeSysmon bool) (int, error) {
	call := unix.RawSyscall6
	if wakeSysmon {
		call = unix.Syscall6
	}
	n, _, errno := call(unix.SYS_EPOLL_PWAIT, uintptr(epfd),
		uintptr(unsafe.Pointer(&events[0])), uintptr(len(events)), 0, 0, 0)
	if errno != 0 {
		return 0, errno
	}
	return int(n), nil
}

func (p *defaultPoll) event(i int) (fd int, tag uint32, flags pollFlags) {
	ev := &p.events[i]
	fd, tag = int(ev.Fd), uint32(ev.Pad)
	if tag == wakeTag && fd == p.wakefd {
		var count [eventfdCount]byte
		_, _ = sysRead(p.wakefd, count[:]) // resets the counter
		return fd, tag, pollWake
	}
	if ev.Events&(unix.EPOLLIN|unix.EPOLLPRI) != 0 {
		flags |= pollIn
	}
	if ev.Events&unix.EPOLLOUT != 0 {
		flags |= pollOut
	}
	if ev.Events&(unix.EPOLLHUP|unix.EPOLLRDHUP|unix.EPOLLERR) != 0 {
		flags |= pollHup | pollIn
	}
	return fd, tag, flags
}

func (p *defaultPoll) add(fd int, tag uint32, event PollEvent) error {
	events := uint32(epollRead)
	switch event {
	case PollWritable:
		events = epollWrite
	case pollConnect:
		events = epollWrite | unix.EPOLLONESHOT
	}
	return wrapSyscall("epoll_ctl", p.ctl(unix.EPOLL_CTL_ADD, fd, tag, events))
}

// canPauseInput: epoll reports a hang-up (EPOLLRDHUP) without EPOLLIN.
const canPauseInput = true

func (p *defaultPoll) modify(op *FDOperator, in, out bool) error {
	events := uint32(unix.EPOLLRDHUP)
	if in {
		events |= unix.EPOLLIN
	}
	if out {
		events |= unix.EPOLLOUT
	}
	if err := p.ctl(unix.EPOLL_CTL_MOD, op.FD, atomic.LoadUint32(&op.gen), events); err != nil {
		return wrapSyscall("epoll_ctl", err)
	}
	p.interestChanged()
	return nil
}

// remove: ENOENT and EBADF mean the registration is gone already.
func (p *defaultPoll) remove(fd int) error {
	err := p.ctl(unix.EPOLL_CTL_DEL, fd, 0, noEvent)
	if err == unix.ENOENT || err == unix.EBADF {
		return nil
	}
	return wrapSyscall("epoll_ctl del", err)
}

// watches: epoll keys a registration by the open file and the fd number,
// and drops it when the file is closed, so an ADD of the number fails with
// EEXIST exactly when the same file is still registered; otherwise the
// probe is undone at once. Its tag (generation 0, never handed out) matches
// no operator, so an event it might raise meanwhile is dropped as stale.
func (p *defaultPoll) watches(op *FDOperator) bool {
	switch err := p.ctl(unix.EPOLL_CTL_ADD, op.FD, 0, 0); err {
	case unix.EEXIST:
		return true
	case nil:
		_ = p.ctl(unix.EPOLL_CTL_DEL, op.FD, 0, noEvent)
	}
	return false
}

// wake: a full counter (EAGAIN) has a wake-up pending already.
func (p *defaultPoll) wake() error {
	one := uint64(1)
	_, err := sysWrite(p.wakefd, (*[eventfdCount]byte)(unsafe.Pointer(&one))[:])
	if err != nil && err != unix.EAGAIN {
		return wrapSyscall("eventfd write", err)
	}
	return nil
}

func (p *defaultPoll) release() {
	p.turns.Store(turnOff)
	if p.bound != nil {
		p.bound.Stop()
	}
	unix.Close(p.wakefd)
	p.file.Close()
}
