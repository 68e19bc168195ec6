//go:build darwin || freebsd || linux

package netpoll

import (
	"context"
	"errors"
	"net"
	"os"

	"golang.org/x/sys/unix"
)

// UnixConnection is a dialed unix-socket connection. It has every method of
// Connection plus Fd, Detach, SetKeepAlive, SetOnConnect and SetOnDisconnect.
type UnixConnection struct {
	connection
}

// DialUnix connects to raddr over network ("unix", "unixgram",
// "unixpacket"), from laddr if it is not nil; it has no timeout. Every
// error is a *net.OpError whose Source and Addr are laddr and raddr: a bad
// network, a nil raddr or an empty raddr name ("missing address"), or the
// failure of bind or connect (a listener whose backlog is full refuses with
// EAGAIN, "connect: resource temporarily unavailable"). On failure the
// *UnixConnection is nil.
func DialUnix(network string, laddr, raddr *UnixAddr) (*UnixConnection, error) {
	la, ra := laddr.opAddr(), raddr.opAddr()
	sotype, ok := unixSocketTypes[network]
	if !ok {
		return nil, dialError(network, la, ra, net.UnknownNetworkError(network))
	}
	if raddr == nil || raddr.Name == "" {
		return nil, dialError(network, la, ra, errMissingAddr)
	}
	var lsa unix.Sockaddr
	if laddr != nil && laddr.Name != "" {
		lsa = &unix.SockaddrUnix{Name: laddr.Name}
	}
	uc := &UnixConnection{}
	rsa := &unix.SockaddrUnix{Name: raddr.Name}
	if err := dialSocket(context.Background(), &uc.connection, unix.AF_UNIX, sotype, false, lsa, rsa); err != nil {
		return nil, dialError(network, la, ra, err)
	}
	return uc, nil
}

// opAddr is a as the net.Addr of an error: nil for a nil a.
func (a *UnixAddr) opAddr() net.Addr {
	if a == nil {
		return nil
	}
	return a
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
// error and is not closed; a refused open fd is left non-blocking. The
// error reads "connection has been closed " and the errno's text ("...
// bad file descriptor", "... operation not permitted") and errors.Is
// matches it with ErrConnClosed and with the errno. A fd another open
// Connection wraps gives such an error for EEXIST, and that Connection
// keeps working.
func NewFDConnection(fd int) (Connection, error) {
	if fd < 0 {
		return nil, fdConnError(unix.EBADF)
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		return nil, fdConnError(err)
	}
	local, remote := socketAddrs(fd)
	c, err := newConnection(fd, local, remote)
	if err == nil {
		err = c.register()
	}
	if err != nil {
		return nil, fdConnError(err)
	}
	c.stats().dialed.Add(1)
	return c, nil
}

// fdConnError words a NewFDConnection failure caused by an errno as
// ErrConnClosed with the errno's text; other errors are returned as they are.
func fdConnError(err error) error {
	var no unix.Errno
	if se := (*os.SyscallError)(nil); errors.As(err, &se) {
		no, _ = se.Err.(unix.Errno)
	} else {
		no, _ = err.(unix.Errno)
	}
	if no == 0 {
		return err
	}
	return &errnoCause{error: Exception(ErrConnClosed, no.Error()), errno: no}
}

// errnoCause is an error that errors.Is also matches with errno.
type errnoCause struct {
	error
	errno unix.Errno
}

func (e *errnoCause) Unwrap() error { return e.error }

func (e *errnoCause) Is(target error) bool { return target == e.errno }
