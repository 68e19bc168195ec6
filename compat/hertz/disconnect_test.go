package hertz

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cloudwego/hertz/pkg/app"
	"github.com/cloudwego/hertz/pkg/app/server"
	"github.com/stretchr/testify/require"
)

const uploadSize = 100000

// uploadRoutes counts the /upload requests that reached a handler and answers
// with the body's length; /huge answers with hugeSize bytes.
func uploadRoutes(handled *atomic.Int64, huge []byte) func(h *server.Hertz) {
	return func(h *server.Hertz) {
		h.POST("/upload", func(_ context.Context, c *app.RequestContext) {
			handled.Add(1)
			c.String(http.StatusOK, "%d", len(c.Request.Body()))
		})
		h.GET("/huge", func(_ context.Context, c *app.RequestContext) {
			c.Data(http.StatusOK, "application/octet-stream", huge)
		})
	}
}

// uploadHead is the header of an /upload request with a body of n bytes.
func uploadHead(n int) string {
	return fmt.Sprintf("POST /upload HTTP/1.1\r\nHost: compat\r\nContent-Length: %d\r\n\r\n", n)
}

// A client that goes away in the middle of a request, politely or with a
// reset, costs the server that connection only: the handler never sees the
// partial request, the server closes its side, and later requests succeed.
func TestClientDisconnectMidRequest(t *testing.T) {
	checkLeaks(t)
	var handled atomic.Int64
	huge := patterned(16<<20, 7)
	ts := startServer(t, uploadRoutes(&handled, huge))

	cases := []struct {
		name  string
		send  string
		read  int  // bytes of response to read before going away
		reset bool // close with RST instead of FIN
	}{
		{name: "partial request line", send: "POST /upl"},
		{name: "partial headers", send: "POST /upload HTTP/1.1\r\nHost: compat\r\nContent-Le"},
		{name: "partial body", send: uploadHead(uploadSize) + strings.Repeat("x", 1000)},
		{name: "partial body, reset", send: uploadHead(uploadSize) + strings.Repeat("x", 1000), reset: true},
		{name: "most of a large body", send: uploadHead(4<<20) + strings.Repeat("y", 3<<20)},
		{name: "most of a large body, reset", send: uploadHead(4<<20) + strings.Repeat("y", 3<<20), reset: true},
		// The server is still sending a 16 MiB response when the client goes.
		{name: "during the response", send: "GET /huge HTTP/1.1\r\nHost: compat\r\n\r\n", read: 64 << 10},
		{name: "during the response, reset", send: "GET /huge HTTP/1.1\r\nHost: compat\r\n\r\n", read: 64 << 10, reset: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			accepted := ts.accepted.Load()
			conn, err := net.DialTimeout("tcp", ts.addr, wait)
			require.NoError(t, err)
			require.NoError(t, conn.SetDeadline(time.Now().Add(wait)))
			_, err = io.WriteString(conn, tc.send)
			require.NoError(t, err)
			if tc.read > 0 {
				_, err = io.ReadFull(conn, make([]byte, tc.read))
				require.NoError(t, err)
			}
			require.Eventually(t, func() bool { return ts.accepted.Load() == accepted+1 }, wait, time.Millisecond)
			// Give the server a moment to be waiting for the rest.
			time.Sleep(20 * time.Millisecond)
			if tc.reset {
				require.NoError(t, conn.(*net.TCPConn).SetLinger(0))
			}
			require.NoError(t, conn.Close())

			ts.waitOpen(t, 0)
			require.Zero(t, handled.Load(), "no handler saw a partial request")
			requireHealthy(t, ts, &handled)
		})
	}
}

// requireHealthy sends complete requests on new connections and checks the
// answers, then waits for the server to let those connections go.
func requireHealthy(t *testing.T, ts *testServer, handled *atomic.Int64) {
	t.Helper()
	before := handled.Load()
	require.NoError(t, ts.pingOnce())
	conn, err := net.DialTimeout("tcp", ts.addr, wait)
	require.NoError(t, err)
	defer conn.Close()
	require.NoError(t, conn.SetDeadline(time.Now().Add(wait)))
	_, err = io.WriteString(conn, uploadHead(uploadSize)+strings.Repeat("z", uploadSize))
	require.NoError(t, err)
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	require.NoError(t, err)
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.NoError(t, resp.Body.Close())
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, itoa(uploadSize), string(body))
	require.Equal(t, before+1, handled.Load())
	require.NoError(t, conn.Close())
	ts.waitOpen(t, 0)
	handled.Store(before)
}

// With SenseClientDisconnection, a handler's context ends when its client
// goes away: this rides on netpoll's OnDisconnect running on a peer close
// while OnRequest is still busy (docs/contract.md C8.5).
func TestSenseClientDisconnection(t *testing.T) {
	checkLeaks(t)
	started, cancelled := make(chan struct{}), make(chan struct{})
	ts := startServer(t, func(h *server.Hertz) {
		h.GET("/wait", func(ctx context.Context, c *app.RequestContext) {
			close(started)
			select {
			case <-ctx.Done():
				close(cancelled)
			case <-time.After(wait):
			}
		})
	}, server.WithSenseClientDisconnection(true))

	conn := dialRaw(t, ts)
	_, err := io.WriteString(conn, "GET /wait HTTP/1.1\r\nHost: compat\r\n\r\n")
	require.NoError(t, err)
	select {
	case <-started:
	case <-time.After(wait):
		t.Fatal("the handler did not start")
	}
	require.NoError(t, conn.Close())
	select {
	case <-cancelled:
	case <-time.After(wait):
		t.Fatal("the handler's context did not end when the client went away")
	}
	ts.waitOpen(t, 0)
	require.NoError(t, ts.pingOnce())
}
