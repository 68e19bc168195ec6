//go:build darwin || freebsd || linux

package netpoll

import (
	"errors"
	"net"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// server is one Serve: the listener's operator and the connections it accepted.
type server struct {
	ln    Listener
	op    FDOperator
	fd    fdRef // held by each accept; the Listener, not the fdRef, closes the fd
	addrs acceptAddrs
	opts  *options
	quit  chan error // Serve's result; the first send wins
	idle  *idleSweep // WithIdleCloseTimeout's clock; nil without it

	// The loop's handlers, boxed once and shared by every connection's
	// atomic pointers (which are replaced, never written through); nil for none.
	onRequest    *OnRequest
	onConnect    *OnConnect
	onDisconnect *OnDisconnect

	mu         sync.Mutex
	conns      map[*connection]struct{}
	stopped    bool // Serve is over (Shutdown, or an accept failure)
	released   bool // no accept will run again: stopped, or the Listener was closed
	registered bool
	backoff    time.Duration
	retry      *time.Timer
}

// acceptBatch bounds the accepts of one readiness report, so one busy
// listener cannot starve the other fds of its poller.
const acceptBatch = 64

// While the process is out of fds (or memory) accepting waits: first
// acceptBackoffMin, as a closing connection often frees a fd within
// milliseconds, then twice as long each time up to acceptBackoffMax, so a
// long shortage costs one try a second and the server resumes at most a
// second after it ends.
const (
	acceptBackoffMin = 5 * time.Millisecond
	acceptBackoffMax = time.Second
)

// The accept errors that are not the kernel's: errListenerHungUp ends a
// Serve whose listening socket hung up; errAcceptReleased is what an accept
// finds once the server was released (see release), which ends the batch.
var (
	errListenerHungUp = errors.New("netpoll: listener hung up")
	errAcceptReleased = errors.New("netpoll: accept after release")
)

func newServer(ln Listener, onRequest OnRequest, opts *options) *server {
	s := &server{ln: ln, opts: opts, quit: make(chan error, 1), conns: map[*connection]struct{}{}}
	s.idle = newIdleSweep(opts.idleCloseTimeout)
	if onRequest != nil {
		s.onRequest = &onRequest
	}
	if h := opts.onConnect; h != nil {
		s.onConnect = &h
	}
	if h := opts.onDisconnect; h != nil {
		s.onDisconnect = &h
	}
	s.op.FD = ln.Fd()
	s.op.handler = s
	s.fd.fd = int32(s.op.FD)
	if l, ok := ln.(*listener); ok {
		s.addrs = l.addrs // learnt when it was converted
	} else if s.op.FD >= 0 {
		s.addrs = listenerAddrs(s.op.FD)
	}
	return s
}

// start registers the listener with a poller, unless stop came first. A
// listener of this package learns of its server first, so that its Close
// can unregister it before closing the fd (see release).
func (s *server) start() error {
	if s.op.FD < 0 {
		return Exception(ErrUnsupported, "serve on "+s.ln.Addr().Network())
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return nil
	}
	if l, ok := s.ln.(*listener); ok {
		l.server.Store(s)
		if l.closed.Load() {
			return Exception(ErrConnClosed, "listener closed")
		}
	}
	p, err := pollmanager.pick()
	if err != nil {
		return err
	}
	if err = p.Control(&s.op, PollReadable); err != nil {
		return err
	}
	s.registered = true
	s.startIdle()
	return nil
}

// stop ends Serve with err (nil at Shutdown), then closes the listener.
func (s *server) stop(err error) {
	s.mu.Lock()
	if s.stopped {
		s.mu.Unlock()
		return
	}
	s.stopped = true
	s.stopIdle()
	s.mu.Unlock()
	s.release()
	_ = s.ln.Close()
	s.quit <- err
}

// release stops accepting for good: when it returns no accept is running
// or will run, and the poller no longer watches the fd, so the number, once
// closed and reused by another socket, is neither accepted from nor
// refused a registration because of this server. Stop calls it, and so
// does the Listener's Close, which then closes the fd while Serve keeps
// waiting for Shutdown (the order of a graceful shutdown that closes the
// listener first). Only the first call does anything.
func (s *server) release() {
	s.mu.Lock()
	if s.released {
		s.mu.Unlock()
		return
	}
	s.released = true
	registered := s.registered
	s.registered = false
	if s.retry != nil {
		s.retry.Stop()
	}
	s.mu.Unlock()
	s.fd.close(true)
	s.fd.drain()
	if registered {
		_ = s.op.Control(PollDetach)
	}
}

// orphaned is told that the listener's fd was closed by other means than
// the Listener's Close and that the number now names another socket (see
// opOrphan): the server stops accepting, the Listener's Close will not
// close the number, and Serve waits for Shutdown.
func (s *server) orphaned() {
	if l, ok := s.ln.(*listener); ok {
		l.fd.close(true)
	}
	go s.release()
}

// accept takes one pending connection; errAcceptReleased once release has
// begun.
func (s *server) accept() (int, net.Addr, error) {
	if !s.fd.acquire() {
		return -1, nil, errAcceptReleased
	}
	defer s.fd.release()
	return accept(s.fd.num(), s.addrs.unixNet)
}

// onEvent accepts what is pending, up to a batch; it is settled once an
// accept found none left, or the listener was unregistered.
func (s *server) onEvent(_ Poll, flags pollFlags) (settled bool) {
	for i := 0; i < acceptBatch; i++ {
		fd, remote, err := s.accept()
		switch err {
		case nil:
			s.backoff = 0
			s.accepted(fd, remote)
			continue
		case unix.EAGAIN:
			if flags&pollHup != 0 {
				s.stop(errListenerHungUp)
			}
			return flags&pollHup == 0
		case unix.EMFILE, unix.ENFILE, unix.ENOBUFS, unix.ENOMEM:
			s.op.poll.stats.own.acceptErrors.Add(1)
			s.pause(err)
			return true
		case errAcceptReleased:
			return false
		}
		s.op.poll.stats.own.acceptErrors.Add(1)
		if acceptAgain(err) {
			continue
		}
		s.stop(wrapSyscall("accept", err))
		return false
	}
	return false
}

// pause unregisters the listener while the process is out of fds and
// registers it again after a back-off that doubles up to a second: no busy
// loop, and one log line per episode.
func (s *server) pause(err error) {
	_ = s.op.Control(PollDetach)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.released {
		return
	}
	if s.backoff == 0 {
		logf("accept: %v; retrying with back-off", err)
		s.backoff = acceptBackoffMin
	} else {
		s.backoff = min(2*s.backoff, acceptBackoffMax)
	}
	s.retry = time.AfterFunc(s.backoff, s.resume)
}

func (s *server) resume() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.released {
		return
	}
	if err := s.op.poll.Control(&s.op, PollReadable); err != nil {
		go s.stop(err)
	}
}

// accepted sets up a new connection and runs OnPrepare on this (the poller)
// goroutine; a connection OnPrepare closed is never registered.
func (s *server) accepted(fd int, remote net.Addr) {
	c, err := newConnection(fd, s.addrs.localAddr(fd), remote)
	if err != nil {
		logf("accept: %v", err)
		unix.Close(fd)
		return
	}
	s.op.poll.stats.own.accepted.Add(1) // on the listener's poller goroutine
	c.server = s
	if s.idle != nil {
		c.idleEpoch.Store(s.idle.epoch.Load())
	}
	c.setNoDelay()
	uc := s.configure(c)
	if !s.track(c) {
		c.Close()
		return
	}
	// OnPrepare runs under a hold, so that a close racing it (Shutdown, the
	// peer, OnPrepare itself) runs the close callbacks only after OnPrepare
	// returned, including those it added.
	held := c.state.acquire()
	ok := s.prepare(c, uc)
	if held {
		c.release(holdCall)
	}
	if !ok || !c.isOpen() {
		return
	}
	if err := c.register(); err != nil {
		if c.isOpen() { // not merely a close that raced the registration
			logf("register connection: %v", err)
		}
		c.Close()
	}
}

// configure applies the loop's options before OnPrepare; it returns the
// Connection the handlers get: c, or with WithTLS its TLS connection.
func (s *server) configure(c *connection) Connection {
	o := s.opts
	if o.readTimeout > 0 {
		c.readTimeout.Store(int64(o.readTimeout))
	}
	if o.writeTimeout > 0 {
		c.writeTimeout.Store(int64(o.writeTimeout))
	}
	if o.idleTimeout > 0 {
		_ = c.SetIdleTimeout(o.idleTimeout)
	}
	if o.tlsConfig != nil {
		return s.configureTLS(c, o.tlsConfig)
	}
	// Not registered yet, c has no input for SetOnRequest to start a task on.
	if s.onRequest != nil {
		c.onRequest.Store(s.onRequest)
	}
	if s.onConnect != nil {
		c.onConnect.Store(s.onConnect)
	}
	if s.onDisconnect != nil {
		c.onDisconnect.Store(s.onDisconnect)
	}
	return c
}

// prepare runs OnPrepare with uc (c, or its TLS connection); a panic in it
// closes the connection and is logged, since it would otherwise kill the
// poller.
func (s *server) prepare(c *connection, uc Connection) (ok bool) {
	if s.opts.onPrepare == nil {
		return true
	}
	defer func() {
		if r := recover(); r != nil {
			c.stats().panics.Add(1)
			logf("OnPrepare panicked: %v", r)
			c.Close()
			ok = false
		}
	}()
	if ctx := s.opts.onPrepare(uc); ctx != nil {
		c.setContext(ctx)
	}
	return true
}

// track records c so that Shutdown finds it; false after Shutdown began.
func (s *server) track(c *connection) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return false
	}
	s.conns[c] = struct{}{}
	return true
}

// forget drops a finalized connection.
func (s *server) forget(c *connection) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
}

// closeIdle closes every idle connection and returns how many are busy.
func (s *server) closeIdle() (busy int) {
	s.mu.Lock()
	conns := make([]*connection, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		// Unread input of a connection the peer closed can never be
		// consumed by a handler (none runs), so it does not keep it busy.
		if c.state.running() || s.tlsBusy(c) || c.isOpen() && (c.in.Len() > 0 || c.out.Len() > 0) {
			busy++
			continue
		}
		c.Close()
	}
	return busy
}
