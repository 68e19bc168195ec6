//go:build darwin || freebsd || linux

package netpoll

import (
	"context"
	"errors"
	"io"
	"net"
	"runtime"
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/stretchr/testify/require"
)

// idleSlack is what a test allows beyond the 1.25·d bound of an idle close:
// the timer may fire late on a loaded machine (never early).
const idleSlack = time.Second

// docs/contract.md C17.1, C17.2, C17.3: among busy and idle connections,
// exactly the idle ones are closed, each between d and 1.25·d (plus slack)
// after its last byte, with OnDisconnect and the close callbacks, and
// IdleClosed counts them.
func TestIdleCloseClosesOnlyTheIdle(t *testing.T) {
	forEachNetwork(t, func(t *testing.T, network string) {
		checkLeaks(t)
		const d = 400 * time.Millisecond
		rec := newCallLog()
		srv := startServer(t, network, func(ctx context.Context, c Connection) error {
			return echoNext(c, c.Reader().Len(), nil)
		}, WithIdleCloseTimeout(d),
			WithOnConnect(func(ctx context.Context, c Connection) context.Context {
				_ = c.AddCloseCallback(func(Connection) error { rec.add("close"); return nil })
				return ctx
			}),
			WithOnDisconnect(func(ctx context.Context, c Connection) { rec.add("disconnect") }))
		before := quietStats(t)

		const busy, idle = 3, 3
		stop := make(chan struct{})
		var wg sync.WaitGroup
		busyErrs := make(chan error, busy)
		for i := 0; i < busy; i++ {
			c := srv.dialStd(t)
			wg.Add(1)
			go func() {
				defer wg.Done()
				buf := make([]byte, 1)
				for {
					select {
					case <-stop:
						return
					case <-time.After(d / 8):
					}
					if _, err := c.Write([]byte{'b'}); err != nil {
						busyErrs <- err
						return
					}
					if _, err := io.ReadFull(c, buf); err != nil {
						busyErrs <- err
						return
					}
				}
			}()
		}
		type closed struct {
			after time.Duration
			err   error
		}
		idleDone := make(chan closed, idle)
		for i := 0; i < idle; i++ {
			c := srv.dialStd(t)
			start := time.Now() // before the last byte either way
			_, err := c.Write([]byte{'i'})
			require.NoError(t, err)
			readFull(t, c, 1)
			go func(c net.Conn) {
				_ = c.SetReadDeadline(time.Now().Add(longWait))
				_, err := c.Read(make([]byte, 1))
				idleDone <- closed{time.Since(start), err}
			}(c)
		}
		for i := 0; i < idle; i++ {
			r := recv(t, idleDone, "an idle connection's close")
			require.True(t, errors.Is(r.err, io.EOF), "the idle connection ends with EOF, got %v", r.err)
			require.GreaterOrEqual(t, r.after, d, "closed before the timeout")
			require.LessOrEqual(t, r.after, d+d/4+idleSlack, "closed long after 1.25 times the timeout")
		}
		rec.waitCount(t, "disconnect", idle)
		rec.waitCount(t, "close", idle)

		time.Sleep(2 * d) // the busy ones stay open through more sweeps
		close(stop)
		wg.Wait()
		select {
		case err := <-busyErrs:
			t.Fatalf("a busy connection failed: %v", err)
		default:
		}
		require.Equal(t, busy, srv.conns(), "the busy connections are open")
		var s Stats
		ReadStats(&s)
		require.Equal(t, uint64(idle), s.IdleClosed-before.IdleClosed)
		require.Equal(t, uint64(idle), s.ConnsClosed-before.ConnsClosed)
	})
}

// docs/contract.md C17.2: silence is the whole test: a handler blocked
// reading from a peer that sent half a message is woken with ErrEOF.
func TestIdleCloseWakesABlockedHandler(t *testing.T) {
	forEachNetwork(t, func(t *testing.T, network string) {
		checkLeaks(t)
		readErr := make(chan error, 1)
		srv := startServer(t, network, func(ctx context.Context, c Connection) error {
			_, err := c.Reader().Next(100)
			readErr <- err
			return nil
		}, WithIdleCloseTimeout(100*time.Millisecond))
		peer := srv.dialStd(t)
		_, err := peer.Write(make([]byte, 10))
		require.NoError(t, err)
		err = recv(t, readErr, "the handler's read")
		require.True(t, errors.Is(err, ErrEOF), "got %v", err)
		expectEOF(t, peer)
	})
}

// docs/contract.md C17.1: without the option, or with a timeout <= 0, no
// clock runs and silent connections stay open.
func TestIdleCloseOff(t *testing.T) {
	checkLeaks(t)
	require.Nil(t, newIdleSweep(0))
	require.Nil(t, newIdleSweep(-time.Second))
	for _, ops := range [][]Option{nil, {WithIdleCloseTimeout(0)}, {WithIdleCloseTimeout(-1)}} {
		srv := startServer(t, "tcp", nil, ops...)
		require.Nil(t, srv.sv.idle)
		srv.dialStd(t)
		eventually(t, func() bool { return srv.conns() == 1 }, "the accept")
		time.Sleep(50 * time.Millisecond)
		require.Equal(t, 1, srv.conns())
		require.NoError(t, srv.stop())
	}
}

// docs/contract.md C17.3: the epoch arithmetic: idle from idleEpochs
// behind, across the wrap of the counter too.
func TestIdleEpochs(t *testing.T) {
	c := &connection{}
	for _, tc := range []struct {
		last, now uint32
		idle      bool
	}{
		{0, 4, false}, {0, 5, true}, {7, 11, false}, {7, 12, true},
		{^uint32(0) - 1, 2, false}, {^uint32(0) - 1, 3, true},
	} {
		c.idleEpoch.Store(tc.last)
		require.Equal(t, tc.idle, c.idleFor(tc.now), "last %d, now %d", tc.last, tc.now)
	}
	require.Equal(t, time.Second/4, newIdleSweep(time.Second).tick)
	require.Equal(t, minIdleTick, newIdleSweep(time.Nanosecond).tick)
}

// docs/contract.md C17.3: the idle close costs an idle connection nothing:
// the connection's one allocation stays in its 512-byte size class, and
// 1000 idle connections with WithIdleCloseTimeout(time.Hour) take no more
// heap (within 64 bytes each) and no more goroutines than without it.
func TestIdleCloseCostsNothingPerConnection(t *testing.T) {
	require.LessOrEqual(t, unsafe.Sizeof(struct {
		c connection
		p connParts
	}{}), uintptr(512), "the connection outgrew its size class")
	if raceEnabled {
		t.Skip("heap sizes are measured without -race")
	}
	const n = 1000
	measure := func(ops ...Option) (heapPerConn float64, goroutines int) {
		t.Helper()
		srv := startServer(t, "tcp", nil, ops...)
		g0, h0 := runtime.NumGoroutine(), liveHeap()
		clients := make([]net.Conn, n)
		for i := range clients {
			c, err := net.DialTimeout("tcp", srv.addr, longWait)
			require.NoError(t, err)
			clients[i] = c
		}
		eventually(t, func() bool { return srv.conns() == n }, "%d connections", n)
		h1 := liveHeap()
		goroutines = runtime.NumGoroutine() - g0
		for _, c := range clients {
			_ = c.Close()
		}
		require.NoError(t, srv.stop())
		return (float64(h1) - float64(h0)) / n, goroutines
	}
	measure() // warm up: pools, the operator table's chunks, the runtime
	plainHeap, plainG := measure()
	idleHeap, idleG := measure(WithIdleCloseTimeout(time.Hour))
	t.Logf("per idle connection (both ends in this process): %.0f B plain, %.0f B with the idle close; goroutines %+d, %+d",
		plainHeap, idleHeap, plainG, idleG)
	require.LessOrEqual(t, idleHeap-plainHeap, 64.0, "bytes per connection the idle close adds")
	require.LessOrEqual(t, idleG, plainG+2, "goroutines the idle close adds")
}
