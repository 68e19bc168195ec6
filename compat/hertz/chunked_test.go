package hertz

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/textproto"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cloudwego/hertz/pkg/app"
	"github.com/cloudwego/hertz/pkg/app/client"
	"github.com/cloudwego/hertz/pkg/app/server"
	"github.com/cloudwego/hertz/pkg/protocol"
	"github.com/cloudwego/hertz/pkg/protocol/http1/resp"
	"github.com/stretchr/testify/require"
)

// chunkSizes are the chunks /chunked sends, the large one bigger than a
// socket buffer.
var chunkSizes = []int{5, 1000, 70000, 1, 4096}

func chunk(i int) []byte { return patterned(chunkSizes[i], byte(100+i)) }

func allChunks() []byte {
	var all []byte
	for i := range chunkSizes {
		all = append(all, chunk(i)...)
	}
	return all
}

// chunkedRoutes streams chunkSizes through Hertz's chunked writer, flushing
// each chunk. After the first it waits for gate (if not nil), so a test can
// show that the first chunk reached the client while the handler was still
// running.
func chunkedRoutes(gate <-chan struct{}) func(h *server.Hertz) {
	return func(h *server.Hertz) {
		h.GET("/chunked", func(_ context.Context, c *app.RequestContext) {
			c.Response.HijackWriter(resp.NewChunkedBodyWriter(&c.Response, c.GetWriter()))
			for i := range chunkSizes {
				if i == 1 && gate != nil {
					select {
					case <-gate:
					case <-time.After(wait):
						return
					}
				}
				_, _ = c.Write(chunk(i))
				if err := c.Flush(); err != nil {
					return
				}
			}
		})
		// /stream sends a body of unknown size from a reader, which Hertz
		// writes chunked.
		h.GET("/stream", func(_ context.Context, c *app.RequestContext) {
			c.SetBodyStream(bytes.NewReader(allChunks()), -1)
		})
	}
}

// On the wire: a chunked header, then one chunk per flush, the first arriving
// before the handler writes the second.
func TestChunkedOnTheWire(t *testing.T) {
	checkLeaks(t)
	gate := make(chan struct{})
	ts := startServer(t, chunkedRoutes(gate))
	conn := dialRaw(t, ts)
	_, err := io.WriteString(conn, "GET /chunked HTTP/1.1\r\nHost: compat\r\n\r\n")
	require.NoError(t, err)

	tp := textproto.NewReader(bufio.NewReader(conn))
	status, err := tp.ReadLine()
	require.NoError(t, err)
	require.Equal(t, "HTTP/1.1 200 OK", status)
	header, err := tp.ReadMIMEHeader()
	require.NoError(t, err)
	require.Equal(t, "chunked", header.Get("Transfer-Encoding"))
	require.Empty(t, header.Get("Content-Length"))

	for i := range chunkSizes {
		got, err := readChunk(tp.R)
		require.NoErrorf(t, err, "chunk %d", i)
		require.Equalf(t, "", diff(chunk(i), got), "chunk %d", i)
		if i == 0 {
			close(gate)
		}
	}
	last, err := readChunk(tp.R)
	require.NoError(t, err)
	require.Empty(t, last, "the last chunk")
	end, err := tp.ReadLine()
	require.NoError(t, err)
	require.Empty(t, end, "no trailer")

	// The connection is still usable afterwards.
	_, err = io.WriteString(conn, "GET /ping HTTP/1.1\r\nHost: compat\r\n\r\n")
	require.NoError(t, err)
	readPong(t, tp.R)
}

// readChunk reads one chunk: its hexadecimal size line, then its data and CRLF
// unless it is the last, empty, chunk (the trailer section follows that).
func readChunk(r *bufio.Reader) ([]byte, error) {
	line, err := r.ReadString('\n')
	if err != nil {
		return nil, err
	}
	size, err := strconv.ParseUint(strings.TrimSuffix(line, "\r\n"), 16, 32)
	if err != nil {
		return nil, fmt.Errorf("chunk size line %q: %w", line, err)
	}
	if size == 0 {
		return nil, nil
	}
	data := make([]byte, size+2)
	if _, err = io.ReadFull(r, data); err != nil {
		return nil, err
	}
	if !bytes.HasSuffix(data, []byte("\r\n")) {
		return nil, fmt.Errorf("chunk of %d bytes not followed by CRLF", size)
	}
	return data[:size], nil
}

func readPong(t *testing.T, r *bufio.Reader) {
	t.Helper()
	resp, err := http.ReadResponse(r, nil)
	require.NoError(t, err)
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.NoError(t, resp.Body.Close())
	require.Equal(t, "pong", string(body))
}

func TestChunkedNetHTTP(t *testing.T) {
	checkLeaks(t)
	gate := make(chan struct{})
	ts := startServer(t, chunkedRoutes(gate))
	cl := newHTTPClient(t, 1)

	r, err := cl.Get(ts.url("/chunked"))
	require.NoError(t, err)
	require.Equal(t, []string{"chunked"}, r.TransferEncoding)
	require.EqualValues(t, -1, r.ContentLength)
	first := make([]byte, chunkSizes[0])
	_, err = io.ReadFull(r.Body, first)
	require.NoError(t, err, "the first chunk arrives while the handler waits")
	close(gate)
	rest, err := io.ReadAll(r.Body)
	require.NoError(t, err)
	require.NoError(t, r.Body.Close())
	require.Equal(t, "", diff(allChunks(), append(first, rest...)))

	r, err = cl.Get(ts.url("/stream"))
	require.NoError(t, err)
	require.Equal(t, []string{"chunked"}, r.TransferEncoding)
	body, err := io.ReadAll(r.Body)
	require.NoError(t, err)
	require.NoError(t, r.Body.Close())
	require.Equal(t, "", diff(allChunks(), body))
	require.EqualValues(t, 1, ts.accepted.Load())
}

func TestChunkedHertzClient(t *testing.T) {
	checkLeaks(t)
	gate := make(chan struct{})
	ts := startServer(t, chunkedRoutes(gate))
	cl, dialer := newHertzClient(t, 1, client.WithResponseBodyStream(true))

	req, r := protocol.AcquireRequest(), protocol.AcquireResponse()
	defer protocol.ReleaseRequest(req)
	defer protocol.ReleaseResponse(r)
	req.SetRequestURI(ts.url("/chunked"))
	require.NoError(t, cl.Do(context.Background(), req, r))
	require.Equal(t, http.StatusOK, r.StatusCode())
	require.Equal(t, -1, r.Header.ContentLength(), "a chunked response")
	first := make([]byte, chunkSizes[0])
	_, err := io.ReadFull(r.BodyStream(), first)
	require.NoError(t, err, "the first chunk arrives while the handler waits")
	close(gate)
	rest, err := io.ReadAll(r.BodyStream())
	require.NoError(t, err)
	require.Equal(t, "", diff(allChunks(), append(first, rest...)))
	require.NoError(t, r.CloseBodyStream())

	req.Reset()
	r.Reset()
	req.SetRequestURI(ts.url("/stream"))
	require.NoError(t, cl.Do(context.Background(), req, r))
	body, err := io.ReadAll(r.BodyStream())
	require.NoError(t, err)
	require.Equal(t, "", diff(allChunks(), body))
	require.NoError(t, r.CloseBodyStream())
	require.EqualValues(t, 1, dialer.dials.Load(), "both responses on one connection")
}
