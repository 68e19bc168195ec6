//go:build darwin || freebsd || linux

package netpoll

import (
	"sync"
	"sync/atomic"
	"time"
)

// What blocked calls sleep on: the waiting reader (waitInput) and Flush
// (waitWritable) of connection_io.go, woken by the poller or a close, or at
// their deadline by a wakeTimer.

// waiters is what blocked calls sleep on. A connection gets it from the
// first call that has to wait, so the many connections that never block (a
// server's, whose handlers run when input is there) carry none.
//
// No wake-up is lost to the lazy creation: a sleeper publishes waiters
// before it publishes what it waits for (waitRead, or the writability
// request of wantWrite) and checks the phase after; a waker changes the phase or the
// buffer before it looks for waiters. With Go's sequentially consistent
// atomics one of the two sees the other.
type waiters struct {
	readCh     chan struct{} // a blocked reader's wake-up; stale signals only cause a recheck
	writeCh    chan struct{} // a blocked Flush's wake-up
	readTimer  wakeTimer     // wakes the blocked reader at its deadline
	writeTimer wakeTimer     // wakes the blocked Flush at its deadline

	// ioMu orders the changes of the poller registration: a Flush's
	// request for writability and the input's pausing
	// (connection_io.go). Both happen only to connections that waited
	// or are 8 MiB behind, so it lives here.
	ioMu    sync.Mutex
	wantOut bool // a Flush waits for writability; under ioMu
}

// waiters returns the connection's waiters, making them on first use.
func (c *connection) waiters() *waiters {
	if w := c.wait.Load(); w != nil {
		return w
	}
	w := &waiters{readCh: make(chan struct{}, 1), writeCh: make(chan struct{}, 1)}
	if c.wait.CompareAndSwap(nil, w) {
		return w
	}
	return c.wait.Load()
}

// wakeRead wakes a blocked reader, if there may be one.
func (c *connection) wakeRead() {
	if w := c.wait.Load(); w != nil {
		wake(w.readCh)
	}
}

// wakeWrite wakes a blocked Flush, if there may be one.
func (c *connection) wakeWrite() {
	if w := c.wait.Load(); w != nil {
		wake(w.writeCh)
	}
}

// stopTimers stops the deadline timers of a finished connection, so none
// keeps its waiters alive until it fires.
func (c *connection) stopTimers() {
	if w := c.wait.Load(); w != nil {
		w.readTimer.stop()
		w.writeTimer.stop()
	}
}

// wakeTimer wakes a sleeper at its deadline by signalling the sleeper's
// channel. It is armed lazily and left armed when the sleeper wakes for
// another reason: most waits end long before their deadline, and the next
// wait, whose deadline is later, then needs no arming, no clock reading
// and no select. Firing before a sleeper's deadline is a spurious wake-up;
// the sleeper rechecks what it waits for and sleeps again, re-arming.
type wakeTimer struct {
	t  atomic.Pointer[time.Timer] // made by the first sleep with a deadline
	at atomic.Int64               // the unix-nano time t fires; 0: not armed, or fired
}

// sleep waits for a signal on ch, or until the unix-nano deadline dl (0:
// none). It reports false only when dl has passed; true means signalled,
// or possibly woken early, so the caller rechecks. One goroutine at a time
// sleeps on a wakeTimer, always with the same ch.
func (wt *wakeTimer) sleep(ch chan struct{}, dl int64) bool {
	if dl == 0 {
		<-ch
		return true
	}
	if at := wt.at.Load(); at == 0 || at > dl {
		d := time.Duration(dl - time.Now().UnixNano())
		if d <= 0 {
			return false
		}
		// at is set before arming: a timer that fires at once must leave
		// it 0, or the sleeper would take the firing for a signal and then
		// sleep on, past its deadline, on a timer that no longer runs.
		wt.at.Store(dl)
		if t := wt.t.Load(); t != nil {
			t.Reset(d)
		} else {
			wt.t.Store(time.AfterFunc(d, func() {
				wt.at.Store(0) // before the signal: a sleeper woken by it sees 0
				wake(ch)
			}))
		}
	}
	<-ch
	return wt.at.Load() != 0 || time.Now().UnixNano() < dl
}

// stop disarms the timer.
func (wt *wakeTimer) stop() {
	if t := wt.t.Load(); t != nil {
		t.Stop()
		wt.at.Store(0)
	}
}

// deadline returns when a wait starting now must end: the deadline if set,
// else now plus the timeout if set, else 0 (never).
func deadline(dl, timeout *atomic.Int64) int64 {
	if d := dl.Load(); d != 0 {
		return d
	}
	if t := timeout.Load(); t > 0 {
		return time.Now().UnixNano() + t
	}
	return 0
}

// wake signals ch without blocking; a signal already pending is enough.
func wake(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// waitWritable asks the poller for one writability report and waits for it.
// While the input is paused it waits at most pauseGrace before it stops the
// pausing (see connection_io.go), then waits on.
func (c *connection) waitWritable(dl int64) error {
	w := c.waiters()
	if err := c.wantWrite(true); err != nil || !c.isOpen() {
		return c.closedWrite("when flush")
	}
	for {
		until, grace := dl, false
		if c.inputPaused() {
			if g := time.Now().Add(pauseGrace).UnixNano(); dl == 0 || g < dl {
				until, grace = g, true
			}
		}
		if w.writeTimer.sleep(w.writeCh, until) {
			return nil
		}
		if !grace {
			_ = c.wantWrite(false)
			return Exception(ErrWriteTimeout, c.remoteString())
		}
		c.stopPausing()
	}
}

// wantWrite asks for writability reports (a Flush waits) or stops them.
func (c *connection) wantWrite(on bool) error {
	w := c.waiters()
	w.ioMu.Lock()
	w.wantOut = on
	err := c.applyInterest(w)
	w.ioMu.Unlock()
	return err
}
