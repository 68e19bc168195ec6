//go:build darwin || freebsd

package netpoll

import "golang.org/x/sys/unix"

// peekSocket looks at the socket fd's receive queue without taking from it
// and without blocking: recv(2) of one byte with MSG_PEEK|MSG_DONTWAIT. It
// reports n (1 when bytes wait, 0 at the end of the stream) and the errno
// (EAGAIN when the queue is empty and the stream goes on). On macOS system
// calls go through libc, hence x/sys's wrapper rather than a raw call.
func peekSocket(fd int) (int, unix.Errno) {
	var b [1]byte
	n, _, err := unix.Recvfrom(fd, b[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
	if err != nil {
		if no, ok := err.(unix.Errno); ok {
			return -1, no
		}
		return -1, unix.EINVAL
	}
	return n, 0
}
