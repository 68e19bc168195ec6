//go:build darwin || freebsd || linux

package netpoll

import (
	"context"
	"fmt"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Kitex's graceful shutdown, and fds that user code closes itself. A fd
// number that was closed is the kernel's to hand out again at once, and the
// package's bookkeeping must not refuse the next socket that gets it (see
// opPut in poll_unix.go and Listener.Close).

// kitexEcho dials addr on network and checks one echo round trip.
func kitexEcho(network, addr string, msg string) (Connection, error) {
	c, err := DialConnection(network, addr, longWait)
	if err != nil {
		return nil, fmt.Errorf("dial: %w", err)
	}
	if err = kitexRoundTrip(c, msg); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// kitexRoundTrip writes msg on c and waits for it to come back.
func kitexRoundTrip(c Connection, msg string) error {
	if err := c.SetReadTimeout(longWait); err != nil {
		return err
	}
	if _, err := c.Writer().WriteString(msg); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	if err := c.Writer().Flush(); err != nil {
		return fmt.Errorf("flush: %w", err)
	}
	got, err := c.Reader().ReadString(len(msg))
	if err != nil {
		return fmt.Errorf("read: %w", err)
	}
	if got != msg {
		return fmt.Errorf("echo: got %q, want %q", got, msg)
	}
	return nil
}

// kitexDialOntoFd dials addr, echoing once over each connection, until a
// dialed connection gets fd, the number a user closed; every dial must work.
// It returns that connection; all of them close at cleanup.
func kitexDialOntoFd(t *testing.T, network, addr string, fd int) Connection {
	t.Helper()
	for i := 0; i < 20; i++ {
		c, err := kitexEcho(network, addr, fmt.Sprintf("new %d", i))
		require.NoError(t, err, "dial %d after a user closed fd %d", i, fd)
		t.Cleanup(func() { c.Close() })
		if c.(Conn).Fd() == fd {
			return c
		}
	}
	t.Fatalf("no dial got fd %d: the test did not reach its subject", fd)
	return nil
}

// kitexServe serves an echo EventLoop on a new listener of network made by
// CreateListener, as Kitex makes its listeners.
func kitexServe(t *testing.T, network string) (Listener, EventLoop, <-chan error) {
	t.Helper()
	ln, err := CreateListener(network, testAddress(t, network))
	require.NoError(t, err)
	evl, err := NewEventLoop(func(ctx context.Context, c Connection) error { return echoAll(c) })
	require.NoError(t, err)
	served := make(chan error, 1)
	go func() { served <- evl.Serve(ln) }()
	return ln, evl, served
}

// kitexShutdown shuts evl down and checks that Serve returned nil.
func kitexShutdown(t *testing.T, evl EventLoop, served <-chan error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), longWait)
	defer cancel()
	require.NoError(t, evl.Shutdown(ctx))
	select {
	case err := <-served:
		require.NoError(t, err, "Serve after Shutdown")
	case <-time.After(longWait):
		t.Fatalf("Serve did not return within %v of Shutdown", longWait)
	}
}

// The order of Kitex's graceful shutdown: the listener given to Serve is
// closed first (ln.Close, not Shutdown); live connections keep being served
// for the exit wait time while the same process dials other services and
// may start another server; only then Shutdown. The dials get the fd
// numbers the listener had, and must work; so must the second server; and
// the first Serve keeps waiting until Shutdown, then returns nil.
func TestKitexShutdownOrder(t *testing.T) {
	checkLeaks(t)
	forEachNetwork(t, func(t *testing.T, network string) {
		other := startServer(t, network, func(ctx context.Context, c Connection) error { return echoAll(c) })
		for round := 0; round < 3; round++ {
			ln, evl, served := kitexServe(t, network)
			live, err := kitexEcho(network, ln.Addr().String(), "before")
			require.NoError(t, err, "round %d: a connection to the server", round)

			lnFd := ln.Fd()
			require.NoError(t, ln.Close())
			select {
			case err := <-served:
				t.Fatalf("round %d: Serve returned %v when its listener was closed; it must wait for Shutdown", round, err)
			default:
			}

			var dialed []Connection
			for i := 0; i < 20; i++ {
				c, err := kitexEcho(network, other.addr, fmt.Sprintf("dial %d", i))
				require.NoError(t, err, "round %d: dial %d after the listener was closed", round, i)
				dialed = append(dialed, c)
			}
			// The dialed side or the other server's accepted side took the number.
			reused := false
			if op := opCurrent(lnFd); op != nil {
				_, reused = op.handler.(*connection)
			}
			require.True(t, reused, "round %d: no connection got fd %d, the closed listener's: the test did not reach its subject", round, lnFd)
			require.NoError(t, kitexRoundTrip(live, "still served"), "round %d: the live connection after the listener closed", round)

			ln2, evl2, served2 := kitexServe(t, network)
			c2, err := kitexEcho(network, ln2.Addr().String(), "second server")
			require.NoError(t, err, "round %d: the second server", round)
			c2.Close()

			for _, c := range dialed {
				require.NoError(t, kitexRoundTrip(c, "again"), "round %d: a dialed connection before Shutdown", round)
				c.Close()
			}
			live.Close()
			kitexShutdown(t, evl, served)
			kitexShutdown(t, evl2, served2)
			require.NoError(t, ln2.Close())
		}
	})
}

// A connection whose fd the user closes behind its back (syscall.Close on
// Fd): the number goes to the next socket, which must register and work;
// the old Connection becomes inactive, and closing it later leaves the new
// owner's socket alone.
func TestUserClosedConnFd(t *testing.T) {
	checkLeaks(t)
	forEachNetwork(t, func(t *testing.T, network string) {
		s := startServer(t, network, func(ctx context.Context, c Connection) error { return echoAll(c) })
		old, err := kitexEcho(network, s.addr, "old")
		require.NoError(t, err)
		fd := old.(Conn).Fd()
		require.NoError(t, syscall.Close(fd))

		owner := kitexDialOntoFd(t, network, s.addr, fd)
		eventually(t, func() bool { return !old.IsActive() }, "the connection whose fd was taken over to become inactive")
		require.NoError(t, old.Close())
		require.NoError(t, kitexRoundTrip(owner, "the fd's new owner"), "after the old connection's Close")
		require.True(t, owner.IsActive())
	})
}

// A served listener whose fd the user closes directly (syscall.Close on
// Fd, not the Listener's Close): new sockets that get its number work, a
// later Listener.Close does not close that number again, and Shutdown ends
// Serve with nil.
func TestUserClosedListenerFd(t *testing.T) {
	checkLeaks(t)
	forEachNetwork(t, func(t *testing.T, network string) {
		other := startServer(t, network, func(ctx context.Context, c Connection) error { return echoAll(c) })
		ln, evl, served := kitexServe(t, network)
		live, err := kitexEcho(network, ln.Addr().String(), "registered")
		require.NoError(t, err)
		defer live.Close()
		fd := ln.Fd()
		require.NoError(t, syscall.Close(fd))

		owner := kitexDialOntoFd(t, network, other.addr, fd)
		require.NoError(t, ln.Close())
		require.NoError(t, kitexRoundTrip(owner, "after Listener.Close"), "Listener.Close closed fd %d, now another socket's", fd)
		kitexShutdown(t, evl, served)
	})
}

// A net.Listener converted by ConvertListener and then closed directly (not
// through the Listener): the served duplicate is another fd, so new dials
// that get the original's number work, and the server still serves.
func TestConvertedListenerClosedDirectly(t *testing.T) {
	checkLeaks(t)
	forEachNetwork(t, func(t *testing.T, network string) {
		other := startServer(t, network, func(ctx context.Context, c Connection) error { return echoAll(c) })
		std, err := net.Listen(network, testAddress(t, network))
		require.NoError(t, err)
		ln, err := ConvertListener(std)
		require.NoError(t, err)
		evl, _ := NewEventLoop(func(ctx context.Context, c Connection) error { return echoAll(c) })
		served := make(chan error, 1)
		go func() { served <- evl.Serve(ln) }()
		live, err := kitexEcho(network, ln.Addr().String(), "before")
		require.NoError(t, err)
		defer live.Close()
		require.NoError(t, std.Close())
		for i := 0; i < 20; i++ {
			c, err := kitexEcho(network, other.addr, fmt.Sprintf("new %d", i))
			require.NoError(t, err, "dial %d after the original listener was closed", i)
			c.Close()
		}
		require.NoError(t, kitexRoundTrip(live, "after"))
		kitexShutdown(t, evl, served)
	})
}
