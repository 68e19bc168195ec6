//go:build darwin || freebsd || linux

package netpoll

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// Records split at every byte, a 64 MiB message both ways, and the ends of
// a TLS stream: docs/contract.md C18.4, C18.5, C18.7.

// TestTLSRecordSplitServer: a crypto/tls client whose records (and, for a
// few handshakes, ClientHello) reach our server cut at each byte
// boundary. OnRequest is called only when plaintext is buffered and sees
// every message whole (C18.4).
func TestTLSRecordSplitServer(t *testing.T) {
	checkLeaks(t)
	var calls, empty atomic.Int64
	s := startServer(t, "tcp", func(ctx context.Context, c Connection) error {
		calls.Add(1)
		if c.Reader().Len() == 0 {
			empty.Add(1)
		}
		return echoAll(c)
	}, WithTLS(serverTLS(t, tls.VersionTLS13)))

	dial := func(split int) (*tls.Conn, *splitConn) {
		raw, err := net.Dial("tcp", s.addr)
		require.NoError(t, err)
		sc := &splitConn{Conn: raw, split: split, pause: 2 * time.Millisecond}
		c := tls.Client(sc, clientTLS(t, tls.VersionTLS13))
		t.Cleanup(func() { _ = c.Close() })
		require.NoError(t, c.SetDeadline(time.Now().Add(longWait)))
		require.NoError(t, c.Handshake())
		return c, sc
	}
	// The ClientHello cut inside the header, right after it, and inside the body.
	for _, k := range []int{1, 2, 3, 4, 5, 6, 7, 100, 200} {
		c, sc := dial(k)
		sc.setSplit(0)
		echoOnce(t, c, []byte("after a cut hello"))
		_ = c.Close()
	}
	// Every cut of one application-data record (TLS 1.3: 5 + 100 + 1 + 16).
	c, sc := dial(0)
	msg := bytes.Repeat([]byte("0123456789"), 10)
	for k := 1; k < recordHeaderLen+len(msg)+17; k++ {
		sc.setSplit(k)
		echoOnce(t, c, msg)
	}
	require.Zero(t, empty.Load(), "OnRequest called with no plaintext")
	require.Positive(t, calls.Load())
}

// echoOnce writes msg on c and reads it back.
func echoOnce(t testing.TB, c io.ReadWriter, msg []byte) {
	t.Helper()
	_, err := c.Write(msg)
	require.NoError(t, err)
	got := make([]byte, len(msg))
	_, err = io.ReadFull(c, got)
	require.NoError(t, err)
	require.Equal(t, msg, got)
}

// TestTLSRecordSplitClient: a DialTLS client reading records that a
// crypto/tls server cuts at each byte boundary (C18.4).
func TestTLSRecordSplitClient(t *testing.T) {
	checkLeaks(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	splits := make(chan *splitConn, 1)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		raw, err := ln.Accept()
		if err != nil {
			return
		}
		sc := &splitConn{Conn: raw, pause: 2 * time.Millisecond}
		splits <- sc
		c := tls.Server(sc, serverTLS(t, tls.VersionTLS13))
		defer c.Close()
		buf := make([]byte, 4096)
		for {
			n, err := c.Read(buf)
			if err != nil {
				return
			}
			if _, err = c.Write(buf[:n]); err != nil {
				return
			}
		}
	}()
	t.Cleanup(func() { _ = ln.Close(); wg.Wait() })
	c := dialTLS(t, ln.Addr().String(), clientTLS(t, tls.VersionTLS13))
	sc := recv(t, splits, "the accepted connection")
	msg := bytes.Repeat([]byte("abcdefghij"), 10)
	for k := 1; k < recordHeaderLen+len(msg)+17; k++ {
		sc.setSplit(k)
		_, err := c.Write(msg)
		require.NoError(t, err)
		got, err := c.Reader().Next(len(msg))
		require.NoError(t, err, "split at %d", k)
		require.Equal(t, msg, got)
		require.NoError(t, c.Reader().Release())
	}
	require.NoError(t, c.Close())
}

// TestTLSLargeMessage: 64 MiB each way between a DialTLS client and a
// TLS EventLoop, and between a crypto/tls client and the EventLoop (C18.4).
func TestTLSLargeMessage(t *testing.T) {
	checkLeaks(t)
	size := 64 << 20
	s := startServer(t, "tcp", func(ctx context.Context, c Connection) error {
		return echoChunks(c, 1<<20, nil)
	}, WithTLS(serverTLS(t, tls.VersionTLS13)))
	msg := randomBytes(newRand(t), size)
	want := sha256.Sum256(msg)

	t.Run("DialTLS", func(t *testing.T) {
		c := dialTLS(t, s.addr, clientTLS(t, tls.VersionTLS13))
		sent := async(func() error {
			if _, err := c.Writer().WriteBinary(msg); err != nil {
				return err
			}
			return c.Writer().Flush()
		})
		h := sha256.New()
		for left := size; left > 0; {
			n := min(left, 1<<20)
			p, err := c.Reader().Next(n)
			require.NoError(t, err)
			h.Write(p)
			require.NoError(t, c.Reader().Release())
			left -= n
		}
		require.NoError(t, recv(t, sent, "the Flush"))
		require.Equal(t, want[:], h.Sum(nil))
	})
	t.Run("crypto/tls", func(t *testing.T) {
		c := dialStdTLS(t, s.addr, clientTLS(t, tls.VersionTLS13))
		sent := async(func() error { _, err := c.Write(msg); return err })
		h := sha256.New()
		n, err := io.CopyN(h, c, int64(size))
		require.NoError(t, err)
		require.Equal(t, int64(size), n)
		require.NoError(t, recv(t, sent, "the write"))
		require.Equal(t, want[:], h.Sum(nil))
	})
}

// TestTLSCloseNotify: a close_notify ends the stream cleanly both ways:
// our Close sends one that crypto/tls reads as io.EOF, and one from
// crypto/tls makes our reads past the buffered plaintext fail with ErrEOF
// and IsActive false, OnRequest having seen the last bytes (C18.7).
func TestTLSCloseNotify(t *testing.T) {
	checkLeaks(t)
	got := make(chan string, 4)
	disc := make(chan Connection, 1)
	s := startServer(t, "tcp", func(ctx context.Context, c Connection) error {
		p, err := c.Reader().Next(c.Reader().Len())
		if err == nil {
			got <- string(p)
		}
		_ = c.Reader().Release()
		if _, err := c.Reader().Next(1); err != nil {
			got <- "err:" + errText(err)
		}
		return nil
	}, WithTLS(serverTLS(t, 0)), WithOnDisconnect(func(ctx context.Context, c Connection) { disc <- c }))
	c := dialStdTLS(t, s.addr, clientTLS(t, 0))
	_, err := c.Write([]byte("last words"))
	require.NoError(t, err)
	require.NoError(t, c.Close()) // close_notify, then the TCP close
	require.Equal(t, "last words", recv(t, got, "the last request"))
	e := recv(t, got, "the failed read")
	require.Contains(t, e, "EOF")
	dc := recv(t, disc, "OnDisconnect")
	require.False(t, dc.IsActive())
	tlsOf(t, dc)

	// Ours closes: crypto/tls sees a clean end, after an alert record (TLS
	// 1.2 shows the record type in clear).
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	type result struct {
		err     error
		lastTyp byte
	}
	readErr := async(func() result {
		a, err := ln.Accept()
		if err != nil {
			return result{err: err}
		}
		defer a.Close()
		rec := &recordingConn{Conn: a}
		sc := tls.Server(rec, serverTLS(t, tls.VersionTLS12))
		_ = sc.SetReadDeadline(time.Now().Add(longWait))
		_, err = io.ReadAll(sc)
		return result{err: err, lastTyp: rec.lastRecordType()}
	})
	nc := dialTLS(t, ln.Addr().String(), clientTLS(t, tls.VersionTLS12))
	_, err = nc.Write([]byte("bye"))
	require.NoError(t, err)
	require.NoError(t, nc.Close())
	r := recv(t, readErr, "the server's read")
	require.NoError(t, r.err, "the stream ends cleanly")
	require.Equal(t, byte(21), r.lastTyp, "the last record is an alert: close_notify")

	// The server sends close_notify: DialTLS's reads fail with ErrEOF.
	addr2, conns2 := stdTLSEcho(t, serverTLS(t, 0))
	nc2 := dialTLS(t, addr2, clientTLS(t, 0))
	ping(t, nc2, "before the server closes")
	require.NoError(t, recv(t, conns2, "the server side").Close())
	_, err = nc2.Reader().Next(1)
	requireErrIs(t, err, ErrEOF)
	require.False(t, nc2.IsActive())
}

// TestTLSAbruptClose: a peer that closes TCP without close_notify ends the
// stream with ErrEOF, on the server (OnDisconnect runs) and on a client (C18.7).
func TestTLSAbruptClose(t *testing.T) {
	checkLeaks(t)
	errs := make(chan error, 2)
	disc := make(chan struct{}, 1)
	s := startServer(t, "tcp", func(ctx context.Context, c Connection) error {
		_, err := c.Reader().Next(c.Reader().Len() + 1) // wait for more than will come
		errs <- err
		return nil
	}, WithTLS(serverTLS(t, 0)), WithOnDisconnect(func(ctx context.Context, c Connection) { disc <- struct{}{} }))
	raw, err := net.Dial("tcp", s.addr)
	require.NoError(t, err)
	c := tls.Client(raw, clientTLS(t, 0))
	_, err = c.Write([]byte("cut"))
	require.NoError(t, err)
	time.Sleep(20 * time.Millisecond)
	require.NoError(t, raw.Close())
	requireErrIs(t, recv(t, errs, "the blocked read"), ErrEOF)
	recv(t, disc, "OnDisconnect")

	// A client whose server vanishes.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	accepted := async(func() net.Conn {
		a, err := ln.Accept()
		if err != nil {
			return nil
		}
		sc := tls.Server(a, serverTLS(t, 0))
		if sc.Handshake() != nil {
			_ = a.Close()
			return nil
		}
		return a
	})
	nc := dialTLS(t, ln.Addr().String(), clientTLS(t, 0))
	a := recv(t, accepted, "the server side")
	require.NotNil(t, a)
	read := async(func() error { _, err := nc.Reader().Next(1); return err })
	time.Sleep(20 * time.Millisecond)
	require.NoError(t, a.Close())
	requireErrIs(t, recv(t, read, "the read"), ErrEOF)
}

// recordingConn keeps every byte read from its Conn.
type recordingConn struct {
	net.Conn
	mu  sync.Mutex
	got []byte
}

func (c *recordingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.mu.Lock()
	c.got = append(c.got, p[:n]...)
	c.mu.Unlock()
	return n, err
}

// lastRecordType walks the records read and returns the type of the last.
func (c *recordingConn) lastRecordType() byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	var typ byte
	for p := c.got; len(p) >= recordHeaderLen; {
		typ = p[0]
		n := recordHeaderLen + (int(p[3])<<8 | int(p[4]))
		if n > len(p) {
			break
		}
		p = p[n:]
	}
	return typ
}

// TestTLSSmallFlushesFullSocket: many one-record Flushes (C18.9: each is
// written straight from crypto/tls's buffer when nothing is staged) against
// a peer that reads nothing until the socket is full (the server's send
// buffer made small), so that many of those writes are cut or refused and
// the rest is staged and waited for. Every message arrives, whole and in
// order, over both clients.
func TestTLSSmallFlushesFullSocket(t *testing.T) {
	checkLeaks(t)
	const count, size = 3000, 1000
	message := func(i int) []byte {
		p := bytes.Repeat([]byte{byte(i)}, size)
		p[0], p[1] = byte(i>>8), byte(i)
		return p
	}
	s := startServer(t, "tcp", func(_ context.Context, c Connection) error {
		if _, err := c.Reader().Next(1); err != nil {
			return err
		}
		_ = c.Reader().Release()
		if err := unix.SetsockoptInt(c.(interface{ Fd() int }).Fd(), unix.SOL_SOCKET, unix.SO_SNDBUF, 16<<10); err != nil {
			return err
		}
		for i := 0; i < count; i++ {
			if _, err := c.Writer().WriteBinary(message(i)); err != nil {
				return err
			}
			if err := c.Writer().Flush(); err != nil {
				return err
			}
		}
		return nil
	}, WithTLS(serverTLS(t, tls.VersionTLS13)), WithWriteTimeout(longWait))
	check := func(t *testing.T, read func(p []byte) error) {
		time.Sleep(200 * time.Millisecond) // let the server fill the socket
		p := make([]byte, size)
		for i := 0; i < count; i++ {
			require.NoError(t, read(p))
			require.Equal(t, message(i), p, "message %d", i)
		}
	}
	t.Run("DialTLS", func(t *testing.T) {
		c := dialTLS(t, s.addr, clientTLS(t, tls.VersionTLS13))
		_, err := c.Write([]byte{1})
		require.NoError(t, err)
		check(t, func(p []byte) error {
			b, err := c.Reader().Next(len(p))
			if err == nil {
				copy(p, b)
				err = c.Reader().Release()
			}
			return err
		})
	})
	t.Run("crypto/tls", func(t *testing.T) {
		c := dialStdTLS(t, s.addr, clientTLS(t, tls.VersionTLS13))
		_, err := c.Write([]byte{1})
		require.NoError(t, err)
		check(t, func(p []byte) error { _, err := io.ReadFull(c, p); return err })
	})
}

// TestTLSSmallFlushOneRecord: a Flush of a few KiB staged in two segments
// (a header Malloc'd, a body kept by reference) goes out as one record, as
// through a buffered writer in front of a tls.Conn, not one record per
// segment (C18.9). The server's records are counted on the client's socket;
// dynamic record sizing and session tickets are off, so that one write of
// plaintext is one record.
func TestTLSSmallFlushOneRecord(t *testing.T) {
	checkLeaks(t)
	for _, v := range tlsVersions {
		t.Run(v.name, func(t *testing.T) {
			header := []byte("header:8")
			body := bytes.Repeat([]byte("b"), 2*BinaryInplaceThreshold)
			config := serverTLS(t, v.v)
			config.DynamicRecordSizingDisabled = true
			config.SessionTicketsDisabled = true
			s := startServer(t, "tcp", func(_ context.Context, c Connection) error {
				if err := c.Reader().Skip(c.Reader().Len()); err != nil {
					return err
				}
				_ = c.Reader().Release()
				buf, err := c.Writer().Malloc(len(header))
				if err != nil {
					return err
				}
				copy(buf, header)
				if _, err = c.Writer().WriteBinary(body); err != nil {
					return err
				}
				return c.Writer().Flush()
			}, WithTLS(config))
			raw, err := net.DialTimeout("tcp", s.addr, longWait)
			require.NoError(t, err)
			counter := &recordCounter{Conn: raw}
			c := tls.Client(counter, clientTLS(t, v.v))
			defer c.Close()
			require.NoError(t, c.SetDeadline(time.Now().Add(longWait)))
			require.NoError(t, c.Handshake())
			for round := 0; round < 3; round++ {
				before := counter.count()
				_, err = c.Write([]byte{1})
				require.NoError(t, err)
				got := make([]byte, len(header)+len(body))
				_, err = io.ReadFull(c, got)
				require.NoError(t, err)
				require.Equal(t, append(append([]byte{}, header...), body...), got)
				require.Equal(t, 1, counter.count()-before, "records for one Flush of two segments, round %d", round)
			}
		})
	}
}

// recordCounter counts the TLS records that come in on a connection.
type recordCounter struct {
	net.Conn
	mu      sync.Mutex
	hdr     [5]byte
	hdrN    int
	left    int // body bytes of the current record still to come
	records int
}

func (c *recordCounter) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.mu.Lock()
	for b := p[:n]; len(b) > 0; {
		if c.hdrN < len(c.hdr) {
			m := copy(c.hdr[c.hdrN:], b)
			c.hdrN += m
			b = b[m:]
			if c.hdrN == len(c.hdr) {
				c.left = int(c.hdr[3])<<8 | int(c.hdr[4])
				c.records++
			}
		}
		m := min(c.left, len(b))
		c.left -= m
		b = b[m:]
		if c.hdrN == len(c.hdr) && c.left == 0 {
			c.hdrN = 0
		}
	}
	c.mu.Unlock()
	return n, err
}

func (c *recordCounter) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.records
}
