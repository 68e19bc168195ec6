package hertz

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/cloudwego/hertz/pkg/common/test/mock"
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
// Release (docs/contract.md C2.6).
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

// Hertz's mock connection (pkg/common/test/mock.NewConn, used throughout
// Hertz's tests) records what is written through NewReadWriter over one
// bytes.Buffer and reads it back through the same ReadWriter. A read that
// finds the buffer empty gets ErrEOF, but the end of the wrapped reader is
// not final: once more bytes have been written, later reads must pull them
// (the reference reads the io.Reader again on every fill; docs/contract.md C13.1).
func TestReadWriterReadsAgainAfterEOF(t *testing.T) {
	rw := netpoll.NewReadWriter(&bytes.Buffer{})
	_, err := rw.ReadBinary(3)
	require.ErrorIs(t, err, netpoll.ErrEOF)

	_, err = rw.WriteBinary([]byte("abc"))
	require.NoError(t, err)
	require.NoError(t, rw.Flush())
	p, err := rw.ReadBinary(3)
	require.NoError(t, err, "the bytes written after the first EOF")
	require.Equal(t, "abc", string(p))
}

// The same through Hertz's mock, as its TestConn/TestReadWriter does.
func TestHertzMockRecorder(t *testing.T) {
	conn := mock.NewConn("abcdef4343")
	p, err := conn.ReadBinary(10)
	require.NoError(t, err)
	require.Equal(t, "abcdef4343", string(p))

	wr := conn.WriterRecorder()
	_, err = conn.WriteBinary([]byte("efghljk"))
	require.NoError(t, err)
	p, _ = wr.ReadBinary(7)
	require.Empty(t, p, "nothing is readable before Flush")
	require.NoError(t, conn.Flush())
	p, err = wr.ReadBinary(7)
	require.NoError(t, err)
	require.Equal(t, "efghljk", string(p))
}
