//go:build linux

package netpoll

import (
	"bytes"
	"net"
	"unsafe"

	"golang.org/x/sys/unix"
)

// unnamedUnixAddr is how an unnamed unix socket's address prints.
const unnamedUnixAddr = "@"

// accept takes one pending connection, non-blocking and close-on-exec, and
// returns its peer's address (a unix one of network unixNet). It makes the
// syscall itself: x/sys's Accept4 asks the listener's protocol with a
// getsockopt on every call, and allocates a sockaddr only to be converted.
// The listener is non-blocking, so the syscall is raw (see sysRead).
func accept(fd int, unixNet string) (int, net.Addr, error) {
	var rsa unix.RawSockaddrAny
	n := uint32(unix.SizeofSockaddrAny)
	r, _, e := unix.RawSyscall6(unix.SYS_ACCEPT4, uintptr(fd), uintptr(unsafe.Pointer(&rsa)), uintptr(unsafe.Pointer(&n)),
		unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0, 0)
	if e != 0 {
		return -1, nil, e
	}
	return int(r), rawToAddr(&rsa, n, unixNet), nil
}

// sockAddr returns the local address of fd, or with peer its peer's; nil if
// unknown. Like accept it converts the kernel's bytes itself.
func sockAddr(fd int, peer bool, unixNet string) net.Addr {
	trap := uintptr(unix.SYS_GETSOCKNAME)
	if peer {
		trap = unix.SYS_GETPEERNAME
	}
	var rsa unix.RawSockaddrAny
	n := uint32(unix.SizeofSockaddrAny)
	if _, _, e := unix.RawSyscall(trap, uintptr(fd), uintptr(unsafe.Pointer(&rsa)), uintptr(unsafe.Pointer(&n))); e != 0 {
		return nil
	}
	return rawToAddr(&rsa, n, unixNet)
}

// rawToAddr converts a socket address the kernel wrote n bytes of: a TCP
// address for the inet families, a unix one of network unixNet, else nil.
func rawToAddr(rsa *unix.RawSockaddrAny, n uint32, unixNet string) net.Addr {
	switch rsa.Addr.Family {
	case unix.AF_INET:
		p := (*unix.RawSockaddrInet4)(unsafe.Pointer(rsa))
		return newTCPAddr(p.Addr[:], netPort(p.Port), 0)
	case unix.AF_INET6:
		p := (*unix.RawSockaddrInet6)(unsafe.Pointer(rsa))
		return newTCPAddr(p.Addr[:], netPort(p.Port), p.Scope_id)
	case unix.AF_UNIX:
		p := (*unix.RawSockaddrUnix)(unsafe.Pointer(rsa))
		return &net.UnixAddr{Name: unixName(p, n), Net: unixNet}
	}
	return nil
}

// unixName reads the path of a unix address the kernel wrote n bytes of. An
// unnamed socket's is unnamedUnixAddr; an abstract one's leading NUL reads
// as '@', and like the standard library it ends at the next NUL.
func unixName(p *unix.RawSockaddrUnix, n uint32) string {
	size := min(int(n)-int(unsafe.Offsetof(p.Path)), len(p.Path))
	if size <= 0 {
		return unnamedUnixAddr
	}
	path := unsafe.Slice((*byte)(unsafe.Pointer(&p.Path[0])), size)
	prefix := ""
	if path[0] == 0 {
		prefix, path = "@", path[1:]
	}
	if i := bytes.IndexByte(path, 0); i >= 0 {
		path = path[:i]
	}
	return prefix + string(path)
}

// netPort reads a port kept in network byte order.
func netPort(port uint16) int {
	b := (*[2]byte)(unsafe.Pointer(&port))
	return int(b[0])<<8 | int(b[1])
}

// socket makes a non-blocking, close-on-exec socket.
func socket(family, sotype int) (int, error) {
	fd, err := unix.Socket(family, sotype|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	return fd, wrapSyscall("socket", err)
}

// writeErrno maps a write's errno; on Linux each means what it says.
func writeErrno(e unix.Errno) unix.Errno { return e }

// tcpKeepIdle is the option for the idle time before keep-alive probes.
const tcpKeepIdle = unix.TCP_KEEPIDLE

// sysNoDelay turns Nagle off on the TCP socket fd; raw, as it never blocks
// (see sysRead).
func sysNoDelay(fd int) {
	one := int32(1)
	_, _, _ = unix.RawSyscall6(unix.SYS_SETSOCKOPT, uintptr(fd), unix.IPPROTO_TCP, unix.TCP_NODELAY,
		uintptr(unsafe.Pointer(&one)), 4, 0)
}

// sysRead, sysWrite and sysWritev are the socket I/O syscalls of
// connection_io.go. A connection's fd is always non-blocking, so they never
// wait, and they are made raw: without the scheduler's syscall entry and
// exit, which wake the runtime's monitor thread (sysmon) from its long
// sleep whenever every P was idle and leave it polling every 20 µs for a
// while. Under a partial load, where the process idles between requests,
// those wake-ups cost more CPU than the requests' own syscalls. Something
// must still wake sysmon so that it preempts a handler that spins: the
// poller sees to that (poll_default_linux.go, wait). Under the race
// detector they tell it what the ordinary wrappers would (sys_race_linux.go).
func sysRead(fd int, p []byte) (int, error) {
	r, _, e := unix.RawSyscall(unix.SYS_READ, uintptr(fd), uintptr(bufPtr(p)), uintptr(len(p)))
	if e != 0 {
		return -1, e
	}
	raceRead(p[:r])
	return int(r), nil
}

func sysWrite(fd int, p []byte) (int, error) {
	raceRelease()
	r, _, e := unix.RawSyscall(unix.SYS_WRITE, uintptr(fd), uintptr(bufPtr(p)), uintptr(len(p)))
	if e != 0 {
		return -1, e
	}
	raceWrote(p, int(r))
	return int(r), nil
}

func sysWritev(fd int, iov *unix.Iovec, n int) (int, unix.Errno) {
	raceRelease()
	r, _, e := unix.RawSyscall(unix.SYS_WRITEV, uintptr(fd), uintptr(unsafe.Pointer(iov)), uintptr(n))
	if e == 0 {
		raceWrotev(unsafe.Slice(iov, n), int(r))
	}
	return int(r), e
}

// bufPtr is the address of p's first byte, or nil for an empty p.
func bufPtr(p []byte) unsafe.Pointer {
	if len(p) == 0 {
		return nil
	}
	return unsafe.Pointer(&p[0])
}
