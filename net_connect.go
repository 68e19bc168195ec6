//go:build darwin || dragonfly || freebsd || linux || netbsd || openbsd

package netpoll

import (
	"context"
	"errors"
	"net"
	"os"

	"golang.org/x/sys/unix"
)

// dialTimeoutError is the error inside the *net.OpError of a dial that ran out of time.
type dialTimeoutError struct{}

func (dialTimeoutError) Error() string   { return "i/o timeout" }
func (dialTimeoutError) Timeout() bool   { return true }
func (dialTimeoutError) Temporary() bool { return true }

// Is matches ErrDialTimeout and os.ErrDeadlineExceeded.
func (dialTimeoutError) Is(target error) bool {
	return target == ErrDialTimeout || target == os.ErrDeadlineExceeded
}

// connectWait is the handler of a connecting fd: it reports the single
// writability (or error) event of its one-shot registration.
type connectWait struct{ ch chan struct{} }

func (w *connectWait) onEvent(Poll, pollFlags) { wake(w.ch) }

// connectSocket makes a socket of family and sotype, binds it to laddr if
// set, connects it to raddr and waits for the end of the connect under ctx.
// It returns the connected fd; on error the fd is closed.
func connectSocket(ctx context.Context, p *defaultPoll, family, sotype int, laddr, raddr unix.Sockaddr) (int, error) {
	fd, err := socket(family, sotype)
	if err != nil {
		return -1, err
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
	case nil:
		return fd, nil
	case unix.EINPROGRESS, unix.EALREADY, unix.EAGAIN:
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
	w := &connectWait{ch: make(chan struct{}, 1)}
	op := &FDOperator{FD: fd, handler: w, poll: p}
	if err := p.Control(op, pollConnect); err != nil {
		return err
	}
	defer p.Control(op, PollDetach)
	select {
	case <-w.ch:
	case <-ctx.Done():
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return dialTimeoutError{}
		}
		return ctx.Err()
	}
	soerr, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ERROR)
	if err != nil {
		return wrapSyscall("getsockopt", err)
	}
	if soerr != 0 {
		return wrapSyscall("connect", unix.Errno(soerr))
	}
	return nil
}

// initDialed sets c up around a connected fd on p, the poller its connect
// waited on, and registers it; on error the fd is closed.
func initDialed(c *connection, p *defaultPoll, fd int, tcp bool) error {
	local, remote := socketAddrs(fd)
	c.init(fd, local, remote, new(connParts), p)
	c.isTCP = tcp // remote is nil if the peer already reset
	return c.start()
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
