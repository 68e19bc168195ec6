//go:build darwin || freebsd || linux

package netpoll

import (
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"
)

// State-machine tests of connState, the word a connection's close is
// decided on (connection_state.go): marking, then counting holds, with
// exactly one finalize; and an impossible hold count panics, leaving the
// word as it was, instead of wrapping into the neighbouring bits.

func TestConnStateCloseByCounting(t *testing.T) {
	var s connState
	s.init(true)
	require.True(t, s.acquireTask(), "a task starts on an open connection")
	require.False(t, s.acquireTask(), "a second task while one runs")
	require.True(t, s.acquire(), "a call hold on an open connection")

	require.True(t, s.markClose(closerUser))
	require.False(t, s.markClose(closerPeer), "a second mark")
	require.Equal(t, uint32(closerUser), s.closer())
	require.True(t, s.closedLocally())

	require.False(t, s.release(holdOwner), "the owner's release with a task and a call still holding")
	require.False(t, s.release(holdOwner), "the owner's second release does nothing")
	require.False(t, s.release(holdCall), "the call's release with the task still holding")
	require.Equal(t, uint32(phaseClosing), s.phase())
	require.True(t, s.release(holdTask), "the last release finalizes")
	require.Equal(t, uint32(phaseDone), s.phase())
	require.False(t, s.running())

	require.False(t, s.acquire(), "a hold on a finished connection")
	require.False(t, s.acquireTask(), "a task on a finished connection")
}

// Releases while open never finalize, whatever the count comes to.
func TestConnStateReleaseWhileOpen(t *testing.T) {
	var s connState
	s.init(false)
	require.True(t, s.acquire())
	require.False(t, s.release(holdCall))
	require.False(t, s.release(holdOwner))
	require.Equal(t, uint32(phaseOpen), s.phase())
	require.True(t, s.markClose(closerPeer), "a connection without holds still closes")
	require.False(t, s.closedLocally(), "a peer close is not a local one")
}

func TestConnStateHoldUnderflowPanics(t *testing.T) {
	var s connState
	s.init(false)
	require.False(t, s.release(holdOwner))
	before := s.v.Load()
	require.PanicsWithValue(t, holdUnderflow, func() { s.release(holdCall) })
	require.Equal(t, before, s.v.Load(), "the word after the refused release")

	s.init(false)
	before = s.v.Load()
	require.PanicsWithValue(t, taskUnheld, func() { s.release(holdTask) }, "a task release with no task")
	require.Equal(t, before, s.v.Load(), "the word after the refused task release")
}

func TestConnStateHoldOverflowPanics(t *testing.T) {
	var s connState
	s.init(false)
	for i := 1; i < holdsMask>>8; i++ { // the owner's hold is the first
		require.True(t, s.acquire(), "hold %d", i+1)
	}
	before := s.v.Load()
	require.PanicsWithValue(t, holdOverflow, func() { s.acquire() })
	require.PanicsWithValue(t, holdOverflow, func() { s.acquireTask() })
	require.Equal(t, before, s.v.Load(), "the word after the refused holds")
	require.False(t, s.release(holdCall), "a release below the limit")
	require.True(t, s.acquireTask(), "a task once there is room")
}

// Many goroutines take and give up holds while the connection is closed:
// exactly one release finalizes, and nothing is held afterwards.
func TestConnStateOneFinalizeUnderRace(t *testing.T) {
	const workers, rounds = 8, 2000
	for trial := 0; trial < 20; trial++ {
		var s connState
		s.init(true)
		var finalized atomic.Int32
		var wg sync.WaitGroup
		for w := 0; w < workers; w++ {
			wg.Add(1)
			go func(task bool) {
				defer wg.Done()
				for i := 0; i < rounds; i++ {
					kind, ok := holdCall, false
					if task {
						kind, ok = holdTask, s.acquireTask()
					} else {
						ok = s.acquire()
					}
					if !ok {
						if s.phase() == phaseDone {
							return
						}
						continue // another task runs
					}
					if s.release(kind) {
						finalized.Add(1)
					}
				}
			}(w%2 == 0)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.markClose(closerUser)
			if s.release(holdOwner) {
				finalized.Add(1)
			}
		}()
		wg.Wait()
		require.Equal(t, int32(1), finalized.Load(), "trial %d: finalizes", trial)
		require.Equal(t, uint32(phaseDone), s.phase(), "trial %d", trial)
		require.Zero(t, s.v.Load()&holdsMask, "trial %d: holds left", trial)
	}
}
