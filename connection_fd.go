//go:build darwin || freebsd || linux

package netpoll

import (
	"runtime"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// fdRef guards the file descriptor against reuse while a syscall uses it.
// The poller's read and a Flush's write each hold a reference for the length
// of one syscall; closing sets fdClosing, and whoever leaves the count at zero
// with fdClosing set closes the fd. So a fd number is never closed, and
// handed to a new connection, under a syscall that still means the old one.
type fdRef struct {
	fd   int32 // fd numbers fit; the struct stays 8 bytes
	refs atomic.Int32
}

// num returns the fd number.
func (f *fdRef) num() int { return int(f.fd) }

const (
	fdClosing = 1 << 30 // close requested
	fdKeep    = 1 << 29 // detach: the fd goes to the caller, not closed
)

// acquire takes a reference unless a close was requested.
func (f *fdRef) acquire() bool {
	for {
		v := f.refs.Load()
		if v&fdClosing != 0 {
			return false
		}
		if f.refs.CompareAndSwap(v, v+1) {
			return true
		}
	}
}

// release drops a reference and closes the fd if it was the last one after a close request.
func (f *fdRef) release() {
	if v := f.refs.Add(-1); v&^fdKeep == fdClosing {
		f.destroy(v)
	}
}

// close requests the close; keep leaves the fd open for the caller (Detach).
// It reports whether this call was the first request.
func (f *fdRef) close(keep bool) bool {
	flag := int32(fdClosing)
	if keep {
		flag |= fdKeep
	}
	for {
		v := f.refs.Load()
		if v&fdClosing != 0 {
			return false
		}
		if f.refs.CompareAndSwap(v, v|flag) {
			if v == 0 {
				f.destroy(v | flag)
			}
			return true
		}
	}
}

// drain waits until no syscall holds the fd; each holds it for one
// non-blocking syscall, so this is short.
func (f *fdRef) drain() {
	for f.refs.Load()&^(fdClosing|fdKeep) != 0 {
		runtime.Gosched()
	}
}

func (f *fdRef) destroy(v int32) {
	if v&fdKeep == 0 && f.fd > 2 {
		_ = unix.Close(f.num())
	}
}
