//go:build linux || darwin || freebsd

package netpoll_test

// These tests use the package the way Kitex does, from outside it, and then
// keep going for several rounds and connections:
//
//   - a server made with NewEventLoop, WithOnPrepare, WithOnConnect,
//     WithReadTimeout and WithIdleTimeout, whose OnPrepare type-asserts
//     SetOnDisconnect and Reader() on the connection and adds a close callback;
//   - length-prefixed frames encoded into a LinkBuffer (Malloc for the header,
//     WriteBinary, WriteString, WriteDirect, MallocAck, the header patched from
//     MallocLen) and Appended, still staged, to the connection's Writer; decoded
//     with Peek for the header and Slice for the frame, closed as an io.Closer;
//   - clients that read with no timeout, wait for the next message with
//     Peek(1), and a connection pool that drops connections whose IsActive is
//     false;
//   - a streaming OnRequest that reads for the connection's whole life while
//     many streams write through a mux.ShardQueue;
//   - two NewFDConnections over the ends of GetSysFdPairs;
//   - the graceful shutdown: the listener closed first, requests in flight
//     answered, then Shutdown;
//   - a panic in OnRequest or OnConnect reaching the Runner.
//
// Every test checks at its end that it left no goroutine and no file
// descriptor behind.

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/bytedance/gopkg/util/gopool"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/cloudwego/netpoll"
	"github.com/cloudwego/netpoll/mux"
)

const (
	// kpWait bounds every wait of these tests. It is generous because the
	// machine running them may be shared and slow; a correct run never
	// comes near it.
	kpWait = 10 * time.Second

	kpHeaderLen = 4       // big-endian length of the rest of the frame
	kpMetaLen   = 9       // kind (1 byte), stream id (4), sequence number (4)
	kpSlack     = 64      // bytes over-allocated, then given back with MallocAck
	kpMaxFrame  = 8 << 20 // a larger length field means a broken stream
)

// Frame kinds.
const (
	kpRequest  byte = 'Q' // answered at once
	kpAnswer   byte = 'A' // the answer: same stream, seq and body
	kpSlow     byte = 'S' // answered after a delay or a release
	kpBye      byte = 'B' // answered, then the server closes the connection
	kpData     byte = 'D' // a stream's data frame
	kpAck      byte = 'K' // the acknowledgement of a data frame
	kpSwitch   byte = 'X' // the peer stops using its ShardQueue
	kpSwitched byte = 'Y' // the answer to kpSwitch
	kpPanic    byte = 'P' // the handler panics
)

type (
	kpConnKey      struct{} // context key: the id OnPrepare gave the connection
	kpConnectedKey struct{} // context key: set by OnConnect
	kpQueueKey     struct{} // context key: the connection's ShardQueue
)

// ---------------------------------------------------------------------------
// Leak checks and small helpers.

// kpOpenFDs counts the process's open file descriptors, or returns -1 when
// the system has no directory listing them.
func kpOpenFDs() int {
	for _, dir := range []string{"/proc/self/fd", "/dev/fd"} {
		if entries, err := os.ReadDir(dir); err == nil {
			return len(entries)
		}
	}
	return -1
}

// kpCheckLeaks makes the test fail if, once all its other cleanups ran, it
// leaves a goroutine or a file descriptor behind. Call it first. Goroutines
// and descriptors that close asynchronously are waited for, up to kpWait.
// The pollers and the runtime's own poller start once and stay, so they are
// started before counting; idle gopool workers are not leaks.
func kpCheckLeaks(t *testing.T) {
	t.Helper()
	netpoll.Initialize()
	if l, err := net.Listen("tcp", "127.0.0.1:0"); err == nil {
		_ = l.Close() // opens the runtime poller's descriptors for good
	}
	fds := kpOpenFDs()
	opts := []goleak.Option{
		goleak.IgnoreCurrent(),
		goleak.IgnoreTopFunction("github.com/bytedance/gopkg/util/gopool.(*worker).run.func1"),
		goleak.IgnoreAnyFunction("github.com/cloudwego/netpoll.(*defaultPoll).Wait"),
	}
	t.Cleanup(func() {
		var leaked error
		if !kpWaitUntil(kpWait, func() bool { leaked = goleak.Find(opts...); return leaked == nil }) {
			t.Errorf("goroutines left behind: %v", leaked)
		}
		if fds < 0 {
			return
		}
		after := 0
		if !kpWaitUntil(kpWait, func() bool { after = kpOpenFDs(); return after <= fds }) {
			t.Errorf("file descriptors left open: %d before the test, %d after", fds, after)
		}
	})
}

// kpWaitUntil polls cond until it holds (true) or d passes (false).
func kpWaitUntil(d time.Duration, cond func() bool) bool {
	end := time.Now().Add(d)
	for !cond() {
		if time.Now().After(end) {
			return false
		}
		time.Sleep(2 * time.Millisecond)
	}
	return true
}

// kpEventually fails the test if cond does not hold within kpWait.
func kpEventually(t *testing.T, cond func() bool, format string, args ...interface{}) {
	t.Helper()
	if !kpWaitUntil(kpWait, cond) {
		t.Fatalf("not within %v: %s", kpWait, fmt.Sprintf(format, args...))
	}
}

// kpBounded runs f, a call that may block on conn, and waits at most kpWait
// for it. If it is still blocked then, conn is closed, which wakes blocked
// reads and Flushes, and an error is returned. It may be called from any
// goroutine.
func kpBounded(conn netpoll.Connection, what string, f func() error) error {
	done := make(chan error, 1)
	go func() { done <- f() }()
	select {
	case err := <-done:
		return err
	case <-time.After(kpWait):
		_ = conn.Close()
		select {
		case <-done:
		case <-time.After(kpWait):
		}
		return fmt.Errorf("%s: still blocked after %v", what, kpWait)
	}
}

// kpErrs collects failures seen on goroutines that must not call t.Fatal.
type kpErrs struct {
	mu   sync.Mutex
	list []string
}

func (e *kpErrs) add(format string, args ...interface{}) {
	e.mu.Lock()
	e.list = append(e.list, fmt.Sprintf(format, args...))
	e.mu.Unlock()
}

// check reports every collected failure on t and forgets them.
func (e *kpErrs) check(t *testing.T) {
	t.Helper()
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, s := range e.list {
		t.Error(s)
	}
	e.list = nil
}

// kpAddress returns an address to listen on: a loopback port for tcp, a
// socket path in a new short directory for unix.
func kpAddress(t *testing.T, network string) string {
	t.Helper()
	if network != "unix" {
		return "127.0.0.1:0"
	}
	dir, err := os.MkdirTemp("", "kp")
	require.NoError(t, err)
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	return dir + "/s"
}

// kpListen makes the listener a server serves: how is "create"
// (netpoll.CreateListener, Kitex's default), "convert" (net.Listen, then
// netpoll.ConvertListener) or "net" (a plain net.Listener that Serve
// converts itself). It is closed at cleanup, a second time if need be.
func kpListen(t *testing.T, network, how string) net.Listener {
	t.Helper()
	addr := kpAddress(t, network)
	if how == "create" {
		ln, err := netpoll.CreateListener(network, addr)
		require.NoError(t, err)
		t.Cleanup(func() { _ = ln.Close() })
		return ln
	}
	l, err := net.Listen(network, addr)
	require.NoError(t, err)
	t.Cleanup(func() { _ = l.Close() })
	if how == "net" {
		return l
	}
	ln, err := netpoll.ConvertListener(l)
	require.NoError(t, err)
	t.Cleanup(func() { _ = ln.Close() })
	return ln
}

// kpLoop is an EventLoop serving one listener.
type kpLoop struct {
	evl    netpoll.EventLoop
	addr   string
	done   chan struct{} // closed when Serve returned
	served error         // what Serve returned
}

// kpServe starts serving ln with a new EventLoop; the loop is shut down at
// cleanup if the test has not done it.
func kpServe(t *testing.T, ln net.Listener, onRequest netpoll.OnRequest, opts ...netpoll.Option) *kpLoop {
	t.Helper()
	evl, err := netpoll.NewEventLoop(onRequest, opts...)
	require.NoError(t, err)
	l := &kpLoop{evl: evl, addr: ln.Addr().String(), done: make(chan struct{})}
	go func() {
		l.served = evl.Serve(ln)
		close(l.done)
	}()
	t.Cleanup(func() { l.stop(t) })
	return l
}

// returned reports whether Serve has returned.
func (l *kpLoop) returned() bool {
	select {
	case <-l.done:
		return true
	default:
		return false
	}
}

// stop shuts the loop down and checks that Shutdown returns nil (at once
// when it was already called) and that Serve returned nil.
func (l *kpLoop) stop(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), kpWait)
	defer cancel()
	if err := l.evl.Shutdown(ctx); err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	l.checkServed(t)
}

// checkServed waits for Serve to return and checks it returned nil.
func (l *kpLoop) checkServed(t *testing.T) {
	t.Helper()
	select {
	case <-l.done:
		if l.served != nil {
			t.Errorf("Serve returned %v after Shutdown, want nil", l.served)
		}
	case <-time.After(kpWait):
		t.Errorf("Serve did not return within %v of Shutdown", kpWait)
	}
}

// ---------------------------------------------------------------------------
// Frames.

// kpFrame is one message: a 4-byte big-endian length of the rest, the kind,
// the stream id and the sequence number, then the body.
type kpFrame struct {
	kind   byte
	stream uint32
	seq    uint32
	body   []byte
}

func (f kpFrame) wireLen() int { return kpHeaderLen + kpMetaLen + len(f.body) }

// kpBody is the deterministic content of a body, so that the receiver can
// tell a whole and intact frame from a torn or shifted one.
func kpBody(stream, seq uint32, n int) []byte {
	b := make([]byte, n)
	x := (stream<<16^seq)*2654435761 | 1
	for i := range b {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		b[i] = byte(x)
	}
	return b
}

// kpSize is the body size of frame seq of a stream: sizes around the
// buffer's node size and copy threshold, and now and then a large one.
func kpSize(stream, seq uint32) int {
	if seq%17 == 16 {
		return 150000
	}
	sizes := [...]int{0, 1, 9, 100, 1000, 4095, 4096, 4097, 8192, 12345, 40000}
	return sizes[(stream*7+seq)%uint32(len(sizes))]
}

func kpNewFrame(kind byte, stream, seq uint32) kpFrame {
	return kpFrame{kind: kind, stream: stream, seq: seq, body: kpBody(stream, seq, kpSize(stream, seq))}
}

// kpExpect checks that f is the intact frame (kind, stream, seq) with a body
// of size bytes.
func kpExpect(f kpFrame, kind byte, stream, seq uint32, size int) error {
	if f.kind != kind || f.stream != stream || f.seq != seq {
		return fmt.Errorf("got frame %q stream %d seq %d, want %q stream %d seq %d",
			f.kind, f.stream, f.seq, kind, stream, seq)
	}
	if len(f.body) != size {
		return fmt.Errorf("frame %q stream %d seq %d: body of %d bytes, want %d", kind, stream, seq, len(f.body), size)
	}
	if !bytes.Equal(f.body, kpBody(stream, seq, size)) {
		return fmt.Errorf("frame %q stream %d seq %d: body of %d bytes is corrupt", kind, stream, seq, size)
	}
	return nil
}

func kpPutMeta(p []byte, f kpFrame) {
	p[0] = f.kind
	binary.BigEndian.PutUint32(p[1:5], f.stream)
	binary.BigEndian.PutUint32(p[5:9], f.seq)
}

// kpEncodeInto stages f on w the way Kitex's codecs do: the length header
// is reserved with Malloc and patched once the body is written, from what
// MallocLen says was staged. style picks how the body goes in:
// 0 WriteBinary, 1 WriteString, 2 a Malloc'd region with part of the body
// spliced into it by WriteDirect, 3 one over-sized Malloc trimmed by
// MallocAck. Every style stages the same bytes.
func kpEncodeInto(w netpoll.Writer, f kpFrame, style int) error {
	start := w.MallocLen()
	var hdr []byte
	if style%4 == 3 {
		p, err := w.Malloc(f.wireLen() + kpSlack)
		if err != nil {
			return err
		}
		hdr = p[:kpHeaderLen]
		kpPutMeta(p[kpHeaderLen:], f)
		copy(p[kpHeaderLen+kpMetaLen:], f.body)
		if err := w.MallocAck(w.MallocLen() - kpSlack); err != nil {
			return err
		}
	} else {
		var err error
		if hdr, err = w.Malloc(kpHeaderLen); err != nil {
			return err
		}
		meta, err := w.Malloc(kpMetaLen)
		if err != nil {
			return err
		}
		kpPutMeta(meta, f)
		switch style % 4 {
		case 0:
			_, err = w.WriteBinary(f.body)
		case 1:
			_, err = w.WriteString(string(f.body))
		case 2:
			// body[:a] and body[b:] are copied into a region; body[a:b]
			// is spliced between them by reference.
			a, b := len(f.body)/3, 2*len(f.body)/3
			var region []byte
			if region, err = w.Malloc(len(f.body) - (b - a)); err != nil {
				return err
			}
			copy(region[:a], f.body[:a])
			if err = w.WriteDirect(f.body[a:b], len(region)-a); err != nil {
				return err
			}
			copy(region[a:], f.body[b:])
		}
		if err != nil {
			return err
		}
	}
	n := w.MallocLen() - start - kpHeaderLen
	if n != kpMetaLen+len(f.body) {
		return fmt.Errorf("style %d staged %d bytes after the header, want %d", style%4, n, kpMetaLen+len(f.body))
	}
	binary.BigEndian.PutUint32(hdr, uint32(n))
	return nil
}

// kpEncode encodes f into a new LinkBuffer and leaves it staged (unflushed).
func kpEncode(f kpFrame, style int) (*netpoll.LinkBuffer, error) {
	buf := netpoll.NewLinkBuffer()
	if err := kpEncodeInto(buf, f, style); err != nil {
		_ = buf.Close()
		return nil, err
	}
	return buf, nil
}

// kpSend encodes f into a LinkBuffer, Appends it, still staged, to the
// connection's Writer and Flushes.
func kpSend(c netpoll.Connection, f kpFrame, style int) error {
	buf, err := kpEncode(f, style)
	if err != nil {
		return err
	}
	w := c.Writer()
	before := w.MallocLen()
	if err := w.Append(buf); err != nil {
		_ = buf.Close()
		return fmt.Errorf("append: %w", err)
	}
	if got := w.MallocLen() - before; got != f.wireLen() {
		return fmt.Errorf("Append of a LinkBuffer with %d staged bytes staged %d on the connection", f.wireLen(), got)
	}
	if err := w.Flush(); err != nil {
		return fmt.Errorf("flush: %w", err)
	}
	return nil
}

// kpFrameLen waits for a frame's header with Peek and returns the length it
// announces, without consuming anything.
func kpFrameLen(r netpoll.Reader) (int, error) {
	hdr, err := r.Peek(kpHeaderLen)
	if err != nil {
		return 0, err
	}
	n := int(binary.BigEndian.Uint32(hdr))
	if n < kpMetaLen || n > kpMaxFrame {
		return 0, fmt.Errorf("bad frame length %d", n)
	}
	return n, nil
}

// kpSliceFrame takes the next whole frame out of r as a Reader (Slice).
func kpSliceFrame(r netpoll.Reader) (netpoll.Reader, error) {
	n, err := kpFrameLen(r)
	if err != nil {
		return nil, err
	}
	sl, err := r.Slice(kpHeaderLen + n)
	if err != nil {
		return nil, err
	}
	if sl.Len() != kpHeaderLen+n {
		return nil, fmt.Errorf("Slice(%d) holds %d bytes", kpHeaderLen+n, sl.Len())
	}
	return sl, nil
}

// kpDecodeSlice decodes a frame taken by kpSliceFrame and Closes the slice
// through io.Closer, as Kitex does once a message is decoded.
func kpDecodeSlice(sl netpoll.Reader) (kpFrame, error) {
	closer, ok := sl.(io.Closer)
	if !ok {
		return kpFrame{}, fmt.Errorf("the Reader from Slice (%T) is not an io.Closer", sl)
	}
	var f kpFrame
	err := func() error {
		if err := sl.Skip(kpHeaderLen); err != nil {
			return err
		}
		kind, err := sl.ReadByte()
		if err != nil {
			return err
		}
		meta, err := sl.Next(8)
		if err != nil {
			return err
		}
		f = kpFrame{kind: kind, stream: binary.BigEndian.Uint32(meta[:4]), seq: binary.BigEndian.Uint32(meta[4:])}
		if f.body, err = sl.ReadBinary(sl.Len()); err != nil {
			return err
		}
		if sl.Len() != 0 {
			return fmt.Errorf("%d bytes left in the slice", sl.Len())
		}
		return nil
	}()
	if cerr := closer.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("closing the slice: %w", cerr)
	}
	return f, err
}

// kpReadFrame reads one whole frame: Peek the header, Slice the frame,
// decode the slice and Close it.
func kpReadFrame(r netpoll.Reader) (kpFrame, error) {
	sl, err := kpSliceFrame(r)
	if err != nil {
		return kpFrame{}, err
	}
	return kpDecodeSlice(sl)
}

// kpReadFrameDirect reads one frame straight from r: Peek the header, then
// Skip, ReadByte, Next and ReadString, and Release.
func kpReadFrameDirect(r netpoll.Reader) (kpFrame, error) {
	n, err := kpFrameLen(r)
	if err != nil {
		return kpFrame{}, err
	}
	if err = r.Skip(kpHeaderLen); err != nil {
		return kpFrame{}, err
	}
	kind, err := r.ReadByte()
	if err != nil {
		return kpFrame{}, err
	}
	meta, err := r.Next(8)
	if err != nil {
		return kpFrame{}, err
	}
	f := kpFrame{kind: kind, stream: binary.BigEndian.Uint32(meta[:4]), seq: binary.BigEndian.Uint32(meta[4:])}
	body, err := r.ReadString(n - kpMetaLen)
	if err != nil {
		return kpFrame{}, err
	}
	f.body = []byte(body)
	return f, r.Release()
}

// kpRoundTrip sends a frame of kind on c and reads the answer, which must
// be the same frame with kind kpAnswer.
func kpRoundTrip(c netpoll.Connection, kind byte, stream, seq uint32) error {
	if err := kpSend(c, kpNewFrame(kind, stream, seq), int(seq)); err != nil {
		return err
	}
	got, err := kpReadFrame(c.Reader())
	if err != nil {
		return fmt.Errorf("reading the answer to stream %d seq %d: %w", stream, seq, err)
	}
	return kpExpect(got, kpAnswer, stream, seq, kpSize(stream, seq))
}

// kpAnswerFrames is an OnRequest that reads one frame and answers it.
func kpAnswerFrames(ctx context.Context, conn netpoll.Connection) error {
	f, err := kpReadFrame(conn.Reader())
	if err != nil {
		_ = conn.Close()
		return err
	}
	return kpSend(conn, kpFrame{kind: kpAnswer, stream: f.stream, seq: f.seq, body: f.body}, int(f.seq))
}

// kpDial dials with kpWait as the dial, read and write timeouts.
func kpDial(network, addr string) (netpoll.Connection, error) {
	c, err := netpoll.DialConnection(network, addr, kpWait)
	if err != nil {
		return nil, err
	}
	_ = c.SetReadTimeout(kpWait)
	_ = c.SetWriteTimeout(kpWait)
	return c, nil
}

// ---------------------------------------------------------------------------
// 1. The server: OnPrepare, OnConnect, OnRequest, OnDisconnect, close
// callbacks.

// kpTracker is a Kitex-like server that records, per accepted connection,
// the callbacks it got, in order.
type kpTracker struct {
	errs    kpErrs
	network string

	mu     sync.Mutex
	nextID int64
	conns  map[int64]*kpConnLog
}

type kpConnLog struct {
	events   []string // "request" is recorded once per run of requests
	requests int
	readErr  error // the error of a failed read in OnRequest
	active   bool  // IsActive just after that failure
	buffered int   // Len just after that failure
}

func newKpTracker(network string) *kpTracker {
	return &kpTracker{network: network, conns: map[int64]*kpConnLog{}}
}

func (tr *kpTracker) event(id int64, ev string) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	l := tr.conns[id]
	if l == nil {
		tr.errs.add("event %q for unknown connection %d", ev, id)
		return
	}
	if ev == "request" {
		l.requests++
		if n := len(l.events); n > 0 && l.events[n-1] == "request" {
			return
		}
	}
	l.events = append(l.events, ev)
}

// log returns a copy of what connection id recorded.
func (tr *kpTracker) log(id int64) kpConnLog {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	if l := tr.conns[id]; l != nil {
		c := *l
		c.events = append([]string(nil), l.events...)
		return c
	}
	return kpConnLog{}
}

func (tr *kpTracker) count() int {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return len(tr.conns)
}

// closed counts the connections whose close callback ran.
func (tr *kpTracker) closed() int {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	n := 0
	for _, l := range tr.conns {
		if len(l.events) > 0 && l.events[len(l.events)-1] == "close" {
			n++
		}
	}
	return n
}

func (tr *kpTracker) idOf(ctx context.Context, where string) int64 {
	id, ok := ctx.Value(kpConnKey{}).(int64)
	if !ok {
		tr.errs.add("%s: the context does not carry the value OnPrepare put in it", where)
	}
	return id
}

// onPrepare does what Kitex's OnPrepare does: type-assert SetOnDisconnect
// and set it, type-assert Reader(), add a close callback, and return the
// connection's context.
func (tr *kpTracker) onPrepare(conn netpoll.Connection) context.Context {
	tr.mu.Lock()
	tr.nextID++
	id := tr.nextID
	tr.conns[id] = &kpConnLog{}
	tr.mu.Unlock()
	tr.event(id, "prepare")
	if !conn.IsActive() {
		tr.errs.add("conn %d: IsActive false in OnPrepare", id)
	}
	if sd, ok := conn.(interface {
		SetOnDisconnect(netpoll.OnDisconnect) error
	}); !ok {
		tr.errs.add("conn %d: %T has no SetOnDisconnect(netpoll.OnDisconnect) error", id, conn)
	} else if err := sd.SetOnDisconnect(func(ctx context.Context, c netpoll.Connection) {
		tr.event(id, "disconnect")
		if got := tr.idOf(ctx, "OnDisconnect"); got != id {
			tr.errs.add("conn %d: OnDisconnect got the context of connection %d", id, got)
		}
		if ctx.Value(kpConnectedKey{}) != true {
			tr.errs.add("conn %d: OnDisconnect's context lacks the value OnConnect added", id)
		}
		if c.IsActive() {
			tr.errs.add("conn %d: IsActive true in OnDisconnect", id)
		}
	}); err != nil {
		tr.errs.add("conn %d: SetOnDisconnect: %v", id, err)
	}
	if rd, ok := conn.(interface{ Reader() netpoll.Reader }); !ok {
		tr.errs.add("conn %d: %T has no Reader() netpoll.Reader", id, conn)
	} else if rd.Reader() == nil {
		tr.errs.add("conn %d: Reader() is nil", id)
	}
	if err := conn.AddCloseCallback(func(c netpoll.Connection) error {
		tr.event(id, "close")
		return nil
	}); err != nil {
		tr.errs.add("conn %d: AddCloseCallback: %v", id, err)
	}
	return context.WithValue(context.Background(), kpConnKey{}, id)
}

func (tr *kpTracker) onConnect(ctx context.Context, conn netpoll.Connection) context.Context {
	id := tr.idOf(ctx, "OnConnect")
	tr.event(id, "connect")
	if tr.network == "tcp" {
		// WithIdleTimeout turns TCP keep-alive on for accepted connections.
		if c, ok := conn.(netpoll.Conn); !ok {
			tr.errs.add("conn %d: %T is not a netpoll.Conn", id, conn)
		} else if on, err := syscall.GetsockoptInt(c.Fd(), syscall.SOL_SOCKET, syscall.SO_KEEPALIVE); err != nil || on == 0 {
			tr.errs.add("conn %d: SO_KEEPALIVE is %d (%v) with WithIdleTimeout", id, on, err)
		}
	}
	return context.WithValue(ctx, kpConnectedKey{}, true)
}

// onRequest decodes one frame per call (even connections with Slice, odd
// ones with direct reads) and answers it. A failed read closes the
// connection, as Kitex does.
func (tr *kpTracker) onRequest(ctx context.Context, conn netpoll.Connection) error {
	id := tr.idOf(ctx, "OnRequest")
	if ctx.Value(kpConnectedKey{}) != true {
		tr.errs.add("conn %d: OnRequest's context lacks the value OnConnect added", id)
	}
	tr.event(id, "request")
	var f kpFrame
	var err error
	if id%2 == 0 {
		f, err = kpReadFrame(conn.Reader())
	} else {
		f, err = kpReadFrameDirect(conn.Reader())
	}
	if err != nil {
		tr.mu.Lock()
		if l := tr.conns[id]; l != nil {
			l.readErr, l.active, l.buffered = err, conn.IsActive(), conn.Reader().Len()
		}
		tr.mu.Unlock()
		_ = conn.Close()
		return err
	}
	if err := kpExpect(f, kpRequest, f.stream, f.seq, kpSize(f.stream, f.seq)); err != nil {
		tr.errs.add("conn %d: %v", id, err)
		_ = conn.Close()
		return err
	}
	if err := kpSend(conn, kpFrame{kind: kpAnswer, stream: f.stream, seq: f.seq, body: f.body}, int(f.seq)); err != nil {
		tr.errs.add("conn %d: answering seq %d: %v", id, f.seq, err)
		return err
	}
	return nil
}

// kpServerSession is one client connection: frames/2 round trips one at a
// time, then the other half pipelined (every frame Appended, one Flush,
// then every answer read).
func kpServerSession(network, addr string, stream uint32, frames int) error {
	c, err := kpDial(network, addr)
	if err != nil {
		return fmt.Errorf("dial: %w", err)
	}
	defer c.Close()
	half := frames / 2
	for seq := uint32(0); seq < uint32(half); seq++ {
		if err := kpRoundTrip(c, kpRequest, stream, seq); err != nil {
			return err
		}
	}
	w := c.Writer()
	for seq := uint32(half); seq < uint32(frames); seq++ {
		f := kpNewFrame(kpRequest, stream, seq)
		buf, err := kpEncode(f, int(seq))
		if err != nil {
			return err
		}
		if err := w.Append(buf); err != nil {
			return fmt.Errorf("append seq %d: %w", seq, err)
		}
	}
	if err := w.Flush(); err != nil {
		return fmt.Errorf("flush of the pipelined frames: %w", err)
	}
	for seq := uint32(half); seq < uint32(frames); seq++ {
		read := kpReadFrame
		if seq%2 == 1 {
			read = kpReadFrameDirect
		}
		got, err := read(c.Reader())
		if err != nil {
			return fmt.Errorf("reading the answer to pipelined seq %d: %w", seq, err)
		}
		if err := kpExpect(got, kpAnswer, stream, seq, kpSize(stream, seq)); err != nil {
			return err
		}
	}
	if n := c.Reader().Len(); n != 0 {
		return fmt.Errorf("%d unexpected bytes after the last answer", n)
	}
	return nil
}

// A Kitex server, over listeners made each way Kitex makes them: several
// rounds of several concurrent client connections, each doing round trips
// and then pipelining. Every frame must come back whole and in order; each
// connection must see, in this order, OnPrepare, OnConnect (whose context
// OnRequest and OnDisconnect see), exactly one OnRequest per frame,
// OnDisconnect once the client closed, and its close callback, once each;
// Shutdown and Serve return nil. With a short read timeout, a client that
// stalls in the middle of a frame gets ErrReadTimeout in OnRequest (nothing
// consumed, connection still active), which Kitex answers by closing.
func TestKitexPatternServer(t *testing.T) {
	kpCheckLeaks(t)
	for _, tc := range []struct{ network, how string }{
		{"tcp", "create"}, {"tcp", "convert"}, {"tcp", "net"},
		{"unix", "create"}, {"unix", "convert"},
	} {
		tc := tc
		t.Run(tc.how+"/"+tc.network, func(t *testing.T) { kpServerRounds(t, tc.network, tc.how) })
	}
	t.Run("ReadTimeout", kpServerReadTimeout)
}

func kpServerRounds(t *testing.T, network, how string) {
	const rounds, conns, frames = 2, 3, 24
	tr := newKpTracker(network)
	ln := kpListen(t, network, how)
	loop := kpServe(t, ln, tr.onRequest,
		netpoll.WithOnPrepare(tr.onPrepare),
		netpoll.WithOnConnect(tr.onConnect),
		netpoll.WithReadTimeout(5*time.Second),
		netpoll.WithIdleTimeout(time.Minute))

	for round := 0; round < rounds; round++ {
		results := make(chan error, conns)
		for i := 0; i < conns; i++ {
			stream := uint32(round*conns + i)
			go func() { results <- kpServerSession(network, loop.addr, stream, frames) }()
		}
		for i := 0; i < conns; i++ {
			require.NoError(t, <-results, "round %d", round)
		}
		want := (round + 1) * conns
		kpEventually(t, func() bool { return tr.closed() == want },
			"round %d: close callbacks of %d connections (%d ran)", round, want, tr.closed())
		tr.errs.check(t)
	}
	loop.stop(t)
	tr.errs.check(t)
	require.Equal(t, rounds*conns, tr.count(), "connections accepted")
	for id := int64(1); id <= rounds*conns; id++ {
		l := tr.log(id)
		require.Equal(t, []string{"prepare", "connect", "request", "disconnect", "close"}, l.events, "conn %d: callbacks in order", id)
		require.Equal(t, frames, l.requests, "conn %d: OnRequest calls (one per frame)", id)
		require.NoError(t, l.readErr, "conn %d: a read in OnRequest failed", id)
	}
}

func kpServerReadTimeout(t *testing.T) {
	const timeout = 300 * time.Millisecond
	tr := newKpTracker("tcp")
	ln := kpListen(t, "tcp", "create")
	loop := kpServe(t, ln, tr.onRequest,
		netpoll.WithOnPrepare(tr.onPrepare),
		netpoll.WithOnConnect(tr.onConnect),
		netpoll.WithReadTimeout(timeout),
		netpoll.WithIdleTimeout(time.Minute))

	// Connection 1 decodes with direct reads, which have consumed the 13
	// bytes of header and meta when the body read times out; connection 2
	// with Slice, which consumes nothing.
	for _, tc := range []struct {
		id           int64
		wantBuffered int
	}{{1, 1}, {2, 14}} {
		id, wantBuffered := tc.id, tc.wantBuffered
		c, err := kpDial("tcp", loop.addr)
		require.NoError(t, err)
		// A header announcing 100 more bytes, and only 10 of them.
		partial := make([]byte, 14)
		binary.BigEndian.PutUint32(partial, 100)
		start := time.Now()
		_, err = c.Write(partial)
		require.NoError(t, err)
		kpEventually(t, func() bool { return tr.count() >= int(id) }, "connection %d accepted", id)
		_, err = c.Reader().Peek(1)
		elapsed := time.Since(start)
		require.ErrorIs(t, err, netpoll.ErrEOF, "conn %d: the server closes after its read timeout", id)
		require.GreaterOrEqual(t, elapsed, timeout-50*time.Millisecond, "conn %d: closed before the read timeout", id)
		require.NoError(t, c.Close())

		kpEventually(t, func() bool { return tr.closed() == int(id) }, "conn %d: close callback", id)
		l := tr.log(id)
		require.ErrorIs(t, l.readErr, netpoll.ErrReadTimeout, "conn %d: the error of the stalled read", id)
		require.True(t, l.active, "conn %d: a read timeout must leave the connection active", id)
		require.Equal(t, wantBuffered, l.buffered, "conn %d: bytes left buffered after the timed-out read", id)
		// A local Close after OnConnect runs no OnDisconnect.
		require.Equal(t, []string{"prepare", "connect", "request", "close"}, l.events, "conn %d: callbacks", id)
	}
	loop.stop(t)
	tr.errs.check(t)
}

// ---------------------------------------------------------------------------
// 2. Framing on LinkBuffer.

// Frames encoded into a LinkBuffer with every write method, Appended while
// still staged, then read back with Peek and Slice. On a LinkBuffer: every
// style stages exactly the frame's bytes (MallocLen), nothing is readable
// before Flush, Append moves staged bytes as staged, and the bytes of all
// styles are identical. On connections to an echo server: several frames
// Appended and sent with one Flush (the connection's MallocLen grows by each
// frame), read back by Slice (some slices kept open while later frames are
// read and the connection's Reader is Released), by direct reads, and all
// intact.
func TestKitexPatternFraming(t *testing.T) {
	kpCheckLeaks(t)
	t.Run("LinkBuffer", func(t *testing.T) {
		for _, size := range []int{0, 1, 2, 13, 4095, 4096, 4097, 70000} {
			var wires [][]byte
			for style := 0; style < 4; style++ {
				f := kpFrame{kind: kpData, stream: 7, seq: uint32(size), body: kpBody(7, uint32(size), size)}
				buf, err := kpEncode(f, style)
				require.NoError(t, err, "size %d style %d", size, style)
				require.Equal(t, f.wireLen(), buf.MallocLen(), "size %d style %d: staged bytes", size, style)
				require.Zero(t, buf.Len(), "size %d style %d: readable before Flush", size, style)

				dst := netpoll.NewLinkBuffer()
				require.NoError(t, dst.Append(buf))
				require.Equal(t, f.wireLen(), dst.MallocLen(), "size %d style %d: staged after Append", size, style)
				require.Zero(t, dst.Len(), "size %d style %d: Append made staged bytes readable", size, style)
				require.NoError(t, dst.Flush())
				require.Equal(t, f.wireLen(), dst.Len(), "size %d style %d: readable after Flush", size, style)
				require.Zero(t, dst.MallocLen())

				wire := append([]byte(nil), dst.Bytes()...)
				require.Equal(t, uint32(f.wireLen()-kpHeaderLen), binary.BigEndian.Uint32(wire), "size %d style %d: patched header", size, style)
				wires = append(wires, wire)

				got, err := kpReadFrame(dst)
				require.NoError(t, err, "size %d style %d", size, style)
				require.NoError(t, kpExpect(got, kpData, 7, uint32(size), size), "style %d", style)
				require.Zero(t, dst.Len())
				require.NoError(t, dst.Release())
				require.NoError(t, dst.Close())
			}
			for style := 1; style < 4; style++ {
				require.True(t, bytes.Equal(wires[0], wires[style]), "size %d: style %d staged other bytes than style 0", size, style)
			}
		}
	})
	t.Run("Connection", func(t *testing.T) {
		echo := func(ctx context.Context, conn netpoll.Connection) error {
			r, w := conn.Reader(), conn.Writer()
			p, err := r.Next(r.Len())
			if err != nil {
				return err
			}
			if _, err = w.WriteBinary(p); err != nil {
				return err
			}
			if err = w.Flush(); err != nil {
				return err
			}
			return r.Release()
		}
		for _, network := range []string{"tcp", "unix"} {
			loop := kpServe(t, kpListen(t, network, "create"), echo)
			const conns = 3
			results := make(chan error, conns)
			for i := 0; i < conns; i++ {
				stream := uint32(100 + i)
				go func() { results <- kpFramingClient(network, loop.addr, stream) }()
			}
			for i := 0; i < conns; i++ {
				require.NoError(t, <-results, network)
			}
			loop.stop(t)
		}
	})
}

func kpFramingClient(network, addr string, stream uint32) error {
	const rounds, batch = 3, 8
	c, err := kpDial(network, addr)
	if err != nil {
		return err
	}
	defer c.Close()
	r, w := c.Reader(), c.Writer()
	seq := uint32(0)
	for round := 0; round < rounds; round++ {
		want := make([]kpFrame, 0, batch)
		for i := 0; i < batch; i++ {
			f := kpNewFrame(kpData, stream, seq)
			seq++
			buf, err := kpEncode(f, int(seq)+round)
			if err != nil {
				return err
			}
			before := w.MallocLen()
			if err := w.Append(buf); err != nil {
				return fmt.Errorf("append: %w", err)
			}
			if got := w.MallocLen() - before; got != f.wireLen() {
				return fmt.Errorf("Append of a LinkBuffer with %d staged bytes grew the connection's staged bytes by %d", f.wireLen(), got)
			}
			want = append(want, f)
		}
		if err := w.Flush(); err != nil {
			return fmt.Errorf("flush: %w", err)
		}
		if n := w.MallocLen(); n != 0 {
			return fmt.Errorf("%d bytes still staged after Flush", n)
		}
		var held []netpoll.Reader
		var heldWant []kpFrame
		for i, f := range want {
			var got kpFrame
			var err error
			switch i % 3 {
			case 0:
				sl, err := kpSliceFrame(r)
				if err != nil {
					return fmt.Errorf("slicing seq %d: %w", f.seq, err)
				}
				held, heldWant = append(held, sl), append(heldWant, f)
				continue
			case 1:
				got, err = kpReadFrame(r)
			case 2:
				got, err = kpReadFrameDirect(r)
			}
			if err != nil {
				return fmt.Errorf("reading seq %d: %w", f.seq, err)
			}
			if err := kpExpect(got, f.kind, f.stream, f.seq, len(f.body)); err != nil {
				return err
			}
		}
		// The slices taken first are still intact after the reads and
		// Releases of the connection's Reader since.
		for i, sl := range held {
			f := heldWant[i]
			got, err := kpDecodeSlice(sl)
			if err != nil {
				return fmt.Errorf("decoding the kept slice of seq %d: %w", f.seq, err)
			}
			if err := kpExpect(got, f.kind, f.stream, f.seq, len(f.body)); err != nil {
				return fmt.Errorf("kept slice: %w", err)
			}
		}
		if n := r.Len(); n != 0 {
			return fmt.Errorf("%d unexpected bytes after round %d", n, round)
		}
	}
	return nil
}

// ---------------------------------------------------------------------------
// 3. Client side: blocking reads, Peek(1) as a wait, a pool that checks
// IsActive.

// kpPool is a connection pool as Kitex keeps one: the last connection put
// back is the first taken, and one whose IsActive is false is closed and
// dropped when taken.
type kpPool struct {
	network, addr string
	idle          []netpoll.Connection
	dials         int
	dropped       int
	callbacks     atomic.Int32 // client-side close callbacks run
}

func (p *kpPool) get() (netpoll.Connection, error) {
	for len(p.idle) > 0 {
		c := p.idle[len(p.idle)-1]
		p.idle = p.idle[:len(p.idle)-1]
		if c.IsActive() {
			return c, nil
		}
		p.dropped++
		_ = c.Close()
	}
	c, err := netpoll.DialConnection(p.network, p.addr, kpWait)
	if err != nil {
		return nil, err
	}
	p.dials++
	_ = c.AddCloseCallback(func(netpoll.Connection) error { p.callbacks.Add(1); return nil })
	// Blocking reads without a timeout; kpBounded keeps the test bounded.
	_ = c.SetReadTimeout(0)
	return c, nil
}

func (p *kpPool) put(c netpoll.Connection) { p.idle = append(p.idle, c) }

func (p *kpPool) close() {
	for _, c := range p.idle {
		_ = c.Close()
	}
	p.idle = nil
}

// kpCall sends a request encoded straight into the connection's Writer,
// waits for the answer with Peek(1), then reads it. It returns how long the
// wait took.
func kpCall(c netpoll.Connection, kind byte, stream, seq uint32) (time.Duration, error) {
	start := time.Now()
	if err := kpEncodeInto(c.Writer(), kpNewFrame(kind, stream, seq), int(seq)); err != nil {
		return 0, err
	}
	if err := c.Writer().Flush(); err != nil {
		return 0, fmt.Errorf("flush: %w", err)
	}
	if err := kpBounded(c, "Peek(1) for the answer", func() error {
		_, err := c.Reader().Peek(1)
		return err
	}); err != nil {
		return 0, err
	}
	waited := time.Since(start)
	if c.Reader().Len() < 1 {
		return 0, errors.New("Peek(1) returned with nothing buffered")
	}
	var got kpFrame
	if err := kpBounded(c, "reading the answer", func() (err error) {
		got, err = kpReadFrame(c.Reader())
		return err
	}); err != nil {
		return 0, err
	}
	return waited, kpExpect(got, kpAnswer, stream, seq, kpSize(stream, seq))
}

// A client pool over a server that closes some connections. Clients read
// with SetReadTimeout(0) and wait for answers with Peek(1), which blocks as
// long as the answer takes (here a deliberate delay). When the server closes
// a connection after answering, Peek(1) ends with ErrEOF and IsActive
// becomes false; the pool, finding it inactive, drops it and dials exactly
// one new connection, and reuses the live ones without dialing. Every close
// callback runs once, on both sides.
func TestKitexPatternClientPool(t *testing.T) {
	kpCheckLeaks(t)
	for _, network := range []string{"tcp", "unix"} {
		network := network
		t.Run(network, func(t *testing.T) { kpClientPool(t, network) })
	}
}

func kpClientPool(t *testing.T, network string) {
	const slowDelay = 200 * time.Millisecond
	var errs kpErrs
	var accepted, closed atomic.Int32
	onRequest := func(ctx context.Context, conn netpoll.Connection) error {
		f, err := kpReadFrame(conn.Reader())
		if err != nil {
			errs.add("server read: %v", err)
			_ = conn.Close()
			return err
		}
		if f.kind == kpSlow {
			time.Sleep(slowDelay)
		}
		if err := kpSend(conn, kpFrame{kind: kpAnswer, stream: f.stream, seq: f.seq, body: f.body}, int(f.seq)); err != nil {
			errs.add("server answer: %v", err)
		}
		if f.kind == kpBye {
			_ = conn.Close()
		}
		return nil
	}
	onPrepare := func(conn netpoll.Connection) context.Context {
		accepted.Add(1)
		_ = conn.AddCloseCallback(func(netpoll.Connection) error { closed.Add(1); return nil })
		return context.Background()
	}
	loop := kpServe(t, kpListen(t, network, "create"), onRequest, netpoll.WithOnPrepare(onPrepare))

	pool := &kpPool{network: network, addr: loop.addr}
	t.Cleanup(pool.close)
	seq := uint32(0)
	call := func(c netpoll.Connection, kind byte) time.Duration {
		t.Helper()
		seq++
		waited, err := kpCall(c, kind, 1, seq)
		require.NoError(t, err, "call %d (%q)", seq, kind)
		return waited
	}
	get := func() netpoll.Connection {
		t.Helper()
		c, err := pool.get()
		require.NoError(t, err)
		return c
	}

	for round := 0; round < 3; round++ {
		dials := pool.dials
		a, b := get(), get()
		if round == 0 {
			require.Equal(t, 2, pool.dials, "an empty pool dials")
		} else {
			require.Equal(t, dials, pool.dials, "round %d: the pool had two live connections and dialed anyway", round)
		}
		call(a, kpRequest)
		waited := call(b, kpSlow)
		require.GreaterOrEqual(t, waited, slowDelay, "Peek(1) returned before the answer was sent")
		pool.put(a)
		pool.put(b)

		// The server answers this one and closes it.
		c := get()
		require.True(t, c == b, "round %d: the pool did not give back the last connection put", round)
		call(c, kpBye)
		err := kpBounded(c, "Peek(1) after the server closed", func() error {
			_, err := c.Reader().Peek(1)
			return err
		})
		require.ErrorIs(t, err, netpoll.ErrEOF, "round %d: waiting for a message on a connection the server closed", round)
		kpEventually(t, func() bool { return !c.IsActive() }, "round %d: IsActive false after the server closed", round)
		pool.put(c)

		dropped, dials := pool.dropped, pool.dials
		d, e := get(), get()
		require.True(t, d == a, "round %d: the pool skipped a live connection", round)
		require.Equal(t, dropped+1, pool.dropped, "round %d: the inactive connection was not dropped", round)
		require.Equal(t, dials+1, pool.dials, "round %d: one new dial replaces the dead connection", round)
		call(d, kpRequest)
		call(e, kpRequest)
		pool.put(d)
		pool.put(e)
	}
	kpEventually(t, func() bool { return int(accepted.Load()) == pool.dials }, "the server accepted %d connections, the pool dialed %d", accepted.Load(), pool.dials)
	pool.close()
	kpEventually(t, func() bool { return closed.Load() == accepted.Load() }, "server close callbacks: %d of %d", closed.Load(), accepted.Load())
	kpEventually(t, func() bool { return int(pool.callbacks.Load()) == pool.dials }, "client close callbacks: %d of %d", pool.callbacks.Load(), pool.dials)
	loop.stop(t)
	errs.check(t)
	require.Equal(t, 2+3, pool.dials, "dials: two, then one per round for the dead connection")
	require.Equal(t, 3, pool.dropped, "dead connections dropped")
}

// ---------------------------------------------------------------------------
// 4. Streaming: an OnRequest that blocks for the connection's life, and a
// ShardQueue.

type kpStreamEnd struct {
	frames int
	err    error
}

// kpServeStream is the streaming server's OnRequest body: it reads frames
// until the connection fails, checks each stream's frames arrive whole and
// in order, and acknowledges each through the connection's ShardQueue, or,
// once the client switched, with direct writes.
func kpServeStream(conn netpoll.Connection, q *mux.ShardQueue, errs *kpErrs) kpStreamEnd {
	r := conn.Reader()
	next := map[uint32]uint32{}
	queued := true
	frames := 0
	for {
		f, err := kpReadFrame(r)
		if err != nil {
			return kpStreamEnd{frames: frames, err: err}
		}
		frames++
		switch f.kind {
		case kpData:
			if want := next[f.stream]; f.seq != want {
				errs.add("server: stream %d: frame %d arrived where %d was due", f.stream, f.seq, want)
			}
			next[f.stream] = f.seq + 1
			if err := kpExpect(f, kpData, f.stream, f.seq, kpSize(f.stream, f.seq)); err != nil {
				errs.add("server: %v", err)
			}
			ack := kpFrame{kind: kpAck, stream: f.stream, seq: f.seq, body: kpBody(f.stream, f.seq, 8)}
			if queued {
				q.Add(kpLazyGetter(ack, errs))
			} else if err := kpSend(conn, ack, int(ack.seq)); err != nil {
				errs.add("server: direct ack: %v", err)
			}
		case kpSwitch:
			// Everything the client queued before closing its queue came
			// first.
			if len(f.body) != 4 || int(binary.BigEndian.Uint32(f.body)) != frames-1 {
				errs.add("server: the switch came after %d data frames; the client had queued %x", frames-1, f.body)
			}
			if err := q.Close(); err != nil {
				errs.add("server: first Close of the queue: %v", err)
			}
			if err := q.Close(); err == nil || !strings.Contains(err.Error(), "shardQueue has been closed") {
				errs.add("server: second Close of the queue gave %v, want \"shardQueue has been closed\"", err)
			}
			queued = false
			if err := kpSend(conn, kpFrame{kind: kpSwitched, stream: f.stream, seq: f.seq}, 0); err != nil {
				errs.add("server: answering the switch: %v", err)
			}
		default:
			errs.add("server: unexpected frame %q", f.kind)
		}
	}
}

// kpLazyGetter encodes f when the flusher calls it and leaves it staged.
func kpLazyGetter(f kpFrame, errs *kpErrs) mux.WriterGetter {
	return func() (netpoll.Writer, bool) {
		buf, err := kpEncode(f, int(f.seq))
		if err != nil {
			errs.add("encoding stream %d seq %d: %v", f.stream, f.seq, err)
			return nil, true
		}
		return buf, false
	}
}

// kpReadyGetter encodes f now and Flushes it inside its LinkBuffer, so the
// getter returns readable bytes.
func kpReadyGetter(f kpFrame, errs *kpErrs) mux.WriterGetter {
	buf, err := kpEncode(f, int(f.seq)+1)
	if err == nil {
		err = buf.Flush()
	}
	if err != nil {
		errs.add("encoding stream %d seq %d: %v", f.stream, f.seq, err)
		return func() (netpoll.Writer, bool) { return nil, true }
	}
	return func() (netpoll.Writer, bool) { return buf, false }
}

// kpStreamClient is one streaming connection: its OnRequest reads for the
// connection's whole life; streams goroutines each send perStream data
// frames through one ShardQueue; every ack must come back, per stream in
// order. Then the queue is closed (nil, then an error), an Add after Close
// does nothing, and direct writes still work both ways.
func kpStreamClient(network, addr string, base uint32, streams, perStream int) error {
	const direct = 5
	var errs kpErrs
	c, err := netpoll.DialConnection(network, addr, kpWait)
	if err != nil {
		return fmt.Errorf("dial: %w", err)
	}
	defer c.Close()
	_ = c.SetWriteTimeout(kpWait)
	acks := make(chan kpFrame, streams*perStream+direct+8)
	loopEnd := make(chan error, 1)
	if err := c.SetOnRequest(func(ctx context.Context, conn netpoll.Connection) error {
		for {
			f, err := kpReadFrame(conn.Reader())
			if err != nil {
				loopEnd <- err
				return nil
			}
			acks <- f
		}
	}); err != nil {
		return fmt.Errorf("SetOnRequest: %w", err)
	}
	nextAck := func(what string) (kpFrame, error) {
		select {
		case f := <-acks:
			return f, nil
		case <-time.After(kpWait):
			return kpFrame{}, fmt.Errorf("no %s within %v", what, kpWait)
		}
	}

	q := mux.NewShardQueue(mux.ShardSize, c)
	var wg sync.WaitGroup
	for s := 0; s < streams; s++ {
		stream := base + uint32(s)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for seq := uint32(0); seq < uint32(perStream); {
				switch {
				case seq%5 == 3 && seq+1 < uint32(perStream):
					// Two frames of the stream in one Add, around a getter
					// with nothing to send.
					q.Add(kpLazyGetter(kpNewFrame(kpData, stream, seq), &errs),
						func() (netpoll.Writer, bool) { return nil, true },
						kpReadyGetter(kpNewFrame(kpData, stream, seq+1), &errs))
					seq += 2
				case seq%2 == 0:
					q.Add(kpReadyGetter(kpNewFrame(kpData, stream, seq), &errs))
					seq++
				default:
					q.Add(kpLazyGetter(kpNewFrame(kpData, stream, seq), &errs))
					seq++
				}
			}
		}()
	}
	wg.Wait()

	// Close right after the last Add: it must drain the queue, so the
	// switch frame written directly afterwards follows every data frame,
	// and the server's answer follows every ack.
	if err := q.Close(); err != nil {
		return fmt.Errorf("first Close of the queue: %w", err)
	}
	if err := q.Close(); err == nil || !strings.Contains(err.Error(), "shardQueue has been closed") {
		return fmt.Errorf("second Close of the queue gave %v, want \"shardQueue has been closed\"", err)
	}
	var called atomic.Bool
	q.Add(func() (netpoll.Writer, bool) { called.Store(true); return nil, true })

	// Direct writes on the same connection, both ways. The switch carries
	// how many data frames were queued before it.
	sent := make([]byte, 4)
	binary.BigEndian.PutUint32(sent, uint32(streams*perStream))
	if err := kpSend(c, kpFrame{kind: kpSwitch, stream: base, body: sent}, 0); err != nil {
		return fmt.Errorf("sending the switch: %w", err)
	}
	next := map[uint32]uint32{}
	for n := 0; n < streams*perStream; n++ {
		f, err := nextAck(fmt.Sprintf("ack %d of %d", n+1, streams*perStream))
		if err != nil {
			return err
		}
		if f.kind != kpAck || f.stream < base || f.stream >= base+uint32(streams) || f.seq != next[f.stream] {
			return fmt.Errorf("got %q for stream %d seq %d where an ack was due; the stream's next was %d",
				f.kind, f.stream, f.seq, next[f.stream])
		}
		next[f.stream]++
		if err := kpExpect(f, kpAck, f.stream, f.seq, 8); err != nil {
			return err
		}
	}
	f, err := nextAck("answer to the switch")
	if err != nil {
		return err
	}
	if f.kind != kpSwitched || f.stream != base || len(f.body) != 0 {
		return fmt.Errorf("answer to the switch: %q stream %d", f.kind, f.stream)
	}
	for seq := uint32(perStream); seq < uint32(perStream+direct); seq++ {
		if err := kpSend(c, kpNewFrame(kpData, base, seq), int(seq)); err != nil {
			return fmt.Errorf("direct frame %d: %w", seq, err)
		}
		f, err := nextAck(fmt.Sprintf("direct ack %d", seq))
		if err != nil {
			return err
		}
		if err := kpExpect(f, kpAck, base, seq, 8); err != nil {
			return fmt.Errorf("direct ack: %w", err)
		}
	}
	if called.Load() {
		return errors.New("a getter added after the queue's Close was called")
	}
	if err := c.Close(); err != nil {
		return err
	}
	select {
	case err := <-loopEnd:
		if !errors.Is(err, netpoll.ErrConnClosed) {
			return fmt.Errorf("the client's reading OnRequest ended with %v, want ErrConnClosed", err)
		}
	case <-time.After(kpWait):
		return fmt.Errorf("the client's reading OnRequest still blocked %v after Close", kpWait)
	}
	errs.mu.Lock()
	defer errs.mu.Unlock()
	if len(errs.list) > 0 {
		return errors.New(strings.Join(errs.list, "; "))
	}
	return nil
}

// Kitex's gRPC transport: the server's OnRequest blocks for the whole life
// of the connection, reading frames in a loop until an error; many streams
// write concurrently through mux.NewShardQueue(mux.ShardSize, conn), with
// getters returning LinkBuffers (staged or flushed). Every frame arrives
// whole, each stream's in order, none lost or repeated, and so do the acks
// the server sends through its own queue. Close returns nil, a second Close
// fails with "shardQueue has been closed", an Add after it calls nothing,
// and the connection keeps working for direct writes both ways. When the
// client closes, its own reading OnRequest ends with ErrConnClosed and the
// server's with ErrEOF, having read exactly the frames sent.
func TestKitexPatternStreamingShardQueue(t *testing.T) {
	kpCheckLeaks(t)
	for _, network := range []string{"tcp", "unix"} {
		network := network
		t.Run(network, func(t *testing.T) { kpStreaming(t, network) })
	}
}

func kpStreaming(t *testing.T, network string) {
	const rounds, conns, streams, perStream = 2, 3, 6, 30
	var errs kpErrs
	ends := make(chan kpStreamEnd, rounds*conns)
	onConnect := func(ctx context.Context, conn netpoll.Connection) context.Context {
		return context.WithValue(ctx, kpQueueKey{}, mux.NewShardQueue(mux.ShardSize, conn))
	}
	onRequest := func(ctx context.Context, conn netpoll.Connection) error {
		q, _ := ctx.Value(kpQueueKey{}).(*mux.ShardQueue)
		if q == nil {
			errs.add("server: OnRequest's context lacks the queue OnConnect made")
			_ = conn.Close()
			return nil
		}
		ends <- kpServeStream(conn, q, &errs)
		return nil
	}
	loop := kpServe(t, kpListen(t, network, "create"), onRequest, netpoll.WithOnConnect(onConnect))
	for round := 0; round < rounds; round++ {
		results := make(chan error, conns)
		for i := 0; i < conns; i++ {
			base := uint32((round*conns + i) * streams)
			go func() { results <- kpStreamClient(network, loop.addr, base, streams, perStream) }()
		}
		for i := 0; i < conns; i++ {
			require.NoError(t, <-results, "round %d", round)
		}
		for i := 0; i < conns; i++ {
			select {
			case end := <-ends:
				require.ErrorIs(t, end.err, netpoll.ErrEOF, "round %d: the server's reading OnRequest ended", round)
				require.Equal(t, streams*perStream+1+5, end.frames, "round %d: frames the server read", round)
			case <-time.After(kpWait):
				t.Fatalf("round %d: a server OnRequest still reading %v after its client closed", round, kpWait)
			}
		}
		errs.check(t)
	}
	loop.stop(t)
	errs.check(t)
}

// ---------------------------------------------------------------------------
// 5. GetSysFdPairs and NewFDConnection.

func kpPipeSize(seq uint32) int {
	if seq == 10 {
		return 1 << 20 // more than a socketpair holds: the Flush must wait
	}
	return kpSize(3, seq)
}

// kpPipeWrite sends n frames of stream on c, alternating a LinkBuffer
// Appended to the Writer with an encoding straight into it.
func kpPipeWrite(c netpoll.Connection, stream uint32, n int) error {
	for seq := uint32(0); seq < uint32(n); seq++ {
		f := kpFrame{kind: kpData, stream: stream, seq: seq, body: kpBody(stream, seq, kpPipeSize(seq))}
		if seq%2 == 0 {
			if err := kpSend(c, f, int(seq)); err != nil {
				return fmt.Errorf("stream %d seq %d: %w", stream, seq, err)
			}
			continue
		}
		if err := kpEncodeInto(c.Writer(), f, int(seq)); err != nil {
			return err
		}
		if err := c.Writer().Flush(); err != nil {
			return fmt.Errorf("stream %d seq %d: flush: %w", stream, seq, err)
		}
	}
	return nil
}

func kpPipeRead(c netpoll.Connection, stream uint32, n int) error {
	for seq := uint32(0); seq < uint32(n); seq++ {
		read := kpReadFrame
		if seq%3 == 2 {
			read = kpReadFrameDirect
		}
		f, err := read(c.Reader())
		if err != nil {
			return fmt.Errorf("stream %d: reading seq %d: %w", stream, seq, err)
		}
		if err := kpExpect(f, kpData, stream, seq, kpPipeSize(seq)); err != nil {
			return err
		}
	}
	return nil
}

// Kitex's ttstream test utilities: two NewFDConnections over the ends of a
// GetSysFdPairs socketpair, frames streamed both ways at once (including
// one larger than the socket buffers, so Flushes wait while the other side
// reads), all intact. When one end closes, the other's blocked read ends
// with ErrEOF and it becomes inactive; the closed end fails reads and
// writes with ErrConnClosed. Both fds are released.
func TestKitexPatternSysFdPairs(t *testing.T) {
	kpCheckLeaks(t)
	for round := 0; round < 3; round++ {
		r, w := netpoll.GetSysFdPairs()
		require.True(t, r >= 0 && w >= 0 && r != w, "GetSysFdPairs returned %d, %d", r, w)
		rc, err := netpoll.NewFDConnection(r)
		if err != nil {
			_ = syscall.Close(r)
			_ = syscall.Close(w)
			t.Fatalf("NewFDConnection(%d): %v", r, err)
		}
		wc, err := netpoll.NewFDConnection(w)
		if err != nil {
			_ = rc.Close()
			_ = syscall.Close(w)
			t.Fatalf("NewFDConnection(%d): %v", w, err)
		}
		t.Cleanup(func() {
			_ = rc.Close()
			_ = wc.Close()
		})
		for _, c := range []netpoll.Connection{rc, wc} {
			require.True(t, c.IsActive())
			require.NoError(t, c.SetReadTimeout(kpWait))
			require.NoError(t, c.SetWriteTimeout(kpWait))
		}

		const frames = 30
		results := make(chan error, 4)
		go func() { results <- kpPipeWrite(wc, 100, frames) }()
		go func() { results <- kpPipeRead(rc, 100, frames) }()
		go func() { results <- kpPipeWrite(rc, 200, frames) }()
		go func() { results <- kpPipeRead(wc, 200, frames) }()
		for i := 0; i < 4; i++ {
			require.NoError(t, <-results, "round %d", round)
		}
		require.Zero(t, rc.Reader().Len(), "round %d", round)
		require.Zero(t, wc.Reader().Len(), "round %d", round)

		first, second := wc, rc
		if round%2 == 1 {
			first, second = rc, wc
		}
		require.NoError(t, first.Close())
		_, err = second.Reader().Peek(1)
		require.ErrorIs(t, err, netpoll.ErrEOF, "round %d: the peer's read after one end closed", round)
		kpEventually(t, func() bool { return !second.IsActive() }, "round %d: the peer inactive after one end closed", round)
		_, err = first.Reader().Peek(1)
		require.ErrorIs(t, err, netpoll.ErrConnClosed, "round %d: a read on the closed end", round)
		_, err = first.Writer().WriteString("late")
		require.ErrorIs(t, err, netpoll.ErrConnClosed, "round %d: a write on the closed end", round)
		require.NoError(t, second.Close())
		require.NoError(t, first.Close(), "a second Close")
	}
}

// ---------------------------------------------------------------------------
// 6. Graceful shutdown with requests in flight.

// Kitex's graceful shutdown with requests in flight. The listener is closed
// first, while two handlers are still running: Serve keeps waiting, new
// dials to the address fail, the process dials another server and talks to
// it, and connections already accepted are still served (a new request on
// one of them is answered). A handler that finishes during this exit wait
// gets its answer out. Then Shutdown is called while the other handler
// still runs: it closes the idle connections (their clients read ErrEOF)
// but leaves the busy one open and does not return until that handler has
// answered; then it returns nil, Serve returns nil, the last connection is
// closed, and every close callback ran.
func TestKitexPatternGracefulShutdown(t *testing.T) {
	kpCheckLeaks(t)
	for _, network := range []string{"tcp", "unix"} {
		network := network
		t.Run(network, func(t *testing.T) {
			other := kpServe(t, kpListen(t, network, "create"), kpAnswerFrames)
			for round := 0; round < 2; round++ {
				how := "create"
				if round == 1 {
					how = "convert"
				}
				kpShutdownRound(t, network, how, other.addr)
			}
			other.stop(t)
		})
	}
}

func kpShutdownRound(t *testing.T, network, how, otherAddr string) {
	var errs kpErrs
	var accepted, closed atomic.Int32
	started := make(chan uint32, 2)
	release := map[uint32]chan struct{}{1: make(chan struct{}), 2: make(chan struct{})}
	var answered [3]atomic.Bool
	onRequest := func(ctx context.Context, conn netpoll.Connection) error {
		f, err := kpReadFrame(conn.Reader())
		if err != nil {
			errs.add("server read: %v", err)
			_ = conn.Close()
			return err
		}
		if f.kind == kpSlow {
			started <- f.stream
			select {
			case <-release[f.stream]:
			case <-time.After(kpWait):
				errs.add("stream %d: the handler was never released", f.stream)
			}
		}
		if err := kpSend(conn, kpFrame{kind: kpAnswer, stream: f.stream, seq: f.seq, body: f.body}, int(f.seq)); err != nil {
			errs.add("stream %d: answering: %v", f.stream, err)
		}
		if f.kind == kpSlow {
			answered[f.stream].Store(true)
		}
		return nil
	}
	onPrepare := func(conn netpoll.Connection) context.Context {
		accepted.Add(1)
		_ = conn.AddCloseCallback(func(netpoll.Connection) error { closed.Add(1); return nil })
		return context.Background()
	}
	ln := kpListen(t, network, how)
	loop := kpServe(t, ln, onRequest, netpoll.WithOnPrepare(onPrepare), netpoll.WithReadTimeout(kpWait))

	var clients []netpoll.Connection
	dial := func() netpoll.Connection {
		t.Helper()
		c, err := kpDial(network, loop.addr)
		require.NoError(t, err)
		clients = append(clients, c)
		return c
	}
	defer func() {
		for _, c := range clients {
			_ = c.Close()
		}
	}()
	idle, live, busy1, busy2 := dial(), dial(), dial(), dial()
	require.NoError(t, kpRoundTrip(idle, kpRequest, 10, 0))
	require.NoError(t, kpRoundTrip(live, kpRequest, 11, 0))
	require.NoError(t, kpSend(busy1, kpNewFrame(kpSlow, 1, 0), 0))
	require.NoError(t, kpSend(busy2, kpNewFrame(kpSlow, 2, 0), 1))
	for i := 0; i < 2; i++ {
		select {
		case <-started:
		case <-time.After(kpWait):
			t.Fatalf("the slow handlers did not start within %v", kpWait)
		}
	}

	// The listener is closed first.
	require.NoError(t, ln.Close())
	c, err := netpoll.DialConnection(network, loop.addr, kpWait)
	if err == nil {
		_ = c.Close()
		t.Fatalf("a dial to %s succeeded after its listener was closed", loop.addr)
	}
	// The process goes on dialing other servers.
	for i := 0; i < 5; i++ {
		oc, err := kpDial(network, otherAddr)
		require.NoError(t, err, "dial %d to another server during the exit wait", i)
		err = kpRoundTrip(oc, kpRequest, 20, uint32(i))
		_ = oc.Close()
		require.NoError(t, err, "round trip %d with another server during the exit wait", i)
	}
	// The connections already accepted are still served.
	require.NoError(t, kpRoundTrip(live, kpRequest, 11, 1), "a request on a live connection after the listener closed")
	require.False(t, loop.returned(), "Serve returned (%v) when its listener was closed; it must wait for Shutdown", loop.served)

	// A handler finishing during the exit wait answers.
	close(release[1])
	got, err := kpReadFrame(busy1.Reader())
	require.NoError(t, err, "the answer of the handler that finished during the exit wait")
	require.NoError(t, kpExpect(got, kpAnswer, 1, 0, kpSize(1, 0)))

	// Shutdown while the other handler still runs.
	shutdown := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), kpWait)
		defer cancel()
		shutdown <- loop.evl.Shutdown(ctx)
	}()
	for _, c := range []netpoll.Connection{idle, live, busy1} {
		_, err := c.Reader().Peek(1)
		require.ErrorIs(t, err, netpoll.ErrEOF, "an idle connection during Shutdown")
	}
	select {
	case err := <-shutdown:
		t.Fatalf("Shutdown returned %v while a handler was still running", err)
	default:
	}
	require.True(t, busy2.IsActive(), "Shutdown closed a connection whose handler was running")

	close(release[2])
	got, err = kpReadFrame(busy2.Reader())
	require.NoError(t, err, "the answer of the handler that was running when Shutdown began")
	require.NoError(t, kpExpect(got, kpAnswer, 2, 0, kpSize(2, 0)))
	select {
	case err := <-shutdown:
		require.NoError(t, err, "Shutdown")
		require.True(t, answered[2].Load(), "Shutdown returned before the running handler had answered")
	case <-time.After(kpWait):
		t.Fatalf("Shutdown did not return within %v of the last handler's end", kpWait)
	}
	loop.checkServed(t)
	_, err = busy2.Reader().Peek(1)
	require.ErrorIs(t, err, netpoll.ErrEOF, "the last connection after Shutdown")
	kpEventually(t, func() bool { return closed.Load() == accepted.Load() }, "close callbacks: %d of %d", closed.Load(), accepted.Load())
	require.Equal(t, int32(4), accepted.Load())
	errs.check(t)
}

// ---------------------------------------------------------------------------
// 7. Panics reach the Runner.

type kpPanicValue struct {
	where string
	conn  int64
	seq   uint32
}

type kpPanicEntry struct {
	value   interface{}
	conn    int64
	hasConn bool
}

// kpPanicLog records the panics a Runner (or gopool's handler) recovered.
type kpPanicLog struct {
	mu      sync.Mutex
	entries []kpPanicEntry
}

func (l *kpPanicLog) record(ctx context.Context, v interface{}) {
	e := kpPanicEntry{value: v}
	if ctx != nil {
		e.conn, e.hasConn = ctx.Value(kpConnKey{}).(int64)
	}
	l.mu.Lock()
	l.entries = append(l.entries, e)
	l.mu.Unlock()
}

func (l *kpPanicLog) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.entries)
}

func (l *kpPanicLog) last() kpPanicEntry {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.entries[len(l.entries)-1]
}

// kpRunner runs each task on a new goroutine and records what it recovers.
type kpRunner struct {
	log   kpPanicLog
	tasks atomic.Int64
	wg    sync.WaitGroup
}

func (r *kpRunner) run(ctx context.Context, f func()) {
	r.tasks.Add(1)
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		defer func() {
			if v := recover(); v != nil {
				r.log.record(ctx, v)
			}
		}()
		f()
	}()
}

// wait waits for every task the runner started.
func (r *kpRunner) wait(t *testing.T) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		r.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(kpWait):
		t.Fatalf("the runner's tasks still running %v after the server stopped", kpWait)
	}
}

// A panic in OnRequest (and in OnConnect) closes the connection, runs its
// close callbacks, and is raised again in the Runner with the connection's
// context, where a custom Runner (set with Configure or SetRunner) or
// gopool's panic handler sees it: exactly one recovered panic per
// panicking handler, with the value panicked. The server goes on serving its
// other connections. The Runner is restored to the default afterwards.
func TestKitexPatternPanicReachesRunner(t *testing.T) {
	kpCheckLeaks(t)
	t.Run("Configure", func(t *testing.T) {
		r := &kpRunner{}
		t.Cleanup(func() { netpoll.SetRunner(nil) })
		require.NoError(t, netpoll.Configure(netpoll.Config{Runner: r.run}))
		kpPanicScenario(t, &r.log)
		r.wait(t)
		require.Greater(t, r.tasks.Load(), int64(0), "the Runner given to Configure ran no task")
		netpoll.SetRunner(nil)
	})
	t.Run("SetRunner", func(t *testing.T) {
		r := &kpRunner{}
		t.Cleanup(func() { netpoll.SetRunner(nil) })
		netpoll.SetRunner(r.run)
		kpPanicScenario(t, &r.log)
		r.wait(t)
		require.Greater(t, r.tasks.Load(), int64(0), "the Runner given to SetRunner ran no task")
		netpoll.SetRunner(nil)
	})
	t.Run("DefaultRunner", func(t *testing.T) {
		var log kpPanicLog
		gopool.SetPanicHandler(log.record)
		t.Cleanup(func() { gopool.SetPanicHandler(nil) })
		kpPanicScenario(t, &log)
	})
	// With the default Runner back, a server still works.
	loop := kpServe(t, kpListen(t, "tcp", "create"), kpAnswerFrames)
	c, err := kpDial("tcp", loop.addr)
	require.NoError(t, err)
	err = kpRoundTrip(c, kpRequest, 1, 1)
	_ = c.Close()
	require.NoError(t, err, "a round trip with the default Runner restored")
	loop.stop(t)
}

func kpPanicScenario(t *testing.T, log *kpPanicLog) {
	const panicking = 3
	var errs kpErrs
	var nextID atomic.Int64
	var closedMu sync.Mutex
	closedIDs := map[int64]bool{}
	var panicOnConnect atomic.Bool
	isClosed := func(id int64) bool {
		closedMu.Lock()
		defer closedMu.Unlock()
		return closedIDs[id]
	}
	onPrepare := func(conn netpoll.Connection) context.Context {
		id := nextID.Add(1)
		_ = conn.AddCloseCallback(func(netpoll.Connection) error {
			closedMu.Lock()
			closedIDs[id] = true
			closedMu.Unlock()
			return nil
		})
		return context.WithValue(context.Background(), kpConnKey{}, id)
	}
	onConnect := func(ctx context.Context, conn netpoll.Connection) context.Context {
		if panicOnConnect.Load() {
			id, _ := ctx.Value(kpConnKey{}).(int64)
			panic(kpPanicValue{where: "OnConnect", conn: id})
		}
		return ctx
	}
	onRequest := func(ctx context.Context, conn netpoll.Connection) error {
		id, _ := ctx.Value(kpConnKey{}).(int64)
		f, err := kpReadFrame(conn.Reader())
		if err != nil {
			errs.add("conn %d: read: %v", id, err)
			_ = conn.Close()
			return err
		}
		if f.kind == kpPanic {
			panic(kpPanicValue{where: "OnRequest", conn: id, seq: f.seq})
		}
		return kpSend(conn, kpFrame{kind: kpAnswer, stream: f.stream, seq: f.seq, body: f.body}, int(f.seq))
	}
	loop := kpServe(t, kpListen(t, "tcp", "create"), onRequest,
		netpoll.WithOnPrepare(onPrepare), netpoll.WithOnConnect(onConnect))

	healthy, err := kpDial("tcp", loop.addr)
	require.NoError(t, err)
	defer healthy.Close()
	require.NoError(t, kpRoundTrip(healthy, kpRequest, 1, 0))

	for i := 0; i < panicking; i++ {
		id := int64(i + 2)
		seq := uint32(100 + i)
		c, err := kpDial("tcp", loop.addr)
		require.NoError(t, err)
		require.NoError(t, kpRoundTrip(c, kpRequest, uint32(id), 0), "conn %d before its panic", id)
		require.NoError(t, kpSend(c, kpNewFrame(kpPanic, uint32(id), seq), 0))
		_, err = c.Reader().Peek(1)
		require.ErrorIs(t, err, netpoll.ErrEOF, "conn %d: a panic in OnRequest closes the connection", id)
		_ = c.Close()
		kpEventually(t, func() bool { return isClosed(id) }, "conn %d: close callback after the panic", id)
		kpEventually(t, func() bool { return log.count() == i+1 }, "conn %d: the panic reaching the Runner (%d recorded)", id, log.count())
		e := log.last()
		require.Equal(t, kpPanicValue{where: "OnRequest", conn: id, seq: seq}, e.value, "conn %d: the value recovered", id)
		require.True(t, e.hasConn, "conn %d: the Runner got the panic without the connection's context", id)
		require.Equal(t, id, e.conn, "conn %d: the Runner got another connection's context", id)
		require.NoError(t, kpRoundTrip(healthy, kpRequest, 1, uint32(i+1)), "the other connection after conn %d panicked", id)
	}

	panicOnConnect.Store(true)
	id := int64(panicking + 2)
	c, err := kpDial("tcp", loop.addr)
	require.NoError(t, err)
	_, err = c.Reader().Peek(1)
	panicOnConnect.Store(false)
	_ = c.Close()
	require.ErrorIs(t, err, netpoll.ErrEOF, "conn %d: a panic in OnConnect closes the connection", id)
	kpEventually(t, func() bool { return isClosed(id) }, "conn %d: close callback after the panic in OnConnect", id)
	kpEventually(t, func() bool { return log.count() == panicking+1 }, "conn %d: the OnConnect panic reaching the Runner", id)
	e := log.last()
	require.Equal(t, kpPanicValue{where: "OnConnect", conn: id}, e.value)
	require.True(t, e.hasConn && e.conn == id, "conn %d: the Runner got the OnConnect panic with context %v/%d", id, e.hasConn, e.conn)

	require.NoError(t, kpRoundTrip(healthy, kpRequest, 1, 99), "the other connection after every panic")
	require.NoError(t, healthy.Close())
	loop.stop(t)
	errs.check(t)
	require.Equal(t, panicking+1, log.count(), "panics recovered: one per panicking handler")
}
