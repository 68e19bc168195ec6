//go:build darwin || freebsd || linux

package netpoll

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math/rand"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// Shared helpers of the fault, misuse, regression and soak suites. Every
// package-level name here starts with "suite" so that nothing collides with
// the other test files of the package.

// suiteWait is the generous bound of every wait in these suites: long
// enough never to flake on a loaded 2-core machine, short enough that a
// hang fails the test instead of the whole run.
const suiteWait = 20 * time.Second

// suiteNetworks are the stream networks every socket fault runs over.
var suiteNetworks = []string{"tcp", "unix"}

// suiteSoak reports whether the long forms run (make soak sets NETPOLL_SOAK=1).
func suiteSoak() bool { return os.Getenv("NETPOLL_SOAK") == "1" }

// suiteListen listens on a fresh loopback address of network: a TCP port, or
// a unix socket in a short temporary directory (socket paths are limited to
// about 100 bytes, which t.TempDir can exceed).
func suiteListen(t testing.TB, network string) net.Listener {
	t.Helper()
	var addr string
	switch network {
	case "tcp":
		addr = "127.0.0.1:0"
	case "unix":
		dir, err := os.MkdirTemp("", "np")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(dir) })
		addr = filepath.Join(dir, "s")
	default:
		t.Fatalf("suiteListen: network %q", network)
	}
	ln, err := net.Listen(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

// suiteServer is an EventLoop serving one listener for a test.
type suiteServer struct {
	evl     EventLoop
	network string
	addr    string
	done    chan error
	once    sync.Once
	err     error
	sv      *server // the running Serve's server, for tests that look inside
}

// suiteServe serves onRequest (may be nil) with ops on a new listener of
// network. The server is shut down when the test ends, unless the test
// stopped it itself.
func suiteServe(t testing.TB, network string, onRequest OnRequest, ops ...Option) *suiteServer {
	t.Helper()
	ln := suiteListen(t, network)
	evl, err := NewEventLoop(onRequest, ops...)
	if err != nil {
		ln.Close()
		t.Fatal(err)
	}
	s := &suiteServer{evl: evl, network: network, addr: ln.Addr().String(), done: make(chan error, 1)}
	go func() { s.done <- evl.Serve(ln) }()
	// Wait until Serve has registered the listener: a Shutdown before that
	// finds nothing to stop.
	el := evl.(*eventLoop)
	if !waitUntil(suiteWait, func() bool {
		el.mu.Lock()
		sv := el.svr
		el.mu.Unlock()
		s.sv = sv
		return sv != nil && opCurrent(sv.op.FD) == &sv.op
	}) {
		t.Fatal("Serve never registered its listener")
	}
	t.Cleanup(func() {
		if err := s.stop(); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	return s
}

// stop shuts the server down (once) and waits for Serve to return.
func (s *suiteServer) stop() error {
	s.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), suiteWait)
		defer cancel()
		if err := s.evl.Shutdown(ctx); err != nil {
			s.err = fmt.Errorf("Shutdown: %w", err)
			return
		}
		select {
		case err := <-s.done:
			if err != nil {
				s.err = fmt.Errorf("Serve returned %w", err)
			}
		case <-time.After(suiteWait):
			s.err = errors.New("Serve did not return after Shutdown")
		}
	})
	return s.err
}

// dial connects a netpoll client to the server.
func (s *suiteServer) dial(t testing.TB) Connection {
	t.Helper()
	c, err := DialConnection(s.network, s.addr, suiteWait)
	if err != nil {
		t.Fatalf("dial %s %s: %v", s.network, s.addr, err)
	}
	return c
}

// dialStd connects a standard library client to the server.
func (s *suiteServer) dialStd(t testing.TB) net.Conn {
	t.Helper()
	c, err := net.DialTimeout(s.network, s.addr, suiteWait)
	if err != nil {
		t.Fatalf("dial %s %s: %v", s.network, s.addr, err)
	}
	return c
}

// suiteBlockedInRead waits until a read on c waits for input, so that what
// the test does next meets a blocked read.
func suiteBlockedInRead(t testing.TB, c Connection) {
	t.Helper()
	cc := suiteConnOf(c)
	eventually(t, func() bool { return cc.waitRead.Load() != 0 }, "a read to block")
}

// suiteBlockedInFlush waits until a Flush on c waits for the socket to take
// more.
func suiteBlockedInFlush(t testing.TB, c Connection) {
	t.Helper()
	cc := suiteConnOf(c)
	eventually(t, func() bool {
		w := cc.wait.Load()
		if w == nil {
			return false
		}
		w.ioMu.Lock()
		defer w.ioMu.Unlock()
		return w.wantOut
	}, "a Flush to block")
}

// suiteConnOf returns the implementation behind a Connection of this package.
func suiteConnOf(c Connection) *connection {
	switch v := c.(type) {
	case *connection:
		return v
	case *TCPConnection:
		return &v.connection
	case *UnixConnection:
		return &v.connection
	}
	return nil
}

// suiteInChild runs child in a child process (the same test binary, this
// test only, with env=1 set) and fails unless the child printed marker.
// Called from the child, it runs child itself. For tests that change
// process-wide limits or may kill the process.
func suiteInChild(t *testing.T, env, marker string, child func(t *testing.T)) {
	if os.Getenv(env) == "1" {
		child(t)
		return
	}
	exe, err := os.Executable()
	if err != nil {
		t.Skip(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*suiteWait)
	defer cancel()
	cmd := exec.CommandContext(ctx, exe, "-test.run=^"+t.Name()+"$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), env+"=1")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), marker) {
		lines := strings.Split(string(out), "\n")
		t.Fatalf("child process failed (%v):\n%s", err, strings.Join(lines[:min(len(lines), 40)], "\n"))
	}
}

// suiteFdConn wraps one end of a new socket pair with NewFDConnection and
// returns it with the other end's fd; both close at cleanup.
func suiteFdConn(t testing.TB) (Connection, int) {
	t.Helper()
	r, w := GetSysFdPairs()
	t.Cleanup(func() { _ = syscall.Close(w) })
	c, err := NewFDConnection(r)
	if err != nil {
		_ = syscall.Close(r)
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c, w
}

// suiteRetained returns the memory held by a connection's input and output
// buffers (0 once they are recycled).
func suiteRetained(c *connection) (in, out int) {
	return suiteRetainedIn(c), suiteRetainedOut(c)
}

func suiteRetainedIn(c *connection) int {
	c.inMu.Lock()
	defer c.inMu.Unlock()
	return c.in.retained()
}

// suiteRetainedOut waits for a Flush in progress.
func suiteRetainedOut(c *connection) int {
	c.outMu.Lock()
	defer c.outMu.Unlock()
	return c.out.retained()
}

// suiteFdDir is where the open fds of this process are listed.
func suiteFdDir() string {
	if runtime.GOOS == "linux" {
		return "/proc/self/fd"
	}
	return "/dev/fd"
}

// suiteFds returns the number of open fds of this process (see
// helpers_portable_test.go).
func suiteFds(t testing.TB) int {
	t.Helper()
	return len(openFdNumbers())
}

// suiteFdSet returns the numbers of the open fds.
func suiteFdSet() map[int]bool {
	set := map[int]bool{}
	for _, fd := range openFdNumbers() {
		set[fd] = true
	}
	return set
}

// suiteCloseNewFds closes every fd opened since before was taken, after a
// test found a leak it reports as a bug, so that the leak check of the test
// itself passes. It returns how many it closed.
func suiteCloseNewFds(before map[int]bool) int {
	n := 0
	for fd := range suiteFdSet() {
		if !before[fd] && fd > 2 {
			if err := suiteUnixClose(fd); err == nil {
				n++
			}
		}
	}
	return n
}

// suiteFdList describes the open fds, for failure messages.
func suiteFdList() string {
	dir := suiteFdDir()
	ents, _ := os.ReadDir(dir)
	var out []string
	for _, e := range ents {
		target, _ := os.Readlink(filepath.Join(dir, e.Name()))
		out = append(out, e.Name()+"->"+target)
	}
	sort.Strings(out)
	return strings.Join(out, " ")
}

// suiteWaitFds waits until at most want fds are open and returns the count.
func suiteWaitFds(t testing.TB, want int) int {
	t.Helper()
	n := 0
	start := time.Now()
	first := ""
	ok := waitUntil(suiteWait, func() bool {
		n = suiteFds(t)
		if n > want && first == "" {
			first = suiteFdList()
		}
		return n <= want
	})
	if d := time.Since(start); d > time.Second {
		t.Logf("fds took %v to come back to %d; at first: %s", d, want, first)
	}
	if !ok {
		t.Errorf("fds: %d open, want at most %d: %s", n, want, suiteFdList())
	}
	return n
}

// suiteWaitGoroutines waits until at most want goroutines run and returns the count.
func suiteWaitGoroutines(t testing.TB, want int) int {
	t.Helper()
	n := 0
	ok := waitUntil(suiteWait, func() bool { n = runtime.NumGoroutine(); return n <= want })
	if !ok {
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		t.Errorf("goroutines: %d, want at most %d:\n%s", n, want, buf)
	}
	return n
}

// suiteLeaks records the fds and goroutines at the start of a test and
// checks, when the test ends (after its other cleanups), that both came back.
type suiteLeaks struct {
	fds, goroutines int
}

// suiteCheckLeaks starts the pollers (they live for the whole process), then
// records the baseline; call it first in a test.
func suiteCheckLeaks(t testing.TB) *suiteLeaks {
	t.Helper()
	Initialize()
	l := &suiteLeaks{fds: suiteFds(t), goroutines: runtime.NumGoroutine()}
	t.Cleanup(func() {
		suiteWaitFds(t, l.fds)
		suiteWaitGoroutines(t, l.goroutines)
	})
	return l
}

// suiteRun runs f on its own goroutine and fails the test if it panics or
// has not returned within d.
func suiteRun(t testing.TB, name string, d time.Duration, f func()) {
	t.Helper()
	done := make(chan interface{}, 1)
	go func() {
		defer func() { done <- recover() }()
		f()
	}()
	select {
	case r := <-done:
		if r != nil {
			t.Errorf("%s: panic: %v", name, r)
		}
	case <-time.After(d):
		t.Errorf("%s: did not return within %v", name, d)
	}
}

// suiteErrWithin waits for an error on ch for at most suiteWait.
func suiteErrWithin(t testing.TB, what string, ch <-chan error) error {
	t.Helper()
	select {
	case err := <-ch:
		return err
	case <-time.After(suiteWait):
		t.Fatalf("%s did not return within %v", what, suiteWait)
	}
	return nil
}

// suiteClosedWithin waits for ch to be closed (or signalled).
func suiteClosedWithin(t testing.TB, what string, ch <-chan struct{}) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(suiteWait):
		t.Fatalf("%s did not happen within %v", what, suiteWait)
	}
}

// Framed payloads. Every frame carries its length, a stream id, a sequence
// number and a CRC-32 of its body, so a reader can count corrupted, lost,
// duplicated and reordered frames.
//
//	[0:4]   total frame length, header included (big endian)
//	[4:12]  stream id
//	[12:20] sequence number
//	[20:24] CRC-32 (IEEE) of the body
//	[24:]   body
const suiteHdr = 24

// suiteBlock is the memory bodies are cut from: random, made once.
var suiteBlock = func() []byte {
	b := make([]byte, 4<<20)
	rand.New(rand.NewSource(1)).Read(b)
	return b
}()

// suiteBody returns a body of n bytes that depends on id and seq.
func suiteBody(id, seq uint64, n int) []byte {
	off := int((id*7919 + seq*104729) % uint64(len(suiteBlock)-n))
	return suiteBlock[off : off+n]
}

// suiteBig returns n new bytes made of rotated copies of suiteBlock, for
// payloads larger than a body can be.
func suiteBig(n int, seed uint64) []byte {
	p := make([]byte, n)
	for done, i := 0, seed; done < n; i++ {
		off := int(i * 7919 % uint64(len(suiteBlock)/2))
		done += copy(p[done:], suiteBlock[off:])
	}
	return p
}

// suitePutFrame writes the frame of (id, seq, body) into p, which must have
// room for suiteHdr+len(body) bytes.
func suitePutFrame(p []byte, id, seq uint64, body []byte) {
	binary.BigEndian.PutUint32(p[0:], uint32(suiteHdr+len(body)))
	binary.BigEndian.PutUint64(p[4:], id)
	binary.BigEndian.PutUint64(p[12:], seq)
	binary.BigEndian.PutUint32(p[20:], crc32.ChecksumIEEE(body))
	copy(p[suiteHdr:], body)
}

// suiteFrame returns a new frame.
func suiteFrame(id, seq uint64, body []byte) []byte {
	p := make([]byte, suiteHdr+len(body))
	suitePutFrame(p, id, seq, body)
	return p
}

// suiteParsed is a decoded frame header.
type suiteParsed struct {
	id, seq uint64
	ok      bool // the body matches its CRC
}

// suiteParseFrame decodes a whole frame.
func suiteParseFrame(p []byte) suiteParsed {
	if len(p) < suiteHdr || int(binary.BigEndian.Uint32(p)) != len(p) {
		return suiteParsed{}
	}
	return suiteParsed{
		id:  binary.BigEndian.Uint64(p[4:]),
		seq: binary.BigEndian.Uint64(p[12:]),
		ok:  crc32.ChecksumIEEE(p[suiteHdr:]) == binary.BigEndian.Uint32(p[20:]),
	}
}

// suiteTally counts what a receiver saw of framed streams.
type suiteTally struct {
	frames, bytes                       atomic.Int64
	corrupted, dup, reordered, unframed atomic.Int64
}

// suiteStream is a receiver's view of one stream: the next sequence number it expects.
type suiteStream struct {
	next   uint64
	unique uint64
}

// see records one received frame of stream st.
func (tl *suiteTally) see(st *suiteStream, f suiteParsed, n int) {
	tl.frames.Add(1)
	tl.bytes.Add(int64(n))
	switch {
	case !f.ok:
		tl.corrupted.Add(1)
	case f.seq == st.next:
		st.next++
		st.unique++
	case f.seq < st.next:
		tl.dup.Add(1)
	default:
		tl.reordered.Add(1)
		st.next = f.seq + 1
		st.unique++
	}
}

func (tl *suiteTally) String() string {
	return fmt.Sprintf("frames=%d bytes=%d corrupted=%d dup=%d reordered=%d unframed=%d",
		tl.frames.Load(), tl.bytes.Load(), tl.corrupted.Load(), tl.dup.Load(), tl.reordered.Load(), tl.unframed.Load())
}

// suiteBad is the number of bad frames of every kind.
func (tl *suiteTally) suiteBad() int64 {
	return tl.corrupted.Load() + tl.dup.Load() + tl.reordered.Load() + tl.unframed.Load()
}

// suiteEchoFrames is an OnRequest that checks and echoes every whole frame
// buffered, without blocking. st returns the stream state of a connection.
func suiteEchoFrames(tl *suiteTally, st func(Connection) *suiteStream) OnRequest {
	return func(ctx context.Context, c Connection) error {
		r, w := c.Reader(), c.Writer()
		for r.Len() >= 4 {
			h, err := r.Peek(4)
			if err != nil {
				return err
			}
			n := int(binary.BigEndian.Uint32(h))
			if n < suiteHdr {
				tl.unframed.Add(1)
				return c.Close()
			}
			if r.Len() < n {
				return nil
			}
			p, err := r.Next(n)
			if err != nil {
				return err
			}
			tl.see(st(c), suiteParseFrame(p), n)
			if _, err = w.WriteBinary(p); err != nil {
				return err
			}
			if err = w.Flush(); err != nil {
				return err
			}
			if err = r.Release(); err != nil {
				return err
			}
		}
		return nil
	}
}

// suiteReadFrame reads one whole frame from a blocking Reader and releases it.
func suiteReadFrame(r Reader) (suiteParsed, int, error) {
	h, err := r.Peek(4)
	if err != nil {
		return suiteParsed{}, 0, err
	}
	n := int(binary.BigEndian.Uint32(h))
	if n < suiteHdr {
		return suiteParsed{}, n, fmt.Errorf("bad frame length %d", n)
	}
	p, err := r.Next(n)
	if err != nil {
		return suiteParsed{}, 0, err
	}
	f := suiteParseFrame(p)
	return f, n, r.Release()
}

// suiteHeap returns the live heap after two collections (sync.Pools, and so
// the buffer pools, are emptied by the second).
func suiteHeap() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// suiteMiB formats a byte count.
func suiteMiB(n int64) string { return fmt.Sprintf("%.1fMiB", float64(n)/(1<<20)) }

func suiteUnixClose(fd int) error { return syscall.Close(fd) }

// suiteTrySend sends v unless ch is full: handlers may legitimately run
// again (new input, the close news) and must never block on a test channel.
func suiteTrySend[T any](ch chan<- T, v T) {
	select {
	case ch <- v:
	default:
	}
}
