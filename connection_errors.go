package netpoll

import (
	"fmt"
	"syscall"
)

// The errors of this package. They are raw syscall.Errno values; the APIs
// return them wrapped by Exception, so test them with errors.Is.
const (
	// ErrConnClosed: the connection was closed locally (or refused by the peer when dialing).
	ErrConnClosed = syscall.Errno(0x101)
	// ErrReadTimeout: a blocking read passed its timeout or deadline.
	ErrReadTimeout = syscall.Errno(0x102)
	// ErrDialTimeout: kept for compatibility; a dial that passes its timeout
	// reports a plain "i/o timeout" instead.
	ErrDialTimeout = syscall.Errno(0x103)
	// ErrDialNoDeadline: a dial without a deadline (kept for compatibility; never returned).
	ErrDialNoDeadline = syscall.Errno(0x104)
	// ErrUnsupported: the operation is not supported.
	ErrUnsupported = syscall.Errno(0x105)
	// ErrEOF: the peer closed the connection. errors.Is matches it with ErrConnClosed too.
	ErrEOF = syscall.Errno(0x106)
	// ErrWriteTimeout: a Flush passed its write timeout or deadline.
	ErrWriteTimeout = syscall.Errno(0x107)
	// ErrConcurrentAccess: kept for compatibility; concurrent writes are serialised here.
	ErrConcurrentAccess = syscall.Errno(0x108)
)

// ErrnoMask selects the index of one of the errors above in its 0x100 page.
const ErrnoMask = 0xFF

var errnoText = [...]string{
	ErrConnClosed & ErrnoMask:       "connection has been closed",
	ErrReadTimeout & ErrnoMask:      "connection read timeout",
	ErrDialTimeout & ErrnoMask:      "dial wait timeout",
	ErrDialNoDeadline & ErrnoMask:   "dial no deadline",
	ErrUnsupported & ErrnoMask:      "netpoll does not support",
	ErrEOF & ErrnoMask:              "EOF",
	ErrWriteTimeout & ErrnoMask:     "connection write timeout",
	ErrConcurrentAccess & ErrnoMask: "concurrent connection access",
}

// Exception attaches a suffix to err. A syscall.Errno becomes a net.Error whose
// message is the errno's text and suffix, and which errors.Is matches with
// the errno. The text of an errno with bit 0x100 set is that of the
// package error with the same low byte, if there is one (0x101 and 0x301
// both read "connection has been closed"); any other errno's is its own. Any other error is
// returned as it is when suffix is empty, else as a new error "err suffix".
// A nil err gives nil; a zero Errno still gives a non-nil error.
func Exception(err error, suffix string) error {
	errno, ok := err.(syscall.Errno)
	if !ok {
		if err == nil || suffix == "" {
			return err
		}
		return fmt.Errorf("%s %s", err, suffix)
	}
	return &exception{no: errno, suffix: suffix}
}

// exception is an Errno with a suffix. It implements net.Error.
type exception struct {
	no     syscall.Errno
	suffix string
}

func (e *exception) Error() string {
	var s string
	if idx := int(e.no & ErrnoMask); e.no&0x100 != 0 && idx < len(errnoText) && errnoText[idx] != "" {
		s = errnoText[idx]
	} else {
		s = e.no.Error()
	}
	if e.suffix != "" {
		s += " " + e.suffix
	}
	return s
}

// Is matches the errno and everything the errno matches; an ErrEOF also
// matches ErrConnClosed.
func (e *exception) Is(target error) bool {
	if e.no == target {
		return true
	}
	if e.no == ErrEOF && target == ErrConnClosed {
		return true
	}
	return e.no.Is(target)
}

// Unwrap returns the errno.
func (e *exception) Unwrap() error { return e.no }

// Timeout reports a dial, read or write timeout, or what the errno says.
func (e *exception) Timeout() bool {
	switch e.no {
	case ErrDialTimeout, ErrReadTimeout, ErrWriteTimeout:
		return true
	}
	return e.no.Timeout()
}

// Temporary is what the errno says.
func (e *exception) Temporary() bool { return e.no.Temporary() }
