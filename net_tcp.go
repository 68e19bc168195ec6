//go:build darwin || freebsd || linux

package netpoll

import (
	"context"
	"net"

	"golang.org/x/sys/unix"
)

// TCPConnection is a dialed TCP connection. It has every method of
// Connection plus Fd, Detach, SetKeepAlive, SetOnConnect and SetOnDisconnect.
type TCPConnection struct {
	connection
}

// DialTCP connects to raddr over network ("tcp", "tcp4", "tcp6"), from laddr
// if it is not nil, within ctx (nil means Background). "tcp4" dials over
// IPv4 and "tcp6" over IPv6 only (IPV6_V6ONLY); "tcp" uses IPv4 when both
// addresses are IPv4 (or have no IP) and IPv6 otherwise. An empty IP means
// the unspecified address, which reaches the local host. Every error is a
// *net.OpError whose Source and Addr are laddr and raddr: a bad network, a
// nil raddr ("missing address"), an address of the wrong family ("non-IPv4
// address"), a bind or connect failure, a refusal or any other failure of
// a connect in progress (ErrConnClosed "by peer"), and a ctx that ends
// first ("i/o timeout", "operation was canceled"). On failure the
// *TCPConnection is nil.
func DialTCP(ctx context.Context, network string, laddr, raddr *TCPAddr) (*TCPConnection, error) {
	ctx = orBackground(ctx)
	la, ra := laddr.opAddr(), raddr.opAddr()
	switch network {
	case "tcp", "tcp4", "tcp6":
	default:
		return nil, dialError(network, la, ra, net.UnknownNetworkError(network))
	}
	if raddr == nil {
		return nil, dialError(network, la, nil, errMissingAddr)
	}
	family, v6only := tcpFamily(network, laddr, raddr)
	rsa, err := tcpSockaddr(family, &raddr.TCPAddr)
	if err != nil {
		return nil, dialError(network, la, ra, err)
	}
	var lsa unix.Sockaddr
	if laddr != nil {
		if lsa, err = tcpSockaddr(family, &laddr.TCPAddr); err != nil {
			return nil, dialError(network, la, ra, err)
		}
	}
	tc := &TCPConnection{}
	if err = dialSocket(ctx, &tc.connection, family, unix.SOCK_STREAM, v6only, lsa, rsa); err != nil {
		return nil, dialError(network, la, ra, err)
	}
	return tc, nil
}

// opAddr is a as the net.Addr of an error: nil for a nil a.
func (a *TCPAddr) opAddr() net.Addr {
	if a == nil {
		return nil
	}
	return a
}

// tcpFamily chooses the address family of a dial and whether an IPv6
// socket refuses IPv4 peers.
func tcpFamily(network string, laddr, raddr *TCPAddr) (family int, v6only bool) {
	switch network {
	case "tcp4":
		return unix.AF_INET, false
	case "tcp6":
		return unix.AF_INET6, true
	}
	if isIPv4Addr(laddr) && isIPv4Addr(raddr) {
		return unix.AF_INET, false
	}
	return unix.AF_INET6, false
}

// isIPv4Addr reports whether a is nil, has no IP or has an IPv4 one.
func isIPv4Addr(a *TCPAddr) bool {
	return a == nil || len(a.IP) <= net.IPv4len || a.IP.To4() != nil
}

// tcpSockaddr converts addr for a socket of family. An empty IP is the
// unspecified address; an IPv4 address on AF_INET6 is IPv4-mapped.
func tcpSockaddr(family int, addr *net.TCPAddr) (unix.Sockaddr, error) {
	ip := addr.IP
	if family == unix.AF_INET {
		if len(ip) == 0 {
			ip = net.IPv4zero
		}
		ip4 := ip.To4()
		if ip4 == nil {
			return nil, &net.AddrError{Err: "non-IPv4 address", Addr: ip.String()}
		}
		sa := &unix.SockaddrInet4{Port: addr.Port}
		copy(sa.Addr[:], ip4)
		return sa, nil
	}
	if len(ip) == 0 || ip.Equal(net.IPv4zero) {
		ip = net.IPv6zero
	}
	ip6 := ip.To16()
	if ip6 == nil {
		return nil, &net.AddrError{Err: "non-IPv6 address", Addr: ip.String()}
	}
	sa := &unix.SockaddrInet6{Port: addr.Port}
	copy(sa.Addr[:], ip6)
	if addr.Zone != "" {
		if ifi, err := net.InterfaceByName(addr.Zone); err == nil {
			sa.ZoneId = uint32(ifi.Index)
		}
	}
	return sa, nil
}
