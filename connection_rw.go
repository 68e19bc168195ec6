//go:build darwin || freebsd || linux

package netpoll

// The Reader and Writer of a connection, over its two buffers.
//
// Each Reader method waits (waitInput, connection_io.go) until the bytes it
// needs are buffered, then does its work on the input buffer under inMu.
// Buffered bytes stay readable after a close until the close callbacks have
// run and the buffer is recycled.
//
// Each Writer method stages bytes in the output buffer under outMu; after a
// local Close or Detach they fail with ErrConnClosed (never panic), after a
// peer close they work and Flush fails. Flush and Write send them
// (flushLocked, connection_io.go), holding outMu so that sends never
// interleave.

// inputErr turns an input-buffer error into the connection's: the buffer only
// fails when it was recycled at close.
func (c *connection) inputErr(err error) error {
	if err != nil && c.state.phase() != phaseOpen {
		return c.readClosedErr()
	}
	return err
}

// remoteString names the peer in the text of a timeout.
func (c *connection) remoteString() string {
	if c.remote == nil {
		return "unknown address"
	}
	return c.remote.String()
}

// Next returns the next n bytes, valid until Release. It blocks as Reader says;
// n <= 0 returns (nil, nil) at once.
func (c *connection) Next(n int) (p []byte, err error) {
	if n <= 0 {
		return nil, nil
	}
	if err = c.waitInput(n); err != nil {
		return nil, err
	}
	c.inMu.Lock()
	p, err = c.in.Next(n)
	c.inMu.Unlock()
	if err == nil {
		c.consumed(n)
	}
	return p, c.inputErr(err)
}

// Peek returns the next n bytes without consuming them; the slice stays
// valid until Release, even if the bytes are consumed meanwhile. It blocks
// as Reader says; n <= 0 returns (nil, nil) at once.
func (c *connection) Peek(n int) (buf []byte, err error) {
	if n <= 0 {
		return nil, nil
	}
	if err = c.waitInput(n); err != nil {
		return nil, err
	}
	c.inMu.Lock()
	buf, err = c.in.Peek(n)
	c.inMu.Unlock()
	return buf, c.inputErr(err)
}

// Skip consumes n bytes. It blocks as Reader says; n <= 0 returns nil at once.
func (c *connection) Skip(n int) (err error) {
	if n <= 0 {
		return nil
	}
	if err = c.waitInput(n); err != nil {
		return err
	}
	c.inMu.Lock()
	err = c.in.Skip(n)
	c.inMu.Unlock()
	if err == nil {
		c.consumed(n)
	}
	return c.inputErr(err)
}

// ReadString consumes n bytes into a new string. It blocks as Reader says;
// n <= 0 returns ("", nil) at once.
func (c *connection) ReadString(n int) (s string, err error) {
	if n <= 0 {
		return "", nil
	}
	if err = c.waitInput(n); err != nil {
		return "", err
	}
	c.inMu.Lock()
	s, err = c.in.ReadString(n)
	c.inMu.Unlock()
	if err == nil {
		c.consumed(n)
	}
	return s, c.inputErr(err)
}

// ReadBinary consumes n bytes into a new slice owned by the caller. It blocks
// as Reader says; n <= 0 returns (nil, nil) at once.
func (c *connection) ReadBinary(n int) (p []byte, err error) {
	if n <= 0 {
		return nil, nil
	}
	if err = c.waitInput(n); err != nil {
		return nil, err
	}
	c.inMu.Lock()
	p, err = c.in.ReadBinary(n)
	c.inMu.Unlock()
	if err == nil {
		c.consumed(n)
	}
	return p, c.inputErr(err)
}

// ReadByte consumes one byte. It blocks as Reader says.
func (c *connection) ReadByte() (b byte, err error) {
	if err = c.waitInput(1); err != nil {
		return 0, err
	}
	c.inMu.Lock()
	b, err = c.in.ReadByte()
	c.inMu.Unlock()
	if err == nil {
		c.consumed(1)
	}
	return b, c.inputErr(err)
}

// Slice consumes n bytes into a read-only Reader sharing their memory, then
// releases the rest of the consumed input. It blocks as Reader says; n <= 0
// returns an empty LinkBuffer and releases nothing.
func (c *connection) Slice(n int) (r Reader, err error) {
	if n <= 0 {
		return NewLinkBuffer(), nil
	}
	if err = c.waitInput(n); err != nil {
		return nil, err
	}
	c.inMu.Lock()
	r, err = c.in.Slice(n)
	c.inMu.Unlock()
	if err != nil {
		return nil, c.inputErr(err)
	}
	c.consumed(n)
	return r, nil
}

// Until returns the bytes up to and including the first delim. It waits for
// delim to arrive; if the wait fails, it returns every buffered byte
// (consumed) together with the error.
func (c *connection) Until(delim byte) (line []byte, err error) {
	searched := 0
	for {
		c.inMu.Lock()
		line, searched, err = c.in.until(delim, searched)
		c.inMu.Unlock()
		if err == nil {
			c.consumed(len(line))
		}
		if err != errNoDelim {
			return line, c.inputErr(err)
		}
		// A miss searched every buffered byte: wait for one more.
		if err = c.waitInput(searched + 1); err != nil {
			c.inMu.Lock()
			line, _ = c.in.ReadBinary(c.in.Len())
			c.inMu.Unlock()
			c.consumed(len(line))
			return line, err
		}
	}
}

// Release recycles the memory of everything consumed; slices from Next and
// Peek are invalid afterwards. After a close it returns nil.
func (c *connection) Release() (err error) {
	c.inMu.Lock()
	err = c.in.Release()
	c.inMu.Unlock()
	c.caughtUp()
	if err != nil && c.state.phase() != phaseOpen {
		return nil
	}
	return err
}

// Len returns the number of buffered input bytes. It never blocks.
func (c *connection) Len() (length int) { return c.in.Len() }

// Read copies up to len(p) buffered bytes, waiting for at least one, and
// releases what it consumed. At the end of the stream it returns an error
// matching ErrEOF (not io.EOF). An empty p returns (0, nil) at once.
func (c *connection) Read(p []byte) (n int, err error) {
	if len(p) == 0 {
		return 0, nil
	}
	if err = c.waitInput(1); err != nil {
		return 0, err
	}
	c.inMu.Lock()
	n = min(len(p), c.in.Len())
	var buf []byte
	if buf, err = c.in.Next(n); err == nil {
		copy(p, buf)
		err = c.in.Release()
		c.consumed(n)
	}
	c.inMu.Unlock()
	if err != nil {
		return 0, c.inputErr(err)
	}
	return n, nil
}

// closedWrite is the error of a Writer call on a closed connection.
func (c *connection) closedWrite(op string) error { return Exception(ErrConnClosed, op) }

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
	if c.state.closedLocally() {
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
	if c.state.closedLocally() {
		return c.closedWrite("when malloc ack")
	}
	c.outMu.Lock()
	err = c.out.MallocAck(n)
	c.outMu.Unlock()
	return c.outErr(err, "when malloc ack")
}

// WriteString stages s (by reference above BinaryInplaceThreshold bytes).
func (c *connection) WriteString(s string) (n int, err error) {
	if c.state.closedLocally() {
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
	if c.state.closedLocally() {
		return 0, c.closedWrite("when write binary")
	}
	c.outMu.Lock()
	n, err = c.out.WriteBinary(b)
	c.outMu.Unlock()
	return n, c.outErr(err, "when write binary")
}

// WriteByte stages one byte.
func (c *connection) WriteByte(b byte) (err error) {
	if c.state.closedLocally() {
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
	if c.state.closedLocally() {
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
	if c.state.closedLocally() {
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
	if !c.isOpen() {
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
	if !c.isOpen() {
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
