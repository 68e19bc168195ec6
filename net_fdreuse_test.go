//go:build darwin || freebsd || linux

package netpoll

import (
	"context"
	"errors"
	"fmt"
	"math/rand"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/stretchr/testify/require"
)

// resetServer serves tcp connections: a message starting with 'R' makes the
// server reset the connection (SO_LINGER 0, then Close), 'B' makes it send a
// large reply, anything else is echoed.
func resetServer(t *testing.T) *testServer {
	t.Helper()
	return startServer(t, "tcp", func(ctx context.Context, c Connection) error {
		p, err := c.Reader().Peek(1)
		if err != nil {
			return err
		}
		switch p[0] {
		case 'R':
			if fc, ok := c.(Conn); ok {
				_ = unix.SetsockoptLinger(fc.Fd(), unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 0})
			}
			return c.Close()
		case 'B':
			_ = c.Reader().Skip(c.Reader().Len())
			_ = c.Reader().Release()
			_, err = c.Write(make([]byte, 256<<10))
			return err
		}
		return echoAll(c)
	})
}

// freshRoundTrips checks a new dialed connection: several echo round trips
// succeed and nothing closes it before the caller does.
func freshRoundTrips(c npConn, spurious *atomic.Bool, rng *rand.Rand) error {
	for k := 0; k < 3; k++ {
		msg := randomBytes(rng, 1+rng.Intn(2000))
		msg[0] = 'E'
		if _, err := c.WriteBinary(msg); err != nil {
			return fmt.Errorf("write on the new connection: %w", err)
		}
		if err := c.Flush(); err != nil {
			return fmt.Errorf("flush on the new connection: %w", err)
		}
		got, err := c.Next(len(msg))
		if err != nil {
			return fmt.Errorf("read on the new connection: %w", err)
		}
		if string(got) != string(msg) {
			return errors.New("the new connection received other bytes")
		}
		_ = c.Release()
	}
	if !c.IsActive() {
		return errors.New("the new connection became inactive")
	}
	if spurious.Load() {
		return errors.New("the new connection's close callbacks ran before it was closed")
	}
	return nil
}

// docs/contract.md C16.12, C7.1: connections that close while the peer resets them (with
// unread data either way) release their fd numbers, and new dials that reuse
// those numbers are never touched by an event, or a late Close, meant for
// the old connection: no spurious close, no lost or stolen byte.
func TestFdReuseAfterPeerReset(t *testing.T) {
	checkFDs(t)
	s := resetServer(t)
	var reused atomic.Int64
	seed := time.Now().UnixNano()
	t.Logf("random seed %d", seed)
	const workers, iterations = 8, 150
	parallel(t, workers, workers*iterations, func(i int) error {
		rng := rand.New(rand.NewSource(seed + int64(i)))
		old, err := DialConnection("tcp", s.addr, longWait)
		if err != nil {
			return fmt.Errorf("dial: %w", err)
		}
		oc := old.(npConn)
		_ = oc.SetReadTimeout(longWait)
		oldFd := old.(Conn).Fd()
		mode := i % 4
		switch mode {
		case 0, 1: // the server resets; we close at a random moment
			_, _ = oc.WriteString("R and some bytes the server never reads")
			_ = oc.Flush()
			if mode == 1 {
				time.Sleep(time.Duration(rng.Intn(200)) * time.Microsecond)
			}
			_ = old.Close()
		case 2: // we close with the server's large reply unread: we reset it
			_, _ = oc.WriteString("B")
			_ = oc.Flush()
			_, _ = oc.Next(1)
			_ = old.Close()
		case 3: // the reset closes the fd; the late Close comes after a new dial
			_, _ = oc.WriteString("R")
			_ = oc.Flush()
			if _, err := oc.Next(1); err == nil {
				return errors.New("read data from a connection the server reset")
			}
			if !waitUntil(longWait, func() bool { return !old.IsActive() }) {
				_ = old.Close()
				return errors.New("the reset connection stayed active")
			}
		}

		fresh, err := DialConnection("tcp", s.addr, longWait)
		if err != nil {
			_ = old.Close()
			return fmt.Errorf("dial after the reset: %w", err)
		}
		fc := fresh.(npConn)
		_ = fc.SetReadTimeout(longWait)
		if fresh.(Conn).Fd() == oldFd {
			reused.Add(1)
		}
		var closedEarly, closing atomic.Bool
		_ = fresh.AddCloseCallback(func(Connection) error {
			if !closing.Load() {
				closedEarly.Store(true)
			}
			return nil
		})
		if mode == 3 {
			_ = old.Close() // must not touch the fd's new owner
		}
		err = freshRoundTrips(fc, &closedEarly, rng)
		closing.Store(true)
		_ = fresh.Close()
		if err != nil {
			return fmt.Errorf("mode %d (fd %d, new fd %d): %w", mode, oldFd, fresh.(Conn).Fd(), err)
		}
		return nil
	})
	t.Logf("%d of %d new dials reused the fd number of the connection just closed", reused.Load(), workers*iterations)
	require.Positive(t, reused.Load(), "the test never reused an fd number")
}

// docs/contract.md C16.12, C8.5: on the server, connections reset by their clients free fd
// numbers that new accepted connections reuse; those are served normally
// and never see a close meant for the old ones.
func TestFdReuseServerSide(t *testing.T) {
	checkFDs(t)
	forEachNetwork(t, func(t *testing.T, network string) {
		var mu sync.Mutex
		seen := map[int]int{} // accepted fd number -> connections that had it
		s := startServer(t, network, func(ctx context.Context, c Connection) error {
			return echoAll(c)
		}, WithOnPrepare(func(c Connection) context.Context {
			mu.Lock()
			seen[c.(Conn).Fd()]++
			mu.Unlock()
			return context.Background()
		}))
		defer func() {
			mu.Lock()
			defer mu.Unlock()
			reused := 0
			for _, n := range seen {
				if n > 1 {
					reused++
				}
			}
			if reused == 0 {
				t.Errorf("no fd number was accepted twice among %d: the test did not exercise reuse", len(seen))
			}
		}()
		seed := time.Now().UnixNano()
		t.Logf("random seed %d", seed)
		parallel(t, 8, 800, func(i int) error {
			rng := rand.New(rand.NewSource(seed + int64(i)))
			// A client that sends, then resets with the echo unread.
			bad, err := net.DialTimeout(network, s.addr, longWait)
			if err != nil {
				return err
			}
			_, _ = bad.Write(randomBytes(rng, 1+rng.Intn(30000)))
			if tc, ok := bad.(*net.TCPConn); ok {
				_ = tc.SetLinger(0)
			}
			time.Sleep(time.Duration(rng.Intn(100)) * time.Microsecond)
			_ = bad.Close()

			// A new client right after: served normally.
			good, err := net.DialTimeout(network, s.addr, longWait)
			if err != nil {
				return err
			}
			defer good.Close()
			_ = good.SetDeadline(time.Now().Add(longWait))
			for k := 0; k < 3; k++ {
				msg := randomBytes(rng, 1+rng.Intn(2000))
				if _, err := good.Write(msg); err != nil {
					return fmt.Errorf("write: %w", err)
				}
				got := make([]byte, len(msg))
				for n := 0; n < len(got); {
					m, err := good.Read(got[n:])
					if err != nil {
						return fmt.Errorf("read the echo: %w (a spurious close?)", err)
					}
					n += m
				}
				if string(got) != string(msg) {
					return errors.New("the echo differs")
				}
			}
			return nil
		})
	})
}
