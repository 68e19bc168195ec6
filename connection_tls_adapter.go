//go:build darwin || freebsd || linux

package netpoll

import (
	"io"
	"net"
	"sync/atomic"
	"time"
)

// tlsAdapter is the net.Conn that a TLS connection's crypto/tls.Conn runs
// over. It reads ciphertext out of the raw connection's input buffer and
// writes ciphertext into the raw connection's output buffer; it never
// touches the socket itself.
//
// Reads are cut at record boundaries: one Read never hands crypto/tls
// bytes of two records, so tls.Conn holds at most one record at a time and
// the adapter always knows where the next one starts (hdr, hdrN, remain).
//
// In blocking mode (the handshake only) a Read with nothing buffered waits
// on the raw connection, under its read timeout and deadline. Otherwise a
// Read hands over a record only when the whole of it is buffered, and
// fails with errTLSWouldBlock, a temporary net.Error that crypto/tls does not
// keep, when it is not: a decryption never waits, and the reader of a TLS
// connection waits on the raw connection before it decrypts (waitPlain).
type tlsAdapter struct {
	raw *connection

	// blocking: the handshake runs, and Read waits. Atomic: a reader that
	// misuses a connection before its handshake completes (from a goroutine
	// OnPrepare started) reads it too, once crypto/tls let it in.
	blocking atomic.Bool

	hdr    [recordHeaderLen]byte // the header of the record being handed over
	hdrN   int                   // its bytes handed over so far; recordHeaderLen once complete
	remain int                   // body bytes of the record still to hand over

	// deferring counts the Flushes that encrypt: while it is not 0, Write
	// stages the records in the raw output and the Flush sends them once.
	// Otherwise (the handshake, a post-handshake reply of crypto/tls) Write
	// sends at once.
	deferring atomic.Int32

	// direct lets the next Write send its record straight to the socket
	// when nothing is staged before it, instead of staging a copy (see
	// Write). encryptChunk sets it for a chunk that fits one record; the
	// Write that finds it clears it. Atomic: a post-handshake reply of
	// crypto/tls writes from a decryption, outside wmu.
	direct atomic.Bool

	// rawErr is the raw connection's error behind the last failed Read.
	// Atomic for the same misuse as blocking: the handshake's Read sets it
	// while such a reader may look.
	rawErr atomic.Pointer[error]
}

// failure returns the raw connection's error behind the last failed Read,
// or nil.
func (a *tlsAdapter) failure() error {
	if p := a.rawErr.Load(); p != nil {
		return *p
	}
	return nil
}

const (
	recordHeaderLen = 5
	// maxRecordBody is the largest body crypto/tls accepts (2^14 plus 2048
	// of expansion); a header announcing more is handed over alone, for
	// crypto/tls to refuse.
	maxRecordBody = 16384 + 2048
)

var _ net.Conn = (*tlsAdapter)(nil)

// errTLSWouldBlock is the adapter's "no whole record is buffered". It is a
// temporary net.Error, which crypto/tls hands back without making it the
// connection's permanent error.
var errTLSWouldBlock error = wouldBlockError{}

type wouldBlockError struct{}

func (wouldBlockError) Error() string   { return "netpoll: tls record not buffered yet" }
func (wouldBlockError) Timeout() bool   { return true }
func (wouldBlockError) Temporary() bool { return true }

// rest returns how many bytes, from the next unread one, complete the
// current record, and whether that is known: with the header incomplete and
// not buffered, only the header's missing bytes are known to be needed.
// raw.inMu is held.
func (a *tlsAdapter) rest() (n int, known bool) {
	if a.hdrN == recordHeaderLen {
		return a.remain, true
	}
	h := recordHeaderLen - a.hdrN
	in := &a.raw.in
	if in.Len() < h {
		return h, false
	}
	var hdr [recordHeaderLen]byte
	copy(hdr[:], a.hdr[:a.hdrN])
	in.peekInto(hdr[a.hdrN:])
	body := int(hdr[3])<<8 | int(hdr[4])
	if body > maxRecordBody {
		return h, true
	}
	return h + body, true
}

// need returns how many bytes the raw input must hold for the current
// record to be wholly buffered.
func (a *tlsAdapter) need() int {
	a.raw.inMu.Lock()
	n, _ := a.rest()
	a.raw.inMu.Unlock()
	return n
}

// whole reports whether the rest of the current record is buffered.
func (a *tlsAdapter) whole() bool {
	a.raw.inMu.Lock()
	n, known := a.rest()
	ok := known && a.raw.in.Len() >= n
	a.raw.inMu.Unlock()
	return ok
}

// Read hands crypto/tls the next bytes of the current record (see the type).
func (a *tlsAdapter) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	c := a.raw
	blocking := a.blocking.Load()
	for {
		c.inMu.Lock()
		n, known := a.rest()
		avail := c.in.Len()
		k := 0
		switch {
		case blocking:
			k = min(len(p), n, avail)
		case known && avail >= n:
			k = min(len(p), n)
		}
		if k > 0 {
			if err := c.in.readInto(p[:k]); err != nil {
				c.inMu.Unlock()
				return 0, c.inputErr(err)
			}
			_ = c.in.Release()
			a.track(p[:k])
			c.inMu.Unlock()
			c.consumed(k)
			c.caughtUp()
			return k, nil
		}
		c.inMu.Unlock()
		if !blocking {
			return 0, errTLSWouldBlock
		}
		if err := c.waitInput(avail + 1); err != nil {
			a.rawErr.Store(&err)
			if errorIsEOF(err) {
				return 0, io.EOF // crypto/tls tells a clean end from a cut record
			}
			return 0, err
		}
	}
}

// track follows the record boundaries over bytes just handed over, which
// never go past the current record's end.
func (a *tlsAdapter) track(p []byte) {
	for len(p) > 0 {
		if a.hdrN < recordHeaderLen {
			m := copy(a.hdr[a.hdrN:], p)
			a.hdrN += m
			p = p[m:]
			if a.hdrN == recordHeaderLen {
				a.remain = int(a.hdr[3])<<8 | int(a.hdr[4])
				if a.remain == 0 {
					a.hdrN = 0
				}
			}
			continue
		}
		m := min(a.remain, len(p))
		a.remain -= m
		p = p[m:]
		if a.remain == 0 {
			a.hdrN = 0
		}
	}
}

// Write copies the records crypto/tls made into the raw output (crypto/tls
// reuses its buffer) and, unless a Flush is encrypting, sends them. The one
// record of a small chunk (direct) goes to the socket at once when nothing
// is staged before it; what the socket does not take then, and any failure,
// is left to the Flush, as for a staged record.
func (a *tlsAdapter) Write(p []byte) (int, error) {
	c := a.raw
	if c.state.closedLocally() {
		return 0, c.closedWrite("when write")
	}
	whole := len(p)
	c.outMu.Lock()
	if a.direct.Swap(false) && c.out.Len() == 0 && c.out.MallocLen() == 0 {
		p = p[c.sendNow(p):]
	}
	var err error
	if len(p) > 0 {
		var buf []byte
		if buf, err = c.out.Malloc(len(p)); err == nil {
			copy(buf, p)
		}
	}
	c.outMu.Unlock()
	if err != nil {
		return 0, c.outErr(err, "when write")
	}
	if a.deferring.Load() == 0 {
		if err = c.Flush(); err != nil {
			return 0, err
		}
	}
	return whole, nil
}

// Close does nothing: the TLS connection closes the raw one itself.
func (a *tlsAdapter) Close() error { return nil }

// LocalAddr is the raw connection's.
func (a *tlsAdapter) LocalAddr() net.Addr { return a.raw.LocalAddr() }

// RemoteAddr is the raw connection's.
func (a *tlsAdapter) RemoteAddr() net.Addr { return a.raw.RemoteAddr() }

// SetDeadline and the others do nothing: crypto/tls calls them only when
// it sends close_notify from tls.Conn.Close, which is never called; the
// TLS connection sets the raw connection's deadlines itself.
func (a *tlsAdapter) SetDeadline(time.Time) error { return nil }

// SetReadDeadline does nothing (see SetDeadline).
func (a *tlsAdapter) SetReadDeadline(time.Time) error { return nil }

// SetWriteDeadline does nothing (see SetDeadline).
func (a *tlsAdapter) SetWriteDeadline(time.Time) error { return nil }

// errorIsEOF reports a raw read that failed because the peer closed.
func errorIsEOF(err error) bool {
	e, ok := err.(*exception)
	return ok && e.no == ErrEOF
}

// peekInto copies the first len(p) readable bytes into p without consuming
// them; that many must be readable.
func (b *UnsafeLinkBuffer) peekInto(p []byte) {
	done := 0
	for r := b.read; done < len(p); r = r.next {
		done += copy(p[done:], r.buf[r.off:r.end])
	}
}

// readInto consumes len(p) readable bytes into p.
func (b *UnsafeLinkBuffer) readInto(p []byte) error {
	if err := b.check(len(p), "next"); err != nil {
		return err
	}
	b.consumed(len(p))
	b.copyOut(p)
	return nil
}
