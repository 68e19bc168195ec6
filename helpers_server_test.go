//go:build darwin || freebsd || linux

package netpoll

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Servers for the tests: an EventLoop serving a listener for the length of
// a test, a standard-library echo server, a server that records what
// happens to each connection, and a Runner that catches handler panics.

// ctxKey keys the values tests put in a connection's context.
type ctxKey string

// testServer is an EventLoop serving a listener for the length of a test.
type testServer struct {
	network, addr string
	evl           EventLoop
	sv            *server // the running Serve's server, for tests that look inside
	served        chan error
	once          sync.Once
	err           error
}

// startServer serves an EventLoop with onRequest (may be nil) and ops on a
// new listener of network, and returns once Serve has registered the
// listener (a Shutdown before that finds nothing to stop). At cleanup it
// shuts the loop down, unless the test did, and checks that Shutdown and
// Serve returned nil.
func startServer(t testing.TB, network string, onRequest OnRequest, ops ...Option) *testServer {
	t.Helper()
	ln, err := net.Listen(network, testAddress(t, network))
	require.NoError(t, err)
	evl, err := NewEventLoop(onRequest, ops...)
	if err != nil {
		_ = ln.Close()
		t.Fatal(err)
	}
	s := &testServer{network: network, addr: ln.Addr().String(), evl: evl, served: make(chan error, 1)}
	go func() { s.served <- evl.Serve(ln) }()
	t.Cleanup(func() {
		if err := s.stop(); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		_ = ln.Close()
	})
	el := evl.(*eventLoop)
	eventually(t, func() bool {
		el.mu.Lock()
		sv := el.svr
		el.mu.Unlock()
		s.sv = sv
		return sv != nil && opCurrent(sv.op.FD) == &sv.op
	}, "Serve to register its listener")
	return s
}

// stop shuts the server down (once, waiting up to longWait) and waits for
// Serve to return; it returns the first thing that went wrong.
func (s *testServer) stop() error {
	s.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), longWait)
		defer cancel()
		if err := s.evl.Shutdown(ctx); err != nil {
			s.err = fmt.Errorf("Shutdown: %w", err)
			return
		}
		select {
		case err := <-s.served:
			if err != nil {
				s.err = fmt.Errorf("Serve returned %w after Shutdown", err)
			}
		case <-time.After(longWait):
			s.err = errors.New("Serve did not return after Shutdown")
		}
	})
	return s.err
}

// dial connects a netpoll client to the server, closed at cleanup.
func (s *testServer) dial(t testing.TB) npConn { t.Helper(); return dialNP(t, s.network, s.addr) }

// dialStd connects a standard-library client to the server, closed at cleanup.
func (s *testServer) dialStd(t testing.TB) net.Conn { t.Helper(); return dialStd(t, s.network, s.addr) }

// conns is the number of connections the server still tracks.
func (s *testServer) conns() int {
	s.sv.mu.Lock()
	defer s.sv.mu.Unlock()
	return len(s.sv.conns)
}

// tracks reports whether the server tracks a connection whose peer is at
// remote.
func (s *testServer) tracks(remote string) bool {
	s.sv.mu.Lock()
	defer s.sv.mu.Unlock()
	for c := range s.sv.conns {
		if c.RemoteAddr() != nil && c.RemoteAddr().String() == remote {
			return true
		}
	}
	return false
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

// echoAll answers once with every buffered byte (bytes that arrive
// meanwhile wait for the next call, unlike echoChunks).
func echoAll(c Connection) error { return echoNext(c, c.Reader().Len(), nil) }

// stdEcho serves a standard-library echo server on network until the test
// ends, closing every connection it accepted.
func stdEcho(t testing.TB, network string) net.Listener {
	t.Helper()
	ln := listenStd(t, network)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				// A plain loop: io.Copy between sockets splices through
				// pooled pipes, fds that only a GC gives back.
				buf := make([]byte, 64<<10)
				for {
					n, err := c.Read(buf)
					if n > 0 {
						if _, werr := c.Write(buf[:n]); werr != nil {
							return
						}
					}
					if err != nil {
						return
					}
				}
			}()
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		mu.Lock()
		for _, c := range conns { // a failed test may leave its clients open
			_ = c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln
}

// dialEcho dials ln, a standard echo server, closed at cleanup.
func dialEcho(t testing.TB, ln net.Listener) npConn {
	t.Helper()
	return dialNP(t, ln.Addr().Network(), ln.Addr().String())
}

// ping sends "ping" on c, a connection to an echo server, and requires it
// back within longWait.
func ping(t testing.TB, c Connection, when string) {
	t.Helper()
	require.NoError(t, c.SetReadTimeout(longWait))
	_, err := c.Write([]byte("ping"))
	require.NoError(t, err, "write %s", when)
	s, err := c.Reader().ReadString(4)
	require.NoError(t, err, "echo %s", when)
	require.Equal(t, "ping", s, "echo %s", when)
}

// connRecord is what the server tracks for one accepted connection.
type connRecord struct {
	conn       Connection
	mu         sync.Mutex
	got        bytes.Buffer // what OnRequest consumed
	requests   atomic.Int64
	closeRuns  atomic.Int64
	discRuns   atomic.Int64
	problems   []string
	closedOnce chan struct{} // closed by the first close callback
}

func newConnRecord(c Connection) *connRecord {
	return &connRecord{conn: c, closedOnce: make(chan struct{})}
}

func (r *connRecord) problem(format string, args ...interface{}) {
	r.mu.Lock()
	r.problems = append(r.problems, fmt.Sprintf(format, args...))
	r.mu.Unlock()
}

func (r *connRecord) check(t testing.TB) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, p := range r.problems {
		t.Error(p)
	}
}

// recordingServer starts a server whose connections are tracked in
// connRecords, delivered on the returned channel when accepted. OnRequest
// consumes everything and, if echo is set, sends it back.
func recordingServer(t testing.TB, network string, echo bool) (*testServer, <-chan *connRecord) {
	t.Helper()
	records := make(chan *connRecord, 4096)
	key := ctxKey("record")
	s := startServer(t, network, func(ctx context.Context, c Connection) error {
		rec := ctx.Value(key).(*connRecord)
		rec.requests.Add(1)
		if rec.closeRuns.Load() != 0 {
			rec.problem("OnRequest ran after the close callbacks")
		}
		r := c.Reader()
		p, err := r.Next(r.Len())
		if err != nil {
			return err
		}
		rec.mu.Lock()
		rec.got.Write(p)
		rec.mu.Unlock()
		if echo {
			if _, err = c.Writer().WriteBinary(p); err == nil {
				err = c.Writer().Flush()
			}
		}
		_ = r.Release()
		return err
	}, WithOnPrepare(func(c Connection) context.Context {
		rec := newConnRecord(c)
		_ = c.AddCloseCallback(func(Connection) error {
			if rec.closeRuns.Add(1) == 1 {
				close(rec.closedOnce)
			}
			return nil
		})
		records <- rec
		return context.WithValue(context.Background(), key, rec)
	}), WithOnDisconnect(func(ctx context.Context, c Connection) {
		rec := ctx.Value(key).(*connRecord)
		rec.discRuns.Add(1)
		if rec.closeRuns.Load() != 0 {
			rec.problem("OnDisconnect ran after the close callbacks")
		}
		if c.IsActive() {
			rec.problem("OnDisconnect saw IsActive() true")
		}
	}))
	return s, records
}

// waitClosedOnce waits for rec's close callbacks and checks they ran once.
func waitClosedOnce(t testing.TB, rec *connRecord) {
	t.Helper()
	if err := checkClosedOnce(rec); err != nil {
		t.Fatal(err)
	}
}

// waitRecord takes the next accepted connection.
func waitRecord(records <-chan *connRecord) (*connRecord, error) {
	select {
	case rec := <-records:
		return rec, nil
	case <-time.After(longWait):
		return nil, errors.New("no connection accepted")
	}
}

// checkClosedOnce waits for the close callbacks and checks the record; a
// second run, which would follow at once, is given a millisecond.
func checkClosedOnce(rec *connRecord) error {
	select {
	case <-rec.closedOnce:
	case <-time.After(longWait):
		return errors.New("the close callbacks never ran")
	}
	time.Sleep(time.Millisecond)
	if n := rec.closeRuns.Load(); n != 1 {
		return fmt.Errorf("close callbacks ran %d times", n)
	}
	if n := rec.discRuns.Load(); n > 1 {
		return fmt.Errorf("OnDisconnect ran %d times", n)
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.problems) > 0 {
		return errors.New(rec.problems[0])
	}
	return nil
}

// parallel runs n iterations of f on workers goroutines, stopping at the first failure.
func parallel(t *testing.T, workers, n int, f func(i int) error) {
	t.Helper()
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				if err := f(i); err != nil {
					errs <- fmt.Errorf("iteration %d: %w", i, err)
					next.Store(int64(n))
					return
				}
			}
		}()
	}
	recv(t, async(func() bool { wg.Wait(); return true }), "the workers")
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// recoveringRunner installs a Runner that runs each task on a new
// goroutine, recovers its panic and delivers it; the default Runner comes
// back when the test ends.
func recoveringRunner(t testing.TB) chan interface{} {
	panics := make(chan interface{}, 16)
	var wg sync.WaitGroup
	require.NoError(t, Configure(Config{Runner: func(ctx context.Context, f func()) {
		if ctx == nil {
			panics <- "nil ctx"
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() {
				if r := recover(); r != nil {
					panics <- r
				}
			}()
			f()
		}()
	}}))
	t.Cleanup(func() {
		SetRunner(nil)
		wg.Wait()
	})
	return panics
}

// pollerGoroutines counts the poller goroutines.
func pollerGoroutines() int {
	buf := make([]byte, 4<<20)
	buf = buf[:runtime.Stack(buf, true)]
	return strings.Count(string(buf), "(*defaultPoll).Wait")
}

// fakeListener is a net.Listener of a type ConvertListener cannot use.
type fakeListener struct{ net.Listener }
