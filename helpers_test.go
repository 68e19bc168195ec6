package netpoll

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// The helpers every test of the package shares: the wait bound, the
// networks, waiting and timing out, errors, event logs, argument tables
// and child processes. The other helpers_*_test.go files hold the fd and
// goroutine leak check (helpers_fds_test.go), sockets and connections
// (helpers_conn_test.go), servers (helpers_server_test.go) and framed
// payloads (helpers_frames_test.go).

// longWait bounds every wait of every test: far above what a correct
// implementation needs on a loaded two-core machine with -race, so no test
// depends on speed, and short enough that a hang fails its test instead of
// the whole run.
const longWait = 20 * time.Second

// testNetworks are the stream networks the socket tests run over.
var testNetworks = []string{"tcp", "unix"}

// forEachNetwork runs f as one subtest per network of testNetworks.
func forEachNetwork(t *testing.T, f func(t *testing.T, network string)) {
	t.Helper()
	for _, network := range testNetworks {
		network := network
		t.Run(network, func(t *testing.T) { f(t, network) })
	}
}

// soakMode reports whether the long forms run (make soak sets NETPOLL_SOAK=1).
func soakMode() bool { return os.Getenv("NETPOLL_SOAK") == "1" }

// eventually polls cond until it holds, failing the test after longWait.
func eventually(t testing.TB, cond func() bool, format string, args ...interface{}) {
	t.Helper()
	if !waitUntil(longWait, cond) {
		t.Fatalf("timed out after %v waiting for: %s", longWait, fmt.Sprintf(format, args...))
	}
}

// waitUntil polls cond until it holds (true) or d passes (false).
func waitUntil(d time.Duration, cond func() bool) bool {
	end := time.Now().Add(d)
	for {
		if cond() {
			return true
		}
		if time.Now().After(end) {
			return false
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// recv waits up to longWait for a value on ch (or for ch to be closed).
func recv[T any](t testing.TB, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(longWait):
		t.Fatalf("timed out after %v waiting for %s", longWait, what)
	}
	var zero T
	return zero
}

// notYet checks that nothing arrives on ch for d: the call that feeds ch
// must still be blocked. It can only fail when the call returned.
func notYet[T any](t testing.TB, ch <-chan T, d time.Duration, what string) {
	t.Helper()
	select {
	case v := <-ch:
		t.Fatalf("%s returned early: %v", what, v)
	case <-time.After(d):
	}
}

// async runs f on a new goroutine and delivers its result.
func async[T any](f func() T) <-chan T {
	ch := make(chan T, 1)
	go func() { ch <- f() }()
	return ch
}

// within runs f on another goroutine and returns its result, failing the
// test if f panics or has not returned within longWait.
func within[T any](t testing.TB, what string, f func() T) T {
	t.Helper()
	return withinFor(t, longWait, what, f)
}

// withinFor is within with a bound of d, for the few calls that move
// gigabytes.
func withinFor[T any](t testing.TB, d time.Duration, what string, f func() T) T {
	t.Helper()
	type outcome struct {
		v        T
		panicked bool
		p        interface{}
	}
	ch := make(chan outcome, 1)
	go func() {
		var o outcome
		defer func() {
			if r := recover(); r != nil {
				o.panicked, o.p = true, r
			}
			ch <- o
		}()
		o.v = f()
	}()
	select {
	case o := <-ch:
		if o.panicked {
			t.Fatalf("%s panicked: %v", what, o.p)
		}
		return o.v
	case <-time.After(d):
		t.Fatalf("%s did not return within %v", what, d)
	}
	var zero T
	return zero
}

// trySend sends v unless ch is full: handlers may legitimately run again
// (new input, the close news) and must never block on a test channel.
func trySend[T any](ch chan<- T, v T) {
	select {
	case ch <- v:
	default:
	}
}

// result is a value and an error, for async calls.
type result struct {
	b   []byte
	n   int
	err error
}

// randomBytes returns n pseudo-random bytes.
func randomBytes(rng *rand.Rand, n int) []byte {
	p := make([]byte, n)
	rng.Read(p)
	return p
}

// newRand returns a seeded source and logs the seed so failures replay.
func newRand(t testing.TB) *rand.Rand {
	seed := time.Now().UnixNano()
	t.Logf("random seed %d", seed)
	return rand.New(rand.NewSource(seed))
}

// requireErrIs checks that err matches target with errors.Is.
func requireErrIs(t testing.TB, err, target error, msgAndArgs ...interface{}) {
	t.Helper()
	require.Error(t, err, msgAndArgs...)
	require.Truef(t, errors.Is(err, target), "error %q (%T) does not match %v; %v", err, err, target, fmt.Sprint(msgAndArgs...))
}

// requireTimeoutErr checks that err is a net.Error with Timeout() true.
func requireTimeoutErr(t testing.TB, err error) {
	t.Helper()
	var ne net.Error
	require.Truef(t, errors.As(err, &ne), "error %q (%T) is not a net.Error", err, err)
	require.Truef(t, ne.Timeout(), "error %q: Timeout() is false", err)
}

// errText is err's text, "nil" for nil.
func errText(err error) string {
	if err == nil {
		return "nil"
	}
	return err.Error()
}

// callLog records events from any goroutine, in order.
type callLog struct {
	mu     sync.Mutex
	events []string
}

func newCallLog() *callLog { return &callLog{} }

func (l *callLog) add(format string, args ...interface{}) {
	e := fmt.Sprintf(format, args...)
	l.mu.Lock()
	l.events = append(l.events, e)
	l.mu.Unlock()
}

// get returns the events so far.
func (l *callLog) get() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.events...)
}

// count returns how many times e was recorded.
func (l *callLog) count(e string) int {
	n := 0
	for _, got := range l.get() {
		if got == e {
			n++
		}
	}
	return n
}

// waitFor waits until event e was recorded.
func (l *callLog) waitFor(t testing.TB, e string) {
	t.Helper()
	eventually(t, func() bool { return l.count(e) > 0 }, "event %q (have %v)", e, l.get())
}

// waitCount waits until e was recorded n times, and fails if it is
// recorded more often: a duplicate, which would follow at once, is given
// 20 ms to show up.
func (l *callLog) waitCount(t testing.TB, e string, n int) {
	t.Helper()
	if !waitUntil(longWait, func() bool { return l.count(e) >= n }) {
		t.Fatalf("%q recorded %d times, want %d; events %v", e, l.count(e), n, l.get())
	}
	time.Sleep(20 * time.Millisecond)
	if got := l.count(e); got != n {
		t.Fatalf("%q recorded %d times, want exactly %d; events %v", e, got, n, l.get())
	}
}

// argCase is one row of a bad-argument table: call must return nil (the
// documented no-op or zero result, which call checks itself) or, with
// wantErr, an error; it must not panic and must return within longWait.
type argCase struct {
	name    string
	wantErr bool
	call    func() error
}

// runArgCases runs every row, reporting each failing one.
func runArgCases(t *testing.T, cases []argCase) {
	t.Helper()
	for _, c := range cases {
		type outcome struct {
			err      error
			panicked interface{}
		}
		done := make(chan outcome, 1)
		go func() {
			var o outcome
			defer func() {
				o.panicked = recover()
				done <- o
			}()
			o.err = c.call()
		}()
		select {
		case o := <-done:
			switch {
			case o.panicked != nil:
				t.Errorf("%s: panic: %v", c.name, o.panicked)
			case c.wantErr && o.err == nil:
				t.Errorf("%s: no error", c.name)
			case !c.wantErr && o.err != nil:
				t.Errorf("%s: %v, want nil", c.name, o.err)
			}
		case <-time.After(longWait):
			t.Errorf("%s: did not return within %v", c.name, longWait)
		}
	}
}

// check turns a condition a row requires into its error, what.
func check(ok bool, what string) error {
	if !ok {
		return errors.New(what)
	}
	return nil
}

// firstErr returns the first non-nil error.
func firstErr(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// inChild runs child in a child process (the same test binary, this test
// only, with env=1 set) and fails unless the child printed marker. Called
// from the child, it runs child itself. For tests that change process-wide
// limits or may kill the process.
func inChild(t *testing.T, env, marker string, child func(t *testing.T)) {
	if os.Getenv(env) == "1" {
		child(t)
		return
	}
	exe, err := os.Executable()
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 2*longWait)
	defer cancel()
	cmd := exec.CommandContext(ctx, exe, "-test.run=^"+t.Name()+"$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), env+"=1")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), marker) {
		lines := strings.Split(string(out), "\n")
		t.Fatalf("child process failed (%v):\n%s", err, strings.Join(lines[:min(len(lines), 40)], "\n"))
	}
}

// lockedBuffer is a bytes.Buffer safe for concurrent writers.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// flushedBuffer returns a LinkBuffer holding s, readable.
func flushedBuffer(s string) *LinkBuffer {
	b := NewLinkBuffer()
	_, _ = b.WriteString(s)
	_ = b.Flush()
	return b
}
