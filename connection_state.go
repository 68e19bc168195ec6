package netpoll

import "sync/atomic"

// connState is a connection's whole lifecycle in one atomic word. Every
// change is a compare-and-swap done by one of the small methods below, so
// the decisions "who runs OnDisconnect" and "who runs the close callbacks"
// are each made exactly once, by exactly one goroutine.
//
//	bits 0-1   phase     open → closing → done. IsActive is phase == open.
//	                     closing: a close was decided; reads drain what is
//	                     buffered, writes fail. done: the close callbacks ran
//	                     (or are running) and the buffers are recycled.
//	bits 2-3   closer    who moved the phase out of open: user, peer, detach.
//	bit  4     running   a task (OnConnect, then OnRequest) owns the handlers.
//	bit  5     connected OnConnect returned, or there is none.
//	bit  6     disc      OnDisconnect was claimed; it runs at most once.
//	bit  7     released  the owner's hold was given up.
//	bits 8-15  holds     what delays the close callbacks: the owner (the user,
//	                     or for a connection with handlers the peer as well),
//	                     a running task, a running OnDisconnect, OnPrepare.
//
// The goroutine whose release brings a closing connection to zero holds moves
// it to done and runs the close callbacks: that is "close by marking, then
// counting".
type connState struct{ v atomic.Uint32 }

const (
	phaseMask    = 0x3
	phaseOpen    = 0x0
	phaseClosing = 0x1
	phaseDone    = 0x2

	closerShift  = 2
	closerMask   = 0x3 << closerShift
	closerUser   = 0x1
	closerPeer   = 0x2
	closerDetach = 0x3

	stRunning   = 1 << 4
	stConnected = 1 << 5
	stDisc      = 1 << 6
	stReleased  = 1 << 7

	holdOne   = 1 << 8
	holdsMask = 0xff << 8
)

// init starts the word: open, one hold for the owner.
func (s *connState) init(connected bool) {
	v := uint32(holdOne)
	if connected {
		v |= stConnected
	}
	s.v.Store(v)
}

func (s *connState) phase() uint32 { return s.v.Load() & phaseMask }

func (s *connState) closer() uint32 { return s.v.Load() & closerMask >> closerShift }

// closedLocally reports a close by the user (Close or Detach), not the peer.
func (s *connState) closedLocally() bool {
	v := s.v.Load()
	return v&phaseMask != phaseOpen && v&closerMask>>closerShift != closerPeer
}

// markClose moves open to closing; it reports whether this call did it.
func (s *connState) markClose(closer uint32) bool {
	for {
		v := s.v.Load()
		if v&phaseMask != phaseOpen {
			return false
		}
		if s.v.CompareAndSwap(v, v|phaseClosing|closer<<closerShift) {
			return true
		}
	}
}

// release gives up one hold (and the owner's once, if owner): it reports
// whether the caller must finalize the connection.
func (s *connState) release(owner bool) (finalize bool) {
	for {
		v := s.v.Load()
		n := v
		if owner {
			if v&stReleased != 0 {
				return false
			}
			n |= stReleased
		}
		n -= holdOne
		finalize = n&phaseMask == phaseClosing && n&holdsMask == 0
		if finalize {
			n = n&^phaseMask | phaseDone
		}
		if s.v.CompareAndSwap(v, n) {
			return finalize
		}
	}
}

// acquire takes one hold unless the connection is done.
func (s *connState) acquire() bool {
	for {
		v := s.v.Load()
		if v&phaseMask == phaseDone {
			return false
		}
		if s.v.CompareAndSwap(v, v+holdOne) {
			return true
		}
	}
}

// acquireTask takes the running bit and a hold, unless a task runs or the
// connection is done.
func (s *connState) acquireTask() bool {
	for {
		v := s.v.Load()
		if v&stRunning != 0 || v&phaseMask == phaseDone {
			return false
		}
		if s.v.CompareAndSwap(v, v|stRunning+holdOne) {
			return true
		}
	}
}

// releaseTask drops the running bit and its hold.
func (s *connState) releaseTask() (finalize bool) {
	for {
		v := s.v.Load()
		n := v&^stRunning - holdOne
		finalize = n&phaseMask == phaseClosing && n&holdsMask == 0
		if finalize {
			n = n&^phaseMask | phaseDone
		}
		if s.v.CompareAndSwap(v, n) {
			return finalize
		}
	}
}

// running reports whether a task owns the handlers.
func (s *connState) running() bool { return s.v.Load()&stRunning != 0 }

// setConnected records the end of OnConnect. It reports whether the caller
// must run OnDisconnect: either side closed the connection meanwhile.
func (s *connState) setConnected() (disconnect bool) {
	for {
		v := s.v.Load()
		n := v | stConnected
		disconnect = v&phaseMask != phaseOpen && v&stDisc == 0
		if disconnect {
			n |= stDisc
		}
		if s.v.CompareAndSwap(v, n) {
			return disconnect
		}
	}
}

// claimDisconnect reports whether the caller, seeing a peer close, must run
// OnDisconnect: only once OnConnect has returned, and only once.
func (s *connState) claimDisconnect() bool {
	for {
		v := s.v.Load()
		if v&stConnected == 0 || v&stDisc != 0 {
			return false
		}
		if s.v.CompareAndSwap(v, v|stDisc) {
			return true
		}
	}
}
