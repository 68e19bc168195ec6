//go:build darwin || freebsd || linux

package netpoll

import (
	"context"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// busyServer echoes, except that a message starting with 'B' holds its
// OnRequest until release is closed.
type busyServer struct {
	network, addr string
	evl           EventLoop
	served        chan struct{} // closed when Serve returned
	serveErr      error
	busy          chan struct{} // receives when a 'B' handler starts
	release       chan struct{}
	releaseOnce   sync.Once
	prepared      atomic.Int64
	closed        atomic.Int64
}

func startBusyServer(t *testing.T, network string) *busyServer {
	t.Helper()
	s := &busyServer{network: network, served: make(chan struct{}), busy: make(chan struct{}, 16), release: make(chan struct{})}
	ln, err := net.Listen(network, testAddress(t, network))
	require.NoError(t, err)
	s.addr = ln.Addr().String()
	s.evl, err = NewEventLoop(func(ctx context.Context, c Connection) error {
		if p, err := c.Reader().Peek(1); err == nil && p[0] == 'B' {
			s.busy <- struct{}{}
			select {
			case <-s.release:
			case <-time.After(longWait):
			}
		}
		return echoAll(c)
	}, WithOnPrepare(func(c Connection) context.Context {
		s.prepared.Add(1)
		_ = c.AddCloseCallback(func(Connection) error { s.closed.Add(1); return nil })
		return nil
	}))
	require.NoError(t, err)
	go func() {
		s.serveErr = s.evl.Serve(ln)
		close(s.served)
	}()
	t.Cleanup(func() {
		s.unblock()
		_ = ln.Close()
		ctx, cancel := context.WithTimeout(context.Background(), longWait)
		defer cancel()
		_ = s.evl.Shutdown(ctx) // a no-op when the test shut it down
		select {
		case <-s.served:
		case <-time.After(longWait):
			t.Errorf("Serve did not return")
		}
	})
	return s
}

// waitServe checks that Serve returned nil.
func (s *busyServer) waitServe(t testing.TB) {
	t.Helper()
	recv(t, s.served, "Serve's return after Shutdown")
	require.NoError(t, s.serveErr)
}

func (s *busyServer) unblock() { s.releaseOnce.Do(func() { close(s.release) }) }

// roundTrip sends msg and reads the echo.
func roundTrip(t testing.TB, c net.Conn, msg string) {
	t.Helper()
	_, err := c.Write([]byte(msg))
	require.NoError(t, err)
	require.Equal(t, msg, string(readFull(t, c, len(msg))))
}

// requireRefused checks that nothing accepts connections on addr any more.
func requireRefused(t testing.TB, network, addr string) {
	t.Helper()
	c, err := net.DialTimeout(network, addr, time.Second)
	if err == nil {
		c.Close()
		t.Fatalf("a dial to %s succeeded after Shutdown", addr)
	}
}

// docs/contract.md C9.1, C9.3: Shutdown makes Serve return nil, closes the listener (dials
// are refused) and the idle connections at once, waits for the busy one to
// become idle, closes it and returns nil. A second Shutdown returns nil at once.
func TestEventLoopShutdownIdleAndBusy(t *testing.T) {
	checkLeaks(t)
	forEachNetwork(t, func(t *testing.T, network string) {
		s := startBusyServer(t, network)
		var idle []net.Conn
		for i := 0; i < 5; i++ {
			c := dialStd(t, network, s.addr)
			roundTrip(t, c, "idle")
			idle = append(idle, c)
		}
		busy := dialStd(t, network, s.addr)
		_, err := busy.Write([]byte("Busy"))
		require.NoError(t, err)
		recv(t, s.busy, "the busy handler")

		ctx, cancel := context.WithTimeout(context.Background(), longWait)
		defer cancel()
		shut := async(func() error { return s.evl.Shutdown(ctx) })
		s.waitServe(t)
		for _, c := range idle {
			expectEOF(t, c)
		}
		requireRefused(t, network, s.addr)
		notYet(t, shut, 100*time.Millisecond, "Shutdown with a busy connection")

		s.unblock()
		require.NoError(t, recv(t, shut, "Shutdown"))
		require.Equal(t, "Busy", string(readFull(t, busy, 4)), "the busy request must complete")
		expectEOF(t, busy)
		eventually(t, func() bool { return s.closed.Load() == s.prepared.Load() },
			"every accepted connection closed (%d of %d)", s.closed.Load(), s.prepared.Load())
		require.Equal(t, int64(6), s.prepared.Load())
		require.NoError(t, within(t, "a second Shutdown", func() error { return s.evl.Shutdown(context.Background()) }))
	})
}

// docs/contract.md C9.3: when ctx ends first, Shutdown returns ctx.Err(), the idle
// connections are closed and the busy one is left open and working.
func TestEventLoopShutdownDeadline(t *testing.T) {
	checkLeaks(t)
	forEachNetwork(t, func(t *testing.T, network string) {
		s := startBusyServer(t, network)
		idle := dialStd(t, network, s.addr)
		roundTrip(t, idle, "idle")
		busy := dialStd(t, network, s.addr)
		_, err := busy.Write([]byte("Busy"))
		require.NoError(t, err)
		recv(t, s.busy, "the busy handler")

		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		err = within(t, "Shutdown", func() error { return s.evl.Shutdown(ctx) })
		require.True(t, errors.Is(err, context.DeadlineExceeded), "Shutdown = %v, want the ctx error", err)
		s.waitServe(t)
		expectEOF(t, idle)

		s.unblock()
		require.Equal(t, "Busy", string(readFull(t, busy, 4)))
		roundTrip(t, busy, "still open")
	})
}

// docs/contract.md C9.3: with an expired ctx (Hertz does this) and only idle connections,
// Shutdown closes them all and returns nil. The connections never sent
// anything, so no handler can still be finishing when Shutdown looks.
func TestEventLoopShutdownExpiredContext(t *testing.T) {
	checkLeaks(t)
	forEachNetwork(t, func(t *testing.T, network string) {
		s := startBusyServer(t, network)
		var conns []net.Conn
		for i := 0; i < 3; i++ {
			conns = append(conns, dialStd(t, network, s.addr))
		}
		eventually(t, func() bool { return s.prepared.Load() == 3 }, "the connections accepted")
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		require.NoError(t, within(t, "Shutdown", func() error { return s.evl.Shutdown(ctx) }))
		s.waitServe(t)
		for _, c := range conns {
			expectEOF(t, c)
		}
		eventually(t, func() bool { return s.closed.Load() == 3 }, "every accepted connection closed")
	})
}

// docs/contract.md C9.3: Shutdown(nil) on a serving loop with a busy
// connection behaves as a ctx that never ends: no panic, it waits while
// the handler runs, and returns nil once the connection is idle and closed.
func TestEventLoopShutdownNilCtx(t *testing.T) {
	checkLeaks(t)
	release := make(chan struct{})
	started := make(chan struct{}, 1)
	srv := startServer(t, "tcp", func(ctx context.Context, c Connection) error {
		trySend(started, struct{}{})
		<-release
		return c.Reader().Skip(c.Reader().Len())
	})
	p := srv.dialStd(t)
	_, _ = p.Write([]byte("busy"))
	recv(t, started, "OnRequest")
	type outcome struct {
		err      error
		panicked interface{}
	}
	done := async(func() (o outcome) {
		defer func() { o.panicked = recover() }()
		o.err = srv.evl.Shutdown(nil)
		return o
	})
	notYet(t, done, 200*time.Millisecond, "Shutdown(nil) with a busy connection")
	close(release)
	o := recv(t, done, "Shutdown(nil)")
	require.Nil(t, o.panicked, "Shutdown(nil) with a busy connection panics")
	require.NoError(t, o.err, "Shutdown(nil)")
	expectEOF(t, p)
	require.NoError(t, srv.stop())
}

// docs/contract.md C9.3: in a loop without handlers, a connection whose
// peer sent bytes and closed is dead, yet it must not keep Shutdown
// waiting, nor stay in the server's books for ever.
func TestEventLoopShutdownNoHandlerPeerClosed(t *testing.T) {
	checkLeaks(t)
	srv := startServer(t, "tcp", nil)
	for i := 0; i < 3; i++ {
		p := srv.dialStd(t)
		_, _ = p.Write([]byte("nobody reads this"))
		p.Close()
	}
	eventually(t, func() bool { return srv.conns() == 3 }, "three tracked connections")
	eventually(t, func() bool { // the peers' closes are seen
		srv.sv.mu.Lock()
		defer srv.sv.mu.Unlock()
		for c := range srv.sv.conns {
			if c.IsActive() {
				return false
			}
		}
		return true
	}, "the peers' closes to be seen")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	sv := srv.sv
	err := srv.evl.Shutdown(ctx)
	left := srv.conns()
	if err != nil || left != 0 {
		sv.mu.Lock()
		for c := range sv.conns {
			defer c.Close()
		}
		sv.mu.Unlock()
		t.Fatalf("Shutdown of a loop without OnRequest: %v, %d peer-closed connections with unread input still tracked (eventloop_server.go closeIdle counts them busy; connection_state.go peerClosed never finalizes a connection without handlers)", err, left)
	}
}

// docs/contract.md C8.3, C9.3: a client that connects and sends nothing:
// no OnRequest, the connection stays open, and Shutdown closes it (the
// client sees EOF) and runs its close callbacks.
func TestEventLoopShutdownClosesSilentClient(t *testing.T) {
	checkLeaks(t)
	for _, network := range testNetworks {
		t.Run(network, func(t *testing.T) {
			rec := newCallLog()
			var sc atomic.Value
			srv := startServer(t, network, func(ctx context.Context, c Connection) error {
				rec.add("request")
				return nil
			},
				WithOnConnect(func(ctx context.Context, c Connection) context.Context {
					sc.Store(c)
					_ = c.AddCloseCallback(func(Connection) error { rec.add("closed"); return nil })
					rec.add("connect")
					return ctx
				}))
			peer := srv.dialStd(t)
			defer peer.Close()
			rec.waitCount(t, "connect", 1)
			time.Sleep(200 * time.Millisecond) // it would be closed by now
			if !sc.Load().(Connection).IsActive() {
				t.Fatal("a silent connection was closed")
			}
			if err := srv.stop(); err != nil {
				t.Fatal(err)
			}
			if b, err := readToEOF(peer); len(b) != 0 || err != nil {
				t.Fatalf("silent client after Shutdown: %q, %v; want EOF", b, err)
			}
			rec.waitCount(t, "closed", 1)
			if rec.count("request") != 0 {
				t.Fatal("OnRequest ran for a client that sent nothing")
			}
		})
	}
}
