//go:build darwin || dragonfly || freebsd || linux || netbsd || openbsd

package netpoll

import (
	"context"
	"net"
	"time"
)

// NewDialer returns a Dialer.
func NewDialer() Dialer { return dialer{} }

type dialer struct{}

// DialConnection dials like the package function DialConnection.
func (dialer) DialConnection(network, address string, timeout time.Duration) (connection Connection, err error) {
	return DialConnection(network, address, timeout)
}

// DialTimeout is DialConnection returning a net.Conn; on failure it returns a nil net.Conn.
func (dialer) DialTimeout(network, address string, timeout time.Duration) (conn net.Conn, err error) {
	c, err := DialConnection(network, address, timeout)
	if err != nil {
		return nil, err
	}
	return c, nil
}

// DialConnection connects to address on network and returns a registered
// connection without handlers: a *TCPConnection (TCP_NODELAY set) for
// "tcp", "tcp4" and "tcp6", a *UnixConnection for "unix", "unixgram" and
// "unixpacket". timeout <= 0 means none; it bounds name resolution and every
// connect attempt. A host that resolves to several IPs is tried in order and
// the first success, or else the first error, is returned. An empty host
// means the loopback.
//
// Errors are *net.OpError: a timeout says "i/o timeout", has Timeout() true
// and matches ErrDialTimeout; a refusal matches syscall.ECONNREFUSED; a
// malformed address, or one with no IP of the network's family, fails before
// any connect. Any other network gives net.UnknownNetworkError. On failure the
// Connection is nil.
func DialConnection(network, address string, timeout time.Duration) (connection Connection, err error) {
	ctx := context.Background()
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	switch network {
	case "tcp", "tcp4", "tcp6":
		c, err := dialTCPAddress(ctx, network, address)
		if err != nil {
			return nil, err
		}
		return c, nil
	case "unix", "unixgram", "unixpacket":
		raddr, err := ResolveUnixAddr(network, address)
		if err != nil {
			return nil, err
		}
		c, err := dialUnix(ctx, network, nil, raddr)
		if err != nil {
			return nil, err
		}
		return c, nil
	}
	return nil, net.UnknownNetworkError(network)
}

// dialTCPAddress resolves address under ctx and tries each IP in order.
func dialTCPAddress(ctx context.Context, network, address string) (*TCPConnection, error) {
	host, port, err := net.SplitHostPort(address)
	if err != nil {
		return nil, &net.OpError{Op: "dial", Net: network, Err: err}
	}
	portNum, err := net.DefaultResolver.LookupPort(ctx, network, port)
	if err != nil {
		return nil, &net.OpError{Op: "dial", Net: network, Err: err}
	}
	ips, err := lookupIPs(ctx, network, host)
	if err != nil {
		return nil, &net.OpError{Op: "dial", Net: network, Err: err}
	}
	var first error
	for _, ip := range ips {
		raddr := &TCPAddr{TCPAddr: net.TCPAddr{IP: ip.IP, Port: portNum, Zone: ip.Zone}}
		c, err := DialTCP(ctx, network, nil, raddr)
		if err == nil {
			return c, nil
		}
		if first == nil {
			first = err
		}
		if ctx.Err() != nil {
			break
		}
	}
	return nil, first
}

// lookupIPs resolves host for network; an empty host means the loopback.
func lookupIPs(ctx context.Context, network, host string) ([]net.IPAddr, error) {
	if host == "" {
		if network == "tcp6" {
			return []net.IPAddr{{IP: net.IPv6loopback}}, nil
		}
		return []net.IPAddr{{IP: net.IPv4(127, 0, 0, 1)}}, nil
	}
	if ip, zone := splitZone(host); net.ParseIP(ip) != nil {
		return filterIPs(network, []net.IPAddr{{IP: net.ParseIP(ip), Zone: zone}})
	}
	ips, err := net.DefaultResolver.LookupIPAddr(ctx, host)
	if err != nil {
		return nil, err
	}
	return filterIPs(network, ips)
}

func splitZone(host string) (ip, zone string) {
	for i := len(host) - 1; i >= 0; i-- {
		if host[i] == '%' {
			return host[:i], host[i+1:]
		}
	}
	return host, ""
}

// filterIPs keeps the addresses network can reach.
func filterIPs(network string, ips []net.IPAddr) ([]net.IPAddr, error) {
	out := ips[:0:0]
	for _, ip := range ips {
		is4 := ip.IP.To4() != nil
		if (network == "tcp4" && !is4) || (network == "tcp6" && is4) {
			continue
		}
		out = append(out, ip)
	}
	if len(out) == 0 {
		return nil, &net.AddrError{Err: "no suitable address found", Addr: network}
	}
	return out, nil
}
