//go:build darwin || freebsd || linux

package netpoll

import (
	"context"
	"errors"
	"net"
	"sync"
	"time"
)

// NewEventLoop returns a server that calls onRequest (which may be nil) for
// the connections it accepts, configured by ops. Zero Options are ignored.
// The error is nil unless a WithTLS option is unusable (see WithTLS).
func NewEventLoop(onRequest OnRequest, ops ...Option) (EventLoop, error) {
	evl := &eventLoop{onRequest: onRequest}
	for _, op := range ops {
		if op.f != nil {
			op.f(&evl.opts)
		}
	}
	if err := checkTLSOptions(&evl.opts); err != nil {
		return nil, err
	}
	return evl, nil
}

type eventLoop struct {
	onRequest OnRequest
	opts      options

	mu   sync.Mutex
	svr  *server // the running Serve's server; nil when none runs
	done bool    // Shutdown was called
}

var errServing = errors.New("netpoll: the event loop is already serving a listener")

// Shutdown scans the connections again after shutdownPollPerConn per busy
// one, kept within [shutdownPollMin, shutdownPollMax]: a few busy ones are
// closed within 50 ms of going idle, while a thousand or more, whose scan
// costs more, are scanned once a second (never less often).
const (
	shutdownPollPerConn = time.Millisecond
	shutdownPollMin     = 50 * time.Millisecond
	shutdownPollMax     = time.Second
)

// Serve converts ln (see ConvertListener), registers it with a poller and
// blocks until Shutdown (nil) or an accept failure or a listener hang-up
// (the error). A close of ln while it is served unregisters it, and Serve
// waits on for Shutdown. A second concurrent Serve on the same loop fails
// at once, and so does a Serve of a listener another loop serves (EEXIST;
// the other loop keeps serving it). After Shutdown, Serve closes ln (if not nil) and returns nil at once.
// A nil ln, or one ConvertListener refuses, gives its error.
func (evl *eventLoop) Serve(ln net.Listener) error {
	evl.mu.Lock()
	if evl.done {
		evl.mu.Unlock()
		if ln != nil {
			_ = ln.Close()
		}
		return nil
	}
	if evl.svr != nil {
		evl.mu.Unlock()
		return errServing
	}
	l, err := ConvertListener(ln)
	if err != nil {
		evl.mu.Unlock()
		return err
	}
	s := newServer(l, evl.onRequest, &evl.opts)
	evl.svr = s
	evl.mu.Unlock()
	if err = s.start(); err != nil {
		evl.clear(s)
		return err
	}
	err = <-s.quit
	evl.clear(s)
	return err
}

func (evl *eventLoop) clear(s *server) {
	evl.mu.Lock()
	if evl.svr == s {
		evl.svr = nil
	}
	evl.mu.Unlock()
}

// Shutdown stops the running Serve (it returns nil), closes the listener,
// then closes connections as they become idle (no handler running, nothing
// buffered either way). It returns nil once none is left, or ctx.Err() when
// ctx ends first, leaving the busy ones open. Without a running Serve, and
// from the second call on, it returns nil at once. A nil ctx never ends.
func (evl *eventLoop) Shutdown(ctx context.Context) error {
	if ctx == nil {
		ctx = context.Background()
	}
	evl.mu.Lock()
	s := evl.svr
	evl.svr, evl.done = nil, true
	evl.mu.Unlock()
	if s == nil {
		return nil
	}
	s.stop(nil)
	for {
		busy := s.closeIdle()
		if busy == 0 {
			return nil
		}
		wait := min(max(time.Duration(busy)*shutdownPollPerConn, shutdownPollMin), shutdownPollMax)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}
