package hertz

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/cloudwego/netpoll"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

// Hertz's transport runs EventLoop.Serve on one goroutine while Hertz's Close
// or Shutdown may call EventLoop.Shutdown on another at any moment; Hertz's
// own tests (pkg/app/server TestHertz_Run, TestNotAbsolutePath, ...; pkg/app/
// client TestClientInvalidURI) close the engine as soon as it reports running.
// Shutdown while Serve is registering the listener must be safe: no data race
// (run with -race), and Serve returns nil rather than an error, on which
// Hertz panics with "netpoll server exit" (docs/contract.md C9).
//
// Each round waits until Serve has converted the listener (the duplicate fd
// appears), then shuts down. Shutdown before Serve has begun is a no-op for
// the reference, so it is repeated until Serve returns. The fds are checked by
// TestServeAfterShutdown.
func TestShutdownWhileServeStarts(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	for i := 0; i < 100; i++ {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		el, err := netpoll.NewEventLoop(nil)
		require.NoError(t, err)
		fds := openFDs(t)
		served := make(chan error, 1)
		go func() { served <- el.Serve(ln) }()
		require.Eventually(t, func() bool { return openFDs(t) > fds }, wait, 10*time.Microsecond)
		deadline := time.After(wait)
	shutdown:
		for {
			ctx, cancel := context.WithTimeout(context.Background(), wait)
			require.NoError(t, el.Shutdown(ctx))
			cancel()
			select {
			case err := <-served:
				require.NoErrorf(t, err, "round %d: Serve", i)
				break shutdown
			case <-deadline:
				t.Fatalf("round %d: Serve did not return", i)
			case <-time.After(time.Millisecond):
			}
		}
		_ = ln.Close()
	}
}

// Serve called after Shutdown (Hertz does this when it is closed before its
// transport reaches Serve) may refuse to serve, but must not leak the fd it
// made converting the listener. Then a second Shutdown ends it if it did
// serve.
func TestServeAfterShutdown(t *testing.T) {
	checkLeaks(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	el, err := netpoll.NewEventLoop(nil)
	require.NoError(t, err)
	require.NoError(t, el.Shutdown(context.Background()), "Shutdown with no Serve running")
	served := make(chan error, 1)
	go func() { served <- el.Serve(ln) }()
	select {
	case err := <-served:
		require.NoError(t, err, "Serve after Shutdown")
	case <-time.After(100 * time.Millisecond):
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		require.NoError(t, el.Shutdown(ctx))
		select {
		case err := <-served:
			require.NoError(t, err, "Serve")
		case <-time.After(wait):
			t.Fatal("Serve did not return after the second Shutdown")
		}
	}
	_ = ln.Close()
}
