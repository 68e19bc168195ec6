//go:build darwin || freebsd || linux

package netpoll

import (
	"fmt"
	"net"
	"os"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"go.uber.org/goleak"
	"golang.org/x/sys/unix"
)

// The leak check every test that opens fds or starts goroutines makes, and
// the fd counting it rests on, which hides where macOS and FreeBSD differ
// from Linux.

// checkLeaks fails the test if it leaves a file descriptor open or a
// goroutine running. Call it first in a test: its check runs after every
// later cleanup. The pollers and the runtime's own poller start lazily and
// then stay, so they are started before the baseline, and the goroutines
// that live for the whole process (pollers, gopool workers: leakOptions)
// are not counted. An fd closed or a goroutine ending asynchronously after
// the test is waited for, up to longWait.
func checkLeaks(t testing.TB) {
	t.Helper()
	Initialize()
	warmRuntimePoller(t)
	before := openFdNumbers()
	ignore := append(leakOptions(), goleak.IgnoreCurrent())
	t.Cleanup(func() {
		var after []int
		if !waitUntil(longWait, func() bool { after = openFdNumbers(); return len(after) <= len(before) }) {
			t.Errorf("file descriptors leaked: %d open before, %d after\nbefore: %v\nafter:  %v\n%s",
				len(before), len(after), before, after, describeFDs(after))
		}
		var leak error
		if !waitUntil(longWait, func() bool { leak = goleak.Find(ignore...); return leak == nil }) {
			t.Errorf("goroutines leaked: %v", leak)
		}
	})
}

// warmRuntimePoller makes the Go runtime open its own poller, which it does
// at the first network fd and then keeps.
func warmRuntimePoller(t testing.TB) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	_ = ln.Close()
}

// fdCount returns the number of open fds of the process.
func fdCount() int { return len(openFdNumbers()) }

// fdSet returns the numbers of the open fds.
func fdSet() map[int]bool {
	set := map[int]bool{}
	for _, fd := range openFdNumbers() {
		set[fd] = true
	}
	return set
}

// fdOpen reports whether fd is an open file descriptor.
func fdOpen(fd int) bool {
	_, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0)
	return err == nil
}

// closeNewFds closes every fd opened since before was taken, after a test
// found a leak it reports as a bug, so that its leak check does not report
// it again. It returns how many it closed.
func closeNewFds(before map[int]bool) int {
	n := 0
	for fd := range fdSet() {
		if !before[fd] && fd > 2 && unix.Close(fd) == nil {
			n++
		}
	}
	return n
}

// waitFdsAtMost waits until at most want fds are open and returns the
// count, failing the test (not at once) if they never come back.
func waitFdsAtMost(t testing.TB, want int) int {
	t.Helper()
	n := 0
	if !waitUntil(longWait, func() bool { n = fdCount(); return n <= want }) {
		t.Errorf("fds: %d open, want at most %d:\n%s", n, want, describeFDs(openFdNumbers()))
	}
	return n
}

// waitGoroutinesAtMost waits until at most want goroutines run and returns
// the count, failing the test (not at once) if they never come back.
func waitGoroutinesAtMost(t testing.TB, want int) int {
	t.Helper()
	n := 0
	if !waitUntil(longWait, func() bool { n = runtime.NumGoroutine(); return n <= want }) {
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		t.Errorf("goroutines: %d, want at most %d:\n%s", n, want, buf)
	}
	return n
}

// describeFDs says what each descriptor points at, for a leak report.
func describeFDs(fds []int) string {
	if runtime.GOOS != "linux" {
		return ""
	}
	var b strings.Builder
	for _, fd := range fds {
		target, _ := os.Readlink("/proc/self/fd/" + strconv.Itoa(fd))
		fmt.Fprintf(&b, "%d -> %s\n", fd, target)
	}
	return b.String()
}

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
		if fdOpen(fd) {
			fds = append(fds, fd)
		}
	}
	return fds
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
