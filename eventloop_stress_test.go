//go:build darwin || freebsd || linux

package netpoll

import (
	"bytes"
	"context"
	"fmt"
	"math/rand"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// docs/contract.md C8.3, C5.1, C2.2: 1000 connections open at once, dialed with
// DialConnection, each echoing random payloads through an EventLoop
// (round trips of up to 16 KB, so many are split across reads); every byte
// is checked. Every accepted connection is closed after its client closes.
func TestEventLoopConcurrentEcho(t *testing.T) {
	if testing.Short() {
		t.Skip("long stress test")
	}
	checkLeaks(t)
	forEachNetwork(t, func(t *testing.T, network string) {
		const conns, rounds, maxSize = 1000, 3, 16 << 10
		// On an idle 2-core machine this takes a few seconds with -race.
		// With 2000 busy goroutines and other processes competing for the
		// CPU, single round trips have been seen to take over 10 s (the
		// poller goroutine waits behind the runnable clients), so the bound
		// of every wait here is far above longWait.
		const bound = 12 * longWait
		var accepted, closed atomic.Int64
		// At most dialBacklog connections are dialed and not yet accepted:
		// a dial takes a token and the server's accept returns one. The
		// listen backlog is 128 on macOS and FreeBSD (kern.ipc.somaxconn;
		// 4096 on Linux), and a unix connect to a full backlog fails at
		// once (ECONNREFUSED there, EAGAIN on Linux).
		const dialBacklog = 64
		inflight := make(chan struct{}, dialBacklog)
		s := startServer(t, network, func(ctx context.Context, c Connection) error {
			return echoAll(c)
		}, WithOnPrepare(func(c Connection) context.Context {
			select {
			case <-inflight:
			default:
			}
			accepted.Add(1)
			_ = c.AddCloseCallback(func(Connection) error { closed.Add(1); return nil })
			return nil
		}))

		seed := time.Now().UnixNano()
		t.Logf("random seed %d", seed)
		start := time.Now()
		var connected, finished sync.WaitGroup
		connected.Add(conns)
		finished.Add(conns)
		begin := make(chan struct{})
		errs := make(chan error, conns)
		var verified atomic.Int64
		for i := 0; i < conns; i++ {
			go func(i int) {
				defer finished.Done()
				rng := rand.New(rand.NewSource(seed + int64(i)))
				inflight <- struct{}{}
				c, err := DialConnection(network, s.addr, bound)
				connected.Done()
				if err != nil {
					select { // not accepted, most likely: give its token back
					case <-inflight:
					default:
					}
					errs <- fmt.Errorf("client %d: dial: %v", i, err)
					return
				}
				defer c.Close()
				np := c.(npConn)
				_ = np.SetReadTimeout(bound)
				_ = np.SetWriteTimeout(bound)
				<-begin
				for r := 0; r < rounds; r++ {
					payload := randomBytes(rng, 1+rng.Intn(maxSize))
					if _, err := np.WriteBinary(payload); err != nil {
						errs <- fmt.Errorf("client %d round %d: WriteBinary: %v", i, r, err)
						return
					}
					if err := np.Flush(); err != nil {
						errs <- fmt.Errorf("client %d round %d: Flush: %v", i, r, err)
						return
					}
					got, err := np.Next(len(payload))
					if err != nil {
						errs <- fmt.Errorf("client %d round %d: Next(%d): %v", i, r, len(payload), err)
						return
					}
					if !bytes.Equal(payload, got) {
						errs <- fmt.Errorf("client %d round %d: echo differs from the %d bytes sent", i, r, len(payload))
						return
					}
					verified.Add(int64(len(payload)))
					if err := np.Release(); err != nil {
						errs <- fmt.Errorf("client %d round %d: Release: %v", i, r, err)
						return
					}
				}
			}(i)
		}
		select {
		case <-async(func() bool { connected.Wait(); return true }):
		case <-time.After(bound):
			t.Fatalf("the dials did not finish within %v", bound)
		}
		t.Logf("dialed in %v", time.Since(start))
		close(begin)
		select {
		case <-async(func() bool { finished.Wait(); return true }):
		case <-time.After(bound):
			t.Fatalf("the clients did not finish within %v", bound)
		}
		close(errs)
		n := 0
		for err := range errs {
			if n++; n <= 10 {
				t.Error(err)
			}
		}
		require.Zero(t, n, "%d clients failed", n)
		require.Equal(t, int64(conns), accepted.Load())
		eventually(t, func() bool { return closed.Load() == conns }, "every accepted connection closed (%d of %d)", closed.Load(), conns)
		t.Logf("%s: %d connections, %d bytes echoed and verified in %v", network, conns, verified.Load(), time.Since(start))
	})
}
