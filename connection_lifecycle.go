//go:build darwin || freebsd || linux

package netpoll

import (
	"context"

	"github.com/cloudwego/netpoll/internal/runner"
)

// Close closes the connection; it is idempotent and returns nil. The first
// call wakes blocked reads and Flushes with ErrConnClosed and closes the fd.
// The close callbacks run before Close returns unless something else holds
// the connection: a task (OnConnect or OnRequest, this call's own caller
// included), OnDisconnect or OnPrepare. The last of those to return runs
// them.
func (c *connection) Close() error {
	c.closeAs(closerUser)
	return nil
}

// Detach is Close without closing the fd: unread input is dropped and the
// caller owns Fd() from then on. It fails with ErrConnClosed after a close by
// either side, a second Detach included.
func (c *connection) Detach() error {
	if !c.state.markClose(closerDetach) {
		return Exception(ErrConnClosed, "when detach")
	}
	c.afterMark(true)
	c.fd.drain()
	if c.state.release(true) {
		c.finalize()
	}
	return nil
}

// orphaned is told that c's fd was closed by someone else (syscall.Close
// on Fd) and that the number now names another socket (see opOrphan): c
// makes no syscall on the number from now on, never closes it, and closes
// as if by Close, in the background, since close callbacks may block.
func (c *connection) orphaned() {
	c.fd.close(true)
	go c.closeAs(closerUser)
}

func (c *connection) closeAs(closer uint32) {
	if c.state.markClose(closer) {
		c.afterMark(false)
	}
	if c.state.release(true) {
		c.finalize()
	}
}

// finalize runs once, by whoever released the last hold of a closing
// connection: the close callbacks, last added first, then the recycling of
// both buffers.
func (c *connection) finalize() {
	c.closeMu.Lock()
	callbacks := c.closeCallbacks
	c.closeCallbacks = nil
	c.closeMu.Unlock()
	for n := callbacks; n != nil; n = n.next {
		_ = n.fn(c)
	}
	c.stopTimers()
	c.inMu.Lock()
	_ = c.in.Close()
	c.inMu.Unlock()
	c.outMu.Lock()
	_ = c.out.Close()
	c.outMu.Unlock()
	if c.server != nil {
		c.server.forget(c)
	}
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

// runTask hands f to the configured Runner.
func runTask(ctx context.Context, f func()) { runner.Run(ctx, f) }

// runnerIsDefault reports whether the Runner is the default one, bytedance
// gopool, which the task queues may stand in for.
func runnerIsDefault() bool { return runner.IsDefault() }

// task runs OnConnect (once, first) and then OnRequest while there is news.
// It holds the running bit, so handlers never run concurrently. A panic in a
// handler closes the connection and is re-raised into the Runner.
func (c *connection) task() {
	ok := false
	defer func() {
		if !ok {
			r := recover()
			c.closeAs(closerUser)
			if c.state.releaseTask() {
				c.finalize()
			}
			if r != nil {
				panic(r)
			}
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
		if c.state.releaseTask() {
			c.finalize()
			break
		}
		if c.arrivals.Load() == seen || !c.state.acquireTask() {
			break
		}
	}
	ok = true
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
		if h == nil || before == 0 || c.closedLocally() {
			return seen
		}
		_ = (*h)(c.context(), c)
		if c.in.Len() >= before && c.arrivals.Load() == seen {
			return seen
		}
	}
}
