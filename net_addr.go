//go:build darwin || freebsd || linux

package netpoll

import "net"

// TCPAddr is a TCP address.
type TCPAddr struct {
	net.TCPAddr
}

// ResolveTCPAddr resolves address on network ("tcp", "tcp4" or "tcp6") like
// net.ResolveTCPAddr, whose errors it returns (net.UnknownNetworkError for
// another network; an empty network means "tcp"). An empty address gives the
// zero address, not an error.
func ResolveTCPAddr(network, address string) (*TCPAddr, error) {
	addr, err := net.ResolveTCPAddr(network, address)
	if err != nil {
		return nil, err
	}
	return &TCPAddr{TCPAddr: *addr}, nil
}

// UnixAddr is a unix socket address.
type UnixAddr struct {
	net.UnixAddr
}

// ResolveUnixAddr resolves address on network ("unix", "unixgram" or
// "unixpacket") like net.ResolveUnixAddr, whose errors it returns
// (net.UnknownNetworkError for another network). An empty address gives an
// empty name, not an error.
func ResolveUnixAddr(network, address string) (*UnixAddr, error) {
	addr, err := net.ResolveUnixAddr(network, address)
	if err != nil {
		return nil, err
	}
	return &UnixAddr{UnixAddr: *addr}, nil
}
