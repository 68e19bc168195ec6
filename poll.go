package netpoll

// Poll is one poller: an epoll (Linux) or kqueue (macOS, FreeBSD) instance with
// the goroutine that waits on it. No exported API hands one out; the type
// exists for compatibility.
type Poll interface {
	// Wait runs the event loop until Close. It blocks.
	Wait() error
	// Close stops Wait and releases the poller; a second call returns nil.
	Close() error
	// Trigger wakes Wait up once.
	Trigger() error
	// Control registers, changes or removes operator's interest. An unknown
	// event gives ErrUnsupported, PollR2RW or PollRW2R on a detached operator
	// ErrConnClosed, and a second PollDetach nil. Registering a fd that
	// another operator, not detached, holds gives EEXIST (with any poller)
	// and leaves that operator registered, unless that operator's fd was
	// closed behind its back and the number reused: then the new one wins.
	Control(operator *FDOperator, event PollEvent) error
	// Alloc returns a fresh operator bound to this poller.
	Alloc() (operator *FDOperator)
	// Free gives an operator back; it must be detached first.
	Free(operator *FDOperator)
}

// PollEvent is a change of interest passed to Poll.Control.
type PollEvent int

// The changes of interest.
const (
	// PollReadable registers the fd for reading.
	PollReadable PollEvent = 0x1
	// PollWritable registers the fd for writing.
	PollWritable PollEvent = 0x2
	// PollDetach removes the fd from the poller; a second detach is a no-op.
	PollDetach PollEvent = 0x3
	// PollR2RW adds writing to a fd registered for reading.
	PollR2RW PollEvent = 0x5
	// PollRW2R removes writing again.
	PollRW2R PollEvent = 0x6

	// pollConnect registers a connecting fd for one writability event.
	pollConnect PollEvent = 0x10
)

// FDOperator is what a poller knows of one file descriptor: the callbacks it
// runs for readiness events. Operators made by this package carry an internal
// handler instead of the exported callbacks.
type FDOperator struct {
	// FD is the file descriptor.
	FD int

	// OnRead, OnWrite and OnHup are run on the poller goroutine when FD is
	// readable, writable, or hung up.
	OnRead, OnWrite, OnHup func(p Poll) error

	// Inputs, InputAck, Outputs and OutputAck are kept for compatibility; the
	// pollers of this package do not call them.
	Inputs    func(vs [][]byte) (rs [][]byte)
	InputAck  func(n int) (err error)
	Outputs   func(vs [][]byte) (rs [][]byte, supportZeroCopy bool)
	OutputAck func(n int) (err error)

	poll     *defaultPoll // the poller; nil until one registers or allocates the operator
	handler  pollHandler
	gen      uint32 // registration generation, carried by every kernel event (see poll_unix.go)
	detached int32  // 1 after the first PollDetach; changed atomically
}

// pollHandler receives the events of an operator made by this package. Every
// method runs on the poller goroutine and must not block.
type pollHandler interface {
	// onEvent handles one readiness report; the flags are pollIn, pollOut,
	// pollHup. It reports whether the report is settled: nothing it
	// announced is left for a later report of the same, still-standing
	// readiness (a read came back short or empty, every pending
	// connection was accepted). A handler that leaves readiness behind (a
	// read filled its buffer, a batch ran out) returns false, and the
	// poller polls again before it parks (see poll_default_linux.go).
	onEvent(p Poll, flags pollFlags) (settled bool)
}

// pollFlags is the platform-neutral summary of one kernel event.
type pollFlags uint8

const (
	pollIn   pollFlags = 1 << iota // readable, or a read will report EOF/error
	pollOut                        // writable
	pollHup                        // the peer hung up or the socket has an error
	pollWake                       // the poller's own wake-up (Trigger), for no operator
)

// Control asks the operator's poller for a change of interest. An operator
// without a poller (any made outside this package) gives ErrUnsupported.
func (op *FDOperator) Control(event PollEvent) error {
	if op.poll == nil {
		return Exception(ErrUnsupported, "operator has no poller")
	}
	return op.poll.Control(op, event)
}

// Free gives the operator back to its poller; without one it does nothing.
func (op *FDOperator) Free() {
	if op.poll != nil {
		op.poll.Free(op)
	}
}

// LoadBalance chooses the poller of each new connection.
type LoadBalance int

// The balancers; any other value means RoundRobin.
const (
	RoundRobin LoadBalance = iota
	Random
)
