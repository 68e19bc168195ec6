//go:build darwin || freebsd || linux

package netpoll

import (
	"context"
	"testing"
	"time"
)

// TestServeShutdownCycles runs Serve and Shutdown back to back many times,
// with fd numbers reused from one cycle to the next. Every dial must be
// accepted by the server of its own cycle (docs/contract.md C9; C16.12: nothing of a
// stopped server acts on a reused fd), and Shutdown right after Serve must
// not race the listener's registration.
func TestServeShutdownCycles(t *testing.T) {
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
		conn, err := DialConnection("tcp", ln.Addr().String(), 5*time.Second)
		if err != nil {
			t.Fatalf("cycle %d: dial: %v", i, err)
		}
		select {
		case <-prepared:
		case <-time.After(10 * time.Second):
			t.Fatalf("cycle %d: the dialed connection was never accepted", i)
		}
		_ = conn.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
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
	for i := 0; i < 200; i++ {
		ln, err := CreateListener("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		loop, _ := NewEventLoop(nil)
		served := make(chan error, 1)
		go func() { served <- loop.Serve(ln) }()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_ = loop.Shutdown(ctx)
		cancel()
		select {
		case err := <-served:
			if err != nil {
				t.Fatalf("Serve returned %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("Serve did not return after Shutdown")
		}
		_ = ln.Close()
	}
}
