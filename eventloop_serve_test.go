//go:build darwin || freebsd || linux

package netpoll

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Serve and Shutdown called out of order or with bad arguments
// (docs/contract.md C9.1, C9.3, C9.5, C11.1, C16.16): nil, foreign, closed
// and udp listeners, Shutdown before Serve, twice, with a nil ctx, Serve
// while serving and after Shutdown. Nothing panics, hangs or leaks a fd.

// docs/contract.md C8.8, C9.1, C9.3: Serve of a nil, closed or udp
// listener fails; Shutdown before Serve, with a nil ctx too, and a second
// Shutdown return nil; a zero Option is ignored.
func TestEventLoopServeShutdownMisuse(t *testing.T) {
	checkLeaks(t)
	newLoop := func() EventLoop {
		evl, err := NewEventLoop(nil)
		if err != nil {
			t.Fatal(err)
		}
		return evl
	}
	cases := []argCase{
		{"NewEventLoop(nil, zero Option)", false, func() error { _, err := NewEventLoop(nil, Option{}); return err }},
		{"Serve(nil)", true, func() error { return newLoop().Serve(nil) }},
		{"Shutdown before Serve", false, func() error { return newLoop().Shutdown(context.Background()) }},
		{"Shutdown(nil) before Serve", false, func() error { return newLoop().Shutdown(nil) }},
		{"Shutdown twice", false, func() error {
			evl := newLoop()
			_ = evl.Shutdown(context.Background())
			return evl.Shutdown(context.Background())
		}},
		{"Serve(closed listener)", true, func() error {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				return nil
			}
			ln.Close()
			return newLoop().Serve(ln)
		}},
		{"Serve(udp listener)", true, func() error {
			ln, err := CreateListener("udp", "127.0.0.1:0")
			if err != nil {
				return nil
			}
			defer ln.Close()
			return newLoop().Serve(ln)
		}},
	}
	runArgCases(t, cases)
}

// docs/contract.md C9.5, C16.16: Serve while already serving fails at once, and the converted duplicate of
// the listener is not left open.
func TestEventLoopServeTwice(t *testing.T) {
	checkLeaks(t)
	srv := startServer(t, "tcp", nil)
	ln2, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln2.Close()
	before := fdSet()
	serveErr := within(t, "second Serve", func() error { return srv.evl.Serve(ln2) })
	if serveErr == nil {
		t.Fatal("a second concurrent Serve returned nil")
	}
	if n := closeNewFds(before); n != 0 {
		t.Fatalf("a refused second Serve leaves %d duplicate fd of its listener open (eventloop_server.go Serve: ConvertListener before the errServing check)", n)
	}
}

// docs/contract.md C9.5, C16.16: Serve after Shutdown returns nil at once, and leaves no duplicate of the
// listener open: once the caller closes its listener, the port is free.
func TestEventLoopServeAfterShutdown(t *testing.T) {
	checkLeaks(t)
	evl, _ := NewEventLoop(nil)
	if err := evl.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	before := fdSet()
	serveErr := within(t, "Serve after Shutdown", func() error { return evl.Serve(ln) })
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
	if n := closeNewFds(before); n != 0 {
		t.Fatalf("Serve after Shutdown leaves %d duplicate fd of the listener open; the port still accepts after the caller closed it (dial: %v) (eventloop_server.go Serve: ConvertListener before the done check)", n, err)
	}
	if err == nil {
		t.Fatal("the port accepts after the caller closed its listener")
	}
}

// docs/contract.md C9.3: Shutdown without a running Serve returns nil at once.
func TestEventLoopShutdownWithoutServe(t *testing.T) {
	checkLeaks(t)
	evl, err := NewEventLoop(nil)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), longWait)
	defer cancel()
	require.NoError(t, within(t, "Shutdown", func() error { return evl.Shutdown(ctx) }))
}

// docs/contract.md C9.1, C11.1: Serve returns an error for a listener it cannot convert.
func TestEventLoopServeUnsupportedListener(t *testing.T) {
	checkLeaks(t)
	ln := listenStd(t, "tcp")
	evl, err := NewEventLoop(nil)
	require.NoError(t, err)
	err = within(t, "Serve", func() error { return evl.Serve(fakeListener{ln}) })
	require.Error(t, err)
}
