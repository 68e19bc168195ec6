//go:build darwin || freebsd || linux

package netpoll

import "time"

// The Writer of a connection. Staging methods work on the output buffer
// under outMu; after a local Close or Detach they fail with ErrConnClosed
// (never panic), after a peer close they work and Flush fails.
// Flush sends: it writes directly, and when the socket is full it asks the
// poller to report writability and waits, holding outMu so that sends never
// interleave.

func (c *connection) closedWrite(op string) error { return Exception(ErrConnClosed, op) }

// closedLocally tells whether a staging call must fail: after a local
// Close or Detach. After a peer close the connection is inactive but staging
// still works (the bytes can never be sent) and the error comes from Flush,
// "when flush", which is where Hertz expects a vanished client to show.
func (c *connection) closedLocally() bool { return c.state.closedLocally() }

// outErr reports a failure of the output buffer because it was recycled by
// a close that raced the call as the connection's ErrConnClosed.
func (c *connection) outErr(err error, op string) error {
	if err == errBufferClosed {
		return c.closedWrite(op)
	}
	return err
}

// Malloc reserves n bytes of output and returns them (cap == len); fill them
// before Flush. n <= 0 gives (nil, nil); n over 1 GiB an error.
func (c *connection) Malloc(n int) (buf []byte, err error) {
	if c.closedLocally() {
		return nil, c.closedWrite("when malloc")
	}
	c.outMu.Lock()
	buf, err = c.out.Malloc(n)
	c.outMu.Unlock()
	return buf, c.outErr(err, "when malloc")
}

// MallocLen returns the number of staged, unflushed bytes.
func (c *connection) MallocLen() (length int) {
	c.outMu.Lock()
	length = c.out.MallocLen()
	c.outMu.Unlock()
	return length
}

// MallocAck keeps the first n staged bytes and drops the rest. n < 0, or
// over MallocLen or 1 GiB, is an error that changes nothing.
func (c *connection) MallocAck(n int) (err error) {
	if c.closedLocally() {
		return c.closedWrite("when malloc ack")
	}
	c.outMu.Lock()
	err = c.out.MallocAck(n)
	c.outMu.Unlock()
	return c.outErr(err, "when malloc ack")
}

// WriteString stages s (by reference above BinaryInplaceThreshold bytes).
func (c *connection) WriteString(s string) (n int, err error) {
	if c.closedLocally() {
		return 0, c.closedWrite("when write string")
	}
	c.outMu.Lock()
	n, err = c.out.WriteString(s)
	c.outMu.Unlock()
	return n, c.outErr(err, "when write string")
}

// WriteBinary stages b (by reference above BinaryInplaceThreshold bytes: do
// not change b until it is flushed).
func (c *connection) WriteBinary(b []byte) (n int, err error) {
	if c.closedLocally() {
		return 0, c.closedWrite("when write binary")
	}
	c.outMu.Lock()
	n, err = c.out.WriteBinary(b)
	c.outMu.Unlock()
	return n, c.outErr(err, "when write binary")
}

// WriteByte stages one byte.
func (c *connection) WriteByte(b byte) (err error) {
	if c.closedLocally() {
		return c.closedWrite("when write byte")
	}
	c.outMu.Lock()
	err = c.out.WriteByte(b)
	c.outMu.Unlock()
	return c.outErr(err, "when write byte")
}

// WriteDirect splices p, by reference, before the last remainCap staged
// bytes. An empty p or remainCap < 0 does nothing; remainCap over MallocLen
// is an error.
func (c *connection) WriteDirect(p []byte, remainCap int) (err error) {
	if c.closedLocally() {
		return c.closedWrite("when write direct")
	}
	c.outMu.Lock()
	err = c.out.WriteDirect(p, remainCap)
	c.outMu.Unlock()
	return c.outErr(err, "when write direct")
}

// Append moves every byte of w (a *LinkBuffer) to the staged output without
// copying. A nil *LinkBuffer does nothing; another Writer type, a nil one
// included, is an error, and so is a closed w (not ErrConnClosed: the
// connection stays open).
func (c *connection) Append(w Writer) (err error) {
	if c.closedLocally() {
		return c.closedWrite("when append")
	}
	c.outMu.Lock()
	err = c.out.Append(w)
	c.outMu.Unlock()
	return c.outErr(err, "when append")
}

// Flush sends every staged byte. It blocks until all are written, the write
// deadline or timeout passes (ErrWriteTimeout; the rest stays queued and the
// connection open), the connection closes (ErrConnClosed), or the socket
// fails (the errno, " when flush"). Concurrent calls are serialised.
func (c *connection) Flush() error {
	if !c.IsActive() {
		return c.closedWrite("when flush")
	}
	c.outMu.Lock()
	err := c.flushLocked()
	c.outMu.Unlock()
	return err
}

// Write copies p to the output and flushes it; it returns len(p) and the
// Flush error. Concurrent calls are serialised, never refused. An empty p
// flushes what is staged and returns 0; an inactive connection gives
// ErrConnClosed "when write".
func (c *connection) Write(p []byte) (n int, err error) {
	if !c.IsActive() {
		return 0, c.closedWrite("when write")
	}
	c.outMu.Lock()
	defer c.outMu.Unlock()
	for rest := p; len(rest) > 0; {
		chunk := rest[:min(len(rest), maxNodeSize)]
		buf, err := c.out.Malloc(len(chunk))
		if err != nil {
			return 0, c.outErr(err, "when write")
		}
		rest = rest[copy(buf, chunk):]
	}
	return len(p), c.flushLocked()
}

// flushLocked publishes the staged bytes and sends them all; outMu is held.
func (c *connection) flushLocked() error {
	if err := c.out.Flush(); err != nil {
		return c.closedWrite("when flush")
	}
	var dl int64
	waited := false
	for c.out.Len() > 0 {
		if !c.IsActive() {
			return c.closedWrite("when flush")
		}
		n, err := c.send()
		if n > 0 {
			_ = c.out.Skip(n)
			_ = c.out.Release()
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

// waitWritable asks the poller for one writability report and waits for it.
// While the input is paused it waits at most pauseGrace before it stops the
// pausing (see connection_pause.go), then waits on.
func (c *connection) waitWritable(dl int64) error {
	w := c.waiters()
	if err := c.wantWrite(true); err != nil || !c.IsActive() {
		return c.closedWrite("when flush")
	}
	for {
		until, grace := dl, false
		if c.inputPaused() {
			if g := time.Now().Add(pauseGrace).UnixNano(); dl == 0 || g < dl {
				until, grace = g, true
			}
		}
		if w.writeTimer.sleep(w.writeCh, until) {
			return nil
		}
		if !grace {
			_ = c.wantWrite(false)
			return Exception(ErrWriteTimeout, c.remoteString())
		}
		c.stopPausing()
	}
}
