//go:build freebsd

package netpoll

import (
	"net"

	"golang.org/x/sys/unix"
)

// writeErrno maps the errno of a write; FreeBSD's need no mapping.
func writeErrno(e unix.Errno) unix.Errno { return e }

// socket makes a non-blocking, close-on-exec socket in one call: FreeBSD
// has SOCK_NONBLOCK and SOCK_CLOEXEC, so no fork can inherit the fd.
func socket(family, sotype int) (int, error) {
	fd, err := unix.Socket(family, sotype|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, wrapSyscall("socket", err)
	}
	return fd, nil
}

// accept takes one pending connection, non-blocking and close-on-exec from
// the start (accept4), and returns its peer's address (a unix one of
// network unixNet).
func accept(fd int, unixNet string) (int, net.Addr, error) {
	nfd, sa, err := unix.Accept4(fd, unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC)
	if err != nil {
		return -1, nil, err
	}
	return nfd, sockaddrToAddr(sa, unixNet), nil
}

// tcpKeepIdle is the option for the idle time before keep-alive probes.
const tcpKeepIdle = unix.TCP_KEEPIDLE
