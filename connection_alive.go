//go:build darwin || freebsd || linux

package netpoll

import "golang.org/x/sys/unix"

// IsActive reports whether the connection is still usable: no close by
// either side (Close, Detach, the peer, an idle close) happened yet.
//
// It also asks the kernel, so that a pool never hands out a connection whose
// peer is gone: once the peer's FIN or RST has reached this host (on
// loopback, once the peer's Close has returned), IsActive is false even
// when the poller has not handled the hang-up yet, and the connection then
// closes as after a peer close (OnDisconnect, the close callbacks). While
// input is buffered it does not ask: a connection with unread bytes is
// active until the close is noticed as usual, so the bytes are read first.
//
// Cost: on an open connection with nothing buffered, one non-blocking
// recv(2) with MSG_PEEK, made without the runtime's syscall bookkeeping
// (well under a microsecond; BenchmarkIsActive); otherwise an atomic load.
// It never blocks, allocates nothing on Linux, and may be called from any
// goroutine, concurrently with reads, writes and Close.
func (c *connection) IsActive() bool {
	if !c.isOpen() {
		return false
	}
	if c.in.Len() > 0 {
		return true
	}
	return c.peerAlive()
}

// isOpen reports whether no close happened yet: the state alone, what the
// package's own paths ask (IsActive also asks the kernel).
func (c *connection) isOpen() bool { return c.state.phase() == phaseOpen }

// peerAlive peeks at the socket of an open connection with nothing
// buffered; false when the stream has ended or failed. The peer close it
// found is then acted on here, unless a syscall of the poller (or a Flush)
// holds the fd: a read the poller made before the peek may have bytes that
// are not in the buffer yet, and a close now could drop them. The poller
// acts on the hang-up itself moments later; until then every call peeks
// again and still finds the stream over.
func (c *connection) peerAlive() bool {
	if !c.fd.acquire() {
		return c.isOpen() // a close is under way
	}
	gone := false
	for {
		n, e := peekSocket(c.fd.num())
		if e == unix.EINTR {
			continue
		}
		gone = n == 0 && e == 0 || peerGoneErrno(e)
		break
	}
	alone := c.fd.refs.Load()&^(fdClosing|fdKeep) == 1
	c.fd.release()
	if !gone {
		return c.isOpen()
	}
	if alone && c.in.Len() == 0 {
		c.peerClosed()
	}
	return false
}

// peerGoneErrno reports whether a receive error means the stream is over.
// Other errors (a fd that is not a socket, say) say nothing of the peer.
func peerGoneErrno(e unix.Errno) bool {
	switch e {
	case unix.ECONNRESET, unix.ECONNABORTED, unix.EPIPE, unix.ETIMEDOUT, unix.ENOTCONN,
		unix.ECONNREFUSED, unix.EHOSTUNREACH, unix.ENETUNREACH, unix.ENETRESET:
		return true
	}
	return false
}
