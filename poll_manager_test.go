//go:build darwin || freebsd || linux

package netpoll

import (
	"bytes"
	"fmt"
	"math"
	"os"
	"testing"

	"golang.org/x/sys/unix"
)

// The number of pollers (docs/contract.md C12.1, C12.2, C16.7): counts the
// manager cannot hold are refused; a process out of fds for its pollers
// fails each dial cleanly and recovers; changing the count up and down
// starts no more pollers than the largest count and breaks no connection.

// A number of loops too large for the manager's count is refused, by
// SetNumLoops and by Configure, and changes nothing: the count used to wrap
// around (1<<32 became 0 and the next pick divided by zero, 1<<31 went
// negative).
func TestSetNumLoopsOutOfRange(t *testing.T) {
	loops := int(pollmanager.loops.Load())
	defer func() { _ = SetNumLoops(loops) }()
	for _, n := range []int{1 << 32, 1 << 31, 1<<32 + 1, maxNumLoops + 1, math.MaxInt} {
		if err := SetNumLoops(n); err == nil {
			_ = SetNumLoops(loops)
			t.Errorf("SetNumLoops(%d) returned nil", n)
		}
		if err := Configure(Config{PollerNum: n, BufferSize: 1234}); err == nil {
			_ = SetNumLoops(loops)
			t.Errorf("Configure(PollerNum: %d) returned nil", n)
		}
		if got := int(pollmanager.loops.Load()); got != loops {
			_ = SetNumLoops(loops)
			t.Errorf("after refusing %d loops the count is %d, want %d", n, got, loops)
		}
	}
	if got := defaultBufferSize(); got != defaultReadSize {
		_ = Configure(Config{BufferSize: defaultReadSize})
		t.Errorf("a refused Configure applied its BufferSize (%d)", got)
	}
	within(t, "Initialize", func() bool { Initialize(); return true })
}

// More loops than the process has fds for: every connection fails with the
// error, no poller fd is kept from the failed starts, and after
// SetNumLoops(1) connections work again. The pollers opened before the
// failure used to be dropped unclosed, so each dial leaked more fds until
// none was left for good. It runs in a child process with a low fd limit.
func TestSetNumLoopsOutOfFds(t *testing.T) {
	inChild(t, "NETPOLL_LOOPFDS_CHILD", "LOOPFDS-CHILD-OK", setNumLoopsOutOfFdsChild)
}

func setNumLoopsOutOfFdsChild(t *testing.T) {
	loops := int(pollmanager.loops.Load())
	defer func() { _ = SetNumLoops(loops) }()
	_ = SetNumLoops(1)
	Initialize()
	checkLeaks(t)
	ln := stdEcho(t, "tcp")
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	saved := lim
	defer func() { _ = unix.Setrlimit(unix.RLIMIT_NOFILE, &saved) }()
	before := fdCount()
	setLimit(&lim.Cur, before+40)
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	loopsWanted := min(1000, maxNumLoops) // 256 on kqueue platforms: still far more fds than the 40 left
	if err := SetNumLoops(loopsWanted); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		c, err := DialConnection("tcp", ln.Addr().String(), longWait)
		if err == nil {
			c.Close()
			t.Fatalf("dial %d with %d loops and %d fds succeeded", i, loopsWanted, before+40)
		}
		// The echo server may hold the accepted end of the failed dial
		// for a moment.
		n := 0
		if !waitUntil(longWait, func() bool { n = fdCount(); return n <= before }) {
			t.Fatalf("after failed dial %d (%v): %d fds open, %d before (poll_manager.go start drops the pollers it opened)", i, err, n, before)
		}
	}
	if err := SetNumLoops(1); err != nil {
		t.Fatal(err)
	}
	ping(t, dialEcho(t, ln), "after SetNumLoops(1)")
	os.Stdout.WriteString("LOOPFDS-CHILD-OK\n")
}

// Changing the number of loops up and down starts pollers only up to the
// largest number asked for, and shrinking never breaks a connection that
// lives on a poller no longer picked.
func TestSetNumLoopsPollerCountBounded(t *testing.T) {
	orig := int(pollmanager.loops.Load())
	defer SetNumLoops(orig)
	// Pollers live for the whole process: start the most this test asks for
	// before taking the leak baseline.
	_ = SetNumLoops(4)
	Initialize()
	largest := max(4, pollerGoroutines())
	checkLeaks(t)
	ln := stdEcho(t, "tcp")
	var conns []Connection
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for i := 0; i < 20; i++ {
		n := []int{4, 1, 3, 1, 2}[i%5]
		largest = max(largest, n)
		if err := SetNumLoops(n); err != nil {
			t.Fatal(err)
		}
		for j := 0; j < 3; j++ {
			c, err := DialConnection("tcp", ln.Addr().String(), longWait)
			if err != nil {
				t.Fatal(err)
			}
			conns = append(conns, c)
		}
		if p := pollerGoroutines(); p > largest {
			t.Fatalf("%d poller goroutines after asking for at most %d", p, largest)
		}
	}
	for i, c := range conns {
		_ = c.SetReadTimeout(longWait)
		msg := []byte(fmt.Sprintf("conn %d", i))
		if _, err := c.Write(msg); err != nil {
			t.Fatalf("conn %d after the loops changed: %v", i, err)
		}
		if got, err := c.Reader().Next(len(msg)); err != nil || !bytes.Equal(got, msg) {
			t.Fatalf("conn %d after the loops changed: %q, %v", i, got, err)
		}
		_ = c.Reader().Release()
	}
}
