package netpoll

import (
	"context"
	"net"
)

// EventLoop is a server: it accepts connections from a listener and drives
// them with the callbacks it was made with.
type EventLoop interface {
	// Serve converts ln (see ConvertListener), registers it with a poller and
	// blocks. It returns nil after Shutdown, or the error that stopped it: a
	// listener that cannot be converted (a nil ln included) or registered
	// (one another loop serves gives EEXIST, and that loop keeps it), an
	// accept that fails for good, or a listener that hung up. Closing ln
	// while it is served (Kitex does so before Shutdown) only unregisters
	// it: Serve goes on waiting and returns nil at Shutdown. While another
	// Serve of the loop runs it fails at once; after Shutdown it closes ln
	// and returns nil at once.
	Serve(ln net.Listener) error
	// Shutdown stops accepting, closes the listener, then closes idle
	// connections until none is busy (nil) or ctx ends (ctx.Err(); busy
	// connections are left open). It returns nil at once when Serve is not
	// running or after the first call. A nil ctx never ends.
	Shutdown(ctx context.Context) error
}

// OnPrepare runs on the poller when a connection is accepted, before it is
// registered; the returned ctx (nil means Background) is the connection's.
// It must not block or read. A panic in it is logged and closes the
// connection, which is then never registered.
type OnPrepare func(connection Connection) context.Context

// OnConnect runs on a Runner goroutine once a connection is registered. It
// may block, read and write; the returned ctx replaces the connection's
// (nil keeps it). OnRequest is not called before it returns. A panic in it
// closes the connection and is raised again on the Runner goroutine.
type OnConnect func(ctx context.Context, connection Connection) context.Context

// OnRequest runs on a Runner goroutine when input arrives, serially per
// connection, while input remains and the connection is not closed locally.
// Its return value is ignored. A panic in it closes the connection and is
// raised again on the Runner goroutine.
type OnRequest func(ctx context.Context, connection Connection) error

// OnDisconnect runs once when the peer closes the connection (or when either
// side closed it during OnConnect), before the close callbacks. Keep it quick.
// A panic in it does not stop the close callbacks, and is raised again on
// the Runner goroutine.
type OnDisconnect func(ctx context.Context, connection Connection)
