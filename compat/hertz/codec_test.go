package hertz

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/cloudwego/hertz/pkg/protocol"
	"github.com/cloudwego/hertz/pkg/protocol/http1/req"
	"github.com/cloudwego/netpoll"
	"github.com/stretchr/testify/require"
)

// rawPost returns an HTTP/1.1 POST carrying body with a Content-Length.
func rawPost(path string, body []byte) []byte {
	head := fmt.Sprintf("POST %s HTTP/1.1\r\nHost: compat\r\nContent-Length: %d\r\n\r\n", path, len(body))
	return append([]byte(head), body...)
}

// Hertz reads a body of known length as Peek(n) then Skip(n) and keeps the
// peeked slice as the request body (req.ContinueReadBody, "ping-pong
// optimization"); the body must stay intact until the reader is Released. The
// body here spans several of the reader's nodes, so Peek returns a copy: that
// copy must not go back to a pool that another reader draws from before
// Release (API.md §2.2.6).
func TestPeekedBodyOutlivesSkip(t *testing.T) {
	const size = 100500
	first := patterned(size, 1)
	var r1 protocol.Request
	zr1 := netpoll.NewReader(bytes.NewReader(rawPost("/first", first)))
	require.NoError(t, req.Read(&r1, zr1))
	require.True(t, bytes.Equal(first, r1.Body()), "first body read back")

	for i := 0; i < 20; i++ {
		other := patterned(size, byte(i+2))
		var r2 protocol.Request
		zr2 := netpoll.NewReader(bytes.NewReader(rawPost("/other", other)))
		require.NoError(t, req.Read(&r2, zr2))
		require.True(t, bytes.Equal(other, r2.Body()), "other body read back")
		require.Truef(t, bytes.Equal(first, r1.Body()),
			"round %d: first body changed before its reader was released", i)
		require.NoError(t, zr2.Release())
	}
	require.NoError(t, zr1.Release())
}

// patterned returns n bytes that differ for each seed and along the slice.
func patterned(n int, seed byte) []byte {
	p := make([]byte, n)
	for i := range p {
		p[i] = byte(i*31+i/251) ^ seed*97
	}
	return p
}
