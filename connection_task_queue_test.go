//go:build darwin || freebsd || linux

package netpoll

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/bytedance/gopkg/util/gopool"
	"github.com/stretchr/testify/require"
)

// The task queue itself, driven by hand (docs/contract.md C8.3, C16.17):
// connections whose task bit is taken are pushed as the poller pushes them,
// and the worker starts it asks for are run by the test, so the order of
// tasks and the rule "one worker more is always started" are checked
// exactly. Every package-level name here starts with "tasks".

// tasksHeldConns makes n connections on socket pairs with handler(i, c) as
// connection i's OnRequest (called after it consumed the input), each with
// one byte of input buffered and its task bit taken, as the poller leaves a
// connection it hands to a task queue. The poller never schedules them
// itself: their task bit is taken.
func tasksHeldConns(t *testing.T, n int, handler func(i int, c Connection)) []*connection {
	t.Helper()
	conns := make([]*connection, n)
	for i := range conns {
		i := i
		c, w := fdPairConn(t)
		require.NoError(t, c.SetOnRequest(func(_ context.Context, c Connection) error {
			r := c.Reader()
			if err := r.Skip(r.Len()); err != nil {
				return err
			}
			if err := r.Release(); err != nil {
				return err
			}
			handler(i, c)
			return nil
		}))
		impl := connOf(c)
		require.True(t, impl.state.acquireTask(), "connection %d: its task bit was taken already", i)
		_, err := syscall.Write(w, []byte{byte(i)})
		require.NoError(t, err)
		eventually(t, func() bool { return c.Reader().Len() == 1 }, "connection %d's byte in its input buffer", i)
		conns[i] = impl
	}
	return conns
}

// tasksSameFunc reports whether a and b are the same func value: a func value
// is a pointer to its closure.
func tasksSameFunc(a, b func()) bool {
	return *(*unsafe.Pointer)(unsafe.Pointer(&a)) == *(*unsafe.Pointer)(unsafe.Pointer(&b))
}

// tasksCaptureStarts installs a Runner that keeps q's worker starts in the
// returned channel instead of running them, so that the test decides when
// each worker runs (q gets no resident worker, whose start is no Runner
// call); anything else goes to gopool, as with the default Runner.
// The default Runner comes back at cleanup (register it after the
// connections, so that it comes back before they close).
func tasksCaptureStarts(t *testing.T, q *taskQueue) <-chan func() {
	q.resident = residentOff // every start is a Runner call the test can hold
	starts := make(chan func(), 256)
	SetRunner(func(ctx context.Context, f func()) {
		if tasksSameFunc(f, q.workFn) {
			starts <- f
			return
		}
		gopool.CtxGo(ctx, f)
	})
	t.Cleanup(func() { SetRunner(nil) })
	return starts
}

// tasksStart takes the next worker start.
func tasksStart(t *testing.T, starts <-chan func(), what string) func() {
	t.Helper()
	return recv(t, starts, what)
}

// tasksNoStart checks that no worker start is waiting.
func tasksNoStart(t *testing.T, starts <-chan func(), what string) {
	t.Helper()
	require.Zero(t, len(starts), what)
}

// tasksWorkers runs captured workers on goroutines of their own.
type tasksWorkers struct{ wg sync.WaitGroup }

func (w *tasksWorkers) run(f func()) {
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		f()
	}()
}

// wait waits for every worker run so far to return.
func (w *tasksWorkers) wait(t *testing.T) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		w.wg.Wait()
		close(done)
	}()
	recv(t, done, "the workers to return")
}

// runRest runs the starts left over, until none is left; they find the
// queue empty and stop.
func (w *tasksWorkers) runRest(t *testing.T, starts <-chan func()) {
	t.Helper()
	for {
		w.wait(t)
		select {
		case f := <-starts:
			w.run(f)
		default:
			return
		}
	}
}

// tasksRequireEmpty checks that q holds no task and keeps no connection.
func tasksRequireEmpty(t *testing.T, q *taskQueue) {
	t.Helper()
	q.mu.Lock()
	defer q.mu.Unlock()
	require.Zero(t, q.n, "tasks left in the queue")
	for i, c := range q.ring {
		require.Nil(t, c, "ring slot %d still holds a connection", i)
	}
}

// The queue is first in, first out, across its ring's growth: while the
// first worker is blocked in connection 0's handler, 39 more tasks are
// queued (the 16-slot ring grows twice, the first time wrapped around),
// which starts exactly one pending worker; that worker alone then runs
// connections 1..39 in the order they were pushed. Afterwards the queue is
// empty, keeps no connection, and every task bit was released.
func TestTaskQueueRingFIFO(t *testing.T) {
	checkLeaks(t)
	const n = 40
	order := make(chan int, n)
	firstIn := make(chan struct{})
	unblock := tasksNewRelease()
	conns := tasksHeldConns(t, n, func(i int, c Connection) {
		order <- i
		if i == 0 {
			close(firstIn)
			unblock.wait(longWait)
		}
	})
	var q taskQueue
	starts := tasksCaptureStarts(t, &q)
	var workers tasksWorkers
	defer workers.wait(t)
	defer unblock.open() // before the wait, should the test fail first

	q.push(conns[0])
	first := tasksStart(t, starts, "the worker start of the first push")
	tasksNoStart(t, starts, "a second worker start for one task")
	workers.run(first)
	recv(t, firstIn, "connection 0's handler to start")
	require.Equal(t, 0, recv(t, order, "connection 0's handler"))

	for i := 1; i < n; i++ {
		q.push(conns[i])
	}
	pending := tasksStart(t, starts, "the pending worker start of a push onto a busy queue")
	tasksNoStart(t, starts, "a second pending worker")
	q.mu.Lock()
	queued, slots := q.n, len(q.ring)
	q.mu.Unlock()
	require.Equal(t, n-1, queued, "tasks queued")
	require.Greater(t, slots, 16, "ring slots after %d pushes", n-1)

	workers.run(pending)
	for want := 1; want < n; want++ {
		require.Equal(t, want, recv(t, order, fmt.Sprintf("connection %d's handler", want)), "handlers out of push order")
	}
	unblock.open()
	workers.runRest(t, starts)
	tasksRequireEmpty(t, &q)
	for i, c := range conns {
		require.False(t, c.state.running(), "connection %d's task bit is still taken", i)
		require.True(t, c.IsActive(), "connection %d was closed", i)
	}
}

// runtime.Goexit in a handler ends its worker's goroutine, yet the tasks
// queued behind it run: the worker that takes a task and leaves others
// behind has started a pending worker, which takes them in order. The
// connection whose handler exited is closed and its task bit released.
func TestTaskQueueGoexitQueuedTasksRun(t *testing.T) {
	checkLeaks(t)
	ran := make(chan int, 3)
	conns := tasksHeldConns(t, 3, func(i int, c Connection) {
		if i == 0 {
			runtime.Goexit()
		}
		ran <- i
	})
	var q taskQueue
	starts := tasksCaptureStarts(t, &q)
	var workers tasksWorkers
	defer workers.wait(t)

	for _, c := range conns {
		q.push(c)
	}
	first := tasksStart(t, starts, "the worker start of the first push")
	tasksNoStart(t, starts, "a second worker start while one is pending")
	workers.run(first)
	pending := tasksStart(t, starts, "the pending worker start by the worker that left tasks queued")
	workers.wait(t) // the first worker's goroutine ended in the Goexit
	require.Zero(t, len(ran), "a handler ran on the worker that Goexited")
	q.mu.Lock()
	queued := q.n
	q.mu.Unlock()
	require.Equal(t, 2, queued, "tasks queued behind the Goexit")

	workers.run(pending)
	require.Equal(t, 1, recv(t, ran, "connection 1's handler"))
	require.Equal(t, 2, recv(t, ran, "connection 2's handler"))
	workers.runRest(t, starts)
	tasksRequireEmpty(t, &q)
	require.False(t, conns[0].IsActive(), "the connection whose handler Goexited is still open")
	for i, c := range conns {
		require.False(t, c.state.running(), "connection %d's task bit is still taken", i)
	}
}

// tasksGoroutineID returns the id of the calling goroutine, from the first
// line of its stack trace ("goroutine N [running]:").
func tasksGoroutineID() string {
	var buf [64]byte
	line := string(buf[:runtime.Stack(buf[:], false)])
	line = strings.TrimPrefix(line, "goroutine ")
	return line[:strings.IndexByte(line, ' ')]
}

// tasksGoroutineGone reports whether no goroutine with the given id runs.
func tasksGoroutineGone(id string) bool {
	buf := make([]byte, 1<<20)
	return !strings.Contains(string(buf[:runtime.Stack(buf, true)]), "goroutine "+id+" [")
}

// tasksResident reads where q's resident worker is.
func tasksResident(q *taskQueue) residentState {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.resident
}

// With the default Runner, the tasks of a quiet queue (each pushed after the
// last one ran) all run on one goroutine, the resident worker, which parks
// in between instead of ending; once the queue stops, it ends.
func TestTaskQueueResidentWorkerRunsQuietTasks(t *testing.T) {
	checkLeaks(t)
	const n = 4
	ran := make(chan string, n)
	conns := tasksHeldConns(t, n, func(i int, c Connection) { ran <- tasksGoroutineID() })
	q := taskQueue{lingerFor: longWait} // each push comes within it, however slow the machine
	defer q.stop()
	var first string
	for i, c := range conns {
		q.push(c)
		id := recv(t, ran, fmt.Sprintf("connection %d's handler", i))
		if i == 0 {
			first = id
		}
		require.Equal(t, first, id, "task %d ran on another goroutine than the first", i)
		eventually(t, func() bool { return tasksResident(&q) == residentParked }, "the resident worker to park after task %d", i)
	}
	q.stop()
	eventually(t, func() bool { return tasksGoroutineGone(first) }, "the resident worker's goroutine to end after stop")
	q.push(tasksHeldConns(t, 1, func(int, Connection) { ran <- tasksGoroutineID() })[0])
	require.NotEqual(t, first, recv(t, ran, "the handler of a task pushed after stop"), "a task pushed after stop ran on the stopped resident worker")
	require.Equal(t, residentOff, tasksResident(&q), "stop let a new resident worker start")
}

// A handler that blocks on the resident worker holds up nobody: the task
// pushed behind it runs on a worker the Runner starts.
func TestTaskQueueResidentWorkerBlocked(t *testing.T) {
	checkLeaks(t)
	unblock := tasksNewRelease()
	defer unblock.open()
	ran := make(chan string, 2)
	conns := tasksHeldConns(t, 2, func(i int, c Connection) {
		ran <- tasksGoroutineID()
		if i == 0 {
			unblock.wait(longWait)
		}
	})
	var q taskQueue
	defer q.stop()
	q.push(conns[0])
	blocked := recv(t, ran, "connection 0's handler")
	require.Equal(t, residentBusy, tasksResident(&q))
	q.push(conns[1])
	require.NotEqual(t, blocked, recv(t, ran, "connection 1's handler, while connection 0's blocks"))
	unblock.open()
	eventually(t, func() bool { return tasksResident(&q) == residentParked }, "the resident worker to park once its handler returned")
	tasksRequireEmpty(t, &q)
}

// runtime.Goexit in a handler on the resident worker ends it; the next
// start makes a new one, and the tasks go on.
func TestTaskQueueResidentWorkerGoexit(t *testing.T) {
	checkLeaks(t)
	ran := make(chan string, 2)
	conns := tasksHeldConns(t, 2, func(i int, c Connection) {
		if i == 0 {
			ran <- tasksGoroutineID()
			runtime.Goexit()
		}
		ran <- tasksGoroutineID()
	})
	var q taskQueue
	defer q.stop()
	q.push(conns[0])
	exited := recv(t, ran, "connection 0's handler")
	eventually(t, func() bool { return tasksResident(&q) == residentNone && tasksGoroutineGone(exited) }, "the resident worker to end in the Goexit")
	q.push(conns[1])
	require.NotEqual(t, exited, recv(t, ran, "connection 1's handler"))
	eventually(t, func() bool { return tasksResident(&q) == residentParked }, "a new resident worker to park")
	require.False(t, conns[0].IsActive(), "the connection whose handler Goexited is still open")
}

// A resident worker without a task ends after it has lingered
// (residentLinger, here shortened), and the next start makes a new one.
func TestTaskQueueResidentWorkerLingersThenEnds(t *testing.T) {
	checkLeaks(t)
	ran := make(chan string, 2)
	conns := tasksHeldConns(t, 2, func(i int, c Connection) { ran <- tasksGoroutineID() })
	q := taskQueue{lingerFor: 20 * time.Millisecond}
	defer q.stop()
	q.push(conns[0])
	first := recv(t, ran, "connection 0's handler")
	eventually(t, func() bool { return tasksResident(&q) == residentNone && tasksGoroutineGone(first) }, "the resident worker to end after lingering")
	q.push(conns[1])
	require.NotEqual(t, first, recv(t, ran, "connection 1's handler"), "the ended resident worker ran a task")
	eventually(t, func() bool { return tasksResident(&q) == residentNone }, "the second resident worker to end after lingering")
}
