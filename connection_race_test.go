//go:build darwin || freebsd || linux

package netpoll

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// docs/contract.md C8.4, C7.4, C8.6: a peer that sends and closes at once loses no
// byte: OnRequest sees everything it sent, before the close callbacks run.
func TestEventLoopPeerSendsThenCloses(t *testing.T) {
	checkLeaks(t)
	forEachNetwork(t, func(t *testing.T, network string) {
		rng := newRand(t)
		s, records := recordingServer(t, network, false)
		sizes := []int{1, 7, 100, 4096, 4097, 65536, 200000, 1 << 20}
		for i := 0; i < 40; i++ {
			size := sizes[i%len(sizes)]
			if i >= len(sizes) {
				size = 1 + rng.Intn(300000)
			}
			payload := randomBytes(rng, size)
			c, err := net.DialTimeout(network, s.addr, longWait)
			require.NoError(t, err)
			_ = c.SetWriteDeadline(time.Now().Add(longWait))
			_, err = c.Write(payload)
			require.NoError(t, err)
			require.NoError(t, c.Close())

			rec := recv(t, records, "the accepted connection")
			waitClosedOnce(t, rec)
			rec.mu.Lock()
			got := rec.got.Bytes()
			equal := bytes.Equal(payload, got)
			rec.mu.Unlock()
			require.True(t, equal, "iteration %d: sent %d bytes, OnRequest saw %d", i, len(payload), len(got))
			require.Equal(t, int64(1), rec.discRuns.Load(), "OnDisconnect after a peer close")
		}
	})
}

// docs/contract.md C7.2, C7.3, C8.3: a server-side Close racing a running OnRequest
// (and data still arriving) runs the close callbacks exactly once, never
// before or during an OnRequest, and the client sees the close.
func TestEventLoopCloseRacesOnRequest(t *testing.T) {
	checkLeaks(t)
	forEachNetwork(t, func(t *testing.T, network string) {
		s, recs := recordingServer(t, network, true)
		var mu sync.Mutex // pairs each dial with its accepted record
		parallel(t, 4, 200, func(i int) error {
			mu.Lock()
			c, err := net.DialTimeout(network, s.addr, longWait)
			if err != nil {
				mu.Unlock()
				return err
			}
			rec, err := waitRecord(recs)
			mu.Unlock()
			if err != nil {
				c.Close()
				return err
			}
			defer c.Close()
			// The client keeps sending while the server closes.
			writer := async(func() error {
				msg := bytes.Repeat([]byte{byte(i)}, 1+i%3000)
				for k := 0; k < 50; k++ {
					if _, err := c.Write(msg); err != nil {
						return nil // the close reached us
					}
				}
				return nil
			})
			time.Sleep(time.Duration(rand.Intn(300)) * time.Microsecond)
			if err := rec.conn.Close(); err != nil {
				return fmt.Errorf("Close: %v", err)
			}
			if rec.conn.IsActive() {
				return errors.New("IsActive after Close")
			}
			if err := waitEOF(c); err != nil {
				return err
			}
			select {
			case <-writer:
			case <-time.After(longWait):
				return errors.New("the writer did not end")
			}
			return checkClosedOnce(rec)
		})
	})
}

// docs/contract.md C7.2, C7.3, C8.5: a server-side Close racing the peer's close runs
// the close callbacks exactly once and OnDisconnect at most once, before them.
func TestEventLoopCloseRacesPeerClose(t *testing.T) {
	checkLeaks(t)
	forEachNetwork(t, func(t *testing.T, network string) {
		s, recs := recordingServer(t, network, true)
		var mu sync.Mutex
		parallel(t, 4, 300, func(i int) error {
			mu.Lock()
			c, err := net.DialTimeout(network, s.addr, longWait)
			if err != nil {
				mu.Unlock()
				return err
			}
			rec, err := waitRecord(recs)
			mu.Unlock()
			if err != nil {
				c.Close()
				return err
			}
			if i%2 == 0 {
				_, _ = c.Write([]byte("data in flight"))
			}
			start := make(chan struct{})
			var wg sync.WaitGroup
			wg.Add(2)
			go func() { defer wg.Done(); <-start; _ = c.Close() }()
			go func() { defer wg.Done(); <-start; _ = rec.conn.Close() }()
			close(start)
			wg.Wait()
			return checkClosedOnce(rec)
		})
	})
}

// docs/contract.md C2.2, C7.2, C7.3: on a dialed connection, a local Close racing the
// peer's close while a reader waits: the reader wakes with ErrEOF or
// ErrConnClosed, the close callbacks run exactly once.
func TestConnCloseRacesPeerCloseDialed(t *testing.T) {
	checkLeaks(t)
	forEachNetwork(t, func(t *testing.T, network string) {
		ln := listenStd(t, network)
		var mu sync.Mutex
		parallel(t, 4, 300, func(i int) error {
			mu.Lock()
			c, err := DialConnection(network, ln.Addr().String(), longWait)
			if err != nil {
				mu.Unlock()
				return err
			}
			peer, err := ln.Accept()
			mu.Unlock()
			if err != nil {
				c.Close()
				return err
			}
			var runs atomic.Int64
			_ = c.AddCloseCallback(func(Connection) error { runs.Add(1); return nil })
			np := c.(npConn)
			reader := async(func() error { _, err := np.Next(1 << 20); return err })
			if cc := connOf(c); !waitUntil(longWait, func() bool { return cc.waitRead.Load() != 0 }) {
				return errors.New("the reader never blocked")
			}
			if i%2 == 0 {
				_, _ = peer.Write([]byte("some bytes"))
			}
			start := make(chan struct{})
			var wg sync.WaitGroup
			wg.Add(2)
			go func() { defer wg.Done(); <-start; _ = peer.Close() }()
			go func() { defer wg.Done(); <-start; _ = c.Close() }()
			close(start)
			wg.Wait()
			var rerr error
			select {
			case rerr = <-reader:
			case <-time.After(longWait):
				return errors.New("the blocked reader never woke")
			}
			if !errors.Is(rerr, ErrConnClosed) { // ErrEOF matches ErrConnClosed too
				return fmt.Errorf("reader error %v", rerr)
			}
			if n := runs.Load(); n != 1 {
				return fmt.Errorf("close callbacks ran %d times", n)
			}
			if c.IsActive() {
				return errors.New("IsActive after Close")
			}
			return nil
		})
	})
}

// docs/contract.md C8.3, C8.8: SetOnRequest on a dialed connection racing the arrival of
// the first bytes (the server greets at once) never loses the start: the
// handler always sees the greeting.
func TestConnSetOnRequestRacesArrival(t *testing.T) {
	checkLeaks(t)
	forEachNetwork(t, func(t *testing.T, network string) {
		s := startServer(t, network, nil, WithOnPrepare(func(c Connection) context.Context {
			_, _ = c.Write([]byte("welcome"))
			return nil
		}))
		parallel(t, 4, 400, func(i int) error {
			c, err := DialConnection(network, s.addr, longWait)
			if err != nil {
				return err
			}
			defer c.Close()
			if i%3 == 1 {
				time.Sleep(time.Duration(i%50) * time.Microsecond)
			}
			got := make(chan string, 1)
			_ = c.SetOnRequest(func(ctx context.Context, c Connection) error {
				r := c.Reader()
				if r.Len() < 7 {
					return nil // the rest arrives later and calls again
				}
				p, err := r.Next(7)
				if err == nil {
					got <- string(p)
				}
				return r.Release()
			})
			select {
			case g := <-got:
				if g != "welcome" {
					return fmt.Errorf("got %q", g)
				}
				return nil
			case <-time.After(longWait):
				return fmt.Errorf("OnRequest never saw the greeting (Len %d)", c.(npConn).Len())
			}
		})
	})
}

// docs/contract.md C7.5: Detach racing incoming data: once Detach returns the poller never
// reads the fd again, so what the caller reads from the fd is exactly the
// rest of the stream, without a hole. It goes on past 40 rounds (up to 200)
// until some Detach did land mid-stream, with bytes on both sides of it.
func TestConnDetachRacesArrival(t *testing.T) {
	checkLeaks(t)
	forEachNetwork(t, func(t *testing.T, network string) {
		rng := newRand(t)
		stream := randomBytes(rng, 256<<10)
		midStream, rounds := 0, 0
		for i := 0; i < 40 || (midStream == 0 && i < 200); i++ {
			rounds++
			c, peer := peerPair(t, network)
			fd := c.(Conn).Fd()
			// What the poller had read when Detach finished: the close
			// callbacks run before the input buffer is recycled.
			buffered := -1
			require.NoError(t, c.AddCloseCallback(func(Connection) error { buffered = c.Len(); return nil }))
			detached := make(chan struct{})
			sent := async(func() error {
				// Close (the end of the stream) only after Detach: Detach
				// after a peer close fails, as the fd is already gone.
				defer func() {
					<-detached
					peer.Close()
				}()
				_ = peer.SetWriteDeadline(time.Now().Add(longWait))
				for off := 0; off < len(stream); off += 4096 {
					if _, err := peer.Write(stream[off:min(len(stream), off+4096)]); err != nil {
						return err
					}
				}
				return nil
			})
			time.Sleep(time.Duration(rng.Intn(2000)) * time.Microsecond)
			err := c.(interface{ Detach() error }).Detach()
			close(detached)
			require.NoError(t, err)

			var raw []byte
			buf := make([]byte, 64<<10)
			end := time.Now().Add(longWait)
			for {
				n, err := unix.Read(fd, buf)
				if n > 0 {
					raw = append(raw, buf[:n]...)
					continue
				}
				if err == unix.EAGAIN || err == unix.EINTR {
					require.True(t, time.Now().Before(end), "the fd did not reach the end of the stream")
					time.Sleep(100 * time.Microsecond)
					continue
				}
				require.NoError(t, err)
				break // end of stream
			}
			require.NoError(t, unix.Close(fd))
			require.NoError(t, recv(t, sent, "the peer's writes"))
			require.Equal(t, len(stream), buffered+len(raw),
				"iteration %d: %d bytes buffered at Detach and %d read from the fd after it", i, buffered, len(raw))
			if len(raw) == 0 {
				continue // the poller had read everything before Detach
			}
			if len(raw) < len(stream) {
				midStream++
			}
			start := len(stream) - len(raw)
			require.True(t, start >= 0 && bytes.Equal(stream[start:], raw),
				"iteration %d: the %d bytes read after Detach are not the end of the stream: the poller read after Detach", i, len(raw))
		}
		t.Logf("%d of %d detaches happened mid-stream", midStream, rounds)
		require.Positive(t, midStream, "no Detach landed mid-stream: the race was not exercised")
	})
}

// docs/contract.md C7.3, C7.4, C8.5: many short connections (connect, maybe send,
// close at once, sometimes with a reset) are each accepted, and each one's
// close callbacks run exactly once, with OnDisconnect at most once before them.
func TestEventLoopShortConnections(t *testing.T) {
	checkLeaks(t)
	forEachNetwork(t, func(t *testing.T, network string) {
		s, recs := recordingServer(t, network, true)
		const n = 600
		parallel(t, 8, n, func(i int) error {
			c, err := net.DialTimeout(network, s.addr, longWait)
			if err != nil {
				return err
			}
			switch i % 4 {
			case 1:
				_, _ = c.Write([]byte("short"))
			case 2:
				_, _ = c.Write([]byte("short"))
				if tc, ok := c.(*net.TCPConn); ok {
					_ = tc.SetLinger(0)
				}
			case 3:
				_, _ = c.Write([]byte("echo"))
				_ = c.SetReadDeadline(time.Now().Add(longWait))
				var b [4]byte
				_, _ = c.Read(b[:])
			}
			return c.Close()
		})
		for i := 0; i < n; i++ {
			rec := recv(t, recs, "an accepted connection")
			require.NoError(t, checkClosedOnce(rec), "connection %d", i)
		}
	})
}
