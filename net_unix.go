//go:build darwin || dragonfly || freebsd || linux || netbsd || openbsd

package netpoll

import (
	"context"
	"errors"
	"net"

	"golang.org/x/sys/unix"
)

// UnixConnection is a dialed unix-socket connection. It has every method of
// Connection plus Fd, Detach, SetKeepAlive, SetOnConnect and SetOnDisconnect.
type UnixConnection struct {
	connection
}

// DialUnix connects to raddr over network ("unix", "unixgram",
// "unixpacket"), from laddr if it is not nil. A bad network or a nil raddr
// gives a *net.OpError, as does every bind or connect failure (an empty
// raddr name included).
func DialUnix(network string, laddr, raddr *UnixAddr) (*UnixConnection, error) {
	return dialUnix(context.Background(), network, laddr, raddr)
}

// dialUnix is DialUnix bounded by ctx.
func dialUnix(ctx context.Context, network string, laddr, raddr *UnixAddr) (*UnixConnection, error) {
	var la, ra net.Addr
	if laddr != nil {
		la = &laddr.UnixAddr
	}
	if raddr != nil {
		ra = &raddr.UnixAddr
	}
	sotype, ok := unixSocketTypes[network]
	if !ok {
		return nil, dialError(network, la, ra, net.UnknownNetworkError(network))
	}
	if raddr == nil {
		return nil, dialError(network, la, nil, errors.New("missing address"))
	}
	var lsa unix.Sockaddr
	if laddr != nil {
		lsa = &unix.SockaddrUnix{Name: laddr.Name}
	}
	p, err := pollmanager.pick()
	if err != nil {
		return nil, dialError(network, la, ra, err)
	}
	fd, err := connectSocket(ctx, p, unix.AF_UNIX, sotype, lsa, &unix.SockaddrUnix{Name: raddr.Name})
	if err != nil {
		return nil, dialError(network, la, ra, err)
	}
	uc := &UnixConnection{}
	if err = initDialed(&uc.connection, p, fd, false); err != nil {
		return nil, dialError(network, la, ra, err)
	}
	return uc, nil
}

var unixSocketTypes = map[string]int{
	"unix":       unix.SOCK_STREAM,
	"unixgram":   unix.SOCK_DGRAM,
	"unixpacket": unix.SOCK_SEQPACKET,
}

// NewFDConnection wraps fd, a connected socket the caller hands over, in a
// registered Connection without handlers; its addresses come from the
// socket (nil for a fd that is not a socket). A negative fd, one that is
// not open, or one the poller refuses (on Linux, a regular file) gives an
// error and is not closed; a refused open fd is left non-blocking. A fd
// another open Connection wraps gives an error matching EEXIST, and that
// Connection keeps working.
func NewFDConnection(fd int) (Connection, error) {
	if fd < 0 {
		return nil, Exception(unix.EBADF, "new fd connection")
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		return nil, wrapSyscall("fcntl", err)
	}
	local, remote := socketAddrs(fd)
	c, err := newConnection(fd, local, remote)
	if err == nil {
		err = c.register()
	}
	if err != nil {
		return nil, err
	}
	return c, nil
}
