package main

import (
	"encoding/binary"
	"errors"
	"fmt"
	"runtime"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// The floor is the physical limit for this protocol on this machine: one
// goroutine locked to its thread, raw level-triggered epoll, the handler
// inline, and per readiness event one read (64 KiB) and one write carrying
// every response to what that read brought. An idle connection costs a small
// struct; buffers are shared, except a partial request or an unsent response,
// which a connection keeps until it completes. It answers the same way in
// both modes: in mux, one write per event batches the responses.
type floor struct {
	lfd, epfd, efd int
	accepted       *atomic.Int64
	conns          []*floorConn // by fd
	rbuf, wbuf     []byte
}

type floorConn struct {
	in  []byte // the start of a partial request
	out []byte // response bytes the socket did not take yet
}

func startFloor(_ string, accepted *atomic.Int64) (server, error) {
	f := &floor{lfd: -1, epfd: -1, efd: -1, accepted: accepted}
	addr, err := f.open()
	if err != nil {
		f.closeAll()
		return server{}, err
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		f.loop()
	}()
	stop := func() error {
		var one [8]byte // an eventfd increment: a uint64 in the machine's byte order
		binary.NativeEndian.PutUint64(one[:], 1)
		if _, err := unix.Write(f.efd, one[:]); err != nil {
			return err
		}
		<-done
		f.closeAll()
		return nil
	}
	return server{addr: addr, stop: stop}, nil
}

func (f *floor) open() (string, error) {
	var err error
	if f.lfd, err = unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0); err != nil {
		return "", err
	}
	if err = unix.SetsockoptInt(f.lfd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1); err != nil {
		return "", err
	}
	if err = unix.Bind(f.lfd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		return "", err
	}
	if err = unix.Listen(f.lfd, 4096); err != nil {
		return "", err
	}
	sa, err := unix.Getsockname(f.lfd)
	if err != nil {
		return "", err
	}
	in4, ok := sa.(*unix.SockaddrInet4)
	if !ok {
		return "", errors.New("floor: not an IPv4 socket")
	}
	if f.epfd, err = unix.EpollCreate1(unix.EPOLL_CLOEXEC); err != nil {
		return "", err
	}
	if f.efd, err = unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC); err != nil {
		return "", err
	}
	for _, fd := range []int{f.lfd, f.efd} {
		if err = unix.EpollCtl(f.epfd, unix.EPOLL_CTL_ADD, fd, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(fd)}); err != nil {
			return "", err
		}
	}
	f.rbuf = make([]byte, 64<<10)
	return fmt.Sprintf("127.0.0.1:%d", in4.Port), nil
}

func (f *floor) closeAll() {
	for fd, c := range f.conns {
		if c != nil {
			unix.Close(fd)
		}
	}
	f.conns = nil
	for _, fd := range []int{f.lfd, f.epfd, f.efd} {
		if fd >= 0 {
			unix.Close(fd)
		}
	}
}

func (f *floor) loop() {
	runtime.LockOSThread()
	events := make([]unix.EpollEvent, 256)
	for {
		n, err := unix.EpollWait(f.epfd, events, -1)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return
		}
		for _, ev := range events[:n] {
			switch fd := int(ev.Fd); fd {
			case f.lfd:
				f.accept()
			case f.efd:
				return
			default:
				f.event(fd, ev.Events)
			}
		}
	}
}

func (f *floor) accept() {
	for {
		fd, _, err := unix.Accept4(f.lfd, unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC)
		if err != nil {
			return // EAGAIN: all accepted; anything else: try at the next event
		}
		unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
		ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP, Fd: int32(fd)}
		if err := unix.EpollCtl(f.epfd, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
			unix.Close(fd)
			continue
		}
		for fd >= len(f.conns) {
			f.conns = append(f.conns, nil)
		}
		f.conns[fd] = &floorConn{}
		f.accepted.Add(1)
	}
}

func (f *floor) drop(fd int) {
	unix.Close(fd) // also removes it from the epoll set
	f.conns[fd] = nil
}

func (f *floor) event(fd int, events uint32) {
	if fd >= len(f.conns) || f.conns[fd] == nil {
		return
	}
	c := f.conns[fd]
	if events&unix.EPOLLERR != 0 {
		f.drop(fd)
		return
	}
	if events&unix.EPOLLOUT != 0 && len(c.out) > 0 {
		w, err := unix.Write(fd, c.out)
		if err != nil && err != unix.EAGAIN {
			f.drop(fd)
			return
		}
		if w > 0 {
			c.out = c.out[:copy(c.out, c.out[w:])]
		}
		if len(c.out) == 0 {
			c.out = nil
			ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP, Fd: int32(fd)}
			unix.EpollCtl(f.epfd, unix.EPOLL_CTL_MOD, fd, &ev)
		}
	}
	if events&(unix.EPOLLIN|unix.EPOLLHUP|unix.EPOLLRDHUP) == 0 {
		return
	}
	m, err := unix.Read(fd, f.rbuf)
	if err == unix.EAGAIN {
		return
	}
	if err != nil || m == 0 {
		f.drop(fd)
		return
	}
	data := f.rbuf[:m]
	if len(c.in) > 0 {
		c.in = append(c.in, data...)
		data = c.in
	}
	out := f.wbuf[:0]
	for len(data) >= headerLen {
		n, err := bodyLen(data)
		if err != nil {
			f.drop(fd)
			return
		}
		if len(data) < headerLen+n {
			break
		}
		k := len(out)
		out = append(out, make([]byte, responseLen(n-idLen))...)
		handle(out[k:], data[headerLen:headerLen+n])
		data = data[headerLen+n:]
	}
	f.wbuf = out
	if len(data) > 0 {
		// Keep the partial request (memmove: data may be inside c.in).
		if cap(c.in) < len(data) {
			c.in = make([]byte, len(data), 2*len(data))
		}
		c.in = c.in[:copy(c.in[:len(data)], data)]
	} else {
		c.in = c.in[:0]
	}
	if len(out) == 0 {
		return
	}
	if len(c.out) > 0 { // still waiting for EPOLLOUT
		c.out = append(c.out, out...)
		return
	}
	w, err := unix.Write(fd, out)
	if err != nil && err != unix.EAGAIN {
		f.drop(fd)
		return
	}
	if w < len(out) {
		if w < 0 {
			w = 0
		}
		c.out = append([]byte(nil), out[w:]...)
		ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLOUT | unix.EPOLLRDHUP, Fd: int32(fd)}
		unix.EpollCtl(f.epfd, unix.EPOLL_CTL_MOD, fd, &ev)
	}
}
