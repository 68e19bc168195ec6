//go:build darwin || freebsd || linux

package netpoll

// The Reader of a connection: each method waits (see waitInput) until the
// bytes it needs are buffered, then does its work on the input buffer under
// inMu. Buffered bytes stay readable after a close until the close callbacks
// have run and the buffer is recycled.

// waitInput blocks until n bytes are buffered, the read deadline or timeout
// passes (ErrReadTimeout), or the connection closes (ErrEOF after a peer
// close, ErrConnClosed after a local one). Only one reader may wait at a time.
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

// inputErr turns an input-buffer error into the connection's: the buffer only
// fails when it was recycled at close.
func (c *connection) inputErr(err error) error {
	if err != nil && c.state.phase() != phaseOpen {
		return c.readClosedErr()
	}
	return err
}

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
		if err != errNoDelim {
			return line, c.inputErr(err)
		}
		// A miss searched every buffered byte: wait for one more.
		if err = c.waitInput(searched + 1); err != nil {
			c.inMu.Lock()
			line, _ = c.in.ReadBinary(c.in.Len())
			c.inMu.Unlock()
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
	}
	c.inMu.Unlock()
	if err != nil {
		return 0, c.inputErr(err)
	}
	return n, nil
}
