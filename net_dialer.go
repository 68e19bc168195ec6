//go:build darwin || freebsd || linux

package netpoll

import (
	"context"
	"net"
	"time"
)

// NewDialer returns a Dialer whose methods dial like DialConnection.
func NewDialer() Dialer { return &dialer{} }

type dialer struct{}

// DialConnection dials like the package function DialConnection.
func (d *dialer) DialConnection(network, address string, timeout time.Duration) (connection Connection, err error) {
	return DialConnection(network, address, timeout)
}

// DialTimeout is DialConnection returning a net.Conn, which on failure
// holds the same nil pointer DialConnection returns.
func (d *dialer) DialTimeout(network, address string, timeout time.Duration) (conn net.Conn, err error) {
	return d.DialConnection(network, address, timeout)
}

// DialConnection connects to address on network and returns a registered
// connection without handlers: a *TCPConnection (TCP_NODELAY set) for
// "tcp", "tcp4" and "tcp6", a *UnixConnection for "unix", "unixgram" and
// "unixpacket".
//
// For tcp, the host is resolved within the timeout and each of its IPs is
// tried in order, each with DialTCP over "tcp6" for an IPv6 address and
// "tcp" otherwise; an empty host means the unspecified address (the local
// host). The first success is returned, or else the first error, or the
// error of the attempt during which the timeout passed. timeout <= 0 means
// none. An address that does not parse, a port or host that does not
// resolve gives the error of net.SplitHostPort or of the resolver as it is;
// every connect failure is a *net.OpError (see DialTCP): a timeout reads
// "dial tcp host:port: i/o timeout" around a plain error (not a net.Error
// with Timeout() true, not ErrDialTimeout), a refusal wraps ErrConnClosed
// "by peer".
//
// The unix networks ignore the timeout and fail as DialUnix does.
//
// On failure of a tcp or unix dial the Connection is not a nil interface:
// it holds a nil *TCPConnection or *UnixConnection, so check err. Any other
// network gives a nil Connection and net.UnknownNetworkError.
func DialConnection(network, address string, timeout time.Duration) (connection Connection, err error) {
	ctx := context.Background()
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	switch network {
	case "tcp", "tcp4", "tcp6":
		return dialTCPAddress(ctx, network, address)
	case "unix", "unixgram", "unixpacket":
		return DialUnix(network, nil, &UnixAddr{UnixAddr: net.UnixAddr{Name: address, Net: network}})
	}
	return nil, net.UnknownNetworkError(network)
}

// dialTCPAddress resolves address under ctx and tries each IP in order.
func dialTCPAddress(ctx context.Context, network, address string) (*TCPConnection, error) {
	host, port, err := net.SplitHostPort(address)
	if err != nil {
		return nil, err
	}
	portNum, err := net.DefaultResolver.LookupPort(ctx, network, port)
	if err != nil {
		return nil, err
	}
	ips := []net.IPAddr{{}} // an empty host: the unspecified address
	if host != "" {
		if ips, err = net.DefaultResolver.LookupIPAddr(ctx, host); err != nil {
			return nil, err
		}
		if len(ips) == 0 {
			return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
		}
	}
	var first error
	for _, ip := range ips {
		raddr := &TCPAddr{TCPAddr: net.TCPAddr{IP: ip.IP, Port: portNum, Zone: ip.Zone}}
		ipNet := "tcp"
		if ip.IP != nil && ip.IP.To4() == nil {
			ipNet = "tcp6"
		}
		c, err := DialTCP(ctx, ipNet, nil, raddr)
		if err == nil {
			return c, nil
		}
		if ctx.Err() != nil {
			return nil, err
		}
		if first == nil {
			first = err
		}
	}
	return nil, first
}
