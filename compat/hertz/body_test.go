package hertz

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"testing"

	"github.com/cloudwego/hertz/pkg/app"
	"github.com/cloudwego/hertz/pkg/app/server"
	"github.com/cloudwego/hertz/pkg/protocol"
	"github.com/stretchr/testify/require"
)

const bigSize = 1 << 20

// bigRoutes answers POST /big: the request carries bigSize bytes patterned by
// its X-Seed header, which the handler checks byte for byte before answering
// with bigSize bytes patterned by seed+1.
func bigRoutes(h *server.Hertz) {
	h.POST("/big", func(_ context.Context, c *app.RequestContext) {
		seed, err := strconv.Atoi(string(c.GetHeader("X-Seed")))
		if err != nil {
			c.String(http.StatusBadRequest, "bad seed")
			return
		}
		if msg := diff(patterned(bigSize, byte(seed)), c.Request.Body()); msg != "" {
			c.String(http.StatusBadRequest, "request body: %s", msg)
			return
		}
		c.Data(http.StatusOK, "application/octet-stream", patterned(bigSize, byte(seed+1)))
	})
}

// diff describes how got differs from want, or returns "" if it does not.
func diff(want, got []byte) string {
	if bytes.Equal(want, got) {
		return ""
	}
	for i := 0; i < min(len(want), len(got)); i++ {
		if want[i] != got[i] {
			return fmt.Sprintf("%d bytes, want %d; first difference at %d", len(got), len(want), i)
		}
	}
	return fmt.Sprintf("%d bytes, want %d", len(got), len(want))
}

// bigNetHTTP sends one /big request through net/http and checks the answer.
func bigNetHTTP(cl *http.Client, url string, seed int) error {
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(patterned(bigSize, byte(seed))))
	if err != nil {
		return err
	}
	req.Header.Set("X-Seed", strconv.Itoa(seed))
	resp, err := cl.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("seed %d: status %d: %s", seed, resp.StatusCode, body)
	}
	if msg := diff(patterned(bigSize, byte(seed+1)), body); msg != "" {
		return fmt.Errorf("seed %d: response body: %s", seed, msg)
	}
	return nil
}

// bigHertz is bigNetHTTP through a Hertz client.
func bigHertz(cl interface {
	Do(context.Context, *protocol.Request, *protocol.Response) error
}, url string, seed int,
) error {
	req, resp := protocol.AcquireRequest(), protocol.AcquireResponse()
	defer protocol.ReleaseRequest(req)
	defer protocol.ReleaseResponse(resp)
	req.SetRequestURI(url)
	req.SetMethod(http.MethodPost)
	req.Header.Set("X-Seed", strconv.Itoa(seed))
	req.SetBody(patterned(bigSize, byte(seed)))
	if err := cl.Do(context.Background(), req, resp); err != nil {
		return err
	}
	if resp.StatusCode() != http.StatusOK {
		return fmt.Errorf("seed %d: status %d: %s", seed, resp.StatusCode(), resp.Body())
	}
	if msg := diff(patterned(bigSize, byte(seed+1)), resp.Body()); msg != "" {
		return fmt.Errorf("seed %d: response body: %s", seed, msg)
	}
	return nil
}

// parallel runs f(0..n-1) on n goroutines and returns the first error.
func parallel(n int, f func(i int) error) error {
	errs := make(chan error, n)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			errs <- f(i)
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// One MiB each way, one request at a time on a kept-alive connection, then
// several at once, each on its own connection: the server must keep every
// request body intact until its handler is done with it (docs/contract.md C2.6).
func TestLargeBodiesNetHTTP(t *testing.T) {
	checkLeaks(t)
	ts := startServer(t, bigRoutes)
	cl := newHTTPClient(t, 8)
	for seed := 0; seed < 3; seed++ {
		require.NoError(t, bigNetHTTP(cl, ts.url("/big"), seed))
	}
	require.EqualValues(t, 1, ts.accepted.Load(), "sequential requests share a connection")
	require.NoError(t, parallel(8, func(i int) error {
		for r := 0; r < 3; r++ {
			if err := bigNetHTTP(cl, ts.url("/big"), 10+i*3+r); err != nil {
				return err
			}
		}
		return nil
	}))
}

func TestLargeBodiesHertzClient(t *testing.T) {
	checkLeaks(t)
	ts := startServer(t, bigRoutes)
	cl, dialer := newHertzClient(t, 8)
	for seed := 0; seed < 3; seed++ {
		require.NoError(t, bigHertz(cl, ts.url("/big"), seed))
	}
	require.EqualValues(t, 1, dialer.dials.Load(), "sequential requests share a connection")
	require.NoError(t, parallel(8, func(i int) error {
		for r := 0; r < 3; r++ {
			if err := bigHertz(cl, ts.url("/big"), 10+i*3+r); err != nil {
				return err
			}
		}
		return nil
	}))
}
