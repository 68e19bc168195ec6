//go:build darwin || freebsd || linux

package netpoll

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// Close (docs/contract.md C7.2, C7.3, C8.5): from many goroutines at once,
// from inside every callback and while a read or a Flush is blocked, and
// on every way a connection can end, the close callbacks run exactly once;
// and what was sent before a Close reaches the peer whole.

// docs/contract.md C7.2, C7.3, C8.5: eight goroutines Close the same
// accepted connection at once, while the peer closes too: every Close
// returns nil, OnDisconnect runs at most once and the close callbacks
// exactly once, in LIFO order.
func TestConnCloseConcurrentWithPeerClose(t *testing.T) {
	for _, network := range testNetworks {
		t.Run(network, func(t *testing.T) {
			checkLeaks(t)
			const rounds = 50
			var mu sync.Mutex
			closed := map[Connection][]int{}
			disc := map[Connection]int{}
			conns := make(chan Connection, rounds)
			srv := startServer(t, network, nil,
				WithOnConnect(func(ctx context.Context, c Connection) context.Context {
					for i := 0; i < 3; i++ {
						i := i
						_ = c.AddCloseCallback(func(c Connection) error {
							mu.Lock()
							closed[c] = append(closed[c], i)
							mu.Unlock()
							return nil
						})
					}
					conns <- c
					return ctx
				}),
				WithOnDisconnect(func(ctx context.Context, c Connection) {
					mu.Lock()
					disc[c]++
					mu.Unlock()
				}))
			for r := 0; r < rounds; r++ {
				peer := srv.dialStd(t)
				c := recv(t, conns, "the accepted connection")
				start := make(chan struct{})
				var wg sync.WaitGroup
				errs := make(chan error, 8)
				for g := 0; g < 8; g++ {
					wg.Add(1)
					go func() {
						defer wg.Done()
						<-start
						errs <- c.Close()
					}()
				}
				if r%2 == 1 {
					wg.Add(1)
					go func() { defer wg.Done(); <-start; peer.Close() }()
				}
				close(start)
				recv(t, async(func() bool { wg.Wait(); return true }), "the Closes")
				peer.Close()
				close(errs)
				for err := range errs {
					if err != nil {
						t.Fatalf("Close: %v", err)
					}
				}
			}
			ok := waitUntil(longWait, func() bool {
				mu.Lock()
				defer mu.Unlock()
				return len(closed) == rounds
			})
			time.Sleep(50 * time.Millisecond) // a second run would show up now
			mu.Lock()
			defer mu.Unlock()
			if !ok {
				t.Fatalf("close callbacks ran for %d of %d connections", len(closed), rounds)
			}
			for c, order := range closed {
				if fmt.Sprint(order) != "[2 1 0]" {
					t.Fatalf("close callbacks of %v ran %v, want [2 1 0] once", c.RemoteAddr(), order)
				}
				if disc[c] > 1 {
					t.Fatalf("OnDisconnect ran %d times", disc[c])
				}
			}
		})
	}
}

// docs/contract.md C7.2, C8.1, C8.5: Close from inside each callback, and
// while a read or a Flush is blocked: a connection closed in OnPrepare gets
// no handler; one closed in OnConnect or OnRequest runs its callbacks after
// the handler returned; a blocked read or Flush wakes with ErrConnClosed.
func TestConnCloseDuringCallbacksAndBlockedCalls(t *testing.T) {
	for _, network := range testNetworks {
		t.Run(network+"/OnPrepare", func(t *testing.T) {
			checkLeaks(t)
			rec := newCallLog()
			srv := startServer(t, network, func(ctx context.Context, c Connection) error {
				rec.add("request")
				return nil
			},
				WithOnPrepare(func(c Connection) context.Context {
					_ = c.AddCloseCallback(func(Connection) error { rec.add("closed"); return nil })
					rec.add("prepare")
					c.Close()
					if c.IsActive() {
						rec.add("active after close")
					}
					return nil
				}),
				WithOnConnect(func(ctx context.Context, c Connection) context.Context { rec.add("connect"); return ctx }),
				WithOnDisconnect(func(ctx context.Context, c Connection) { rec.add("disconnect") }))
			peer := srv.dialStd(t)
			defer peer.Close()
			_, _ = peer.Write([]byte("ignored"))
			expectCleanEOF(t, peer)
			rec.waitCount(t, "closed", 1)
			time.Sleep(50 * time.Millisecond) // a late callback would show up now
			if got := strings.Join(rec.get(), ","); got != "prepare,closed" {
				t.Fatalf("events %s, want prepare,closed: a connection closed in OnPrepare gets no callbacks", got)
			}
		})
		t.Run(network+"/OnConnect", func(t *testing.T) {
			checkLeaks(t)
			rec := newCallLog()
			srv := startServer(t, network, func(ctx context.Context, c Connection) error {
				rec.add("request")
				return nil
			},
				WithOnPrepare(func(c Connection) context.Context {
					_ = c.AddCloseCallback(func(Connection) error { rec.add("closed"); return nil })
					return nil
				}),
				WithOnConnect(func(ctx context.Context, c Connection) context.Context {
					rec.add("connect")
					c.Close()
					time.Sleep(20 * time.Millisecond) // callbacks must wait for OnConnect
					rec.add("connect returns")
					return ctx
				}),
				WithOnDisconnect(func(ctx context.Context, c Connection) { rec.add("disconnect") }))
			peer := srv.dialStd(t)
			defer peer.Close()
			_, _ = peer.Write([]byte("never served"))
			rec.waitCount(t, "closed", 1)
			time.Sleep(50 * time.Millisecond) // a late callback would show up now
			if got := strings.Join(rec.get(), ","); got != "connect,connect returns,disconnect,closed" {
				t.Fatalf("events %s, want connect,connect returns,disconnect,closed", got)
			}
		})
		t.Run(network+"/OnRequest", func(t *testing.T) {
			checkLeaks(t)
			rec := newCallLog()
			srv := startServer(t, network, func(ctx context.Context, c Connection) error {
				rec.add("request")
				_ = c.Reader().Skip(c.Reader().Len())
				c.Close()
				c.Close()
				time.Sleep(20 * time.Millisecond)
				rec.add("request returns")
				return nil
			},
				WithOnPrepare(func(c Connection) context.Context {
					_ = c.AddCloseCallback(func(Connection) error { rec.add("closed"); return nil })
					return nil
				}))
			peer := srv.dialStd(t)
			defer peer.Close()
			_, _ = peer.Write([]byte("close me"))
			expectCleanEOF(t, peer)
			rec.waitCount(t, "closed", 1)
			if got := strings.Join(rec.get(), ","); got != "request,request returns,closed" {
				t.Fatalf("events %s, want request,request returns,closed", got)
			}
		})
		t.Run(network+"/BlockedNext", func(t *testing.T) {
			checkLeaks(t)
			srvConn := make(chan Connection, 1)
			readErr := make(chan error, 1)
			rec := newCallLog()
			srv := startServer(t, network, func(ctx context.Context, c Connection) error {
				trySend(srvConn, c)
				_, err := c.Reader().Next(1 << 20)
				trySend(readErr, err)
				return nil
			}, WithOnPrepare(func(c Connection) context.Context {
				_ = c.AddCloseCallback(func(Connection) error { rec.add("closed"); return nil })
				return nil
			}))
			// The server's handler is blocked in Next; close it from outside.
			peer := srv.dialStd(t)
			defer peer.Close()
			_, _ = peer.Write([]byte{1})
			sc := recv(t, srvConn, "the request")
			blockedInRead(t, sc)
			sc.Close()
			if err := recv(t, readErr, "the blocked Next"); !errors.Is(err, ErrConnClosed) || errors.Is(err, ErrEOF) {
				t.Fatalf("server Next after Close: %v, want ErrConnClosed", err)
			}
			rec.waitCount(t, "closed", 1)

			// A dialed client blocked in Next, closed from another goroutine.
			c := srv.dial(t)
			go func() {
				_, err := c.Reader().Next(10)
				readErr <- err
			}()
			blockedInRead(t, c)
			c.Close()
			if err := recv(t, readErr, "the blocked Next"); !errors.Is(err, ErrConnClosed) || errors.Is(err, ErrEOF) {
				t.Fatalf("client Next after Close: %v, want ErrConnClosed", err)
			}
		})
		t.Run(network+"/BlockedFlush", func(t *testing.T) {
			checkLeaks(t)
			c, _ := peerPair(t, network) // the peer never reads
			flushErr := make(chan error, 1)
			go func() {
				_, _ = c.Writer().WriteBinary(randBlock)
				_, _ = c.Writer().WriteBinary(randBlock)
				_, _ = c.Writer().WriteBinary(randBlock)
				flushErr <- c.Writer().Flush()
			}()
			blockedInFlush(t, c) // the socket filled
			c.Close()
			if err := recv(t, flushErr, "the blocked Flush"); !errors.Is(err, ErrConnClosed) {
				t.Fatalf("Flush after Close: %v, want ErrConnClosed", err)
			}
			if in, out := retained(connOf(c)); in+out != 0 {
				t.Fatalf("buffers still hold %d+%d bytes after Close", in, out)
			}
		})
	}
}

// docs/contract.md C7.3, C7.4, C7.5, C8.1, C9.3: the close callbacks run
// exactly once on every way a connection can end.
func TestConnCloseCallbacksRunOnEveryEnd(t *testing.T) {
	checkLeaks(t)
	type env struct {
		srvConn chan Connection
		srv     *testServer
	}
	newServer := func(t *testing.T, rec *callLog, onReq OnRequest, ops ...Option) *env {
		e := &env{srvConn: make(chan Connection, 1)}
		ops = append(ops, WithOnPrepare(func(c Connection) context.Context {
			_ = c.AddCloseCallback(func(Connection) error { rec.add("closed"); return nil })
			select {
			case e.srvConn <- c:
			default:
			}
			return nil
		}))
		e.srv = startServer(t, "tcp", onReq, ops...)
		return e
	}
	cases := []struct {
		name string
		run  func(t *testing.T, rec *callLog)
	}{
		{"dialed, local Close", func(t *testing.T, rec *callLog) {
			ln := stdEcho(t, "tcp")
			c := dialEcho(t, ln)
			_ = c.AddCloseCallback(func(Connection) error { rec.add("closed"); return nil })
			c.Close()
		}},
		{"dialed, peer close then Close", func(t *testing.T, rec *callLog) {
			c, peer := peerPair(t, "tcp")
			_ = c.AddCloseCallback(func(Connection) error { rec.add("closed"); return nil })
			peer.Close()
			eventually(t, func() bool { return !c.IsActive() }, "!c.IsActive()")
			c.Close()
		}},
		{"dialed with OnRequest, peer close", func(t *testing.T, rec *callLog) {
			c, peer := peerPair(t, "tcp")
			_ = c.SetOnRequest(func(ctx context.Context, c Connection) error { return c.Reader().Skip(c.Reader().Len()) })
			_ = c.AddCloseCallback(func(Connection) error { rec.add("closed"); return nil })
			peer.Close()
		}},
		{"dialed, Detach", func(t *testing.T, rec *callLog) {
			c := dialEcho(t, stdEcho(t, "tcp"))
			_ = c.AddCloseCallback(func(Connection) error { rec.add("closed"); return nil })
			d := c.(interface {
				Detach() error
				Fd() int
			})
			_ = d.Detach()
			unix.Close(d.Fd())
		}},
		{"fd connection, Close", func(t *testing.T, rec *callLog) {
			r, w := GetSysFdPairs()
			defer unix.Close(w)
			c, err := NewFDConnection(r)
			if err != nil {
				t.Fatal(err)
			}
			_ = c.AddCloseCallback(func(Connection) error { rec.add("closed"); return nil })
			c.Close()
		}},
		{"server, peer close", func(t *testing.T, rec *callLog) {
			e := newServer(t, rec, func(ctx context.Context, c Connection) error { return nil })
			e.srv.dialStd(t).Close()
		}},
		{"server, peer reset with unread input", func(t *testing.T, rec *callLog) {
			e := newServer(t, rec, func(ctx context.Context, c Connection) error { return nil })
			p := e.srv.dialStd(t)
			_, _ = p.Write(make([]byte, 10000))
			abort(p)
		}},
		{"server, Close in OnRequest", func(t *testing.T, rec *callLog) {
			e := newServer(t, rec, func(ctx context.Context, c Connection) error { return c.Close() })
			p := e.srv.dialStd(t)
			defer p.Close()
			_, _ = p.Write([]byte{1})
		}},
		{"server, Close from outside", func(t *testing.T, rec *callLog) {
			e := newServer(t, rec, nil)
			p := e.srv.dialStd(t)
			defer p.Close()
			recv(t, e.srvConn, "the accepted connection").Close()
		}},
		{"server, Close in a close callback", func(t *testing.T, rec *callLog) {
			e := newServer(t, rec, nil)
			p := e.srv.dialStd(t)
			defer p.Close()
			c := recv(t, e.srvConn, "the accepted connection")
			_ = c.AddCloseCallback(func(c Connection) error { return c.Close() })
			c.Close()
		}},
		{"server, Shutdown", func(t *testing.T, rec *callLog) {
			e := newServer(t, rec, nil)
			p := e.srv.dialStd(t)
			defer p.Close()
			recv(t, e.srvConn, "the accepted connection")
			if err := e.srv.stop(); err != nil {
				t.Fatal(err)
			}
		}},
		{"server, Close in OnPrepare", func(t *testing.T, rec *callLog) {
			srv := startServer(t, "tcp", nil, WithOnPrepare(func(c Connection) context.Context {
				_ = c.AddCloseCallback(func(Connection) error { rec.add("closed"); return nil })
				c.Close()
				return nil
			}))
			srv.dialStd(t).Close()
		}},
		{"server, Close in OnConnect", func(t *testing.T, rec *callLog) {
			e := newServer(t, rec, nil, WithOnConnect(func(ctx context.Context, c Connection) context.Context {
				c.Close()
				return ctx
			}))
			p := e.srv.dialStd(t)
			defer p.Close()
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			checkLeaks(t)
			rec := newCallLog()
			tc.run(t, rec)
			rec.waitCount(t, "closed", 1)
		})
	}
}

// docs/contract.md C5.1, C7.2: send, then Close at once, while the peer
// reads slowly: nothing sent is lost, whoever closes, and the peer then sees
// EOF. A dialed client sends with Write (which flushes) or with WriteBinary
// and Flush; a server sends from OnRequest and closes there.
func TestConnSendThenCloseLosesNothing(t *testing.T) {
	sizes := []int{1, 4096, 100 << 10, 3 << 20, 8 << 20}
	checkLeaks(t)
	forEachNetwork(t, func(t *testing.T, network string) {
		t.Run("client", func(t *testing.T) {
			for i, size := range sizes {
				c, peer := peerPair(t, network)
				want := bigBytes(size, uint64(i))
				got := async(func() result { b, err := readToEOF(peer); return result{b: b, err: err} })
				if size < 8<<20 {
					_, err := c.Write(want)
					require.NoError(t, err)
				} else {
					_, err := c.WriteBinary(want)
					require.NoError(t, err)
					require.NoError(t, c.Flush())
				}
				require.NoError(t, c.Close())
				r := recv(t, got, "the peer's EOF")
				require.NoError(t, r.err, "size %d: peer read after %d bytes", size, len(r.b))
				require.True(t, bytes.Equal(r.b, want), "size %d: peer got %d bytes, want %d identical", size, len(r.b), size)
			}
		})
		t.Run("server", func(t *testing.T) {
			srv := startServer(t, network, func(ctx context.Context, c Connection) error {
				b, err := c.Reader().ReadByte()
				if err != nil {
					return err
				}
				_, _ = c.Writer().WriteBinary(bigBytes(sizes[b], uint64(b)))
				err = c.Writer().Flush()
				c.Close()
				return err
			})
			for i, size := range sizes {
				peer := srv.dialStd(t)
				_, _ = peer.Write([]byte{byte(i)})
				got, err := readToEOF(peer)
				require.NoError(t, err, "size %d: peer read after %d bytes", size, len(got))
				require.True(t, bytes.Equal(got, bigBytes(size, uint64(i))), "size %d: peer got %d bytes, want %d identical", size, len(got), size)
			}
		})
	})
}
