//go:build darwin || freebsd || linux

package netpoll

import (
	"net"
	"os"

	"golang.org/x/sys/unix"
)

// wrapSyscall names the failed syscall as an *os.SyscallError (Exception
// wraps errnos that belong to a connection's operation instead).
func wrapSyscall(name string, err error) error {
	if err == nil {
		return nil
	}
	return os.NewSyscallError(name, err)
}

// newTCPAddr returns a TCP address whose IP is a copy of ip, made with one
// allocation for both; zone is an IPv6 scope id, 0 for none.
func newTCPAddr(ip []byte, port int, zone uint32) *net.TCPAddr {
	a := &struct {
		addr net.TCPAddr
		ip   [net.IPv6len]byte
	}{}
	n := copy(a.ip[:], ip)
	a.addr.IP, a.addr.Port = a.ip[:n:n], port
	if zone != 0 {
		if ifi, err := net.InterfaceByIndex(int(zone)); err == nil {
			a.addr.Zone = ifi.Name
		}
	}
	return &a.addr
}

// socketAddrs returns the local and peer addresses of fd, a socket of
// unknown kind (nil where unknown).
func socketAddrs(fd int) (local, remote net.Addr) {
	local = sockAddr(fd, false, "unix")
	unixNet := "unix"
	if la, ok := local.(*net.UnixAddr); ok {
		unixNet = unixNetwork(fd)
		la.Net = unixNet
	}
	return local, sockAddr(fd, true, unixNet)
}

// unixNetwork names the network of fd, a unix socket, by its type.
func unixNetwork(fd int) string {
	t, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TYPE)
	if err != nil {
		return "unix"
	}
	return unixNetworks[t]
}

// acceptAddrs is what a listener tells of the connections it accepts,
// learnt once so that an accept asks the kernel nothing more.
type acceptAddrs struct {
	unixNet string   // the network of an accepted unix socket: the listener's
	local   net.Addr // the local address of every accepted connection; nil for a wildcard address
}

// listenerAddrs returns the acceptAddrs of fd, a listening socket. An
// accepted unix socket's local address is its listener's, and so is an
// accepted TCP socket's unless the listener is bound to 0.0.0.0 or ::,
// when each connection has its own.
func listenerAddrs(fd int) acceptAddrs {
	a := acceptAddrs{unixNet: "unix"}
	switch la := sockAddr(fd, false, "unix").(type) {
	case *net.UnixAddr:
		a.unixNet = unixNetwork(fd)
		la.Net = a.unixNet
		a.local = la
	case *net.TCPAddr:
		if !la.IP.IsUnspecified() {
			a.local = la
		}
	}
	return a
}

// localAddr returns the local address of fd, a connection accepted by the listener.
func (a *acceptAddrs) localAddr(fd int) net.Addr {
	if a.local != nil {
		return a.local
	}
	return sockAddr(fd, false, a.unixNet)
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

// acceptAgain reports whether an accept error concerns only the
// connection it would have returned (interrupted, or aborted or broken
// before it was taken), so the caller tries the next one.
func acceptAgain(err error) bool {
	return err == unix.EINTR || err == unix.ECONNABORTED || err == unix.EPROTO
}
