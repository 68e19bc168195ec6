//go:build linux

package netpoll

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// peekSocket looks at the socket fd's receive queue without taking from it
// and without blocking: recv(2) of one byte with MSG_PEEK|MSG_DONTWAIT. It
// reports n (1 when bytes wait, 0 at the end of the stream) and the errno
// (EAGAIN when the queue is empty and the stream goes on).
//
// The call is raw: it never blocks, so the runtime's bookkeeping for a
// syscall that might (handing the P off) would only cost time.
func peekSocket(fd int) (int, unix.Errno) {
	var b [1]byte
	r, _, e := unix.RawSyscall6(unix.SYS_RECVFROM, uintptr(fd), uintptr(unsafe.Pointer(&b[0])), 1,
		unix.MSG_PEEK|unix.MSG_DONTWAIT, 0, 0)
	return int(r), e
}
