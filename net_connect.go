//go:build darwin || freebsd || linux

package netpoll

import (
	"context"
	"errors"
	"net"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// The errors inside the *net.OpError of a dial whose context ended: plain
// errors, as the text of Go's net package has them. A timeout is not a
// net.Error with Timeout() true and does not match ErrDialTimeout.
var (
	errDialTimeout  = errors.New("i/o timeout")
	errDialCanceled = errors.New("operation was canceled")
	errMissingAddr  = errors.New("missing address")
)

// ctxDialError maps the error of an ended dial context.
func ctxDialError(err error) error {
	switch err {
	case context.DeadlineExceeded:
		return errDialTimeout
	case context.Canceled:
		return errDialCanceled
	}
	return err
}

// connectWait is the handler of a connecting fd: it records the flags of
// the single event of its one-shot registration and wakes the dialer.
type connectWait struct {
	ch    chan struct{}
	flags atomic.Uint32
}

// onEvent: a one-shot registration reports once, so it is always settled.
func (w *connectWait) onEvent(_ Poll, flags pollFlags) bool {
	w.flags.Store(uint32(flags))
	wake(w.ch)
	return true
}

// connectSocket makes a socket of family and sotype, binds it to laddr if
// set, connects it to raddr and waits for the end of the connect under ctx.
// An AF_INET6 socket gets IPV6_V6ONLY set to v6only. It returns the
// connected fd; on error the fd is closed.
//
// A connect that fails at once (EAGAIN included: a unix listener whose
// backlog is full refuses rather than queues) gives the *os.SyscallError of
// connect. One that fails while in progress ends with a hang-up of the
// socket, reported as ErrConnClosed "by peer". A context that is done
// before the connect completes gives "i/o timeout" or "operation was
// canceled".
func connectSocket(ctx context.Context, p *defaultPoll, family, sotype int, v6only bool, laddr, raddr unix.Sockaddr) (int, error) {
	if err := ctx.Err(); err != nil {
		return -1, ctxDialError(err)
	}
	fd, err := socket(family, sotype)
	if err != nil {
		return -1, err
	}
	if family == unix.AF_INET6 {
		only := 0
		if v6only {
			only = 1
		}
		_ = unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, only)
	}
	if laddr != nil {
		if err = unix.Bind(fd, laddr); err != nil {
			unix.Close(fd)
			return -1, wrapSyscall("bind", err)
		}
	}
	for {
		err = unix.Connect(fd, raddr)
		if err != unix.EINTR {
			break
		}
	}
	switch err {
	case nil, unix.EISCONN:
		if err = ctx.Err(); err == nil {
			return fd, nil
		}
		err = ctxDialError(err)
	case unix.EINPROGRESS, unix.EALREADY:
		if err = waitConnect(ctx, p, fd); err == nil {
			return fd, nil
		}
	default:
		err = wrapSyscall("connect", err)
	}
	unix.Close(fd)
	return -1, err
}

// waitConnect waits, on p, for a non-blocking connect to end.
func waitConnect(ctx context.Context, p *defaultPoll, fd int) error {
	for {
		done, err := waitConnectOnce(ctx, p, fd)
		if done {
			return err
		}
	}
}

// waitConnectOnce waits for one event of fd and reports whether the
// connect ended, and how. A wake-up that finds the connect still going
// (a spurious one) reports false.
func waitConnectOnce(ctx context.Context, p *defaultPoll, fd int) (bool, error) {
	w := &connectWait{ch: make(chan struct{}, 1)}
	op := &FDOperator{FD: fd, handler: w, poll: p}
	if err := p.Control(op, pollConnect); err != nil {
		return true, err
	}
	defer p.Control(op, PollDetach)
	if err := ctx.Err(); err != nil {
		return true, ctxDialError(err)
	}
	select {
	case <-w.ch:
	case <-ctx.Done():
		return true, ctxDialError(ctx.Err())
	}
	hup := pollFlags(w.flags.Load())&pollHup != 0
	soerr, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ERROR)
	if err != nil {
		return true, wrapSyscall("getsockopt", err)
	}
	switch no := unix.Errno(soerr); no {
	case 0, unix.EISCONN:
		if _, err := unix.Getpeername(fd); err == nil {
			return true, nil
		}
		if hup {
			return true, Exception(ErrConnClosed, "by peer")
		}
		return false, nil
	case unix.EINPROGRESS, unix.EALREADY, unix.EINTR:
		return false, nil
	default:
		if hup {
			return true, Exception(ErrConnClosed, "by peer")
		}
		return true, wrapSyscall("connect", no)
	}
}

// dialSocket picks a poller, connects a new socket to raddr there (see
// connectSocket), and sets c up around it and registers it; on error the
// fd is closed.
func dialSocket(ctx context.Context, c *connection, family, sotype int, v6only bool, laddr, raddr unix.Sockaddr) error {
	p, err := pollmanager.pick()
	if err != nil {
		return err
	}
	fd, err := connectSocket(ctx, p, family, sotype, v6only, laddr, raddr)
	if err != nil {
		return err
	}
	local, remote := socketAddrs(fd)
	c.init(fd, local, remote, new(connParts), p)
	c.isTCP = family != unix.AF_UNIX // remote is nil if the peer already reset
	if err = c.start(); err != nil {
		return err
	}
	c.stats().dialed.Add(1)
	return nil
}

// orBackground turns a nil ctx into Background.
func orBackground(ctx context.Context) context.Context {
	if ctx == nil {
		return context.Background()
	}
	return ctx
}

// dialError wraps err as the *net.OpError of a dial.
func dialError(network string, laddr, raddr net.Addr, err error) error {
	if _, ok := err.(*net.OpError); ok {
		return err
	}
	return &net.OpError{Op: "dial", Net: network, Source: laddr, Addr: raddr, Err: err}
}
