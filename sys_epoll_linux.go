//go:build linux

package netpoll

import "golang.org/x/sys/unix"

// EPOLLET is the edge-triggered flag of epoll_ctl.
const EPOLLET = 0x80000000

// epollevent is the kernel's struct epoll_event.
type epollevent unix.EpollEvent

// EpollCreate calls epoll_create1(flag).
func EpollCreate(flag int) (fd int, err error) { return unix.EpollCreate1(flag) }

// EpollCtl calls epoll_ctl.
func EpollCtl(epfd, op, fd int, event *epollevent) (err error) {
	return unix.EpollCtl(epfd, op, fd, (*unix.EpollEvent)(event))
}

// EpollWait calls epoll_wait; msec < 0 waits forever.
func EpollWait(epfd int, events []epollevent, msec int) (n int, err error) {
	if len(events) == 0 {
		return 0, unix.EINVAL
	}
	evs := unsafeEpollEvents(events)
	return unix.EpollWait(epfd, evs, msec)
}
