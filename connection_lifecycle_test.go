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
)

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
	checkLeaks(t)
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
	checkLeaks(t)
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
	checkLeaks(t)
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

// docs/contract.md C7.6: Close from inside a close callback does not deadlock, for a dialed
// connection and for one accepted by an EventLoop.
func TestConnCloseInsideCloseCallback(t *testing.T) {
	checkLeaks(t)
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
	checkLeaks(t)
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
	checkLeaks(t)
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
	checkLeaks(t)
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
	checkLeaks(t)
	forEachNetwork(t, func(t *testing.T, network string) {
		s, recs := recordingServer(t, network, true)
		cl := dialStd(t, network, s.addr)
		// Nothing is sent, so no handler ever runs on the connection.
		rec := recv(t, recs, "the accepted connection")
		// The record comes from OnPrepare, which holds the connection
		// until it returns; the registration follows its return.
		c := connOf(rec.conn)
		eventually(t, func() bool { return opCurrent(c.op.FD) == &c.op }, "the registration")
		require.NoError(t, rec.conn.Close())
		require.Equal(t, int64(1), rec.closeRuns.Load(), "close callbacks must have run when Close returned")
		expectEOF(t, cl)
		rec.check(t)
	})
}

// docs/contract.md C0.3, C0.4, C5.3, C7.2, C7.7, C16.2: every one of the 40
// methods after Close, on a dialed connection with buffered input and
// pending output and no handler: Close ran the close callbacks and recycled
// the buffers before it returned, so reads fail with ErrConnClosed, Len and
// MallocLen are 0, the addresses and Fd are those before the Close, the
// socket options fail with ErrConnClosed, and the setters of handlers and
// timeouts still answer nil.
func TestConnEveryMethodAfterClose(t *testing.T) {
	checkLeaks(t)
	ln := stdEcho(t, "tcp")
	c := dialEcho(t, ln)
	_, _ = c.Write([]byte("0123456789"))
	eventually(t, func() bool { return c.Reader().Len() == 10 }, "c.Reader().Len() == 10")
	_, _ = c.Writer().Malloc(5)
	local, remote, fd := c.LocalAddr(), c.RemoteAddr(), c.(Conn).Fd()
	require.NoError(t, c.Close())
	full := c.(*TCPConnection)
	readOK := func(err error) error { // the buffers are recycled: ErrConnClosed
		return check(errors.Is(err, ErrConnClosed), "want ErrConnClosed, got "+errText(err))
	}
	closed := func(err error) error {
		return check(errors.Is(err, ErrConnClosed), "want ErrConnClosed, got "+errText(err))
	}
	cases := []argCase{
		{"Next", false, func() error { _, err := full.Next(1); return readOK(err) }},
		{"Peek", false, func() error { _, err := full.Peek(1); return readOK(err) }},
		{"Skip", false, func() error { return readOK(full.Skip(1)) }},
		{"Until", false, func() error { _, err := full.Until('9'); return readOK(err) }},
		{"ReadString", false, func() error { _, err := full.ReadString(1); return readOK(err) }},
		{"ReadBinary", false, func() error { _, err := full.ReadBinary(1); return readOK(err) }},
		{"ReadByte", false, func() error { _, err := full.ReadByte(); return readOK(err) }},
		{"Slice", false, func() error { _, err := full.Slice(1); return readOK(err) }},
		{"Next(more than buffered)", false, func() error { _, err := full.Next(1 << 20); return closed(err) }},
		{"Release", false, func() error { return full.Release() }},
		{"Len", false, func() error { return check(full.Len() == 0, fmt.Sprintf("Len %d, want 0", full.Len())) }},
		{"Read", false, func() error { _, err := full.Read(make([]byte, 4)); return readOK(err) }},
		{"Malloc", false, func() error { _, err := full.Malloc(1); return closed(err) }},
		{"WriteString", false, func() error { _, err := full.WriteString("x"); return closed(err) }},
		{"WriteBinary", false, func() error { _, err := full.WriteBinary([]byte("x")); return closed(err) }},
		{"WriteByte", false, func() error { return closed(full.WriteByte('x')) }},
		{"WriteDirect", false, func() error { return closed(full.WriteDirect([]byte("x"), 0)) }},
		{"MallocAck", false, func() error { return closed(full.MallocAck(0)) }},
		{"Append", false, func() error { return closed(full.Append(flushedBuffer("x"))) }},
		{"Flush", false, func() error { return closed(full.Flush()) }},
		{"MallocLen", false, func() error {
			return check(full.MallocLen() == 0, fmt.Sprintf("MallocLen %d, want 0", full.MallocLen()))
		}},
		{"Write", false, func() error { _, err := full.Write([]byte("x")); return closed(err) }},
		{"Close", false, func() error { return full.Close() }},
		{"LocalAddr", false, func() error { return check(full.LocalAddr() == local, "LocalAddr changed at Close") }},
		{"RemoteAddr", false, func() error { return check(full.RemoteAddr() == remote, "RemoteAddr changed at Close") }},
		{"SetDeadline", false, func() error { return full.SetDeadline(time.Now()) }},
		{"SetReadDeadline", false, func() error { return full.SetReadDeadline(time.Now()) }},
		{"SetWriteDeadline", false, func() error { return full.SetWriteDeadline(time.Now()) }},
		{"Reader", false, func() error { return check(full.Reader() != nil, "nil Reader") }},
		{"Writer", false, func() error { return check(full.Writer() != nil, "nil Writer") }},
		{"IsActive", false, func() error { return check(!full.IsActive(), "active after Close") }},
		{"SetReadTimeout", false, func() error { return full.SetReadTimeout(time.Second) }},
		{"SetWriteTimeout", false, func() error { return full.SetWriteTimeout(time.Second) }},
		{"SetIdleTimeout", false, func() error { return closed(full.SetIdleTimeout(time.Minute)) }},
		{"SetOnRequest", false, func() error {
			return full.SetOnRequest(func(ctx context.Context, c Connection) error { return nil })
		}},
		{"AddCloseCallback", false, func() error { return full.AddCloseCallback(func(Connection) error { return nil }) }},
		{"Fd", false, func() error { return check(full.Fd() == fd, fmt.Sprintf("Fd %d after Close, want %d", full.Fd(), fd)) }},
		{"Detach", true, func() error { return full.Detach() }},
		{"SetKeepAlive", false, func() error { return closed(full.SetKeepAlive(5)) }},
		{"SetOnConnect", false, func() error {
			return full.SetOnConnect(func(ctx context.Context, c Connection) context.Context { return ctx })
		}},
		{"SetOnDisconnect", false, func() error { return full.SetOnDisconnect(func(context.Context, Connection) {}) }},
	}
	runArgCases(t, cases)
}

// docs/contract.md C7.7, C16.2: Malloc and reads after a local Close fail with
// ErrConnClosed, never with a panic, round after round (the reference's
// Malloc can panic on a recycled node). The connection has no handler, so
// its buffers are recycled when Close returns: no read returns data.
func TestConnNoPanicAfterClose(t *testing.T) {
	checkLeaks(t)
	ln := stdEcho(t, "tcp")
	for round := 0; round < 20; round++ {
		c := dialEcho(t, ln)
		_, _ = c.Write([]byte("abc"))
		eventually(t, func() bool { return c.Reader().Len() == 3 }, "c.Reader().Len() == 3")
		require.NoError(t, c.Close())
		err := within(t, "Malloc after Close", func() error { _, err := c.Writer().Malloc(16); return err })
		requireErrIs(t, err, ErrConnClosed, "Malloc after Close")
		reads := within(t, "reads after Close", func() []error {
			_, next := c.Reader().Next(3)
			release := c.Reader().Release()
			_, peek := c.Reader().Peek(1)
			_, readByte := c.Reader().ReadByte()
			return []error{next, release, peek, readByte}
		})
		for i, name := range []string{"Next", "Release", "Peek", "ReadByte"} {
			if name == "Release" {
				require.NoError(t, reads[i], "Release after Close")
				continue
			}
			requireErrIs(t, reads[i], ErrConnClosed, name+" after Close")
		}
		require.Zero(t, c.Reader().Len(), "Len after Close")
	}
}
