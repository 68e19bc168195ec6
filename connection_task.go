//go:build darwin || freebsd || linux

package netpoll

import (
	"context"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cloudwego/netpoll/internal/runner"
)

// The hand-off from "input arrived" to "the handler runs", in order:
//
//  1. arrived (the poller, after a read) counts the arrival, wakes a
//     blocked reader and calls startTask.
//  2. startTask takes the task bit (connState.acquireTask): at most one
//     task per connection, so handlers never run concurrently.
//  3. scheduleTask hands the task to the poller's taskQueue, or to a custom
//     Runner directly.
//  4. A queue worker (work) runs task: OnConnect once, then serve, which
//     calls OnRequest while there is input and news.
//  5. task releases its hold (connection.release, connection_state.go) and
//     goes round again if input arrived meanwhile.

// arrived tells the blocked reader and the handlers that input arrived.
func (c *connection) arrived() {
	c.arrivals.Add(1)
	if w := c.waitRead.Load(); w > 0 && int64(c.in.Len()) >= w {
		c.wakeRead()
	}
	c.startTask()
}

// startTask starts the handlers' task unless one runs or nothing would run.
func (c *connection) startTask() {
	if c.onRequest.Load() == nil {
		return
	}
	if c.state.acquireTask() {
		c.scheduleTask()
	}
}

// scheduleTask hands c's task, whose bit the caller holds, to the Runner or,
// with the default Runner, to the queue of c's poller.
func (c *connection) scheduleTask() {
	if runnerIsDefault() {
		c.poller().tasks.push(c)
		return
	}
	runTask(c.context(), c.runTaskFn)
}

// runTask hands f to the configured Runner.
func runTask(ctx context.Context, f func()) { runner.Run(ctx, f) }

// runnerIsDefault reports whether the Runner is the default one, bytedance
// gopool, which the task queues may stand in for.
func runnerIsDefault() bool { return runner.IsDefault() }

// taskQueue runs the handler tasks of one poller's connections on as few
// goroutines as keep them moving, when the Runner is the default one.
//
// Handing every task to the Runner costs a goroutine start per request (the
// default pool starts a worker for each task it cannot hand to an idle
// one), and most of those goroutines find the queue already emptied by the
// first. Here a worker takes the queued tasks one after the other, and the
// rule that keeps a slow or blocked handler from holding up the rest is:
//
//	whenever the queue is not empty, one worker is pending: started and not
//	yet running.
//
// A worker that takes a task and leaves more behind starts a pending worker
// unless one exists; so does a push. While the running worker's handlers do
// not block, the pending one runs only when the queue is empty and stops at
// once: three goroutine schedules per batch (poller, worker, pending) instead
// of one per task. When a handler blocks, the pending worker runs and takes
// the next task, starting another. With several Ps, pending workers run on
// idle ones, and the queue is worked on in parallel.
//
// The first worker to start is the queue's resident one: instead of ending
// when the queue is empty, it parks until the next start wakes it, for up
// to residentLinger. So the tasks of a lightly loaded poller run on a
// goroutine that exists already, with the stack its handlers grew, instead
// of on a new goroutine whose 2 KiB stack is copied to grow on every
// request. The others start through the Runner (gopool) and end when the
// queue is empty, as before. A resident worker that a handler holds is just
// busy: starts go to the Runner meanwhile. After residentLinger without a
// task it ends, so an idle process keeps no goroutine beyond the pollers,
// as the reference keeps none, and a leak check that waits briefly after
// the last request finds none.
//
// A worker runs its tasks back to back and returns to the scheduler only
// when the queue is empty. The scheduler polls the network, where the Linux
// poller parks, only when a P has nothing else to run, so while workers
// keep every P busy the poller would not read what arrives meanwhile: it
// would read in large batches, one per drained queue, with CPUs idle
// between the turns of workers and poller (and of the server and its
// clients, when they share the CPUs). So after each task a worker asks the
// poller's turn (turn, poll_default_linux.go): when the task was slow and
// the poller has not polled for turnAfter, the worker makes the poller
// runnable and yields its P to it, and the poller reads, queues and parks
// again. Quick tasks ask none: a queue of them drains soon. Nor does a
// worker while fewer workers (busyWorkers) than Ps run tasks: a P is left
// to run out of work, and the scheduler polls the network on it. With one
// P (procs) there is never a turn, and a worker does not time its tasks.
//
// The rule holds at every release of mu, since a worker takes its first
// task under the lock that cleared pending. So a handler that never returns
// or calls runtime.Goexit stalls nothing (after a Goexit on the resident
// worker, the next start makes a new one). A handler's panic is recovered by
// its worker, which goes on with the queue, and is re-raised into the
// Runner on a goroutine of its own, with the connection's context, as if
// the task had been handed to the Runner alone.
type taskQueue struct {
	mu      sync.Mutex
	ring    []*connection // len is a power of two, or 0
	head    int           // index of the oldest task
	n       int           // tasks queued
	pending bool          // a worker was started and has not taken a task yet
	workFn  func()        // q.work, made once

	resident    residentState
	wake        chan struct{}                   // the resident worker's own: a start wakes it, a close ends it
	parkedAt    int64                           // monoNow when the resident worker last parked
	linger      *time.Timer                     // runs lingered, which ends a worker parked for residentLinger
	lingerArmed bool                            // linger will fire
	lingerFor   time.Duration                   // residentLinger unless set (by tests)
	turn        func(taskStart, now int64) bool // the poller's turn (poll_unix.go); nil in tests that run a queue alone
}

// turnAfter is how long workers may run tasks back to back, the poller not
// polling meanwhile, before one gives the poller a turn (see taskQueue).
const turnAfter = 100 * time.Microsecond

// residentLinger is how long the resident worker waits for a task before it
// ends: well above the gaps between requests under any load where starting
// goroutines costs, well below the half second or so a leak check waits.
const residentLinger = 100 * time.Millisecond

// residentState is where the resident worker is.
type residentState uint8

const (
	residentNone   residentState = iota // not started, or ended: the next start makes one
	residentParked                      // waiting on wake
	residentBusy                        // woken, or working the queue
	residentOff                         // never again: the poller stopped (or a test wants Runner starts only)
)

// startHow is how pend started the pending worker.
type startHow uint8

// workerStart is what pend chose: how, and for a resident worker the
// channel it is woken on, read under q.mu for start to use after.
type workerStart struct {
	how  startHow
	wake chan struct{}
}

const (
	startNone     startHow = iota // no start needed
	startRunner                   // a worker through the Runner
	startResident                 // a new resident worker
	startWake                     // wake the parked resident worker
)

const (
	// minRing is the ring a first push makes: a power of two, as every
	// ring is, so that an index wraps with a mask; 128 bytes, so that a
	// quiet poller's queue costs nothing and a busy one's doubles only a
	// few times.
	minRing = 16
	// maxIdleRing is the largest ring an empty queue keeps: one poller's
	// burst of that many waiting tasks is its 8 KiB on 64 bits; a larger
	// one is given back once the burst is over.
	maxIdleRing = 1024
)

// push queues c, whose task bit the caller holds.
func (q *taskQueue) push(c *connection) {
	q.mu.Lock()
	if q.n == len(q.ring) {
		q.grow()
	}
	q.ring[(q.head+q.n)&(len(q.ring)-1)] = c
	q.n++
	var ws workerStart
	if !q.pending {
		ws = q.pend()
	}
	q.mu.Unlock()
	q.start(ws)
}

// pend records that a pending worker starts and chooses which; q.mu is
// held. The caller starts it (start) once it has released q.mu.
func (q *taskQueue) pend() workerStart {
	q.pending = true
	if q.workFn == nil {
		q.workFn = q.work
	}
	switch q.resident {
	case residentBusy, residentOff:
		return workerStart{how: startRunner}
	case residentParked:
		q.resident = residentBusy
		return workerStart{how: startWake, wake: q.wake}
	}
	q.resident = residentBusy
	q.wake = make(chan struct{}, 1)
	return workerStart{how: startResident, wake: q.wake}
}

// start starts the worker pend chose.
func (q *taskQueue) start(ws workerStart) {
	switch ws.how {
	case startRunner:
		runTask(background, q.workFn)
	case startResident:
		go q.residentWork(ws.wake)
	case startWake:
		ws.wake <- struct{}{}
	}
}

func (q *taskQueue) grow() {
	ring := make([]*connection, max(2*len(q.ring), minRing))
	for i := 0; i < q.n; i++ {
		ring[i] = q.ring[(q.head+i)&(len(q.ring)-1)]
	}
	q.ring, q.head = ring, 0
}

// take removes the oldest task; when more are left and no worker is
// pending, it pends one, which the caller starts. q.mu is held.
func (q *taskQueue) take() (c *connection, ws workerStart) {
	if q.n == 0 {
		if len(q.ring) > maxIdleRing {
			q.ring, q.head = nil, 0 // a burst is over: give its ring back
		}
		return nil, workerStart{}
	}
	c = q.ring[q.head]
	q.ring[q.head] = nil
	q.head = (q.head + 1) & (len(q.ring) - 1)
	q.n--
	if q.n > 0 && !q.pending {
		ws = q.pend()
	}
	return c, ws
}

// work is a worker started through the Runner: it runs queued tasks until
// there are none.
func (q *taskQueue) work() {
	q.mu.Lock()
	q.drain()
	q.mu.Unlock()
}

// procs is runtime.GOMAXPROCS(0) as a poller last read it (readProcs):
// workers look at it at every drain and in turn, and GOMAXPROCS takes the
// scheduler's global lock, which they would all fight over on a machine of
// many cores. A change of GOMAXPROCS reaches it at the first wake-up of a
// poller that comes procsEvery or more after that poller's last reading.
var procs atomic.Int32

// procsEvery bounds how often a poller rereads GOMAXPROCS into procs.
const procsEvery = time.Millisecond

func init() { readProcs() }

// readProcs reads GOMAXPROCS into procs.
func readProcs() { procs.Store(int32(runtime.GOMAXPROCS(0))) }

// busyWorkers counts the workers, of every poller's queue, that are in a
// timed drain: running tasks back to back, or about to, where a turn may
// come (more than one P, Linux). A poller's turn helps only when they keep
// every P busy (see taskQueue); where no turn comes, nothing reads it, so
// those drains leave it alone. A worker whose handler blocks
// (a read waiting for the next request) counts too, though it holds no P:
// with such handlers turns come as they did before the count, after a slow
// task whenever the poller has not polled for turnAfter.
var busyWorkers atomic.Int32

// drain runs queued tasks until there are none, as the pending worker that
// starts running; q.mu is held when it is called and when it returns.
func (q *taskQueue) drain() {
	q.pending = false
	// Turns are timed, so the worker reads the clock at every task's end
	// (which is the next one's start), and counts itself busy, but only
	// when a turn may come: with one P there is none (see turn).
	timed := q.turn != nil && procs.Load() > 1
	var start int64 // when the task about to be taken began, within the take and start
	if timed {
		busyWorkers.Add(1)
		defer busyWorkers.Add(-1) // a handler's runtime.Goexit included
		start = monoNow()
	}
	for {
		c, ws := q.take()
		if c == nil {
			return
		}
		q.mu.Unlock()
		q.start(ws)
		runQueued(c)
		// Yield, if at all, holding no task: a yielding worker waits in the
		// global run queue, maybe for long, while the others go on.
		if timed {
			now := monoNow()
			if q.turn(start, now) {
				runtime.Gosched()
				now = monoNow()
			}
			start = now
		}
		q.mu.Lock()
	}
}

// residentWork is the resident worker, woken through wake, its own
// channel: it drains the queue and parks until a start wakes it; it ends
// when wake is closed (it lingered residentLinger, or the poller stopped),
// or when a handler calls runtime.Goexit on it.
func (q *taskQueue) residentWork(wake chan struct{}) {
	ended := false
	defer func() {
		if !ended { // a handler called runtime.Goexit
			q.mu.Lock()
			if q.resident == residentBusy {
				q.resident = residentNone
			}
			q.mu.Unlock()
		}
	}()
	for {
		q.mu.Lock()
		q.drain()
		if q.resident == residentOff {
			q.mu.Unlock()
			ended = true
			return
		}
		q.resident = residentParked
		q.parkedAt = monoNow()
		q.armLinger()
		q.mu.Unlock()
		if !q.park(wake) {
			ended = true
			return
		}
	}
}

// park waits on the resident worker's channel: true for a start, false
// once it is closed. (A method, so that leak checks can name the parked
// worker: main_test.go.)
func (q *taskQueue) park(wake chan struct{}) bool {
	_, ok := <-wake
	return ok
}

// lingerTime is how long the resident worker lingers; q.mu is held.
func (q *taskQueue) lingerTime() time.Duration {
	if q.lingerFor > 0 {
		return q.lingerFor
	}
	return residentLinger
}

// armLinger makes sure lingered will run; q.mu is held. The timer is not
// moved at every park: when it fires early (it was armed at an earlier
// park), lingered moves it to the rest of this one.
func (q *taskQueue) armLinger() {
	switch {
	case q.linger == nil:
		q.linger = time.AfterFunc(q.lingerTime(), q.lingered)
	case !q.lingerArmed:
		q.linger.Reset(q.lingerTime())
	}
	q.lingerArmed = true
}

// lingered ends the resident worker if it has been parked for
// residentLinger (it closes the worker's channel and forgets it), or waits
// for the rest of that time. A worker that is busy re-arms it when it parks.
func (q *taskQueue) lingered() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.lingerArmed = false
	if q.resident != residentParked {
		return
	}
	if rest := q.lingerTime() - time.Duration(monoNow()-q.parkedAt); rest > 0 {
		q.linger.Reset(rest)
		q.lingerArmed = true
		return
	}
	q.resident = residentNone
	close(q.wake)
	q.wake = nil
}

// stop ends the resident worker once it has nothing to do; the poller calls
// it when it closes. Later starts go to the Runner.
func (q *taskQueue) stop() {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.linger != nil {
		q.linger.Stop()
		q.lingerArmed = false
	}
	if q.resident == residentParked {
		close(q.wake)
		q.wake = nil
	}
	q.resident = residentOff
}

// runQueued runs c's task; a panic goes on into the Runner with c's context.
func runQueued(c *connection) {
	defer func() {
		if r := recover(); r != nil {
			runTask(c.context(), func() { panic(r) })
		}
	}()
	c.task()
}

// task runs OnConnect (once, first) and then OnRequest while there is news.
// It holds the running bit, so handlers never run concurrently. A panic in a
// handler (or runtime.Goexit) closes the connection and gives up the task's
// hold; the panic goes on into the Runner. A panic of a close callback run
// by the task's own release goes on as it is: the hold is given up already.
func (c *connection) task() {
	held := true
	defer func() {
		if !held {
			return
		}
		r := recover()
		if r != nil {
			c.stats().panics.Add(1)
		}
		c.closeAs(closerUser)
		c.release(holdTask)
		if r != nil {
			panic(r)
		}
	}()
	if c.needConnect {
		c.needConnect = false
		c.connect()
	}
	for {
		seen := c.serve()
		c.caughtUp()
		c.resumeIfPaused() // the handler waits for more input, or has none
		held = false
		c.release(holdTask)
		// Once the release finalized the connection, acquireTask fails.
		if c.arrivals.Load() == seen || !c.state.acquireTask() {
			return
		}
		held = true
	}
}

// connect runs OnConnect; its ctx replaces the connection's. If either side
// closed meanwhile, OnDisconnect runs here, after it.
func (c *connection) connect() {
	if h := c.onConnect.Load(); h != nil {
		if ctx := (*h)(c.context(), c); ctx != nil {
			c.setContext(ctx)
		}
	}
	if c.state.setConnected() {
		if h := c.onDisconnect.Load(); h != nil {
			(*h)(c.context(), c)
		}
	}
}

// serve calls OnRequest while input is buffered and the user has not closed
// the connection. It stops when a call consumed nothing and no news arrived
// meanwhile, instead of spinning; it returns the arrival count it last saw.
func (c *connection) serve() (seen uint64) {
	for {
		seen = c.arrivals.Load()
		h := c.onRequest.Load()
		before := c.in.Len()
		if h == nil || before == 0 || c.state.closedLocally() {
			return seen
		}
		_ = (*h)(c.context(), c)
		if c.in.Len() >= before && c.arrivals.Load() == seen {
			return seen
		}
	}
}

// context is the ctx handed to the handlers: Background, or what OnPrepare
// or OnConnect returned.
func (c *connection) context() context.Context { return *c.ctx.Load() }

// background is the default handler context, shared by every connection.
var background = context.Background()

func (c *connection) setContext(ctx context.Context) {
	if ctx == background {
		c.ctx.Store(&background)
		return
	}
	p := new(context.Context) // not &ctx, which would cost background an allocation too
	*p = ctx
	c.ctx.Store(p)
}
