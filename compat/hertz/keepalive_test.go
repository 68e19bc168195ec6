package hertz

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/cloudwego/hertz/pkg/app"
	"github.com/cloudwego/hertz/pkg/app/server"
	"github.com/cloudwego/hertz/pkg/protocol"
	"github.com/stretchr/testify/require"
)

// echoRoutes answers /echo with the method, the path, the query and the body,
// so a response shows which request it belongs to.
func echoRoutes(h *server.Hertz) {
	echo := func(_ context.Context, c *app.RequestContext) {
		c.String(http.StatusOK, "%s %s?%s %s", c.Method(), c.Path(), c.QueryArgs().String(), c.Request.Body())
	}
	h.GET("/echo", echo)
	h.POST("/echo", echo)
}

func TestKeepAliveNetHTTP(t *testing.T) {
	checkLeaks(t)
	ts := startServer(t, echoRoutes)
	cl := newHTTPClient(t, 1)
	const n = 20
	for i := 0; i < n; i++ {
		var resp *http.Response
		var err error
		if i%2 == 0 {
			resp, err = cl.Get(ts.url("/echo?i=" + itoa(i)))
		} else {
			resp, err = cl.Post(ts.url("/echo?i="+itoa(i)), "text/plain", strings.NewReader("body-"+itoa(i)))
		}
		require.NoError(t, err)
		body, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		require.NoError(t, resp.Body.Close())
		require.Equal(t, http.StatusOK, resp.StatusCode)
		want := fmt.Sprintf("GET /echo?i=%d ", i)
		if i%2 == 1 {
			want = fmt.Sprintf("POST /echo?i=%d body-%d", i, i)
		}
		require.Equal(t, want, string(body))
	}
	require.EqualValues(t, 1, ts.accepted.Load(), "all requests on one connection")
	require.EqualValues(t, 1, ts.open.Load(), "the connection stays open between requests")
}

func TestKeepAliveHertzClient(t *testing.T) {
	checkLeaks(t)
	ts := startServer(t, echoRoutes)
	cl, dialer := newHertzClient(t, 1)
	const n = 20
	for i := 0; i < n; i++ {
		req, resp := protocol.AcquireRequest(), protocol.AcquireResponse()
		req.SetRequestURI(ts.url("/echo?i=" + itoa(i)))
		req.SetMethod(http.MethodPost)
		req.SetBodyString("body-" + itoa(i))
		require.NoError(t, cl.Do(context.Background(), req, resp))
		require.Equal(t, http.StatusOK, resp.StatusCode())
		require.Equal(t, fmt.Sprintf("POST /echo?i=%d body-%d", i, i), string(resp.Body()))
		protocol.ReleaseRequest(req)
		protocol.ReleaseResponse(resp)
	}
	require.EqualValues(t, 1, ts.accepted.Load(), "all requests on one connection")
	require.EqualValues(t, 1, dialer.dials.Load(), "the client dialed once")
}

// A server closes the connection after a response to "Connection: close", and
// the next request then needs a new one.
func TestConnectionClose(t *testing.T) {
	checkLeaks(t)
	ts := startServer(t, echoRoutes)
	for i := 0; i < 3; i++ {
		require.NoError(t, ts.pingOnce())
	}
	ts.waitOpen(t, 0)
	require.EqualValues(t, 3, ts.accepted.Load())
}

// pipelined returns count requests, each different, some with bodies.
func pipelined(count int) (raw []byte, want []string) {
	var b strings.Builder
	for i := 0; i < count; i++ {
		if i%3 == 2 {
			body := strings.Repeat(string(rune('a'+i%26)), 100*i+1)
			fmt.Fprintf(&b, "POST /echo?i=%d HTTP/1.1\r\nHost: compat\r\nContent-Length: %d\r\n\r\n%s", i, len(body), body)
			want = append(want, fmt.Sprintf("POST /echo?i=%d %s", i, body))
			continue
		}
		fmt.Fprintf(&b, "GET /echo?i=%d HTTP/1.1\r\nHost: compat\r\n\r\n", i)
		want = append(want, fmt.Sprintf("GET /echo?i=%d ", i))
	}
	return []byte(b.String()), want
}

// readResponses reads len(want) responses from r in order and checks each.
func readResponses(t *testing.T, r *bufio.Reader, want []string) {
	t.Helper()
	for i, w := range want {
		resp, err := http.ReadResponse(r, nil)
		require.NoErrorf(t, err, "response %d", i)
		body, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		require.NoError(t, resp.Body.Close())
		require.Equal(t, http.StatusOK, resp.StatusCode)
		require.Equalf(t, w, string(body), "response %d", i)
	}
}

// Requests written back to back before any response is read are answered in
// order on the same connection.
func TestPipelining(t *testing.T) {
	checkLeaks(t)
	ts := startServer(t, echoRoutes)

	t.Run("one write", func(t *testing.T) {
		raw, want := pipelined(12)
		conn := dialRaw(t, ts)
		_, err := conn.Write(raw)
		require.NoError(t, err)
		readResponses(t, bufio.NewReader(conn), want)
	})

	// The same requests in small pieces, so the server sees requests split
	// at every point, headers and bodies included.
	t.Run("fragments", func(t *testing.T) {
		raw, want := pipelined(12)
		conn := dialRaw(t, ts)
		tcp := conn.(*net.TCPConn)
		require.NoError(t, tcp.SetNoDelay(true))
		done := make(chan error, 1)
		go func() {
			for off := 0; off < len(raw); off += 7 {
				if _, err := conn.Write(raw[off:min(off+7, len(raw))]); err != nil {
					done <- err
					return
				}
				if off%140 == 0 {
					time.Sleep(time.Millisecond)
				}
			}
			done <- nil
		}()
		readResponses(t, bufio.NewReader(conn), want)
		require.NoError(t, <-done)
	})

	// Many requests, far more than a socket buffer of responses: the server
	// must keep answering while the client has not read yet.
	t.Run("deep", func(t *testing.T) {
		raw, want := pipelined(300)
		conn := dialRaw(t, ts)
		done := make(chan error, 1)
		go func() {
			_, err := conn.Write(raw)
			done <- err
		}()
		readResponses(t, bufio.NewReader(conn), want)
		require.NoError(t, <-done)
	})

	require.EqualValues(t, 3, ts.accepted.Load(), "one connection per subtest")
}

// dialRaw opens a plain TCP connection to the server, closed at the end of
// the test, with a deadline that keeps a broken server from hanging it.
func dialRaw(t *testing.T, ts *testServer) net.Conn {
	t.Helper()
	conn, err := net.DialTimeout("tcp", ts.addr, wait)
	require.NoError(t, err)
	require.NoError(t, conn.SetDeadline(time.Now().Add(wait)))
	t.Cleanup(func() { conn.Close() })
	return conn
}
