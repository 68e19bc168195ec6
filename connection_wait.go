//go:build darwin || dragonfly || freebsd || linux || netbsd || openbsd

package netpoll

import (
	"sync"
	"time"
)

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
	readTimer  *time.Timer   // owned by the blocked reader
	writeTimer *time.Timer   // owned by the blocked Flush

	// ioMu orders the changes of the poller registration: a Flush's
	// request for writability and the input's pausing
	// (connection_pause.go). Both happen only to connections that waited
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
