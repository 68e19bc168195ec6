//go:build darwin || freebsd || linux

package netpoll

import (
	"io"
	"net"
	"time"

	"golang.org/x/sys/unix"
)

// plainConn is what Listener.Accept returns: an accepted socket that no
// poller watches. Its fd is in blocking mode and Read and Write are plain
// syscalls on it, so every byte the peer sends is the holder's: read it
// here, or take Fd and read it elsewhere. An EventLoop does not use it; it
// accepts and registers its connections itself.
type plainConn struct {
	fd            fdRef // each Read and Write holds it; the last release after Close closes the fd
	local, remote net.Addr
}

func newPlainConn(fd int, local, remote net.Addr) *plainConn {
	c := &plainConn{local: local, remote: remote}
	c.fd.fd = int32(fd)
	return c
}

// Read blocks until the peer sends something, then copies up to len(p)
// bytes. An empty p gives (0, nil) at once; the peer's close gives io.EOF;
// after Close it gives ErrConnClosed.
func (c *plainConn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if !c.fd.acquire() {
		return 0, Exception(ErrConnClosed, "when read")
	}
	defer c.fd.release()
	for {
		n, err := unix.Read(c.fd.num(), p)
		switch {
		case err == unix.EINTR:
			continue
		case err != nil:
			return 0, wrapSyscall("read", err)
		case n == 0:
			return 0, io.EOF
		}
		return n, nil
	}
}

// Write blocks until all of p is written or an error occurs, and returns
// how much was written. After Close it gives ErrConnClosed.
func (c *plainConn) Write(p []byte) (int, error) {
	if !c.fd.acquire() {
		return 0, Exception(ErrConnClosed, "when write")
	}
	defer c.fd.release()
	done := 0
	for done < len(p) {
		n, err := unix.Write(c.fd.num(), p[done:])
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return done, wrapSyscall("write", err)
		}
		done += n
	}
	return done, nil
}

// Close closes the fd once no Read or Write runs on it. When one does, it
// shuts the socket down first, which wakes it; otherwise a duplicate of the
// fd made by the caller keeps working. Only the first call does anything.
func (c *plainConn) Close() error {
	if c.fd.acquire() {
		// Requesting the close first means no Read or Write can start after
		// the check below, so none is left blocked without the shutdown.
		c.fd.close(false)
		if c.fd.refs.Load()&^(fdClosing|fdKeep) > 1 { // one is in flight besides ours
			_ = unix.Shutdown(c.fd.num(), unix.SHUT_RDWR)
		}
		c.fd.release()
	}
	return nil
}

// Fd returns the socket's fd; the number it had after Close.
func (c *plainConn) Fd() int { return c.fd.num() }

// LocalAddr returns the local address.
func (c *plainConn) LocalAddr() net.Addr { return c.local }

// RemoteAddr returns the peer's address.
func (c *plainConn) RemoteAddr() net.Addr { return c.remote }

// SetDeadline is not supported on an accepted Conn: it gives ErrUnsupported.
func (c *plainConn) SetDeadline(t time.Time) error {
	return Exception(ErrUnsupported, "SetDeadline")
}

// SetReadDeadline is not supported on an accepted Conn: it gives ErrUnsupported.
func (c *plainConn) SetReadDeadline(t time.Time) error {
	return Exception(ErrUnsupported, "SetReadDeadline")
}

// SetWriteDeadline is not supported on an accepted Conn: it gives ErrUnsupported.
func (c *plainConn) SetWriteDeadline(t time.Time) error {
	return Exception(ErrUnsupported, "SetWriteDeadline")
}
