//go:build darwin || freebsd || linux

package netpoll

import (
	"context"
	"net"
	"runtime"
	"testing"
	"time"
)

// TestServeShutdownCycles runs Serve and Shutdown back to back many times,
// with fd numbers reused from one cycle to the next. Every dial must be
// accepted by the server of its own cycle (docs/contract.md C9; C16.12: nothing of a
// stopped server acts on a reused fd), and Shutdown right after Serve must
// not race the listener's registration.
func TestServeShutdownCycles(t *testing.T) {
	checkLeaks(t)
	cycles := 300
	if testing.Short() {
		cycles = 50
	}
	for i := 0; i < cycles; i++ {
		ln, err := CreateListener("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		prepared := make(chan struct{}, 1)
		loop, err := NewEventLoop(nil, WithOnPrepare(func(Connection) context.Context {
			prepared <- struct{}{}
			return context.Background()
		}))
		if err != nil {
			t.Fatal(err)
		}
		served := make(chan error, 1)
		go func() { served <- loop.Serve(ln) }()
		conn, err := DialConnection("tcp", ln.Addr().String(), longWait)
		if err != nil {
			t.Fatalf("cycle %d: dial: %v", i, err)
		}
		select {
		case <-prepared:
		case <-time.After(longWait):
			t.Fatalf("cycle %d: the dialed connection was never accepted", i)
		}
		_ = conn.Close()
		ctx, cancel := context.WithTimeout(context.Background(), longWait)
		if err := loop.Shutdown(ctx); err != nil {
			t.Fatalf("cycle %d: shutdown: %v", i, err)
		}
		cancel()
		if err := recv(t, served, "Serve after Shutdown"); err != nil {
			t.Fatalf("cycle %d: Serve returned %v", i, err)
		}
	}
}

// TestShutdownRacesServe calls Shutdown while Serve is starting: Serve
// returns nil whichever comes first, and nothing races (docs/contract.md C9).
func TestShutdownRacesServe(t *testing.T) {
	checkLeaks(t)
	for i := 0; i < 200; i++ {
		ln, err := CreateListener("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		loop, _ := NewEventLoop(nil)
		served := make(chan error, 1)
		go func() { served <- loop.Serve(ln) }()
		ctx, cancel := context.WithTimeout(context.Background(), longWait)
		_ = loop.Shutdown(ctx)
		cancel()
		select {
		case err := <-served:
			if err != nil {
				t.Fatalf("Serve returned %v", err)
			}
		case <-time.After(longWait):
			t.Fatal("Serve did not return after Shutdown")
		}
		_ = ln.Close()
	}
}

// docs/contract.md C9.3, C9.5: Shutdown racing a Serve that has just
// started, at varying points of its start: Serve returns nil (not the
// error of registering a listener Shutdown already closed), Shutdown
// returns nil, and afterwards the port refuses connections.
func TestServeShutdownRaceFreesPort(t *testing.T) {
	checkLeaks(t)
	var serveErrs, open int
	var firstErr error
	for i := 0; i < 200; i++ {
		before := fdSet()
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
		ctx, cancel := context.WithTimeout(context.Background(), longWait)
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
			serveErr = recv(t, done, "Serve after the second Shutdown")
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
		closeNewFds(before) // a leaked duplicate (see TestEventLoopServeAfterShutdown)
	}
	if serveErrs > 0 || open > 0 {
		t.Fatalf("Shutdown racing a starting Serve: %d of 200 Serves returned an error (first: %v); %d ports still accepted after Shutdown and Close", serveErrs, firstErr, open)
	}
}
