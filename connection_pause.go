//go:build darwin || dragonfly || freebsd || linux || netbsd || openbsd

package netpoll

import "time"

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
// paused and pauseOff change under ioMu together with the registration;
// the poller sets paused before it looks for a waiting reader, and a reader
// publishes waitRead before it looks at paused, so one of the two always
// sees the other.
const (
	inputPauseAbove  = 8 << 20
	inputResumeBelow = 6 << 20
	pauseGrace       = 250 * time.Millisecond
)

// applyInterest registers the interest the flags say; ioMu is held. It
// holds an fd reference, so the change never reaches a reused fd number.
func (c *connection) applyInterest() error {
	p, ok := c.op.poll.(*defaultPoll)
	if !ok {
		return Exception(ErrUnsupported, "foreign poller")
	}
	if !c.fd.acquire() {
		return Exception(ErrConnClosed, "when changing the poller interest")
	}
	defer c.fd.release()
	return p.setInterest(c.op, !c.paused.Load(), c.wantOut)
}

// wantWrite asks for writability reports (a Flush waits) or stops them.
func (c *connection) wantWrite(on bool) error {
	c.ioMu.Lock()
	c.wantOut = on
	err := c.applyInterest()
	c.ioMu.Unlock()
	return err
}

// pauseIfBehind pauses the input of a connection whose reader is behind and
// not waiting. The poller calls it after a read, before it reports the
// arrival. A Flush already waiting is woken, to wait again with a grace.
func (c *connection) pauseIfBehind() {
	if !canPauseInput || c.in.Len() < inputPauseAbove || c.pauseOff.Load() || c.paused.Load() {
		return
	}
	c.ioMu.Lock()
	c.paused.Store(true)
	if c.waitRead.Load() != 0 || c.applyInterest() != nil {
		c.paused.Store(false)
	} else if c.wantOut {
		c.wakeWrite()
	}
	c.ioMu.Unlock()
}

// resumeInput resumes a paused input.
func (c *connection) resumeInput() {
	if !c.paused.Load() {
		return
	}
	c.ioMu.Lock()
	if c.paused.Load() {
		c.paused.Store(false)
		_ = c.applyInterest()
	}
	c.ioMu.Unlock()
}

// caughtUp resumes the input, and allows pausing again, once the reader is
// below inputResumeBelow.
func (c *connection) caughtUp() {
	if (c.paused.Load() || c.pauseOff.Load()) && c.in.Len() < inputResumeBelow {
		c.pauseOff.Store(false)
		c.resumeInput()
	}
}

// stopPausing resumes the input until the reader catches up: a Flush has
// waited pauseGrace on a peer that may be waiting on us.
func (c *connection) stopPausing() {
	c.pauseOff.Store(true)
	c.resumeInput()
}
