//go:build darwin || freebsd || linux

package netpoll

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Faults: what the peer, the kernel or the user can do to a connection at
// the worst moment. Each test runs over TCP and unix sockets where both
// apply, and checks that fds and goroutines come back.

// suiteRecorder keeps an ordered list of events seen by callbacks.
type suiteRecorder struct {
	mu  sync.Mutex
	evs []string
}

func (r *suiteRecorder) add(ev string) {
	r.mu.Lock()
	r.evs = append(r.evs, ev)
	r.mu.Unlock()
}

func (r *suiteRecorder) list() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.evs...)
}

func (r *suiteRecorder) count(ev string) int {
	n := 0
	for _, e := range r.list() {
		if e == ev {
			n++
		}
	}
	return n
}

// waitCount waits until ev was recorded n times, and fails if it is recorded more often.
func (r *suiteRecorder) waitCount(t testing.TB, ev string, n int) {
	t.Helper()
	if !waitUntil(suiteWait, func() bool { return r.count(ev) >= n }) {
		t.Fatalf("%q recorded %d times, want %d; events %v", ev, r.count(ev), n, r.list())
	}
	time.Sleep(20 * time.Millisecond) // a duplicate would show up now
	if got := r.count(ev); got != n {
		t.Fatalf("%q recorded %d times, want exactly %d; events %v", ev, got, n, r.list())
	}
}

// suiteAbort closes a standard connection abruptly: an RST for TCP
// (SO_LINGER 0), a plain close for a unix socket, which has no reset.
func suiteAbort(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = c.Close()
}

// suiteAcceptOne accepts one connection from ln in the background.
func suiteAcceptOne(t testing.TB, ln net.Listener) <-chan net.Conn {
	ch := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			t.Errorf("accept: %v", err)
			close(ch)
			return
		}
		ch <- c
	}()
	return ch
}

// suiteDialAccepted dials ln with DialConnection and returns the dialed
// connection and the accepted peer; closing them is the caller's.
func suiteDialAccepted(t testing.TB, network string, ln net.Listener) (Connection, net.Conn) {
	t.Helper()
	acc := suiteAcceptOne(t, ln)
	c, err := DialConnection(network, ln.Addr().String(), suiteWait)
	if err != nil {
		t.Fatal(err)
	}
	return c, suiteAccepted(t, acc)
}

func suiteAccepted(t testing.TB, ch <-chan net.Conn) net.Conn {
	t.Helper()
	select {
	case c, ok := <-ch:
		if !ok {
			t.Fatal("accept failed")
		}
		return c
	case <-time.After(suiteWait):
		t.Fatal("no connection accepted")
	}
	return nil
}

// The peer resets (TCP: RST by SO_LINGER 0) in the middle of a message.
// The server's blocked read and the client's blocked read both end with
// ErrEOF, the callbacks run once, and every fd is released.
func TestFaultPeerResetMidMessage(t *testing.T) {
	for _, network := range suiteNetworks {
		t.Run(network+"/server", func(t *testing.T) {
			suiteCheckLeaks(t)
			rec := &suiteRecorder{}
			readErr := make(chan error, 1)
			srv := suiteServe(t, network, func(ctx context.Context, c Connection) error {
				_, err := c.Reader().Next(1 << 20) // only half of it ever comes
				suiteTrySend(readErr, err)
				return err
			},
				WithOnPrepare(func(c Connection) context.Context {
					_ = c.AddCloseCallback(func(Connection) error { rec.add("closed"); return nil })
					return nil
				}),
				WithOnDisconnect(func(ctx context.Context, c Connection) { rec.add("disconnect") }))
			peer := srv.dialStd(t)
			_, err := peer.Write(bytes.Repeat([]byte{'x'}, 64<<10))
			if err != nil {
				t.Fatal(err)
			}
			time.Sleep(50 * time.Millisecond) // let the server start its read
			suiteAbort(peer)
			err = suiteErrWithin(t, "the server's Next", readErr)
			if !errors.Is(err, ErrEOF) {
				t.Fatalf("server read after reset: %v, want ErrEOF", err)
			}
			rec.waitCount(t, "disconnect", 1)
			rec.waitCount(t, "closed", 1)
		})
		t.Run(network+"/client", func(t *testing.T) {
			suiteCheckLeaks(t)
			ln := suiteListen(t, network)
			defer ln.Close()
			c, peer := suiteDialAccepted(t, network, ln)
			var err error
			defer c.Close()
			readErr := make(chan error, 1)
			go func() {
				_, err := c.Reader().Next(1 << 20)
				readErr <- err
			}()
			if _, err = peer.Write(bytes.Repeat([]byte{'y'}, 64<<10)); err != nil {
				t.Fatal(err)
			}
			suiteBlockedInRead(t, c)
			eventually(t, func() bool { return c.Reader().Len() == 64<<10 }, "the 64 KiB to arrive before the reset")
			suiteAbort(peer)
			err = suiteErrWithin(t, "the client's Next", readErr)
			if !errors.Is(err, ErrEOF) {
				t.Fatalf("client read after reset: %v, want ErrEOF", err)
			}
			if c.IsActive() {
				t.Fatal("IsActive after the peer reset")
			}
			// Writing to the reset connection fails, and never panics.
			if _, err = c.Write([]byte("after reset")); err == nil {
				t.Fatal("Write after the peer reset succeeded")
			}
			if err = c.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
		})
	}
}

// Half-close, first direction: the peer sends, then shuts down its write
// side. We read every byte it sent, then the next read gets ErrEOF.
func TestFaultPeerHalfClose(t *testing.T) {
	const size = 300 << 10
	want := suiteBody(1, 2, size)
	for _, network := range suiteNetworks {
		t.Run(network+"/client", func(t *testing.T) {
			suiteCheckLeaks(t)
			ln := suiteListen(t, network)
			defer ln.Close()
			c, peer := suiteDialAccepted(t, network, ln)
			var err error
			defer c.Close()
			defer peer.Close()
			if _, err = peer.Write(want); err != nil {
				t.Fatal(err)
			}
			if err = peer.(interface{ CloseWrite() error }).CloseWrite(); err != nil {
				t.Fatal(err)
			}
			c.SetReadTimeout(suiteWait)
			got, err := c.Reader().ReadBinary(size)
			if err != nil {
				t.Fatalf("reading what came before the half-close: %v", err)
			}
			if !bytes.Equal(got, want) {
				t.Fatal("data before the half-close differs")
			}
			if _, err = c.Reader().Next(1); !errors.Is(err, ErrEOF) {
				t.Fatalf("read after the data: %v, want ErrEOF", err)
			}
		})
		t.Run(network+"/server", func(t *testing.T) {
			suiteCheckLeaks(t)
			type result struct {
				data []byte
				err  error
			}
			res := make(chan result, 1)
			srv := suiteServe(t, network, func(ctx context.Context, c Connection) error {
				// Read everything the peer sends, blocking, until the end.
				var all []byte
				for {
					p, err := c.Reader().Next(1)
					if err != nil {
						suiteTrySend(res, result{all, err})
						return nil
					}
					all = append(all, p...)
					if n := c.Reader().Len(); n > 0 {
						p, _ = c.Reader().Next(n)
						all = append(all, p...)
					}
					_ = c.Reader().Release()
				}
			})
			peer := srv.dialStd(t)
			defer peer.Close()
			if _, err := peer.Write(want); err != nil {
				t.Fatal(err)
			}
			if err := peer.(interface{ CloseWrite() error }).CloseWrite(); err != nil {
				t.Fatal(err)
			}
			var r result
			select {
			case r = <-res:
			case <-time.After(suiteWait):
				t.Fatal("the server never saw the end of the stream")
			}
			if !errors.Is(r.err, ErrEOF) {
				t.Fatalf("server read at the end: %v, want ErrEOF", r.err)
			}
			if !bytes.Equal(r.data, want) {
				t.Fatalf("server got %d bytes, want %d identical", len(r.data), len(want))
			}
		})
	}
}

// suiteSlowRead reads everything from c until EOF, pausing now and then, and
// returns the bytes and the final error (nil at a clean EOF).
func suiteSlowRead(c net.Conn) ([]byte, error) {
	_ = c.SetReadDeadline(time.Now().Add(suiteWait))
	var out bytes.Buffer
	buf := make([]byte, 64<<10)
	for i := 0; ; i++ {
		n, err := c.Read(buf)
		out.Write(buf[:n])
		if err == io.EOF {
			return out.Bytes(), nil
		}
		if err != nil {
			return out.Bytes(), err
		}
		if i%8 == 0 {
			time.Sleep(time.Millisecond)
		}
	}
}

// Half-close, other direction: we send a large reply and Close at once while
// the peer is still reading slowly. The peer gets every byte, then EOF.
func TestFaultCloseWhilePeerReads(t *testing.T) {
	const size = 8 << 20
	want := suiteBig(size, 4)
	for _, network := range suiteNetworks {
		t.Run(network+"/server", func(t *testing.T) {
			suiteCheckLeaks(t)
			srv := suiteServe(t, network, func(ctx context.Context, c Connection) error {
				_, _ = c.Reader().Next(1)
				_, _ = c.Writer().WriteBinary(want)
				err := c.Writer().Flush()
				c.Close()
				return err
			})
			peer := srv.dialStd(t)
			defer peer.Close()
			if _, err := peer.Write([]byte{1}); err != nil {
				t.Fatal(err)
			}
			got, err := suiteSlowRead(peer)
			if err != nil {
				t.Fatalf("peer read: %v after %d bytes", err, len(got))
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("peer got %d bytes, want %d identical", len(got), size)
			}
		})
		t.Run(network+"/client", func(t *testing.T) {
			suiteCheckLeaks(t)
			ln := suiteListen(t, network)
			defer ln.Close()
			c, peer := suiteDialAccepted(t, network, ln)
			var err error
			defer peer.Close()
			got := make(chan []byte, 1)
			go func() {
				b, err := suiteSlowRead(peer)
				if err != nil {
					t.Errorf("peer read: %v", err)
				}
				got <- b
			}()
			if _, err = c.Writer().WriteBinary(want); err != nil {
				t.Fatal(err)
			}
			if err = c.Writer().Flush(); err != nil {
				t.Fatal(err)
			}
			if err = c.Close(); err != nil {
				t.Fatal(err)
			}
			select {
			case b := <-got:
				if !bytes.Equal(b, want) {
					t.Fatalf("peer got %d bytes, want %d identical", len(b), size)
				}
			case <-time.After(suiteWait):
				t.Fatal("peer never saw EOF")
			}
		})
	}
}

// Close from inside each callback, and while a read or a Flush is blocked.
func TestFaultCloseDuring(t *testing.T) {
	for _, network := range suiteNetworks {
		t.Run(network+"/OnPrepare", func(t *testing.T) {
			suiteCheckLeaks(t)
			rec := &suiteRecorder{}
			srv := suiteServe(t, network, func(ctx context.Context, c Connection) error {
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
			if b, err := suiteSlowRead(peer); len(b) != 0 || (err != nil && !suiteIsReset(err)) {
				t.Fatalf("peer read %q, %v; want EOF or a reset", b, err)
			}
			rec.waitCount(t, "closed", 1)
			time.Sleep(50 * time.Millisecond)
			if got := strings.Join(rec.list(), ","); got != "prepare,closed" {
				t.Fatalf("events %s, want prepare,closed: a connection closed in OnPrepare gets no callbacks", got)
			}
		})
		t.Run(network+"/OnConnect", func(t *testing.T) {
			suiteCheckLeaks(t)
			rec := &suiteRecorder{}
			srv := suiteServe(t, network, func(ctx context.Context, c Connection) error {
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
			time.Sleep(50 * time.Millisecond)
			if got := strings.Join(rec.list(), ","); got != "connect,connect returns,disconnect,closed" {
				t.Fatalf("events %s, want connect,connect returns,disconnect,closed", got)
			}
		})
		t.Run(network+"/OnRequest", func(t *testing.T) {
			suiteCheckLeaks(t)
			rec := &suiteRecorder{}
			srv := suiteServe(t, network, func(ctx context.Context, c Connection) error {
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
			if b, err := suiteSlowRead(peer); len(b) != 0 || (err != nil && !suiteIsReset(err)) {
				t.Fatalf("peer read %q, %v; want EOF", b, err)
			}
			rec.waitCount(t, "closed", 1)
			if got := strings.Join(rec.list(), ","); got != "request,request returns,closed" {
				t.Fatalf("events %s, want request,request returns,closed", got)
			}
		})
		t.Run(network+"/BlockedNext", func(t *testing.T) {
			suiteCheckLeaks(t)
			srvConn := make(chan Connection, 1)
			readErr := make(chan error, 1)
			rec := &suiteRecorder{}
			srv := suiteServe(t, network, func(ctx context.Context, c Connection) error {
				suiteTrySend(srvConn, c)
				_, err := c.Reader().Next(1 << 20)
				suiteTrySend(readErr, err)
				return nil
			}, WithOnPrepare(func(c Connection) context.Context {
				_ = c.AddCloseCallback(func(Connection) error { rec.add("closed"); return nil })
				return nil
			}))
			// The server's handler is blocked in Next; close it from outside.
			peer := srv.dialStd(t)
			defer peer.Close()
			_, _ = peer.Write([]byte{1})
			var sc Connection
			select {
			case sc = <-srvConn:
			case <-time.After(suiteWait):
				t.Fatal("no request")
			}
			suiteBlockedInRead(t, sc)
			sc.Close()
			if err := suiteErrWithin(t, "the server's blocked Next", readErr); !errors.Is(err, ErrConnClosed) || errors.Is(err, ErrEOF) {
				t.Fatalf("server Next after Close: %v, want ErrConnClosed", err)
			}
			rec.waitCount(t, "closed", 1)

			// A dialed client blocked in Next, closed from another goroutine.
			c := srv.dial(t)
			go func() {
				_, err := c.Reader().Next(10)
				readErr <- err
			}()
			suiteBlockedInRead(t, c)
			c.Close()
			if err := suiteErrWithin(t, "the client's blocked Next", readErr); !errors.Is(err, ErrConnClosed) || errors.Is(err, ErrEOF) {
				t.Fatalf("client Next after Close: %v, want ErrConnClosed", err)
			}
		})
		t.Run(network+"/BlockedFlush", func(t *testing.T) {
			suiteCheckLeaks(t)
			ln := suiteListen(t, network)
			defer ln.Close()
			c, peer := suiteDialAccepted(t, network, ln) // never reads
			defer peer.Close()
			flushErr := make(chan error, 1)
			go func() {
				_, _ = c.Writer().WriteBinary(suiteBlock)
				_, _ = c.Writer().WriteBinary(suiteBlock)
				_, _ = c.Writer().WriteBinary(suiteBlock)
				flushErr <- c.Writer().Flush()
			}()
			suiteBlockedInFlush(t, c) // the socket filled
			c.Close()
			if err := suiteErrWithin(t, "the blocked Flush", flushErr); !errors.Is(err, ErrConnClosed) {
				t.Fatalf("Flush after Close: %v, want ErrConnClosed", err)
			}
			if in, out := suiteRetained(suiteConnOf(c)); in+out != 0 {
				t.Fatalf("buffers still hold %d+%d bytes after Close", in, out)
			}
		})
	}
}

// suiteIsReset reports a connection reset: the peer closed with unread data.
func suiteIsReset(err error) bool { return errors.Is(err, syscall.ECONNRESET) }

// Eight goroutines Close the same connection at once, while the peer closes
// too: every Close returns nil, OnDisconnect runs at most once and the close
// callbacks exactly once, in LIFO order.
func TestFaultConcurrentClose(t *testing.T) {
	for _, network := range suiteNetworks {
		t.Run(network, func(t *testing.T) {
			suiteCheckLeaks(t)
			const rounds = 50
			var mu sync.Mutex
			closed := map[Connection][]int{}
			disc := map[Connection]int{}
			conns := make(chan Connection, rounds)
			srv := suiteServe(t, network, nil,
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
				var c Connection
				select {
				case c = <-conns:
				case <-time.After(suiteWait):
					t.Fatal("no connection")
				}
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
				wg.Wait()
				peer.Close()
				close(errs)
				for err := range errs {
					if err != nil {
						t.Fatalf("Close: %v", err)
					}
				}
			}
			ok := waitUntil(suiteWait, func() bool {
				mu.Lock()
				defer mu.Unlock()
				return len(closed) == rounds
			})
			time.Sleep(50 * time.Millisecond)
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

// Detach while a read waits: the read ends with ErrConnClosed, the fd stays
// open and is the caller's, and the poller no longer touches it.
func TestFaultDetachWhileReading(t *testing.T) {
	for _, network := range suiteNetworks {
		t.Run(network, func(t *testing.T) {
			suiteCheckLeaks(t)
			ln := suiteListen(t, network)
			defer ln.Close()
			dc, peer := suiteDialAccepted(t, network, ln)
			var err error
			defer peer.Close()
			readErr := make(chan error, 1)
			go func() {
				_, err := dc.Reader().Next(5)
				readErr <- err
			}()
			suiteBlockedInRead(t, dc)
			d := dc.(interface {
				Detach() error
				Fd() int
			})
			fd := d.Fd()
			if err = d.Detach(); err != nil {
				t.Fatalf("Detach: %v", err)
			}
			if err = suiteErrWithin(t, "the blocked Next", readErr); !errors.Is(err, ErrConnClosed) {
				t.Fatalf("Next after Detach: %v, want ErrConnClosed", err)
			}
			// The fd is still open and works in both directions for its new owner.
			f := os.NewFile(uintptr(fd), "detached")
			own, err := net.FileConn(f)
			f.Close()
			if err != nil {
				t.Fatalf("the detached fd is not usable: %v", err)
			}
			defer own.Close()
			if _, err = peer.Write([]byte("hello")); err != nil {
				t.Fatal(err)
			}
			buf := make([]byte, 5)
			_ = own.SetReadDeadline(time.Now().Add(suiteWait))
			if _, err = io.ReadFull(own, buf); err != nil || string(buf) != "hello" {
				t.Fatalf("read on the detached fd: %q, %v", buf, err)
			}
			if _, err = own.Write([]byte("back")); err != nil {
				t.Fatal(err)
			}
			_ = peer.SetReadDeadline(time.Now().Add(suiteWait))
			if _, err = io.ReadFull(peer, buf[:4]); err != nil || string(buf[:4]) != "back" {
				t.Fatalf("peer read from the detached fd: %q, %v", buf[:4], err)
			}
			if dc.IsActive() {
				t.Fatal("IsActive after Detach")
			}
		})
	}
}

// A peer that never reads: Flush ends with ErrWriteTimeout, the connection
// stays open, the output buffer holds only what is unsent (it does not grow
// with retries), and everything arrives once the peer reads.
func TestFaultPeerNeverReads(t *testing.T) {
	const chunk, chunks = 1 << 20, 24
	for _, network := range suiteNetworks {
		t.Run(network, func(t *testing.T) {
			suiteCheckLeaks(t)
			ln := suiteListen(t, network)
			defer ln.Close()
			dc, peer := suiteDialAccepted(t, network, ln)
			var err error
			defer dc.Close()
			c := suiteConnOf(dc)
			defer peer.Close()
			_ = dc.SetWriteTimeout(100 * time.Millisecond)
			sum := crc32.NewIEEE()
			write := func(seq int) {
				p, err := dc.Writer().Malloc(chunk)
				if err != nil {
					t.Fatal(err)
				}
				copy(p, suiteBody(9, uint64(seq), chunk))
				sum.Write(p)
			}
			for i := 0; i < chunks; i++ {
				write(i)
			}
			err = dc.Writer().Flush()
			var ne net.Error
			if !errors.Is(err, ErrWriteTimeout) || !errors.As(err, &ne) || !ne.Timeout() {
				t.Fatalf("Flush to a peer that never reads: %v, want ErrWriteTimeout", err)
			}
			if !dc.IsActive() {
				t.Fatal("a write timeout closed the connection")
			}
			unsent := func() int {
				c.outMu.Lock()
				defer c.outMu.Unlock()
				return c.out.Len() + c.out.MallocLen()
			}
			bound := func(what string) {
				_, out := suiteRetained(c)
				if u := unsent(); out > u+2*chunk {
					t.Fatalf("%s: output buffer holds %d bytes for %d unsent", what, out, u)
				}
			}
			bound("after the first timeout")
			first := unsent()
			for i := 0; i < 5; i++ {
				if err = dc.Writer().Flush(); !errors.Is(err, ErrWriteTimeout) {
					t.Fatalf("retry %d: %v, want ErrWriteTimeout", i, err)
				}
				bound("after a retry")
			}
			if u := unsent(); u > first {
				t.Fatalf("retries grew the unsent bytes from %d to %d", first, u)
			}
			// The peer wakes up and reads everything; the rest goes out.
			got := make(chan uint32, 1)
			go func() {
				h := crc32.NewIEEE()
				_ = peer.SetReadDeadline(time.Now().Add(suiteWait))
				n, err := io.CopyN(h, peer, chunk*chunks)
				if err != nil {
					t.Errorf("peer read %d bytes: %v", n, err)
				}
				got <- h.Sum32()
			}()
			_ = dc.SetWriteTimeout(0)
			if err = dc.Writer().Flush(); err != nil {
				t.Fatalf("Flush once the peer reads: %v", err)
			}
			select {
			case s := <-got:
				if s != sum.Sum32() {
					t.Fatal("the peer got different bytes")
				}
			case <-time.After(suiteWait):
				t.Fatal("the peer did not get everything")
			}
			if _, out := suiteRetained(c); out != 0 {
				t.Fatalf("output buffer holds %d bytes with nothing left to send", out)
			}
		})
	}
}

// The same through the EventLoop's WithWriteTimeout: a server reply to a
// client that never reads ends with ErrWriteTimeout and the server stays up.
func TestFaultServerWriteTimeout(t *testing.T) {
	suiteCheckLeaks(t)
	flushErr := make(chan error, 1)
	srv := suiteServe(t, "tcp", func(ctx context.Context, c Connection) error {
		_ = c.Reader().Skip(c.Reader().Len())
		for i := 0; i < 16; i++ {
			if _, err := c.Writer().WriteBinary(suiteBlock); err != nil {
				suiteTrySend(flushErr, err)
				return err
			}
		}
		suiteTrySend(flushErr, c.Writer().Flush())
		return nil
	}, WithWriteTimeout(100*time.Millisecond))
	peer := srv.dialStd(t)
	defer peer.Close()
	_, _ = peer.Write([]byte{1})
	if err := suiteErrWithin(t, "the server's Flush", flushErr); !errors.Is(err, ErrWriteTimeout) {
		t.Fatalf("server Flush: %v, want ErrWriteTimeout", err)
	}
}

// A client that connects and sends nothing: no OnRequest, the connection
// stays open, and Shutdown closes it (the client sees EOF).
func TestFaultSilentClient(t *testing.T) {
	for _, network := range suiteNetworks {
		t.Run(network, func(t *testing.T) {
			suiteCheckLeaks(t)
			rec := &suiteRecorder{}
			var sc atomic.Value
			srv := suiteServe(t, network, func(ctx context.Context, c Connection) error {
				rec.add("request")
				return nil
			},
				WithOnConnect(func(ctx context.Context, c Connection) context.Context {
					sc.Store(c)
					_ = c.AddCloseCallback(func(Connection) error { rec.add("closed"); return nil })
					rec.add("connect")
					return ctx
				}))
			peer := srv.dialStd(t)
			defer peer.Close()
			rec.waitCount(t, "connect", 1)
			time.Sleep(200 * time.Millisecond)
			if !sc.Load().(Connection).IsActive() {
				t.Fatal("a silent connection was closed")
			}
			if err := srv.stop(); err != nil {
				t.Fatal(err)
			}
			if b, err := suiteSlowRead(peer); len(b) != 0 || err != nil {
				t.Fatalf("silent client after Shutdown: %q, %v; want EOF", b, err)
			}
			rec.waitCount(t, "closed", 1)
			if rec.count("request") != 0 {
				t.Fatal("OnRequest ran for a client that sent nothing")
			}
		})
	}
}

// Shutdown while clients hammer the server: it returns nil, Serve returns
// nil, new dials are refused, every client ends with an error rather than a
// hang, and every reply received before was intact.
func TestFaultShutdownUnderLoad(t *testing.T) {
	for _, network := range suiteNetworks {
		t.Run(network, func(t *testing.T) {
			suiteCheckLeaks(t)
			tally := &suiteTally{}
			var streams sync.Map
			srv := suiteServe(t, network, suiteEchoFrames(tally, func(c Connection) *suiteStream {
				s, _ := streams.LoadOrStore(c, &suiteStream{})
				return s.(*suiteStream)
			}))
			const clients = 16
			client := &suiteTally{}
			var wg sync.WaitGroup
			var sent atomic.Int64
			ended := make(chan error, clients)
			for i := 0; i < clients; i++ {
				c := srv.dial(t)
				_ = c.SetReadTimeout(suiteWait)
				wg.Add(1)
				go func(id uint64, c Connection) {
					defer wg.Done()
					defer c.Close()
					st := &suiteStream{}
					for seq := uint64(0); ; seq++ {
						body := suiteBody(id, seq, int(seq%3000))
						if _, err := c.Write(suiteFrame(id, seq, body)); err != nil {
							ended <- err
							return
						}
						sent.Add(1)
						f, n, err := suiteReadFrame(c.Reader())
						if err != nil {
							ended <- err
							return
						}
						if f.id != id {
							client.unframed.Add(1)
						}
						client.see(st, f, n)
					}
				}(uint64(i), c)
			}
			eventually(t, func() bool { return sent.Load() > 2000 }, "sent.Load() > 2000")
			if err := srv.stop(); err != nil {
				t.Fatal(err)
			}
			if c, err := DialConnection(network, srv.addr, time.Second); err == nil {
				c.Close()
				t.Fatal("a dial after Shutdown succeeded")
			}
			done := make(chan struct{})
			go func() { wg.Wait(); close(done) }()
			suiteClosedWithin(t, "every client's end", done)
			close(ended)
			for err := range ended {
				if !errors.Is(err, ErrConnClosed) && !errors.Is(err, ErrEOF) && !suiteIsReset(err) && !errors.Is(err, syscall.EPIPE) {
					t.Errorf("client ended with %v", err)
				}
			}
			if tally.suiteBad() != 0 || client.suiteBad() != 0 {
				t.Fatalf("bad frames: server %v; client %v", tally, client)
			}
			t.Logf("%d requests before Shutdown", sent.Load())
		})
	}
}

// EMFILE on dial, in a child process with a low RLIMIT_NOFILE: the dial
// fails with an error (no panic, nil Connection) and works again once fds
// are freed.
func TestFaultDialEMFILE(t *testing.T) {
	suiteInChild(t, "SUITE_EMFILE_CHILD", "SUITE-EMFILE-OK", suiteEMFILEChild)
}

func suiteEMFILEChild(t *testing.T) {
	Initialize()
	ln := suiteListen(t, "tcp")
	defer ln.Close()
	var accepted []net.Conn
	var mu sync.Mutex
	accDone := make(chan struct{})
	go func() {
		defer close(accDone)
		for {
			c, err := ln.Accept()
			if err != nil {
				if errors.Is(err, net.ErrClosed) {
					return
				}
				time.Sleep(time.Millisecond) // EMFILE on our side too: retry
				continue
			}
			mu.Lock()
			accepted = append(accepted, c)
			mu.Unlock()
		}
	}()
	defer func() {
		ln.Close()
		<-accDone
		mu.Lock()
		for _, c := range accepted {
			c.Close()
		}
		mu.Unlock()
	}()
	var old unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &old); err != nil {
		t.Fatal(err)
	}
	low := old
	low.Cur = 0 // uint64 on Linux, int64 on the BSDs: count up to the limit
	for i := suiteFds(t) + 40; i > 0; i-- {
		low.Cur++
	}
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &low); err != nil {
		t.Fatal(err)
	}
	defer unix.Setrlimit(unix.RLIMIT_NOFILE, &old)
	var conns []Connection
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	var dialErr error
	for i := 0; i < 200; i++ {
		var c Connection
		suiteRun(t, "dial", suiteWait, func() { c, dialErr = DialConnection("tcp", ln.Addr().String(), suiteWait) })
		if dialErr != nil {
			if tc, ok := c.(*TCPConnection); !ok || tc != nil {
				t.Fatalf("a failed dial returned %#v, want a Connection holding a nil *TCPConnection", c)
			}
			break
		}
		conns = append(conns, c)
	}
	if dialErr == nil {
		t.Fatal("200 dials succeeded under a limit of 40 fds")
	}
	if !errors.Is(dialErr, syscall.EMFILE) {
		t.Fatalf("dial out of fds: %v, want EMFILE", dialErr)
	}
	// Free some fds: dialing works again, and the new connection carries data.
	for _, c := range conns[:10] {
		c.Close()
	}
	conns = conns[10:]
	c, err := DialConnection("tcp", ln.Addr().String(), suiteWait)
	if err != nil {
		t.Fatalf("dial after fds were freed: %v", err)
	}
	conns = append(conns, c)
	if _, err = c.Write([]byte("ok")); err != nil {
		t.Fatalf("write on the recovered dial: %v", err)
	}
	fmt.Println("SUITE-EMFILE-OK", dialErr)
}
