//go:build darwin || freebsd || linux

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
		} else if w.wantOut {
			wake(w.writeCh)
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

// stopPausing resumes the input until the reader catches up: a Flush has
// waited pauseGrace on a peer that may be waiting on us.
func (c *connection) stopPausing() { c.resume(pauseOff, 0) }
