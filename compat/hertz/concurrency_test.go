package hertz

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cloudwego/hertz/pkg/app"
	"github.com/cloudwego/hertz/pkg/app/server"
	"github.com/cloudwego/hertz/pkg/protocol"
	"github.com/stretchr/testify/require"
)

const (
	manyRequests = 500
	manyConns    = 50
)

// slowRoutes answers /slow after a short pause, so requests overlap and the
// clients need all their connections. It records the most handlers that ran
// at once.
func slowRoutes(busy, maxBusy *atomic.Int64) func(h *server.Hertz) {
	return func(h *server.Hertz) {
		h.POST("/slow", func(_ context.Context, c *app.RequestContext) {
			n := busy.Add(1)
			defer busy.Add(-1)
			for m := maxBusy.Load(); n > m && !maxBusy.CompareAndSwap(m, n); m = maxBusy.Load() {
			}
			time.Sleep(2 * time.Millisecond)
			c.String(http.StatusOK, "%s|%s", c.QueryArgs().Peek("i"), c.Request.Body())
		})
	}
}

// manyBody is request i's body: sizes vary so some requests span several
// reads.
func manyBody(i int) string { return strings.Repeat(fmt.Sprintf("<%d>", i), 1+i%7*300) }

func TestConcurrentNetHTTP(t *testing.T) {
	checkLeaks(t)
	var busy, maxBusy atomic.Int64
	ts := startServer(t, slowRoutes(&busy, &maxBusy))
	cl := newHTTPClient(t, manyConns)
	require.NoError(t, parallel(manyRequests, func(i int) error {
		resp, err := cl.Post(ts.url("/slow?i="+itoa(i)), "text/plain", strings.NewReader(manyBody(i)))
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			return err
		}
		return checkMany(i, resp.StatusCode, body)
	}))
	requireConnBounds(t, ts, &maxBusy)
}

func TestConcurrentHertzClient(t *testing.T) {
	checkLeaks(t)
	var busy, maxBusy atomic.Int64
	ts := startServer(t, slowRoutes(&busy, &maxBusy))
	cl, dialer := newHertzClient(t, manyConns)
	require.NoError(t, parallel(manyRequests, func(i int) error {
		req, resp := protocol.AcquireRequest(), protocol.AcquireResponse()
		defer protocol.ReleaseRequest(req)
		defer protocol.ReleaseResponse(resp)
		req.SetRequestURI(ts.url("/slow?i=" + itoa(i)))
		req.SetMethod(http.MethodPost)
		req.SetBodyString(manyBody(i))
		if err := cl.Do(context.Background(), req, resp); err != nil {
			return fmt.Errorf("request %d: %w", i, err)
		}
		return checkMany(i, resp.StatusCode(), resp.Body())
	}))
	requireConnBounds(t, ts, &maxBusy)
	require.LessOrEqual(t, dialer.dials.Load(), int64(manyConns))
}

// checkMany checks the answer to request i.
func checkMany(i, status int, body []byte) error {
	if status != http.StatusOK {
		return fmt.Errorf("request %d: status %d", i, status)
	}
	if msg := diff([]byte(itoa(i)+"|"+manyBody(i)), body); msg != "" {
		return fmt.Errorf("request %d: response body: %s", i, msg)
	}
	return nil
}

// requireConnBounds checks that the clients kept to their connection limit
// and that requests really overlapped.
func requireConnBounds(t *testing.T, ts *testServer, maxBusy *atomic.Int64) {
	t.Helper()
	t.Logf("connections: %d accepted, at most %d open; at most %d handlers at once",
		ts.accepted.Load(), ts.maxOpen.Load(), maxBusy.Load())
	require.LessOrEqual(t, ts.maxOpen.Load(), int64(manyConns))
	require.LessOrEqual(t, ts.accepted.Load(), int64(manyConns))
	require.Greater(t, maxBusy.Load(), int64(1), "requests overlapped")
}
