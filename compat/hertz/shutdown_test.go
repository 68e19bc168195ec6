package hertz

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/cloudwego/hertz/pkg/app"
	"github.com/cloudwego/hertz/pkg/app/server"
	"github.com/stretchr/testify/require"
)

// slowRoute adds GET /slow, which closes started and answers once release is
// closed.
func slowRoute(started, release chan struct{}) func(h *server.Hertz) {
	return func(h *server.Hertz) {
		h.GET("/slow", func(_ context.Context, c *app.RequestContext) {
			close(started)
			select {
			case <-release:
			case <-time.After(wait):
			}
			c.String(http.StatusOK, "finished")
		})
	}
}

// startSlow sends GET /slow on a new connection and waits for its handler.
func startSlow(t *testing.T, ts *testServer, started chan struct{}) net.Conn {
	t.Helper()
	busy := dialRaw(t, ts)
	_, err := io.WriteString(busy, "GET /slow HTTP/1.1\r\nHost: compat\r\n\r\n")
	require.NoError(t, err)
	select {
	case <-started:
	case <-time.After(wait):
		t.Fatal("the slow handler did not start")
	}
	return busy
}

// keepAlive returns a connection that has had one request answered and is
// kept alive, with a reader for what follows.
func keepAlive(t *testing.T, ts *testServer) (net.Conn, *bufio.Reader) {
	t.Helper()
	conn := dialRaw(t, ts)
	r := bufio.NewReader(conn)
	_, err := io.WriteString(conn, "GET /ping HTTP/1.1\r\nHost: compat\r\n\r\n")
	require.NoError(t, err)
	readPong(t, r)
	return conn, r
}

// readFinished reads the answer to /slow, which Hertz marks "Connection:
// close" once the server is shutting down.
func readFinished(t *testing.T, r *bufio.Reader) {
	t.Helper()
	resp, err := http.ReadResponse(r, nil)
	require.NoError(t, err)
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.NoError(t, resp.Body.Close())
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, "finished", string(body))
	require.True(t, resp.Close, "Connection: close while shutting down")
}

// requireRefused waits until the server's port refuses connections.
func requireRefused(t *testing.T, ts *testServer) {
	t.Helper()
	require.Eventually(t, func() bool {
		conn, err := net.DialTimeout("tcp", ts.addr, time.Second)
		if err != nil {
			return true
		}
		conn.Close()
		return false
	}, wait, 5*time.Millisecond, "dials are refused once Shutdown has begun")
}

// Graceful shutdown with connections open (docs/contract.md C9.3): Shutdown closes the
// listener at once and closes the connections netpoll sees idle (here, one
// that has sent nothing yet), lets the request in flight complete, and returns
// nil once it has; Run then returns nil.
func TestGracefulShutdown(t *testing.T) {
	checkLeaks(t)
	started, release := make(chan struct{}), make(chan struct{})
	ts := startServer(t, slowRoute(started, release))
	silent := dialRaw(t, ts)
	busy := startSlow(t, ts, started)
	ts.waitOpen(t, 2)

	ts.stopped.Store(true)
	shutdown := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		shutdown <- ts.h.Shutdown(ctx)
	}()
	requireRefused(t, ts)
	_, err := silent.Read(make([]byte, 1))
	require.ErrorIs(t, err, io.EOF, "the idle connection is closed")
	select {
	case err := <-shutdown:
		t.Fatalf("Shutdown returned %v with a request in flight", err)
	case <-time.After(50 * time.Millisecond):
	}

	close(release)
	readFinished(t, bufio.NewReader(busy))
	select {
	case err := <-shutdown:
		require.NoError(t, err, "Shutdown")
	case <-time.After(wait):
		t.Fatal("Shutdown did not return after the last request completed")
	}
	select {
	case err := <-ts.runErr:
		require.NoError(t, err, "Run")
	case <-time.After(wait):
		t.Fatal("Run did not return after Shutdown")
	}
	ts.waitOpen(t, 0)
}

// Hertz v0.10.4 closes a connection whenever its OnRequest returns, so a
// kept-alive connection waits for its next request inside OnRequest (for up
// to the idle timeout) and netpoll counts it busy: Shutdown gives up when
// its context ends (Hertz then returns nil) and leaves it open. A request sent
// on it afterwards is still served, with "Connection: close".
func TestGracefulShutdownKeptAlive(t *testing.T) {
	checkLeaks(t)
	started, release := make(chan struct{}), make(chan struct{})
	ts := startServer(t, slowRoute(started, release))
	conn, r := keepAlive(t, ts)

	ts.stopped.Store(true)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	begin := time.Now()
	require.NoError(t, ts.h.Shutdown(ctx))
	require.GreaterOrEqual(t, time.Since(begin), 150*time.Millisecond, "Shutdown waited for the busy connection")
	select {
	case err := <-ts.runErr:
		require.NoError(t, err, "Run")
	case <-time.After(wait):
		t.Fatal("Run did not return after Shutdown")
	}
	requireRefused(t, ts)
	require.EqualValues(t, 1, ts.open.Load(), "the busy connection is left open")

	close(release)
	_, err := io.WriteString(conn, "GET /slow HTTP/1.1\r\nHost: compat\r\n\r\n")
	require.NoError(t, err)
	readFinished(t, r)
	_, err = r.ReadByte()
	require.ErrorIs(t, err, io.EOF, "the server closes the connection after that answer")
	ts.waitOpen(t, 0)
}

// Hertz's Close is a Shutdown with an expired context (docs/contract.md C15.4): it returns
// at once with the context's error, stops accepting, and leaves the busy
// connection to finish.
func TestCloseWithRequestInFlight(t *testing.T) {
	checkLeaks(t)
	started, release := make(chan struct{}), make(chan struct{})
	ts := startServer(t, slowRoute(started, release))
	busy := startSlow(t, ts, started)

	ts.stopped.Store(true)
	err := ts.h.Close()
	require.True(t, errors.Is(err, context.DeadlineExceeded), "Close: %v", err)
	select {
	case err := <-ts.runErr:
		require.NoError(t, err, "Run")
	case <-time.After(wait):
		t.Fatal("Run did not return after Close")
	}
	requireRefused(t, ts)

	close(release)
	readFinished(t, bufio.NewReader(busy))
	ts.waitOpen(t, 0)
}
