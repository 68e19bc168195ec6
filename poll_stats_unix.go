//go:build darwin || freebsd || linux

package netpoll

import "sync/atomic"

// The counters behind ReadStats. Each poller keeps its own, so that no
// counter is shared by the whole process:
//
//   - own: what only the poller's goroutine counts (accepts, bytes read).
//     Nobody else writes the line, so the adds never contend.
//   - stripes: what the goroutines that use the poller's connections count
//     (handlers, Flushes, Close). A connection always uses the stripe its
//     fd number picks, so connections served on different goroutines
//     rarely write the same line.
//
// ReadStats sums them: O(pollers), with no lock.

// statLine is the stride that keeps two groups of counters off one cache
// line, and off the pair of lines some CPUs fetch together.
const statLine = 128

// statStripes is the number of stripes a poller has; a power of two.
const statStripes = 8

type pollStats struct {
	_       [statLine]byte // keep the poller's other fields off the first line
	own     ownStats
	stripes [statStripes]statStripe
}

// ownStats is written by the poller goroutine only.
type ownStats struct {
	accepted     atomic.Uint64
	acceptErrors atomic.Uint64
	bytesRead    atomic.Uint64 // every byte read goes into an input buffer
	_            [statLine - 3*8]byte
}

// statStripe is written by the goroutines using connections.
type statStripe struct {
	dialed       atomic.Uint64
	closed       atomic.Uint64
	bytesWritten atomic.Uint64
	inTaken      atomic.Uint64 // input bytes consumed, or dropped at close
	idleClosed   atomic.Uint64
	panics       atomic.Uint64
	outBuffered  atomic.Int64
	paused       atomic.Int64
	_            [statLine - 8*8]byte
}

// stats returns the stripe of c's counters.
func (c *connection) stats() *statStripe {
	return &c.poller().stats.stripes[uint32(c.fd.fd)&(statStripes-1)]
}

// consumed counts n input bytes taken out of the input buffer.
func (c *connection) consumed(n int) {
	if n > 0 {
		c.stats().inTaken.Add(uint64(n))
	}
}

// ReadStats fills *s with a snapshot of the package's counters (see Stats).
// It never blocks and allocates nothing; it costs a few loads per poller
// (pollers are few: GOMAXPROCS/20 + 1 by default), whatever the number of
// connections. It may be called from any goroutine, at any time.
func ReadStats(s *Stats) {
	*s = Stats{}
	polls := pollmanager.polls.Load()
	if polls == nil {
		return
	}
	var taken uint64
	for _, p := range *polls {
		st := &p.stats
		s.ConnsAccepted += st.own.accepted.Load()
		s.AcceptErrors += st.own.acceptErrors.Load()
		s.BytesRead += st.own.bytesRead.Load()
		for i := range st.stripes {
			x := &st.stripes[i]
			s.ConnsDialed += x.dialed.Load()
			s.ConnsClosed += x.closed.Load()
			s.BytesWritten += x.bytesWritten.Load()
			taken += x.inTaken.Load()
			s.IdleClosed += x.idleClosed.Load()
			s.HandlerPanics += x.panics.Load()
			s.OutputBuffered += x.outBuffered.Load()
			s.PausedConns += x.paused.Load()
		}
	}
	s.Pollers = len(*polls)
	s.ConnsOpen = int64(s.ConnsAccepted + s.ConnsDialed - s.ConnsClosed)
	s.InputBuffered = int64(s.BytesRead - taken)
}
