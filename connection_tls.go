//go:build darwin || freebsd || linux

package netpoll

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// tlsConn is a Connection over TLS: a raw connection of this package that
// carries the ciphertext, the standard library's tls.Conn running over a
// tlsAdapter on it, and two LinkBuffers of plaintext.
//
// Where the bytes go, and which copies are made:
//
//   - In: the poller reads ciphertext into the raw connection's input, as
//     for any connection. A decryption (decryptOne) copies one whole record
//     from there into tls.Conn's record buffer (the adapter's Read),
//     decrypts it in place, and tls.Conn copies the plaintext into memory
//     Malloc'd from in, where the Reader methods find it: two copies.
//   - Out: the Writer methods stage plaintext in out as a connection
//     stages its output (WriteBinary keeps large slices by reference).
//     Flush hands it to tls.Conn.Write (up to 16 KiB staged in several
//     segments is copied together first: see encrypt), which encrypts into
//     its own buffer; the adapter copies each record into the raw
//     connection's output, and the raw connection's Flush sends them with
//     one writev: two copies.
//     A Flush of one small record (tlsOneRecord) with nothing staged before
//     it is written straight from tls.Conn's buffer instead: one copy.
//
// Who decrypts, and where it blocks: never the poller. With an OnRequest
// handler, the raw connection's task decrypts every whole record buffered
// and then calls OnRequest (serveRaw); a read that needs more plaintext than
// is decrypted waits on the raw connection for the next whole record, with
// the raw connection's read timeout, deadline and close rules, and decrypts
// it on the reader's goroutine (waitPlain). rmu keeps decryptions one at a
// time.
//
// Who calls OnRequest: whoever holds busy, the TLS connection's own task
// bit (see serve). Usually that is the raw connection's task, inside
// serveRaw; SetOnRequest and a peer close, which find plaintext buffered
// and perhaps no ciphertext behind it to start that task, start one of
// their own (kick). news counts what may give OnRequest something new, so
// that a holder about to give busy up goes round again instead.
//
// Backpressure: the handlers' decryptions (decryptBuffered) stop while
// inputPauseAbove bytes of plaintext are unread, leaving the ciphertext in
// the raw input, where the raw connection's own pausing bounds it. As a
// connection resumes its input when a handler returns without consuming
// (it waits for more), hungry lifts the bound after such a call.
type tlsConn struct {
	raw *connection
	tc  *tls.Conn
	ad  tlsAdapter

	inMu sync.Mutex // guards in: decryptions append, the reader reads
	in   LinkBuffer // plaintext, decrypted
	rmu  sync.Mutex // one decryption at a time

	wmu  sync.Mutex // serialises the Writer, as a connection's outMu
	out  LinkBuffer // plaintext, staged
	segs [1][]byte  // scratch for out.GetBytes; wmu

	// early: the handshake has not completed. A Flush then keeps the bytes
	// staged (they are sent once it completes), so that writes in OnPrepare
	// never block a poller.
	early       atomic.Bool
	handshaken  chan struct{} // closed once the handshake ended, or the connection closed first
	endHS       sync.Once     // closes handshaken
	established atomic.Bool   // the handshake succeeded
	eof         atomic.Bool   // the peer's close_notify arrived
	failed      atomic.Bool   // crypto/tls failed; fatal (under rmu) says how
	fatal       error

	onRequest    atomic.Pointer[OnRequest]
	onConnect    OnConnect // the loop's, run after the handshake
	onDisconnect atomic.Pointer[OnDisconnect]
	rawRequest   atomic.Bool // raw.onRequest is serveRaw

	busy   atomic.Bool   // OnRequest is being offered the plaintext (serve)
	news   atomic.Uint64 // counts plaintext decrypted, handlers set, the ends of the stream
	hungry atomic.Bool   // the last OnRequest consumed nothing: decrypt past the bound
	kickFn func()        // t.kicked, made once
}

var _ Connection = (*tlsConn)(nil)

// newTLSConn wraps raw, which carries ciphertext, in a TLS connection:
// a client with client set, a server otherwise.
func newTLSConn(raw *connection, config *tls.Config, client bool) *tlsConn {
	t := &tlsConn{raw: raw}
	t.ad.raw = raw
	t.in.lean = true
	t.out.lean = true
	t.early.Store(true)
	t.handshaken = make(chan struct{})
	t.kickFn = t.kicked
	if client {
		t.tc = tls.Client(&t.ad, config)
	} else {
		t.tc = tls.Server(&t.ad, config)
	}
	// Added first, run last: the plaintext buffers are recycled after every
	// callback of the user.
	_ = raw.AddCloseCallback(func(Connection) error { t.endHandshake(); t.recycle(); return nil })
	return t
}

// handshake runs the TLS handshake on the caller's goroutine, bounded by
// timeout (none if <= 0): the raw connection's deadlines are set for it
// and put back afterwards. Bytes staged meanwhile are sent when it succeeds.
func (t *tlsConn) handshake(timeout time.Duration) error {
	c := t.raw
	rd, wd := c.readDeadline.Load(), c.writeDeadline.Load()
	if timeout > 0 {
		dl := time.Now().Add(timeout).UnixNano()
		c.readDeadline.Store(dl)
		c.writeDeadline.Store(dl)
	}
	defer t.endHandshake()
	t.ad.blocking.Store(true)
	err := t.tc.Handshake()
	t.ad.blocking.Store(false)
	if timeout > 0 {
		c.readDeadline.Store(rd)
		c.writeDeadline.Store(wd)
	}
	if err != nil {
		if raw := t.ad.failure(); raw != nil && !errors.Is(err, raw) {
			err = raw
		}
		return err
	}
	t.established.Store(true)
	t.wmu.Lock()
	t.early.Store(false)
	if t.out.Len() > 0 || t.out.MallocLen() > 0 {
		err = t.flushLocked(nil)
	}
	t.wmu.Unlock()
	return err
}

// recycle gives the plaintext buffers back; it is the raw connection's
// last close callback. A Writer call still running keeps out to the GC.
func (t *tlsConn) recycle() {
	tlsServed.Delete(t.raw)
	t.inMu.Lock()
	_ = t.in.Close()
	t.inMu.Unlock()
	if t.wmu.TryLock() {
		_ = t.out.Close()
		t.wmu.Unlock()
	}
}

// ---- decryption ----

// decryptOne decrypts the current record if it is wholly buffered in the
// raw input; it reports how many plaintext bytes it added. rmu is held.
// A clean end (close_notify) or a failure of crypto/tls comes back as the
// error the reads return from then on (see stuck).
func (t *tlsConn) decryptOne() (n int, err error) {
	if err = t.stuck(); err != nil {
		return 0, err
	}
	if !t.ad.whole() {
		return 0, nil
	}
	size := max(t.ad.need()-recordHeaderLen, 1) // the body bounds the plaintext
	t.inMu.Lock()
	buf, err := t.in.Malloc(size)
	if err != nil {
		t.inMu.Unlock()
		return 0, t.raw.readClosedErr()
	}
	n, err = t.tc.Read(buf)
	_ = t.in.MallocAck(n)
	_ = t.in.Flush()
	t.inMu.Unlock()
	switch {
	case err == nil, err == errTLSWouldBlock:
		return n, nil
	case t.ad.failure() != nil: // the raw connection failed under crypto/tls
		return n, t.ad.failure()
	}
	t.fatal = err
	if err == io.EOF { // the peer's close_notify
		t.eof.Store(true)
	} else {
		// Fatal; the connection is closed once the plaintext decrypted
		// before the failure was offered (serveRaw) or a read met it (waitPlain).
		t.failed.Store(true)
	}
	return n, t.stuck()
}

// stuck is the error of every read that needs more plaintext after the
// peer's close_notify (ErrEOF) or a failure of crypto/tls (its error, the
// connection being closed). rmu is held.
func (t *tlsConn) stuck() error {
	switch {
	case t.eof.Load():
		return Exception(ErrEOF, "tls close_notify")
	case t.failed.Load():
		return t.fatal
	}
	return nil
}

// decryptBuffered decrypts the whole records buffered in the raw input,
// without waiting, until inputPauseAbove bytes of plaintext are unread
// (unless hungry); it reports news: plaintext was added, or the stream
// ended (close_notify or a failure of crypto/tls).
func (t *tlsConn) decryptBuffered() (news bool) {
	t.rmu.Lock()
	defer t.rmu.Unlock()
	for t.ad.whole() && (t.in.Len() < inputPauseAbove || t.hungry.Load()) {
		n, err := t.decryptOne()
		news = news || n > 0
		if err != nil {
			return news || t.eof.Load() || t.failed.Load()
		}
	}
	return news
}

// endHandshake lets the readers that came before the end of the handshake
// in (see waitPlain); idempotent.
func (t *tlsConn) endHandshake() { t.endHS.Do(func() { close(t.handshaken) }) }

// waitPlain blocks until n plaintext bytes are buffered, pulling records
// off the raw connection. A reader that comes before the handshake has
// ended (from a goroutine OnPrepare started) first waits for it: the
// handshake reads the raw input itself, and is bounded (serverConnect).
func (t *tlsConn) waitPlain(n int) error {
	if t.in.Len() >= n {
		return nil
	}
	if t.early.Load() {
		<-t.handshaken
	}
	t.rmu.Lock()
	defer t.rmu.Unlock()
	for t.in.Len() < n {
		if err := t.stuck(); err != nil {
			if t.failed.Load() {
				t.raw.Close()
			}
			return err
		}
		if err := t.raw.waitInput(t.ad.need()); err != nil {
			if t.in.Len() >= n { // decrypted meanwhile by nobody else: cannot be, but harmless
				return nil
			}
			return err
		}
		if _, err := t.decryptOne(); err != nil && t.in.Len() < n {
			if t.failed.Load() {
				t.raw.Close()
			}
			return err
		}
	}
	return nil
}

// ---- the server's handlers on the raw connection ----

// serverConnect is the raw connection's OnConnect: the handshake, then the
// loop's OnConnect with the TLS connection. A failed handshake closes the
// connection and calls nothing. busy is held from configureTLS on, so no
// OnRequest runs before OnConnect returned; plaintext OnConnect decrypted
// and left is offered at its end.
func (t *tlsConn) serverConnect(ctx context.Context, _ Connection) context.Context {
	held := true
	defer func() { // a failed handshake, or a panic in OnConnect: busy is given up
		if held {
			t.busy.Store(false)
		}
	}()
	timeout := time.Duration(t.raw.readTimeout.Load())
	if timeout <= 0 {
		timeout = defaultHandshakeTimeout
	}
	if err := t.handshake(timeout); err != nil {
		t.raw.Close()
		return nil
	}
	var ret context.Context
	if t.onConnect != nil {
		if ret = t.onConnect(ctx, t); ret != nil {
			ctx = ret
		}
	}
	held = false
	t.serveHeld(ctx)
	return ret
}

// defaultHandshakeTimeout bounds a server's handshake on a connection
// without a read timeout.
const defaultHandshakeTimeout = 10 * time.Second

// serverDisconnect is the raw connection's OnDisconnect, run after a peer
// close: plaintext left unread gets its OnRequest, which sees IsActive
// false, as a connection's buffered input does; then the loop's
// OnDisconnect runs, with the TLS connection, for a connection whose
// handshake succeeded.
func (t *tlsConn) serverDisconnect(ctx context.Context, _ Connection) {
	t.kick()
	if h := t.onDisconnect.Load(); h != nil && t.established.Load() {
		(*h)(ctx, t)
	}
}

// serveRaw is the raw connection's OnRequest: it decrypts the whole records
// buffered and offers the plaintext to OnRequest (serve).
func (t *tlsConn) serveRaw(ctx context.Context, _ Connection) error {
	if t.decryptBuffered() {
		t.news.Add(1)
	}
	t.serve(ctx)
	return nil
}

// serve offers the plaintext to OnRequest unless another goroutine does;
// that one sees the news the caller counted, and goes round again.
func (t *tlsConn) serve(ctx context.Context) {
	if t.busy.CompareAndSwap(false, true) {
		t.serveHeld(ctx)
	}
}

// serveHeld offers the plaintext to OnRequest with busy held, then gives
// busy up, and takes it again if news came meanwhile. A panic in OnRequest
// gives it up too. A connection crypto/tls failed on is closed once its
// plaintext was offered.
func (t *tlsConn) serveHeld(ctx context.Context) {
	held := true
	defer func() {
		if held {
			t.busy.Store(false)
		}
	}()
	for {
		seen := t.offer(ctx)
		if t.failed.Load() {
			t.raw.Close()
		}
		held = false
		t.busy.Store(false)
		if t.news.Load() == seen || !t.busy.CompareAndSwap(false, true) {
			return
		}
		held = true
	}
}

// offer calls OnRequest while plaintext is buffered and the connection is
// not closed locally, as a connection's task does (connection_task.go):
// after a call that consumed nothing, only if news came meanwhile. It
// returns the news count it last saw.
func (t *tlsConn) offer(ctx context.Context) (seen uint64) {
	for {
		seen = t.news.Load()
		h := t.onRequest.Load()
		before := t.in.Len()
		if h == nil || before == 0 || t.raw.state.closedLocally() {
			return seen
		}
		_ = (*h)(ctx, t)
		consumed := t.in.Len() < before
		t.hungry.Store(!consumed)
		if t.decryptBuffered() {
			t.news.Add(1)
		}
		if !consumed && t.news.Load() == seen {
			return seen
		}
	}
}

// kick counts news and, when plaintext is buffered and no goroutine is
// offering it, offers it on a Runner goroutine of its own: for
// SetOnRequest and a peer close, which a connection answers by starting
// its task, but which here may find no ciphertext to start the raw
// connection's task with.
func (t *tlsConn) kick() {
	t.news.Add(1)
	c := t.raw
	if t.onRequest.Load() == nil || t.in.Len() == 0 || !t.established.Load() || c.state.closedLocally() {
		return
	}
	if !c.state.acquire() { // the close callbacks, which recycle the plaintext, wait for it
		return
	}
	if !t.busy.CompareAndSwap(false, true) {
		c.release(holdCall) // the holder sees the news
		return
	}
	runTask(c.context(), t.kickFn)
}

// kicked is kick's goroutine, which holds busy and a hold on the raw
// connection. A panic in OnRequest closes the connection and goes on into
// the Runner, as a task's does.
func (t *tlsConn) kicked() {
	c := t.raw
	done := false
	defer func() {
		if !done {
			c.stats().panics.Add(1)
			c.closeAs(closerUser)
		}
		c.release(holdCall)
	}()
	t.serveHeld(c.context())
	done = true
}

// pending reports plaintext nobody has read, or flushed before the
// handshake and not encrypted yet: Shutdown leaves such a connection open,
// as it leaves a connection with buffered input or output (tlsBusy).
func (t *tlsConn) pending() bool { return t.in.Len() > 0 || t.out.Len() > 0 }

// ---- Connection ----

// Reader returns the connection itself: its reads yield plaintext.
func (t *tlsConn) Reader() Reader { return t }

// Writer returns the connection itself: Flush encrypts.
func (t *tlsConn) Writer() Writer { return t }

// IsActive is false from a close by either side, the peer's close_notify or
// a TLS failure on.
func (t *tlsConn) IsActive() bool {
	return t.raw.IsActive() && !t.eof.Load() && !t.failed.Load()
}

// open is IsActive without a look at the socket.
func (t *tlsConn) open() bool {
	return t.raw.state.phase() == phaseOpen && !t.eof.Load() && !t.failed.Load()
}

// Close sends close_notify when it can do so without waiting (the handshake
// is done, no Flush runs and the socket takes it), then closes the
// connection as Connection.Close does. It returns nil.
func (t *tlsConn) Close() error {
	if t.raw.state.phase() == phaseOpen && t.established.Load() && t.wmu.TryLock() {
		t.ad.deferring.Add(1)
		err := t.tc.CloseWrite()
		t.ad.deferring.Add(-1)
		t.wmu.Unlock()
		if err == nil {
			t.raw.writeDeadline.Store(1) // long past: send what the socket takes, never wait
			_ = t.raw.Flush()
		}
	}
	return t.raw.Close()
}

// LocalAddr is the socket's local address.
func (t *tlsConn) LocalAddr() net.Addr { return t.raw.LocalAddr() }

// RemoteAddr is the peer's address.
func (t *tlsConn) RemoteAddr() net.Addr { return t.raw.RemoteAddr() }

// SetDeadline sets the deadlines of the reads and Flushes, as on any connection.
func (t *tlsConn) SetDeadline(d time.Time) error { return t.raw.SetDeadline(d) }

// SetReadDeadline bounds the reads that wait for records.
func (t *tlsConn) SetReadDeadline(d time.Time) error { return t.raw.SetReadDeadline(d) }

// SetWriteDeadline bounds Flush.
func (t *tlsConn) SetWriteDeadline(d time.Time) error { return t.raw.SetWriteDeadline(d) }

// SetReadTimeout bounds each read that waits for records (see Connection).
func (t *tlsConn) SetReadTimeout(d time.Duration) error { return t.raw.SetReadTimeout(d) }

// SetWriteTimeout bounds each Flush (see Connection).
func (t *tlsConn) SetWriteTimeout(d time.Duration) error { return t.raw.SetWriteTimeout(d) }

// SetIdleTimeout is TCP keep-alive (see Connection).
func (t *tlsConn) SetIdleTimeout(d time.Duration) error { return t.raw.SetIdleTimeout(d) }

// SetKeepAlive is TCP keep-alive of second seconds (see TCPConnection).
func (t *tlsConn) SetKeepAlive(second int) error { return t.raw.SetKeepAlive(second) }

// Fd returns the socket's file descriptor.
func (t *tlsConn) Fd() int { return t.raw.Fd() }

// SetOnRequest replaces the request handler; nil is ignored. It is called
// with the TLS connection when plaintext is buffered, and at once (on a
// Runner goroutine) when plaintext is buffered already.
func (t *tlsConn) SetOnRequest(on OnRequest) error {
	if on == nil {
		return nil
	}
	t.onRequest.Store(&on)
	if !t.rawRequest.Swap(true) {
		_ = t.raw.SetOnDisconnect(t.serverDisconnect)
		_ = t.raw.SetOnRequest(t.serveRaw)
	}
	t.kick() // plaintext already buffered is offered, as on a connection
	return nil
}

// SetOnConnect replaces the handler run after the handshake of an accepted
// connection (in OnPrepare only); nil is ignored. A dialed connection is
// connected already.
func (t *tlsConn) SetOnConnect(on OnConnect) error {
	if on != nil && !t.established.Load() {
		t.onConnect = on
	}
	return nil
}

// SetOnDisconnect replaces the handler run when the peer closes; nil is
// ignored. It gets the TLS connection.
func (t *tlsConn) SetOnDisconnect(on OnDisconnect) error {
	if on == nil {
		return nil
	}
	t.onDisconnect.Store(&on)
	return t.raw.SetOnDisconnect(t.serverDisconnect)
}

// AddCloseCallback registers callback, which gets the TLS connection (see
// Connection.AddCloseCallback).
func (t *tlsConn) AddCloseCallback(callback CloseCallback) error {
	if callback == nil {
		return nil
	}
	return t.raw.AddCloseCallback(func(Connection) error { return callback(t) })
}

// TLSConnectionState returns the TLS state of c (negotiated version,
// cipher suite, ALPN protocol, peer certificates, resumption) and true when
// c is a TLS connection of this package (from DialTLS, a TLS Dialer or an
// EventLoop made WithTLS); for any other Connection, a zero state and
// false. Before the handshake completes (in OnPrepare) the state's
// HandshakeComplete is false.
func TLSConnectionState(c Connection) (tls.ConnectionState, bool) {
	if t, ok := c.(*tlsConn); ok && t != nil {
		return t.tc.ConnectionState(), true
	}
	return tls.ConnectionState{}, false
}
