//go:build darwin || dragonfly || freebsd || netbsd || openbsd

package netpoll

import (
	"net"

	"golang.org/x/sys/unix"
)

// unnamedUnixAddr is how an unnamed unix socket's address prints.
const unnamedUnixAddr = ""

// writev writes bufs in order, one write each, stopping at the first
// short write or error; x/sys has no writev for every BSD.
func writev(fd int, bufs [][]byte) (int, error) {
	total := 0
	for _, b := range bufs {
		n, err := unix.Write(fd, b)
		if n > 0 {
			total += n
		}
		if err != nil {
			if total > 0 {
				return total, nil
			}
			return n, err
		}
		if n < len(b) {
			break
		}
	}
	return total, nil
}

// accept takes one pending connection, makes it non-blocking and
// close-on-exec, and returns its peer's address (a unix one of network unixNet).
func accept(fd int, unixNet string) (int, net.Addr, error) {
	nfd, sa, err := unix.Accept(fd)
	if err != nil {
		return -1, nil, err
	}
	unix.CloseOnExec(nfd)
	if err = unix.SetNonblock(nfd, true); err != nil {
		unix.Close(nfd)
		return -1, nil, err
	}
	return nfd, sockaddrToAddr(sa, unixNet), nil
}

// sockAddr returns the local address of fd, or with peer its peer's; nil if unknown.
func sockAddr(fd int, peer bool, unixNet string) net.Addr {
	get := unix.Getsockname
	if peer {
		get = unix.Getpeername
	}
	sa, err := get(fd)
	if err != nil {
		return nil
	}
	return sockaddrToAddr(sa, unixNet)
}

// sockaddrToAddr converts a socket address: a TCP address for the inet
// families, a unix one of network unixNet, else nil.
func sockaddrToAddr(sa unix.Sockaddr, unixNet string) net.Addr {
	switch a := sa.(type) {
	case *unix.SockaddrInet4:
		return newTCPAddr(a.Addr[:], a.Port, 0)
	case *unix.SockaddrInet6:
		return newTCPAddr(a.Addr[:], a.Port, a.ZoneId)
	case *unix.SockaddrUnix:
		name := a.Name
		if name == "" {
			name = unnamedUnixAddr
		}
		return &net.UnixAddr{Name: name, Net: unixNet}
	}
	return nil
}

// socket makes a non-blocking, close-on-exec socket.
func socket(family, sotype int) (int, error) {
	fd, err := unix.Socket(family, sotype, 0)
	if err != nil {
		return -1, wrapSyscall("socket", err)
	}
	unix.CloseOnExec(fd)
	if err = unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return -1, wrapSyscall("fcntl", err)
	}
	return fd, nil
}
