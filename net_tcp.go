//go:build darwin || dragonfly || freebsd || linux || netbsd || openbsd

package netpoll

import (
	"context"
	"errors"
	"net"

	"golang.org/x/sys/unix"
)

// TCPConnection is a dialed TCP connection. It has every method of
// Connection plus Fd, Detach, SetKeepAlive, SetOnConnect and SetOnDisconnect.
type TCPConnection struct {
	connection
}

// DialTCP connects to raddr over network ("tcp", "tcp4", "tcp6"), from laddr
// if it is not nil, within ctx (nil means Background). A bad network, a nil
// raddr, an IPv6 address on "tcp4" or an IP of a bad length gives a
// *net.OpError, as does every bind or connect failure. An empty raddr IP
// means the unspecified address.
func DialTCP(ctx context.Context, network string, laddr, raddr *TCPAddr) (*TCPConnection, error) {
	ctx = orBackground(ctx)
	var la, ra net.Addr
	if laddr != nil {
		la = &laddr.TCPAddr
	}
	if raddr != nil {
		ra = &raddr.TCPAddr
	}
	switch network {
	case "tcp", "tcp4", "tcp6":
	default:
		return nil, dialError(network, la, ra, net.UnknownNetworkError(network))
	}
	if raddr == nil {
		return nil, dialError(network, la, nil, errors.New("missing address"))
	}
	family, rsa, err := tcpSockaddr(network, &raddr.TCPAddr)
	if err != nil {
		return nil, dialError(network, la, ra, err)
	}
	var lsa unix.Sockaddr
	if laddr != nil {
		if _, lsa, err = tcpSockaddr(network, &laddr.TCPAddr); err != nil {
			return nil, dialError(network, la, ra, err)
		}
	}
	p, err := pollmanager.pick()
	if err != nil {
		return nil, dialError(network, la, ra, err)
	}
	fd, err := connectSocket(ctx, p, family, unix.SOCK_STREAM, lsa, rsa)
	if err != nil {
		return nil, dialError(network, la, ra, err)
	}
	tc := &TCPConnection{}
	if err = initDialed(&tc.connection, p, fd, true); err != nil {
		return nil, dialError(network, la, ra, err)
	}
	return tc, nil
}

// tcpSockaddr converts addr for network, choosing the address family.
func tcpSockaddr(network string, addr *net.TCPAddr) (int, unix.Sockaddr, error) {
	ip := addr.IP
	if len(ip) == 0 {
		ip = net.IPv4zero
		if network == "tcp6" {
			ip = net.IPv6unspecified
		}
	}
	if ip4 := ip.To4(); ip4 != nil && network != "tcp6" {
		sa := &unix.SockaddrInet4{Port: addr.Port}
		copy(sa.Addr[:], ip4)
		return unix.AF_INET, sa, nil
	}
	if ip6 := ip.To16(); ip6 != nil && network != "tcp4" {
		sa := &unix.SockaddrInet6{Port: addr.Port}
		copy(sa.Addr[:], ip6)
		if addr.Zone != "" {
			if ifi, err := net.InterfaceByName(addr.Zone); err == nil {
				sa.ZoneId = uint32(ifi.Index)
			}
		}
		return unix.AF_INET6, sa, nil
	}
	return 0, nil, &net.AddrError{Err: "address family mismatch", Addr: addr.String()}
}
