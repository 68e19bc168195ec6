//go:build darwin

package netpoll

import (
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// writeErrno maps the errno of a write. macOS fails a write on a socket
// its peer is tearing down with EPROTOTYPE, where Linux (and macOS a moment
// later) says ECONNRESET; it is reported as the reset it is, so a Flush
// fails the same way on both.
func writeErrno(e unix.Errno) unix.Errno {
	if e == unix.EPROTOTYPE {
		return unix.ECONNRESET
	}
	return e
}

// socket makes a non-blocking, close-on-exec socket. macOS has no
// SOCK_CLOEXEC, so close-on-exec is set after the socket exists; holding
// syscall.ForkLock for reading across both calls keeps a fork+exec of
// another goroutine (os/exec takes the lock for writing) from inheriting
// the fd in between, as the standard library does.
func socket(family, sotype int) (int, error) {
	syscall.ForkLock.RLock()
	fd, err := unix.Socket(family, sotype, 0)
	if err == nil {
		unix.CloseOnExec(fd)
	}
	syscall.ForkLock.RUnlock()
	if err != nil {
		return -1, wrapSyscall("socket", err)
	}
	if err = unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return -1, wrapSyscall("fcntl", err)
	}
	return fd, nil
}

// accept takes one pending connection, makes it non-blocking and
// close-on-exec, and returns its peer's address (a unix one of network
// unixNet). macOS has no accept4: ForkLock covers the window between the
// accept and the close-on-exec, as in socket.
func accept(fd int, unixNet string) (int, net.Addr, error) {
	syscall.ForkLock.RLock()
	nfd, sa, err := unix.Accept(fd)
	if err == nil {
		unix.CloseOnExec(nfd)
	}
	syscall.ForkLock.RUnlock()
	if err != nil {
		return -1, nil, err
	}
	if err = unix.SetNonblock(nfd, true); err != nil {
		unix.Close(nfd)
		return -1, nil, err
	}
	return nfd, sockaddrToAddr(sa, unixNet), nil
}

// tcpKeepIdle is the option for the idle time before keep-alive probes:
// macOS names it TCP_KEEPALIVE.
const tcpKeepIdle = unix.TCP_KEEPALIVE
