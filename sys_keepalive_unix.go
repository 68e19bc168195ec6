//go:build linux || dragonfly || freebsd || netbsd

package netpoll

import (
	"math"

	"golang.org/x/sys/unix"
)

// SetKeepAlive turns on TCP keep-alive for fd: probes start after secs idle
// seconds and repeat every secs seconds. secs < 1, or over 2147483647 (the
// kernel takes a 32-bit int), gives EINVAL and changes nothing. A fd that is
// not an open TCP socket gives the setsockopt error. A value the kernel
// refuses (over 32767 on Linux) gives EINVAL with keep-alive already
// switched on.
func SetKeepAlive(fd, secs int) error {
	if secs < 1 || secs > math.MaxInt32 {
		return Exception(unix.EINVAL, "keep-alive seconds must be 1 to 2147483647")
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_KEEPALIVE, 1); err != nil {
		return wrapSyscall("setsockopt", err)
	}
	if err := unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_KEEPINTVL, secs); err != nil {
		return wrapSyscall("setsockopt", err)
	}
	return wrapSyscall("setsockopt", unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_KEEPIDLE, secs))
}
