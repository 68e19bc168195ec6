//go:build linux

package netpoll

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// EPOLLET is the edge-triggered flag of epoll_ctl.
const EPOLLET = 0x80000000

// epollevent is the kernel's struct epoll_event: the event mask and eight
// bytes of caller data. Its fields are unexported, as in the API it mirrors.
type epollevent struct {
	events uint32
	data   [8]byte
}

// toKernel and fromKernel convert to and from the x/sys layout, whose Fd and
// Pad fields hold the data bytes on every architecture.
func (e *epollevent) toKernel() unix.EpollEvent {
	k := unix.EpollEvent{Events: e.events}
	*(*[8]byte)(unsafe.Pointer(&k.Fd)) = e.data
	return k
}

func (e *epollevent) fromKernel(k *unix.EpollEvent) {
	e.events = k.Events
	e.data = *(*[8]byte)(unsafe.Pointer(&k.Fd))
}

// EpollCreate calls epoll_create1(flag); errors are the raw errno (EINVAL for
// a bad flag).
func EpollCreate(flag int) (fd int, err error) { return unix.EpollCreate1(flag) }

// EpollCtl calls epoll_ctl; a nil event passes NULL, which EPOLL_CTL_DEL
// accepts. Errors are the raw errno.
func EpollCtl(epfd, op, fd int, event *epollevent) (err error) {
	if event == nil {
		return unix.EpollCtl(epfd, op, fd, nil)
	}
	k := event.toKernel()
	return unix.EpollCtl(epfd, op, fd, &k)
}

// EpollWait calls epoll_wait; msec < 0 waits forever. An empty events gives
// EINVAL; other errors are the raw errno.
func EpollWait(epfd int, events []epollevent, msec int) (n int, err error) {
	if len(events) == 0 {
		return 0, unix.EINVAL
	}
	evs := make([]unix.EpollEvent, len(events))
	n, err = unix.EpollWait(epfd, evs, msec)
	for i := 0; i < n; i++ {
		events[i].fromKernel(&evs[i])
	}
	return n, err
}
