//go:build darwin || freebsd || linux

package netpoll

// The Reader and Writer of a TLS connection, over its plaintext buffers.
// They keep the rules of a connection's (connection_rw.go): each Reader
// method waits (waitPlain) until the plaintext it needs is decrypted, then
// works on in under inMu; each Writer method stages into out under wmu, and
// Flush encrypts and sends.

// plainErr turns an error of the plaintext input buffer into the
// connection's: the buffer only fails once it was recycled at close.
func (t *tlsConn) plainErr(err error) error {
	if err != nil && t.raw.state.phase() != phaseOpen {
		return t.raw.readClosedErr()
	}
	return err
}

// Next returns the next n plaintext bytes, valid until Release. It blocks as
// Reader says; n <= 0 returns (nil, nil) at once.
func (t *tlsConn) Next(n int) (p []byte, err error) {
	if n <= 0 {
		return nil, nil
	}
	if err = t.waitPlain(n); err != nil {
		return nil, err
	}
	t.inMu.Lock()
	p, err = t.in.Next(n)
	t.inMu.Unlock()
	return p, t.plainErr(err)
}

// Peek returns the next n plaintext bytes without consuming them.
func (t *tlsConn) Peek(n int) (buf []byte, err error) {
	if n <= 0 {
		return nil, nil
	}
	if err = t.waitPlain(n); err != nil {
		return nil, err
	}
	t.inMu.Lock()
	buf, err = t.in.Peek(n)
	t.inMu.Unlock()
	return buf, t.plainErr(err)
}

// Skip consumes n plaintext bytes.
func (t *tlsConn) Skip(n int) (err error) {
	if n <= 0 {
		return nil
	}
	if err = t.waitPlain(n); err != nil {
		return err
	}
	t.inMu.Lock()
	err = t.in.Skip(n)
	t.inMu.Unlock()
	return t.plainErr(err)
}

// ReadString consumes n plaintext bytes into a new string.
func (t *tlsConn) ReadString(n int) (s string, err error) {
	if n <= 0 {
		return "", nil
	}
	if err = t.waitPlain(n); err != nil {
		return "", err
	}
	t.inMu.Lock()
	s, err = t.in.ReadString(n)
	t.inMu.Unlock()
	return s, t.plainErr(err)
}

// ReadBinary consumes n plaintext bytes into a new slice owned by the caller.
func (t *tlsConn) ReadBinary(n int) (p []byte, err error) {
	if n <= 0 {
		return nil, nil
	}
	if err = t.waitPlain(n); err != nil {
		return nil, err
	}
	t.inMu.Lock()
	p, err = t.in.ReadBinary(n)
	t.inMu.Unlock()
	return p, t.plainErr(err)
}

// ReadByte consumes one plaintext byte.
func (t *tlsConn) ReadByte() (b byte, err error) {
	if err = t.waitPlain(1); err != nil {
		return 0, err
	}
	t.inMu.Lock()
	b, err = t.in.ReadByte()
	t.inMu.Unlock()
	return b, t.plainErr(err)
}

// Slice consumes n plaintext bytes into a read-only Reader sharing their
// memory, then releases the rest of the consumed input.
func (t *tlsConn) Slice(n int) (r Reader, err error) {
	if n <= 0 {
		return NewLinkBuffer(), nil
	}
	if err = t.waitPlain(n); err != nil {
		return nil, err
	}
	t.inMu.Lock()
	r, err = t.in.Slice(n)
	t.inMu.Unlock()
	if err != nil {
		return nil, t.plainErr(err)
	}
	return r, nil
}

// Until returns the plaintext up to and including the first delim, waiting
// for it; a failed wait returns every buffered byte, consumed, with the error.
func (t *tlsConn) Until(delim byte) (line []byte, err error) {
	searched := 0
	for {
		t.inMu.Lock()
		line, searched, err = t.in.until(delim, searched)
		t.inMu.Unlock()
		if err != errNoDelim {
			return line, t.plainErr(err)
		}
		if err = t.waitPlain(searched + 1); err != nil {
			t.inMu.Lock()
			line, _ = t.in.ReadBinary(t.in.Len())
			t.inMu.Unlock()
			return line, err
		}
	}
}

// Release recycles the memory of the plaintext consumed. After a close it
// returns nil.
func (t *tlsConn) Release() (err error) {
	t.inMu.Lock()
	err = t.in.Release()
	t.inMu.Unlock()
	if err != nil && t.raw.state.phase() != phaseOpen {
		return nil
	}
	return err
}

// Len returns the number of plaintext bytes decrypted and not consumed. It
// never blocks; ciphertext not decrypted yet is not counted.
func (t *tlsConn) Len() (length int) { return t.in.Len() }

// Read copies up to len(p) plaintext bytes, waiting for at least one, and
// releases what it consumed. At the end of the stream it returns an error
// matching ErrEOF.
func (t *tlsConn) Read(p []byte) (n int, err error) {
	if len(p) == 0 {
		return 0, nil
	}
	if err = t.waitPlain(1); err != nil {
		return 0, err
	}
	t.inMu.Lock()
	n = min(len(p), t.in.Len())
	if err = t.in.readInto(p[:n]); err == nil {
		err = t.in.Release()
	}
	t.inMu.Unlock()
	if err != nil {
		return 0, t.plainErr(err)
	}
	return n, nil
}

// closedLocally reports a local Close, after which the Writer fails.
func (t *tlsConn) closedLocally() bool { return t.raw.state.closedLocally() }

// Malloc reserves n bytes of plaintext output.
func (t *tlsConn) Malloc(n int) (buf []byte, err error) {
	if t.closedLocally() {
		return nil, t.raw.closedWrite("when malloc")
	}
	t.wmu.Lock()
	buf, err = t.out.Malloc(n)
	t.wmu.Unlock()
	return buf, t.raw.outErr(err, "when malloc")
}

// MallocLen returns the number of staged, unflushed plaintext bytes.
func (t *tlsConn) MallocLen() (length int) {
	t.wmu.Lock()
	length = t.out.MallocLen()
	t.wmu.Unlock()
	return length
}

// MallocAck keeps the first n staged bytes and drops the rest.
func (t *tlsConn) MallocAck(n int) (err error) {
	if t.closedLocally() {
		return t.raw.closedWrite("when malloc ack")
	}
	t.wmu.Lock()
	err = t.out.MallocAck(n)
	t.wmu.Unlock()
	return t.raw.outErr(err, "when malloc ack")
}

// WriteString stages s (by reference above BinaryInplaceThreshold bytes).
func (t *tlsConn) WriteString(s string) (n int, err error) {
	if t.closedLocally() {
		return 0, t.raw.closedWrite("when write string")
	}
	t.wmu.Lock()
	n, err = t.out.WriteString(s)
	t.wmu.Unlock()
	return n, t.raw.outErr(err, "when write string")
}

// WriteBinary stages b (by reference above BinaryInplaceThreshold bytes).
func (t *tlsConn) WriteBinary(b []byte) (n int, err error) {
	if t.closedLocally() {
		return 0, t.raw.closedWrite("when write binary")
	}
	t.wmu.Lock()
	n, err = t.out.WriteBinary(b)
	t.wmu.Unlock()
	return n, t.raw.outErr(err, "when write binary")
}

// WriteByte stages one byte.
func (t *tlsConn) WriteByte(b byte) (err error) {
	if t.closedLocally() {
		return t.raw.closedWrite("when write byte")
	}
	t.wmu.Lock()
	err = t.out.WriteByte(b)
	t.wmu.Unlock()
	return t.raw.outErr(err, "when write byte")
}

// WriteDirect splices p, by reference, before the last remainCap staged bytes.
func (t *tlsConn) WriteDirect(p []byte, remainCap int) (err error) {
	if t.closedLocally() {
		return t.raw.closedWrite("when write direct")
	}
	t.wmu.Lock()
	err = t.out.WriteDirect(p, remainCap)
	t.wmu.Unlock()
	return t.raw.outErr(err, "when write direct")
}

// Append moves every byte of w (a *LinkBuffer) to the staged plaintext.
func (t *tlsConn) Append(w Writer) (err error) {
	if t.closedLocally() {
		return t.raw.closedWrite("when append")
	}
	t.wmu.Lock()
	err = t.out.Append(w)
	t.wmu.Unlock()
	return t.raw.outErr(err, "when append")
}

// Flush encrypts every staged byte and sends the records. It blocks as a
// connection's Flush does (write timeout, deadline, close). Before the
// handshake of an accepted connection completes (in OnPrepare) it returns
// nil and the bytes are sent right after the handshake.
func (t *tlsConn) Flush() error {
	if !t.open() {
		return t.raw.closedWrite("when flush")
	}
	t.wmu.Lock()
	err := t.flushLocked(nil)
	t.wmu.Unlock()
	return err
}

// Write encrypts p after the staged bytes and sends them; it returns len(p)
// and the Flush error. p is not kept.
func (t *tlsConn) Write(p []byte) (n int, err error) {
	if !t.open() {
		return 0, t.raw.closedWrite("when write")
	}
	t.wmu.Lock()
	defer t.wmu.Unlock()
	if t.early.Load() { // before the handshake: stage a copy
		for rest := p; len(rest) > 0; {
			chunk := rest[:min(len(rest), maxNodeSize)]
			buf, err := t.out.Malloc(len(chunk))
			if err != nil {
				return 0, t.raw.outErr(err, "when write")
			}
			rest = rest[copy(buf, chunk):]
		}
		return len(p), nil
	}
	return len(p), t.flushLocked(p)
}

// tlsChunk is the most plaintext handed to tls.Conn.Write at once, and
// tlsSendAt the ciphertext staged in the raw output above which a Flush
// sends before it encrypts more: a large message is never held twice over.
const (
	tlsChunk  = 64 << 10
	tlsSendAt = 256 << 10
	// tlsCoalesce is the most staged plaintext that one Flush copies
	// together to encrypt at once (see encrypt): the largest record's.
	tlsCoalesce = 16 << 10
)

// flushLocked publishes the staged plaintext, encrypts it and then extra,
// and sends the records; wmu is held.
func (t *tlsConn) flushLocked(extra []byte) error {
	if err := t.out.Flush(); err != nil {
		return t.raw.outErr(err, "when flush")
	}
	if t.early.Load() {
		return nil
	}
	t.ad.deferring.Add(1)
	err := t.encrypt(extra)
	t.ad.deferring.Add(-1)
	if err != nil {
		_ = t.out.Skip(t.out.Len())
		_ = t.out.Release()
		return err
	}
	return t.raw.Flush()
}

// encrypt hands the published plaintext and then extra to tls.Conn.Write
// in chunks, consuming it, and sends the raw output whenever it has
// tlsSendAt bytes staged. Published plaintext of at most tlsCoalesce bytes
// is one chunk even when it was staged in several segments (a header and a
// body): they are copied together once, so that the peer gets one record,
// as a buffered writer in front of a tls.Conn would send. A larger one goes
// segment by segment, uncopied.
func (t *tlsConn) encrypt(extra []byte) error {
	for n := t.out.Len(); n > 0; n = t.out.Len() {
		var p []byte
		if n <= tlsCoalesce {
			var err error
			if p, err = t.out.Next(n); err != nil {
				return t.raw.outErr(err, "when flush")
			}
		} else {
			seg := t.out.GetBytes(t.segs[:])
			p = seg[0][:min(len(seg[0]), tlsChunk)]
			t.segs[0] = nil
			_ = t.out.Skip(len(p))
		}
		err := t.encryptChunk(p, t.out.Len() == 0 && len(extra) == 0)
		_ = t.out.Release()
		if err != nil {
			return err
		}
	}
	for len(extra) > 0 {
		p := extra[:min(len(extra), tlsChunk)]
		if err := t.encryptChunk(p, len(p) == len(extra)); err != nil {
			return err
		}
		extra = extra[len(p):]
	}
	return nil
}

// tlsOneRecord bounds the plaintext that crypto/tls always sends as one
// record: its smallest record payload is a TCP segment's estimate, 1208
// bytes, less the record's overhead, which is at most 85 bytes with the
// ciphers it offers (TLS 1.2 CBC with HMAC-SHA256: header, IV, MAC,
// padding). The record of a Flush's last chunk this small may go to the
// socket without being staged (tlsAdapter.Write); were it cut in two, the
// second record would be staged and sent by the Flush, as others are.
const tlsOneRecord = 1100

// encryptChunk encrypts p, the last chunk of this Flush if last: then, if
// small, its record may go to the socket at once (direct).
func (t *tlsConn) encryptChunk(p []byte, last bool) error {
	t.ad.direct.Store(last && len(p) <= tlsOneRecord)
	_, err := t.tc.Write(p)
	t.ad.direct.Store(false)
	if err != nil {
		if t.raw.state.phase() != phaseOpen {
			return t.raw.closedWrite("when flush")
		}
		return err
	}
	if t.raw.MallocLen() >= tlsSendAt {
		return t.raw.Flush()
	}
	return nil
}
