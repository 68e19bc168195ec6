//go:build darwin || dragonfly || freebsd || linux || netbsd || openbsd

package netpoll

import (
	"net"
	"os"

	"golang.org/x/sys/unix"
)

// wrapSyscall names the failed syscall; it is the only place syscall errors are wrapped.
func wrapSyscall(name string, err error) error {
	if err == nil {
		return nil
	}
	return os.NewSyscallError(name, err)
}

// sockaddrToAddr converts a socket address; network is "tcp" or "unix" flavoured by the family.
func sockaddrToAddr(sa unix.Sockaddr, unixNet string) net.Addr {
	switch a := sa.(type) {
	case *unix.SockaddrInet4:
		return &net.TCPAddr{IP: append(net.IP(nil), a.Addr[:]...), Port: a.Port}
	case *unix.SockaddrInet6:
		addr := &net.TCPAddr{IP: append(net.IP(nil), a.Addr[:]...), Port: a.Port}
		if a.ZoneId != 0 {
			if ifi, err := net.InterfaceByIndex(int(a.ZoneId)); err == nil {
				addr.Zone = ifi.Name
			}
		}
		return addr
	case *unix.SockaddrUnix:
		name := a.Name
		if name == "" {
			name = unnamedUnixAddr
		}
		return &net.UnixAddr{Name: name, Net: unixNet}
	}
	return nil
}

// socketAddrs returns fd's local and peer addresses (nil where unknown);
// peer, when known (from accept), saves the getpeername.
func socketAddrs(fd int, peer unix.Sockaddr) (local, remote net.Addr) {
	sa, err := unix.Getsockname(fd)
	if err != nil {
		return nil, nil
	}
	unixNet := "unix"
	if _, ok := sa.(*unix.SockaddrUnix); ok {
		if t, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TYPE); err == nil {
			unixNet = unixNetworks[t]
		}
	}
	local = sockaddrToAddr(sa, unixNet)
	if peer == nil {
		if peer, err = unix.Getpeername(fd); err != nil {
			return local, nil
		}
	}
	return local, sockaddrToAddr(peer, unixNet)
}

var unixNetworks = map[int]string{unix.SOCK_STREAM: "unix", unix.SOCK_DGRAM: "unixgram", unix.SOCK_SEQPACKET: "unixpacket"}

// GetSysFdPairs returns the two ends of a new unix stream socketpair, or
// (-1, -1) if it cannot be made. The caller owns both fds.
func GetSysFdPairs() (r, w int) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM, 0)
	if err != nil {
		return -1, -1
	}
	return fds[0], fds[1]
}

const maxIovecs = 64

// maxSend bounds the bytes one writev may carry: the kernel caps a call
// near 2 GiB, and a larger sum of iovec lengths fails with EINVAL.
const maxSend = 1 << 30

// send writes as much of the flushed output as one writev takes.
func (c *connection) send() (int, error) {
	var arr [maxIovecs][]byte
	bufs := c.out.GetBytes(arr[:])
	total := 0
	for i, b := range bufs {
		if total+len(b) > maxSend {
			bufs[i] = b[:maxSend-total]
			bufs = bufs[:i+1]
			break
		}
		total += len(b)
	}
	if !c.fd.acquire() {
		return 0, ErrConnClosed
	}
	n, err := writev(c.fd.fd, bufs)
	c.fd.release()
	switch {
	case err == nil:
		return n, nil
	case err == unix.EAGAIN:
		return max(n, 0), errWouldBlock
	case err == unix.EINTR:
		return max(n, 0), nil
	}
	return max(n, 0), err
}
