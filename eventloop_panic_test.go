//go:build darwin || freebsd || linux

package netpoll

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Panics in the handlers (docs/contract.md C8.1, C8.5, C8.7): a panic in
// OnPrepare, OnConnect, OnRequest or OnDisconnect closes that connection
// and runs its close callbacks; the panic reaches the Runner (OnPrepare's,
// which runs on the poller, is logged), and the server goes on serving.

// docs/contract.md C8.7: a panic in OnRequest closes the connection (close callbacks run,
// the client sees the close) and the server keeps serving others.
func TestEventLoopOnRequestPanic(t *testing.T) {
	checkLeaks(t)
	forEachNetwork(t, func(t *testing.T, network string) {
		l := newCallLog()
		s := startServer(t, network, func(ctx context.Context, c Connection) error {
			p, err := c.Reader().Peek(1)
			if err == nil && p[0] == '!' {
				panic("test panic in OnRequest (expected)")
			}
			return echoAll(c)
		}, WithOnPrepare(func(c Connection) context.Context {
			_ = c.AddCloseCallback(func(Connection) error { l.add("close"); return nil })
			return nil
		}))
		bad := dialStd(t, network, s.addr)
		_, err := bad.Write([]byte("!boom"))
		require.NoError(t, err)
		expectEOF(t, bad)
		l.waitFor(t, "close")

		good := dialStd(t, network, s.addr)
		_, err = good.Write([]byte("still serving"))
		require.NoError(t, err)
		require.Equal(t, "still serving", string(readFull(t, good, 13)))
		require.True(t, strings.HasPrefix(l.get()[0], "close"))
	})
}

// docs/contract.md C8.7: a panic in OnConnect closes the connection: the client sees the
// close, OnRequest never runs, the close callbacks do, and the server goes on.
func TestEventLoopOnConnectPanic(t *testing.T) {
	checkLeaks(t)
	forEachNetwork(t, func(t *testing.T, network string) {
		l := newCallLog()
		var first atomic.Bool
		s := startServer(t, network, func(ctx context.Context, c Connection) error {
			l.add("request")
			return echoAll(c)
		}, WithOnConnect(func(ctx context.Context, c Connection) context.Context {
			if first.CompareAndSwap(false, true) {
				panic("test panic in OnConnect (expected)")
			}
			return ctx
		}), WithOnPrepare(func(c Connection) context.Context {
			_ = c.AddCloseCallback(func(Connection) error { l.add("close"); return nil })
			return nil
		}))
		bad := dialStd(t, network, s.addr)
		_, _ = bad.Write([]byte("never handled"))
		expectEOF(t, bad)
		l.waitFor(t, "close")
		require.Equal(t, []string{"close"}, l.get())

		good := dialStd(t, network, s.addr)
		roundTrip(t, good, "after the panic")
	})
}

// docs/contract.md C8.7: a panic in OnRequest (or OnConnect) closes the
// connection, runs its close callbacks, and is raised again inside the
// Runner (here one that recovers and reports it); the server keeps serving.
func TestEventLoopPanicReachesRunner(t *testing.T) {
	checkLeaks(t)
	for _, where := range []string{"OnRequest", "OnConnect"} {
		t.Run(where, func(t *testing.T) {
			panics := recoveringRunner(t)
			rec := newCallLog()
			srv := startServer(t, "tcp", func(ctx context.Context, c Connection) error {
				b, _ := c.Reader().ReadByte()
				if b == 'P' && where == "OnRequest" {
					panic("boom in OnRequest")
				}
				_, err := c.Write([]byte{b})
				return err
			},
				WithOnPrepare(func(c Connection) context.Context {
					_ = c.AddCloseCallback(func(Connection) error { rec.add("closed"); return nil })
					return nil
				}),
				WithOnConnect(func(ctx context.Context, c Connection) context.Context {
					if b, _ := c.Reader().Peek(1); len(b) == 1 && b[0] == 'P' && where == "OnConnect" {
						panic("boom in OnConnect")
					}
					return ctx
				}))
			p := srv.dialStd(t)
			defer p.Close()
			_, _ = p.Write([]byte{'P'})
			if r := recv(t, panics, "the panic to reach the Runner"); fmt.Sprint(r) != "boom in "+where {
				t.Fatalf("the Runner recovered %v", r)
			}
			expectCleanEOF(t, p)
			rec.waitCount(t, "closed", 1)
			// The server still serves.
			q := srv.dialStd(t)
			defer q.Close()
			_ = q.SetDeadline(time.Now().Add(longWait))
			buf := []byte{0}
			if _, err := q.Write([]byte{'k'}); err != nil {
				t.Fatal(err)
			}
			if _, err := io.ReadFull(q, buf); err != nil || buf[0] != 'k' {
				t.Fatalf("after the panic: %q, %v", buf, err)
			}
		})
	}
}

// docs/contract.md C8.5, C8.7: a panic in OnDisconnect after a peer close
// still finishes the close: the
// close callbacks run, the buffers are recycled, the server forgets the
// connection, and the panic reaches the Runner. The holds of the task that
// runs OnDisconnect used to be released only when it returned.
func TestEventLoopPanicInOnDisconnect(t *testing.T) {
	checkLeaks(t)
	panics := recoveringRunner(t)
	rec := newCallLog()
	conns := make(chan *connection, 1)
	srv := startServer(t, "tcp", func(ctx context.Context, c Connection) error {
		return c.Reader().Skip(c.Reader().Len())
	},
		WithOnPrepare(func(c Connection) context.Context {
			conns <- connOf(c)
			_ = c.AddCloseCallback(func(Connection) error { rec.add("closed"); return nil })
			return nil
		}),
		WithOnDisconnect(func(ctx context.Context, c Connection) { panic("boom in OnDisconnect") }))
	p := srv.dialStd(t)
	_, _ = p.Write([]byte("some input"))
	c := recv(t, conns, "the accepted connection")
	p.Close()
	if r := recv(t, panics, "the panic to reach the Runner"); fmt.Sprint(r) != "boom in OnDisconnect" {
		t.Fatalf("the Runner recovered %v", r)
	}
	if !waitUntil(longWait, func() bool { return rec.count("closed") == 1 }) {
		t.Fatal("a panic in OnDisconnect left the connection half-closed: its close callbacks never ran (connection_state.go peerClosed: no recover in the OnDisconnect task)")
	}
	if in, out := retained(c); in != 0 || out != 0 {
		t.Errorf("buffers still hold %d and %d bytes", in, out)
	}
	if tracked := srv.conns(); tracked != 0 {
		t.Errorf("the server still tracks %d connection(s)", tracked)
	}
}

// docs/contract.md C8.1: a panic in OnPrepare (which runs on the poller) is
// logged and closes that connection, and the poller and the server go on
// serving the next ones.
func TestEventLoopPanicInOnPrepare(t *testing.T) {
	checkLeaks(t)
	var logged lockedBuffer
	SetLoggerOutput(&logged)
	defer SetLoggerOutput(os.Stderr)
	defer func() {
		if !strings.Contains(logged.String(), "boom in OnPrepare") {
			t.Errorf("the OnPrepare panic was not logged: %q", logged.String())
		}
	}()
	var n atomic.Int64
	srv := startServer(t, "tcp", func(ctx context.Context, c Connection) error {
		b, _ := c.Reader().ReadByte()
		_, err := c.Write([]byte{b})
		return err
	}, WithOnPrepare(func(c Connection) context.Context {
		if n.Add(1)%2 == 1 {
			panic("boom in OnPrepare")
		}
		return nil
	}))
	for i := 0; i < 6; i++ {
		p := srv.dialStd(t)
		_ = p.SetDeadline(time.Now().Add(longWait))
		_, _ = p.Write([]byte{'a' + byte(i)})
		buf := []byte{0}
		_, err := io.ReadFull(p, buf)
		p.Close()
		if i%2 == 0 {
			if err == nil {
				t.Fatalf("connection %d: served although its OnPrepare panicked", i)
			}
			continue
		}
		if err != nil || buf[0] != 'a'+byte(i) {
			t.Fatalf("connection %d after a panicking OnPrepare: %q, %v", i, buf, err)
		}
	}
}
