// Package netpoll is a non-blocking reactor for TCP and unix-socket servers
// and clients. It is an independent implementation of the API of
// github.com/cloudwego/netpoll v0.7.2, meant to be swapped in with one
// replace line in go.mod (see the README).
//
// The behaviour it promises (what blocks, which error comes when, who owns
// which bytes, what happens at close and timeout, and where it does better
// than the reference) is written down item by item in docs/contract.md in
// the repository; tests cite those items as "docs/contract.md C2.3".
//
// # Swapping it in
//
// The module declares the path github.com/cloudwego/netpoll, so nothing
// that imports it changes: a project, and the Hertz or Kitex it builds on,
// switches with one line in its go.mod, pointing at a checkout of this
// repository (there is no tagged release yet; a commit can be pinned by its
// pseudo-version instead of the path),
//
//	replace github.com/cloudwego/netpoll => ../netpoll
//
// followed by go mod tidy.
//
// # Model
//
// A few pollers (epoll on Linux, kqueue on macOS and FreeBSD; GOMAXPROCS/20
// + 1 by default, as in the reference) each run one goroutine that waits for
// readiness events. On Linux that goroutine parks in Go's own netpoller,
// which watches the epoll fd, so no OS thread sits in epoll_wait and a woken
// poller is scheduled like any network goroutine. Every connection is registered
// with one poller for its whole life. When a connection's socket is
// readable, its poller reads into the connection's input LinkBuffer and
// wakes whoever waits for those bytes: a blocked Reader call, or the
// connection's handler task. Writes go out from the goroutine that calls
// Flush; only when the socket is full does Flush ask the poller to report
// writability, and wait.
//
// One request and one close, file by file: docs/architecture.md.
//
// # Goroutines
//
//   - OnPrepare runs on the poller goroutine, synchronously, when a
//     connection is accepted and before it is registered. It must not block
//     or read; it may write (the bytes are sent at once).
//   - OnConnect and OnRequest run on a Runner goroutine (bytedance gopool by
//     default; see Configure). With the default Runner, the tasks of one
//     poller's connections go through its task queue (connection_task.go): a
//     worker runs them one after the other, and a blocked handler never
//     holds up the rest, because a spare worker is always started while
//     tasks wait. The first worker is the queue's resident one, a goroutine
//     that parks while the queue is empty instead of ending; the spares are
//     gopool workers. A custom Runner gets one call per task, with the
//     connection's context. They run serially per connection: OnConnect
//     first, then OnRequest whenever input is buffered. OnRequest is called
//     again while input remains and the previous call consumed some; when a
//     call consumes nothing it is called again only when new bytes arrive or
//     the connection closes. It is not called after a local Close.
//   - OnDisconnect runs once on a Runner goroutine when the peer closes the
//     connection (or when either side closed it during OnConnect), after
//     OnConnect returned and before the close callbacks.
//   - Close callbacks run once, last added first, on the goroutine that
//     releases the connection last: Close itself when no handler runs,
//     otherwise the handler's task when it returns, or the OnDisconnect
//     goroutine after a peer close.
//
// The order is always OnPrepare → OnConnect → OnRequest… → OnDisconnect →
// close callbacks.
//
// # Closing
//
// A connection closes by marking, then counting (connection_state.go): the
// first Close, Detach or hang-up moves it out of the open phase (IsActive
// becomes false, blocked calls wake, the fd is unregistered and its close
// requested); the close callbacks and the recycling of its buffers wait for
// the last hold to be released. The fd itself is closed by whoever drops its
// last syscall reference (fdRef, in the same file), so a fd number is never reused
// under a syscall that still means the old connection, and the operator
// table's generation tags (poll_unix.go) keep an event queued for a closed
// fd from reaching the fd's next owner.
//
// An idle close (WithIdleCloseTimeout) takes the peer close's path, and so
// does an IsActive that finds the peer's FIN or reset in the kernel before
// the poller has seen it (docs/contract.md C17).
//
// After a peer close, bytes already buffered stay readable; a read needing
// more fails with ErrEOF. After a local Close, reads fail with ErrConnClosed
// once the buffer is recycled, and every Writer method but MallocLen fails
// with ErrConnClosed.
//
// # Buffer ownership
//
// Slices from Reader.Next and Reader.Peek point into the input buffer and are
// valid until the next Release. ReadString, ReadBinary and Until return memory
// the caller owns. Slice returns a Reader that shares memory by reference
// count and outlives the parent's Release; its owner Releases or Closes it.
// Every slice handed out has cap == len, so append never overwrites the
// buffer. On the write side, Malloc'd memory must be filled before Flush and
// not touched after; WriteBinary and WriteString keep a reference to inputs
// longer than BinaryInplaceThreshold until they are sent.
//
// # Concurrency
//
// A Reader is used by one goroutine at a time. Writer calls are serialised
// by the connection: concurrent Write calls queue rather than fail, and a
// Flush blocked on a full socket holds the writer until it is done.
//
// # Input backpressure
//
// On Linux a connection whose reader falls 8 MiB behind stops being read
// until it catches up, so a fast peer waits in TCP flow control rather than
// in memory. Pausing never makes anyone wait on it: it is lifted when a
// read blocks for more, when a handler returns without consuming, and when
// a Flush has been stuck for a quarter of a second (the peer may be stuck
// writing to us). See connection_io.go.
//
// # TLS
//
// WithTLS serves TLS, and DialTLS and NewTLSDialer dial it, with the
// standard library's crypto/tls: a tls.Conn runs over an internal adapter
// on a connection of this package, which carries the ciphertext, and the
// handlers get a Connection whose Reader yields plaintext and whose Writer
// encrypts at Flush, with the blocking, timeout and close rules of any
// connection. A server's handshake runs on a Runner goroutine before
// OnConnect, bounded by the read timeout (10 s without one); a failed one
// closes the connection without calling the handlers. Decryption happens
// on a Runner goroutine, only for records already wholly buffered, or on a
// reader's goroutine that waits for more; never on a poller. It stops while
// 8 MiB of plaintext are unread, as input backpressure does. Each byte is
// copied twice each way: ciphertext into crypto/tls's record buffer and
// plaintext out of it; plaintext into crypto/tls's output buffer and
// records into the connection's output. TLSConnectionState reports what
// the handshake negotiated. docs/contract.md C18 has the details.
package netpoll
