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
	defer setProcs(setProcs(2))
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

// A slow task while fewer workers than Ps run tasks asks no turn (C16.17):
// a P is left to run out of work, and the scheduler polls the network on it
// when input comes, so a turn would only wake the poller to find nothing.
// Each request's task spins for 2*turnAfter, long enough for a turn; after
// it the poller must not have polled again. Some other event on the
// poller's fds could make it poll now and then, so the test fails only when
// most requests were followed by a poll, as every one was when a single
// busy worker asked turns.
func TestTaskQueueNoTurnWithIdleP(t *testing.T) {
	defer setProcs(setProcs(2))
	const requests = 5
	nc, w := fdPairConn(t)
	c, ok := nc.(*connection)
	require.True(t, ok, "%T is not a *connection", nc)
	ended := make(chan int64, 1)
	require.NoError(t, c.SetOnRequest(func(_ context.Context, c Connection) error {
		r := c.Reader()
		_ = r.Skip(r.Len())
		_ = r.Release()
		for start := time.Now(); time.Since(start) < 2*turnAfter; {
		}
		ended <- monoNow()
		return nil
	}))
	polledAfter := 0
	for i := 0; i < requests; i++ {
		_, err := syscall.Write(w, []byte{1})
		require.NoError(t, err)
		end := recv(t, ended, "the slow task to end")
		time.Sleep(20 * time.Millisecond) // a turn would have come by now
		if c.poller().lastPoll.Load() > end {
			polledAfter++
		}
	}
	require.Less(t, polledAfter, requests/2+1, "the poller polled after %d of %d slow tasks run by one worker with a P idle: they asked turns", polledAfter, requests)
	require.NoError(t, c.Close())
}

// The workers' view of GOMAXPROCS (procs, which decides whether they time
// their tasks and may ask turns) follows a change once a poller wakes up
// procsEvery or more after its last reading, so that a process that raises
// GOMAXPROCS gets turns without taking the scheduler's lock after every task.
func TestTaskQueueProcsFollowsGOMAXPROCS(t *testing.T) {
	defer setProcs(runtime.GOMAXPROCS(0))
	c, w := fdPairConn(t)
	for _, n := range []int{3, 1, 2} {
		runtime.GOMAXPROCS(n) // not setProcs: the poller's own refresh is tested
		eventually(t, func() bool {
			time.Sleep(procsEvery)
			_, err := syscall.Write(w, []byte{1}) // a wake-up of c's poller
			require.NoError(t, err)
			return int(procs.Load()) == n
		}, "procs to follow GOMAXPROCS %d", n)
	}
	require.NoError(t, c.Close())
}

// setProcs sets GOMAXPROCS and the workers' view of it at once, so that a
// test's first tasks do not run with the view of the test before (it
// follows at a poller's next wake-up anyway), and returns the previous
// GOMAXPROCS.
func setProcs(n int) int {
	old := runtime.GOMAXPROCS(n)
	readProcs()
	return old
}
