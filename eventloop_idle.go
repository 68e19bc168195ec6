//go:build darwin || freebsd || linux

package netpoll

import (
	"sync/atomic"
	"time"
)

// The idle close of WithIdleCloseTimeout, by a coarse clock: each server
// whose loop has the option keeps an epoch number that one timer advances
// every quarter of the timeout. A byte read or sent on a connection copies
// the epoch into the connection (only when it changed: a load and a compare
// per read or write, no clock read). At each tick the timer's goroutine
// sweeps the server's connections and closes those whose epoch is
// idleEpochs behind, as if the peer had closed them.
//
// The last byte came during some epoch e, that is within a quarter of the
// timeout before the tick that began e+1; the tick that begins e+idleEpochs
// closes it, so a connection is closed after between d and 1.25·d of
// silence (plus the timer's lateness). It costs no goroutine and no timer
// per connection, and 4 bytes of the connection's allocation, which the
// size class had to spare; a tick costs a pass over the server's
// connections every d/4.

// idleEpochs is how many ticks behind the server's epoch a connection's
// must be for the connection to be closed.
const idleEpochs = 5

// minIdleTick bounds the tick from below, so that a tiny timeout cannot
// make the sweep spin: timeouts under 4 ms act as 4 ms.
const minIdleTick = time.Millisecond

// idleSweep is a server's idle clock; made by newServer when the loop has
// the option, never changed after (the timer is guarded by server.mu).
type idleSweep struct {
	epoch atomic.Uint32
	tick  time.Duration
	timer *time.Timer
}

// newIdleSweep returns the clock for timeout d, or nil when d <= 0.
func newIdleSweep(d time.Duration) *idleSweep {
	if d <= 0 {
		return nil
	}
	return &idleSweep{tick: max(d/4, minIdleTick)}
}

// touch records that a byte went in or out of c just now.
func (c *connection) touch() {
	if s := c.server; s != nil && s.idle != nil {
		if e := s.idle.epoch.Load(); c.idleEpoch.Load() != e {
			c.idleEpoch.Store(e)
		}
	}
}

// startIdle starts the clock of a server that has one; s.mu is held.
func (s *server) startIdle() {
	if s.idle != nil && s.idle.timer == nil {
		s.idle.timer = time.AfterFunc(s.idle.tick, s.idleTick)
	}
}

// stopIdle stops the clock; s.mu is held.
func (s *server) stopIdle() {
	if s.idle != nil && s.idle.timer != nil {
		s.idle.timer.Stop()
	}
}

// idleTick advances the epoch and closes the connections it leaves idle.
// It runs on the timer's goroutine; nothing else sweeps.
func (s *server) idleTick() {
	s.mu.Lock()
	if s.stopped {
		s.mu.Unlock()
		return
	}
	e := s.idle.epoch.Add(1)
	var idle []*connection
	for c := range s.conns {
		if c.idleFor(e) {
			idle = append(idle, c)
		}
	}
	s.idle.timer.Reset(s.idle.tick)
	s.mu.Unlock()
	for _, c := range idle {
		if c.idleFor(e) && c.peerClosed() {
			c.stats().idleClosed.Add(1)
		}
	}
}

// idleFor reports whether c is open and has been silent since idleEpochs
// before epoch e. What c holds does not matter: silence is the whole test
// (see WithIdleCloseTimeout).
func (c *connection) idleFor(e uint32) bool {
	return e-c.idleEpoch.Load() >= idleEpochs && c.isOpen()
}
