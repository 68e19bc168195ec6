package netpoll

// Stats is a snapshot of the package's own counters, filled by ReadStats.
// The counters are process-wide: every poller, every EventLoop, every
// dialed connection. Counts (uint64) only grow; gauges (int64) go up and
// down and read as what holds now.
//
// A counter includes an event once the call that caused it has returned to
// the user: the bytes of a Flush that returned nil are in BytesWritten, a
// connection whose Close returned is in ConnsClosed, bytes a handler or a
// blocked reader was woken for are in BytesRead and InputBuffered. Events
// racing the snapshot may or may not be in it, and a snapshot taken while
// the package is busy is not a consistent cut: ConnsOpen may lag
// ConnsAccepted by a connection being set up, for example.
type Stats struct {
	// Pollers is the number of pollers running.
	Pollers int
	// ConnsOpen is ConnsAccepted + ConnsDialed - ConnsClosed: the
	// connections that have not closed yet.
	ConnsOpen int64
	// ConnsAccepted counts the connections accepted by an EventLoop.
	ConnsAccepted uint64
	// ConnsDialed counts the connections made from this side: by a Dialer,
	// the Dial functions, or NewFDConnection.
	ConnsDialed uint64
	// ConnsClosed counts the connections closed, by either side, by Detach,
	// or by an idle close: those whose IsActive turned false.
	ConnsClosed uint64
	// BytesRead counts the bytes read from sockets into input buffers.
	BytesRead uint64
	// BytesWritten counts the bytes the kernel took from output buffers.
	BytesWritten uint64
	// InputBuffered is the bytes read from sockets that no reader has
	// consumed yet (the sum of every open connection's Len). The bytes of
	// a closed connection leave it when its buffers are recycled.
	InputBuffered int64
	// OutputBuffered is the bytes a Flush has handed over that the kernel
	// has not taken yet: non-zero while a Flush waits on a full socket, or
	// after one that timed out. Staged, unflushed bytes are not counted.
	OutputBuffered int64
	// PausedConns is the number of connections whose input is paused
	// because their reader is 8 MiB behind (Linux only; see the package
	// documentation, "Input backpressure").
	PausedConns int64
	// IdleClosed counts the connections closed by WithIdleCloseTimeout.
	IdleClosed uint64
	// HandlerPanics counts the panics of OnPrepare, OnConnect, OnRequest
	// and OnDisconnect that the package recovered (and, but for
	// OnPrepare's, raised again on a Runner goroutine).
	HandlerPanics uint64
	// AcceptErrors counts the accepts that failed with an error other than
	// "nothing to accept": connections aborted before they were accepted,
	// the process out of fds, and the failures that end a Serve.
	AcceptErrors uint64
}
