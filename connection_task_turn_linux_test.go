//go:build linux

package netpoll

import (
	"context"
	"runtime"
	"sort"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Busy workers give the poller turns (docs/contract.md C16.17). With two Ps
// both running slow handler tasks back to back, no P runs out of work, so
// the scheduler never polls the network, where the Linux poller parks: only
// the workers' turns let it read input that arrives while the queue drains.
//
// In each round, eighty tasks of 200 µs each are queued at once; once two
// have finished (both Ps run workers then), one sends a byte to another
// connection, late, and the round counts how many more tasks finished
// before late's input was first seen in its buffer (or its own handler
// ran). A turn comes after a task or two; without turns the byte waits in
// the socket until the queue is empty, or until the runtime's monitor
// polls the network, which it does after 10 ms without a poll. A thread
// of this machine stalled for milliseconds delays a round now and then
// either way, so the test takes the median of seven.
func TestTaskQueueTurnReadsWhileWorkersBusy(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(2))
	const (
		slow   = 80
		rounds = 7
	)
	var lags []int
	for r := 0; r < rounds; r++ {
		lags = append(lags, turnRound(t, slow))
	}
	t.Logf("tasks finished between late's byte sent and read, per round: %v (of %d)", lags, slow)
	if raceEnabled {
		// The race detector randomizes where the scheduler puts a readied
		// goroutine, which gives the poller turns of its own and delays
		// some of ours: the order is only checked without it (make race
		// runs this test both ways).
		return
	}
	sort.Ints(lags)
	require.Less(t, lags[rounds/2], slow/4, "late's input was read only once the busy workers had nearly emptied the queue: the poller got no turn")
}

// turnRound runs one round of TestTaskQueueTurnReadsWhileWorkersBusy with
// slow tasks and returns how many finished between late's byte sent and
// read.
func turnRound(t *testing.T, slow int32) int {
	const spin = 200 * time.Microsecond
	var (
		done   atomic.Int32 // slow tasks finished
		sentAt atomic.Int32 // done when late's byte was sent
		seenAt atomic.Int32 // done when late's input was first seen; -1 before
		once   sync.Once
	)
	seenAt.Store(-1)
	consume := func(c Connection) {
		r := c.Reader()
		_ = r.Skip(r.Len())
		_ = r.Release()
	}

	late, lateW := fdPairConn(t)
	require.NoError(t, late.SetOnRequest(func(_ context.Context, c Connection) error {
		seenAt.CompareAndSwap(-1, done.Load())
		consume(c)
		return nil
	}))

	// The slow connections' bytes are buffered before they get a handler,
	// so that setting the handlers queues their tasks in a row.
	conns := make([]npConn, slow)
	for i := range conns {
		c, w := fdPairConn(t)
		_, err := syscall.Write(w, []byte{1})
		require.NoError(t, err)
		eventually(t, func() bool { return c.Reader().Len() == 1 }, "slow connection %d's byte in its buffer", i)
		conns[i] = c
	}
	finished := make(chan struct{})
	slowTask := func(_ context.Context, c Connection) error {
		consume(c)
		if done.Load() >= 2 { // both Ps run workers by now
			once.Do(func() {
				sentAt.Store(done.Load())
				_, _ = syscall.Write(lateW, []byte{1})
			})
		}
		for start := time.Now(); time.Since(start) < spin; {
			if late.Reader().Len() > 0 {
				seenAt.CompareAndSwap(-1, done.Load())
			}
		}
		if done.Add(1) == slow {
			close(finished)
		}
		return nil
	}
	for _, c := range conns {
		require.NoError(t, c.SetOnRequest(slowTask))
	}
	recv(t, finished, "the slow tasks to finish")
	eventually(t, func() bool { return seenAt.Load() >= 0 }, "late's input to be read")
	for _, c := range conns {
		require.NoError(t, c.Close())
	}
	return int(seenAt.Load() - sentAt.Load())
}
