//go:build darwin || freebsd || linux

package netpoll

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand"
	"net"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Shared helpers of the behaviour tests. Every wait is bounded by longWait,
// which is far above anything a correct implementation needs even on a
// loaded two-core machine with -race, so no test depends on speed and none
// can hang.

const longWait = 10 * time.Second

// testNetworks are the stream networks the behaviour tests run over.
var testNetworks = []string{"tcp", "unix"}

// forEachNetwork runs f as one subtest per network of testNetworks.
func forEachNetwork(t *testing.T, f func(t *testing.T, network string)) {
	t.Helper()
	for _, network := range testNetworks {
		network := network
		t.Run(network, func(t *testing.T) { f(t, network) })
	}
}

// shortTempDir returns a new directory with a path short enough for a unix
// socket name (the kernel allows about 100 bytes); it is removed at cleanup.
func shortTempDir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "np")
	require.NoError(t, err)
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	return dir
}

// testAddress returns an address to listen on for network.
func testAddress(t testing.TB, network string) string {
	t.Helper()
	switch network {
	case "tcp", "tcp4":
		return "127.0.0.1:0"
	case "unix":
		return shortTempDir(t) + "/s"
	}
	t.Fatalf("no test address for %q", network)
	return ""
}

// listenStd opens a standard-library listener on network, closed at cleanup.
func listenStd(t testing.TB, network string) net.Listener {
	t.Helper()
	ln, err := net.Listen(network, testAddress(t, network))
	require.NoError(t, err)
	t.Cleanup(func() { _ = ln.Close() })
	return ln
}

// testServer is an EventLoop serving a listener for the length of a test.
type testServer struct {
	network, addr string
	evl           EventLoop
	served        chan error // Serve's result
	shutdownOnce  sync.Once
}

// startServer serves an EventLoop with onRequest and ops on a new listener
// of network. At cleanup it shuts the loop down (with longWait to finish)
// and checks that Serve returned nil.
func startServer(t testing.TB, network string, onRequest OnRequest, ops ...Option) *testServer {
	t.Helper()
	ln, err := net.Listen(network, testAddress(t, network))
	require.NoError(t, err)
	evl, err := NewEventLoop(onRequest, ops...)
	require.NoError(t, err)
	s := &testServer{network: network, addr: ln.Addr().String(), evl: evl, served: make(chan error, 1)}
	go func() { s.served <- evl.Serve(ln) }()
	t.Cleanup(func() {
		s.shutdown(t)
		_ = ln.Close()
	})
	// Serve registers the listener asynchronously; dials succeed before that
	// (the kernel queues them), so nothing needs to wait here.
	return s
}

// shutdown stops the loop once, waiting up to longWait, and checks that
// Shutdown and Serve both returned nil.
func (s *testServer) shutdown(t testing.TB) {
	t.Helper()
	s.shutdownOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), longWait)
		defer cancel()
		if err := s.evl.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		select {
		case err := <-s.served:
			if err != nil {
				t.Errorf("Serve returned %v after Shutdown", err)
			}
		case <-time.After(longWait):
			t.Errorf("Serve did not return within %v of Shutdown", longWait)
		}
	})
}

// acceptPending polls ln's non-blocking Accept until it returns the
// connection a peer made, and closes that connection at cleanup.
func acceptPending(t testing.TB, ln Listener) net.Conn {
	t.Helper()
	var c net.Conn
	eventually(t, func() bool {
		var err error
		c, err = ln.Accept()
		require.NoError(t, err)
		return c != nil
	}, "Accept to return the pending connection")
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// dialStd dials addr on network with the standard library, closed at cleanup.
func dialStd(t testing.TB, network, addr string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout(network, addr, longWait)
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// npConn is what every connection of this package is: a Connection that is
// its own Reader and Writer (docs/contract.md C0.3).
type npConn interface {
	Connection
	Reader
	Writer
}

// asNP returns c as an npConn, failing the test if it is not one.
func asNP(t testing.TB, c Connection) npConn {
	t.Helper()
	nc, ok := c.(npConn)
	require.Truef(t, ok, "%T is not its own Reader and Writer", c)
	return nc
}

// dialNP dials addr on network with DialConnection, closed at cleanup.
func dialNP(t testing.TB, network, addr string) npConn {
	t.Helper()
	c, err := DialConnection(network, addr, longWait)
	require.NoError(t, err)
	require.NotNil(t, c)
	t.Cleanup(func() { _ = c.Close() })
	return asNP(t, c)
}

// peerPair returns a dialed netpoll Connection and the standard-library
// server side of it, the "peer" the test drives. Both close at cleanup.
func peerPair(t testing.TB, network string) (npConn, net.Conn) {
	t.Helper()
	ln := listenStd(t, network)
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			close(accepted)
			return
		}
		accepted <- c
	}()
	c := dialNP(t, network, ln.Addr().String())
	select {
	case peer, ok := <-accepted:
		require.True(t, ok, "accept failed")
		t.Cleanup(func() { _ = peer.Close() })
		return c, peer
	case <-time.After(longWait):
		_ = ln.Close()
		<-accepted
		t.Fatalf("no accept within %v", longWait)
	}
	return nil, nil
}

// echoNext echoes the next n input bytes. WriteBinary may keep a reference
// to the Next slice, so it is flushed before the Release; sample, if not
// nil, runs between the two, when the most memory is held.
func echoNext(c Connection, n int, sample func()) error {
	r, w := c.Reader(), c.Writer()
	p, err := r.Next(n)
	if err != nil {
		return err
	}
	if _, err = w.WriteBinary(p); err != nil {
		return err
	}
	if err = w.Flush(); err != nil {
		return err
	}
	if sample != nil {
		sample()
	}
	return r.Release()
}

// echoChunks echoes the buffered input, and what arrives meanwhile, in
// pieces of at most chunk bytes, sampling as echoNext does.
func echoChunks(c Connection, chunk int, sample func()) error {
	for r := c.Reader(); r.Len() > 0; {
		if err := echoNext(c, min(r.Len(), chunk), sample); err != nil {
			return err
		}
	}
	return nil
}

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

// recv waits up to longWait for a value on ch.
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

// notYet checks that nothing arrives on ch for a short while: the call that
// feeds ch must still be blocked. It can only fail when the call returned.
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

// readFull reads exactly n bytes from a standard connection within longWait.
func readFull(t testing.TB, c net.Conn, n int) []byte {
	t.Helper()
	require.NoError(t, c.SetReadDeadline(time.Now().Add(longWait)))
	p := make([]byte, n)
	got := 0
	for got < n {
		m, err := c.Read(p[got:])
		got += m
		if err != nil {
			t.Fatalf("read %d of %d bytes: %v", got, n, err)
		}
	}
	return p
}

// expectEOF checks that a standard connection reaches end of stream (or a
// reset) within longWait, discarding whatever comes before.
func expectEOF(t testing.TB, c net.Conn) {
	t.Helper()
	if err := waitEOF(c); err != nil {
		t.Fatalf("%v after %v", err, longWait)
	}
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

// openFDs lists the process's open descriptors by number; openFdNumbers
// (helpers_portable_test.go) finds them on every platform, FreeBSD without
// fdescfs included.
func openFDs(t testing.TB) []string {
	t.Helper()
	var names []string
	for _, fd := range openFdNumbers() {
		names = append(names, strconv.Itoa(fd))
	}
	return names
}

// checkFDs fails the test if it leaves file descriptors open. Call it first
// in a test: its check runs after every later cleanup. The pollers and the
// runtime's own poller start lazily and then stay, so they are started
// before the count; a descriptor closed asynchronously after the test is
// waited for, up to longWait.
func checkFDs(t testing.TB) {
	t.Helper()
	Initialize()
	warmRuntimePoller(t)
	before := openFDs(t)
	t.Cleanup(func() {
		var after []string
		ok := waitUntil(longWait, func() bool {
			after = openFDs(t)
			return len(after) <= len(before)
		})
		if !ok {
			t.Errorf("file descriptors leaked: %d open before, %d after\nbefore: %s\nafter:  %s\n%s",
				len(before), len(after), strings.Join(before, " "), strings.Join(after, " "), describeFDs(after))
		}
	})
}

// warmRuntimePoller makes the Go runtime open its own poller, which it does
// at the first network fd and then keeps.
func warmRuntimePoller(t testing.TB) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	_ = ln.Close()
}

// describeFDs says what each descriptor points at, for a leak report.
func describeFDs(names []string) string {
	var b bytes.Buffer
	if runtime.GOOS != "linux" {
		return ""
	}
	for _, n := range names {
		target, _ := os.Readlink("/proc/self/fd/" + n)
		fmt.Fprintf(&b, "%s -> %s\n", n, target)
	}
	return b.String()
}
