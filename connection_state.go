//go:build darwin || freebsd || linux

package netpoll

import (
	"runtime"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// A connection's close, in one file: the state word, the fd's syscall
// references, and the close path, by marking then counting.
//
//   - Marking: the first Close, Detach or hang-up moves the word out of open
//     (markClose). Its caller, and only it, runs afterMark: the fd leaves the
//     poller, blocked calls wake, and the fd's close is requested.
//   - Counting: what delays the close callbacks holds the connection (see
//     hold). Each release goes through connection.release, and the release
//     that leaves a closing connection with no hold runs finalize: the close
//     callbacks, then the recycling of both buffers.
//   - The fd is closed by fdRef, by whoever drops its last syscall
//     reference after the close request (destroy), so a fd number is never
//     closed, and handed to a new connection, under a syscall that still
//     means the old one.

// connState is a connection's whole lifecycle in one atomic word. Every
// change is a compare-and-swap done by one of the small methods below, so
// the decisions "who runs OnDisconnect" and "who runs the close callbacks"
// are each made exactly once, by exactly one goroutine.
//
//	bits 0-1   phase     open → closing → done. IsActive is phase == open.
//	                     closing: a close was decided; reads drain what is
//	                     buffered, writes fail. done: the close callbacks ran
//	                     (or are running) and the buffers are recycled.
//	bits 2-3   closer    who moved the phase out of open: user, peer, detach.
//	bit  4     running   a task (OnConnect, then OnRequest) owns the handlers.
//	bit  5     connected OnConnect returned, or there is none.
//	bit  6     disc      OnDisconnect was claimed; it runs at most once.
//	bit  7     released  the owner's hold was given up.
//	bits 8-15  holds     how many holds delay the close callbacks (see hold).
//
// The goroutine whose release brings a closing connection to zero holds moves
// it to done and runs the close callbacks.
type connState struct{ v atomic.Uint32 }

const (
	phaseMask    = 0x3
	phaseOpen    = 0x0
	phaseClosing = 0x1
	phaseDone    = 0x2

	closerShift  = 2
	closerMask   = 0x3 << closerShift
	closerUser   = 0x1
	closerPeer   = 0x2
	closerDetach = 0x3

	stRunning   = 1 << 4
	stConnected = 1 << 5
	stDisc      = 1 << 6
	stReleased  = 1 << 7

	holdOne   = 1 << 8
	holdsMask = 0xff << 8
)

// hold is what a hold on the connection belongs to; release is told which.
type hold uint8

const (
	// holdOwner is taken by init: the user's, or for a connection with
	// handlers the peer's as well (a peer close ends such a connection).
	// It is given up once, whoever gives it up first.
	holdOwner hold = iota + 1
	// holdTask comes with the running bit (acquireTask): a task runs.
	holdTask
	// holdCall is taken by acquire for a call that must return before the
	// close callbacks run: OnPrepare, OnDisconnect.
	holdCall
)

// The panics of an impossible hold count. The count would otherwise wrap
// into the neighbouring bits of the word, and a close would then never
// finish, or finish twice. The holds of a connection are a handful at
// most (owner, task, OnDisconnect, OnPrepare), so 255 means a leak.
const (
	holdUnderflow = "netpoll: a connection hold was released more often than taken"
	holdOverflow  = "netpoll: 255 holds on one connection: a hold is leaking"
	taskUnheld    = "netpoll: a task hold was released with no task running"
)

// init starts the word: open, the owner's hold.
func (s *connState) init(connected bool) {
	v := uint32(holdOne)
	if connected {
		v |= stConnected
	}
	s.v.Store(v)
}

func (s *connState) phase() uint32 { return s.v.Load() & phaseMask }

func (s *connState) closer() uint32 { return s.v.Load() & closerMask >> closerShift }

// closedLocally reports a close by the user (Close or Detach), not the peer.
// It is what makes a Writer's staging call fail: after a peer close the
// connection is inactive but staging still works (the bytes can never be
// sent) and the error comes from Flush, "when flush", which is where Hertz
// expects a vanished client to show.
func (s *connState) closedLocally() bool {
	v := s.v.Load()
	return v&phaseMask != phaseOpen && v&closerMask>>closerShift != closerPeer
}

// markClose moves open to closing; it reports whether this call did it.
func (s *connState) markClose(closer uint32) bool {
	for {
		v := s.v.Load()
		if v&phaseMask != phaseOpen {
			return false
		}
		if s.v.CompareAndSwap(v, v|phaseClosing|closer<<closerShift) {
			return true
		}
	}
}

// release gives up a hold of kind h (the owner's only once: a second
// release of it does nothing). It reports whether the caller must
// finalize the connection: it was closing and this was its last hold.
func (s *connState) release(h hold) (finalize bool) {
	for {
		v := s.v.Load()
		n := v
		switch h {
		case holdOwner:
			if v&stReleased != 0 {
				return false
			}
			n |= stReleased
		case holdTask:
			if v&stRunning == 0 {
				panic(taskUnheld)
			}
			n &^= stRunning
		}
		if n&holdsMask == 0 {
			panic(holdUnderflow)
		}
		n -= holdOne
		finalize = n&phaseMask == phaseClosing && n&holdsMask == 0
		if finalize {
			n = n&^phaseMask | phaseDone
		}
		if s.v.CompareAndSwap(v, n) {
			return finalize
		}
	}
}

// acquire takes a holdCall unless the connection is done.
func (s *connState) acquire() bool {
	for {
		v := s.v.Load()
		if v&phaseMask == phaseDone {
			return false
		}
		if v&holdsMask == holdsMask {
			panic(holdOverflow)
		}
		if s.v.CompareAndSwap(v, v+holdOne) {
			return true
		}
	}
}

// acquireTask takes the running bit and a holdTask, unless a task runs or
// the connection is done.
func (s *connState) acquireTask() bool {
	for {
		v := s.v.Load()
		if v&stRunning != 0 || v&phaseMask == phaseDone {
			return false
		}
		if v&holdsMask == holdsMask {
			panic(holdOverflow)
		}
		if s.v.CompareAndSwap(v, v|stRunning+holdOne) {
			return true
		}
	}
}

// running reports whether a task owns the handlers.
func (s *connState) running() bool { return s.v.Load()&stRunning != 0 }

// setConnected records the end of OnConnect. It reports whether the caller
// must run OnDisconnect: either side closed the connection meanwhile.
func (s *connState) setConnected() (disconnect bool) {
	for {
		v := s.v.Load()
		n := v | stConnected
		disconnect = v&phaseMask != phaseOpen && v&stDisc == 0
		if disconnect {
			n |= stDisc
		}
		if s.v.CompareAndSwap(v, n) {
			return disconnect
		}
	}
}

// claimDisconnect reports whether the caller, seeing a peer close, must run
// OnDisconnect: only once OnConnect has returned, and only once.
func (s *connState) claimDisconnect() bool {
	for {
		v := s.v.Load()
		if v&stConnected == 0 || v&stDisc != 0 {
			return false
		}
		if s.v.CompareAndSwap(v, v|stDisc) {
			return true
		}
	}
}

// Close closes the connection; it is idempotent and returns nil. The first
// call wakes blocked reads and Flushes with ErrConnClosed and closes the fd.
// The close callbacks run before Close returns unless something else holds
// the connection: a task (OnConnect or OnRequest, this call's own caller
// included), OnDisconnect or OnPrepare. The last of those to return runs
// them.
func (c *connection) Close() error {
	c.closeAs(closerUser)
	return nil
}

// Detach is Close without closing the fd: unread input is dropped and the
// caller owns Fd() from then on. It fails with ErrConnClosed after a close by
// either side, a second Detach included.
func (c *connection) Detach() error {
	if !c.state.markClose(closerDetach) {
		return Exception(ErrConnClosed, "when detach")
	}
	c.afterMark(true)
	c.fd.drain()
	c.release(holdOwner)
	return nil
}

// orphaned is told that c's fd was closed by someone else (syscall.Close
// on Fd) and that the number now names another socket (see opOrphan): c
// makes no syscall on the number from now on, never closes it, and closes
// as if by Close, in the background, since close callbacks may block.
func (c *connection) orphaned() {
	c.fd.close(true)
	go c.closeAs(closerUser)
}

// closeAs marks the connection closed by closer, if it is the first, and
// gives up the owner's hold.
func (c *connection) closeAs(closer uint32) {
	if c.state.markClose(closer) {
		c.afterMark(false)
	}
	c.release(holdOwner)
}

// peerClosed handles a hang-up or socket error, on the poller goroutine:
// the connection becomes inactive, waiters wake, the fd is released, and
// OnDisconnect and (for a connection with handlers) the close callbacks
// follow on a Runner goroutine (see disconnect). IsActive and the idle
// sweep call it too, from their own goroutines, when the poller cannot have
// bytes in flight. It reports whether this call closed the connection.
func (c *connection) peerClosed() bool {
	if !c.state.markClose(closerPeer) {
		return false
	}
	c.afterMark(false)
	c.arrivals.Add(1)
	served := c.onRequest.Load() != nil || c.onConnect.Load() != nil
	if served {
		c.startTask() // buffered input still gets its OnRequest
	}
	if !served && c.onDisconnect.Load() == nil {
		return true // a plain dialed connection: the close waits for the user's Close
	}
	if !c.state.acquire() {
		return true // the user's Close finished it meanwhile
	}
	runTask(c.context(), func() { c.disconnect(served) })
	return true
}

// disconnect runs OnDisconnect after a peer close, then releases the hold
// peerClosed took and, for a connection with handlers, the owner's hold
// (the peer's close ends it). It releases them even when OnDisconnect
// panics, so the close callbacks still run and the buffers are still
// recycled before the panic goes on into the Runner.
func (c *connection) disconnect(served bool) {
	defer func() {
		r := recover()
		if r != nil {
			c.stats().panics.Add(1)
		}
		if served {
			c.release(holdOwner)
		}
		c.release(holdCall)
		if r != nil {
			panic(r)
		}
	}()
	if h := c.onDisconnect.Load(); h != nil && c.state.claimDisconnect() {
		(*h)(c.context(), c)
	}
}

// afterMark follows the first move out of open: detach from the poller, wake
// waiters, and request the fd's close (keep: leave it to the caller).
func (c *connection) afterMark(keep bool) {
	c.stats().closed.Add(1)
	_ = c.op.Control(PollDetach)
	c.fd.close(keep)
	c.wakeRead()
	c.wakeWrite()
}

// release gives up hold h and, when that was the last hold of a closing
// connection, finalizes it. Every hold is given up here.
func (c *connection) release(h hold) {
	if c.state.release(h) {
		c.finalize()
	}
}

// finalize runs once, by whoever released the last hold of a closing
// connection: the close callbacks, last added first, then the recycling of
// both buffers.
func (c *connection) finalize() {
	c.closeMu.Lock()
	callbacks := c.closeCallbacks
	c.closeCallbacks = nil
	c.closeMu.Unlock()
	for n := callbacks; n != nil; n = n.next {
		_ = n.fn(c)
	}
	c.stopTimers()
	c.unpauseAtClose()
	c.inMu.Lock()
	c.consumed(c.in.Len()) // unread input is dropped
	_ = c.in.Close()
	c.inMu.Unlock()
	c.outMu.Lock()
	if n := c.out.Len(); n > 0 {
		c.stats().outBuffered.Add(-int64(n)) // unsent output too
	}
	_ = c.out.Close()
	c.outMu.Unlock()
	if c.server != nil {
		c.server.forget(c)
	}
}

// fdRef guards the file descriptor against reuse while a syscall uses it.
// The poller's read and a Flush's write each hold a reference for the length
// of one syscall; closing sets fdClosing, and whoever leaves the count at zero
// with fdClosing set closes the fd (destroy).
type fdRef struct {
	fd   int32 // fd numbers fit; the struct stays 8 bytes
	refs atomic.Int32
}

// num returns the fd number.
func (f *fdRef) num() int { return int(f.fd) }

// The flags of fdRef.refs sit above the reference count, which counts
// syscalls in flight on one fd and never comes near them.
const (
	fdClosing = 1 << 30 // close requested
	fdKeep    = 1 << 29 // detach: the fd goes to the caller, not closed

	// minClosableFd: fds 0, 1 and 2 are the process's standard input,
	// output and error. A connection made on one of them (NewFDConnection
	// with a number the caller got wrong) never closes it, as in the
	// reference.
	minClosableFd = 3
)

// acquire takes a reference unless a close was requested.
func (f *fdRef) acquire() bool {
	for {
		v := f.refs.Load()
		if v&fdClosing != 0 {
			return false
		}
		if f.refs.CompareAndSwap(v, v+1) {
			return true
		}
	}
}

// release drops a reference and closes the fd if it was the last one after a close request.
func (f *fdRef) release() {
	if v := f.refs.Add(-1); v&^fdKeep == fdClosing {
		f.destroy(v)
	}
}

// close requests the close; keep leaves the fd open for the caller (Detach).
// It reports whether this call was the first request.
func (f *fdRef) close(keep bool) bool {
	flag := int32(fdClosing)
	if keep {
		flag |= fdKeep
	}
	for {
		v := f.refs.Load()
		if v&fdClosing != 0 {
			return false
		}
		if f.refs.CompareAndSwap(v, v|flag) {
			if v == 0 {
				f.destroy(v | flag)
			}
			return true
		}
	}
}

// drain waits until no syscall holds the fd; each holds it for one
// non-blocking syscall, so this is short.
func (f *fdRef) drain() {
	for f.refs.Load()&^(fdClosing|fdKeep) != 0 {
		runtime.Gosched()
	}
}

// destroy closes the fd, unless it was detached; it runs once, from the
// call that left no reference after the close request.
func (f *fdRef) destroy(v int32) {
	if v&fdKeep == 0 && f.fd >= minClosableFd {
		_ = unix.Close(f.num())
	}
}
