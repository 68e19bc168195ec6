//go:build darwin || freebsd || linux

package netpoll

import (
	"errors"
	"net"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"
)

// listener is a non-blocking listening socket: a duplicate of a net
// listener's fd, with the original kept so that Close closes both.
type listener struct {
	fd     fdRef // each Accept holds it, so Close never closes the fd under an accept
	addr   net.Addr
	orig   net.Listener   // the converted listener, closed with ours
	packet net.PacketConn // set for "udp*": Accept is unsupported
	closed atomic.Bool
	addrs  acceptAddrs
	server atomic.Pointer[server] // the EventLoop serving it, if any
}

func newListener(fd int, addr net.Addr) *listener {
	l := &listener{addr: addr}
	l.fd.fd = int32(fd)
	return l
}

// CreateListener listens on addr like net.Listen and converts the result. For
// "udp" it binds the address, but Accept gives ErrUnsupported; "udp4" and
// "udp6" go to net.Listen, which refuses them. A bad network or address
// gives the error of net.Listen (net.ListenPacket for udp).
func CreateListener(network, addr string) (l Listener, err error) {
	if network == "udp" {
		pc, err := net.ListenPacket(network, addr)
		if err != nil {
			return nil, err
		}
		l := newListener(-1, pc.LocalAddr())
		l.packet = pc
		return l, nil
	}
	ln, err := net.Listen(network, addr)
	if err != nil {
		return nil, err
	}
	if l, err = ConvertListener(ln); err != nil {
		ln.Close()
		return nil, err
	}
	return l, nil
}

// ConvertListener returns l if it is already a Listener, and for a
// *net.TCPListener or *net.UnixListener a non-blocking Listener on a
// duplicate of its fd (closing it closes l too). Any other type, nil
// included, gives the error "listener type can't support"; a closed net
// listener gives the *net.OpError of its File method ("file tcp addr: use
// of closed network connection").
func ConvertListener(l net.Listener) (nl Listener, err error) {
	if nl, ok := l.(Listener); ok {
		return nl, nil
	}
	switch l.(type) {
	case *net.TCPListener, *net.UnixListener:
	default:
		return nil, errors.New("listener type can't support")
	}
	rc, err := l.(syscall.Conn).SyscallConn()
	if err != nil {
		return nil, err
	}
	fd, err := dupFd(rc)
	if err != nil {
		if oe, ok := err.(*net.OpError); ok && oe.Op == "raw-control" {
			named := *oe
			named.Op = "file" // the fd is taken as File would take it
			err = &named
		}
		return nil, err
	}
	cl := newListener(fd, l.Addr())
	cl.orig, cl.addrs = l, listenerAddrs(fd)
	return cl, nil
}

// dupFd duplicates the fd behind rc as a non-blocking, close-on-exec fd.
func dupFd(rc syscall.RawConn) (int, error) {
	fd, derr := -1, error(nil)
	if err := rc.Control(func(sfd uintptr) {
		fd, derr = unix.FcntlInt(sfd, unix.F_DUPFD_CLOEXEC, 0)
	}); err != nil {
		return -1, err
	}
	if derr != nil {
		return -1, wrapSyscall("dup", derr)
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return -1, wrapSyscall("fcntl", err)
	}
	return fd, nil
}

// Accept never blocks: with no connection pending it returns (nil, nil).
// Otherwise it returns a Conn that no poller watches: its fd is in
// blocking mode, Read and Write are plain syscalls, and every byte the
// peer sends is the caller's, to read there or through the fd (an
// EventLoop accepts and registers its connections itself). The Conn's
// deadline setters give ErrUnsupported. After Close Accept fails with
// ErrConnClosed; on udp, always with ErrUnsupported.
func (l *listener) Accept() (net.Conn, error) {
	if l.packet != nil {
		return nil, Exception(ErrUnsupported, "UDP") // the reference's text
	}
	if !l.fd.acquire() {
		return nil, Exception(ErrConnClosed, "listener closed")
	}
	defer l.fd.release()
	for {
		fd, remote, err := accept(l.fd.num(), l.addrs.unixNet)
		switch err {
		case nil:
			if err = unix.SetNonblock(fd, false); err != nil {
				unix.Close(fd)
				return nil, wrapSyscall("fcntl", err)
			}
			return newPlainConn(fd, l.addrs.localAddr(fd), remote), nil
		case unix.EAGAIN:
			return nil, nil
		}
		if acceptAgain(err) {
			continue
		}
		return nil, err // the bare errno, as the reference gives it
	}
}

// Close closes the listener and the one it was converted from. An
// EventLoop serving it stops accepting first and unregisters it, so the fd
// number is free for any socket the process opens next; that Serve keeps
// waiting until Shutdown. Only the first call does anything. It returns nil,
// also when the listener it was converted from had been closed already.
func (l *listener) Close() error {
	if !l.closed.CompareAndSwap(false, true) {
		return nil
	}
	if l.packet != nil {
		_ = l.packet.Close()
		return nil
	}
	if s := l.server.Load(); s != nil {
		s.release()
	}
	l.fd.close(false)
	if l.orig != nil {
		_ = l.orig.Close()
	}
	return nil
}

// Addr returns the listening address.
func (l *listener) Addr() net.Addr { return l.addr }

// Fd returns the listening fd (-1 for a udp listener); after Close, the
// number it had.
func (l *listener) Fd() (fd int) { return l.fd.num() }
