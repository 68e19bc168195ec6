//go:build darwin || freebsd || linux

package mux

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cloudwego/netpoll"
	"github.com/stretchr/testify/require"
)

// Close blocks until what was queued is on the wire, returns nil and
// leaves the connection open.
func TestCloseWaitsForDrain(t *testing.T) {
	conn, got := dialPair(t)
	q := NewShardQueue(2, conn)
	g := newGate()
	first := frame(1, 0, 100)
	q.Add(g.getter(first))
	g.waitEntered(t)
	second, n := frameGetter(1, 1)
	q.Add(second)

	done := closeAsync(q)
	select {
	case err := <-done:
		t.Fatalf("Close returned %v while a getter was still running", err)
	case <-time.After(100 * time.Millisecond):
	}
	close(g.open)
	require.NoError(t, recvErr(t, done))
	frames, err := parse(got.wait(t, len(first)+n))
	require.NoError(t, err)
	require.Equal(t, []parsed{{1, 0}, {1, 1}}, frames)
	require.True(t, conn.IsActive())
}

// Only the first Close succeeds; the second reports the closed queue.
func TestCloseTwice(t *testing.T) {
	conn, _ := dialPair(t)
	q := NewShardQueue(1, conn)
	require.NoError(t, q.Close())
	err := q.Close()
	require.Error(t, err)
	require.Equal(t, "shardQueue has been closed", err.Error())
	require.True(t, conn.IsActive())
}

// Add after Close does nothing: no getter is called, by Add or by a
// flusher, and nothing reaches the peer.
func TestAddAfterClose(t *testing.T) {
	conn, got := dialPair(t)
	q := NewShardQueue(1, conn)
	require.NoError(t, q.Close())
	var calls atomic.Int32
	gt, _ := frameGetter(2, 0)
	q.Add(func() (netpoll.Writer, bool) { calls.Add(1); return nil, true })
	q.Add(func() (netpoll.Writer, bool) { calls.Add(1); return gt() })
	time.Sleep(20 * time.Millisecond) // room for a flusher that must not run
	require.Zero(t, calls.Load(), "a getter added after Close was called")

	// Only bytes written directly afterwards arrive.
	marker := frame(3, 0, 5)
	_, err := conn.Write(marker)
	require.NoError(t, err)
	require.Equal(t, marker, got.wait(t, len(marker)))
	time.Sleep(20 * time.Millisecond)
	require.Equal(t, marker, got.bytes())
}

// A nil connection gives a queue whose Adds do nothing, never calling a
// getter; so do a connection holding a nil pointer, a nil *ShardQueue and a
// zero one. Close on them is Close on a queue with nothing queued: the
// first returns nil, a later one "shardQueue has been closed"; a nil
// *ShardQueue is already closed.
func TestNoConnection(t *testing.T) {
	var typedNil *netpoll.TCPConnection
	queues := map[string]*ShardQueue{
		"nil conn":       NewShardQueue(0, nil),
		"typed nil conn": NewShardQueue(3, typedNil),
		"nil queue":      nil,
		"zero queue":     {},
	}
	for name, q := range queues {
		t.Run(name, func(t *testing.T) {
			if name != "nil queue" {
				require.NotNil(t, q)
			}
			calls := 0
			require.NotPanics(t, func() {
				q.Add(func() (netpoll.Writer, bool) { calls++; return netpoll.NewLinkBuffer(), false })
			})
			require.Zero(t, calls)
			if name != "nil queue" {
				require.NoError(t, q.Close())
			}
			err := q.Close()
			require.Error(t, err)
			require.Equal(t, "shardQueue has been closed", err.Error())
		})
	}
}

// size <= 0 means ShardSize (itself at least 1); huge sizes are capped.
func TestShardCount(t *testing.T) {
	require.Positive(t, ShardSize)
	require.Len(t, NewShardQueue(0, nil).shards, ShardSize)
	require.Len(t, NewShardQueue(-5, nil).shards, ShardSize)
	require.Len(t, NewShardQueue(7, nil).shards, 7)
	require.Len(t, NewShardQueue(1<<40, nil).shards, maxShards)
	saved := ShardSize
	defer func() { ShardSize = saved }()
	ShardSize = 0
	require.Len(t, NewShardQueue(0, nil).shards, 1)
}

// A buffer that Append refuses closes the connection, and the rest of its
// batch is dropped (its getters still run, so buffers are released).
func TestAppendErrorClosesConn(t *testing.T) {
	conn, got := dialPair(t)
	q := NewShardQueue(1, conn)
	g := newGate()
	q.Add(g.getter(frame(4, 0, 1)))
	g.waitEntered(t)
	var after atomic.Int32
	good, _ := frameGetter(4, 2)
	q.Add(
		func() (netpoll.Writer, bool) { return foreignWriter{}, false },
		func() (netpoll.Writer, bool) { after.Add(1); return good() },
	)
	close(g.open)
	require.NoError(t, q.Close())
	eventually(t, func() bool { return !conn.IsActive() }, "a failed Append closes the connection")
	require.EqualValues(t, 1, after.Load(), "the dropped getter still runs once")
	// Only the first batch (the gate's frame) reached the server.
	time.Sleep(20 * time.Millisecond)
	frames, err := parse(got.bytes())
	require.NoError(t, err)
	require.Equal(t, []parsed{{4, 0}}, frames)
}

// A failed Flush closes the connection.
func TestFlushErrorClosesConn(t *testing.T) {
	conn, _ := dialPair(t)
	cc := &countingConn{Connection: conn, flushErr: errInjected}
	q := NewShardQueue(2, cc)
	gt, _ := frameGetter(5, 0)
	q.Add(gt)
	require.NoError(t, q.Close())
	require.EqualValues(t, 1, cc.flushes.Load())
	eventually(t, func() bool { return !conn.IsActive() }, "a failed Flush closes the connection")
}

// After an error every later batch is dropped (its getters still run), so
// nothing is sent after a gap; Close still returns promptly.
func TestBatchesAfterErrorAreDropped(t *testing.T) {
	conn, got := dialPair(t)
	q := NewShardQueue(2, conn)
	q.Add(func() (netpoll.Writer, bool) { return foreignWriter{}, false })
	eventually(t, func() bool { return !conn.IsActive() }, "connection closed after the error")
	var calls atomic.Int32
	for i := uint32(0); i < 10; i++ {
		gt, _ := frameGetter(6, i)
		q.Add(func() (netpoll.Writer, bool) { calls.Add(1); return gt() })
	}
	require.NoError(t, q.Close())
	require.EqualValues(t, 10, calls.Load())
	require.Empty(t, got.bytes())
}

// A panicking getter closes the connection and cannot wedge Close. The
// panic is raised again on the Runner (gopool logs it).
func TestGetterPanicClosesConn(t *testing.T) {
	conn, _ := dialPair(t)
	q := NewShardQueue(1, conn)
	q.Add(func() (netpoll.Writer, bool) { panic("getter exploded") })
	require.NoError(t, q.Close())
	eventually(t, func() bool { return !conn.IsActive() }, "a getter panic closes the connection")
}

// Stress for the race detector: producers Add while the queue is closed.
// A getter runs at most once (never when its Add came after the Close),
// none runs once Close has returned, and Close succeeds once.
func TestRaceAddAndClose(t *testing.T) {
	conn, _ := dialPair(t)
	q := NewShardQueue(4, conn)
	const producers, perProducer = 8, 500
	var calls atomic.Int64
	var wg sync.WaitGroup
	start := make(chan struct{})
	for p := 0; p < producers; p++ {
		wg.Add(1)
		go func(p int) {
			defer wg.Done()
			<-start
			for seq := uint32(0); seq < perProducer; seq++ {
				gt, _ := frameGetter(uint32(p), seq)
				q.Add(func() (netpoll.Writer, bool) { calls.Add(1); return gt() })
			}
		}(p)
	}
	closes := make(chan error, 3)
	for i := 0; i < 3; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			time.Sleep(time.Millisecond)
			closes <- q.Close()
		}()
	}
	close(start)
	wg.Wait()
	close(closes)
	ok := 0
	for err := range closes {
		if err == nil {
			ok++
		}
	}
	require.Equal(t, 1, ok, "exactly one Close succeeds")
	n := calls.Load()
	require.LessOrEqual(t, n, int64(producers*perProducer))
	time.Sleep(20 * time.Millisecond)
	require.Equal(t, n, calls.Load(), "a getter ran after Close returned")
	require.True(t, conn.IsActive())
}

// A close callback may close the queue, both when the queue's own error
// closes the connection and when the user does.
func TestCloseFromCloseCallback(t *testing.T) {
	for _, byError := range []bool{true, false} {
		conn, _ := dialPair(t)
		q := NewShardQueue(2, conn)
		closed := make(chan error, 1)
		require.NoError(t, conn.AddCloseCallback(func(netpoll.Connection) error {
			closed <- q.Close()
			return nil
		}))
		gt, _ := frameGetter(7, 0)
		q.Add(gt)
		if byError {
			q.Add(func() (netpoll.Writer, bool) { return foreignWriter{}, false })
		} else {
			require.NoError(t, conn.Close())
		}
		require.NoError(t, recvErr(t, closed), "byError=%v", byError)
		require.EqualError(t, q.Close(), "shardQueue has been closed")
	}
}
