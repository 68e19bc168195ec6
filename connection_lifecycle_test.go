//go:build darwin || freebsd || linux

package netpoll

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// callLog records events from any goroutine.
type callLog struct {
	mu     sync.Mutex
	events []string
	notify chan string // each event is also sent here if not nil (buffered)
}

func newCallLog() *callLog { return &callLog{notify: make(chan string, 1024)} }

func (l *callLog) add(format string, args ...interface{}) {
	e := fmt.Sprintf(format, args...)
	l.mu.Lock()
	l.events = append(l.events, e)
	l.mu.Unlock()
	select {
	case l.notify <- e:
	default:
	}
}

func (l *callLog) get() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.events...)
}

// waitFor waits until event e was recorded.
func (l *callLog) waitFor(t testing.TB, e string) {
	t.Helper()
	eventually(t, func() bool {
		for _, got := range l.get() {
			if got == e {
				return true
			}
		}
		return false
	}, "event %q (have %v)", e, l.get())
}

// addNumberedCallbacks adds n close callbacks logging "cb1".."cbn", plus a
// nil one, which must be ignored.
func addNumberedCallbacks(t testing.TB, c Connection, l *callLog, n int) {
	t.Helper()
	require.NoError(t, c.AddCloseCallback(nil))
	for i := 1; i <= n; i++ {
		i := i
		require.NoError(t, c.AddCloseCallback(func(got Connection) error {
			// The callback gets the connection (possibly the value inside
			// a *TCPConnection or *UnixConnection): the same socket.
			if got == nil || got.LocalAddr().String() != c.LocalAddr().String() {
				l.add("cb%d: wrong connection %T", i, got)
			}
			l.add("cb%d", i)
			return nil
		}))
	}
}

// docs/contract.md C7.2, C7.3: Close is idempotent and returns nil, even from many
// goroutines at once; the close callbacks run exactly once, last added first,
// before the first Close returns (no handler runs); a callback added after
// they ran never runs.
func TestConnCloseCallbacksOnceLIFO(t *testing.T) {
	checkFDs(t)
	forEachNetwork(t, func(t *testing.T, network string) {
		c, _ := peerPair(t, network)
		l := newCallLog()
		addNumberedCallbacks(t, c, l, 3)
		var wg sync.WaitGroup
		for i := 0; i < 8; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := c.Close(); err != nil {
					t.Errorf("Close: %v", err)
				}
			}()
		}
		wg.Wait()
		require.Equal(t, []string{"cb3", "cb2", "cb1"}, l.get(), "callbacks must have run once, LIFO, when Close returned")
		require.NoError(t, c.AddCloseCallback(func(Connection) error { l.add("late"); return nil }))
		require.NoError(t, c.Close())
		time.Sleep(20 * time.Millisecond)
		require.Equal(t, []string{"cb3", "cb2", "cb1"}, l.get())
	})
}

// docs/contract.md C7.1, C7.4: after the peer closes, a dialed connection without
// handlers is inactive at once, but its close callbacks wait for the user's
// Close, and then run exactly once.
func TestConnPeerCloseDialedWaitsForClose(t *testing.T) {
	checkFDs(t)
	forEachNetwork(t, func(t *testing.T, network string) {
		c, peer := peerPair(t, network)
		l := newCallLog()
		addNumberedCallbacks(t, c, l, 2)
		require.True(t, c.IsActive())
		require.NoError(t, peer.Close())
		eventually(t, func() bool { return !c.IsActive() }, "IsActive() false after the peer closed")
		time.Sleep(50 * time.Millisecond)
		require.Empty(t, l.get(), "close callbacks ran before the user's Close")
		require.NoError(t, c.Close())
		require.Equal(t, []string{"cb2", "cb1"}, l.get())
		require.NoError(t, c.Close())
		require.False(t, c.IsActive(), "IsActive() must never be true again")
		require.Equal(t, []string{"cb2", "cb1"}, l.get())
	})
}

// docs/contract.md C7.1: IsActive is true until the first Close and never true again.
func TestConnIsActive(t *testing.T) {
	checkFDs(t)
	forEachNetwork(t, func(t *testing.T, network string) {
		c, peer := peerPair(t, network)
		require.True(t, c.IsActive())
		_, err := peer.Write([]byte("x"))
		require.NoError(t, err)
		_, err = c.Next(1)
		require.NoError(t, err)
		require.True(t, c.IsActive())
		require.NoError(t, c.Close())
		require.False(t, c.IsActive())
		_, _ = peer.Write([]byte("more")) // may fail; the peer may have seen the close
		time.Sleep(20 * time.Millisecond)
		require.False(t, c.IsActive())
		expectEOF(t, peer)
	})
}

// docs/contract.md C7.5: Detach is Close without closing the fd: the connection is
// inactive, its close callbacks run once, the poller no longer reads the fd,
// and the caller owns a working fd that a later Close does not close.
func TestConnDetach(t *testing.T) {
	checkFDs(t)
	forEachNetwork(t, func(t *testing.T, network string) {
		ln := listenStd(t, network)
		accepted := async(func() error {
			pc, err := ln.Accept()
			if err == nil {
				t.Cleanup(func() { _ = pc.Close() })
			}
			return err
		})
		var c interface {
			Connection
			Fd() int
			Detach() error
		}
		switch network {
		case "tcp":
			raddr, err := ResolveTCPAddr("tcp", ln.Addr().String())
			require.NoError(t, err)
			tc, err := DialTCP(context.Background(), "tcp", nil, raddr)
			require.NoError(t, err)
			c = tc
		case "unix":
			raddr, err := ResolveUnixAddr("unix", ln.Addr().String())
			require.NoError(t, err)
			uc, err := DialUnix("unix", nil, raddr)
			require.NoError(t, err)
			c = uc
		}
		t.Cleanup(func() { _ = c.Close() })
		require.NoError(t, recv(t, accepted, "accept"))
		fd := c.Fd()
		require.Greater(t, fd, 2)
		l := newCallLog()
		addNumberedCallbacks(t, c, l, 2)

		require.NoError(t, c.Detach())
		require.False(t, c.IsActive())
		require.Equal(t, []string{"cb2", "cb1"}, l.get())
		require.Error(t, c.Detach(), "a second Detach must fail")
		require.NoError(t, c.Close())
		require.Equal(t, []string{"cb2", "cb1"}, l.get())

		_, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0)
		require.NoError(t, err, "the detached fd was closed")
		require.NoError(t, unix.Close(fd))
	})
}

// docs/contract.md C7.5: after Detach the caller can use the fd for I/O, and the poller
// does not steal incoming bytes from it.
func TestConnDetachFdUsable(t *testing.T) {
	checkFDs(t)
	forEachNetwork(t, func(t *testing.T, network string) {
		c, peer := peerPair(t, network)
		fd := c.(Conn).Fd()
		detacher, ok := c.(interface{ Detach() error })
		require.True(t, ok, "%T has no Detach", c)
		require.NoError(t, detacher.Detach())
		defer unix.Close(fd)

		_, err := unix.Write(fd, []byte("raw"))
		require.NoError(t, err)
		require.Equal(t, "raw", string(readFull(t, peer, 3)))

		_, err = peer.Write([]byte("after"))
		require.NoError(t, err)
		var got []byte
		eventually(t, func() bool {
			var buf [16]byte
			n, err := unix.Read(fd, buf[:])
			if n > 0 {
				got = append(got, buf[:n]...)
			}
			_ = err // EAGAIN until the bytes arrive
			return len(got) >= 5
		}, "the bytes the peer sent after Detach to be readable from the fd")
		require.Equal(t, "after", string(got), "the poller read from a detached fd")
	})
}

// docs/contract.md C7.6: Close from inside a close callback does not deadlock, for a dialed
// connection and for one accepted by an EventLoop.
func TestConnCloseInsideCloseCallback(t *testing.T) {
	checkFDs(t)
	forEachNetwork(t, func(t *testing.T, network string) {
		c, _ := peerPair(t, network)
		l := newCallLog()
		require.NoError(t, c.AddCloseCallback(func(c Connection) error {
			err := c.Close()
			l.add("inner close: %v", err)
			return nil
		}))
		within(t, "Close", c.Close)
		require.Equal(t, []string{"inner close: <nil>"}, l.get())

		s := startServer(t, network, func(ctx context.Context, c Connection) error {
			return c.Close()
		}, WithOnPrepare(func(c Connection) context.Context {
			_ = c.AddCloseCallback(func(c Connection) error {
				err := c.Close()
				l.add("server inner close: %v", err)
				return nil
			})
			return context.Background()
		}))
		cl := dialStd(t, network, s.addr)
		_, err := cl.Write([]byte("close please"))
		require.NoError(t, err)
		l.waitFor(t, "server inner close: <nil>")
		expectEOF(t, cl)
	})
}

// docs/contract.md C7.2, C8.3: Close from inside OnRequest wakes nothing twice: the close
// callbacks run after OnRequest returns, and OnRequest is not called again.
func TestConnCloseInsideOnRequest(t *testing.T) {
	checkFDs(t)
	forEachNetwork(t, func(t *testing.T, network string) {
		l := newCallLog()
		s := startServer(t, network, func(ctx context.Context, c Connection) error {
			l.add("request")
			assert.NoError(t, c.Close())
			assert.False(t, c.IsActive())
			time.Sleep(20 * time.Millisecond)
			l.add("request returns")
			return nil
		}, WithOnPrepare(func(c Connection) context.Context {
			_ = c.AddCloseCallback(func(Connection) error { l.add("close callback"); return nil })
			return context.Background()
		}))
		cl := dialStd(t, network, s.addr)
		_, err := cl.Write([]byte("first"))
		require.NoError(t, err)
		_, _ = cl.Write([]byte("second")) // may race the close
		l.waitFor(t, "close callback")
		expectEOF(t, cl)
		time.Sleep(20 * time.Millisecond)
		require.Equal(t, []string{"request", "request returns", "close callback"}, l.get())
	})
}

// docs/contract.md C8.3, C8.8, C7.4: on a dialed connection, SetOnRequest with input
// already buffered starts the handler at once, later input runs it again,
// and because it now has a handler, a peer close runs OnDisconnect and the
// close callbacks without the user's Close.
func TestConnDialedSetOnRequest(t *testing.T) {
	checkFDs(t)
	forEachNetwork(t, func(t *testing.T, network string) {
		c, peer := peerPair(t, network)
		l := newCallLog()
		feed(t, peer, c, []byte("abc"), 3)
		require.NoError(t, c.SetOnRequest(nil)) // ignored
		require.NoError(t, c.SetOnRequest(func(ctx context.Context, c Connection) error {
			r := c.Reader()
			p, err := r.Next(r.Len())
			if err != nil {
				return err
			}
			l.add("request %s", p)
			return r.Release()
		}))
		type onDisconnectSetter interface{ SetOnDisconnect(OnDisconnect) error }
		od, ok := c.(onDisconnectSetter)
		require.True(t, ok, "%T has no SetOnDisconnect", c)
		require.NoError(t, od.SetOnDisconnect(func(ctx context.Context, c Connection) {
			l.add("disconnect active=%v", c.IsActive())
		}))
		require.NoError(t, c.AddCloseCallback(func(Connection) error { l.add("close"); return nil }))
		l.waitFor(t, "request abc")
		_, err := peer.Write([]byte("def"))
		require.NoError(t, err)
		l.waitFor(t, "request def")
		require.NoError(t, peer.Close())
		l.waitFor(t, "close")
		time.Sleep(20 * time.Millisecond)
		require.Equal(t, []string{"request abc", "request def", "disconnect active=false", "close"}, l.get())
	})
}

// docs/contract.md C8.3, C2.2, C15.5 (Kitex gRPC client): an OnRequest that blocks reading
// for the connection's whole life sees every message, wakes with ErrEOF when
// the peer closes, and the close callbacks run once, after it returned.
func TestConnLifetimeOnRequest(t *testing.T) {
	checkFDs(t)
	forEachNetwork(t, func(t *testing.T, network string) {
		c, peer := peerPair(t, network)
		l := newCallLog()
		var calls atomic.Int64
		require.NoError(t, c.AddCloseCallback(func(Connection) error { l.add("close"); return nil }))
		require.NoError(t, c.SetOnRequest(func(ctx context.Context, c Connection) error {
			calls.Add(1)
			r := c.Reader()
			for {
				line, err := r.Until('\n')
				if err != nil {
					l.add("handler ends: EOF=%v", errors.Is(err, ErrEOF))
					return err
				}
				l.add("line %s", bytes.TrimSpace(line))
				_ = r.Release()
			}
		}))
		for _, m := range []string{"one\n", "two\nthr", "ee\n"} {
			_, err := peer.Write([]byte(m))
			require.NoError(t, err)
			time.Sleep(5 * time.Millisecond)
		}
		l.waitFor(t, "line three")
		require.NoError(t, peer.Close())
		l.waitFor(t, "close")
		time.Sleep(20 * time.Millisecond)
		require.Equal(t, []string{"line one", "line two", "line three", "handler ends: EOF=true", "close"}, l.get())
		require.Equal(t, int64(1), calls.Load(), "the blocking handler must not be started twice")
	})
}

// docs/contract.md C7.2: Close on an accepted connection with no handler running runs the
// close callbacks before it returns.
func TestEventLoopCloseIdleIsSynchronous(t *testing.T) {
	checkFDs(t)
	forEachNetwork(t, func(t *testing.T, network string) {
		s, recs := recordingServer(t, network, true)
		cl := dialStd(t, network, s.addr)
		// Nothing is sent, so no handler ever runs on the connection.
		rec := recv(t, recs, "the accepted connection")
		// The record comes from OnPrepare, which holds the connection
		// until it returns; the registration follows its return.
		c := suiteConnOf(rec.conn)
		eventually(t, func() bool { return opCurrent(c.op.FD) == &c.op }, "the registration")
		require.NoError(t, rec.conn.Close())
		require.Equal(t, int64(1), rec.closeRuns.Load(), "close callbacks must have run when Close returned")
		expectEOF(t, cl)
		rec.check(t)
	})
}

// docs/contract.md C2.2: a read waiting for bytes ends with ErrConnClosed when the
// connection is detached.
func TestConnReadWakesOnDetach(t *testing.T) {
	checkFDs(t)
	forEachNetwork(t, func(t *testing.T, network string) {
		c, _ := peerPair(t, network)
		fd := c.(Conn).Fd()
		done := async(func() error { _, err := c.Next(4); return err })
		notYet(t, done, 20*time.Millisecond, "Next")
		require.NoError(t, c.(interface{ Detach() error }).Detach())
		err := recv(t, done, "Next after Detach")
		requireErrIs(t, err, ErrConnClosed)
		require.False(t, errors.Is(err, ErrEOF))
		require.NoError(t, unix.Close(fd))
	})
}
