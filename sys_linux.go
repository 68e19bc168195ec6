//go:build linux

package netpoll

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// unnamedUnixAddr is how an unnamed unix socket's address prints.
const unnamedUnixAddr = "@"

// writev writes bufs with one syscall; iovecs live on the stack.
func writev(fd int, bufs [][]byte) (int, error) {
	if len(bufs) == 1 {
		return unix.Write(fd, bufs[0])
	}
	var iov [maxIovecs]unix.Iovec
	n := 0
	for _, b := range bufs {
		if len(b) == 0 {
			continue
		}
		iov[n].Base = &b[0]
		iov[n].SetLen(len(b))
		n++
	}
	if n == 0 {
		return 0, nil
	}
	r, _, e := unix.Syscall(unix.SYS_WRITEV, uintptr(fd), uintptr(unsafe.Pointer(&iov[0])), uintptr(n))
	if e != 0 {
		return -1, e
	}
	return int(r), nil
}

// accept takes one pending connection, non-blocking and close-on-exec.
func accept(fd int) (int, unix.Sockaddr, error) {
	return unix.Accept4(fd, unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC)
}

// socket makes a non-blocking, close-on-exec socket.
func socket(family, sotype int) (int, error) {
	fd, err := unix.Socket(family, sotype|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	return fd, wrapSyscall("socket", err)
}
