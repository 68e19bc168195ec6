//go:build darwin || freebsd || linux

package netpoll

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// How a TLS connection's handlers are served: writes staged before the
// handshake, SetOnRequest with plaintext buffered, OnRequest after a peer
// close, the plaintext bound, Shutdown, and misuse (docs/contract.md C8,
// C9.3, C18.1, C18.4, C18.8).

// TestTLSPrepareWritesFirst: bytes OnPrepare writes and flushes before the
// handshake are sent right after it, in order, before what OnConnect and
// OnRequest write (C18.1).
func TestTLSPrepareWritesFirst(t *testing.T) {
	checkLeaks(t)
	prepared := make(chan error, 4)
	s := startServer(t, "tcp", tlsEcho, WithTLS(serverTLS(t, 0)),
		WithOnPrepare(func(c Connection) context.Context {
			st, _ := TLSConnectionState(c)
			err := error(nil)
			if st.HandshakeComplete {
				err = errors.New("the handshake is complete in OnPrepare")
			}
			w := c.Writer()
			if _, werr := w.WriteString("prepare;"); werr != nil && err == nil {
				err = werr
			}
			if ferr := w.Flush(); ferr != nil && err == nil {
				err = ferr
			}
			if _, werr := c.Write([]byte("write;")); werr != nil && err == nil {
				err = werr
			}
			prepared <- err
			return nil
		}),
		WithOnConnect(func(ctx context.Context, c Connection) context.Context {
			_, _ = c.Writer().WriteString("connect;")
			_ = c.Writer().Flush()
			return ctx
		}))
	for _, v := range tlsVersions {
		t.Run(v.name, func(t *testing.T) {
			c := dialStdTLS(t, s.addr, clientTLS(t, v.v))
			require.NoError(t, c.Handshake())
			require.NoError(t, recv(t, prepared, "OnPrepare"))
			_, err := c.Write([]byte("request"))
			require.NoError(t, err)
			want := "prepare;write;connect;request"
			got := make([]byte, len(want))
			_, err = io.ReadFull(c, got)
			require.NoError(t, err)
			require.Equal(t, want, string(got))
		})
	}
}

// TestTLSSetOnRequestBuffered: SetOnRequest on a TLS connection whose
// plaintext is decrypted and buffered (nothing left in the connection
// underneath) calls the handler, as on a plain connection (C8.3).
func TestTLSSetOnRequestBuffered(t *testing.T) {
	checkLeaks(t)
	addr, _ := stdTLSEcho(t, serverTLS(t, 0))
	c := dialTLS(t, addr, clientTLS(t, 0))
	_, err := c.Writer().WriteString("hello")
	require.NoError(t, err)
	require.NoError(t, c.Writer().Flush())
	_, err = c.Reader().Peek(5)
	require.NoError(t, err)
	tc := tlsOf(t, c)
	eventually(t, func() bool { return tc.raw.in.Len() == 0 }, "the ciphertext consumed")
	got := make(chan string, 4)
	require.NoError(t, c.SetOnRequest(func(ctx context.Context, c Connection) error {
		s, err := c.Reader().ReadString(c.Reader().Len())
		got <- s
		return err
	}))
	require.Equal(t, "hello", recv(t, got, "OnRequest"))
}

// TestTLSSetOnRequestInHandler: an OnRequest that replaces itself without
// consuming has the new handler called on the same plaintext (C8.3).
func TestTLSSetOnRequestInHandler(t *testing.T) {
	checkLeaks(t)
	second := OnRequest(tlsEcho)
	s := startServer(t, "tcp", func(ctx context.Context, c Connection) error {
		return c.SetOnRequest(second)
	}, WithTLS(serverTLS(t, 0)))
	c := dialTLS(t, s.addr, clientTLS(t, 0))
	ping(t, c, "through the second handler")
}

// TestTLSPeerCloseOffersPlaintext: plaintext an OnRequest left unread is
// offered again once the peer closes, with IsActive false, whether the peer
// sent close_notify or not (C8.4, C18.7).
func TestTLSPeerCloseOffersPlaintext(t *testing.T) {
	checkLeaks(t)
	type call struct {
		n      int
		active bool
	}
	calls := make(chan call, 16)
	var k tlsCalls
	s := startServer(t, "tcp", func(ctx context.Context, c Connection) error {
		calls <- call{c.Reader().Len(), c.IsActive()}
		return nil // reads nothing
	}, k.options(serverTLS(t, 0))...)
	for _, notify := range []bool{true, false} {
		t.Run(fmt.Sprintf("close_notify=%v", notify), func(t *testing.T) {
			before := k.closes.Load()
			c := dialStdTLS(t, s.addr, clientTLS(t, 0))
			_, err := c.Write([]byte("abc"))
			require.NoError(t, err)
			require.Equal(t, call{3, true}, recv(t, calls, "the first OnRequest"))
			notYet(t, calls, shortWaitTLS, "an OnRequest without news")
			if notify {
				require.NoError(t, c.Close())
			} else {
				require.NoError(t, c.NetConn().Close())
			}
			require.Equal(t, call{3, false}, recv(t, calls, "the OnRequest after the close"))
			eventually(t, func() bool { return k.closes.Load() == before+1 }, "the close callbacks")
			// close_notify and the TCP close are news each: a second call may
			// follow, on the same plaintext.
			for len(calls) > 0 {
				require.Equal(t, call{3, false}, <-calls)
			}
		})
	}
}

// TestTLSPlaintextBounded: a handler that reads slower than the peer sends
// keeps at most about inputPauseAbove bytes of plaintext decrypted; the
// rest waits as ciphertext, under the connection's own backpressure. Every
// byte arrives intact.
func TestTLSPlaintextBounded(t *testing.T) {
	checkLeaks(t)
	const total = 64 << 20
	want := bigBytes(total, 7)
	var peak, read atomic.Int64
	var sum atomic.Uint32
	s := startServer(t, "tcp", func(ctx context.Context, c Connection) error {
		tc := c.(*tlsConn)
		tc.inMu.Lock()
		n := tc.in.Len()
		tc.inMu.Unlock()
		if int64(n) > peak.Load() {
			peak.Store(int64(n))
		}
		p, err := c.Reader().Next(min(n, 64<<10))
		if err != nil {
			return err
		}
		sum.Store(crc32.Update(sum.Load(), crc32.IEEETable, p))
		if err = c.Reader().Release(); err != nil {
			return err
		}
		if read.Add(int64(len(p))) == total {
			_ = c.Writer().WriteByte('!')
			return c.Writer().Flush()
		}
		time.Sleep(time.Millisecond) // slower than the peer
		return nil
	}, WithTLS(serverTLS(t, 0)))
	c := dialStdTLS(t, s.addr, clientTLS(t, 0))
	require.NoError(t, c.SetDeadline(time.Now().Add(3*longWait)))
	written := async(func() error { _, err := c.Write(want); return err })
	ack := make([]byte, 1)
	_, err := io.ReadFull(c, ack)
	require.NoError(t, err)
	require.NoError(t, recv(t, written, "the client's write"))
	require.Equal(t, crc32.ChecksumIEEE(want), sum.Load(), "the bytes differ")
	t.Logf("peak plaintext %s", mib(peak.Load()))
	require.LessOrEqual(t, peak.Load(), int64(inputPauseAbove+tlsPlainSlack), "plaintext peak")
}

// TestTLSHandlerWaitsForALargeFrame: a handler that waits, without
// blocking, for a frame larger than the plaintext bound is called again
// until the frame is there (C18.10).
func TestTLSHandlerWaitsForALargeFrame(t *testing.T) {
	checkLeaks(t)
	s := startServer(t, "tcp", func(ctx context.Context, c Connection) error {
		r := c.Reader()
		if r.Len() < 4 {
			return nil
		}
		hdr, err := r.Peek(4)
		if err != nil {
			return err
		}
		size := int(binary.BigEndian.Uint32(hdr))
		if r.Len() < 4+size {
			return nil // called again when more is decrypted
		}
		_ = r.Skip(4)
		body, err := r.Next(size)
		if err != nil {
			return err
		}
		var sum [4]byte
		binary.BigEndian.PutUint32(sum[:], crc32.ChecksumIEEE(body))
		_ = r.Release()
		_, _ = c.Writer().WriteBinary(sum[:])
		return c.Writer().Flush()
	}, WithTLS(serverTLS(t, 0)))
	c := dialStdTLS(t, s.addr, clientTLS(t, 0))
	require.NoError(t, c.SetDeadline(time.Now().Add(3*longWait)))
	body := bigBytes(24<<20, 8)
	frame := binary.BigEndian.AppendUint32(nil, uint32(len(body)))
	written := async(func() error { _, err := c.Write(append(frame, body...)); return err })
	sum := make([]byte, 4)
	_, err := io.ReadFull(c, sum)
	require.NoError(t, err)
	require.Equal(t, crc32.ChecksumIEEE(body), binary.BigEndian.Uint32(sum))
	require.NoError(t, recv(t, written, "the client's write"))
}

// tlsPlainSlack is what the plaintext may exceed the bound by: one record
// decrypted past it.
const tlsPlainSlack = maxRecordBody

// TestTLSShutdownUnreadPlaintext: a TLS connection with plaintext nobody
// has read is busy for Shutdown, although its ciphertext is all consumed
// (C9.3).
func TestTLSShutdownUnreadPlaintext(t *testing.T) {
	checkLeaks(t)
	called := make(chan struct{}, 4)
	s := startServer(t, "tcp", func(ctx context.Context, c Connection) error {
		called <- struct{}{}
		return nil // reads nothing
	}, WithTLS(serverTLS(t, 0)))
	c := dialStdTLS(t, s.addr, clientTLS(t, 0))
	_, err := c.Write([]byte("unread"))
	require.NoError(t, err)
	recv(t, called, "OnRequest")
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	err = within(t, "Shutdown", func() error { return s.evl.Shutdown(ctx) })
	require.True(t, errors.Is(err, context.DeadlineExceeded), "Shutdown = %v, want the ctx error", err)
	// Still open: a read times out instead of ending.
	require.NoError(t, c.SetReadDeadline(time.Now().Add(shortWaitTLS)))
	_, err = c.Read(make([]byte, 1))
	var ne net.Error
	require.True(t, errors.As(err, &ne) && ne.Timeout(), "read = %v, want a timeout", err)
}

// TestTLSCloseDuringHandshake: Close of an accepted connection (kept from
// OnPrepare) while its handshake waits ends the handshake at once: no
// OnConnect, the close callbacks run, nothing leaks (C18.8).
func TestTLSCloseDuringHandshake(t *testing.T) {
	checkLeaks(t)
	var k tlsCalls
	conns := make(chan Connection, 1)
	s := startServer(t, "tcp", k.onRequest, k.options(serverTLS(t, 0),
		WithOnPrepare(func(c Connection) context.Context {
			_ = c.AddCloseCallback(func(Connection) error { k.closes.Add(1); return nil })
			conns <- c
			return nil
		}))...)
	hello := recordClientHello(t)
	raw, err := net.Dial("tcp", s.addr)
	require.NoError(t, err)
	defer raw.Close()
	_, err = raw.Write(hello[:len(hello)/2])
	require.NoError(t, err)
	c := recv(t, conns, "OnPrepare")
	time.Sleep(20 * time.Millisecond) // the handshake waits for the rest
	require.NoError(t, within(t, "Close", c.Close))
	require.NoError(t, raw.SetReadDeadline(time.Now().Add(longWait)))
	_, err = io.ReadAll(raw)
	require.NoError(t, err, "the server closes")
	eventually(t, func() bool { return k.closes.Load() == 1 }, "the close callbacks")
	require.Zero(t, k.connects.Load())
	require.Zero(t, k.requests.Load())
	require.Zero(t, k.disconnects.Load())
	_, err = c.Reader().Next(1)
	requireErrIs(t, err, ErrConnClosed)
	requireErrIs(t, c.Writer().Flush(), ErrConnClosed)
}

// TestTLSCloseDuringBlockedRead: Close while a read waits for plaintext
// wakes it with ErrConnClosed, on a dialed connection and in a server's
// handler (C7, C18.8).
func TestTLSCloseDuringBlockedRead(t *testing.T) {
	checkLeaks(t)
	var k tlsCalls
	reads := make(chan error, 1)
	handlers := make(chan Connection, 1)
	s := startServer(t, "tcp", func(ctx context.Context, c Connection) error {
		handlers <- c
		_, err := c.Reader().Next(c.Reader().Len() + 10)
		reads <- err
		return nil
	}, k.options(serverTLS(t, 0))...)

	// Dialed: the reader is a goroutine of the test.
	c := dialTLS(t, s.addr, clientTLS(t, 0))
	read := async(func() error { _, err := c.Reader().Next(1); return err })
	blockedInRead(t, tlsOf(t, c).raw)
	require.NoError(t, within(t, "Close", c.Close))
	requireErrIs(t, recv(t, read, "the blocked read"), ErrConnClosed)

	// Served: OnRequest waits for more than was sent.
	c2 := dialStdTLS(t, s.addr, clientTLS(t, 0))
	_, err := c2.Write([]byte("x"))
	require.NoError(t, err)
	sc := recv(t, handlers, "OnRequest")
	blockedInRead(t, tlsOf(t, sc).raw)
	require.NoError(t, within(t, "Close", sc.Close))
	requireErrIs(t, recv(t, reads, "the handler's read"), ErrConnClosed)
	eventually(t, func() bool { return k.closes.Load() >= 1 }, "the close callbacks")
	_, err = io.ReadAll(c2)
	require.NoError(t, err, "close_notify, then the end")
}

// TestTLSHandlerPanics: a panic in OnConnect, in OnRequest, or in an
// OnRequest that SetOnRequest started closes that connection (its close
// callbacks run, the client sees the end) and reaches the Runner (C8.7).
func TestTLSHandlerPanics(t *testing.T) {
	checkLeaks(t)
	panics := recoveringRunner(t)
	var k tlsCalls
	boom := OnRequest(func(ctx context.Context, c Connection) error {
		panic("test panic in a TLS OnRequest (expected)")
	})
	s := startServer(t, "tcp", func(ctx context.Context, c Connection) error {
		p, err := c.Reader().Peek(1)
		switch {
		case err != nil:
			return err
		case p[0] == '!':
			panic("test panic in a TLS OnRequest (expected)")
		case p[0] == '?':
			return c.SetOnRequest(boom)
		}
		return echoAll(c)
	}, append(k.options(serverTLS(t, 0)), WithOnConnect(func(ctx context.Context, c Connection) context.Context {
		k.connects.Add(1)
		if st, _ := TLSConnectionState(c); st.NegotiatedProtocol == "boom" {
			panic("test panic in a TLS OnConnect (expected)")
		}
		return ctx
	}))...)

	for i, first := range []string{"!", "?"} {
		c := dialStdTLS(t, s.addr, clientTLS(t, 0))
		_, err := c.Write([]byte(first))
		require.NoError(t, err)
		_, err = io.ReadAll(c)
		_ = err // the end, with or without close_notify
		require.Contains(t, fmt.Sprint(recv(t, panics, "the panic")), "expected")
		eventually(t, func() bool { return k.closes.Load() == int64(i+1) }, "the close callbacks")
	}

	// OnConnect, chosen by ALPN.
	s2 := startServer(t, "tcp", k.onRequest, append(k.options(&tls.Config{
		Certificates: serverTLS(t, 0).Certificates,
		NextProtos:   []string{"boom"},
	}), WithOnConnect(func(ctx context.Context, c Connection) context.Context {
		if st, _ := TLSConnectionState(c); st.NegotiatedProtocol == "boom" {
			panic("test panic in a TLS OnConnect (expected)")
		}
		return ctx
	}))...)
	cc := clientTLS(t, 0)
	cc.NextProtos = []string{"boom"}
	c := dialStdTLS(t, s2.addr, cc)
	_, _ = io.ReadAll(c)
	require.Contains(t, fmt.Sprint(recv(t, panics, "the OnConnect panic")), "expected")
	eventually(t, func() bool { return k.closes.Load() == 3 }, "the close callbacks")

	// The OnRequest SetOnRequest starts on a goroutine of its own, for
	// plaintext already buffered on a dialed connection.
	addr, _ := stdTLSEcho(t, serverTLS(t, 0))
	d := dialTLS(t, addr, clientTLS(t, 0))
	closed := make(chan struct{})
	require.NoError(t, d.AddCloseCallback(func(Connection) error { close(closed); return nil }))
	_, err := d.Writer().WriteString("x")
	require.NoError(t, err)
	require.NoError(t, d.Writer().Flush())
	_, err = d.Reader().Peek(1)
	require.NoError(t, err)
	require.NoError(t, d.SetOnRequest(boom))
	require.Contains(t, fmt.Sprint(recv(t, panics, "the kicked OnRequest's panic")), "expected")
	recv(t, closed, "the dialed connection's close callbacks")
	require.False(t, d.IsActive())

	// The servers go on serving.
	good := dialTLS(t, s.addr, clientTLS(t, 0))
	ping(t, good, "after the panics")
	good2 := dialTLS(t, s2.addr, clientTLS(t, 0))
	ping(t, good2, "after the panic")
}

// TestTLSNilDialerConfig: a TLS Dialer with a nil config dials as DialTLS
// with one: the zero config, here failing on the unknown CA, cleanly
// (C18.2, C18.8).
func TestTLSNilDialerConfig(t *testing.T) {
	checkLeaks(t)
	s := startTLSEcho(t, serverTLS(t, 0))
	d := NewTLSDialer(nil)
	c, err := d.DialConnection("tcp", s.addr, longWait)
	require.Error(t, err)
	require.Nil(t, c)
	nc, err := d.DialTimeout("tcp", s.addr, longWait)
	require.Error(t, err)
	require.Nil(t, nc)
}

// TestTLSReadBeforeHandshake: a reader that a goroutine started in
// OnPrepare, before the handshake, waits for it and then gets the
// plaintext; when the handshake fails instead it gets an error. Neither
// hangs, and the race detector finds nothing (docs/contract.md C18.8).
func TestTLSReadBeforeHandshake(t *testing.T) {
	checkLeaks(t)
	reads := make(chan string, 4)
	s := startServer(t, "tcp", nil, WithTLS(serverTLS(t, 0)),
		WithOnPrepare(func(c Connection) context.Context {
			go func() {
				p, err := c.Reader().Next(5)
				if err != nil {
					reads <- "error: " + err.Error()
					return
				}
				reads <- string(p)
			}()
			return nil
		}))

	c := dialStdTLS(t, s.addr, clientTLS(t, 0))
	require.NoError(t, c.Handshake())
	_, err := c.Write([]byte("hello"))
	require.NoError(t, err)
	require.Equal(t, "hello", recv(t, reads, "the early reader"))

	raw, err := net.Dial("tcp", s.addr)
	require.NoError(t, err)
	defer raw.Close()
	// A whole handshake record that holds no handshake message: crypto/tls
	// refuses it at once.
	_, err = raw.Write([]byte{0x16, 0x03, 0x01, 0x00, 0x05, 'h', 'e', 'l', 'l', 'o'})
	require.NoError(t, err)
	require.Contains(t, recv(t, reads, "the early reader of a failed handshake"), "error: ")
}
