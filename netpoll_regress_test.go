//go:build darwin || freebsd || linux

package netpoll

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math/rand"
	"net"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Regressions: one test per bug a reactor like this one is known to grow,
// and one per rough edge of the reference (docs/contract.md C16) that this package
// promises to do better on. Each fails on the faulty behaviour.

// suiteFdOpen reports whether fd is an open file descriptor.
func suiteFdOpen(fd int) bool {
	_, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0)
	return err == nil
}

// suiteStdEcho serves a standard echo server on network until the test ends.
func suiteStdEcho(t testing.TB, network string) net.Listener {
	ln := suiteListen(t, network)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				// A plain loop: io.Copy between sockets splices through
				// pooled pipes, fds that only a GC gives back.
				buf := make([]byte, 64<<10)
				for {
					n, err := c.Read(buf)
					if n > 0 {
						if _, werr := c.Write(buf[:n]); werr != nil {
							return
						}
					}
					if err != nil {
						return
					}
				}
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns { // a failed test may leave its clients open
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln
}

// Detach twice: the second fails with ErrConnClosed, the fd stays the
// caller's, and the close callbacks ran once.
func TestRegressDoubleDetach(t *testing.T) {
	for _, network := range suiteNetworks {
		t.Run(network, func(t *testing.T) {
			suiteCheckLeaks(t)
			ln := suiteStdEcho(t, network)
			c, err := DialConnection(network, ln.Addr().String(), suiteWait)
			if err != nil {
				t.Fatal(err)
			}
			var calls atomic.Int32
			_ = c.AddCloseCallback(func(Connection) error { calls.Add(1); return nil })
			d := c.(interface {
				Detach() error
				Fd() int
			})
			fd := d.Fd()
			if err = d.Detach(); err != nil {
				t.Fatalf("first Detach: %v", err)
			}
			if err = d.Detach(); !errors.Is(err, ErrConnClosed) {
				t.Fatalf("second Detach: %v, want ErrConnClosed", err)
			}
			if err = c.Close(); err != nil {
				t.Fatalf("Close after Detach: %v", err)
			}
			if n := calls.Load(); n != 1 {
				t.Fatalf("close callbacks ran %d times, want 1", n)
			}
			if !suiteFdOpen(fd) {
				t.Fatal("the detached fd was closed")
			}
			unix.Close(fd)
		})
	}
}

// An operator whose fd was closed must get no more events, and its fd number's
// next owner must get none of its events: a connection that reuses the fd
// of one reset by its peer works normally. (docs/contract.md C16.12)
func TestRegressFdReuseClientSide(t *testing.T) {
	suiteCheckLeaks(t)
	echo := suiteStdEcho(t, "tcp")
	reset := suiteListen(t, "tcp")
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
			suiteAbort(c)
		}
	}()
	defer wg.Wait()
	defer reset.Close()
	rng := rand.New(rand.NewSource(2))
	reused := 0
	for i := 0; i < 200; i++ {
		a, err := DialConnection("tcp", reset.Addr().String(), suiteWait)
		if err != nil {
			t.Fatal(err)
		}
		fd := a.(Conn).Fd()
		_, _ = a.Write([]byte{1}) // the server resets now
		if d := rng.Intn(3); d > 0 {
			time.Sleep(time.Duration(d*100) * time.Microsecond)
		}
		a.Close()
		b, err := DialConnection("tcp", echo.Addr().String(), suiteWait)
		if err != nil {
			t.Fatalf("round %d: dial after a reset: %v", i, err)
		}
		if b.(Conn).Fd() == fd {
			reused++
		}
		_ = b.SetReadTimeout(suiteWait)
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
	t.Logf("fd reused in %d of 200 rounds", reused)
}

// The server side of the same: an accepted connection closed while its peer
// resets, then a new one that reuses the fd number, which must work normally.
func TestRegressFdReuseServerSide(t *testing.T) {
	suiteCheckLeaks(t)
	srv := suiteServe(t, "tcp", func(ctx context.Context, c Connection) error {
		p, err := c.Reader().Peek(1)
		if err != nil {
			return err
		}
		if p[0] == 'R' { // a victim: close with its input unread
			return c.Close()
		}
		buf, _ := c.Reader().Next(c.Reader().Len())
		_, err = c.Write(buf)
		return err
	})
	for i := 0; i < 200; i++ {
		a := srv.dialStd(t)
		_, _ = a.Write(bytes.Repeat([]byte{'R'}, 16<<10))
		if i%2 == 0 {
			suiteAbort(a)
		} else {
			go suiteAbort(a)
		}
		b := srv.dialStd(t)
		_ = b.SetDeadline(time.Now().Add(suiteWait))
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
}

// After Close every Writer method fails with ErrConnClosed; none panics.
func TestRegressWriterAfterClose(t *testing.T) {
	suiteCheckLeaks(t)
	ln := suiteStdEcho(t, "tcp")
	c, err := DialConnection("tcp", ln.Addr().String(), suiteWait)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = c.Writer().Malloc(100) // pending bytes at the close
	c.Close()
	big := make([]byte, 10000)
	w := c.Writer()
	cases := map[string]func() error{
		"Malloc":            func() error { _, err := w.Malloc(10); return err },
		"WriteString":       func() error { _, err := w.WriteString("x"); return err },
		"WriteString big":   func() error { _, err := w.WriteString(string(big)); return err },
		"WriteBinary":       func() error { _, err := w.WriteBinary([]byte("x")); return err },
		"WriteBinary big":   func() error { _, err := w.WriteBinary(big); return err },
		"WriteByte":         func() error { return w.WriteByte('x') },
		"WriteDirect":       func() error { return w.WriteDirect(big, 0) },
		"MallocAck":         func() error { return w.MallocAck(0) },
		"Append":            func() error { lb := NewLinkBuffer(); lb.WriteString("x"); lb.Flush(); return w.Append(lb) },
		"Flush":             func() error { return w.Flush() },
		"Write":             func() error { _, err := c.Write([]byte("x")); return err },
		"Write after Flush": func() error { _, err := c.Write(big); return err },
	}
	for name, f := range cases {
		var err error
		suiteRun(t, name, suiteWait, func() { err = f() })
		if !errors.Is(err, ErrConnClosed) {
			t.Errorf("%s after Close: %v, want ErrConnClosed", name, err)
		}
	}
	suiteRun(t, "MallocLen", suiteWait, func() { _ = w.MallocLen() })
}

// Send, then Close at once: nothing sent is lost, whoever closes.
func TestRegressSendThenClose(t *testing.T) {
	sizes := []int{1, 4096, 100 << 10, 3 << 20}
	for _, network := range suiteNetworks {
		t.Run(network+"/client", func(t *testing.T) {
			suiteCheckLeaks(t)
			ln := suiteListen(t, network)
			defer ln.Close()
			for i, size := range sizes {
				c, peer := suiteDialAccepted(t, network, ln)
				var err error
				want := suiteBig(size, uint64(i))
				type res struct {
					b   []byte
					err error
				}
				got := make(chan res, 1)
				go func() {
					b, err := suiteSlowRead(peer)
					got <- res{b, err}
				}()
				if _, err = c.Write(want); err != nil {
					t.Fatal(err)
				}
				c.Close()
				r := <-got
				peer.Close()
				if r.err != nil || !bytes.Equal(r.b, want) {
					t.Fatalf("size %d: peer got %d bytes (%v)", size, len(r.b), r.err)
				}
			}
		})
		t.Run(network+"/server", func(t *testing.T) {
			suiteCheckLeaks(t)
			srv := suiteServe(t, network, func(ctx context.Context, c Connection) error {
				b, err := c.Reader().ReadByte()
				if err != nil {
					return err
				}
				_, _ = c.Writer().WriteBinary(suiteBig(sizes[b], uint64(b)))
				err = c.Writer().Flush()
				c.Close()
				return err
			})
			for i, size := range sizes {
				peer := srv.dialStd(t)
				_, _ = peer.Write([]byte{byte(i)})
				got, err := suiteSlowRead(peer)
				peer.Close()
				if err != nil || !bytes.Equal(got, suiteBig(size, uint64(i))) {
					t.Fatalf("size %d: peer got %d bytes (%v)", size, len(got), err)
				}
			}
		})
	}
}

// A read that the bytes sent just before the peer's close can satisfy must
// succeed: ErrEOF comes only when those bytes are not enough.
func TestRegressNoEOFWhileDataUnread(t *testing.T) {
	sizes := []int{1, 5000, 256 << 10, 2 << 20}
	for _, network := range suiteNetworks {
		t.Run(network, func(t *testing.T) {
			suiteCheckLeaks(t)
			ln := suiteListen(t, network)
			defer ln.Close()
			for i, size := range sizes {
				c, peer := suiteDialAccepted(t, network, ln)
				var err error
				_ = c.SetReadTimeout(suiteWait)
				want := suiteBig(size, uint64(i))
				type res struct {
					p   []byte
					err error
				}
				got := make(chan res, 1)
				go func() { // blocked before anything arrives
					p, err := c.Reader().ReadBinary(size)
					got <- res{p, err}
				}()
				suiteBlockedInRead(t, c)
				_, _ = peer.Write(want)
				peer.Close()
				r := recv(t, got, "the read")
				if r.err != nil || !bytes.Equal(r.p, want) {
					t.Fatalf("size %d: read of the bytes sent before the close: %d bytes, %v", size, len(r.p), r.err)
				}
				if _, err = c.Reader().Next(1); !errors.Is(err, ErrEOF) {
					t.Fatalf("size %d: read past the end: %v, want ErrEOF", size, err)
				}
				c.Close()
			}
		})
	}
}

// The close callbacks run exactly once on every way a connection can end.
func TestRegressCloseCallbackAlwaysRuns(t *testing.T) {
	suiteCheckLeaks(t)
	type env struct {
		srvConn chan Connection
		srv     *suiteServer
	}
	newServer := func(t *testing.T, rec *suiteRecorder, onReq OnRequest, ops ...Option) *env {
		e := &env{srvConn: make(chan Connection, 1)}
		ops = append(ops, WithOnPrepare(func(c Connection) context.Context {
			_ = c.AddCloseCallback(func(Connection) error { rec.add("closed"); return nil })
			select {
			case e.srvConn <- c:
			default:
			}
			return nil
		}))
		e.srv = suiteServe(t, "tcp", onReq, ops...)
		return e
	}
	cases := []struct {
		name string
		run  func(t *testing.T, rec *suiteRecorder)
	}{
		{"dialed, local Close", func(t *testing.T, rec *suiteRecorder) {
			ln := suiteStdEcho(t, "tcp")
			c, _ := DialConnection("tcp", ln.Addr().String(), suiteWait)
			_ = c.AddCloseCallback(func(Connection) error { rec.add("closed"); return nil })
			c.Close()
		}},
		{"dialed, peer close then Close", func(t *testing.T, rec *suiteRecorder) {
			ln := suiteListen(t, "tcp")
			defer ln.Close()
			acc := suiteAcceptOne(t, ln)
			c, _ := DialConnection("tcp", ln.Addr().String(), suiteWait)
			_ = c.AddCloseCallback(func(Connection) error { rec.add("closed"); return nil })
			suiteAccepted(t, acc).Close()
			eventually(t, func() bool { return !c.IsActive() }, "!c.IsActive()")
			c.Close()
		}},
		{"dialed with OnRequest, peer close", func(t *testing.T, rec *suiteRecorder) {
			ln := suiteListen(t, "tcp")
			defer ln.Close()
			acc := suiteAcceptOne(t, ln)
			c, _ := DialConnection("tcp", ln.Addr().String(), suiteWait)
			_ = c.SetOnRequest(func(ctx context.Context, c Connection) error { return c.Reader().Skip(c.Reader().Len()) })
			_ = c.AddCloseCallback(func(Connection) error { rec.add("closed"); return nil })
			suiteAccepted(t, acc).Close()
		}},
		{"dialed, Detach", func(t *testing.T, rec *suiteRecorder) {
			ln := suiteStdEcho(t, "tcp")
			c, _ := DialConnection("tcp", ln.Addr().String(), suiteWait)
			_ = c.AddCloseCallback(func(Connection) error { rec.add("closed"); return nil })
			d := c.(interface {
				Detach() error
				Fd() int
			})
			_ = d.Detach()
			unix.Close(d.Fd())
		}},
		{"fd connection, Close", func(t *testing.T, rec *suiteRecorder) {
			r, w := GetSysFdPairs()
			defer unix.Close(w)
			c, err := NewFDConnection(r)
			if err != nil {
				t.Fatal(err)
			}
			_ = c.AddCloseCallback(func(Connection) error { rec.add("closed"); return nil })
			c.Close()
		}},
		{"server, peer close", func(t *testing.T, rec *suiteRecorder) {
			e := newServer(t, rec, func(ctx context.Context, c Connection) error { return nil })
			e.srv.dialStd(t).Close()
		}},
		{"server, peer reset with unread input", func(t *testing.T, rec *suiteRecorder) {
			e := newServer(t, rec, func(ctx context.Context, c Connection) error { return nil })
			p := e.srv.dialStd(t)
			_, _ = p.Write(make([]byte, 10000))
			suiteAbort(p)
		}},
		{"server, Close in OnRequest", func(t *testing.T, rec *suiteRecorder) {
			e := newServer(t, rec, func(ctx context.Context, c Connection) error { return c.Close() })
			p := e.srv.dialStd(t)
			defer p.Close()
			_, _ = p.Write([]byte{1})
		}},
		{"server, Close from outside", func(t *testing.T, rec *suiteRecorder) {
			e := newServer(t, rec, nil)
			p := e.srv.dialStd(t)
			defer p.Close()
			(<-e.srvConn).Close()
		}},
		{"server, Close in a close callback", func(t *testing.T, rec *suiteRecorder) {
			e := newServer(t, rec, nil)
			p := e.srv.dialStd(t)
			defer p.Close()
			c := <-e.srvConn
			_ = c.AddCloseCallback(func(c Connection) error { return c.Close() })
			c.Close()
		}},
		{"server, Shutdown", func(t *testing.T, rec *suiteRecorder) {
			e := newServer(t, rec, nil)
			p := e.srv.dialStd(t)
			defer p.Close()
			<-e.srvConn
			if err := e.srv.stop(); err != nil {
				t.Fatal(err)
			}
		}},
		{"server, Close in OnPrepare", func(t *testing.T, rec *suiteRecorder) {
			srv := suiteServe(t, "tcp", nil, WithOnPrepare(func(c Connection) context.Context {
				_ = c.AddCloseCallback(func(Connection) error { rec.add("closed"); return nil })
				c.Close()
				return nil
			}))
			srv.dialStd(t).Close()
		}},
		{"server, Close in OnConnect", func(t *testing.T, rec *suiteRecorder) {
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
			suiteCheckLeaks(t)
			rec := &suiteRecorder{}
			suiteRun(t, tc.name, suiteWait, func() { tc.run(t, rec) })
			rec.waitCount(t, "closed", 1)
		})
	}
}

// SetOnRequest on a connection whose input is already buffered runs the
// handler for that input at once.
func TestRegressSetOnRequestWithBufferedInput(t *testing.T) {
	suiteCheckLeaks(t)
	c, w := suiteFdConn(t)
	var err error
	if _, err = unix.Write(w, []byte("hello")); err != nil {
		t.Fatal(err)
	}
	if !waitUntil(suiteWait, func() bool { return c.Reader().Len() == 5 }) {
		t.Fatal("input never buffered")
	}
	got := make(chan string, 1)
	_ = c.SetOnRequest(func(ctx context.Context, c Connection) error {
		s, err := c.Reader().ReadString(c.Reader().Len())
		if err == nil {
			suiteTrySend(got, s)
		}
		return err
	})
	select {
	case s := <-got:
		if s != "hello" {
			t.Fatalf("handler read %q", s)
		}
	case <-time.After(suiteWait):
		t.Fatal("the handler never ran for the buffered input")
	}
}

// suiteRecoveringRunner installs a Runner that runs each task on a new
// goroutine, recovers its panic and records it; the default comes back when
// the test ends.
func suiteRecoveringRunner(t testing.TB) chan interface{} {
	panics := make(chan interface{}, 16)
	var wg sync.WaitGroup
	if err := Configure(Config{Runner: func(ctx context.Context, f func()) {
		if ctx == nil {
			panics <- "nil ctx"
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() {
				if r := recover(); r != nil {
					panics <- r
				}
			}()
			f()
		}()
	}}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		SetRunner(nil)
		wg.Wait()
	})
	return panics
}

// A panic in OnRequest (or OnConnect) closes the connection, runs its close
// callbacks, and is re-raised into the Runner; the server keeps serving.
func TestRegressPanicInHandler(t *testing.T) {
	for _, where := range []string{"OnRequest", "OnConnect"} {
		t.Run(where, func(t *testing.T) {
			suiteCheckLeaks(t)
			panics := suiteRecoveringRunner(t)
			rec := &suiteRecorder{}
			srv := suiteServe(t, "tcp", func(ctx context.Context, c Connection) error {
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
			select {
			case r := <-panics:
				if fmt.Sprint(r) != "boom in "+where {
					t.Fatalf("the Runner recovered %v", r)
				}
			case <-time.After(suiteWait):
				t.Fatal("the panic never reached the Runner")
			}
			if b, err := suiteSlowRead(p); len(b) != 0 || (err != nil && !suiteIsReset(err)) {
				t.Fatalf("peer of the panicking handler read %q, %v; want EOF", b, err)
			}
			rec.waitCount(t, "closed", 1)
			// The server still serves.
			q := srv.dialStd(t)
			defer q.Close()
			_ = q.SetDeadline(time.Now().Add(suiteWait))
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

// A panic in OnDisconnect after a peer close still finishes the close: the
// close callbacks run, the buffers are recycled, the server forgets the
// connection, and the panic reaches the Runner. The holds of the task that
// runs OnDisconnect used to be released only when it returned.
func TestRegressPanicInOnDisconnect(t *testing.T) {
	suiteCheckLeaks(t)
	panics := suiteRecoveringRunner(t)
	rec := &suiteRecorder{}
	conns := make(chan *connection, 1)
	srv := suiteServe(t, "tcp", func(ctx context.Context, c Connection) error {
		return c.Reader().Skip(c.Reader().Len())
	},
		WithOnPrepare(func(c Connection) context.Context {
			conns <- suiteConnOf(c)
			_ = c.AddCloseCallback(func(Connection) error { rec.add("closed"); return nil })
			return nil
		}),
		WithOnDisconnect(func(ctx context.Context, c Connection) { panic("boom in OnDisconnect") }))
	p := srv.dialStd(t)
	_, _ = p.Write([]byte("some input"))
	var c *connection
	select {
	case c = <-conns:
	case <-time.After(suiteWait):
		t.Fatal("the server never accepted the connection")
	}
	p.Close()
	select {
	case r := <-panics:
		if fmt.Sprint(r) != "boom in OnDisconnect" {
			t.Fatalf("the Runner recovered %v", r)
		}
	case <-time.After(suiteWait):
		t.Fatal("the panic never reached the Runner")
	}
	if !waitUntil(suiteWait, func() bool { return rec.count("closed") == 1 }) {
		t.Fatal("a panic in OnDisconnect left the connection half-closed: its close callbacks never ran (connection_reactor.go peerClosed: no recover in the OnDisconnect task)")
	}
	if in, out := suiteRetained(c); in != 0 || out != 0 {
		t.Errorf("buffers still hold %d and %d bytes", in, out)
	}
	srv.sv.mu.Lock()
	tracked := len(srv.sv.conns)
	srv.sv.mu.Unlock()
	if tracked != 0 {
		t.Errorf("the server still tracks %d connection(s)", tracked)
	}
}

// SetKeepAlive and SetIdleTimeout on a closed connection fail with
// ErrConnClosed and leave alone the connection that now has its fd number.
// They used to set the options of whatever socket had the number.
func TestRegressKeepAliveAfterClose(t *testing.T) {
	suiteCheckLeaks(t)
	ln := suiteStdEcho(t, "tcp")
	var old, cur Connection
	for i := 0; i < 20 && cur == nil; i++ {
		c1 := suiteDialEcho(t, ln)
		c1.Close()
		c2 := suiteDialEcho(t, ln)
		if c2.(Conn).Fd() == c1.(Conn).Fd() {
			old, cur = c1, c2
		} else {
			c2.Close()
		}
	}
	if cur == nil {
		t.Skip("no new dial reused the fd number of the connection just closed")
	}
	fd := cur.(Conn).Fd()
	calls := map[string]func() error{
		"SetKeepAlive":   func() error { return old.(*TCPConnection).SetKeepAlive(77) },
		"SetIdleTimeout": func() error { return old.SetIdleTimeout(77 * time.Second) },
	}
	for name, call := range calls {
		if err := call(); !errors.Is(err, ErrConnClosed) {
			t.Errorf("%s after Close: %v, want ErrConnClosed", name, err)
		}
		if on, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_KEEPALIVE); err != nil || on != 0 {
			t.Fatalf("%s on a closed connection turned on keep-alive (%d, %v) on the connection that reused its fd %d", name, on, err, fd)
		}
	}
}

type suiteCtxKey struct{}

// OnDisconnect sees the ctx OnConnect returned, however quickly the peer
// closes, and so does OnRequest.
func TestRegressCtxFromOnConnectToOnDisconnect(t *testing.T) {
	suiteCheckLeaks(t)
	var next atomic.Int64
	var bad, seen atomic.Int64
	var mu sync.Mutex
	ids := map[Connection]int64{}
	srv := suiteServe(t, "tcp", func(ctx context.Context, c Connection) error {
		mu.Lock()
		want := ids[c]
		mu.Unlock()
		if v, _ := ctx.Value(suiteCtxKey{}).(int64); v != want {
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
			return context.WithValue(ctx, suiteCtxKey{}, id)
		}),
		WithOnDisconnect(func(ctx context.Context, c Connection) {
			mu.Lock()
			want := ids[c]
			mu.Unlock()
			if v, _ := ctx.Value(suiteCtxKey{}).(int64); v != want {
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
	if !waitUntil(suiteWait, func() bool { return seen.Load() == rounds }) {
		t.Fatalf("OnDisconnect ran %d times for %d peer closes", seen.Load(), rounds)
	}
	if bad.Load() != 0 {
		t.Fatalf("%d handlers saw a ctx other than OnConnect's", bad.Load())
	}
}

// A read that ended (timeout, close, peer close) leaves no timer behind: the
// next read's own timeout applies, not a stale one.
func TestRegressReadTimerAfterError(t *testing.T) {
	suiteCheckLeaks(t)
	dc, w := suiteFdConn(t)
	var err error
	c := suiteConnOf(dc)
	_ = dc.SetReadTimeout(50 * time.Millisecond)
	if _, err = dc.Reader().Next(1); !errors.Is(err, ErrReadTimeout) {
		t.Fatalf("Next: %v, want ErrReadTimeout", err)
	}
	// A longer timeout now; the data comes after the old one would have fired.
	_ = dc.SetReadTimeout(suiteWait)
	go func() {
		time.Sleep(200 * time.Millisecond)
		_, _ = unix.Write(w, []byte("late"))
	}()
	if p, err := dc.Reader().Next(4); err != nil || string(p) != "late" {
		t.Fatalf("read with a new timeout: %q, %v", p, err)
	}
	_ = dc.Reader().Release()
	// A read with a long timeout ended by Close stops its timer.
	readErr := make(chan error, 1)
	go func() {
		_, err := dc.Reader().Next(1)
		readErr <- err
	}()
	suiteBlockedInRead(t, dc)
	dc.Close()
	if err = suiteErrWithin(t, "Next", readErr); !errors.Is(err, ErrConnClosed) {
		t.Fatalf("Next after Close: %v", err)
	}
	wt := c.wait.Load()
	if wt == nil || wt.readTimer.t.Load() == nil {
		t.Fatal("the read never armed a timer")
	}
	if wt.readTimer.t.Load().Stop() {
		t.Fatal("the read timer was left running after the connection closed")
	}
}

// The read timer stays armed after a read that got its data (wakeTimer), and
// a stale arming never decides a later read: one armed for a longer timeout
// does not delay a shorter one, and one armed for a shorter timeout fires
// early without failing a longer one.
func TestRegressReadTimerRearms(t *testing.T) {
	suiteCheckLeaks(t)
	dc, w := suiteFdConn(t)
	defer dc.Close()
	r := dc.Reader()
	read := func(want string) {
		t.Helper()
		if p, err := r.Next(len(want)); err != nil || string(p) != want {
			t.Fatalf("Next: %q, %v; want %q", p, err, want)
		}
		_ = r.Release()
	}
	// Armed for a long timeout by a read that got its data...
	_ = dc.SetReadTimeout(time.Hour)
	go func() {
		time.Sleep(20 * time.Millisecond)
		_, _ = unix.Write(w, []byte("a"))
	}()
	read("a")
	requireArmed(t, dc)
	// ...a short one still times out on time.
	_ = dc.SetReadTimeout(100 * time.Millisecond)
	readErr := make(chan error, 1)
	go func() {
		_, err := r.Next(1)
		readErr <- err
	}()
	if err := suiteErrWithin(t, "Next with a 100ms timeout", readErr); !errors.Is(err, ErrReadTimeout) {
		t.Fatalf("Next: %v, want ErrReadTimeout", err)
	}
	// Armed for a short timeout by a read that got its data...
	go func() {
		time.Sleep(20 * time.Millisecond)
		_, _ = unix.Write(w, []byte("b"))
	}()
	read("b")
	requireArmed(t, dc)
	// ...a longer one outlives the stale arming.
	_ = dc.SetReadTimeout(suiteWait)
	go func() {
		time.Sleep(300 * time.Millisecond)
		_, _ = unix.Write(w, []byte("c"))
	}()
	read("c")
}

// requireArmed requires that c's read timer is still armed: the read before
// blocked, and its timer outlived it.
func requireArmed(t *testing.T, c Connection) {
	t.Helper()
	if w := suiteConnOf(c).wait.Load(); w == nil || w.readTimer.at.Load() == 0 {
		t.Fatal("the read did not block, or left no timer armed")
	}
}

// Output of more than 2 GiB queued by reference (one 64 MiB slice written 40
// times) goes out whole: the send path caps each writev below the kernel's
// limit instead of failing.
func TestRegressIovecsOver2GiB(t *testing.T) {
	if testing.Short() {
		t.Skip("2.5 GiB through a socketpair")
	}
	suiteCheckLeaks(t)
	const size, times = 64 << 20, 40
	r, w := GetSysFdPairs()
	c, err := NewFDConnection(w)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	block := suiteBig(size, 7)
	one := crc32.ChecksumIEEE(block)
	type result struct {
		n   int64
		bad int
		err error
	}
	done := make(chan result, 1)
	go func() {
		f := os.NewFile(uintptr(r), "peer") // owns r from here on
		defer f.Close()
		_ = unix.SetNonblock(r, false)
		var res result
		buf := make([]byte, size)
		for i := 0; i < times; i++ {
			m, err := io.ReadFull(f, buf)
			res.n += int64(m)
			if err != nil {
				res.err = err
				break
			}
			if crc32.ChecksumIEEE(buf) != one {
				res.bad++
			}
		}
		done <- res
	}()
	for i := 0; i < times; i++ {
		if _, err = c.Writer().WriteBinary(block); err != nil {
			t.Fatal(err)
		}
	}
	if err = c.Writer().Flush(); err != nil {
		t.Fatalf("Flush of %d GiB: %v", size*times>>30, err)
	}
	select {
	case res := <-done:
		if res.err != nil || res.n != size*times || res.bad != 0 {
			t.Fatalf("peer read %d of %d bytes, %d bad blocks, %v", res.n, size*times, res.bad, res.err)
		}
	case <-time.After(3 * suiteWait):
		t.Fatal("peer did not get everything")
	}
}

// suitePollers counts the poller goroutines.
func suitePollers() int {
	buf := make([]byte, 4<<20)
	buf = buf[:runtime.Stack(buf, true)]
	return strings.Count(string(buf), "(*defaultPoll).Wait")
}

// Changing the number of loops up and down starts pollers only up to the
// largest number asked for, and shrinking never breaks a connection that
// lives on a poller no longer picked.
func TestRegressPollerCountBounded(t *testing.T) {
	orig := int(pollmanager.loops.Load())
	defer SetNumLoops(orig)
	// Pollers live for the whole process: start the most this test asks for
	// before taking the leak baseline.
	_ = SetNumLoops(4)
	Initialize()
	largest := max(4, suitePollers())
	suiteCheckLeaks(t)
	ln := suiteStdEcho(t, "tcp")
	var conns []Connection
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for i := 0; i < 20; i++ {
		n := []int{4, 1, 3, 1, 2}[i%5]
		largest = max(largest, n)
		if err := SetNumLoops(n); err != nil {
			t.Fatal(err)
		}
		for j := 0; j < 3; j++ {
			c, err := DialConnection("tcp", ln.Addr().String(), suiteWait)
			if err != nil {
				t.Fatal(err)
			}
			conns = append(conns, c)
		}
		if p := suitePollers(); p > largest {
			t.Fatalf("%d poller goroutines after asking for at most %d", p, largest)
		}
	}
	for i, c := range conns {
		_ = c.SetReadTimeout(suiteWait)
		msg := []byte(fmt.Sprintf("conn %d", i))
		if _, err := c.Write(msg); err != nil {
			t.Fatalf("conn %d after the loops changed: %v", i, err)
		}
		if got, err := c.Reader().Next(len(msg)); err != nil || !bytes.Equal(got, msg) {
			t.Fatalf("conn %d after the loops changed: %q, %v", i, got, err)
		}
		_ = c.Reader().Release()
	}
}

// docs/contract.md C16.1: an OnRequest that consumes nothing is not called in a hot loop, not
// even after the peer closes; the connection is still finalized.
func TestRoughEdgeNoSpinningOnRequest(t *testing.T) {
	suiteCheckLeaks(t)
	var calls atomic.Int64
	rec := &suiteRecorder{}
	srv := suiteServe(t, "tcp", func(ctx context.Context, c Connection) error {
		calls.Add(1)
		return nil
	}, WithOnPrepare(func(c Connection) context.Context {
		_ = c.AddCloseCallback(func(Connection) error { rec.add("closed"); return nil })
		return nil
	}))
	p := srv.dialStd(t)
	_, _ = p.Write([]byte("never consumed"))
	eventually(t, func() bool { return calls.Load() > 0 }, "calls.Load() > 0")
	time.Sleep(300 * time.Millisecond)
	if n := calls.Load(); n > 3 {
		t.Fatalf("OnRequest ran %d times for one unconsumed request", n)
	}
	before := calls.Load()
	p.Close()
	rec.waitCount(t, "closed", 1)
	time.Sleep(300 * time.Millisecond)
	if n := calls.Load() - before; n > 3 {
		t.Fatalf("OnRequest ran %d more times after the peer closed", n)
	}
}

// docs/contract.md C16.2: Malloc and reads after a local Close give errors, never a panic.
func TestRoughEdgeNoPanicAfterClose(t *testing.T) {
	suiteCheckLeaks(t)
	ln := suiteStdEcho(t, "tcp")
	for round := 0; round < 20; round++ {
		c, err := DialConnection("tcp", ln.Addr().String(), suiteWait)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = c.Write([]byte("abc"))
		eventually(t, func() bool { return c.Reader().Len() == 3 }, "c.Reader().Len() == 3")
		c.Close()
		suiteRun(t, "Malloc after Close", suiteWait, func() {
			if _, err := c.Writer().Malloc(16); !errors.Is(err, ErrConnClosed) {
				t.Errorf("Malloc after Close: %v, want ErrConnClosed", err)
			}
		})
		suiteRun(t, "reads after Close", suiteWait, func() {
			p, err := c.Reader().Next(3)
			if err != nil && !errors.Is(err, ErrConnClosed) {
				t.Errorf("Next after Close: %v", err)
			}
			if err == nil && string(p) != "abc" {
				t.Errorf("Next after Close: %q", p)
			}
			_ = c.Reader().Release()
			_, _ = c.Reader().Peek(1)
			_, _ = c.Reader().ReadByte()
			_ = c.Reader().Len()
		})
	}
}

// docs/contract.md C16.3: a NewFDConnection connection has addresses, and a read timeout on it
// gives ErrReadTimeout instead of a panic.
func TestRoughEdgeFDConnectionReadTimeout(t *testing.T) {
	suiteCheckLeaks(t)
	c, _ := suiteFdConn(t)
	var err error
	if c.LocalAddr() == nil || c.RemoteAddr() == nil {
		t.Errorf("addresses %v %v, want non-nil", c.LocalAddr(), c.RemoteAddr())
	}
	_ = c.SetReadTimeout(30 * time.Millisecond)
	suiteRun(t, "read timeout", suiteWait, func() {
		_, err = c.Reader().Next(1)
	})
	var ne net.Error
	if !errors.Is(err, ErrReadTimeout) || !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("read timeout on a fd connection: %v", err)
	}
	if !c.IsActive() {
		t.Fatal("a read timeout closed the connection")
	}
}

// suiteFullBacklog returns the address of a TCP listener whose accept queue
// is full, so a new connect hangs until its timeout.
func suiteFullBacklog(t testing.TB) string {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	if err = unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err = unix.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	sa, _ := unix.Getsockname(fd)
	addr := fmt.Sprintf("127.0.0.1:%d", sa.(*unix.SockaddrInet4).Port)
	for i := 0; i < 8; i++ {
		c, err := net.DialTimeout("tcp", addr, 100*time.Millisecond)
		if err != nil {
			return addr // the queue is full: this connect timed out
		}
		t.Cleanup(func() { c.Close() })
	}
	t.Skip("could not fill a listen backlog")
	return ""
}

// A failed dial returns what the reference returns: a Connection (and a
// net.Conn from DialTimeout) holding a nil *TCPConnection, a timeout as
// "i/o timeout" around a plain error that is not a net.Error timeout, and
// a refusal as ErrConnClosed "by peer".
func TestRoughEdgeDialFailure(t *testing.T) {
	suiteCheckLeaks(t)
	addr := suiteFullBacklog(t)
	var c Connection
	var err error
	suiteRun(t, "dial", suiteWait, func() { c, err = DialConnection("tcp", addr, 200*time.Millisecond) })
	if err == nil {
		c.Close()
		t.Fatal("dial to a full backlog succeeded")
	}
	if tc, ok := c.(*TCPConnection); !ok || tc != nil {
		t.Fatalf("a failed dial returned %#v, want a Connection holding a nil *TCPConnection", c)
	}
	var ne net.Error
	if err.Error() != "dial tcp "+addr+": i/o timeout" || (errors.As(err, &ne) && ne.Timeout()) {
		t.Fatalf("dial timeout: %v (%T), want a plain \"i/o timeout\"", err, err)
	}
	if errors.Is(err, ErrDialTimeout) {
		t.Errorf("dial timeout %v matches ErrDialTimeout", err)
	}
	var nc net.Conn
	suiteRun(t, "DialTimeout", suiteWait, func() { nc, err = NewDialer().DialTimeout("tcp", addr, 100*time.Millisecond) })
	if tc, ok := nc.(*TCPConnection); err == nil || !ok || tc != nil {
		t.Fatalf("DialTimeout to a full backlog: %#v, %v; want a nil *TCPConnection and an error", nc, err)
	}
	// Refused.
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	refused := ln.Addr().String()
	ln.Close()
	c, err = DialConnection("tcp", refused, suiteWait)
	if tc, ok := c.(*TCPConnection); err == nil || !ok || tc != nil {
		t.Fatalf("dial to a closed port: %#v, %v; want a nil *TCPConnection and an error", c, err)
	}
	if !errors.Is(err, ErrConnClosed) || err.Error() != "dial tcp "+refused+": connection has been closed by peer" {
		t.Errorf("refused dial: %v, want ErrConnClosed \"by peer\"", err)
	}
}

// docs/contract.md C16.9: concurrent Write calls are serialised, not refused, and never
// interleave inside a Write.
func TestRoughEdgeConcurrentWrites(t *testing.T) {
	for _, network := range suiteNetworks {
		t.Run(network, func(t *testing.T) {
			suiteCheckLeaks(t)
			const writers, writes = 8, 2000
			ln := suiteListen(t, network)
			defer ln.Close()
			c, peer := suiteDialAccepted(t, network, ln)
			defer c.Close()
			defer peer.Close()
			tally := &suiteTally{}
			done := make(chan struct{})
			go func() { // the peer checks every frame
				defer close(done)
				rd := NewReader(peer)
				streams := make([]suiteStream, writers)
				_ = peer.SetReadDeadline(time.Now().Add(3 * suiteWait))
				for i := 0; i < writers*writes; i++ {
					f, n, err := suiteReadFrame(rd)
					if err != nil {
						t.Errorf("peer after %d frames: %v", i, err)
						return
					}
					if f.id >= writers {
						tally.unframed.Add(1)
						continue
					}
					tally.see(&streams[f.id], f, n)
				}
			}()
			var failed atomic.Int64
			var wg sync.WaitGroup
			for g := 0; g < writers; g++ {
				wg.Add(1)
				go func(id uint64) {
					defer wg.Done()
					for seq := uint64(0); seq < writes; seq++ {
						if _, err := c.Write(suiteFrame(id, seq, suiteBody(id, seq, int(seq*37%3000)))); err != nil {
							failed.Add(1)
						}
					}
				}(uint64(g))
			}
			wg.Wait()
			suiteClosedWithin(t, "the peer's check", done)
			if failed.Load() != 0 {
				t.Fatalf("%d of %d concurrent Writes failed", failed.Load(), writers*writes)
			}
			if tally.suiteBad() != 0 || tally.frames.Load() != writers*writes {
				t.Fatalf("peer: %v, want %d intact frames", tally, writers*writes)
			}
		})
	}
}

// docs/contract.md C16.6: a second Listener.Close closes nothing else, even a fd that now has
// the listener's old number.
func TestRoughEdgeListenerDoubleClose(t *testing.T) {
	suiteCheckLeaks(t)
	for _, network := range suiteNetworks {
		var ln Listener
		var err error
		if network == "tcp" {
			ln, err = CreateListener("tcp", "127.0.0.1:0")
		} else {
			std := suiteListen(t, "unix")
			ln, err = ConvertListener(std)
		}
		if err != nil {
			t.Fatal(err)
		}
		fd := ln.Fd()
		if err = ln.Close(); err != nil {
			t.Fatal(err)
		}
		var files []*os.File
		reused := -1
		for i := 0; i < 64 && reused < 0; i++ {
			f, err := os.Open(os.DevNull)
			if err != nil {
				t.Fatal(err)
			}
			files = append(files, f)
			if int(f.Fd()) == fd {
				reused = i
			}
		}
		_ = ln.Close()
		for i, f := range files {
			if _, err := f.Stat(); err != nil {
				t.Errorf("%s: the second Listener.Close closed another file (fd %d): %v", network, f.Fd(), err)
			}
			if i == reused && !suiteFdOpen(fd) {
				t.Errorf("%s: fd %d, reused after the first Close, was closed by the second", network, fd)
			}
			f.Close()
		}
		if reused < 0 {
			t.Logf("%s: fd %d was not reused", network, fd)
		}
	}
}

// docs/contract.md C16.11: a dialed connection without callbacks releases its fd when the peer
// closes, without a call to Close.
func TestRoughEdgeDialedReleasesFdOnPeerClose(t *testing.T) {
	for _, network := range suiteNetworks {
		t.Run(network, func(t *testing.T) {
			suiteCheckLeaks(t)
			ln := suiteListen(t, network)
			defer ln.Close()
			base := suiteFds(t)
			c, peer := suiteDialAccepted(t, network, ln)
			defer c.Close()
			if n := suiteFds(t); n != base+2 {
				t.Logf("fds: %d, expected %d", n, base+2)
			}
			peer.Close()
			if !waitUntil(suiteWait, func() bool { return suiteFds(t) <= base }) {
				t.Fatalf("fds: %d after the peer closed, want %d: the dialed connection kept its fd", suiteFds(t), base)
			}
		})
	}
}

// docs/contract.md C16.13: Shutdown closes every connection it accepted, even those accepted
// just before it.
func TestRoughEdgeShutdownClosesEveryAccepted(t *testing.T) {
	suiteCheckLeaks(t)
	for round := 0; round < 10; round++ {
		var mu sync.Mutex
		var accepted []Connection
		srv := suiteServe(t, "tcp", nil, WithOnPrepare(func(c Connection) context.Context {
			mu.Lock()
			accepted = append(accepted, c)
			mu.Unlock()
			return nil
		}))
		const clients = 40
		var wg sync.WaitGroup
		var hung atomic.Int64
		for i := 0; i < clients; i++ {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				time.Sleep(time.Duration(i) * 100 * time.Microsecond)
				p, err := net.DialTimeout("tcp", srv.addr, suiteWait)
				if err != nil {
					return // after Shutdown: refused
				}
				defer p.Close()
				_ = p.SetReadDeadline(time.Now().Add(suiteWait))
				if _, err := p.Read(make([]byte, 1)); err != nil {
					var ne net.Error
					if errors.As(err, &ne) && ne.Timeout() {
						hung.Add(1)
					}
				}
			}(i)
		}
		time.Sleep(time.Duration(round%4) * time.Millisecond)
		if err := srv.stop(); err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		for _, c := range accepted {
			if c.IsActive() {
				t.Errorf("round %d: a connection accepted before Shutdown is still open", round)
			}
		}
		n := len(accepted)
		mu.Unlock()
		wg.Wait()
		if hung.Load() != 0 {
			t.Fatalf("round %d: %d clients were never closed (%d accepted)", round, hung.Load(), n)
		}
	}
}

// Shutdown racing a Serve that has just started: Serve returns nil (not the
// error of registering a listener Shutdown already closed), Shutdown
// returns nil, and afterwards the port refuses connections.
func TestRegressServeShutdownRace(t *testing.T) {
	suiteCheckLeaks(t)
	var serveErrs, open int
	var firstErr error
	for i := 0; i < 200; i++ {
		before := suiteFdSet()
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		evl, _ := NewEventLoop(nil)
		done := make(chan error, 1)
		go func() { done <- evl.Serve(ln) }()
		if i%4 != 0 {
			// Shutdown once Serve is in, at varying points of its start.
			el := evl.(*eventLoop)
			eventually(t, func() bool { el.mu.Lock(); defer el.mu.Unlock(); return el.svr != nil || el.done }, "el.svr != nil || el.done")
			for j := 0; j < i%7; j++ {
				runtime.Gosched()
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), suiteWait)
		if err := evl.Shutdown(ctx); err != nil {
			t.Fatalf("Shutdown: %v", err)
		}
		cancel()
		var serveErr error
		select {
		case serveErr = <-done:
		case <-time.After(200 * time.Millisecond):
			// Shutdown came first: Serve found nothing to stop (a no-op
			// Shutdown is allowed) and may run on; end it.
			_ = evl.Shutdown(context.Background())
			ln.Close()
			serveErr = suiteErrWithin(t, "Serve after the second Shutdown", done)
		}
		if serveErr != nil {
			serveErrs++
			if firstErr == nil {
				firstErr = serveErr
			}
		}
		ln.Close()
		if c, err := net.DialTimeout("tcp", ln.Addr().String(), time.Second); err == nil {
			open++
			c.Close()
		}
		suiteCloseNewFds(before) // a leaked duplicate (see TestMisuseServeAfterShutdown)
	}
	if serveErrs > 0 || open > 0 {
		t.Fatalf("Shutdown racing a starting Serve: %d of 200 Serves returned an error (first: %v); %d ports still accepted after Shutdown and Close", serveErrs, firstErr, open)
	}
}

// A panic in OnPrepare (which runs on the poller) closes that connection,
// and the poller and the server go on serving the next ones.
func TestRegressPanicInOnPrepare(t *testing.T) {
	suiteCheckLeaks(t)
	var logged suiteLockedBuffer
	SetLoggerOutput(&logged)
	defer SetLoggerOutput(os.Stderr)
	defer func() {
		if !strings.Contains(logged.String(), "boom in OnPrepare") {
			t.Errorf("the OnPrepare panic was not logged: %q", logged.String())
		}
	}()
	var n atomic.Int64
	srv := suiteServe(t, "tcp", func(ctx context.Context, c Connection) error {
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
		_ = p.SetDeadline(time.Now().Add(suiteWait))
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

// suiteLockedBuffer is a bytes.Buffer safe for concurrent writers.
type suiteLockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *suiteLockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *suiteLockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// A detached fd handed to NewFDConnection works as a new connection: the
// old operator's registration is gone and none of its events reach the new
// owner.
func TestRegressDetachThenRewrap(t *testing.T) {
	for _, network := range suiteNetworks {
		t.Run(network, func(t *testing.T) {
			suiteCheckLeaks(t)
			ln := suiteStdEcho(t, network)
			for i := 0; i < 20; i++ {
				c, err := DialConnection(network, ln.Addr().String(), suiteWait)
				if err != nil {
					t.Fatal(err)
				}
				_, _ = c.Write([]byte("before")) // an echo may arrive around the Detach
				d := c.(interface {
					Detach() error
					Fd() int
				})
				fd := d.Fd()
				if err = d.Detach(); err != nil {
					t.Fatal(err)
				}
				nc, err := NewFDConnection(fd)
				if err != nil {
					unix.Close(fd)
					t.Fatalf("round %d: NewFDConnection on a detached fd: %v", i, err)
				}
				_ = nc.SetReadTimeout(suiteWait)
				// Whatever of "before" was not read by the old connection arrives here.
				msg := fmt.Sprintf("after %d\n", i)
				if _, err = nc.Write([]byte(msg)); err != nil {
					nc.Close()
					t.Fatalf("round %d: %v", i, err)
				}
				got, err := nc.Reader().Until('\n')
				if err != nil || !strings.HasSuffix(string(got), msg) || !strings.HasSuffix("before", strings.TrimSuffix(string(got), msg)) {
					nc.Close()
					t.Fatalf("round %d: the re-wrapped fd read %q, %v", i, got, err)
				}
				if !nc.IsActive() {
					t.Fatalf("round %d: an old event closed the new owner", i)
				}
				nc.Close()
			}
		})
	}
}

// Deadlines a few microseconds away, over and over: every read times out,
// none sleeps on past its deadline. The timer may fire before sleep has
// finished arming it; the arming must not then mistake the firing for a
// signal.
func TestRegressReadDeadlineImminent(t *testing.T) {
	suiteCheckLeaks(t)
	dc, _ := suiteFdConn(t)
	defer dc.Close()
	done := make(chan error, 1)
	go func() {
		for i := 0; i < 4000; i++ {
			_ = dc.SetReadDeadline(time.Now().Add(time.Duration(i%20) * time.Microsecond))
			if _, err := dc.Reader().Next(1); !errors.Is(err, ErrReadTimeout) {
				done <- fmt.Errorf("read %d: %v, want ErrReadTimeout", i, err)
				return
			}
		}
		done <- nil
	}()
	if err := suiteErrWithin(t, "4000 reads with imminent deadlines", done); err != nil {
		t.Fatal(err)
	}
}
