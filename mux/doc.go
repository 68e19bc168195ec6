// Package mux batches the writes of many goroutines that share one
// netpoll.Connection.
//
// A multiplexing protocol (many requests in flight on one connection) has
// many goroutines with a response ready at the same moment. If each of them
// called Flush, the connection would make one write system call per
// response. A ShardQueue instead collects the responses and sends whatever
// is ready in one Flush, so one writev carries a whole batch.
//
// # Model
//
//   - Producers call ShardQueue.Add with WriterGetters: functions that
//     return the bytes to send, usually a *netpoll.LinkBuffer. Add never
//     blocks on the network. Only the flusher calls the getters; an Add
//     after Close does nothing at all.
//   - At most one flusher task per queue runs at a time, on the netpoll
//     Runner (the one set with netpoll.Configure or netpoll.SetRunner). It
//     is started by the Add that finds the queue empty and it exits once the
//     queue is empty again, so an idle queue costs no goroutine.
//   - The flusher yields once (runtime.Gosched) when it starts, so that
//     producers already runnable can join its first batch; on a loaded
//     server that turns one write per response into one per dozens.
//   - The flusher takes everything queued, calls the getters in the order of
//     their Adds, Appends each buffer to conn.Writer() and Flushes once. The
//     connection owns an appended buffer from then on.
//   - Order: if one Add returns before another starts, its bytes are sent
//     first. The getters of one Add are sent in argument order. Adds that run
//     at the same time are sent in some order, never interleaved.
//   - Errors: if an Append or the Flush fails (or a getter panics), the
//     queue closes the connection, on a Runner task so that a close callback
//     may call the queue's Close, and drops the rest of that batch and every
//     later one: nothing is sent after a gap. A dropped getter is still
//     called, and the *netpoll.LinkBuffer it returns is closed, so its memory
//     is released.
//   - Close stops new Adds, waits for the flusher to drain what was queued
//     and leaves the connection open: closing it is the caller's job.
//
// The queue spreads Adds over shards (each with its own lock) so that
// producers on different CPUs rarely contend; the flusher merges them back
// into Add order.
package mux
