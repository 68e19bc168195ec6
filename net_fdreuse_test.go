//go:build darwin || freebsd || linux

package netpoll

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
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
	checkLeaks(t)
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
	checkLeaks(t)
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

// docs/contract.md C11.5, C16.12: one connection at a time, sequentially:
// a dialed connection reset by its peer with unread input is closed, and
// the next dial, which reuses its fd number, gets none of its events and
// works normally. It goes on past 200 rounds (up to 1000) until some dial
// did reuse the number.
func TestFdReuseDialedAfterReset(t *testing.T) {
	checkLeaks(t)
	echo := stdEcho(t, "tcp")
	reset := listenStd(t, "tcp")
	defer reset.Close()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // every connection gets data it never reads, then an RST
		defer wg.Done()
		for {
			c, err := reset.Accept()
			if err != nil {
				return
			}
			_, _ = c.Write(make([]byte, 32<<10))
			_, _ = c.Read(make([]byte, 1))
			abort(c)
		}
	}()
	defer wg.Wait()
	defer reset.Close()
	rng := rand.New(rand.NewSource(2))
	reused := 0
	rounds := 0
	for i := 0; i < 200 || (reused == 0 && i < 1000); i++ {
		rounds++
		a, err := DialConnection("tcp", reset.Addr().String(), longWait)
		if err != nil {
			t.Fatal(err)
		}
		fd := a.(Conn).Fd()
		_, _ = a.Write([]byte{1}) // the server resets now
		if d := rng.Intn(3); d > 0 {
			time.Sleep(time.Duration(d*100) * time.Microsecond)
		}
		a.Close()
		b, err := DialConnection("tcp", echo.Addr().String(), longWait)
		if err != nil {
			t.Fatalf("round %d: dial after a reset: %v", i, err)
		}
		if b.(Conn).Fd() == fd {
			reused++
		}
		_ = b.SetReadTimeout(longWait)
		msg := []byte(fmt.Sprintf("round %d", i))
		if _, err = b.Write(msg); err != nil {
			t.Fatalf("round %d: write on the fd's next owner: %v", i, err)
		}
		got, err := b.Reader().Next(len(msg))
		if err != nil || !bytes.Equal(got, msg) {
			t.Fatalf("round %d: echo on the fd's next owner: %q, %v", i, got, err)
		}
		if !b.IsActive() {
			t.Fatalf("round %d: the fd's next owner was closed by an old event", i)
		}
		b.Close()
	}
	t.Logf("fd reused in %d of %d rounds", reused, rounds)
	require.Positive(t, reused, "no dial reused the fd number of the connection just reset")
}

// docs/contract.md C11.5, C16.12: the server side of the same, one
// connection at a time: an accepted connection closed (with its input
// unread) while its peer resets, then a new one, which must work normally.
// It goes on past 200 rounds (up to 1000) until a new connection was
// accepted with the fd number of a closed one.
func TestFdReuseAcceptedAfterReset(t *testing.T) {
	checkLeaks(t)
	var mu sync.Mutex
	victims := map[int]bool{} // fd numbers of the connections closed with input unread
	reused := 0
	srv := startServer(t, "tcp", func(ctx context.Context, c Connection) error {
		p, err := c.Reader().Peek(1)
		if err != nil {
			return err
		}
		if p[0] == 'R' { // a victim: close with its input unread
			mu.Lock()
			victims[c.(Conn).Fd()] = true
			mu.Unlock()
			return c.Close()
		}
		buf, _ := c.Reader().Next(c.Reader().Len())
		_, err = c.Write(buf)
		return err
	}, WithOnPrepare(func(c Connection) context.Context {
		mu.Lock()
		if victims[c.(Conn).Fd()] {
			reused++
		}
		mu.Unlock()
		return nil
	}))
	reusedSoFar := func() int { mu.Lock(); defer mu.Unlock(); return reused }
	rounds := 0
	for i := 0; i < 200 || (reusedSoFar() == 0 && i < 1000); i++ {
		rounds++
		a := srv.dialStd(t)
		_, _ = a.Write(bytes.Repeat([]byte{'R'}, 16<<10))
		if i%2 == 0 {
			abort(a)
		} else {
			go abort(a)
		}
		b := srv.dialStd(t)
		_ = b.SetDeadline(time.Now().Add(longWait))
		msg := []byte(fmt.Sprintf("echo %d", i))
		if _, err := b.Write(msg); err != nil {
			t.Fatalf("round %d: %v", i, err)
		}
		got := make([]byte, len(msg))
		if _, err := io.ReadFull(b, got); err != nil || !bytes.Equal(got, msg) {
			t.Fatalf("round %d: echo from the fd's next owner: %q, %v", i, got, err)
		}
		b.Close()
	}
	t.Logf("%d accepted connections reused the fd number of a closed one in %d rounds", reusedSoFar(), rounds)
	require.Positive(t, reusedSoFar(), "no accepted connection reused the fd number of a closed one")
}
