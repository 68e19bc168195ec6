package hertz

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cloudwego/hertz/pkg/app"
	"github.com/cloudwego/hertz/pkg/app/client"
	"github.com/cloudwego/hertz/pkg/app/server"
	"github.com/cloudwego/hertz/pkg/common/config"
	"github.com/cloudwego/hertz/pkg/common/hlog"
	"github.com/cloudwego/hertz/pkg/network"
	hnetpoll "github.com/cloudwego/hertz/pkg/network/netpoll"
	"github.com/cloudwego/netpoll"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

// wait bounds every wait in these tests: generous, because the machine may be
// small and busy, and -race slows everything down.
const wait = 30 * time.Second

func TestMain(m *testing.M) {
	hlog.SetOutput(io.Discard)
	// Start the pollers now: they live as long as the process, and the leak
	// checks below count goroutines and fds against a baseline.
	netpoll.Initialize()
	os.Exit(m.Run())
}

// testServer is a Hertz server on the netpoll transport, listening on a free
// loopback port, that counts the connections it accepts and still holds.
type testServer struct {
	h    *server.Hertz
	addr string

	accepted atomic.Int64 // connections accepted so far
	open     atomic.Int64 // accepted connections whose close callbacks have not run
	maxOpen  atomic.Int64 // the largest value open reached
	foreign  atomic.Int64 // accepted connections that were not netpoll's

	stopped atomic.Bool
	runErr  chan error
}

// startServer starts a Hertz server, lets register add its routes, waits until
// it serves, and stops it at the end of the test. Options in opts come last and
// so override the defaults here.
func startServer(t *testing.T, register func(h *server.Hertz), opts ...config.Option) *testServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ts := &testServer{addr: ln.Addr().String(), runErr: make(chan error, 1)}
	base := []config.Option{
		server.WithListener(ln),
		server.WithTransport(hnetpoll.NewTransporter),
		server.WithOnAccept(ts.onAccept),
		server.WithExitWaitTime(wait),
		server.WithDisablePrintRoute(true),
	}
	ts.h = server.New(append(base, opts...)...)
	ts.h.GET("/ping", func(_ context.Context, c *app.RequestContext) { c.String(http.StatusOK, "pong") })
	if register != nil {
		register(ts.h)
	}
	go func() { ts.runErr <- ts.h.Run() }()
	t.Cleanup(func() { ts.stop(t) })
	ts.waitReady(t)
	return ts
}

// onAccept runs in netpoll's OnPrepare for every accepted connection: it checks
// that the connection is ours and counts it until its close callbacks run.
func (ts *testServer) onAccept(c net.Conn) context.Context {
	ts.accepted.Add(1)
	conn, ok := netpollConn(c)
	if !ok {
		ts.foreign.Add(1)
		return context.Background()
	}
	n := ts.open.Add(1)
	for {
		m := ts.maxOpen.Load()
		if n <= m || ts.maxOpen.CompareAndSwap(m, n) {
			break
		}
	}
	_ = conn.AddCloseCallback(func(netpoll.Connection) error {
		ts.open.Add(-1)
		return nil
	})
	return context.Background()
}

// netpollConn unwraps the connection Hertz's netpoll transport hands out and
// tells whether it is a connection of this netpoll.
func netpollConn(c any) (netpoll.Connection, bool) {
	hc, ok := c.(*hnetpoll.Conn)
	if !ok {
		return nil, false
	}
	conn, ok := hc.Conn.(netpoll.Connection)
	return conn, ok
}

// waitReady returns once the server answers a request, then forgets that
// request's connection.
func (ts *testServer) waitReady(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for {
		err := ts.pingOnce()
		if err == nil {
			break
		}
		require.Truef(t, time.Now().Before(deadline), "server never answered: %v", err)
		time.Sleep(10 * time.Millisecond)
	}
	ts.waitOpen(t, 0)
	ts.accepted.Store(0)
	ts.maxOpen.Store(0)
}

// pingOnce sends GET /ping on a fresh connection that the server then closes.
func (ts *testServer) pingOnce() error {
	conn, err := net.DialTimeout("tcp", ts.addr, time.Second)
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(wait))
	if _, err = io.WriteString(conn, "GET /ping HTTP/1.1\r\nHost: compat\r\nConnection: close\r\n\r\n"); err != nil {
		return err
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK || string(body) != "pong" {
		return fmt.Errorf("ping: %d %q", resp.StatusCode, body)
	}
	return nil
}

// waitOpen waits until the server holds exactly n connections.
func (ts *testServer) waitOpen(t *testing.T, n int64) {
	t.Helper()
	require.Eventuallyf(t, func() bool { return ts.open.Load() == n }, wait, 5*time.Millisecond,
		"server connections: want %d, have %d", n, ts.open.Load())
}

// shutdown stops the server gracefully and returns what Shutdown returned; Run
// must then return nil.
func (ts *testServer) shutdown(t *testing.T, ctx context.Context) error {
	t.Helper()
	ts.stopped.Store(true)
	err := ts.h.Shutdown(ctx)
	select {
	case runErr := <-ts.runErr:
		require.NoError(t, runErr, "Run")
	case <-time.After(wait):
		t.Fatal("Run did not return after Shutdown")
	}
	return err
}

func (ts *testServer) stop(t *testing.T) {
	if !ts.stopped.Load() {
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		require.NoError(t, ts.shutdown(t, ctx))
	}
	ts.waitOpen(t, 0)
	require.Zero(t, ts.foreign.Load(), "connections accepted that were not netpoll connections")
}

// url returns the server's address for path.
func (ts *testServer) url(path string) string { return "http://" + ts.addr + path }

// newHTTPClient returns a net/http client with at most maxConns connections,
// whose idle connections are closed at the end of the test.
func newHTTPClient(t *testing.T, maxConns int) *http.Client {
	tr := &http.Transport{
		MaxConnsPerHost:     maxConns,
		MaxIdleConnsPerHost: maxConns,
		DisableCompression:  true,
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: wait}
}

// countingDialer is Hertz's netpoll dialer, checked and counted.
type countingDialer struct {
	network.Dialer
	dials   atomic.Int64
	foreign atomic.Int64
}

func (d *countingDialer) DialConnection(nw, addr string, timeout time.Duration, cfg *tls.Config) (network.Conn, error) {
	c, err := d.Dialer.DialConnection(nw, addr, timeout, cfg)
	if err == nil {
		d.dials.Add(1)
		if _, ok := netpollConn(c); !ok {
			d.foreign.Add(1)
		}
	}
	return c, err
}

// newHertzClient returns a Hertz client that dials through netpoll's dialer,
// with at most maxConns connections, closed at the end of the test.
func newHertzClient(t *testing.T, maxConns int, opts ...config.ClientOption) (*client.Client, *countingDialer) {
	d := &countingDialer{Dialer: hnetpoll.NewDialer()}
	base := []config.ClientOption{
		client.WithDialer(d),
		client.WithMaxConnsPerHost(maxConns),
		client.WithMaxConnWaitTimeout(wait),
		client.WithDialTimeout(wait),
		client.WithClientReadTimeout(wait),
	}
	c, err := client.NewClient(append(base, opts...)...)
	require.NoError(t, err)
	t.Cleanup(func() {
		c.CloseIdleConnections()
		require.Zero(t, d.foreign.Load(), "the client dialed connections that were not netpoll's")
	})
	return c, d
}

// checkLeaks, registered first in a test, runs last: no goroutine of the test
// survives it, and the process holds no more fds than when the test began.
// Hertz's client keeps cleaner goroutines that sleep for up to 10 s after
// their last connection has gone, and its server starts a clock goroutine for
// good; they are not ours to wait for.
func checkLeaks(t *testing.T) {
	fds := openFDs(t)
	before := goleak.IgnoreCurrent()
	t.Cleanup(func() {
		goleak.VerifyNone(t, before,
			goleak.IgnoreAnyFunction("github.com/cloudwego/hertz/pkg/app/client.(*Client).cleaner"),
			goleak.IgnoreAnyFunction("github.com/cloudwego/hertz/pkg/protocol/http1.(*HostClient).connsCleaner"),
			goleak.IgnoreAnyFunction("github.com/cloudwego/hertz/pkg/protocol.UpdateServerDate.func1"))
		require.Eventuallyf(t, func() bool { return openFDs(t) <= fds }, wait, 10*time.Millisecond,
			"open fds: %d before the test, %d after", fds, openFDs(t))
	})
}

func openFDs(t *testing.T) int {
	entries, err := os.ReadDir("/proc/self/fd")
	require.NoError(t, err)
	return len(entries)
}

func itoa(i int) string { return strconv.Itoa(i) }
