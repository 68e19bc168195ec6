//go:build darwin || freebsd || linux

package netpoll

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Handshakes that fail, timeouts, and misuse: docs/contract.md C18.5,
// C18.6, C18.8.

// tlsCalls counts the handlers of a TLS server.
type tlsCalls struct {
	connects, requests, disconnects, closes atomic.Int64
}

func (k *tlsCalls) options(cfg *tls.Config, extra ...Option) []Option {
	return append([]Option{
		WithTLS(cfg),
		WithOnPrepare(func(c Connection) context.Context {
			_ = c.AddCloseCallback(func(Connection) error { k.closes.Add(1); return nil })
			return nil
		}),
		WithOnConnect(func(ctx context.Context, c Connection) context.Context { k.connects.Add(1); return ctx }),
		WithOnDisconnect(func(ctx context.Context, c Connection) { k.disconnects.Add(1) }),
	}, extra...)
}

func (k *tlsCalls) onRequest(ctx context.Context, c Connection) error {
	k.requests.Add(1)
	return echoAll(c)
}

// TestTLSBadCertificate: a client that does not trust the server's
// certificate fails DialTLS with crypto/tls's error; the server closes the
// connection without OnConnect, OnRequest or OnDisconnect, and its close
// callbacks run (C18.5).
func TestTLSBadCertificate(t *testing.T) {
	checkLeaks(t)
	var k tlsCalls
	p := testCerts(t)
	cfg := &tls.Config{Certificates: []tls.Certificate{p.untrusted}}
	s := startServer(t, "tcp", k.onRequest, k.options(cfg)...)
	c, err := DialTLS("tcp", s.addr, longWait, clientTLS(t, 0))
	require.Error(t, err)
	require.Nil(t, c)
	var unknown x509.UnknownAuthorityError
	require.True(t, errors.As(err, &unknown), "%v", err)
	eventually(t, func() bool { return k.closes.Load() == 1 }, "the close callbacks")
	require.Zero(t, k.connects.Load())
	require.Zero(t, k.requests.Load())
	require.Zero(t, k.disconnects.Load())

	// A crypto/tls client asking for another name.
	s2 := startServer(t, "tcp", k.onRequest, k.options(serverTLS(t, 0))...)
	cc := clientTLS(t, 0)
	cc.ServerName = "example.com"
	_, err = tls.Dial("tcp", s2.addr, cc)
	require.Error(t, err)
	eventually(t, func() bool { return k.closes.Load() == 2 }, "the close callbacks")
	require.Zero(t, k.connects.Load())
	require.Zero(t, k.requests.Load())
}

// TestTLSHandshakeTimeout: a client that sends nothing, or stops inside
// its ClientHello, is closed when the handshake passes the read timeout,
// without OnConnect (C18.5).
func TestTLSHandshakeTimeout(t *testing.T) {
	checkLeaks(t)
	var k tlsCalls
	s := startServer(t, "tcp", k.onRequest, k.options(serverTLS(t, 0), WithReadTimeout(100*time.Millisecond))...)
	// A real ClientHello, recorded from crypto/tls.
	hello := recordClientHello(t)
	for i, send := range [][]byte{nil, hello[:3], hello[:len(hello)/2]} {
		raw, err := net.Dial("tcp", s.addr)
		require.NoError(t, err)
		if len(send) > 0 {
			_, err = raw.Write(send)
			require.NoError(t, err)
		}
		start := time.Now()
		require.NoError(t, raw.SetReadDeadline(time.Now().Add(longWait)))
		_, err = io.ReadAll(raw)
		require.NoError(t, err, "case %d: the server closes", i)
		require.Less(t, time.Since(start), longWait/2)
		_ = raw.Close()
	}
	eventually(t, func() bool { return k.closes.Load() == 3 }, "the close callbacks")
	require.Zero(t, k.connects.Load())
	require.Zero(t, k.requests.Load())
	require.Zero(t, k.disconnects.Load())
}

// TestTLSDefaultHandshakeBound: without a read timeout the handshake is
// bounded by 10 s (C18.5); checked on the constant, not by waiting.
func TestTLSDefaultHandshakeBound(t *testing.T) {
	require.Equal(t, 10*time.Second, defaultHandshakeTimeout)
}

// recordClientHello returns the first flight of a crypto/tls client.
func recordClientHello(t testing.TB) []byte {
	t.Helper()
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	go func() { _ = tls.Client(a, clientTLS(t, 0)).Handshake() }()
	buf := make([]byte, 16<<10)
	_ = b.SetReadDeadline(time.Now().Add(longWait))
	n, err := io.ReadAtLeast(b, buf, recordHeaderLen)
	require.NoError(t, err)
	want := recordHeaderLen + (int(buf[3])<<8 | int(buf[4]))
	for n < want {
		m, err := b.Read(buf[n:])
		require.NoError(t, err)
		n += m
	}
	return append([]byte(nil), buf[:want]...)
}

// TestTLSNotTLS: a plaintext client of a TLS server is closed without
// OnConnect; DialTLS to a plaintext echo server fails and leaves nothing
// open (C18.5).
func TestTLSNotTLS(t *testing.T) {
	checkLeaks(t)
	var k tlsCalls
	s := startServer(t, "tcp", k.onRequest, k.options(serverTLS(t, 0))...)
	raw, err := net.Dial("tcp", s.addr)
	require.NoError(t, err)
	defer raw.Close()
	_, err = raw.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
	require.NoError(t, err)
	require.NoError(t, raw.SetReadDeadline(time.Now().Add(longWait)))
	_, _ = io.ReadAll(raw)
	eventually(t, func() bool { return k.closes.Load() == 1 }, "the close callbacks")
	require.Zero(t, k.connects.Load())

	ln := stdEcho(t, "tcp")
	c, err := DialTLS("tcp", ln.Addr().String(), 2*time.Second, clientTLS(t, 0))
	require.Error(t, err)
	require.Nil(t, c)
}

// TestTLSReadTimeout: a read that waits past the read timeout fails with
// ErrReadTimeout and the TLS connection goes on working (C18.6).
func TestTLSReadTimeout(t *testing.T) {
	checkLeaks(t)
	s := startTLSEcho(t, serverTLS(t, 0))
	c := dialTLS(t, s.addr, clientTLS(t, 0))
	require.NoError(t, c.SetReadTimeout(30*time.Millisecond))
	_, err := c.Reader().Next(1)
	requireErrIs(t, err, ErrReadTimeout)
	require.True(t, c.IsActive())
	ping(t, c, "after a timeout")
	require.NoError(t, c.SetReadDeadline(time.Now().Add(-time.Second)))
	_, err = c.Reader().Next(1)
	requireErrIs(t, err, ErrReadTimeout)
	ping(t, c, "after a deadline")
}

// TestTLSMisuse: bad configurations are errors, not panics; every method
// after Close fails as on a closed connection and nothing panics (C18.8).
func TestTLSMisuse(t *testing.T) {
	checkLeaks(t)
	_, err := NewEventLoop(nil, WithTLS(nil))
	require.Error(t, err)
	_, err = NewEventLoop(nil, WithTLS(&tls.Config{}))
	require.Error(t, err)
	evl, err := NewEventLoop(nil, WithTLS(serverTLS(t, 0)))
	require.NoError(t, err)
	require.NotNil(t, evl)

	// DialTLS with a nil config is the zero config: the handshake fails on
	// the unknown CA, cleanly.
	s := startTLSEcho(t, serverTLS(t, 0))
	c, err := DialTLS("tcp", s.addr, longWait, nil)
	require.Error(t, err)
	require.Nil(t, c)
	_, err = DialTLS("bogus", s.addr, longWait, clientTLS(t, 0))
	require.Error(t, err)

	// A plain connection has no TLS state.
	plain := s.dial(t)
	_, ok := TLSConnectionState(plain)
	require.False(t, ok)

	c = dialTLS(t, s.addr, clientTLS(t, 0))
	ping(t, c, "before the close")
	_, err = c.Writer().WriteString("staged")
	require.NoError(t, err)
	require.NoError(t, c.Close())
	require.NoError(t, c.Close())
	require.False(t, c.IsActive())
	r, w := c.Reader(), c.Writer()
	for name, err := range map[string]error{
		"Flush":       w.Flush(),
		"Malloc":      func() error { _, err := w.Malloc(4); return err }(),
		"WriteString": func() error { _, err := w.WriteString("x"); return err }(),
		"WriteBinary": func() error { _, err := w.WriteBinary([]byte("x")); return err }(),
		"WriteByte":   w.WriteByte('x'),
		"WriteDirect": w.WriteDirect([]byte("x"), 0),
		"MallocAck":   w.MallocAck(0),
		"Append":      w.Append(NewLinkBuffer()),
		"Write":       func() error { _, err := c.Write([]byte("x")); return err }(),
		"Next":        func() error { _, err := r.Next(1); return err }(),
		"Peek":        func() error { _, err := r.Peek(1); return err }(),
		"Skip":        r.Skip(1),
		"ReadByte":    func() error { _, err := r.ReadByte(); return err }(),
		"ReadString":  func() error { _, err := r.ReadString(1); return err }(),
		"ReadBinary":  func() error { _, err := r.ReadBinary(1); return err }(),
		"Slice":       func() error { _, err := r.Slice(1); return err }(),
		"Until":       func() error { _, err := r.Until('\n'); return err }(),
		"Read":        func() error { _, err := c.Read(make([]byte, 1)); return err }(),
	} {
		requireErrIs(t, err, ErrConnClosed, name)
	}
	require.NoError(t, r.Release())
	require.Zero(t, r.Len())
	require.Zero(t, w.MallocLen())
	require.NoError(t, c.SetReadTimeout(time.Second))
	require.NoError(t, c.AddCloseCallback(nil))
	require.NoError(t, c.SetOnRequest(nil))
	st, ok := TLSConnectionState(c)
	require.True(t, ok)
	require.True(t, st.HandshakeComplete)
	require.NotNil(t, c.LocalAddr())
	require.NotNil(t, c.RemoteAddr())
}

// TestTLSBadRecord: a record that fails to decrypt after the handshake
// closes the connection; the waiting read returns crypto/tls's error (C18.7).
func TestTLSBadRecord(t *testing.T) {
	checkLeaks(t)
	errs := make(chan error, 1)
	s := startServer(t, "tcp", func(ctx context.Context, c Connection) error {
		_, err := c.Reader().Next(c.Reader().Len() + 100)
		errs <- err
		return nil
	}, WithTLS(serverTLS(t, tls.VersionTLS13)))
	c := dialStdTLS(t, s.addr, clientTLS(t, tls.VersionTLS13))
	_, err := c.Write([]byte("x"))
	require.NoError(t, err)
	// An application-data record that is not one.
	_, err = c.NetConn().Write([]byte{23, 3, 3, 0, 20, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20})
	require.NoError(t, err)
	err = recv(t, errs, "the failed read")
	require.Error(t, err)
	require.Contains(t, err.Error(), "tls")
	_, err = io.ReadAll(c)
	require.Error(t, err, "the server's alert")
}
