//go:build darwin || freebsd || linux

package mux

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cloudwego/netpoll"
	"github.com/stretchr/testify/require"
)

// waitFor bounds every wait in these tests; none should come close to it.
const waitFor = 10 * time.Second

// sink collects the bytes a server connection receives.
type sink struct {
	mu       sync.Mutex
	buf      []byte
	notify   chan struct{} // a token after each add
	accepted chan struct{} // closed when the server accepts the connection
}

func (s *sink) add(p []byte) {
	s.mu.Lock()
	s.buf = append(s.buf, p...)
	s.mu.Unlock()
	select {
	case s.notify <- struct{}{}:
	default:
	}
}

func (s *sink) bytes() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]byte(nil), s.buf...)
}

// wait returns the received bytes once there are at least n of them.
func (s *sink) wait(t *testing.T, n int) []byte {
	t.Helper()
	timer := time.NewTimer(waitFor)
	defer timer.Stop()
	for {
		if b := s.bytes(); len(b) >= n {
			return b
		}
		select {
		case <-s.notify:
		case <-timer.C:
			t.Fatalf("received %d bytes, want %d", len(s.bytes()), n)
		}
	}
}

// testServer is one EventLoop on loopback shared by all the tests: every
// connection it accepts records what it receives in the sink registered
// for the client's address. One long-lived listener also keeps the tests
// clear of the root package's Serve/Shutdown races (see the report).
type testServer struct {
	addr   string
	evl    netpoll.EventLoop
	served chan error

	mu    sync.Mutex
	sinks map[string]*sink // by client address
}

// srv is started by TestMain.
var srv *testServer

type sinkKey struct{}

func startTestServer() (*testServer, error) {
	ln, err := netpoll.CreateListener("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &testServer{addr: ln.Addr().String(), served: make(chan error, 1), sinks: map[string]*sink{}}
	onPrepare := netpoll.WithOnPrepare(func(c netpoll.Connection) context.Context {
		got := s.sinkFor(c.RemoteAddr().String())
		close(got.accepted)
		return context.WithValue(context.Background(), sinkKey{}, got)
	})
	s.evl, err = netpoll.NewEventLoop(func(ctx context.Context, c netpoll.Connection) error {
		r := c.Reader()
		p, err := r.Next(r.Len())
		if err != nil {
			return err
		}
		ctx.Value(sinkKey{}).(*sink).add(p)
		return r.Release()
	}, onPrepare)
	if err != nil {
		_ = ln.Close()
		return nil, err
	}
	go func() { s.served <- s.evl.Serve(ln) }()
	return s, nil
}

// sinkFor returns the sink of a client address, creating it on first use
// (by the dialer or by OnPrepare, whichever comes first).
func (s *testServer) sinkFor(addr string) *sink {
	s.mu.Lock()
	defer s.mu.Unlock()
	got := s.sinks[addr]
	if got == nil {
		got = &sink{notify: make(chan struct{}, 1), accepted: make(chan struct{})}
		s.sinks[addr] = got
	}
	return got
}

func (s *testServer) forget(addr string) {
	s.mu.Lock()
	delete(s.sinks, addr)
	s.mu.Unlock()
}

// stop shuts the loop down and waits for Serve to return.
func (s *testServer) stop() error {
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if err := s.evl.Shutdown(ctx); err != nil {
		return err
	}
	select {
	case err := <-s.served:
		return err
	case <-time.After(waitFor):
		return errors.New("serve did not return after Shutdown")
	}
}

// dialPair dials the test server and returns the connection and the sink
// that receives what it sends, once the server has accepted it. The
// connection is closed when the test ends.
func dialPair(t *testing.T) (netpoll.Connection, *sink) {
	t.Helper()
	conn, err := netpoll.DialConnection("tcp", srv.addr, time.Second)
	require.NoError(t, err)
	addr := conn.LocalAddr().String()
	t.Cleanup(func() {
		_ = conn.Close()
		srv.forget(addr)
	})
	got := srv.sinkFor(addr)
	select {
	case <-got.accepted:
	case <-time.After(waitFor):
		t.Fatal("the server never accepted the connection")
	}
	return conn, got
}

// A test frame: 4-byte total length, 4-byte stream, 4-byte sequence, then a
// payload whose every byte depends on its position, stream and sequence.
const headLen = 12

func frame(stream, seq uint32, payload int) []byte {
	b := make([]byte, headLen+payload)
	binary.BigEndian.PutUint32(b[0:], uint32(len(b)))
	binary.BigEndian.PutUint32(b[4:], stream)
	binary.BigEndian.PutUint32(b[8:], seq)
	for k := headLen; k < len(b); k++ {
		b[k] = byte(int(stream)*31 + int(seq)*7 + k)
	}
	return b
}

// payloadSize varies frame sizes, with some above the 4 KiB no-copy
// threshold so that buffers hold referenced memory too.
func payloadSize(seq uint32) int {
	if seq%97 == 5 {
		return 10000
	}
	return int(seq*13) % 300
}

type parsed struct{ stream, seq uint32 }

// parse splits b into frames and checks every byte of each.
func parse(b []byte) ([]parsed, error) {
	var out []parsed
	for len(b) > 0 {
		if len(b) < headLen {
			return out, fmt.Errorf("%d trailing bytes", len(b))
		}
		n := int(binary.BigEndian.Uint32(b))
		if n < headLen || n > len(b) {
			return out, fmt.Errorf("bad frame length %d (have %d)", n, len(b))
		}
		f := parsed{binary.BigEndian.Uint32(b[4:]), binary.BigEndian.Uint32(b[8:])}
		want := frame(f.stream, f.seq, n-headLen)
		for k := range want {
			if b[k] != want[k] {
				return out, fmt.Errorf("frame %v: byte %d is %d, want %d", f, k, b[k], want[k])
			}
		}
		out = append(out, f)
		b = b[n:]
	}
	return out, nil
}

// lbGetter returns a getter that builds a LinkBuffer holding data. Odd
// sequences leave the bytes pending (not flushed), as Kitex does.
func lbGetter(data []byte, pending bool) WriterGetter {
	return func() (netpoll.Writer, bool) {
		lb := netpoll.NewLinkBuffer()
		if _, err := lb.WriteBinary(data); err != nil {
			panic(err)
		}
		if !pending {
			if err := lb.Flush(); err != nil {
				panic(err)
			}
		}
		return lb, false
	}
}

func frameGetter(stream, seq uint32) (WriterGetter, int) {
	b := frame(stream, seq, payloadSize(seq))
	return lbGetter(b, seq%2 == 1), len(b)
}

// countingConn counts the Appends and Flushes the queue makes, and can make
// Flush fail.
type countingConn struct {
	netpoll.Connection
	appends, flushes atomic.Int64
	flushErr         error
}

func (c *countingConn) Writer() netpoll.Writer {
	return countingWriter{Writer: c.Connection.Writer(), c: c}
}

type countingWriter struct {
	netpoll.Writer
	c *countingConn
}

func (w countingWriter) Append(x netpoll.Writer) error {
	w.c.appends.Add(1)
	return w.Writer.Append(x)
}

func (w countingWriter) Flush() error {
	w.c.flushes.Add(1)
	if w.c.flushErr != nil {
		return w.c.flushErr
	}
	return w.Writer.Flush()
}

var errInjected = errors.New("injected flush failure")

// foreignWriter is a Writer that is not a LinkBuffer: Append refuses it.
type foreignWriter struct{ netpoll.Writer }

// gate is a getter that blocks until opened, to hold the flusher still.
type gate struct {
	entered chan struct{}
	open    chan struct{}
}

func newGate() *gate { return &gate{entered: make(chan struct{}), open: make(chan struct{})} }

func (g *gate) getter(data []byte) WriterGetter {
	inner := lbGetter(data, false)
	return func() (netpoll.Writer, bool) {
		close(g.entered)
		<-g.open
		return inner()
	}
}

// waitEntered waits until the flusher is inside the gate's getter.
func (g *gate) waitEntered(t *testing.T) {
	t.Helper()
	select {
	case <-g.entered:
	case <-time.After(waitFor):
		t.Fatal("the flusher never called the gate getter")
	}
}

// closeAsync runs q.Close on a goroutine and returns its result channel.
func closeAsync(q *ShardQueue) chan error {
	done := make(chan error, 1)
	go func() { done <- q.Close() }()
	return done
}

func recvErr(t *testing.T, ch chan error) error {
	t.Helper()
	select {
	case err := <-ch:
		return err
	case <-time.After(waitFor):
		t.Fatal("timed out")
		return nil
	}
}

// eventually waits for cond to hold.
func eventually(t *testing.T, cond func() bool, what string) {
	t.Helper()
	require.Eventually(t, cond, waitFor, time.Millisecond, what)
}

// startServer and stopServer are TestMain's hooks (no-ops on windows).
func startServer() (err error) {
	srv, err = startTestServer()
	return err
}

func stopServer() error { return srv.stop() }
