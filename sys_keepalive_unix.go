//go:build darwin || freebsd || linux

package netpoll

import (
	"math"

	"golang.org/x/sys/unix"
)

// SetKeepAlive turns on TCP keep-alive for fd: probes start after secs idle
// seconds and repeat every secs seconds. Errors are the bare errnos of
// setsockopt (syscall.Errno): a fd that is not an open TCP socket gives
// EBADF, ENOTSOCK or EOPNOTSUPP, and a secs the kernel refuses (below 1, or
// over 32767 on Linux) gives EINVAL with keep-alive already switched on. A
// secs outside the 32-bit int the kernel takes gives EINVAL and changes
// nothing.
func SetKeepAlive(fd, secs int) error {
	if secs > math.MaxInt32 || secs < math.MinInt32 {
		return unix.EINVAL
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_KEEPALIVE, 1); err != nil {
		return err
	}
	if secs < 1 {
		return unix.EINVAL // Linux refuses it; macOS would take 0 as its default: refused everywhere
	}
	if err := unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_KEEPINTVL, secs); err != nil {
		return err
	}
	return unix.SetsockoptInt(fd, unix.IPPROTO_TCP, tcpKeepIdle, secs)
}
