//go:build darwin || freebsd

package netpoll

import (
	"net"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"
)

// unnamedUnixAddr is how an unnamed unix socket's address prints.
const unnamedUnixAddr = ""

var iovecs = sync.Pool{New: func() any { return new([maxIovecs]unix.Iovec) }}

// writev writes bufs (at most maxIovecs) with one writev(2), as on Linux;
// up to smallSend iovecs live on the stack, more in a pooled vector. x/sys
// has no writev wrapper for macOS or FreeBSD, and a write per buffer sent
// each one as its own TCP segment under TCP_NODELAY, so the syscall is made
// directly (through unix.Syscall: a libSystem wrapper would have to be
// linked by name, which Go no longer allows outside the standard library).
// Errors go through writeErrno (sys_darwin.go, sys_freebsd.go).
func writev(fd int, bufs [][]byte) (int, error) {
	if len(bufs) == 1 {
		n, err := unix.Write(fd, bufs[0])
		if e, ok := err.(unix.Errno); ok {
			err = writeErrno(e)
		}
		return n, err
	}
	var small [smallSend]unix.Iovec
	iov := small[:]
	if len(bufs) > smallSend {
		v := iovecs.Get().(*[maxIovecs]unix.Iovec)
		defer func(n int) {
			clear(v[:n])
			iovecs.Put(v)
		}(len(bufs))
		iov = v[:]
	}
	n := 0
	for _, b := range bufs {
		if len(b) > 0 {
			iov[n].Base = &b[0]
			iov[n].SetLen(len(b))
			n++
		}
	}
	if n == 0 {
		return 0, nil
	}
	r, _, e := unix.Syscall(unix.SYS_WRITEV, uintptr(fd), uintptr(unsafe.Pointer(&iov[0])), uintptr(n))
	if e != 0 {
		return -1, writeErrno(e)
	}
	return int(r), nil
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
