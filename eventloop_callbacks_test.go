//go:build darwin || freebsd || linux

package netpoll

import (
	"context"
	"errors"
	"math/rand"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// logFrom returns the connection's log that OnPrepare put in ctx.
func logFrom(t testing.TB, ctx context.Context, where string) *callLog {
	l, ok := ctx.Value(ctxKey("log")).(*callLog)
	if !ok {
		t.Errorf("%s: the OnPrepare ctx was lost", where)
		return newCallLog()
	}
	return l
}

// docs/contract.md C8.1, C8.2, C8.5, C8.6: the callbacks run in the order OnPrepare →
// OnConnect → OnRequest… → OnDisconnect → close callbacks, each ctx flows to
// the next, and OnDisconnect and the close callbacks see IsActive() false.
func TestEventLoopCallbackOrder(t *testing.T) {
	checkLeaks(t)
	forEachNetwork(t, func(t *testing.T, network string) {
		logs := make(chan *callLog, 1)
		s := startServer(t, network, func(ctx context.Context, c Connection) error {
			l := logFrom(t, ctx, "OnRequest")
			if ctx.Value(ctxKey("connect")) == nil {
				l.add("request without the OnConnect ctx")
			}
			l.add("request")
			return echoAll(c)
		}, WithOnPrepare(func(c Connection) context.Context {
			l := newCallLog()
			l.add("prepare")
			logs <- l
			_ = c.AddCloseCallback(func(c Connection) error { l.add("close active=%v", c.IsActive()); return nil })
			return context.WithValue(context.Background(), ctxKey("log"), l)
		}), WithOnConnect(func(ctx context.Context, c Connection) context.Context {
			logFrom(t, ctx, "OnConnect").add("connect")
			return context.WithValue(ctx, ctxKey("connect"), true)
		}), WithOnDisconnect(func(ctx context.Context, c Connection) {
			logFrom(t, ctx, "OnDisconnect").add("disconnect active=%v", c.IsActive())
		}))

		cl := dialStd(t, network, s.addr)
		for _, m := range []string{"one", "two", "three"} {
			_, err := cl.Write([]byte(m))
			require.NoError(t, err)
			require.Equal(t, m, string(readFull(t, cl, len(m))))
		}
		require.NoError(t, cl.Close())
		l := recv(t, logs, "OnPrepare")
		l.waitFor(t, "close active=false")
		time.Sleep(20 * time.Millisecond) // nothing may follow
		ev := l.get()
		require.GreaterOrEqual(t, len(ev), 7, "events %v", ev)
		require.Equal(t, []string{"prepare", "connect"}, ev[:2], "events %v", ev)
		for _, e := range ev[2 : len(ev)-2] {
			require.Equal(t, "request", e, "events %v", ev)
		}
		require.Equal(t, []string{"disconnect active=false", "close active=false"}, ev[len(ev)-2:], "events %v", ev)
	})
}

// docs/contract.md C8.3: OnRequest runs serially per connection, even when it blocks
// reading and more data arrives meanwhile, and it is called again while
// input remains after a call that consumed some.
func TestEventLoopOnRequestSerial(t *testing.T) {
	checkLeaks(t)
	forEachNetwork(t, func(t *testing.T, network string) {
		const conns, msgs, size = 4, 300, 8
		var violations, handled atomic.Int64
		s := startServer(t, network, func(ctx context.Context, c Connection) error {
			inflight := ctx.Value(ctxKey("inflight")).(*atomic.Int32)
			if inflight.Add(1) != 1 {
				violations.Add(1)
			}
			defer inflight.Add(-1)
			// One message per call, waiting for it if only part arrived.
			if _, err := c.Reader().Next(size); err != nil {
				return err
			}
			time.Sleep(50 * time.Microsecond)
			handled.Add(1)
			return c.Reader().Release()
		}, WithOnPrepare(func(c Connection) context.Context {
			return context.WithValue(context.Background(), ctxKey("inflight"), new(atomic.Int32))
		}))

		rng := newRand(t)
		var wg sync.WaitGroup
		for i := 0; i < conns; i++ {
			cl := dialStd(t, network, s.addr)
			stream := randomBytes(rng, msgs*size)
			seed := rng.Int63()
			wg.Add(1)
			go func() {
				defer wg.Done()
				r := rand.New(rand.NewSource(seed))
				for len(stream) > 0 {
					n := min(len(stream), 1+r.Intn(3*size)) // partial and merged messages
					if _, err := cl.Write(stream[:n]); err != nil {
						t.Errorf("write: %v", err)
						return
					}
					stream = stream[n:]
					if r.Intn(4) == 0 {
						time.Sleep(100 * time.Microsecond)
					}
				}
			}()
		}
		wg.Wait()
		eventually(t, func() bool { return handled.Load() == conns*msgs }, "all %d messages handled (have %d)", conns*msgs, handled.Load())
		require.Zero(t, violations.Load(), "OnRequest ran concurrently on one connection")
	})
}

// docs/contract.md C8.4, C16.1: an OnRequest that consumes nothing is not called in a busy
// loop: it is called again only when more data arrives or the connection
// closes, and not forever after a peer close; the connection is still
// finalized (its close callback runs, once: a second run would panic).
func TestEventLoopOnRequestNoConsumeNoSpin(t *testing.T) {
	checkLeaks(t)
	forEachNetwork(t, func(t *testing.T, network string) {
		var calls atomic.Int64
		closed := make(chan struct{})
		s := startServer(t, network, func(ctx context.Context, c Connection) error {
			calls.Add(1)
			return nil
		}, WithOnPrepare(func(c Connection) context.Context {
			_ = c.AddCloseCallback(func(Connection) error { close(closed); return nil })
			return nil
		}))
		const bound = 3 // a spinning handler is called millions of times
		cl := dialStd(t, network, s.addr)
		_, err := cl.Write([]byte("0123456789"))
		require.NoError(t, err)
		eventually(t, func() bool { return calls.Load() >= 1 }, "the first OnRequest")
		time.Sleep(300 * time.Millisecond)
		n1 := calls.Load()
		require.LessOrEqual(t, n1, int64(bound), "OnRequest spins on input it does not consume")

		_, err = cl.Write([]byte("more"))
		require.NoError(t, err)
		eventually(t, func() bool { return calls.Load() > n1 }, "OnRequest again after new data")
		time.Sleep(300 * time.Millisecond)
		n2 := calls.Load()
		require.LessOrEqual(t, n2-n1, int64(bound), "OnRequest spins on input it does not consume")

		require.NoError(t, cl.Close())
		recv(t, closed, "the close callbacks after the peer closed")
		time.Sleep(300 * time.Millisecond)
		n3 := calls.Load()
		require.LessOrEqual(t, n3-n2, int64(bound), "OnRequest spins after the peer closed")
	})
}

// docs/contract.md C8.2: OnConnect may block and read; OnRequest waits until it returns,
// gets its ctx, and then handles the data still buffered.
func TestEventLoopOnConnectBlocksAndReads(t *testing.T) {
	checkLeaks(t)
	forEachNetwork(t, func(t *testing.T, network string) {
		var connected atomic.Bool
		var problems sync.Map
		s := startServer(t, network, func(ctx context.Context, c Connection) error {
			if !connected.Load() {
				problems.Store("OnRequest ran before OnConnect returned", true)
			}
			if ctx.Value(ctxKey("connect")) != "yes" {
				problems.Store("OnRequest did not get the OnConnect ctx", true)
			}
			return echoAll(c)
		}, WithOnConnect(func(ctx context.Context, c Connection) context.Context {
			p, err := c.Reader().Next(5)
			if err != nil || string(p) != "HELLO" {
				problems.Store("OnConnect read failed", true)
			}
			_ = c.Reader().Release()
			time.Sleep(50 * time.Millisecond) // a wrong OnRequest would run now
			_, _ = c.Writer().WriteString("hi:")
			_ = c.Writer().Flush()
			connected.Store(true)
			return context.WithValue(ctx, ctxKey("connect"), "yes")
		}))
		cl := dialStd(t, network, s.addr)
		_, err := cl.Write([]byte("HELLOrequest1"))
		require.NoError(t, err)
		require.Equal(t, "hi:request1", string(readFull(t, cl, 11)))
		problems.Range(func(k, _ interface{}) bool { t.Error(k); return true })
	})
}

// docs/contract.md C8.5: OnDisconnect does not run when the server closes the connection
// after OnConnect; it does run, once and after OnConnect, when either side
// closes during OnConnect.
func TestEventLoopOnDisconnect(t *testing.T) {
	checkLeaks(t)
	forEachNetwork(t, func(t *testing.T, network string) {
		t.Run("local close after OnConnect", func(t *testing.T) {
			l := newCallLog()
			s := startServer(t, network, func(ctx context.Context, c Connection) error {
				l.add("request")
				return c.Close()
			}, WithOnConnect(func(ctx context.Context, c Connection) context.Context {
				l.add("connect")
				return ctx
			}), WithOnDisconnect(func(ctx context.Context, c Connection) {
				l.add("disconnect")
			}), WithOnPrepare(func(c Connection) context.Context {
				_ = c.AddCloseCallback(func(Connection) error { l.add("close"); return nil })
				return nil
			}))
			cl := dialStd(t, network, s.addr)
			_, err := cl.Write([]byte("x"))
			require.NoError(t, err)
			l.waitFor(t, "close")
			expectEOF(t, cl)
			time.Sleep(50 * time.Millisecond)
			require.Equal(t, []string{"connect", "request", "close"}, l.get())
		})
		t.Run("local close in OnConnect", func(t *testing.T) {
			l := newCallLog()
			s := startServer(t, network, func(ctx context.Context, c Connection) error {
				l.add("request")
				return nil
			}, WithOnConnect(func(ctx context.Context, c Connection) context.Context {
				_ = c.Close()
				time.Sleep(20 * time.Millisecond)
				l.add("connect returns")
				return ctx
			}), WithOnDisconnect(func(ctx context.Context, c Connection) {
				l.add("disconnect active=%v", c.IsActive())
			}), WithOnPrepare(func(c Connection) context.Context {
				_ = c.AddCloseCallback(func(Connection) error { l.add("close"); return nil })
				return nil
			}))
			cl := dialStd(t, network, s.addr)
			expectEOF(t, cl)
			l.waitFor(t, "close")
			time.Sleep(50 * time.Millisecond)
			require.Equal(t, []string{"connect returns", "disconnect active=false", "close"}, l.get())
		})
		t.Run("peer close in OnConnect", func(t *testing.T) {
			l := newCallLog()
			release := make(chan struct{})
			conns := make(chan Connection, 1)
			s := startServer(t, network, nil, WithOnConnect(func(ctx context.Context, c Connection) context.Context {
				conns <- c
				l.add("connect")
				select {
				case <-release:
				case <-time.After(longWait):
				}
				l.add("connect returns")
				return ctx
			}), WithOnDisconnect(func(ctx context.Context, c Connection) {
				l.add("disconnect active=%v", c.IsActive())
			}), WithOnPrepare(func(c Connection) context.Context {
				_ = c.AddCloseCallback(func(Connection) error { l.add("close"); return nil })
				return nil
			}))
			cl := dialStd(t, network, s.addr)
			l.waitFor(t, "connect")
			require.NoError(t, cl.Close())
			sc := recv(t, conns, "the connection in OnConnect")
			eventually(t, func() bool { return !sc.IsActive() }, "the hang-up to be seen while OnConnect runs")
			close(release)
			l.waitFor(t, "close")
			time.Sleep(50 * time.Millisecond)
			require.Equal(t, []string{"connect", "connect returns", "disconnect active=false", "close"}, l.get())
		})
	})
}

// docs/contract.md C8.1: a connection that OnPrepare closes is never registered: no
// OnConnect, no OnRequest, its close callbacks run, and the client sees the close.
func TestEventLoopOnPrepareClose(t *testing.T) {
	checkLeaks(t)
	forEachNetwork(t, func(t *testing.T, network string) {
		l := newCallLog()
		s := startServer(t, network, func(ctx context.Context, c Connection) error {
			l.add("request")
			return nil
		}, WithOnConnect(func(ctx context.Context, c Connection) context.Context {
			l.add("connect")
			return ctx
		}), WithOnPrepare(func(c Connection) context.Context {
			_ = c.AddCloseCallback(func(Connection) error { l.add("close"); return nil })
			_ = c.Close()
			return nil
		}))
		cl := dialStd(t, network, s.addr)
		_, _ = cl.Write([]byte("ignored"))
		expectEOF(t, cl)
		l.waitFor(t, "close")
		time.Sleep(50 * time.Millisecond)
		require.Equal(t, []string{"close"}, l.get())
	})
}

// docs/contract.md C5.4, C8.8: writes in OnPrepare are sent; handlers set on the
// connection in OnPrepare replace the loop's, nil is ignored, and
// NewEventLoop(nil, …) is valid.
func TestEventLoopOnPrepareWritesAndSetsHandlers(t *testing.T) {
	checkLeaks(t)
	forEachNetwork(t, func(t *testing.T, network string) {
		l := newCallLog()
		s := startServer(t, network, nil, WithOnPrepare(func(c Connection) context.Context {
			_, err := c.Writer().WriteString("welcome;")
			if err == nil {
				err = c.Writer().Flush()
			}
			if err != nil {
				l.add("OnPrepare write: %v", err)
			}
			_ = c.SetOnRequest(func(ctx context.Context, c Connection) error { return echoAll(c) })
			_ = c.SetOnRequest(nil)
			type onConnectSetter interface{ SetOnConnect(OnConnect) error }
			if oc, ok := c.(onConnectSetter); ok {
				_ = oc.SetOnConnect(func(ctx context.Context, c Connection) context.Context {
					l.add("connect")
					return ctx
				})
			} else {
				l.add("no SetOnConnect on %T", c)
			}
			type onDisconnectSetter interface{ SetOnDisconnect(OnDisconnect) error }
			if od, ok := c.(onDisconnectSetter); ok {
				_ = od.SetOnDisconnect(func(ctx context.Context, c Connection) { l.add("disconnect") })
				_ = od.SetOnDisconnect(nil)
			} else {
				l.add("no SetOnDisconnect on %T", c)
			}
			return nil
		}))
		cl := dialStd(t, network, s.addr)
		require.Equal(t, "welcome;", string(readFull(t, cl, 8)))
		_, err := cl.Write([]byte("echo me"))
		require.NoError(t, err)
		require.Equal(t, "echo me", string(readFull(t, cl, 7)))
		require.NoError(t, cl.Close())
		l.waitFor(t, "disconnect")
		require.Equal(t, []string{"connect", "disconnect"}, l.get())
	})
}

// docs/contract.md C8.3: the error OnRequest returns is ignored: the connection stays open
// and the next input calls OnRequest again.
func TestEventLoopOnRequestErrorIgnored(t *testing.T) {
	checkLeaks(t)
	forEachNetwork(t, func(t *testing.T, network string) {
		s := startServer(t, network, func(ctx context.Context, c Connection) error {
			if err := echoAll(c); err != nil {
				return err
			}
			return errors.New("ignored handler error")
		})
		cl := dialStd(t, network, s.addr)
		for _, m := range []string{"one", "two", "three"} {
			roundTrip(t, cl, m)
		}
	})
}

// docs/contract.md C8.2, C8.5: OnDisconnect sees the ctx OnConnect
// returned, however quickly the peer closes, and so does OnRequest.
func TestEventLoopCtxFromOnConnectToOnDisconnect(t *testing.T) {
	checkLeaks(t)
	var next atomic.Int64
	var bad, seen atomic.Int64
	var mu sync.Mutex
	ids := map[Connection]int64{}
	srv := startServer(t, "tcp", func(ctx context.Context, c Connection) error {
		mu.Lock()
		want := ids[c]
		mu.Unlock()
		if v, _ := ctx.Value(ctxKey("id")).(int64); v != want {
			bad.Add(1)
		}
		return c.Reader().Skip(c.Reader().Len())
	},
		WithOnConnect(func(ctx context.Context, c Connection) context.Context {
			id := next.Add(1)
			mu.Lock()
			ids[c] = id
			mu.Unlock()
			if id%3 == 0 {
				time.Sleep(time.Duration(id%5) * 200 * time.Microsecond)
			}
			return context.WithValue(ctx, ctxKey("id"), id)
		}),
		WithOnDisconnect(func(ctx context.Context, c Connection) {
			mu.Lock()
			want := ids[c]
			mu.Unlock()
			if v, _ := ctx.Value(ctxKey("id")).(int64); v != want {
				bad.Add(1)
			}
			seen.Add(1)
		}))
	const rounds = 100
	for i := 0; i < rounds; i++ {
		p := srv.dialStd(t)
		if i%2 == 0 {
			_, _ = p.Write([]byte("x"))
		}
		p.Close()
	}
	if !waitUntil(longWait, func() bool { return seen.Load() == rounds }) {
		t.Fatalf("OnDisconnect ran %d times for %d peer closes", seen.Load(), rounds)
	}
	if bad.Load() != 0 {
		t.Fatalf("%d handlers saw a ctx other than OnConnect's", bad.Load())
	}
}

// docs/contract.md C8.3: SetOnRequest on a NewFDConnection connection whose
// input is already buffered runs the handler for that input at once.
func TestFDConnectionSetOnRequestWithBufferedInput(t *testing.T) {
	checkLeaks(t)
	c, w := fdPairConn(t)
	var err error
	if _, err = unix.Write(w, []byte("hello")); err != nil {
		t.Fatal(err)
	}
	if !waitUntil(longWait, func() bool { return c.Reader().Len() == 5 }) {
		t.Fatal("input never buffered")
	}
	got := make(chan string, 1)
	_ = c.SetOnRequest(func(ctx context.Context, c Connection) error {
		s, err := c.Reader().ReadString(c.Reader().Len())
		if err == nil {
			trySend(got, s)
		}
		return err
	})
	if s := recv(t, got, "the handler to run for the buffered input"); s != "hello" {
		t.Fatalf("handler read %q", s)
	}
}

// docs/contract.md C8.8: nil callbacks and options: a loop built from them
// serves, closes and shuts down like one without.
func TestEventLoopNilCallbacks(t *testing.T) {
	checkLeaks(t)
	srv := startServer(t, "tcp", nil,
		WithOnPrepare(nil), WithOnConnect(nil), WithOnDisconnect(nil),
		WithReadTimeout(-1), WithWriteTimeout(-1), WithIdleTimeout(-1), Option{})
	c := srv.dial(t)
	_ = c.SetOnRequest(nil)
	_ = c.AddCloseCallback(nil)
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	p := srv.dialStd(t) // silent: its connection is idle, Shutdown closes it
	defer p.Close()
	eventually(t, func() bool { return srv.tracks(p.LocalAddr().String()) }, "the server to track the silent connection")
	require.NoError(t, srv.stop())
	expectCleanEOF(t, p)
}
