//go:build darwin || dragonfly || freebsd || netbsd || openbsd

package netpoll

import (
	"golang.org/x/sys/unix"
)

// unnamedUnixAddr is how an unnamed unix socket's address prints.
const unnamedUnixAddr = ""

// writev writes bufs in order, one write each, stopping at the first
// short write or error; x/sys has no writev for every BSD.
func writev(fd int, bufs [][]byte) (int, error) {
	total := 0
	for _, b := range bufs {
		n, err := unix.Write(fd, b)
		if n > 0 {
			total += n
		}
		if err != nil {
			if total > 0 {
				return total, nil
			}
			return n, err
		}
		if n < len(b) {
			break
		}
	}
	return total, nil
}

// accept takes one pending connection and makes it non-blocking and close-on-exec.
func accept(fd int) (int, unix.Sockaddr, error) {
	nfd, sa, err := unix.Accept(fd)
	if err != nil {
		return -1, nil, err
	}
	unix.CloseOnExec(nfd)
	if err = unix.SetNonblock(nfd, true); err != nil {
		unix.Close(nfd)
		return -1, nil, err
	}
	return nfd, sa, nil
}

// socket makes a non-blocking, close-on-exec socket.
func socket(family, sotype int) (int, error) {
	fd, err := unix.Socket(family, sotype, 0)
	if err != nil {
		return -1, wrapSyscall("socket", err)
	}
	unix.CloseOnExec(fd)
	if err = unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return -1, wrapSyscall("fcntl", err)
	}
	return fd, nil
}
