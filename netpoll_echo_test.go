//go:build darwin || freebsd || linux

package netpoll

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// echoServer serves an echo EventLoop on a loopback TCP port until the test ends.
func echoServer(t *testing.T, ops ...Option) (addr string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	evl, err := NewEventLoop(func(ctx context.Context, c Connection) error {
		r := c.Reader()
		buf, err := r.Next(r.Len())
		if err != nil {
			return err
		}
		_, _ = c.Writer().WriteBinary(append([]byte(nil), buf...))
		_ = r.Release()
		return c.Writer().Flush()
	}, ops...)
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() { done <- evl.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		require.NoError(t, evl.Shutdown(ctx))
		require.NoError(t, recv(t, done, "Serve after Shutdown"))
	})
	return ln.Addr().String()
}

// docs/contract.md C8.3, C10.6: a dialed client and an EventLoop server exchange bytes.
func TestEchoRoundTrip(t *testing.T) {
	checkLeaks(t)
	addr := echoServer(t)
	c, err := DialConnection("tcp", addr, time.Second)
	require.NoError(t, err)
	defer c.Close()
	for i := 0; i < 100; i++ {
		msg := []byte("hello netpoll")
		_, err = c.Writer().WriteBinary(msg)
		require.NoError(t, err)
		require.NoError(t, c.Writer().Flush())
		got, err := c.Reader().Next(len(msg))
		require.NoError(t, err)
		require.Equal(t, msg, got)
		require.NoError(t, c.Reader().Release())
	}
}
