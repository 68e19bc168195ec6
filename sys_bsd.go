//go:build darwin || freebsd

package netpoll

import (
	"net"
	"unsafe"

	"golang.org/x/sys/unix"
)

// unnamedUnixAddr is how an unnamed unix socket's address prints.
const unnamedUnixAddr = ""

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

// sysNoDelay turns Nagle off on the TCP socket fd.
func sysNoDelay(fd int) { _ = unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1) }

// sysRead, sysWrite and sysWritev are the socket I/O syscalls of
// connection_io.go, made the ordinary way (see sys_linux.go for why Linux
// does otherwise).
func sysRead(fd int, p []byte) (int, error) { return unix.Read(fd, p) }

func sysWrite(fd int, p []byte) (int, error) { return unix.Write(fd, p) }

func sysWritev(fd int, iov *unix.Iovec, n int) (int, unix.Errno) {
	r, _, e := unix.Syscall(unix.SYS_WRITEV, uintptr(fd), uintptr(unsafe.Pointer(iov)), uintptr(n))
	return int(r), e
}
