//go:build darwin || freebsd || linux

package netpoll

import "sync"

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
// The rule holds at every release of mu, since a worker takes its first
// task under the lock that cleared pending. So a handler that never returns
// or calls runtime.Goexit stalls nothing. A handler's panic is recovered by
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
}

// push queues c, whose task bit the caller holds.
func (q *taskQueue) push(c *connection) {
	q.mu.Lock()
	if q.n == len(q.ring) {
		q.grow()
	}
	q.ring[(q.head+q.n)&(len(q.ring)-1)] = c
	q.n++
	start := !q.pending
	q.pending = true
	if q.workFn == nil {
		q.workFn = q.work
	}
	q.mu.Unlock()
	if start {
		runTask(background, q.workFn)
	}
}

// maxIdleRing is the largest ring an empty queue keeps.
const maxIdleRing = 1024

func (q *taskQueue) grow() {
	ring := make([]*connection, max(2*len(q.ring), 16))
	for i := 0; i < q.n; i++ {
		ring[i] = q.ring[(q.head+i)&(len(q.ring)-1)]
	}
	q.ring, q.head = ring, 0
}

// take removes the oldest task; it reports whether a pending worker must be
// started because more are left. q.mu is held.
func (q *taskQueue) take() (c *connection, start bool) {
	if q.n == 0 {
		if len(q.ring) > maxIdleRing {
			q.ring, q.head = nil, 0 // a burst is over: give its ring back
		}
		return nil, false
	}
	c = q.ring[q.head]
	q.ring[q.head] = nil
	q.head = (q.head + 1) & (len(q.ring) - 1)
	q.n--
	if q.n > 0 && !q.pending {
		q.pending = true
		start = true
	}
	return c, start
}

// work is a worker: it runs queued tasks until there are none.
func (q *taskQueue) work() {
	q.mu.Lock()
	q.pending = false
	for {
		c, start := q.take()
		q.mu.Unlock()
		if c == nil {
			return
		}
		if start {
			runTask(background, q.workFn)
		}
		runQueued(c)
		q.mu.Lock()
	}
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

// scheduleTask hands c's task, whose bit the caller holds, to the Runner or,
// with the default Runner, to the queue of c's poller.
func (c *connection) scheduleTask() {
	if p, ok := c.op.poll.(*defaultPoll); ok && runnerIsDefault() {
		p.tasks.push(c)
		return
	}
	runTask(c.context(), c.runTaskFn)
}
