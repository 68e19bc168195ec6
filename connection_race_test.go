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

// connRecord is what the server tracks for one accepted connection.
type connRecord struct {
	conn       Connection
	mu         sync.Mutex
	got        bytes.Buffer // what OnRequest consumed
	requests   atomic.Int64
	closeRuns  atomic.Int64
	discRuns   atomic.Int64
	problems   []string
	closedOnce chan struct{} // closed by the first close callback
}

func newConnRecord(c Connection) *connRecord {
	return &connRecord{conn: c, closedOnce: make(chan struct{})}
}

func (r *connRecord) problem(format string, args ...interface{}) {
	r.mu.Lock()
	r.problems = append(r.problems, fmt.Sprintf(format, args...))
	r.mu.Unlock()
}

func (r *connRecord) check(t testing.TB) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, p := range r.problems {
		t.Error(p)
	}
}

// recordingServer starts a server whose connections are tracked in
// connRecords, delivered on the returned channel when accepted. OnRequest
// consumes everything and, if echo is set, sends it back.
func recordingServer(t testing.TB, network string, echo bool) (*testServer, <-chan *connRecord) {
	t.Helper()
	records := make(chan *connRecord, 4096)
	key := ctxKey("record")
	s := startServer(t, network, func(ctx context.Context, c Connection) error {
		rec := ctx.Value(key).(*connRecord)
		rec.requests.Add(1)
		if rec.closeRuns.Load() != 0 {
			rec.problem("OnRequest ran after the close callbacks")
		}
		r := c.Reader()
		p, err := r.Next(r.Len())
		if err != nil {
			return err
		}
		rec.mu.Lock()
		rec.got.Write(p)
		rec.mu.Unlock()
		if echo {
			if _, err = c.Writer().WriteBinary(p); err == nil {
				err = c.Writer().Flush()
			}
		}
		_ = r.Release()
		return err
	}, WithOnPrepare(func(c Connection) context.Context {
		rec := newConnRecord(c)
		_ = c.AddCloseCallback(func(Connection) error {
			if rec.closeRuns.Add(1) == 1 {
				close(rec.closedOnce)
			}
			return nil
		})
		records <- rec
		return context.WithValue(context.Background(), key, rec)
	}), WithOnDisconnect(func(ctx context.Context, c Connection) {
		rec := ctx.Value(key).(*connRecord)
		rec.discRuns.Add(1)
		if rec.closeRuns.Load() != 0 {
			rec.problem("OnDisconnect ran after the close callbacks")
		}
		if c.IsActive() {
			rec.problem("OnDisconnect saw IsActive() true")
		}
	}))
	return s, records
}

// waitClosedOnce waits for rec's close callbacks and checks they ran once.
func waitClosedOnce(t testing.TB, rec *connRecord) {
	t.Helper()
	recv(t, rec.closedOnce, "the close callbacks")
	time.Sleep(time.Millisecond)
	require.Equal(t, int64(1), rec.closeRuns.Load(), "close callbacks must run exactly once")
	require.LessOrEqual(t, rec.discRuns.Load(), int64(1), "OnDisconnect ran more than once")
	rec.check(t)
}

// docs/contract.md C8.4, C7.4, C8.6: a peer that sends and closes at once loses no
// byte: OnRequest sees everything it sent, before the close callbacks run.
func TestEventLoopPeerSendsThenCloses(t *testing.T) {
	checkFDs(t)
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

// parallel runs n iterations of f on workers goroutines, stopping at the first failure.
func parallel(t *testing.T, workers, n int, f func(i int) error) {
	t.Helper()
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				if err := f(i); err != nil {
					errs <- fmt.Errorf("iteration %d: %w", i, err)
					next.Store(int64(n))
					return
				}
			}
		}()
	}
	recv(t, async(func() bool { wg.Wait(); return true }), "the workers")
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// waitEOF reads c until it ends, within longWait.
func waitEOF(c net.Conn) error {
	_ = c.SetReadDeadline(time.Now().Add(longWait))
	var buf [4096]byte
	for {
		_, err := c.Read(buf[:])
		if err == nil {
			continue
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return errors.New("the connection stayed open")
		}
		return nil
	}
}

// waitRecord takes the next accepted connection.
func waitRecord(records <-chan *connRecord) (*connRecord, error) {
	select {
	case rec := <-records:
		return rec, nil
	case <-time.After(longWait):
		return nil, errors.New("no connection accepted")
	}
}

// checkClosedOnce waits for the close callbacks and checks the record.
func checkClosedOnce(rec *connRecord) error {
	select {
	case <-rec.closedOnce:
	case <-time.After(longWait):
		return errors.New("the close callbacks never ran")
	}
	time.Sleep(time.Millisecond)
	if n := rec.closeRuns.Load(); n != 1 {
		return fmt.Errorf("close callbacks ran %d times", n)
	}
	if n := rec.discRuns.Load(); n > 1 {
		return fmt.Errorf("OnDisconnect ran %d times", n)
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.problems) > 0 {
		return errors.New(rec.problems[0])
	}
	return nil
}

// docs/contract.md C7.2, C7.3, C8.3: a server-side Close racing a running OnRequest
// (and data still arriving) runs the close callbacks exactly once, never
// before or during an OnRequest, and the client sees the close.
func TestEventLoopCloseRacesOnRequest(t *testing.T) {
	checkFDs(t)
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
	checkFDs(t)
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
	checkFDs(t)
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
	checkFDs(t)
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
// rest of the stream, without a hole.
func TestConnDetachRacesArrival(t *testing.T) {
	checkFDs(t)
	forEachNetwork(t, func(t *testing.T, network string) {
		rng := newRand(t)
		stream := randomBytes(rng, 256<<10)
		midStream := 0
		defer func() { t.Logf("%d of 40 detaches happened mid-stream", midStream) }()
		for i := 0; i < 40; i++ {
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
	})
}

// docs/contract.md C7.3, C7.4, C8.5: many short connections (connect, maybe send,
// close at once, sometimes with a reset) are each accepted, and each one's
// close callbacks run exactly once, with OnDisconnect at most once before them.
func TestEventLoopShortConnections(t *testing.T) {
	checkFDs(t)
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
