//go:build darwin || freebsd || linux

package netpoll

import (
	"errors"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// A connection's socket I/O, read side then write side:
//
//   - Reading runs on the poller goroutine and never blocks: onEvent reads
//     (fill) into the input buffer once per readiness report
//     (level-triggered polling reports again if more is pending), except
//     after a hang-up, when the input is drained to EOF before the close is
//     acted on, so that no byte the peer sent before closing is lost. A
//     reader that needs more than is buffered waits in waitInput.
//   - Writing runs on the goroutine that calls Flush (flushLocked): it
//     sends directly, and when the socket is full it asks the poller to
//     report writability (wantWrite) and waits (waitWritable), holding
//     outMu so that sends never interleave.
//
// Every syscall on the fd holds a reference to it (fdRef, connection_state.go),
// so a close never hands the number to another socket under it. Pausing the
// input is a small policy of its own, at the end of this file, that both
// sides call. The blocking waits of Flush (wantWrite, waitWritable) are in
// connection_wait.go, with what blocked calls sleep on.

// The internal signals of the I/O paths. None of them reaches a caller:
// onEvent and flushLocked turn them into a wait, a close or nothing.
var (
	errWouldBlock = errors.New("would block")                  // EAGAIN: wait for the poller
	errPeerEOF    = errors.New("netpoll: end of stream")       // a read returned 0 bytes
	errRecycled   = errors.New("netpoll: closed under a read") // the fd's close was requested, or the input buffer recycled
)

// poller returns the connection's poller, which init set.
func (c *connection) poller() *defaultPoll { return c.op.poll }

// onEvent is the connection's pollHandler. A report is settled when the
// read came back short of its buffer or found nothing: the socket's queue
// was empty then, and whatever comes later raises a new report. A full read,
// a hang-up or an error leaves it to the next poll.
func (c *connection) onEvent(_ Poll, flags pollFlags) (settled bool) {
	if flags&pollOut != 0 {
		_ = c.wantWrite(false)
		c.wakeWrite()
	}
	if flags&pollIn == 0 {
		return flags&pollHup == 0
	}
	for {
		n, full, err := c.fill()
		if n > 0 {
			if flags&pollHup == 0 { // a hang-up is read to its end: no pausing
				c.pauseIfBehind()
			}
			c.arrived()
		}
		switch {
		case err == errWouldBlock && flags&pollHup == 0:
			return true
		case err == nil && flags&pollHup != 0:
			continue // drain everything the peer sent before closing
		case err == nil:
			return !full
		}
		c.peerClosed()
		return false
	}
}

const (
	// scratchSize is the size of a poller's scratch buffer: reads of at
	// most this size go through it. It is the largest read appendRead
	// copies, so a copied read never needs more than one new node.
	scratchSize = appendReadGrowth
	// maxReadSize bounds the read size, which starts at the configured
	// buffer size, doubles while reads fill it and halves when they come
	// back small. One read books no more memory than a reader may leave
	// unread before its input pauses (inputPauseAbove).
	maxReadSize = 8 << 20
	// readShrinkDivisor: a read that brings less than this fraction of the
	// read size halves it. Between that and a full read the size stays, so
	// that it does not flap between two sizes on a steady stream.
	readShrinkDivisor = 4
)

// fill reads into the input buffer: once, or twice when a read size grown
// for a large message meets a drained buffer (see below). err is nil after
// a read of n > 0 bytes, errWouldBlock when nothing was there, errPeerEOF at
// the end of the stream, errRecycled when the connection was closed under
// the read, and otherwise the socket's error; full reports that the last
// read filled its buffer, so more may be pending.
//
// A small read goes to the poller's scratch buffer (fill runs only on the
// connection's poller goroutine) and is copied into the buffer's tail or a
// node of its own size: a connection that waits for its handler then holds
// 2 KiB for a 1 KiB request rather than a whole read size. Once reads grow
// past scratchSize they land in place, uncopied, except the first read into
// a drained buffer: it goes through the scratch buffer too, since what
// follows a large message is often small, and the read in place follows
// only if the scratch buffer came back full. When it did not, the large
// message is over and the read size starts again from the configured one.
// A read in place that brings few bytes into a node of its own is copied
// out of it as well (see bookAck): a few unread bytes never pin the memory
// a large message needed.
func (c *connection) fill() (n int, full bool, err error) {
	if !c.fd.acquire() {
		return 0, false, errRecycled
	}
	defer c.fd.release()
	size := int(c.readSize)
	scratch := c.poller().scratch
	switch {
	case size <= len(scratch):
		if n, err = c.readScratch(scratch[:size]); n > 0 {
			c.adaptReadSize(n, size)
		}
		full = n == size
	case c.in.Len() == 0:
		n, err = c.readScratch(scratch)
		full = n == len(scratch)
		if full {
			m, booked, _ := c.readInPlace(size)
			if m > 0 {
				c.adaptReadSize(m, booked)
				n += m
			} else {
				c.readSize = int32(defaultBufferSize()) // the message ended at the scratch buffer's size
			}
			full = m == booked
		} else if n > 0 {
			c.readSize = int32(defaultBufferSize())
		}
	default:
		var booked int
		if n, booked, err = c.readInPlace(size); n > 0 {
			c.adaptReadSize(n, booked)
		}
		full = n == booked
	}
	switch {
	case n > 0:
		c.poller().stats.own.bytesRead.Add(uint64(n)) // fill runs on the poller goroutine
		c.touch()
		return n, full, nil
	case err == unix.EAGAIN:
		return 0, false, errWouldBlock
	case err == nil:
		return 0, false, errPeerEOF
	}
	return 0, false, err
}

// readScratch reads into the poller's scratch buffer p and copies what came
// into the input buffer.
func (c *connection) readScratch(p []byte) (n int, err error) {
	if n, err = readFd(c.fd.num(), p); n > 0 {
		c.inMu.Lock()
		cerr := c.in.appendRead(p[:n])
		c.inMu.Unlock()
		if cerr != nil {
			return 0, errRecycled
		}
	}
	return n, err
}

// readInPlace reads into free space booked in the input buffer, without
// holding inMu during the read; booked is the size of that space.
func (c *connection) readInPlace(size int) (n, booked int, err error) {
	c.inMu.Lock()
	buf := c.in.book(size)
	c.inMu.Unlock()
	if buf == nil {
		return 0, 0, errRecycled
	}
	n, err = readFd(c.fd.num(), buf)
	c.inMu.Lock()
	aerr := c.in.bookAck(n)
	c.inMu.Unlock()
	if aerr != nil { // recycled under the read: the bytes are dropped, uncounted
		return 0, len(buf), errRecycled
	}
	return n, len(buf), err
}

// readFd is read(2) (sysRead: sys_linux.go, sys_bsd.go), retried on EINTR;
// n is never negative.
func readFd(fd int, p []byte) (n int, err error) {
	for {
		n, err = sysRead(fd, p)
		if err != unix.EINTR {
			return max(n, 0), err
		}
	}
}

func (c *connection) adaptReadSize(n, booked int) {
	switch {
	case n == booked && c.readSize < maxReadSize:
		c.readSize *= 2
	case n < int(c.readSize/readShrinkDivisor) && int(c.readSize) > defaultBufferSize():
		c.readSize /= 2
	}
}

// waitInput blocks until n bytes are buffered, the read deadline or timeout
// passes (ErrReadTimeout), or the connection closes (ErrEOF after a peer
// close, ErrConnClosed after a local one). Only one reader may wait at a
// time. A paused input is resumed: the reader waits for more.
func (c *connection) waitInput(n int) error {
	if c.in.Len() >= n {
		return nil
	}
	dl := deadline(&c.readDeadline, &c.readTimeout)
	w := c.waiters()
	for {
		c.waitRead.Store(int64(n))
		if c.in.Len() >= n {
			c.waitRead.Store(0)
			return nil
		}
		if c.state.phase() != phaseOpen {
			c.waitRead.Store(0)
			return c.readClosedErr()
		}
		c.resumeIfPaused()
		ok := w.readTimer.sleep(w.readCh, dl)
		c.waitRead.Store(0)
		if !ok {
			if c.in.Len() >= n {
				return nil
			}
			return Exception(ErrReadTimeout, c.remoteString())
		}
	}
}

// readClosedErr is the error of a read that cannot be satisfied after a close.
func (c *connection) readClosedErr() error {
	switch c.state.closer() {
	case closerPeer:
		return Exception(ErrEOF, "peer close")
	default:
		return Exception(ErrConnClosed, "self close")
	}
}

// flushLocked publishes the staged bytes and sends them all; outMu is held.
func (c *connection) flushLocked() error {
	queued := c.out.Len()
	if err := c.out.Flush(); err != nil {
		return c.closedWrite("when flush")
	}
	if n := c.out.Len() - queued; n > 0 {
		c.stats().outBuffered.Add(int64(n))
	}
	var dl int64
	waited := false
	for c.out.Len() > 0 {
		if !c.isOpen() {
			return c.closedWrite("when flush")
		}
		n, err := c.send()
		if n > 0 {
			_ = c.out.Skip(n)
			_ = c.out.Release()
			c.sent(n)
		}
		if err == nil {
			continue
		}
		if err != errWouldBlock {
			return Exception(err, "when flush")
		}
		if !waited {
			dl, waited = deadline(&c.writeDeadline, &c.writeTimeout), true
		}
		if err = c.waitWritable(dl); err != nil {
			return err
		}
	}
	return nil
}

// maxSend bounds the bytes one writev may carry: the kernel caps a call
// near 2 GiB, and a larger sum of iovec lengths fails with EINVAL.
const maxSend = 1 << 30

// sendVecs holds the vectors of sends of more than smallSend segments.
// Keeping send's frame small matters: most Flushes run on fresh Runner
// goroutines, whose stacks start small and are copied to a larger one if a
// call needs it.
var sendVecs = sync.Pool{New: func() any { return new([maxIovecs][]byte) }}

// send writes as much of the flushed output as one writev takes. It fails
// with ErrConnClosed once the fd's close was requested.
func (c *connection) send() (int, error) {
	var small [smallSend][]byte
	bufs := c.out.GetBytes(small[:])
	if len(bufs) == smallSend {
		v := sendVecs.Get().(*[maxIovecs][]byte)
		bufs = c.out.GetBytes(v[:])
		defer func(n int) {
			clear(v[:n])
			sendVecs.Put(v)
		}(len(bufs))
	}
	total := 0
	for i, b := range bufs {
		if total+len(b) > maxSend {
			bufs[i] = b[:maxSend-total]
			bufs = bufs[:i+1]
			break
		}
		total += len(b)
	}
	if !c.fd.acquire() {
		return 0, ErrConnClosed
	}
	n, err := writev(c.fd.num(), bufs)
	c.fd.release()
	switch {
	case err == nil:
		return n, nil
	case err == unix.EAGAIN:
		return max(n, 0), errWouldBlock
	case err == unix.EINTR:
		return max(n, 0), nil
	}
	return max(n, 0), err
}

// applyInterest registers the interest the state says: input unless paused,
// output while a Flush waits. w.ioMu is held. It holds an fd reference, so
// the change never reaches a reused fd number.
func (c *connection) applyInterest(w *waiters) error {
	if !c.fd.acquire() {
		return Exception(ErrConnClosed, "when changing the poller interest")
	}
	defer c.fd.release()
	return c.poller().setInterest(&c.op, !c.inputPaused(), w.wantOut)
}

// maxIovecs bounds the segments of one writev.
const maxIovecs = 64

// smallSend is how many segments a flush gathers on the stack; a flush of
// more borrows a pooled vector. Keeping the frames small matters: most
// Flushes run on fresh Runner goroutines, whose stacks start small and are
// copied to a larger one if a call needs it.
const smallSend = 4

var iovecs = sync.Pool{New: func() any { return new([maxIovecs]unix.Iovec) }}

// writev writes bufs (at most maxIovecs) with one writev(2); up to smallSend
// iovecs live on the stack, more in a pooled vector. The syscall is made
// directly: x/sys has no writev wrapper for macOS or FreeBSD, where a write
// per buffer would send each as its own TCP segment under TCP_NODELAY.
// The syscalls are the platform's sysWrite and sysWritev (sys_linux.go,
// sys_bsd.go); errors go through its writeErrno (sys_linux.go,
// sys_darwin.go, sys_freebsd.go).
func writev(fd int, bufs [][]byte) (int, error) {
	if len(bufs) == 1 {
		n, err := sysWrite(fd, bufs[0])
		if e, ok := err.(unix.Errno); ok {
			err = writeErrno(e)
		}
		return n, err
	}
	var small [smallSend]unix.Iovec
	iov := small[:]
	if len(bufs) > smallSend {
		v := iovecs.Get().(*[maxIovecs]unix.Iovec)
		defer func(n int) {
			clear(v[:n])
			iovecs.Put(v)
		}(len(bufs))
		iov = v[:]
	}
	n := 0
	for _, b := range bufs {
		if len(b) > 0 {
			iov[n].Base = &b[0]
			iov[n].SetLen(len(b))
			n++
		}
	}
	if n == 0 {
		return 0, nil
	}
	r, e := sysWritev(fd, &iov[0], n)
	if e != 0 {
		return -1, writeErrno(e)
	}
	return r, nil
}

// Input backpressure. A connection whose reader falls behind stops being
// read: once inputPauseAbove unread bytes are buffered, the poller drops
// its read interest and the peer's sends wait in the kernel (TCP flow
// control) instead of in this process's memory. Reading resumes when
//   - the reader gets below inputResumeBelow (checked at Release and when
//     the handler task stops);
//   - a reader blocks for more bytes than are buffered;
//   - the handler task stops: its last OnRequest consumed nothing, so it
//     waits for more input;
//   - a Flush on the connection waited pauseGrace for the peer to take any
//     of its output. The peer may be blocked sending to us (it writes a
//     whole message before it reads the answer), so pausing stays off until
//     the reader gets below inputResumeBelow: such a peer is buffered as
//     the reference buffers everyone.
//
// So no reader or handler ever waits on a paused connection, and a peer
// that waits for us is never waited on in turn. A hang-up is still reported
// while paused, and the input is then read to its end. Pausing needs a
// poller that can watch for hang-ups without watching for input (epoll);
// on kqueue systems canPauseInput is false and input is never paused.
//
// The pause word's bits change under waiters.ioMu, together with the
// registration; the poller sets inputPaused before it looks for a waiting
// reader, and a reader publishes waitRead before it looks at the word, so
// one of the two always sees the other.
const (
	// inputPauseAbove: 8 MiB unread is far more than a handler reading
	// request by request ever leaves behind, so only a reader that stopped
	// keeping up gets there; and it keeps a fast link busy while the reader
	// catches up.
	inputPauseAbove = 8 << 20
	// inputResumeBelow is 2 MiB under the pause point, so that a reader
	// hovering about it does not change the registration (a syscall) on
	// every read.
	inputResumeBelow = 6 << 20
	// pauseGrace is long against a round trip, so that a peer merely slow
	// to read is not taken for one stuck sending to us, and short enough
	// that a pair waiting on each other gets going again at once.
	pauseGrace = 250 * time.Millisecond

	inputPaused = 1 << 0 // the input is not read: the reader is behind
	pauseOff    = 1 << 1 // no pausing until the reader catches up
)

// inputPaused reports whether the poller has stopped reading the input.
func (c *connection) inputPaused() bool { return c.pause.Load()&inputPaused != 0 }

// pauseIfBehind pauses the input of a connection whose reader is behind and
// not waiting. The poller calls it after a read, before it reports the
// arrival. A Flush already waiting is woken, to wait again with a grace.
func (c *connection) pauseIfBehind() {
	if !canPauseInput || c.in.Len() < inputPauseAbove || c.pause.Load() != 0 {
		return
	}
	w := c.waiters()
	w.ioMu.Lock()
	if c.pause.Load() == 0 {
		c.pause.Store(inputPaused)
		if c.waitRead.Load() != 0 || c.applyInterest(w) != nil {
			c.pause.Store(0)
		} else {
			c.stats().paused.Add(1)
			if w.wantOut {
				wake(w.writeCh)
			}
		}
	}
	w.ioMu.Unlock()
}

// resume resumes a paused input, setting and clearing pauseOff as told.
func (c *connection) resume(set, clear uint32) {
	w := c.waiters()
	w.ioMu.Lock()
	v := c.pause.Load()
	c.pause.Store(v&^(clear|inputPaused) | set)
	if v&inputPaused != 0 {
		c.stats().paused.Add(-1)
		_ = c.applyInterest(w)
	}
	w.ioMu.Unlock()
}

// resumeIfPaused resumes a paused input: a reader or the handler task waits
// for more.
func (c *connection) resumeIfPaused() {
	if c.inputPaused() {
		c.resume(0, 0)
	}
}

// caughtUp resumes the input, and allows pausing again, once the reader is
// below inputResumeBelow.
func (c *connection) caughtUp() {
	if c.pause.Load() != 0 && c.in.Len() < inputResumeBelow {
		c.resume(0, pauseOff)
	}
}

// unpauseAtClose takes a closing connection out of the paused count.
func (c *connection) unpauseAtClose() {
	w := c.wait.Load()
	if w == nil {
		return // never waited, so never paused: pausing makes the waiters
	}
	w.ioMu.Lock()
	if v := c.pause.Load(); v&inputPaused != 0 {
		c.pause.Store(v &^ inputPaused)
		c.stats().paused.Add(-1)
	}
	w.ioMu.Unlock()
}

// stopPausing resumes the input until the reader catches up: a Flush has
// waited pauseGrace on a peer that may be waiting on us.
func (c *connection) stopPausing() { c.resume(pauseOff, 0) }

// sent counts n bytes the kernel took from the output buffer; outMu is held.
func (c *connection) sent(n int) {
	c.wrote(n)
	c.stats().outBuffered.Add(-int64(n))
}

// wrote counts n bytes written to the socket.
func (c *connection) wrote(n int) {
	c.stats().bytesWritten.Add(uint64(n))
	c.touch()
}

// sendNow writes p to the socket, as much as it takes at once, and returns
// how much that was (0 on any failure, which the caller leaves to a Flush).
// outMu is held and nothing is staged before p.
func (c *connection) sendNow(p []byte) int {
	if !c.fd.acquire() {
		return 0
	}
	n, err := sysWrite(c.fd.num(), p)
	c.fd.release()
	if err != nil || n <= 0 {
		return 0
	}
	c.wrote(n)
	return n
}
