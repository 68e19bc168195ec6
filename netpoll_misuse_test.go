//go:build darwin || freebsd || linux

package netpoll

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"runtime"
	"sort"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Bad input and misuse, table-driven over the exported API: every case must
// return an error (or the documented zero result), must not panic, and must
// return within a bound.

// suiteWant is what a misuse case must return.
type suiteWant int

const (
	suiteWantErr suiteWant = iota // an error
	suiteWantNil                  // nil: the documented no-op or zero result
	suiteWantAny                  // either; the case checks only "no panic, no hang"
)

// suiteCase is one call with bad input.
type suiteCase struct {
	name string
	want suiteWant
	call func() error
}

// suiteRunCases runs every case under a recover and a timeout.
func suiteRunCases(t *testing.T, cases []suiteCase) {
	t.Helper()
	for _, c := range cases {
		var err error
		done := make(chan interface{}, 1)
		go func() {
			defer func() { done <- recover() }()
			err = c.call()
		}()
		select {
		case r := <-done:
			if r != nil {
				t.Errorf("%s: panic: %v", c.name, r)
				continue
			}
		case <-time.After(10 * time.Second):
			t.Errorf("%s: did not return within 10s", c.name)
			continue
		}
		switch {
		case c.want == suiteWantErr && err == nil:
			t.Errorf("%s: no error", c.name)
		case c.want == suiteWantNil && err != nil:
			t.Errorf("%s: %v, want nil", c.name, err)
		}
	}
}

// suiteNonNil turns a "must be non-nil/true" check into an error.
func suiteCheck(ok bool, what string) error {
	if !ok {
		return errors.New(what)
	}
	return nil
}

// suiteFlushed returns a LinkBuffer holding s, readable.
func suiteFlushed(s string) *LinkBuffer {
	b := NewLinkBuffer()
	_, _ = b.WriteString(s)
	_ = b.Flush()
	return b
}

func TestMisuseLinkBufferSizes(t *testing.T) {
	const huge = 1 << 40
	b := suiteFlushed("hello world")
	defer b.Close()
	x := []byte("x")
	zero := func(p []byte, err error) error { return suiteFirstErr(err, suiteCheck(len(p) == 0, "data for n<=0")) }
	cases := []suiteCase{
		{"Next(-1)", suiteWantNil, func() error { return zero(b.Next(-1)) }},
		{"Peek(-1)", suiteWantNil, func() error { return zero(b.Peek(-1)) }},
		{"Skip(-1)", suiteWantNil, func() error { return b.Skip(-1) }},
		{"ReadString(-1)", suiteWantNil, func() error { s, err := b.ReadString(-1); return zero([]byte(s), err) }},
		{"ReadBinary(-1)", suiteWantNil, func() error { return zero(b.ReadBinary(-1)) }},
		{"Slice(-1)", suiteWantNil, func() error {
			r, err := b.Slice(-1)
			return suiteFirstErr(err, suiteCheck(r != nil && r.Len() == 0, "Slice(-1) not an empty Reader"))
		}},
		{"Next(huge)", suiteWantErr, func() error { _, err := b.Next(huge); return err }},
		{"Peek(huge)", suiteWantErr, func() error { _, err := b.Peek(huge); return err }},
		{"Skip(huge)", suiteWantErr, func() error { return b.Skip(huge) }},
		{"ReadString(huge)", suiteWantErr, func() error { _, err := b.ReadString(huge); return err }},
		{"ReadBinary(huge)", suiteWantErr, func() error { _, err := b.ReadBinary(huge); return err }},
		{"Slice(huge)", suiteWantErr, func() error { _, err := b.Slice(huge); return err }},
		{"Next(0)", suiteWantNil, func() error { p, err := b.Next(0); return suiteFirstErr(err, suiteCheck(len(p) == 0, "data")) }},
		{"Malloc(-1)", suiteWantNil, func() error { return zero(b.Malloc(-1)) }},
		{"Malloc(0)", suiteWantNil, func() error { _, err := b.Malloc(0); return err }},
		{"Malloc(huge)", suiteWantErr, func() error { _, err := b.Malloc(huge); return err }},
		{"Malloc(MaxInt)", suiteWantErr, func() error { _, err := b.Malloc(int(^uint(0) >> 1)); return err }},
		{"MallocAck(-1)", suiteWantErr, func() error { return b.MallocAck(-1) }},
		{"MallocAck(huge)", suiteWantErr, func() error { return b.MallocAck(huge) }},
		{"WriteDirect(nil,-1)", suiteWantNil, func() error { return b.WriteDirect(nil, -1) }},
		{"WriteDirect(x,-1)", suiteWantNil, func() error { return b.WriteDirect(x, -1) }},
		{"WriteDirect(x,huge)", suiteWantErr, func() error { return b.WriteDirect(x, huge) }},
		{"WriteBinary(nil)", suiteWantNil, func() error { _, err := b.WriteBinary(nil); return err }},
		{"WriteString(\"\")", suiteWantNil, func() error { _, err := b.WriteString(""); return err }},
		{"Append(nil)", suiteWantErr, func() error { return b.Append(nil) }},
		{"Append(other Writer)", suiteWantErr, func() error { return b.Append(NewWriter(io.Discard)) }},
		{"Append(nil *LinkBuffer)", suiteWantNil, func() error { return b.Append((*LinkBuffer)(nil)) }},
		{"WriteBuffer(nil)", suiteWantNil, func() error { return b.WriteBuffer(nil) }},
		{"WriteBuffer(self)", suiteWantErr, func() error { return b.WriteBuffer(b) }},
		{"WriteBuffer(closed)", suiteWantErr, func() error { o := suiteFlushed("x"); o.Close(); return b.WriteBuffer(o) }},
		{"GetBytes(nil)", suiteWantAny, func() error { _ = b.GetBytes(nil); return nil }},
		{"Until(missing)", suiteWantErr, func() error { _, err := b.Until('#'); return err }},
		{"ReadByte(empty)", suiteWantErr, func() error { _, err := NewLinkBuffer().ReadByte(); return err }},
		{"Release(empty)", suiteWantNil, func() error { return NewLinkBuffer().Release() }},
		{"NewLinkBuffer(-1)", suiteWantNil, func() error { return NewLinkBuffer(-1).Close() }},
		{"NewLinkBuffer(0,1,2)", suiteWantNil, func() error { return NewLinkBuffer(0, 1, 2).Close() }},
	}
	if suiteSoak() { // it takes a whole node of the largest size: slow under -race
		cases = append(cases, suiteCase{"NewLinkBuffer(huge)", suiteWantNil, func() error { return NewLinkBuffer(huge).Close() }})
	}
	suiteRunCases(t, cases)
	runtime.GC() // give back what NewLinkBuffer(huge) took
	// The data is intact after all that.
	if got := string(b.Bytes()); got != "hello world" {
		t.Fatalf("buffer after the misuse: %q", got)
	}
}

func suiteFirstErr(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// Every LinkBuffer method after Close: an error or the zero result.
func TestMisuseLinkBufferAfterClose(t *testing.T) {
	b := suiteFlushed("data")
	_, _ = b.Malloc(8)
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	closed := func(err error) error {
		if !errors.Is(err, ErrConnClosed) {
			return errors.New("not ErrConnClosed: " + suiteErrString(err))
		}
		return nil
	}
	cases := []suiteCase{
		{"Next", suiteWantNil, func() error { _, err := b.Next(1); return closed(err) }},
		{"Peek", suiteWantNil, func() error { _, err := b.Peek(1); return closed(err) }},
		{"Skip", suiteWantNil, func() error { return closed(b.Skip(1)) }},
		{"Until", suiteWantNil, func() error { _, err := b.Until('a'); return closed(err) }},
		{"ReadString", suiteWantNil, func() error { _, err := b.ReadString(1); return closed(err) }},
		{"ReadBinary", suiteWantNil, func() error { _, err := b.ReadBinary(1); return closed(err) }},
		{"ReadByte", suiteWantNil, func() error { _, err := b.ReadByte(); return closed(err) }},
		{"Slice", suiteWantNil, func() error { _, err := b.Slice(1); return closed(err) }},
		{"Release", suiteWantNil, func() error { return closed(b.Release()) }},
		{"Len", suiteWantNil, func() error { return suiteCheck(b.Len() == 0, "Len != 0") }},
		{"IsEmpty", suiteWantNil, func() error { return suiteCheck(b.IsEmpty(), "not empty") }},
		{"Malloc", suiteWantNil, func() error { _, err := b.Malloc(1); return closed(err) }},
		{"MallocLen", suiteWantNil, func() error { return suiteCheck(b.MallocLen() == 0, "MallocLen != 0") }},
		{"MallocAck", suiteWantNil, func() error { return closed(b.MallocAck(0)) }},
		{"WriteString", suiteWantNil, func() error { _, err := b.WriteString("x"); return closed(err) }},
		{"WriteBinary", suiteWantNil, func() error { _, err := b.WriteBinary(make([]byte, 10000)); return closed(err) }},
		{"WriteByte", suiteWantNil, func() error { return closed(b.WriteByte('x')) }},
		{"WriteDirect", suiteWantNil, func() error { return closed(b.WriteDirect([]byte("x"), 0)) }},
		{"Append", suiteWantNil, func() error { return closed(b.Append(suiteFlushed("x"))) }},
		{"WriteBuffer", suiteWantNil, func() error { return closed(b.WriteBuffer(suiteFlushed("x"))) }},
		{"Flush", suiteWantNil, func() error { return closed(b.Flush()) }},
		{"Bytes", suiteWantNil, func() error { return suiteCheck(len(b.Bytes()) == 0, "Bytes not empty") }},
		{"GetBytes", suiteWantNil, func() error { return suiteCheck(len(b.GetBytes(make([][]byte, 4))) == 0, "GetBytes not empty") }},
		{"Close again", suiteWantNil, func() error { return b.Close() }},
	}
	suiteRunCases(t, cases)
}

func suiteErrString(err error) string {
	if err == nil {
		return "nil"
	}
	return err.Error()
}

// suiteConnCases are the bad-size and bad-argument calls on a live connection.
func suiteConnCases(c Connection) []suiteCase {
	const huge = 1 << 40
	x := []byte("x")
	var rd Reader = c.Reader()
	var wr Writer = c.Writer()
	zero := func(p []byte, err error) error { return suiteFirstErr(err, suiteCheck(len(p) == 0, "data for n<=0")) }
	return []suiteCase{
		{"Next(-1)", suiteWantNil, func() error { return zero(rd.Next(-1)) }},
		{"Peek(-1)", suiteWantNil, func() error { return zero(rd.Peek(-1)) }},
		{"Skip(-1)", suiteWantNil, func() error { return rd.Skip(-1) }},
		{"ReadString(-1)", suiteWantNil, func() error { s, err := rd.ReadString(-1); return zero([]byte(s), err) }},
		{"ReadBinary(-1)", suiteWantNil, func() error { return zero(rd.ReadBinary(-1)) }},
		{"Slice(-1)", suiteWantNil, func() error {
			r, err := rd.Slice(-1)
			return suiteFirstErr(err, suiteCheck(r != nil && r.Len() == 0, "Slice(-1) not an empty Reader"))
		}},
		{"Next(0)", suiteWantNil, func() error { return zero(rd.Next(0)) }},
		{"Read(nil)", suiteWantNil, func() error { n, err := c.Read(nil); return suiteFirstErr(err, suiteCheck(n == 0, "n != 0")) }},
		{"Next(huge) times out", suiteWantNil, func() error {
			_ = c.SetReadTimeout(50 * time.Millisecond)
			defer c.SetReadTimeout(0)
			_, err := rd.Next(huge)
			return suiteCheck(errors.Is(err, ErrReadTimeout), "Next(huge): "+suiteErrString(err))
		}},
		{"Peek(huge) times out", suiteWantNil, func() error {
			_ = c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
			defer c.SetReadDeadline(time.Time{})
			_, err := rd.Peek(huge)
			return suiteCheck(errors.Is(err, ErrReadTimeout), "Peek(huge): "+suiteErrString(err))
		}},
		{"ReadByte past deadline", suiteWantNil, func() error {
			_ = c.SetReadDeadline(time.Now().Add(-time.Second))
			defer c.SetReadDeadline(time.Time{})
			_, err := rd.ReadByte()
			return suiteCheck(errors.Is(err, ErrReadTimeout), "ReadByte: "+suiteErrString(err))
		}},
		{"Malloc(-1)", suiteWantNil, func() error { return zero(wr.Malloc(-1)) }},
		{"Malloc(huge)", suiteWantErr, func() error { _, err := wr.Malloc(huge); return err }},
		{"Malloc(0)", suiteWantNil, func() error { _, err := wr.Malloc(0); return err }},
		{"MallocAck(-1)", suiteWantErr, func() error { return wr.MallocAck(-1) }},
		{"MallocAck(huge)", suiteWantErr, func() error { return wr.MallocAck(huge) }},
		{"WriteDirect(x,huge)", suiteWantErr, func() error { return wr.WriteDirect(x, huge) }},
		{"WriteDirect(nil,-1)", suiteWantNil, func() error { return wr.WriteDirect(nil, -1) }},
		{"WriteBinary(nil)", suiteWantNil, func() error { _, err := wr.WriteBinary(nil); return err }},
		{"WriteString(\"\")", suiteWantNil, func() error { _, err := wr.WriteString(""); return err }},
		{"Append(nil)", suiteWantErr, func() error { return wr.Append(nil) }},
		{"Append(other Writer)", suiteWantErr, func() error { return wr.Append(NewWriter(io.Discard)) }},
		{"Append(closed LinkBuffer)", suiteWantErr, func() error {
			b := suiteFlushed("x")
			b.Close()
			if err := wr.Append(b); !errors.Is(err, ErrConnClosed) {
				return err
			}
			return nil // the connection is open: an ErrConnClosed would mislead
		}},
		{"Write(nil)", suiteWantNil, func() error { n, err := c.Write(nil); return suiteFirstErr(err, suiteCheck(n == 0, "n != 0")) }},
		{"Flush(empty)", suiteWantNil, func() error { return wr.Flush() }},
		{"SetReadTimeout(-1)", suiteWantNil, func() error { return c.SetReadTimeout(-1) }},
		{"SetWriteTimeout(-1)", suiteWantNil, func() error { return c.SetWriteTimeout(-1) }},
		{"SetIdleTimeout(-1)", suiteWantNil, func() error { return c.SetIdleTimeout(-1) }},
		{"SetIdleTimeout(0)", suiteWantNil, func() error { return c.SetIdleTimeout(0) }},
		{"SetDeadline(zero)", suiteWantNil, func() error { return c.SetDeadline(time.Time{}) }},
		{"SetOnRequest(nil)", suiteWantNil, func() error { return c.SetOnRequest(nil) }},
		{"AddCloseCallback(nil)", suiteWantNil, func() error { return c.AddCloseCallback(nil) }},
		{"SetOnConnect(nil)", suiteWantNil, func() error {
			return c.(interface{ SetOnConnect(OnConnect) error }).SetOnConnect(nil)
		}},
		{"SetOnDisconnect(nil)", suiteWantNil, func() error {
			return c.(interface{ SetOnDisconnect(OnDisconnect) error }).SetOnDisconnect(nil)
		}},
	}
}

// Bad sizes and arguments on live connections of every kind; afterwards the
// connection still carries data.
func TestMisuseConnectionArguments(t *testing.T) {
	suiteCheckLeaks(t)
	for _, network := range suiteNetworks {
		t.Run(network, func(t *testing.T) {
			ln := suiteStdEcho(t, network)
			c, err := DialConnection(network, ln.Addr().String(), suiteWait)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			ka := c.(interface{ SetKeepAlive(int) error })
			cases := suiteConnCases(c)
			if network == "tcp" {
				cases = append(cases,
					suiteCase{"SetKeepAlive(0)", suiteWantErr, func() error { return ka.SetKeepAlive(0) }},
					suiteCase{"SetKeepAlive(-5)", suiteWantErr, func() error { return ka.SetKeepAlive(-5) }},
					suiteCase{"SetKeepAlive(huge)", suiteWantAny, func() error { return ka.SetKeepAlive(1 << 40) }})
			} else {
				cases = append(cases, suiteCase{"SetKeepAlive on unix", suiteWantNil, func() error { return ka.SetKeepAlive(10) }})
			}
			suiteRunCases(t, cases)
			_, _ = c.Writer().Malloc(0)
			if err := c.Writer().MallocAck(0); err != nil {
				t.Fatal(err)
			}
			_ = c.SetReadTimeout(suiteWait)
			if _, err = c.Write([]byte("still works")); err != nil {
				t.Fatal(err)
			}
			if s, err := c.Reader().ReadString(11); err != nil || s != "still works" {
				t.Fatalf("after the misuse: %q, %v", s, err)
			}
		})
	}
	t.Run("fd connection", func(t *testing.T) {
		c, _ := suiteFdConn(t)
		suiteRunCases(t, suiteConnCases(c))
	})
}

// Every one of the 40 methods after Close, on a dialed connection with
// buffered input and pending output.
func TestMisuseConnectionAfterClose(t *testing.T) {
	suiteCheckLeaks(t)
	ln := suiteStdEcho(t, "tcp")
	c, err := DialConnection("tcp", ln.Addr().String(), suiteWait)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = c.Write([]byte("0123456789"))
	eventually(t, func() bool { return c.Reader().Len() == 10 }, "c.Reader().Len() == 10")
	_, _ = c.Writer().Malloc(5)
	if err = c.Close(); err != nil {
		t.Fatal(err)
	}
	full := c.(*TCPConnection)
	readOK := func(err error) error { // buffered data or ErrConnClosed
		if err != nil && !errors.Is(err, ErrConnClosed) {
			return err
		}
		return nil
	}
	closed := func(err error) error {
		return suiteCheck(errors.Is(err, ErrConnClosed), "want ErrConnClosed, got "+suiteErrString(err))
	}
	cases := []suiteCase{
		{"Next", suiteWantNil, func() error { _, err := full.Next(1); return readOK(err) }},
		{"Peek", suiteWantNil, func() error { _, err := full.Peek(1); return readOK(err) }},
		{"Skip", suiteWantNil, func() error { return readOK(full.Skip(1)) }},
		{"Until", suiteWantNil, func() error { _, err := full.Until('9'); return readOK(err) }},
		{"ReadString", suiteWantNil, func() error { _, err := full.ReadString(1); return readOK(err) }},
		{"ReadBinary", suiteWantNil, func() error { _, err := full.ReadBinary(1); return readOK(err) }},
		{"ReadByte", suiteWantNil, func() error { _, err := full.ReadByte(); return readOK(err) }},
		{"Slice", suiteWantNil, func() error { _, err := full.Slice(1); return readOK(err) }},
		{"Next(more than buffered)", suiteWantNil, func() error { _, err := full.Next(1 << 20); return closed(err) }},
		{"Release", suiteWantNil, func() error { return full.Release() }},
		{"Len", suiteWantAny, func() error { _ = full.Len(); return nil }},
		{"Read", suiteWantNil, func() error { _, err := full.Read(make([]byte, 4)); return readOK(err) }},
		{"Malloc", suiteWantNil, func() error { _, err := full.Malloc(1); return closed(err) }},
		{"WriteString", suiteWantNil, func() error { _, err := full.WriteString("x"); return closed(err) }},
		{"WriteBinary", suiteWantNil, func() error { _, err := full.WriteBinary([]byte("x")); return closed(err) }},
		{"WriteByte", suiteWantNil, func() error { return closed(full.WriteByte('x')) }},
		{"WriteDirect", suiteWantNil, func() error { return closed(full.WriteDirect([]byte("x"), 0)) }},
		{"MallocAck", suiteWantNil, func() error { return closed(full.MallocAck(0)) }},
		{"Append", suiteWantNil, func() error { return closed(full.Append(suiteFlushed("x"))) }},
		{"Flush", suiteWantNil, func() error { return closed(full.Flush()) }},
		{"MallocLen", suiteWantAny, func() error { _ = full.MallocLen(); return nil }},
		{"Write", suiteWantNil, func() error { _, err := full.Write([]byte("x")); return closed(err) }},
		{"Close", suiteWantNil, func() error { return full.Close() }},
		{"LocalAddr", suiteWantAny, func() error { _ = full.LocalAddr(); return nil }},
		{"RemoteAddr", suiteWantAny, func() error { _ = full.RemoteAddr(); return nil }},
		{"SetDeadline", suiteWantNil, func() error { return full.SetDeadline(time.Now()) }},
		{"SetReadDeadline", suiteWantNil, func() error { return full.SetReadDeadline(time.Now()) }},
		{"SetWriteDeadline", suiteWantNil, func() error { return full.SetWriteDeadline(time.Now()) }},
		{"Reader", suiteWantNil, func() error { return suiteCheck(full.Reader() != nil, "nil Reader") }},
		{"Writer", suiteWantNil, func() error { return suiteCheck(full.Writer() != nil, "nil Writer") }},
		{"IsActive", suiteWantNil, func() error { return suiteCheck(!full.IsActive(), "active after Close") }},
		{"SetReadTimeout", suiteWantNil, func() error { return full.SetReadTimeout(time.Second) }},
		{"SetWriteTimeout", suiteWantNil, func() error { return full.SetWriteTimeout(time.Second) }},
		{"SetIdleTimeout", suiteWantAny, func() error { return full.SetIdleTimeout(time.Minute) }},
		{"SetOnRequest", suiteWantNil, func() error {
			return full.SetOnRequest(func(ctx context.Context, c Connection) error { return nil })
		}},
		{"AddCloseCallback", suiteWantNil, func() error { return full.AddCloseCallback(func(Connection) error { return nil }) }},
		{"Fd", suiteWantAny, func() error { _ = full.Fd(); return nil }},
		{"Detach", suiteWantErr, func() error { return full.Detach() }},
		{"SetKeepAlive", suiteWantAny, func() error { return full.SetKeepAlive(5) }},
		{"SetOnConnect", suiteWantNil, func() error {
			return full.SetOnConnect(func(ctx context.Context, c Connection) context.Context { return ctx })
		}},
		{"SetOnDisconnect", suiteWantNil, func() error { return full.SetOnDisconnect(func(context.Context, Connection) {}) }},
	}
	suiteRunCases(t, cases)
}

// suiteOddListener is a net.Listener this package cannot convert.
type suiteOddListener struct{}

func (suiteOddListener) Accept() (net.Conn, error) { return nil, errors.New("odd") }
func (suiteOddListener) Close() error              { return nil }
func (suiteOddListener) Addr() net.Addr            { return &net.TCPAddr{} }

// Serve and Shutdown misused: nil and foreign listeners, twice, out of
// order, nil ctx; none may panic, hang or leak a fd.
func TestMisuseEventLoop(t *testing.T) {
	suiteCheckLeaks(t)
	newLoop := func() EventLoop {
		evl, err := NewEventLoop(nil)
		if err != nil {
			t.Fatal(err)
		}
		return evl
	}
	cases := []suiteCase{
		{"NewEventLoop(nil, zero Option)", suiteWantNil, func() error { _, err := NewEventLoop(nil, Option{}); return err }},
		{"Serve(nil)", suiteWantErr, func() error { return newLoop().Serve(nil) }},
		{"Serve(foreign listener)", suiteWantErr, func() error { return newLoop().Serve(suiteOddListener{}) }},
		{"Shutdown before Serve", suiteWantNil, func() error { return newLoop().Shutdown(context.Background()) }},
		{"Shutdown(nil) before Serve", suiteWantNil, func() error { return newLoop().Shutdown(nil) }},
		{"Shutdown twice", suiteWantNil, func() error {
			evl := newLoop()
			_ = evl.Shutdown(context.Background())
			return evl.Shutdown(context.Background())
		}},
		{"Serve(closed listener)", suiteWantErr, func() error {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				return nil
			}
			ln.Close()
			return newLoop().Serve(ln)
		}},
		{"Serve(udp listener)", suiteWantErr, func() error {
			ln, err := CreateListener("udp", "127.0.0.1:0")
			if err != nil {
				return nil
			}
			defer ln.Close()
			return newLoop().Serve(ln)
		}},
	}
	suiteRunCases(t, cases)
}

// Serve while already serving fails at once, and the converted duplicate of
// the listener is not left open.
func TestMisuseServeTwice(t *testing.T) {
	suiteCheckLeaks(t)
	srv := suiteServe(t, "tcp", nil)
	ln2, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln2.Close()
	before := suiteFdSet()
	var serveErr error
	suiteRun(t, "second Serve", suiteWait, func() { serveErr = srv.evl.Serve(ln2) })
	if serveErr == nil {
		t.Fatal("a second concurrent Serve returned nil")
	}
	if n := suiteCloseNewFds(before); n != 0 {
		t.Fatalf("a refused second Serve leaves %d duplicate fd of its listener open (eventloop_server.go Serve: ConvertListener before the errServing check)", n)
	}
}

// Serve after Shutdown returns nil at once, and leaves no duplicate of the
// listener open: once the caller closes its listener, the port is free.
func TestMisuseServeAfterShutdown(t *testing.T) {
	suiteCheckLeaks(t)
	evl, _ := NewEventLoop(nil)
	if err := evl.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	before := suiteFdSet()
	var serveErr error
	suiteRun(t, "Serve after Shutdown", suiteWait, func() { serveErr = evl.Serve(ln) })
	if serveErr != nil {
		t.Fatalf("Serve after Shutdown: %v", serveErr)
	}
	ln.Close()
	// Once the caller closed its listener the port must refuse connections;
	// a leaked duplicate keeps it listening.
	c, err := net.DialTimeout("tcp", ln.Addr().String(), time.Second)
	if err == nil {
		c.Close()
	}
	if n := suiteCloseNewFds(before); n != 0 {
		t.Fatalf("Serve after Shutdown leaves %d duplicate fd of the listener open; the port still accepts after the caller closed it (dial: %v) (eventloop_server.go Serve: ConvertListener before the done check)", n, err)
	}
	if err == nil {
		t.Fatal("the port accepts after the caller closed its listener")
	}
}

// Shutdown(nil) on a serving loop with a busy connection behaves as a ctx
// that never ends: no panic.
func TestMisuseShutdownNilCtx(t *testing.T) {
	suiteCheckLeaks(t)
	release := make(chan struct{})
	started := make(chan struct{}, 1)
	srv := suiteServe(t, "tcp", func(ctx context.Context, c Connection) error {
		suiteTrySend(started, struct{}{})
		<-release
		return c.Reader().Skip(c.Reader().Len())
	})
	p := srv.dialStd(t)
	defer p.Close()
	_, _ = p.Write([]byte("busy"))
	suiteClosedWithin(t, "OnRequest", started)
	time.AfterFunc(200*time.Millisecond, func() { close(release) })
	var err error
	var panicked interface{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer func() { panicked = recover() }()
		err = srv.evl.Shutdown(nil)
	}()
	suiteClosedWithin(t, "Shutdown(nil)", done)
	if panicked != nil {
		_ = srv.stop()
		t.Fatalf("Shutdown(nil) with a busy connection panics: %v", panicked)
	}
	if err != nil {
		t.Fatalf("Shutdown(nil): %v", err)
	}
	_ = srv.stop()
}

// nil callbacks and options: a loop built from them serves, closes and
// shuts down like one without.
func TestMisuseNilCallbacks(t *testing.T) {
	suiteCheckLeaks(t)
	srv := suiteServe(t, "tcp", nil,
		WithOnPrepare(nil), WithOnConnect(nil), WithOnDisconnect(nil),
		WithReadTimeout(-1), WithWriteTimeout(-1), WithIdleTimeout(-1), Option{})
	c := srv.dial(t)
	_ = c.SetOnRequest(nil)
	_ = c.AddCloseCallback(nil)
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	p := srv.dialStd(t) // silent: its connection is idle, Shutdown closes it
	defer p.Close()
	eventually(t, func() bool { return suiteServerConns(srv.sv) >= 1 }, "suiteServerConns(srv.sv) >= 1")
	time.Sleep(50 * time.Millisecond)
	if err := srv.stop(); err != nil {
		t.Fatal(err)
	}
	if b, err := suiteSlowRead(p); len(b) != 0 || (err != nil && !suiteIsReset(err)) {
		t.Fatalf("client after Shutdown: %q, %v; want EOF", b, err)
	}
}

// suiteServerConns is the number of connections a server still tracks.
func suiteServerConns(s *server) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

// A loop without handlers: a connection whose peer sent bytes and closed is
// dead, yet it must not keep Shutdown waiting, nor stay in the server's
// books for ever.
func TestMisuseNoHandlerPeerClosedWithData(t *testing.T) {
	suiteCheckLeaks(t)
	srv := suiteServe(t, "tcp", nil)
	for i := 0; i < 3; i++ {
		p := srv.dialStd(t)
		_, _ = p.Write([]byte("nobody reads this"))
		p.Close()
	}
	eventually(t, func() bool { return suiteServerConns(srv.sv) == 3 }, "three tracked connections")
	eventually(t, func() bool { // the peers' closes are seen
		srv.sv.mu.Lock()
		defer srv.sv.mu.Unlock()
		for c := range srv.sv.conns {
			if c.IsActive() {
				return false
			}
		}
		return true
	}, "the peers' closes to be seen")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	sv := srv.sv
	err := srv.evl.Shutdown(ctx)
	left := suiteServerConns(sv)
	if err != nil || left != 0 {
		sv.mu.Lock()
		for c := range sv.conns {
			defer c.Close()
		}
		sv.mu.Unlock()
		t.Fatalf("Shutdown of a loop without OnRequest: %v, %d peer-closed connections with unread input still tracked (eventloop_server.go closeIdle counts them busy; connection_reactor.go peerClosed never finalizes a connection without handlers)", err, left)
	}
}

// Dial, listen and resolve with wrong network names and malformed addresses.
func TestMisuseAddresses(t *testing.T) {
	suiteCheckLeaks(t)
	tcp := suiteStdEcho(t, "tcp").Addr().String()
	unixPath := suiteStdEcho(t, "unix").Addr().String()
	raddr, _ := ResolveTCPAddr("tcp", tcp)
	uaddr, _ := ResolveUnixAddr("unix", unixPath)
	dial := func(network, addr string) func() error {
		return func() error {
			c, err := DialConnection(network, addr, time.Second)
			if err == nil {
				c.Close()
				return nil
			}
			tc, _ := c.(*TCPConnection)
			uc, _ := c.(*UnixConnection)
			return suiteFirstErr(suiteCheck(tc == nil && uc == nil, "a failed dial returned a live Connection"), err)
		}
	}
	dialTimeout := func(network, addr string) func() error {
		return func() error {
			c, err := NewDialer().DialTimeout(network, addr, time.Second)
			if err == nil {
				c.Close()
				return nil
			}
			tc, _ := c.(*TCPConnection)
			uc, _ := c.(*UnixConnection)
			return suiteFirstErr(suiteCheck(tc == nil && uc == nil, "a failed dial returned a live net.Conn"), err)
		}
	}
	listen := func(network, addr string) func() error {
		return func() error {
			ln, err := CreateListener(network, addr)
			if err == nil {
				ln.Close()
			}
			return err
		}
	}
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	cases := []suiteCase{
		{"DialConnection bogus network", suiteWantErr, dial("bogus", tcp)},
		{"DialConnection empty network", suiteWantErr, dial("", tcp)},
		{"DialConnection udp", suiteWantErr, dial("udp", tcp)},
		{"DialConnection ip", suiteWantErr, dial("ip", "127.0.0.1")},
		{"DialConnection tcp empty address", suiteWantErr, dial("tcp", "")},
		{"DialConnection tcp no port", suiteWantErr, dial("tcp", "127.0.0.1")},
		{"DialConnection tcp port 99999", suiteWantErr, dial("tcp", "127.0.0.1:99999")},
		{"DialConnection tcp port -1", suiteWantErr, dial("tcp", "127.0.0.1:-1")},
		{"DialConnection tcp bad port name", suiteWantErr, dial("tcp", "127.0.0.1:nosuchservice")},
		{"DialConnection tcp port 0", suiteWantErr, dial("tcp", "127.0.0.1:0")},
		{"DialConnection tcp open bracket", suiteWantErr, dial("tcp", "[::1:80")},
		{"DialConnection tcp bad IP", suiteWantErr, dial("tcp", "256.256.256.256:80")},
		{"DialConnection tcp4 to IPv6", suiteWantErr, dial("tcp4", "[::1]:80")},
		{"DialConnection tcp6 to IPv4", suiteWantNil, dial("tcp6", tcp)}, // the IP, not the network, picks the family
		{"DialConnection tcp NUL", suiteWantErr, dial("tcp", "127.0.0.1\x00:80")},
		{"DialConnection unix empty", suiteWantErr, dial("unix", "")},
		{"DialConnection unix missing", suiteWantErr, dial("unix", "/nonexistent/dir/sock")},
		{"DialConnection unix too long", suiteWantErr, dial("unix", "/tmp/"+strings.Repeat("x", 200))},
		{"DialConnection unixgram to stream", suiteWantErr, dial("unixgram", unixPath)},
		{"DialConnection unixpacket to stream", suiteWantErr, dial("unixpacket", unixPath)},
		{"DialConnection unix to a tcp address", suiteWantErr, dial("unix", tcp)},
		{"DialConnection negative timeout", suiteWantNil, func() error {
			c, err := DialConnection("tcp", tcp, -time.Second)
			if err == nil {
				c.Close()
			}
			return err
		}},
		{"DialTimeout bogus network", suiteWantErr, dialTimeout("bogus", tcp)},
		{"DialTimeout tcp no port", suiteWantErr, dialTimeout("tcp", "localhost")},
		{"DialTimeout unix missing", suiteWantErr, dialTimeout("unix", "/nonexistent/sock")},
		{"DialTCP nil raddr", suiteWantErr, func() error { _, err := DialTCP(context.Background(), "tcp", nil, nil); return err }},
		{"DialTCP nil ctx", suiteWantNil, func() error {
			c, err := DialTCP(nil, "tcp", nil, raddr)
			if err == nil {
				c.Close()
			}
			return err
		}},
		{"DialTCP udp", suiteWantErr, func() error { _, err := DialTCP(context.Background(), "udp", nil, raddr); return err }},
		{"DialTCP unix", suiteWantErr, func() error { _, err := DialTCP(context.Background(), "unix", nil, raddr); return err }},
		{"DialTCP tcp6 to IPv4", suiteWantAny, func() error {
			c, err := DialTCP(context.Background(), "tcp6", nil, raddr)
			if err == nil {
				c.Close()
			}
			return err
		}},
		{"DialTCP canceled ctx", suiteWantAny, func() error {
			c, err := DialTCP(canceled, "tcp", nil, raddr)
			if err == nil {
				c.Close()
			}
			return err
		}},
		{"DialTCP foreign laddr", suiteWantErr, func() error {
			la := &TCPAddr{net.TCPAddr{IP: net.IPv4(192, 0, 2, 1)}}
			_, err := DialTCP(context.Background(), "tcp", la, raddr)
			return err
		}},
		{"DialTCP bad IP length", suiteWantErr, func() error {
			_, err := DialTCP(context.Background(), "tcp", nil, &TCPAddr{net.TCPAddr{IP: net.IP{1, 2, 3}, Port: 80}})
			return err
		}},
		{"DialUnix tcp", suiteWantErr, func() error { _, err := DialUnix("tcp", nil, uaddr); return err }},
		{"DialUnix nil raddr", suiteWantErr, func() error { _, err := DialUnix("unix", nil, nil); return err }},
		{"DialUnix empty name", suiteWantErr, func() error { _, err := DialUnix("unix", nil, &UnixAddr{}); return err }},
		{"DialUnix laddr in missing dir", suiteWantErr, func() error {
			_, err := DialUnix("unix", &UnixAddr{net.UnixAddr{Name: "/nonexistent/dir/x", Net: "unix"}}, uaddr)
			return err
		}},
		{"CreateListener bogus", suiteWantErr, listen("bogus", "127.0.0.1:0")},
		{"CreateListener empty network", suiteWantErr, listen("", "")},
		{"CreateListener bad IP", suiteWantErr, listen("tcp", "256.0.0.1:0")},
		{"CreateListener port 99999", suiteWantErr, listen("tcp", "127.0.0.1:99999")},
		{"CreateListener in use", suiteWantErr, listen("tcp", tcp)},
		{"CreateListener unix missing dir", suiteWantErr, listen("unix", "/nonexistent/dir/s")},
		{"CreateListener unix in use", suiteWantErr, listen("unix", unixPath)},
		{"CreateListener foreign IP", suiteWantErr, listen("tcp", "192.0.2.1:0")},
		{"CreateListener udp Accept", suiteWantErr, func() error {
			ln, err := CreateListener("udp", "127.0.0.1:0")
			if err != nil {
				return nil
			}
			defer ln.Close()
			_, err = ln.Accept()
			return err
		}},
		{"ConvertListener(nil)", suiteWantErr, func() error { _, err := ConvertListener(nil); return err }},
		{"ConvertListener(foreign)", suiteWantErr, func() error { _, err := ConvertListener(suiteOddListener{}); return err }},
		{"ConvertListener(closed)", suiteWantErr, func() error {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				return nil
			}
			ln.Close()
			_, err = ConvertListener(ln)
			return err
		}},
		{"ResolveTCPAddr bogus", suiteWantErr, func() error { _, err := ResolveTCPAddr("bogus", tcp); return err }},
		{"ResolveTCPAddr unix", suiteWantErr, func() error { _, err := ResolveTCPAddr("unix", tcp); return err }},
		{"ResolveTCPAddr no port", suiteWantErr, func() error { _, err := ResolveTCPAddr("tcp", "127.0.0.1"); return err }},
		{"ResolveTCPAddr port 99999", suiteWantErr, func() error { _, err := ResolveTCPAddr("tcp", "127.0.0.1:99999"); return err }},
		{"ResolveTCPAddr open bracket", suiteWantErr, func() error { _, err := ResolveTCPAddr("tcp", "[::1"); return err }},
		{"ResolveTCPAddr tcp4 IPv6", suiteWantErr, func() error { _, err := ResolveTCPAddr("tcp4", "[::1]:80"); return err }},
		{"ResolveUnixAddr tcp", suiteWantErr, func() error { _, err := ResolveUnixAddr("tcp", "/x"); return err }},
		{"ResolveUnixAddr bogus", suiteWantErr, func() error { _, err := ResolveUnixAddr("bogus", "/x"); return err }},
		{"ResolveUnixAddr empty", suiteWantAny, func() error { _, err := ResolveUnixAddr("unix", ""); return err }},
	}
	suiteRunCases(t, cases)
}

// Raw fds: NewFDConnection and SetKeepAlive with fds that are not sockets
// of the right kind, or not open at all.
func TestMisuseFds(t *testing.T) {
	suiteCheckLeaks(t)
	f, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	file := int(f.Fd())
	r, w := GetSysFdPairs()
	defer unix.Close(r)
	defer unix.Close(w)
	ln := suiteStdEcho(t, "tcp")
	tc, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	raw, _ := tc.(*net.TCPConn).SyscallConn()
	tcpFd := -1
	_ = raw.Control(func(fd uintptr) { tcpFd = int(fd) })
	cases := []suiteCase{
		{"NewFDConnection(-1)", suiteWantErr, func() error { _, err := NewFDConnection(-1); return err }},
		{"NewFDConnection(closed fd)", suiteWantErr, func() error { _, err := NewFDConnection(1 << 20); return err }},
		{"NewFDConnection(regular file)", suiteWantErr, func() error {
			c, err := NewFDConnection(file)
			if err == nil {
				c.(interface{ Detach() error }).Detach()
				return nil
			}
			return suiteFirstErr(suiteCheck(suiteFdOpen(file), "NewFDConnection closed the fd it refused"), err)
		}},
		{"SetKeepAlive(-1, 10)", suiteWantErr, func() error { return SetKeepAlive(-1, 10) }},
		{"SetKeepAlive(closed fd, 10)", suiteWantErr, func() error { return SetKeepAlive(1<<20, 10) }},
		{"SetKeepAlive(tcp, 0)", suiteWantErr, func() error { return SetKeepAlive(tcpFd, 0) }},
		{"SetKeepAlive(tcp, -1)", suiteWantErr, func() error { return SetKeepAlive(tcpFd, -1) }},
		{"SetKeepAlive(tcp, huge)", suiteWantAny, func() error { return SetKeepAlive(tcpFd, 1<<40) }},
		{"SetKeepAlive(unix socket, 10)", suiteWantErr, func() error { return SetKeepAlive(r, 10) }},
		{"SetKeepAlive(file, 10)", suiteWantErr, func() error { return SetKeepAlive(file, 10) }},
		{"SetKeepAlive(tcp, 10)", suiteWantNil, func() error { return SetKeepAlive(tcpFd, 10) }},
	}
	suiteRunCases(t, cases)
}

// Package configuration misused: invalid values, nil values, and changes
// while connections are live. The previous configuration comes back.
func TestMisuseConfigure(t *testing.T) {
	loops := int(pollmanager.loops.Load())
	_ = SetNumLoops(2) // start the pollers this test asks for before the baseline
	Initialize()
	suiteCheckLeaks(t)
	defer func() {
		_ = SetNumLoops(loops)
		SetRunner(nil)
		SetLoggerOutput(os.Stderr)
		_ = Configure(Config{BufferSize: defaultReadSize})
	}()
	ln := suiteStdEcho(t, "tcp")
	live, err := DialConnection("tcp", ln.Addr().String(), suiteWait)
	if err != nil {
		t.Fatal(err)
	}
	defer live.Close()
	cases := []suiteCase{
		{"Configure(zero)", suiteWantNil, func() error { return Configure(Config{}) }},
		{"Configure(negatives)", suiteWantNil, func() error {
			return Configure(Config{PollerNum: -1, BufferSize: -1, LoadBalance: -1})
		}},
		{"Configure(unknown LoadBalance)", suiteWantNil, func() error { return Configure(Config{LoadBalance: 99}) }},
		{"Configure after start", suiteWantNil, func() error { return Configure(Config{PollerNum: 2, BufferSize: 4096}) }},
		{"SetNumLoops(0)", suiteWantErr, func() error { return SetNumLoops(0) }},
		{"SetNumLoops(-1)", suiteWantErr, func() error { return SetNumLoops(-1) }},
		{"SetLoadBalance(99)", suiteWantNil, func() error { return SetLoadBalance(99) }},
		{"SetLoadBalance(-1)", suiteWantNil, func() error { return SetLoadBalance(-1) }},
		{"SetLoggerOutput(nil)", suiteWantAny, func() error { SetLoggerOutput(nil); return nil }},
		{"SetRunner(nil)", suiteWantAny, func() error { SetRunner(nil); return nil }},
		{"DisableGopool", suiteWantNil, func() error { return DisableGopool() }},
		{"Initialize twice", suiteWantAny, func() error { Initialize(); Initialize(); return nil }},
	}
	suiteRunCases(t, cases)
	SetRunner(nil)
	_ = SetLoadBalance(RoundRobin)
	// The live connection and a new one still work.
	for _, c := range []Connection{live, suiteDialEcho(t, ln)} {
		suitePing(t, c, "after Configure")
	}
}

// suiteDialEcho dials ln, an echo server, and closes the connection at cleanup.
func suiteDialEcho(t *testing.T, ln net.Listener) Connection {
	t.Helper()
	c, err := DialConnection("tcp", ln.Addr().String(), suiteWait)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// suitePing sends "ping" on c, a connection to an echo server, and requires
// it back within suiteWait.
func suitePing(t *testing.T, c Connection, when string) {
	t.Helper()
	_ = c.SetReadTimeout(suiteWait)
	if _, err := c.Write([]byte("ping")); err != nil {
		t.Fatalf("write %s: %v", when, err)
	}
	if s, err := c.Reader().ReadString(4); err != nil || s != "ping" {
		t.Fatalf("echo %s: %q, %v", when, s, err)
	}
}

// A huge configured BufferSize must not crash the poller at the first read
// (child process: the failure mode is a fatal out-of-memory).
func TestMisuseHugeBufferSize(t *testing.T) {
	suiteInChild(t, "SUITE_HUGEBUF_CHILD", "SUITE-HUGEBUF-OK", func(t *testing.T) {
		if err := Configure(Config{BufferSize: 1 << 40}); err != nil {
			t.Fatal(err)
		}
		suitePing(t, suiteDialEcho(t, suiteStdEcho(t, "tcp")), "with a huge BufferSize")
		os.Stdout.WriteString("SUITE-HUGEBUF-OK\n")
	})
}

// Adapters given nil: reads end with an error, writes fail, nothing panics.
func TestMisuseAdapters(t *testing.T) {
	cases := []suiteCase{
		{"NewReader(nil).Next", suiteWantErr, func() error { _, err := NewReader(nil).Next(1); return err }},
		{"NewReader(nil).Next(-1)", suiteWantAny, func() error { _, err := NewReader(nil).Next(-1); return err }},
		{"NewReader(nil).Until", suiteWantErr, func() error { _, err := NewReader(nil).Until('x'); return err }},
		{"NewWriter(nil).Flush", suiteWantErr, func() error {
			w := NewWriter(nil)
			_, _ = w.WriteString("x")
			return w.Flush()
		}},
		{"NewWriter(w).Malloc(-1)", suiteWantNil, func() error { _, err := NewWriter(io.Discard).Malloc(-1); return err }},
		{"NewReadWriter(nil)", suiteWantErr, func() error { _, err := NewReadWriter(nil).ReadByte(); return err }},
		{"NewReader(failing).Next", suiteWantErr, func() error {
			_, err := NewReader(suiteErrReader{}).Next(10)
			return err
		}},
		{"NewReader(short).Next(huge)", suiteWantErr, func() error {
			_, err := NewReader(strings.NewReader("abc")).Next(1 << 40)
			return err
		}},
		{"NewIOReader(empty).Read", suiteWantErr, func() error { _, err := NewIOReader(NewLinkBuffer()).Read(make([]byte, 4)); return err }},
		{"NewIOWriter(closed).Write", suiteWantErr, func() error {
			b := NewLinkBuffer()
			b.Close()
			_, err := NewIOWriter(b).Write([]byte("x"))
			return err
		}},
	}
	suiteRunCases(t, cases)
}

// The io adapters given a nil Reader or Writer, untyped or a nil
// *LinkBuffer: Read and Write must fail with an error, not panic.
func TestMisuseIOAdaptersNil(t *testing.T) {
	var nilR Reader
	var nilW Writer
	var nilRW ReadWriter
	var nilLB *LinkBuffer
	calls := map[string]func() error{
		"NewIOReader(nil).Read":                  func() error { _, err := NewIOReader(nilR).Read(make([]byte, 4)); return err },
		"NewIOWriter(nil).Write":                 func() error { _, err := NewIOWriter(nilW).Write([]byte("x")); return err },
		"NewIOReadWriter(nil).Read":              func() error { _, err := NewIOReadWriter(nilRW).Read(make([]byte, 4)); return err },
		"NewIOReadWriter(nil).Write":             func() error { _, err := NewIOReadWriter(nilRW).Write([]byte("x")); return err },
		"NewIOReader(nil *LinkBuffer).Read":      func() error { _, err := NewIOReader(nilLB).Read(make([]byte, 4)); return err },
		"NewIOWriter(nil *LinkBuffer).Write":     func() error { _, err := NewIOWriter(nilLB).Write([]byte("x")); return err },
		"NewIOReadWriter(nil *LinkBuffer).Read":  func() error { _, err := NewIOReadWriter(nilLB).Read(make([]byte, 4)); return err },
		"NewIOReadWriter(nil *LinkBuffer).Write": func() error { _, err := NewIOReadWriter(nilLB).Write([]byte("x")); return err },
	}
	var panicked []string
	for name, call := range calls {
		func() {
			defer func() {
				if r := recover(); r != nil {
					panicked = append(panicked, name)
				}
			}()
			if err := call(); err == nil {
				t.Errorf("%s: no error", name)
			}
		}()
	}
	if len(panicked) > 0 {
		sort.Strings(panicked)
		t.Fatalf("%s panic with a nil argument instead of returning an error (nocopy_readwriter.go: a nil *LinkBuffer is not taken for nil)", strings.Join(panicked, ", "))
	}
}

type suiteErrReader struct{}

func (suiteErrReader) Read([]byte) (int, error) { return 0, errors.New("broken reader") }

// Exception with odd input.
func TestMisuseException(t *testing.T) {
	cases := []suiteCase{
		{"Exception(nil, \"\")", suiteWantNil, func() error { return Exception(nil, "") }},
		{"Exception(nil, sfx)", suiteWantNil, func() error { return Exception(nil, "sfx") }},
		{"Exception(Errno(0))", suiteWantAny, func() error { _ = Exception(unix.Errno(0), "x").Error(); return nil }},
		{"Exception(huge Errno)", suiteWantErr, func() error {
			err := Exception(unix.Errno(1<<31), "x")
			_ = err.Error()
			return err
		}},
		{"Exception(0x1ff)", suiteWantErr, func() error { err := Exception(unix.Errno(0x1ff), ""); _ = err.Error(); return err }},
	}
	suiteRunCases(t, cases)
}

// Every Listener method after Close: Accept fails, Close is a no-op, the
// rest answer without touching the fd.
func TestMisuseListenerAfterClose(t *testing.T) {
	suiteCheckLeaks(t)
	for _, network := range suiteNetworks {
		var ln Listener
		var err error
		if network == "tcp" {
			ln, err = CreateListener("tcp", "127.0.0.1:0")
		} else {
			ln, err = ConvertListener(suiteListen(t, "unix"))
		}
		if err != nil {
			t.Fatal(err)
		}
		if err = ln.Close(); err != nil {
			t.Fatal(err)
		}
		suiteRunCases(t, []suiteCase{
			{network + " Accept", suiteWantErr, func() error {
				c, err := ln.Accept()
				if c != nil {
					c.Close()
				}
				return err
			}},
			{network + " Close", suiteWantNil, func() error { return ln.Close() }},
			{network + " Addr", suiteWantNil, func() error { return suiteCheck(ln.Addr() != nil, "nil Addr") }},
			{network + " Fd", suiteWantAny, func() error { _ = ln.Fd(); return nil }},
			{network + " Serve", suiteWantErr, func() error {
				evl, _ := NewEventLoop(nil)
				return evl.Serve(ln)
			}},
		})
	}
}

// A Write larger than the largest buffer node (1 GiB) must not report the
// open connection as closed: it either goes out or fails with a size error.
// The memory is a read-only anonymous mapping: nothing is touched unless
// the bytes are really sent.
func TestMisuseWriteOver1GiB(t *testing.T) {
	suiteCheckLeaks(t)
	const size = 1<<30 + 4096
	mem, err := unix.Mmap(-1, 0, size, unix.PROT_READ, unix.MAP_PRIVATE|unix.MAP_ANON)
	if err != nil {
		t.Skip(err)
	}
	defer unix.Munmap(mem)
	r, w := GetSysFdPairs()
	c, err := NewFDConnection(w)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	drained := make(chan int64, 1)
	go func() { // discard whatever arrives
		f := os.NewFile(uintptr(r), "peer")
		defer f.Close()
		_ = unix.SetNonblock(r, false)
		buf := make([]byte, 4<<20)
		var n int64
		for {
			m, err := f.Read(buf)
			n += int64(m)
			if err != nil {
				break
			}
		}
		drained <- n
	}()
	type op struct {
		name string
		call func() error
	}
	ops := []op{
		{"Write", func() error { _, err := c.Write(mem); return err }},
		{"Malloc", func() error { _, err := c.Writer().Malloc(size); return err }},
	}
	if suiteSoak() { // another GiB through the socketpair
		ops = append(ops, op{"WriteBinary+Flush", func() error {
			if _, err := c.Writer().WriteBinary(mem); err != nil {
				return err
			}
			return c.Writer().Flush()
		}})
	}
	for _, op := range ops {
		var err error
		suiteRun(t, op.name, 3*suiteWait, func() { err = op.call() })
		if err != nil && (errors.Is(err, ErrConnClosed) || !c.IsActive()) {
			t.Errorf("%s of %d bytes on an open connection fails with %q, an ErrConnClosed (connection_writer.go Write maps every Malloc error to closedWrite)", op.name, size, err)
		}
	}
	c.Close()
	recv(t, drained, "the reader of the peer end")
}

// Registering a fd that is already registered fails, and must leave the
// existing registration alone: NewFDConnection on a fd some connection
// already wraps, and a second EventLoop serving the same Listener. With
// several pollers the second registration goes to another poller, whose
// kernel cannot refuse it: the operator table must.
func TestMisuseDoubleRegistration(t *testing.T) {
	loops := int(pollmanager.loops.Load())
	defer func() { _ = SetNumLoops(loops) }()
	for _, n := range []int{1, 2} {
		t.Run(fmt.Sprintf("%d pollers", n), func(t *testing.T) {
			if err := SetNumLoops(n); err != nil {
				t.Fatal(err)
			}
			suiteCheckLeaks(t)
			t.Run("NewFDConnection twice", suiteDoubleFDConnection)
			t.Run("two loops on one Listener", suiteDoubleServe)
		})
	}
}

func suiteDoubleFDConnection(t *testing.T) {
	r, w := GetSysFdPairs()
	defer unix.Close(w)
	c1, err := NewFDConnection(r)
	if err != nil {
		t.Fatal(err)
	}
	defer c1.Close()
	var c2 Connection
	suiteRun(t, "second NewFDConnection", suiteWait, func() { c2, err = NewFDConnection(r) })
	if err == nil {
		defer c2.(interface{ Detach() error }).Detach()
		t.Errorf("a second NewFDConnection on fd %d succeeded (poll_table.go opPut replaces a live operator registered with another poller)", r)
	} else if !errors.Is(err, unix.EEXIST) {
		t.Errorf("a second NewFDConnection on fd %d: %v, want EEXIST", r, err)
	}
	_ = c1.SetReadTimeout(2 * time.Second)
	if _, err := unix.Write(w, []byte("ping")); err != nil {
		t.Fatal(err)
	}
	if s, err := c1.Reader().ReadString(4); err != nil || s != "ping" {
		t.Fatalf("a second registration of fd %d unregistered the first connection, which no longer gets input (%q, %v)", r, s, err)
	}
}

func suiteDoubleServe(t *testing.T) {
	ln, err := CreateListener("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	first, _ := NewEventLoop(func(ctx context.Context, c Connection) error {
		b, _ := c.Reader().ReadByte()
		_, err := c.Write([]byte{b})
		return err
	})
	done := make(chan error, 1)
	go func() { done <- first.Serve(ln) }()
	el := first.(*eventLoop)
	eventually(t, func() bool {
		el.mu.Lock()
		defer el.mu.Unlock()
		return el.svr != nil && opCurrent(el.svr.op.FD) == &el.svr.op
	}, "the first loop's listener registration")
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), suiteWait)
		defer cancel()
		_ = first.Shutdown(ctx)
		_ = suiteErrWithin(t, "the first Serve", done)
	}()
	second, _ := NewEventLoop(nil)
	var err2 error
	suiteRun(t, "second Serve", suiteWait, func() { err2 = second.Serve(ln) })
	if err2 == nil {
		t.Fatal("a second loop served a listener already served")
	}
	// Every connection goes to the first loop, not only the first one.
	for i := 0; i < 4; i++ {
		p, err := net.DialTimeout("tcp", ln.Addr().String(), suiteWait)
		if err != nil {
			t.Fatal(err)
		}
		_ = p.SetDeadline(time.Now().Add(3 * time.Second))
		_, _ = p.Write([]byte{'q'})
		buf := []byte{0}
		_, err = io.ReadFull(p, buf)
		p.Close()
		if err != nil || buf[0] != 'q' {
			t.Fatalf("connection %d: after a second loop's Serve (%v) the first loop no longer serves the listener (read %q, %v)", i, err2, buf, err)
		}
	}
}

// A number of loops too large for the manager's count is refused, by
// SetNumLoops and by Configure, and changes nothing: the count used to wrap
// around (1<<32 became 0 and the next pick divided by zero, 1<<31 went
// negative).
func TestMisuseNumLoopsOutOfRange(t *testing.T) {
	loops := int(pollmanager.loops.Load())
	defer func() { _ = SetNumLoops(loops) }()
	for _, n := range []int{1 << 32, 1 << 31, 1<<32 + 1, maxNumLoops + 1, math.MaxInt} {
		if err := SetNumLoops(n); err == nil {
			_ = SetNumLoops(loops)
			t.Errorf("SetNumLoops(%d) returned nil", n)
		}
		if err := Configure(Config{PollerNum: n, BufferSize: 1234}); err == nil {
			_ = SetNumLoops(loops)
			t.Errorf("Configure(PollerNum: %d) returned nil", n)
		}
		if got := int(pollmanager.loops.Load()); got != loops {
			_ = SetNumLoops(loops)
			t.Errorf("after refusing %d loops the count is %d, want %d", n, got, loops)
		}
	}
	if got := defaultBufferSize(); got != defaultReadSize {
		_ = Configure(Config{BufferSize: defaultReadSize})
		t.Errorf("a refused Configure applied its BufferSize (%d)", got)
	}
	suiteRun(t, "Initialize", suiteWait, Initialize)
}

// More loops than the process has fds for: every connection fails with the
// error, no poller fd is kept from the failed starts, and after
// SetNumLoops(1) connections work again. The pollers opened before the
// failure used to be dropped unclosed, so each dial leaked more fds until
// none was left for good. It runs in a child process with a low fd limit.
func TestMisuseNumLoopsOutOfFds(t *testing.T) {
	suiteInChild(t, "SUITE_LOOPFDS_CHILD", "SUITE-LOOPFDS-OK", suiteNumLoopsOutOfFdsChild)
}

func suiteNumLoopsOutOfFdsChild(t *testing.T) {
	loops := int(pollmanager.loops.Load())
	defer func() { _ = SetNumLoops(loops) }()
	_ = SetNumLoops(1)
	Initialize()
	ln := suiteStdEcho(t, "tcp")
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	saved := lim
	defer func() { _ = unix.Setrlimit(unix.RLIMIT_NOFILE, &saved) }()
	before := suiteFds(t)
	setLimit(&lim.Cur, before+40)
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	loopsWanted := min(1000, maxNumLoops) // 256 on kqueue platforms: still far more fds than the 40 left
	if err := SetNumLoops(loopsWanted); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		c, err := DialConnection("tcp", ln.Addr().String(), suiteWait)
		if err == nil {
			c.Close()
			t.Fatalf("dial %d with %d loops and %d fds succeeded", i, loopsWanted, before+40)
		}
		// The echo server may hold the accepted end of the failed dial
		// for a moment.
		n := 0
		if !waitUntil(suiteWait, func() bool { n = suiteFds(t); return n <= before }) {
			t.Fatalf("after failed dial %d (%v): %d fds open, %d before (poll_manager.go start drops the pollers it opened)", i, err, n, before)
		}
	}
	if err := SetNumLoops(1); err != nil {
		t.Fatal(err)
	}
	suitePing(t, suiteDialEcho(t, ln), "after SetNumLoops(1)")
	os.Stdout.WriteString("SUITE-LOOPFDS-OK\n")
}

// Keep-alive seconds that do not fit the kernel's 32-bit int are refused and
// change nothing; they used to be cut to their low 32 bits (1<<32+5 set 5 s).
func TestMisuseKeepAliveSecondsRange(t *testing.T) {
	suiteCheckLeaks(t)
	ln := suiteStdEcho(t, "tcp")
	c := suiteDialEcho(t, ln)
	fd := c.(Conn).Fd()
	const secs = 1<<32 + 5
	calls := map[string]func() error{
		"SetKeepAlive(fd, 1<<32+5)":         func() error { return SetKeepAlive(fd, secs) },
		"SetKeepAlive(1<<32+5)":             func() error { return c.(*TCPConnection).SetKeepAlive(secs) },
		"SetIdleTimeout((1<<32+5) seconds)": func() error { return c.SetIdleTimeout(secs * time.Second) },
	}
	for name, call := range calls {
		if err := call(); err == nil {
			t.Errorf("%s returned nil", name)
		}
		if on, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_KEEPALIVE); err != nil || on != 0 {
			t.Fatalf("%s turned keep-alive on (%d, %v)", name, on, err)
		}
	}
}
