//go:build darwin || freebsd || linux

package netpoll

import (
	"context"
	"fmt"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bytedance/gopkg/util/gopool"
	"github.com/stretchr/testify/require"
)

// Tests of the per-poller task queue (connection_task.go): with the default
// Runner the handler tasks of one poller's connections go through its
// taskQueue; a blocked, panicking or Goexit-ing handler must not hold up the
// others. Every package-level name here starts with "tasks".

// tasksKey is the ctx key of the connection id OnPrepare hands out.
type tasksKey struct{}

// tasksID returns the connection id in ctx, 0 if there is none.
func tasksID(ctx context.Context) int64 {
	id, _ := ctx.Value(tasksKey{}).(int64)
	return id
}

// tasksOnePoller makes the pick use a single poller for the test, so that
// every accepted connection shares one task queue, and starts the pollers
// before the leak baseline (call it before checkLeaks). The number of
// loops comes back at cleanup.
func tasksOnePoller(t *testing.T) {
	t.Helper()
	loops := int(pollmanager.loops.Load())
	require.NoError(t, SetNumLoops(1))
	t.Cleanup(func() { _ = SetNumLoops(loops) })
	Initialize()
}

// tasksRequireRunner checks the precondition that the Runner is (or is not)
// the default one, which decides whether the task queues are used.
func tasksRequireRunner(t *testing.T, wantDefault bool) {
	t.Helper()
	require.Equal(t, wantDefault, runnerIsDefault(), "runnerIsDefault: another test left its Runner installed?")
}

// tasksConns is an OnPrepare that numbers the accepted connections (the
// number goes into their ctx), remembers their pollers, and records which
// ones ran their close callbacks.
type tasksConns struct {
	mu     sync.Mutex
	next   int64
	polls  map[*defaultPoll]int
	closed map[int64]bool
}

func (s *tasksConns) prepare(c Connection) context.Context {
	impl := connOf(c)
	s.mu.Lock()
	s.next++
	id := s.next
	if s.polls == nil {
		s.polls, s.closed = map[*defaultPoll]int{}, map[int64]bool{}
	}
	if impl != nil {
		s.polls[impl.op.poll]++
	}
	s.mu.Unlock()
	_ = c.AddCloseCallback(func(Connection) error {
		s.mu.Lock()
		s.closed[id] = true
		s.mu.Unlock()
		return nil
	})
	return context.WithValue(context.Background(), tasksKey{}, id)
}

// requireOnePoller checks that at least n connections were accepted and all
// of them live on the same poller, a defaultPoll (which has a task queue).
func (s *tasksConns) requireOnePoller(t *testing.T, n int) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	total := 0
	for p, k := range s.polls {
		total += k
		require.NotNil(t, p, "a connection without a poller")
	}
	require.GreaterOrEqual(t, int(s.next), n, "accepted connections")
	require.Equal(t, int(s.next), total, "accepted connections whose poller is known")
	require.Len(t, s.polls, 1, "the accepted connections spread over several pollers; the test needs one")
}

// waitClosed waits until connection id ran its close callbacks.
func (s *tasksConns) waitClosed(t *testing.T, id int64) {
	t.Helper()
	eventually(t, func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.closed[id]
	}, "the close callbacks of connection %d", id)
}

// tasksRoundTrips sends rounds distinct messages on c, one at a time, and
// checks each echo. It returns the first failure.
func tasksRoundTrips(c net.Conn, client, rounds int) error {
	if err := c.SetDeadline(time.Now().Add(longWait)); err != nil {
		return err
	}
	for r := 0; r < rounds; r++ {
		msg := fmt.Sprintf("client %d round %d;", client, r)
		if _, err := c.Write([]byte(msg)); err != nil {
			return fmt.Errorf("client %d round %d: write: %w", client, r, err)
		}
		got := make([]byte, len(msg))
		for n := 0; n < len(got); {
			m, err := c.Read(got[n:])
			n += m
			if err != nil {
				return fmt.Errorf("client %d round %d: read %d of %d bytes: %w", client, r, n, len(msg), err)
			}
		}
		if string(got) != msg {
			return fmt.Errorf("client %d round %d: echo %q, want %q", client, r, got, msg)
		}
	}
	return nil
}

// tasksAllRoundTrips runs tasksRoundTrips on every client at once and fails
// the test at the first failure.
func tasksAllRoundTrips(t *testing.T, clients []net.Conn, rounds int) {
	t.Helper()
	errs := make(chan error, len(clients))
	for i, c := range clients {
		i, c := i, c
		go func() { errs <- tasksRoundTrips(c, i, rounds) }()
	}
	for range clients {
		if err := recv(t, errs, "the round trips"); err != nil {
			t.Fatal(err)
		}
	}
}

// tasksRelease is a gate that handlers wait behind; it opens once. Make it
// before the server (the handlers read it) and register its open as a
// cleanup after the server, so that it opens before the server's Shutdown
// waits for the busy connections.
type tasksRelease struct {
	ch   chan struct{}
	once sync.Once
}

func tasksNewRelease() *tasksRelease { return &tasksRelease{ch: make(chan struct{})} }

func (r *tasksRelease) open() { r.once.Do(func() { close(r.ch) }) }

// wait waits for the gate, at most d; it reports whether the gate opened.
func (r *tasksRelease) wait(d time.Duration) bool {
	select {
	case <-r.ch:
		return true
	case <-time.After(d):
		return false
	}
}

// N connections of one poller whose OnRequest waits until all N handlers are
// inside OnRequest at the same time: that happens only if N workers run the
// tasks side by side, so a handler that blocks never keeps the tasks queued
// behind it from starting. Once released, every client gets its reply. With
// DisableGopool (no task queue, a goroutine per task) the same holds.
func TestTaskQueueBlockedHandlersRunSideBySide(t *testing.T) {
	for _, mode := range []string{"gopool", "DisableGopool"} {
		t.Run(mode, func(t *testing.T) {
			for _, network := range testNetworks {
				t.Run(network, func(t *testing.T) { tasksSideBySide(t, network, mode) })
			}
		})
	}
}

func tasksSideBySide(t *testing.T, network, mode string) {
	tasksOnePoller(t)
	checkLeaks(t)
	if mode == "DisableGopool" {
		require.NoError(t, DisableGopool())
		t.Cleanup(func() { SetRunner(nil) })
	}
	tasksRequireRunner(t, mode == "gopool")
	const n = 32
	var (
		mu     sync.Mutex
		inside int                     // handlers inside OnRequest now
		seen   = map[Connection]bool{} // connections whose handler got in
		opened bool
	)
	allIn := make(chan struct{})
	conns := &tasksConns{}
	release := tasksNewRelease()
	srv := startServer(t, network, func(ctx context.Context, c Connection) error {
		mu.Lock()
		inside++
		seen[c] = true
		if inside == n && len(seen) == n && !opened {
			opened = true
			close(allIn)
		}
		mu.Unlock()
		release.wait(longWait)
		mu.Lock()
		inside--
		mu.Unlock()
		return echoAll(c)
	}, WithOnPrepare(conns.prepare))
	t.Cleanup(release.open)

	clients := make([]net.Conn, n)
	for i := range clients {
		clients[i] = dialStd(t, network, srv.addr)
		_, err := clients[i].Write([]byte{byte('A' + i)})
		require.NoError(t, err)
	}
	select {
	case <-allIn:
	case <-time.After(longWait):
		mu.Lock()
		in, distinct := inside, len(seen)
		mu.Unlock()
		t.Fatalf("never %d handlers inside OnRequest at once (%d inside when the wait ended, %d connections got in): blocked handlers hold up the tasks queued behind them",
			n, in, distinct)
	}
	conns.requireOnePoller(t, n)
	release.open()
	for i, c := range clients {
		require.Equal(t, []byte{byte('A' + i)}, readFull(t, c, 1), "reply to client %d", i)
	}
}

// One connection's handler blocks until the test ends; the other
// connections of the same poller keep getting answered, round trip after
// round trip, and the blocked handler is still blocked at the end.
func TestTaskQueueBlockedHandlerOthersServed(t *testing.T) {
	tasksEachNetwork(t, func(t *testing.T, network string) {
		blockedIn := make(chan struct{}, 1)
		var blockerReturned atomic.Bool
		conns := &tasksConns{}
		release := tasksNewRelease()
		srv := startServer(t, network, func(ctx context.Context, c Connection) error {
			if p, err := c.Reader().Peek(1); err == nil && p[0] == 'B' {
				trySend(blockedIn, struct{}{})
				release.wait(3 * longWait)
				blockerReturned.Store(true)
				return nil
			}
			return echoAll(c)
		}, WithOnPrepare(conns.prepare))
		t.Cleanup(release.open)

		blocker := dialStd(t, network, srv.addr)
		_, err := blocker.Write([]byte("B"))
		require.NoError(t, err)
		recv(t, blockedIn, "the blocking handler to start")

		const clients, rounds = 8, 100
		cs := make([]net.Conn, clients)
		for i := range cs {
			cs[i] = dialStd(t, network, srv.addr)
		}
		// More input for the blocked connection meanwhile: it must not
		// start a second task of that connection or hold anything up.
		_, err = blocker.Write([]byte("more"))
		require.NoError(t, err)
		tasksAllRoundTrips(t, cs, rounds)
		require.False(t, blockerReturned.Load(), "the blocked handler returned before the test released it")
		require.Zero(t, len(blockedIn), "a second task of the blocked connection started")
		conns.requireOnePoller(t, clients+1)
	})
}

// tasksEachNetwork runs f once per network, each with one poller, the leak
// check and the default Runner.
func tasksEachNetwork(t *testing.T, f func(t *testing.T, network string)) {
	for _, network := range testNetworks {
		t.Run(network, func(t *testing.T) {
			tasksOnePoller(t)
			checkLeaks(t)
			tasksRequireRunner(t, true)
			f(t, network)
		})
	}
}

// tasksSetPanicHandler installs gopool's panic handler for the test and
// removes it at cleanup (register it before the server, so that it is
// removed after the server stopped). gopool keeps the handler in a plain
// field that its workers read when a task panics; handing the pool a task
// after the change orders the write before every later read (through the
// pool's task lock), as the race detector requires.
func tasksSetPanicHandler(t *testing.T, h func(context.Context, interface{})) {
	t.Helper()
	gopool.SetPanicHandler(h)
	tasksGopoolBarrier(t)
	t.Cleanup(func() {
		gopool.SetPanicHandler(nil)
		tasksGopoolBarrier(t)
	})
}

func tasksGopoolBarrier(t *testing.T) {
	t.Helper()
	done := make(chan struct{})
	gopool.Go(func() { close(done) })
	recv(t, done, "a gopool task")
}

// tasksPanic is the distinctive value the panicking handler panics with.
type tasksPanic struct{ what string }

// A panic in one connection's OnRequest reaches gopool's panic handler once,
// with exactly the value panicked with and that connection's context (the
// one OnPrepare returned); the connection is closed and its close callbacks
// run; the other connections of the same poller, old and new, keep being
// served afterwards.
func TestTaskQueuePanicReachesGopool(t *testing.T) {
	tasksEachNetwork(t, func(t *testing.T, network string) {
		type report struct {
			id int64
			r  interface{}
		}
		reports := make(chan report, 16)
		tasksSetPanicHandler(t, func(ctx context.Context, r interface{}) {
			trySend(reports, report{tasksID(ctx), r})
		})
		boom := &tasksPanic{"poll_tasks_test: boom"}
		var panicker atomic.Int64
		conns := &tasksConns{}
		srv := startServer(t, network, func(ctx context.Context, c Connection) error {
			if p, err := c.Reader().Peek(1); err == nil && p[0] == 'P' {
				panicker.Store(tasksID(ctx))
				panic(boom)
			}
			return echoAll(c)
		}, WithOnPrepare(conns.prepare))

		const clients = 4
		cs := make([]net.Conn, clients)
		for i := range cs {
			cs[i] = dialStd(t, network, srv.addr)
		}
		tasksAllRoundTrips(t, cs, 1)

		p := dialStd(t, network, srv.addr)
		_, err := p.Write([]byte("P"))
		require.NoError(t, err)
		rep := recv(t, reports, "the panic at gopool's panic handler")
		require.True(t, rep.r == interface{}(boom), "gopool's panic handler got %#v, want the handler's panic value %p", rep.r, boom)
		require.NotZero(t, panicker.Load(), "the panicking handler saw no connection id in its ctx")
		require.Equal(t, panicker.Load(), rep.id, "the ctx at gopool's panic handler is not the panicking connection's")
		expectEOF(t, p)
		conns.waitClosed(t, rep.id)

		// The others, and a new connection, are still served.
		cs = append(cs, dialStd(t, network, srv.addr))
		tasksAllRoundTrips(t, cs, 20)
		select {
		case extra := <-reports:
			t.Fatalf("gopool's panic handler got a second panic: %#v (ctx id %d)", extra.r, extra.id)
		default:
		}
		conns.requireOnePoller(t, clients+2)
	})
}

// runtime.Goexit in one connection's OnRequest, while other connections of
// the same poller have requests in flight: the other connections keep
// being served (their tasks, queued behind it, still run), and the
// connection whose handler exited is closed with its close callbacks run.
// Several rounds, so that the queue survives repeated Goexits.
func TestTaskQueueGoexitInHandler(t *testing.T) {
	tasksEachNetwork(t, func(t *testing.T, network string) {
		goexitIn := make(chan int64, 1)
		goAhead := make(chan struct{}, 1)
		var goexits atomic.Int32
		conns := &tasksConns{}
		srv := startServer(t, network, func(ctx context.Context, c Connection) error {
			if p, err := c.Reader().Peek(1); err == nil && p[0] == 'G' {
				trySend(goexitIn, tasksID(ctx))
				select {
				case <-goAhead:
				case <-time.After(longWait):
				}
				goexits.Add(1)
				runtime.Goexit()
			}
			return echoAll(c)
		}, WithOnPrepare(conns.prepare))

		const clients, rounds = 4, 5
		cs := make([]net.Conn, clients)
		for i := range cs {
			cs[i] = dialStd(t, network, srv.addr)
		}
		tasksAllRoundTrips(t, cs, 1)
		for r := 0; r < rounds; r++ {
			g := dialStd(t, network, srv.addr)
			_, err := g.Write([]byte("G"))
			require.NoError(t, err)
			id := recv(t, goexitIn, "the Goexit handler to start")
			// Requests from every other connection while the Goexit
			// handler's worker is busy, then the Goexit.
			msgs := make([]string, len(cs))
			for i, c := range cs {
				msgs[i] = fmt.Sprintf("client %d before goexit %d;", i, r)
				_, err := c.Write([]byte(msgs[i]))
				require.NoError(t, err)
			}
			goAhead <- struct{}{}
			for i, c := range cs {
				require.Equal(t, msgs[i], string(readFull(t, c, len(msgs[i]))), "client %d, round %d", i, r)
			}
			expectEOF(t, g)
			conns.waitClosed(t, id)
			tasksAllRoundTrips(t, cs, 5)
		}
		require.Equal(t, int32(rounds), goexits.Load())
		conns.requireOnePoller(t, clients+rounds)
	})
}

// A custom Runner, installed with SetRunner or Configure, gets every task
// itself (no task queue in between), each with the context of the
// connection it is for: every OnRequest call runs inside a Runner call that
// was given that connection's ctx (the id OnPrepare put there), and no Runner
// call comes without a connection's ctx.
func TestTaskQueueCustomRunnerGetsConnContext(t *testing.T) {
	for _, how := range []string{"SetRunner", "Configure"} {
		t.Run(how, func(t *testing.T) {
			tasksOnePoller(t)
			checkLeaks(t)
			var (
				mu      sync.Mutex
				active  = map[int64]int{} // Runner calls running now, by ctx id
				calls   = map[int64]int{} // Runner calls so far, by ctx id
				running atomic.Int64
			)
			run := func(ctx context.Context, f func()) {
				id := tasksID(ctx)
				mu.Lock()
				calls[id]++
				active[id]++
				mu.Unlock()
				running.Add(1)
				go func() {
					defer running.Add(-1)
					defer func() {
						mu.Lock()
						active[id]--
						mu.Unlock()
					}()
					f()
				}()
			}
			if how == "SetRunner" {
				SetRunner(run)
			} else {
				require.NoError(t, Configure(Config{Runner: run}))
			}
			t.Cleanup(func() {
				SetRunner(nil)
				if !waitUntil(longWait, func() bool { return running.Load() == 0 }) {
					t.Errorf("%d Runner goroutines still running", running.Load())
				}
			})
			tasksRequireRunner(t, false)

			var bad atomic.Int64 // OnRequest calls outside a Runner call with their ctx
			conns := &tasksConns{}
			srv := startServer(t, "tcp", func(ctx context.Context, c Connection) error {
				id := tasksID(ctx)
				mu.Lock()
				in := active[id]
				mu.Unlock()
				if id == 0 || in == 0 {
					bad.Add(1)
				}
				return echoAll(c)
			}, WithOnPrepare(conns.prepare))

			const clients = 4
			cs := make([]net.Conn, clients)
			for i := range cs {
				cs[i] = dialStd(t, "tcp", srv.addr)
			}
			tasksAllRoundTrips(t, cs, 30)
			require.Zero(t, bad.Load(), "OnRequest calls not inside a Runner call given their connection's ctx")
			mu.Lock()
			defer mu.Unlock()
			require.Zero(t, calls[0], "Runner calls without a connection's ctx (calls by ctx id: %v)", calls)
			for id := int64(1); id <= clients; id++ {
				require.NotZero(t, calls[id], "no Runner call for connection %d (calls by ctx id: %v)", id, calls)
			}
		})
	}
}
