//go:build darwin || freebsd || linux

package netpoll

import (
	"bytes"
	"context"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// emfileChildEnv marks the child process of TestEventLoopAcceptEMFILE.
const emfileChildEnv = "NETPOLL_TEST_EMFILE_CHILD"

// docs/contract.md C9.2: when accept fails with EMFILE the server neither spins nor floods
// the log, and it accepts again once descriptors are free; Stats.AcceptErrors
// counts the failures (C17). The test lowers
// RLIMIT_NOFILE and exhausts the descriptor table, so it runs in a child
// process (this test binary, re-executed) to keep the rest of the suite safe.
func TestEventLoopAcceptEMFILE(t *testing.T) {
	if os.Getenv(emfileChildEnv) == "1" {
		emfileChild(t)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 12*longWait)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestEventLoopAcceptEMFILE$", "-test.v", "-test.count=1", "-test.timeout=2m")
	cmd.Env = append(os.Environ(), emfileChildEnv+"=1")
	out, err := cmd.CombinedOutput()
	t.Logf("child output:\n%s", out)
	require.NoError(t, err, "the child process failed")
	require.Contains(t, string(out), "--- PASS: TestEventLoopAcceptEMFILE")
}

// lineCounter is a log sink that counts lines.
type lineCounter struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *lineCounter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *lineCounter) lines() (int, string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.buf.String()
	return strings.Count(s, "\n"), s
}

// cpuTime is the process's user plus system CPU time.
func cpuTime(t testing.TB) time.Duration {
	var ru unix.Rusage
	require.NoError(t, unix.Getrusage(unix.RUSAGE_SELF, &ru))
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// setLimit sets an rlimit field, whose type differs between systems.
func setLimit[T int64 | uint64](field *T, n int) { *field = T(n) }

func emfileChild(t *testing.T) {
	checkLeaks(t)
	logs := &lineCounter{}
	SetLoggerOutput(logs)
	t.Cleanup(func() { SetLoggerOutput(os.Stderr) })

	var accepted atomic.Int64
	s := startServer(t, "tcp", func(ctx context.Context, c Connection) error {
		return echoAll(c)
	}, WithOnPrepare(func(c Connection) context.Context {
		accepted.Add(1)
		return nil
	}))
	warm := dialStd(t, "tcp", s.addr)
	roundTrip(t, warm, "warm") // the listener is registered and serving

	var lim unix.Rlimit
	require.NoError(t, unix.Getrlimit(unix.RLIMIT_NOFILE, &lim))
	saved := lim
	t.Cleanup(func() { _ = unix.Setrlimit(unix.RLIMIT_NOFILE, &saved) })
	open := fdCount()
	setLimit(&lim.Cur, open+64)
	require.NoError(t, unix.Setrlimit(unix.RLIMIT_NOFILE, &lim))

	// Exhaust the table with /dev/null descriptors.
	var fillers []int
	freeFillers := func() {
		for _, fd := range fillers {
			_ = unix.Close(fd)
		}
		fillers = nil
	}
	t.Cleanup(freeFillers)
	fill := func() {
		for {
			fd, err := unix.Open("/dev/null", unix.O_RDONLY|unix.O_CLOEXEC, 0)
			if err != nil {
				require.ErrorIs(t, err, unix.EMFILE)
				return
			}
			fillers = append(fillers, fd)
			require.Less(t, len(fillers), 100000, "the descriptor limit does not apply")
		}
	}

	// Three client sockets, made before the table is full, connect (the
	// kernel queues them) and send a greeting; the server's accept has no
	// descriptor left for them.
	var clientFds []int
	for i := 0; i < 3; i++ {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM, 0)
		require.NoError(t, err)
		unix.CloseOnExec(fd)
		clientFds = append(clientFds, fd)
	}
	t.Cleanup(func() {
		for _, fd := range clientFds {
			_ = unix.Close(fd)
		}
	})
	var before Stats
	ReadStats(&before)
	fill()
	tcpAddr, err := net.ResolveTCPAddr("tcp", s.addr)
	require.NoError(t, err)
	sa := &unix.SockaddrInet4{Port: tcpAddr.Port}
	copy(sa.Addr[:], tcpAddr.IP.To4())
	for _, fd := range clientFds {
		require.NoError(t, unix.Connect(fd, sa))
		_, err = unix.Write(fd, []byte("hello"))
		require.NoError(t, err)
	}

	// Watch for a second: a server retrying accept in a loop would burn a
	// whole core, and one logging each failure would write many lines.
	cpu0 := cpuTime(t)
	start := time.Now()
	time.Sleep(time.Second)
	used, wall := cpuTime(t)-cpu0, time.Since(start)
	n, text := logs.lines()
	t.Logf("while out of descriptors: %v CPU in %v, %d log lines:\n%s", used, wall, n, text)
	require.Less(t, used, wall/2, "the server spins while accept fails with EMFILE")
	require.LessOrEqual(t, n, 3, "the server floods the log while accept fails with EMFILE")
	require.Equal(t, int64(1), accepted.Load(), "accepted a connection without a descriptor")
	var after Stats
	ReadStats(&after)
	failed := after.AcceptErrors - before.AcceptErrors
	t.Logf("Stats.AcceptErrors counted %d failed accepts", failed)
	require.GreaterOrEqual(t, failed, uint64(1), "Stats.AcceptErrors did not count the accepts that failed with EMFILE")

	// Free the descriptors: the queued clients are accepted and served.
	freeFillers()
	require.NoError(t, unix.Setrlimit(unix.RLIMIT_NOFILE, &saved))
	for _, fd := range clientFds {
		f := os.NewFile(uintptr(fd), "client")
		c, err := net.FileConn(f) // a duplicate
		require.NoError(t, err)
		require.NoError(t, f.Close())
		t.Cleanup(func() { _ = c.Close() })
		require.Equal(t, "hello", string(readFull(t, c, 5)))
		roundTrip(t, c, "served again")
	}
	clientFds = nil
	require.Equal(t, int64(4), accepted.Load())
	late := dialStd(t, "tcp", s.addr)
	roundTrip(t, late, "new connection")
}
