//go:build darwin || freebsd || linux

package netpoll

import (
	"errors"
	"os"
	"slices"
	"sort"
	"strconv"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Test helpers that hide where macOS and FreeBSD differ from Linux.

// fdProbeMax bounds the fd numbers probeFds tries.
const fdProbeMax = 1 << 16

// openFdNumbers lists the open fds of the process in increasing order,
// leaving out any fd it opens itself. Linux lists them in /proc/self/fd,
// macOS in /dev/fd. FreeBSD's /dev/fd lists only 0, 1 and 2 unless fdescfs
// is mounted on it, which listFdDir detects; then, and wherever neither
// directory works, every number below the fd limit is probed.
func openFdNumbers() []int {
	for _, dir := range []string{"/proc/self/fd", "/dev/fd"} {
		if fds, ok := listFdDir(dir); ok {
			return fds
		}
	}
	return probeFds()
}

// listFdDir reads dir as a directory of fd numbers. It fails when the
// directory cannot be read or does not list the fd it is read through.
func listFdDir(dir string) ([]int, bool) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, false
	}
	defer f.Close()
	self := int(f.Fd())
	names, err := f.Readdirnames(-1)
	if err != nil {
		return nil, false
	}
	var fds []int
	listed := false
	for _, name := range names {
		fd, err := strconv.Atoi(name)
		switch {
		case err != nil:
		case fd == self:
			listed = true
		default:
			fds = append(fds, fd)
		}
	}
	sort.Ints(fds)
	return fds, listed
}

// probeFds finds the open fds with fcntl(F_GETFD) on every number below
// the soft fd limit, and at most fdProbeMax.
func probeFds() []int {
	limit := int64(fdProbeMax)
	var rl unix.Rlimit
	if unix.Getrlimit(unix.RLIMIT_NOFILE, &rl) == nil && int64(rl.Cur) > 0 && int64(rl.Cur) < limit {
		limit = int64(rl.Cur)
	}
	var fds []int
	for fd := 0; fd < int(limit); fd++ {
		if _, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0); err == nil {
			fds = append(fds, fd)
		}
	}
	return fds
}

// dialBacklogRetry is DialConnection, retried while a unix listener's
// backlog is full. macOS and FreeBSD refuse a unix connect to a full
// backlog at once (ECONNREFUSED; Linux says EAGAIN), and their backlog is
// only 128 (kern.ipc.somaxconn; 4096 on Linux), so many clients dialing
// together can fill it before the server accepts. TCP is not retried: a
// full TCP backlog drops the SYN, and the kernel sends it again.
func dialBacklogRetry(network, addr string, timeout time.Duration) (Connection, error) {
	deadline := time.Now().Add(timeout)
	for {
		c, err := DialConnection(network, addr, timeout)
		if err == nil || network != "unix" || !(errors.Is(err, unix.ECONNREFUSED) || errors.Is(err, unix.EAGAIN)) {
			return c, err
		}
		if timeout = time.Until(deadline); timeout <= 0 {
			return c, err
		}
		time.Sleep(time.Millisecond)
	}
}

// The fd probe, the only way on FreeBSD without fdescfs, finds what the fd
// directory lists.
func TestOpenFdNumbersProbe(t *testing.T) {
	listed := openFdNumbers()
	probed := probeFds()
	if !slices.Equal(listed, probed) {
		t.Fatalf("the fd directory lists %v, the probe finds %v", listed, probed)
	}
}
