//go:build darwin || freebsd || linux

package netpoll

import (
	"errors"

	"golang.org/x/sys/unix"
)

// What the poller does for a connection. Everything here runs on the poller
// goroutine and never blocks: one read per readiness report (level-triggered
// polling reports again if more is pending), except after a hang-up, when
// the input is drained to EOF before the close is acted on, so that no byte
// the peer sent before closing is lost.

// maxReadSize bounds one read; the read size starts at the configured buffer
// size, doubles while reads fill it, and halves when they come back small.
const maxReadSize = 8 << 20

var errWouldBlock = errors.New("would block")

// onEvent is the connection's pollHandler.
func (c *connection) onEvent(_ Poll, flags pollFlags) {
	if flags&pollOut != 0 {
		_ = c.wantWrite(false)
		c.wakeWrite()
	}
	if flags&pollIn == 0 {
		return
	}
	for {
		n, err := c.fill()
		if n > 0 {
			if flags&pollHup == 0 { // a hang-up is read to its end: no pausing
				c.pauseIfBehind()
			}
			c.arrived()
		}
		switch {
		case err == errWouldBlock && flags&pollHup == 0:
			return
		case err == nil && flags&pollHup != 0:
			continue // drain everything the peer sent before closing
		case err == nil:
			return
		}
		c.peerClosed()
		return
	}
}

// scratchSize is the size of a poller's scratch buffer: reads of at most
// this size go through it.
const scratchSize = appendReadGrowth

// fill reads into the input buffer: once, or twice when a read size grown
// for a large message meets a drained buffer (see below). err is nil after
// a read of n > 0 bytes, errWouldBlock when nothing was there, and
// otherwise the end of the stream (n == 0) or the socket's error.
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
func (c *connection) fill() (n int, err error) {
	if !c.fd.acquire() {
		return 0, unix.EBADF
	}
	defer c.fd.release()
	size := int(c.readSize)
	var scratch []byte
	if p, ok := c.op.poll.(*defaultPoll); ok {
		scratch = p.scratch
	}
	switch {
	case size <= len(scratch):
		if n, err = c.readScratch(scratch[:size]); n > 0 {
			c.adaptReadSize(n, size)
		}
	case len(scratch) > 0 && c.in.Len() == 0:
		n, err = c.readScratch(scratch)
		if n == len(scratch) {
			if m, booked, _ := c.readInPlace(size); m > 0 {
				c.adaptReadSize(m, booked)
				n += m
			}
		} else if n > 0 {
			c.readSize = int32(defaultBufferSize())
		}
	default:
		var booked int
		if n, booked, err = c.readInPlace(size); n > 0 {
			c.adaptReadSize(n, booked)
		}
	}
	switch {
	case n > 0:
		return n, nil
	case err == unix.EAGAIN:
		return 0, errWouldBlock
	case err == nil:
		return 0, unix.ECONNRESET // end of stream
	}
	return 0, err
}

// readScratch reads into the poller's scratch buffer p and copies what came
// into the input buffer.
func (c *connection) readScratch(p []byte) (n int, err error) {
	if n, err = readFd(c.fd.num(), p); n > 0 {
		c.inMu.Lock()
		cerr := c.in.appendRead(p[:n])
		c.inMu.Unlock()
		if cerr != nil {
			return 0, unix.EBADF
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
		return 0, 0, unix.EBADF
	}
	n, err = readFd(c.fd.num(), buf)
	c.inMu.Lock()
	_ = c.in.bookAck(n)
	c.inMu.Unlock()
	return n, len(buf), err
}

// readFd is read(2), retried on EINTR; n is never negative.
func readFd(fd int, p []byte) (n int, err error) {
	for {
		n, err = unix.Read(fd, p)
		if err != unix.EINTR {
			return max(n, 0), err
		}
	}
}

func (c *connection) adaptReadSize(n, booked int) {
	switch {
	case n == booked && c.readSize < maxReadSize:
		c.readSize *= 2
	case n < int(c.readSize/4) && int(c.readSize) > defaultBufferSize():
		c.readSize /= 2
	}
}

// arrived tells the blocked reader and the handlers that input arrived.
func (c *connection) arrived() {
	c.arrivals.Add(1)
	if w := c.waitRead.Load(); w > 0 && int64(c.in.Len()) >= w {
		c.wakeRead()
	}
	c.startTask()
}

// peerClosed handles a hang-up or socket error: the connection becomes
// inactive, waiters wake, the fd is released, and OnDisconnect and (for a
// connection with handlers) the close callbacks follow on a Runner goroutine
// (see disconnect).
func (c *connection) peerClosed() {
	if !c.state.markClose(closerPeer) {
		return
	}
	c.afterMark(false)
	c.arrivals.Add(1)
	served := c.onRequest.Load() != nil || c.onConnect.Load() != nil
	if served {
		c.startTask() // buffered input still gets its OnRequest
	}
	if !served && c.onDisconnect.Load() == nil {
		return // a plain dialed connection: the close waits for the user's Close
	}
	if !c.state.acquire() {
		return // the user's Close finished it meanwhile
	}
	runTask(c.context(), func() { c.disconnect(served) })
}

// disconnect runs OnDisconnect after a peer close, then releases the hold
// peerClosed took and, for a connection with handlers, the owner's hold
// (the peer's close ends it). It releases them even when OnDisconnect
// panics, so the close callbacks still run and the buffers are still
// recycled before the panic goes on into the Runner.
func (c *connection) disconnect(served bool) {
	defer func() {
		if served && c.state.release(true) {
			c.finalize()
		}
		if c.state.release(false) {
			c.finalize()
		}
	}()
	if h := c.onDisconnect.Load(); h != nil && c.state.claimDisconnect() {
		(*h)(c.context(), c)
	}
}

// afterMark follows the first move out of open: detach from the poller, wake
// waiters, and request the fd's close (keep: leave it to the caller).
func (c *connection) afterMark(keep bool) {
	_ = c.op.Control(PollDetach)
	c.fd.close(keep)
	c.wakeRead()
	c.wakeWrite()
}
